//! The module tree of a crate, read from its root file through `mod` declarations; modules
//! compiled only for tests (`#[cfg(test)]`) are left out.

use anyhow::{anyhow, Context};
use std::path::{Path, PathBuf};

/// One module: its path from the crate root, the file it is in and its own items (the items
/// of its child modules belong to them).
pub struct Module {
    /// `["jobs", "dispatch"]` for `crate::jobs::dispatch`; empty for the crate root.
    pub path: Vec<String>,
    /// The file the module's items are in.
    pub file: PathBuf,
    /// Its items, child modules' contents excluded.
    pub items: Vec<syn::Item>,
}

impl Module {
    /// Its file, relative to `root` (the workspace).
    pub fn relative_file(&self, root: &Path) -> String {
        let file = self.file.strip_prefix(root).unwrap_or(&self.file);
        file.display().to_string()
    }
}

/// Whether these attributes mark test-only code: `#[test]`, `#[cfg(test)]`, `#[tokio::test]`.
pub fn test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        let p = a.path();
        let last = p.segments.last().map(|s| s.ident.to_string());
        if last.as_deref() == Some("test") {
            return true;
        }
        p.is_ident("cfg")
            && a.meta
                .require_list()
                .is_ok_and(|l| l.tokens.to_string().trim() == "test")
    })
}

/// Every module of the crate whose root file is `root`.
pub fn crate_modules(root: &Path) -> anyhow::Result<Vec<Module>> {
    let mut out = Vec::new();
    let dir = root
        .parent()
        .ok_or_else(|| anyhow!("{root:?} has no folder"))?;
    load(
        Vec::new(),
        root,
        parse(root)?.items,
        dir.to_path_buf(),
        &mut out,
    )?;
    Ok(out)
}

fn parse(file: &Path) -> anyhow::Result<syn::File> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {file:?}"))?;
    syn::parse_file(&text).with_context(|| format!("parsing {file:?}"))
}

/// The file of module `name` declared in `file`, whose children's files are in `dir`; a
/// `#[path]` is relative to the folder of `file`.
fn child_file(
    file: &Path,
    dir: &Path,
    name: &str,
    attrs: &[syn::Attribute],
) -> anyhow::Result<PathBuf> {
    for a in attrs.iter().filter(|a| a.path().is_ident("path")) {
        if let syn::Meta::NameValue(nv) = &a.meta {
            if let syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) = &nv.value
            {
                let here = file.parent().unwrap_or(dir);
                return Ok(here.join(s.value()));
            }
        }
    }
    let flat = dir.join(format!("{name}.rs"));
    let nested = dir.join(name).join("mod.rs");
    match (flat.is_file(), nested.is_file()) {
        (true, _) => Ok(flat),
        (false, true) => Ok(nested),
        _ => Err(anyhow!("no file for module {name} in {dir:?}")),
    }
}

fn load(
    path: Vec<String>,
    file: &Path,
    items: Vec<syn::Item>,
    dir: PathBuf,
    out: &mut Vec<Module>,
) -> anyhow::Result<()> {
    let mut own = Vec::new();
    for item in items {
        let syn::Item::Mod(m) = item else {
            own.push(item);
            continue;
        };
        if test_only(&m.attrs) {
            continue;
        }
        let name = m.ident.to_string();
        let mut child = path.clone();
        child.push(name.clone());
        match m.content {
            Some((_, inner)) => load(child, file, inner, dir.join(&name), out)?,
            None => {
                let f = child_file(file, &dir, &name, &m.attrs)?;
                let child_dir = match f.file_name().and_then(|n| n.to_str()) {
                    Some("mod.rs") => f.parent().map(Path::to_path_buf).unwrap_or_default(),
                    _ => dir.join(&name),
                };
                load(child, &f, parse(&f)?.items, child_dir, out)?;
            }
        }
    }
    out.push(Module {
        path,
        file: file.to_path_buf(),
        items: own,
    });
    Ok(())
}
