//! No crate of the workspace has an import cycle between its modules.
//!
//! Each crate's files are parsed with `syn`. Every `crate::`, `super::` and
//! `self::` path in non-test code (including `use` trees, re-exports and
//! paths inside macro calls) becomes an edge between two modules. An edge is
//! lifted to the two sibling modules under the pair's closest common
//! ancestor, so `run::spec` using `backend` is an edge `run → backend`. A
//! module using its own parent or child is not an edge: that is how one
//! module is split into files. Any loop among siblings fails the test, naming
//! the modules and one reference for each edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// The source roots of the workspace's crates.
const CRATES: &[&str] = &[
    "src",
    "imagestore/src",
    "runtime/src",
    "compat/src",
    "bench/src",
    "scheduler/src",
];

type Module = Vec<String>;

/// One reference from a module to a path, for error messages.
#[derive(Debug, Clone)]
struct Reference {
    from: Module,
    path: Vec<String>,
    file: PathBuf,
}

/// What one file says: the module paths it names, and what it re-exports.
#[derive(Default)]
struct FileRefs {
    paths: Vec<Vec<String>>,
    reexports: Vec<(String, Vec<String>)>,
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.meta
                .require_list()
                .is_ok_and(|l| l.tokens.to_string().split_whitespace().any(|t| t == "test"))
    })
}

/// Expand a `use` tree into full paths, and record `pub use` names.
fn use_paths(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<(String, Vec<String>)>) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_paths(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let mut full = prefix.clone();
            if n.ident != "self" {
                full.push(n.ident.to_string());
            }
            let name = full.last().cloned().unwrap_or_default();
            out.push((name, full));
        }
        syn::UseTree::Rename(r) => {
            let mut full = prefix.clone();
            full.push(r.ident.to_string());
            out.push((r.rename.to_string(), full));
        }
        syn::UseTree::Glob(_) => out.push(("*".into(), prefix.clone())),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                use_paths(t, prefix, out);
            }
        }
    }
}

impl<'ast> Visit<'ast> for FileRefs {
    fn visit_item(&mut self, i: &'ast syn::Item) {
        let attrs = match i {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Impl(m) => &m.attrs,
            syn::Item::Use(u) => &u.attrs,
            syn::Item::Struct(s) => &s.attrs,
            syn::Item::Enum(e) => &e.attrs,
            syn::Item::Const(c) => &c.attrs,
            syn::Item::Static(s) => &s.attrs,
            syn::Item::Trait(t) => &t.attrs,
            _ => return syn::visit::visit_item(self, i),
        };
        if is_cfg_test(attrs) {
            return;
        }
        syn::visit::visit_item(self, i);
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        let mut found = Vec::new();
        use_paths(&u.tree, &mut Vec::new(), &mut found);
        let public = !matches!(u.vis, syn::Visibility::Inherited);
        for (name, path) in found {
            if public && name != "*" {
                self.reexports.push((name, path.clone()));
            }
            self.paths.push(path);
        }
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        self.paths
            .push(p.segments.iter().map(|s| s.ident.to_string()).collect());
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        macro_paths(m.tokens.clone(), &mut self.paths);
        syn::visit::visit_macro(self, m);
    }
}

/// `crate::a::b`-like token runs inside a macro call.
fn macro_paths(tokens: proc_macro2::TokenStream, out: &mut Vec<Vec<String>>) {
    use proc_macro2::TokenTree;
    let toks: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            TokenTree::Group(g) => macro_paths(g.stream(), out),
            TokenTree::Ident(id) if matches!(id.to_string().as_str(), "crate" | "super") => {
                let mut path = vec![id.to_string()];
                let mut j = i + 1;
                while j + 2 < toks.len() + 1 {
                    let colons = matches!((&toks.get(j), &toks.get(j + 1)),
                        (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b))) if a.as_char() == ':' && b.as_char() == ':');
                    match (colons, toks.get(j + 2)) {
                        (true, Some(TokenTree::Ident(next))) => {
                            path.push(next.to_string());
                            j += 3;
                        }
                        _ => break,
                    }
                }
                out.push(path);
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
}

