//! The length of every production function: from its `fn` line to its closing brace.

use crate::modules::{test_only, Module};
use syn::visit::Visit;

/// One function and its length in lines.
pub struct FnLength {
    /// `file:line` of its signature.
    pub at: String,
    /// Its name.
    pub name: String,
    /// Lines from the `fn` keyword to the closing brace.
    pub lines: usize,
}

struct Lengths<'a> {
    file: &'a str,
    out: Vec<FnLength>,
}

impl Lengths<'_> {
    fn add(&mut self, sig: &syn::Signature, block: &syn::Block) {
        let start = sig.fn_token.span.start().line;
        let end = block.brace_token.span.close().end().line;
        self.out.push(FnLength {
            at: format!("{}:{start}", self.file),
            name: sig.ident.to_string(),
            lines: end.saturating_sub(start) + 1,
        });
    }
}

impl<'ast> Visit<'ast> for Lengths<'_> {
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if !test_only(&f.attrs) {
            self.add(&f.sig, &f.block);
            syn::visit::visit_item_fn(self, f);
        }
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if !test_only(&f.attrs) {
            self.add(&f.sig, &f.block);
            syn::visit::visit_impl_item_fn(self, f);
        }
    }

    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        if let (false, Some(block)) = (test_only(&f.attrs), &f.default) {
            self.add(&f.sig, block);
            syn::visit::visit_trait_item_fn(self, f);
        }
    }

    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        if !test_only(&i.attrs) {
            syn::visit::visit_item_impl(self, i);
        }
    }
}

/// The functions of these modules.
pub fn lengths(modules: &[Module], root: &std::path::Path) -> Vec<FnLength> {
    let mut out = Vec::new();
    for m in modules {
        let file = m.relative_file(root);
        let mut v = Lengths {
            file: &file,
            out: Vec::new(),
        };
        for item in &m.items {
            v.visit_item(item);
        }
        out.extend(v.out);
    }
    out
}

/// The median of these lengths (0 for none).
pub fn median(lengths: &[FnLength]) -> usize {
    let mut v: Vec<usize> = lengths.iter().map(|f| f.lines).collect();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}
