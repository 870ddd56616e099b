//! The source tree's layering: no import cycle among the crate's top-level modules (the
//! order is the one `src/lib.rs` lists), so each layer can be read knowing only those
//! below it. Checked on the source text: every `crate::name` path (and every name inside a
//! `crate::{...}` group) in a module's files is an edge from that module to `name`.
//! Comments are skipped, so doc links do not count.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without comments (line comments, doc comments and block comments) and with
/// string literals emptied: only code names modules.
fn without_comments(source: &str) -> String {
    let source = source.replace("'\"'", "' '").replace("'\\\"'", "' '");
    let mut out = String::with_capacity(source.len());
    let mut rest = source.as_str();
    while let Some(i) = rest.find(['/', '"']) {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if rest.starts_with("//") {
            rest = rest.find('\n').map_or("", |n| &rest[n..]);
        } else if rest.starts_with("/*") {
            rest = rest.find("*/").map_or("", |n| &rest[n + 2..]);
        } else if rest.starts_with('"') {
            // A string literal: skipped whole (a "//" inside it is not a comment, a path
            // inside it is not an import).
            let end = rest[1..]
                .char_indices()
                .scan(false, |escaped, (j, c)| {
                    let close = c == '"' && !*escaped;
                    *escaped = c == '\\' && !*escaped;
                    Some((j, close))
                })
                .find(|&(_, close)| close)
                .map_or(rest.len(), |(j, _)| j + 2);
            out.push_str("\"\"");
            rest = &rest[end..];
        } else {
            out.push('/');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

fn identifier(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules each top-level module names through `crate::`.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let module_of = |path: &Path| -> Option<String> {
        let relative = path.strip_prefix(src).unwrap();
        let first = relative.components().next()?.as_os_str().to_str()?;
        match first {
            "lib.rs" | "bin" | "docs" => None,
            _ => Some(first.trim_end_matches(".rs").to_owned()),
        }
    };
    let modules: BTreeSet<String> = files.iter().filter_map(|p| module_of(p)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    for file in &files {
        let Some(from) = module_of(file) else {
            continue;
        };
        let code = without_comments(&fs::read_to_string(file).unwrap());
        let mut targets = Vec::new();
        for (i, _) in code.match_indices("crate::") {
            let after = &code[i + "crate::".len()..];
            if let Some(group) = after.strip_prefix('{') {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                targets.extend(group.split(',').map(|item| identifier(item.trim())));
            } else {
                targets.push(identifier(after));
            }
        }
        for to in targets {
            if to != from && modules.contains(to) {
                graph.get_mut(&from).unwrap().insert(to.to_owned());
            }
        }
    }
    graph
}

/// A cycle in `graph`, if there is one (depth-first search).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in &graph[node] {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_import_cycle_among_top_level_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    // The layers `lib.rs` describes are all there.
    for module in [
        "time", "error", "snapshot", "layout", "seqlock", "reader", "shared",
    ] {
        assert!(graph.contains_key(module), "no module {module}: {graph:?}");
    }
    assert_eq!(find_cycle(&graph), None, "the module graph: {graph:#?}");
}

/// The checker itself finds a cycle, a `crate::{...}` group, and ignores comments.
#[test]
fn the_checker_sees_cycles_and_skips_comments() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| fs::write(dir.path().join(name), text).unwrap();
    write("a.rs", "use crate::{b::X, other};\n");
    write("b.rs", "// crate::a in a comment\nlet s = \"crate::a\";\n");
    write("c.rs", "/* crate::a */ fn f() {}\n");
    let graph = module_graph(dir.path());
    assert_eq!(graph["a"], BTreeSet::from(["b".to_owned()]));
    assert!(graph["c"].is_empty());
    assert_eq!(find_cycle(&graph), None);
    // A string literal is not a path either; a real one makes the cycle.
    write("b.rs", "use crate::a::Y;\n");
    let graph = module_graph(dir.path());
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".to_owned(), "b".to_owned(), "a".to_owned()])
    );
}
