//! The runtime's modules form layers: `lib.rs` declares its top-level modules from the bottom
//! up, and a module may use only those declared before it. This reads the sources and fails on
//! any reference to a later module, so a cycle cannot come back unnoticed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level modules in the order `lib.rs` declares them.
fn layers() -> Vec<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    lib.lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line.strip_prefix("pub mod ").or_else(|| line.strip_prefix("mod "))?;
            Some(rest.strip_suffix(';')?.to_string())
        })
        .collect()
}

fn files(module: &str) -> Vec<PathBuf> {
    let file = src().join(format!("{module}.rs"));
    if file.exists() {
        return vec![file];
    }
    let mut found = Vec::new();
    let mut dirs = vec![src().join(module)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    found
}

/// The top-level modules named after `crate::` in `text`, also inside `use crate::{a, b::c}`.
fn uses(text: &str, layers: &[String]) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
            let end = group.find("};").unwrap_or(group.len());
            group[..end]
                .split(',')
                .map(|p| p.trim().split("::").next().unwrap_or("").trim_start_matches('{'))
                .collect()
        } else {
            vec![
                rest.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .next()
                    .unwrap_or(""),
            ]
        };
        found.extend(
            names
                .into_iter()
                .filter(|n| layers.iter().any(|l| l == n))
                .map(str::to_string),
        );
    }
    found
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let layers = layers();
    assert!(layers.len() >= 10, "lib.rs should declare the layers: {layers:?}");
    let mut wrong = Vec::new();
    for (level, module) in layers.iter().enumerate() {
        let files = files(module);
        assert!(!files.is_empty(), "no source for module `{module}`");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for used in uses(&text, &layers) {
                let used_level = layers.iter().position(|l| *l == used).unwrap();
                if used_level > level {
                    wrong.push(format!("{} uses `{used}`, a layer above `{module}`", file.display()));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "upward references:\n{}", wrong.join("\n"));
}

#[test]
fn the_check_sees_grouped_and_plain_paths() {
    let layers: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    let found = uses("use crate::{a::X, b};\nfn f() { crate::c::g(); } // crate::a", &layers);
    assert_eq!(found, ["a", "b", "c"].map(String::from).into_iter().collect());
    assert!(uses("// crate::a only in a comment", &layers).is_empty());
}