/// The module a source file defines, relative to its crate's root.
fn module_of(root: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(root).expect("file under root");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("file name");
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") || !parts.is_empty() && stem != "mod" {
        parts.push(stem.to_string());
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// A crate's modules, the references between them, and its re-exports.
struct CrateGraph {
    modules: BTreeSet<Module>,
    refs: Vec<Reference>,
    reexports: BTreeMap<(Module, String), Vec<String>>,
}

fn parse_crate(root: &Path) -> CrateGraph {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    files.sort();
    let mut g = CrateGraph {
        modules: BTreeSet::new(),
        refs: Vec::new(),
        reexports: BTreeMap::new(),
    };
    let mut raw = Vec::new();
    for file in files {
        let module = module_of(root, &file);
        let src = std::fs::read_to_string(&file).expect("read source");
        let ast = syn::parse_file(&src).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut refs = FileRefs::default();
        refs.visit_file(&ast);
        g.modules.insert(module.clone());
        raw.push((module, file, refs));
    }
    for (module, file, refs) in raw {
        for (name, path) in refs.reexports {
            if let Some(abs) = absolute(&g.modules, &module, &path) {
                g.reexports.insert((module.clone(), name), abs);
            }
        }
        for path in refs.paths {
            if let Some(abs) = absolute(&g.modules, &module, &path) {
                g.refs.push(Reference {
                    from: module.clone(),
                    path: abs,
                    file: file.clone(),
                });
            }
        }
    }
    g
}

/// A `crate::`, `super::`, `self::` or child-module path as a path from
/// the crate root; `None` for paths into other crates.
fn absolute(modules: &BTreeSet<Module>, module: &Module, path: &[String]) -> Option<Vec<String>> {
    let (first, rest) = path.split_first()?;
    let mut base: Vec<String> = match first.as_str() {
        "crate" => Vec::new(),
        "self" => module.clone(),
        "super" => module[..module.len().checked_sub(1)?].to_vec(),
        child => {
            let mut m = module.clone();
            m.push(child.to_string());
            if !modules.contains(&m) {
                return None;
            }
            return Some([m, rest.to_vec()].concat());
        }
    };
    let mut rest = rest;
    while let Some(("super", tail)) = rest.split_first().map(|(h, t)| (h.as_str(), t)) {
        base.pop();
        rest = tail;
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

impl CrateGraph {
    /// The module a path points into, following re-exports.
    fn target(&self, path: &[String]) -> Module {
        let mut path = path.to_vec();
        for _ in 0..8 {
            let mut len = path.len();
            while len > 0 && !self.modules.contains(&path[..len]) {
                len -= 1;
            }
            let module = path[..len].to_vec();
            match path.get(len) {
                Some(name) => match self.reexports.get(&(module.clone(), name.clone())) {
                    Some(to) if to.as_slice() != &path[..=len] => {
                        let mut next = to.clone();
                        next.extend(path[len + 1..].iter().cloned());
                        path = next;
                    }
                    _ => return module,
                },
                None => return module,
            }
        }
        path
    }

    /// Sibling edges: (common ancestor, from child, to child) → one reference.
    fn edges(&self) -> BTreeMap<(Module, String, String), Reference> {
        let mut edges = BTreeMap::new();
        for r in &self.refs {
            let to = self.target(&r.path);
            let common = r.from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common == r.from.len() || common == to.len() {
                continue; // itself, an ancestor or a descendant
            }
            edges
                .entry((
                    r.from[..common].to_vec(),
                    r.from[common].clone(),
                    to[common].clone(),
                ))
                .or_insert_with(|| r.clone());
        }
        edges
    }

    /// Every loop among sibling modules, each as its modules in order.
    fn cycles(&self) -> Vec<String> {
        let edges = self.edges();
        let mut by_parent: BTreeMap<&Module, BTreeMap<&str, Vec<&str>>> = BTreeMap::new();
        for (parent, from, to) in edges.keys() {
            by_parent
                .entry(parent)
                .or_default()
                .entry(from)
                .or_default()
                .push(to);
        }
        let mut found = Vec::new();
        for (parent, graph) in by_parent {
            for cycle in find_cycles(&graph) {
                let steps: Vec<String> = cycle
                    .windows(2)
                    .map(|w| {
                        let r = &edges[&(parent.clone(), w[0].to_string(), w[1].to_string())];
                        format!(
                            "{} -> {} ({} names {})",
                            w[0],
                            w[1],
                            r.file.display(),
                            r.path.join("::")
                        )
                    })
                    .collect();
                found.push(format!(
                    "in crate::{}: {}",
                    parent.join("::"),
                    steps.join("; ")
                ));
            }
        }
        found
    }
}

/// Strongly connected components with more than one member, each closed
/// into a loop through a depth-first path (Tarjan's algorithm).
fn find_cycles<'a>(graph: &BTreeMap<&'a str, Vec<&'a str>>) -> Vec<Vec<&'a str>> {
    struct Tarjan<'a, 'g> {
        graph: &'g BTreeMap<&'a str, Vec<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        sccs: Vec<Vec<&'a str>>,
    }
    impl<'a> Tarjan<'a, '_> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for &w in self.graph.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let l = self.low[v].min(self.low[w]);
                    self.low.insert(v, l);
                } else if self.on_stack.contains(w) {
                    let l = self.low[v].min(self.index[w]);
                    self.low.insert(v, l);
                }
            }
            if self.low[v] == self.index[v] {
                let mut scc = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    scc.push(w);
                    if w == v {
                        break;
                    }
                }
                if scc.len() > 1 {
                    self.sccs.push(scc);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        sccs: Vec::new(),
    };
    for &v in graph.keys() {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    t.sccs
        .into_iter()
        .map(|scc| loop_through(graph, &scc))
        .collect()
}

/// A loop from the component's first member back to itself, inside it.
fn loop_through<'a>(graph: &BTreeMap<&'a str, Vec<&'a str>>, scc: &[&'a str]) -> Vec<&'a str> {
    let members: BTreeSet<&str> = scc.iter().copied().collect();
    let start = scc[0];
    // Breadth-first from start's successors back to start, inside the component.
    let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &w in graph.get(v).into_iter().flatten() {
            if !members.contains(w) || prev.contains_key(w) {
                continue;
            }
            prev.insert(w, v);
            if w == start {
                let mut path = vec![start];
                let mut at = v;
                while at != start {
                    path.push(at);
                    at = prev[at];
                }
                path.push(start);
                path.reverse();
                return path;
            }
            queue.push_back(w);
        }
    }
    scc.to_vec()
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn no_crate_has_a_module_cycle() {
    let mut all = Vec::new();
    for krate in CRATES {
        let root = workspace().join(krate);
        assert!(root.is_dir(), "{} is missing", root.display());
        let g = parse_crate(&root);
        assert!(
            g.modules.len() < 3 || !g.edges().is_empty(),
            "{krate}: no module uses another; is the parser reading the sources?"
        );
        all.extend(g.cycles().into_iter().map(|c| format!("{krate}: {c}")));
    }
    assert!(all.is_empty(), "module import cycles:\n{}", all.join("\n"));
}

