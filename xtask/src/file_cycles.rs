//! No cycle between the files of a crate: if `a.rs` uses `b.rs`, nothing
//! `b.rs` uses, however indirectly, uses `a.rs`. A file may use its
//! ancestors (a module's children see their parent's items): only files
//! that are not one another's ancestors count.
//!
//! The uses are read from the source, not the compiler: every path that
//! starts with `crate::`, `super::` or `self::`, in `use` trees (braces
//! expanded) and in code, outside comments and a file's `mod tests`.
//! Written here rather than taken from a crate: the ones that draw module
//! graphs (cargo-modules) need rust-analyzer's whole front end.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};

/// A module path, `a::b` (the crate root is empty).
type Module = String;

/// The modules of the crate whose sources are under `src`, by file.
fn modules(src: &Path) -> Result<BTreeMap<Module, String>> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| dir.display().to_string())? {
            let path = entry?.path();
            // `src/bin/*` are crates of their own.
            if path.is_dir() && path != src.join("bin") {
                dirs.push(path);
                continue;
            }
            // So is `main.rs` beside a `lib.rs`.
            if path == src.join("main.rs") && src.join("lib.rs").exists() {
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src)?.with_extension("");
            let mut parts: Vec<String> = relative
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            // Tests of a module are not part of its dependencies.
            if parts.last().is_some_and(|p| p == "tests") {
                continue;
            }
            if parts
                .last()
                .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
            {
                parts.pop();
            }
            let text = std::fs::read_to_string(&path)?;
            found.insert(parts.join("::"), text);
        }
    }
    Ok(found)
}

/// The source without comments and without a trailing `mod tests`.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `a::{b, c::{d}}` as `a::b` and `a::c::d`.
fn expand(tree: &str, out: &mut Vec<String>) {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    expand_in("", &tree, out);
}

fn expand_in(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let Some(open) = tree.find('{') else {
        out.push(format!("{prefix}{tree}"));
        return;
    };
    let head = &tree[..open];
    let inner = tree[open + 1..]
        .strip_suffix('}')
        .unwrap_or(&tree[open + 1..]);
    // Split on the commas at depth zero.
    let (mut depth, mut start) = (0, 0);
    let mut items = Vec::new();
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    for item in items.into_iter().filter(|i| !i.is_empty()) {
        expand_in(&format!("{prefix}{head}"), item, out);
    }
}

/// Every `crate::`, `super::` or `self::` path in `code`.
fn paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    // `use` trees, braces and all: from a line's `use` to its `;`.
    let mut offset = 0;
    for line in code.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let tree = ["use ", "pub use ", "pub(crate) use ", "pub(super) use "]
            .iter()
            .find_map(|p| trimmed.strip_prefix(p));
        if let Some(tree) = tree {
            let start = offset + (line.len() - tree.len());
            let end = code[start..].find(';').map_or(code.len(), |e| start + e);
            expand(&code[start..end], &mut out);
        }
        offset += line.len();
    }
    // Paths written out in code.
    let bytes = code.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            let end = code[at..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| at + e);
            out.push(code[at..end].to_string());
        }
    }
    out
}

/// The module file `path`, used from `from`, names (the longest module
/// prefix of it), if any.
fn target(from: &str, path: &str, known: &BTreeMap<Module, String>) -> Option<Module> {
    let mut segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: Vec<&str> = if from.is_empty() {
        Vec::new()
    } else {
        from.split("::").collect()
    };
    match segments.first() {
        Some(&"crate") => {
            base.clear();
            segments.remove(0);
        }
        Some(&"self") => {
            segments.remove(0);
        }
        Some(&"super") => {
            while segments.first() == Some(&"super") {
                base.pop();
                segments.remove(0);
            }
        }
        _ => return None,
    }
    (0..=segments.len()).rev().find_map(|n| {
        let module = base
            .iter()
            .chain(&segments[..n])
            .copied()
            .collect::<Vec<_>>()
            .join("::");
        known.contains_key(&module).then_some(module)
    })
}

/// Whether `ancestor` is `module` or one of its ancestors.
fn is_ancestor(ancestor: &str, module: &str) -> bool {
    ancestor.is_empty() || module == ancestor || module.starts_with(&format!("{ancestor}::"))
}

/// The uses between the files of the crate under `src`: module → modules.
fn graph(src: &Path) -> Result<BTreeMap<Module, BTreeSet<Module>>> {
    let known = modules(src)?;
    let mut edges = BTreeMap::new();
    for (module, text) in &known {
        let uses: BTreeSet<Module> = paths(&code(text))
            .iter()
            .filter_map(|p| target(module, p, &known))
            .filter(|t| !is_ancestor(t, module) && !is_ancestor(module, t))
            .collect();
        edges.insert(module.clone(), uses);
    }
    Ok(edges)
}

/// The sets of files that use one another in a cycle (Tarjan's strongly
/// connected components of more than one file).
fn cycles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct Walk<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<Module>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            for w in self.edges.get(v).into_iter().flatten() {
                if !self.index.contains_key(w.as_str()) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w.as_str()]);
                    self.low.insert(v, low);
                } else if self.stack.contains(&w.as_str()) {
                    let low = self.low[v].min(self.index[w.as_str()]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    component.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.found
}

/// The cycles between the files of the crate under `src`.
pub fn in_crate(src: &Path) -> Result<Vec<Vec<Module>>> {
    Ok(cycles(&graph(src)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crate_of(files: &[(&str, &str)]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "oblivion-cycles-{}-{}",
            std::process::id(),
            files.len()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn use_trees_expand() {
        let mut out = Vec::new();
        expand("super::{Coordinator, budget::{Plan, x}, lock}", &mut out);
        assert_eq!(
            out,
            [
                "super::Coordinator",
                "super::budget::Plan",
                "super::budget::x",
                "super::lock"
            ]
        );
    }

    #[test]
    fn a_cycle_between_siblings_is_found_and_uses_of_a_parent_are_not() {
        let dir = crate_of(&[
            (
                "lib.rs",
                "mod a;\nmod b;\nmod c;\nmod d;\nuse crate::a::A;\n",
            ),
            (
                "a.rs",
                "use crate::b::B; // crate::d in a comment\npub struct A;\n",
            ),
            (
                "b.rs",
                "pub struct B;\nfn f() {\n    use crate::c::g;\n    g()\n}\n",
            ),
            ("c.rs", "use super::{a::A, d};\npub fn g() {}\n"),
            ("d/mod.rs", "mod e;\npub struct D;\n"),
            ("d/e.rs", "use super::D;\nuse crate::a::A;\n"),
        ]);
        let found = in_crate(&dir).unwrap();
        assert_eq!(found, [vec!["a", "b", "c"]]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
