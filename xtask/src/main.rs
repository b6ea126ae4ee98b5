//! `cargo run -p xtask -- shape [--check | --check-circles] [--list]`: the shape of the
//! workspace's production code.
//!
//! For every crate (test support in `testkit/` aside): the median length of its functions,
//! the functions over [`MAX_FN_LINES`] lines, and the import circles between sibling modules.
//! With `--check` it fails when there is any long function or circle; with `--check-circles`,
//! when there is any circle (what `make test` checks); `--list` prints every function's length.

mod cycles;
mod fns;
mod modules;

use std::path::{Path, PathBuf};

/// The longest a production function may be, in lines.
const MAX_FN_LINES: usize = 60;

/// Crates that are not production code.
const NOT_PRODUCTION: &[&str] = &["testkit", "third_party", "target"];

fn crate_roots(workspace: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut roots = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(workspace)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("Cargo.toml").is_file() && p.join("src").is_dir())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !NOT_PRODUCTION.contains(&name)
        })
        .collect();
    dirs.sort();
    for dir in dirs {
        let src = dir.join("src");
        roots.extend(
            ["lib.rs", "main.rs"]
                .map(|f| src.join(f))
                .into_iter()
                .filter(|p| p.is_file()),
        );
        if let Ok(bins) = std::fs::read_dir(src.join("bin")) {
            let mut bins: Vec<PathBuf> = bins.filter_map(Result::ok).map(|e| e.path()).collect();
            bins.sort();
            roots.extend(
                bins.into_iter()
                    .filter(|p| p.extension().is_some_and(|e| e == "rs")),
            );
        }
    }
    Ok(roots)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("shape") {
        anyhow::bail!("usage: cargo run -p xtask -- shape [--check | --check-circles] [--list]");
    }
    let check = args.iter().any(|a| a == "--check");
    let check_circles = check || args.iter().any(|a| a == "--check-circles");
    let list = args.iter().any(|a| a == "--list");
    // Run time (`cargo run` names the package's directory), not compile time: the binary may
    // be reused from another checkout's build when the target directory is shared (as CI's).
    let package = std::env::var_os("CARGO_MANIFEST_DIR").map(std::path::PathBuf::from);
    let package = package.unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf());
    let workspace = package
        .parent()
        .ok_or_else(|| anyhow::anyhow!("xtask is not in a workspace"))?
        .to_path_buf();
    let (mut all, mut circles) = (Vec::new(), 0);
    for root in crate_roots(&workspace)? {
        let modules = modules::crate_modules(&root)?;
        let lengths = fns::lengths(&modules, &workspace);
        for c in cycles::circles(&modules, &workspace) {
            circles += 1;
            let at = root.strip_prefix(&workspace).unwrap_or(&root).display();
            println!("circle in {at} {}: {}", c.parent, c.members.join(" <-> "));
            for (from, to, r) in c.edges {
                println!("    {from} -> {to}: {} ({})", r.at, r.path);
            }
        }
        all.extend(lengths);
    }
    let long: Vec<&fns::FnLength> = all.iter().filter(|f| f.lines > MAX_FN_LINES).collect();
    for f in &long {
        println!("long function: {} {} ({} lines)", f.at, f.name, f.lines);
    }
    if list {
        for f in &all {
            println!("{}\t{}\t{}", f.lines, f.at, f.name);
        }
    }
    println!(
        "{} production functions, median {} lines, {} over {MAX_FN_LINES}; {circles} import circles",
        all.len(),
        fns::median(&all),
        long.len()
    );
    if check_circles && circles > 0 {
        anyhow::bail!("modules import each other in a circle (listed above)");
    }
    if check && !long.is_empty() {
        anyhow::bail!("functions over {MAX_FN_LINES} lines (listed above)");
    }
    Ok(())
}