/// The checker itself finds a loop through a re-export, a `super::` path, a
/// macro argument and a `use` group, and ignores parent–child use and tests.
#[test]
fn checker_sees_cycles_and_only_cycles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let write = |p: &str, s: &str| {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, s).expect("write");
    };
    write(
        "lib.rs",
        "pub mod a; pub mod b; pub mod c; pub mod d; pub use c::Thing;",
    );
    write(
        "a/mod.rs",
        "mod inner; use crate::{b::{self}, d};\nfn f() { inner::g() }",
    );
    write("a/inner.rs", "use super::f; pub fn g() {}");
    write(
        "b.rs",
        "pub fn h() { tracing::info!(\"{}\", crate::Thing::new()) }",
    );
    write("c.rs", "pub struct Thing; fn x() { super::a::f() }");
    write("d.rs", "#[cfg(test)] mod tests { use crate::a; }");
    let g = parse_crate(root);
    let cycles = g.cycles();
    assert_eq!(cycles.len(), 1, "{cycles:#?}");
    for m in ["a -> b", "b -> c", "c -> a"] {
        assert!(cycles[0].contains(m), "{m} missing from {}", cycles[0]);
    }
    // Break the loop: b no longer names the re-exported Thing.
    write("b.rs", "pub fn h() {}");
    assert!(parse_crate(root).cycles().is_empty());
}
