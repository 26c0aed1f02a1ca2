//! The crate's top-level modules form no cycle: each may use only modules
//! that do not use it back, directly or through others, so flows, the web
//! page and many hosts can each be added at one place in the layering.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::helper::repo;

/// Which top-level modules each one names (`crate::x`), tests left out.
fn uses() -> BTreeMap<String, BTreeSet<String>> {
    let src = repo().join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let top = top_module(&src, &path);
            if top == "lib" || top == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let used = graph.entry(top.clone()).or_default();
            for (at, _) in code.match_indices("crate::") {
                let name: String = code[at + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !name.is_empty() && name != top {
                    used.insert(name);
                }
            }
        }
    }
    graph
}

fn top_module(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap().as_os_str();
    first.to_string_lossy().trim_end_matches(".rs").to_string()
}

#[test]
fn the_top_level_modules_form_no_cycle() {
    let graph = uses();
    assert!(graph.len() > 10, "{graph:?}");
    // Depth-first, with the path so far: a module met again on it closes
    // a cycle.
    fn visit(
        graph: &BTreeMap<String, BTreeSet<String>>,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if let Some(at) = path.iter().position(|n| n == node) {
            panic!("import cycle: {} -> {node}", path[at..].join(" -> "));
        }
        if !done.insert(node.to_string()) {
            return;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if graph.contains_key(next) {
                visit(graph, next, path, done);
            }
        }
        path.pop();
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(&graph, node, &mut Vec::new(), &mut done);
    }
}
