//! Import circles between sibling modules: module `a` uses something of its sibling `b` (or
//! of anything inside `b`) while `b`, directly or through other siblings, uses `a`. A parent
//! and its own children may use each other; that is how Rust modules are declared.

use crate::modules::{test_only, Module};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use syn::visit::Visit;

/// One use of a sibling: where, and the path as written.
#[derive(Clone)]
pub struct Reference {
    /// `file:line`.
    pub at: String,
    /// The path, `crate::jobs::Ctx`.
    pub path: String,
}

/// A circle: the parent module, its children in the circle, and one reference per edge.
pub struct Circle {
    /// The parent, `crate::jobs`.
    pub parent: String,
    /// The siblings that reach each other.
    pub members: Vec<String>,
    /// `(from, to, example)` for every edge between members.
    pub edges: Vec<(String, String, Reference)>,
}

struct Paths<'a> {
    file: &'a str,
    out: Vec<(Vec<String>, usize)>,
}

impl Paths<'_> {
    fn flatten(&mut self, prefix: &[String], tree: &syn::UseTree) {
        let with = |name: &syn::Ident| {
            let mut p = prefix.to_vec();
            if name != "self" {
                p.push(name.to_string());
            }
            (p, name.span().start().line)
        };
        match tree {
            syn::UseTree::Path(p) => {
                let (next, _) = with(&p.ident);
                self.flatten(&next, &p.tree);
            }
            syn::UseTree::Name(n) => self.out.push(with(&n.ident)),
            syn::UseTree::Rename(r) => self.out.push(with(&r.ident)),
            syn::UseTree::Glob(g) => self
                .out
                .push((prefix.to_vec(), g.star_token.span.start().line)),
            syn::UseTree::Group(g) => g.items.iter().for_each(|t| self.flatten(prefix, t)),
        }
    }
}

impl<'ast> Visit<'ast> for Paths<'_> {
    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        let line = p
            .segments
            .first()
            .map_or(0, |s| s.ident.span().start().line);
        self.out.push((segs, line));
        syn::visit::visit_path(self, p);
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.flatten(&[], &u.tree);
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if !test_only(&f.attrs) {
            syn::visit::visit_item_fn(self, f);
        }
    }

    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        if !test_only(&i.attrs) {
            syn::visit::visit_item_impl(self, i);
        }
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if !test_only(&f.attrs) {
            syn::visit::visit_impl_item_fn(self, f);
        }
    }
}

/// The module `segs` names, written in module `cur`: `crate::`, `self::`, `super::` or a
/// child's name first; the longest prefix that is a module. `None` for other paths.
fn resolve(cur: &[String], segs: &[String], known: &HashSet<Vec<String>>) -> Option<Vec<String>> {
    let first = segs.first()?.as_str();
    let (mut base, mut rest) = match first {
        "crate" => (Vec::new(), &segs[1..]),
        "self" => (cur.to_vec(), &segs[1..]),
        "super" => (cur.to_vec(), segs),
        _ => {
            let mut child = cur.to_vec();
            child.push(first.to_string());
            (known.contains(&child)).then_some(())?;
            (cur.to_vec(), segs)
        }
    };
    while rest.first().map(String::as_str) == Some("super") {
        base.pop()?;
        rest = &rest[1..];
    }
    for s in rest {
        base.push(s.clone());
        if !known.contains(&base) {
            base.pop();
            break;
        }
    }
    Some(base)
}

fn name(path: &[String]) -> String {
    std::iter::once("crate")
        .chain(path.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join("::")
}

/// Every circle between sibling modules of these modules (one crate's).
pub fn circles(modules: &[Module], root: &std::path::Path) -> Vec<Circle> {
    let known: HashSet<Vec<String>> = modules.iter().map(|m| m.path.clone()).collect();
    // parent -> (from child, to child) -> first reference
    let mut graphs: BTreeMap<Vec<String>, BTreeMap<(String, String), Reference>> = BTreeMap::new();
    for m in modules {
        let file = m.relative_file(root);
        let mut v = Paths {
            file: &file,
            out: Vec::new(),
        };
        m.items.iter().for_each(|i| v.visit_item(i));
        for (segs, line) in v.out {
            let Some(target) = resolve(&m.path, &segs, &known) else {
                continue;
            };
            let k = m
                .path
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            let (Some(from), Some(to)) = (m.path.get(k), target.get(k)) else {
                continue; // the same module, an ancestor or a descendant
            };
            let reference = Reference {
                at: format!("{}:{line}", v.file),
                path: segs.join("::"),
            };
            (graphs.entry(m.path[..k].to_vec()).or_default())
                .entry((from.clone(), to.clone()))
                .or_insert(reference);
        }
    }
    let mut out = Vec::new();
    for (parent, edges) in graphs {
        for members in strongly_connected(&edges) {
            let inner = (edges.iter())
                .filter(|((a, b), _)| members.contains(a) && members.contains(b))
                .map(|((a, b), r)| (a.clone(), b.clone(), r.clone()))
                .collect();
            out.push(Circle {
                parent: name(&parent),
                members: members.into_iter().collect(),
                edges: inner,
            });
        }
    }
    out
}

/// The groups of two or more nodes that reach each other.
fn strongly_connected(edges: &BTreeMap<(String, String), Reference>) -> Vec<BTreeSet<String>> {
    let nodes: BTreeSet<&String> = edges.keys().flat_map(|(a, b)| [a, b]).collect();
    let reach = |from: &String| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(n) = stack.pop() {
            for (a, b) in edges.keys() {
                if *a == n && seen.insert(b.clone()) {
                    stack.push(b.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&String, BTreeSet<String>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut groups: Vec<BTreeSet<String>> = Vec::new();
    for n in &nodes {
        let group: BTreeSet<String> = (nodes.iter())
            .filter(|m| reached[*n].contains(**m) && reached[**m].contains(*n))
            .map(|m| (*m).clone())
            .collect();
        if group.len() > 1 && !groups.contains(&group) {
            groups.push(group);
        }
    }
    groups
}
