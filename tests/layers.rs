//! The layer rule of ARCHITECTURE.md, checked on the source: every `crate::…` path in
//! `src/**/*.rs` (in `use` lines and inline, as `crate::tuning::weights_hash(m)`) is an arrow
//! from the file's top-level module to the one it names. The engines never import the
//! language, `model` imports no layer built on it, and the top-level modules form no cycle
//! (ARCHITECTURE.md allows none). Inside `model` the same holds for its parts (`loading`,
//! `forward`, `arch`, …, and `Model` in `mod.rs`), with `super::` chains and re-exported names
//! resolved to the part they come from.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The engine layers (and `plot`, drawn beside them under `eval`): they work without the
/// language, so they never import it.
const ENGINES: [&str; 10] = [
    "model",
    "attribution",
    "analysis",
    "circuit",
    "study",
    "tuning",
    "plot",
    "report",
    "files",
    "alloc",
];
/// The language and its front-ends.
const LANGUAGE: [&str; 5] = ["eval", "syntax", "repl", "cli", "session"];
/// The layers built on `model`: `model` knows nothing of them.
const ON_MODEL: [&str; 5] = ["attribution", "analysis", "circuit", "tuning", "study"];

/// One arrow: `from` names `to` at `at` (`src/eval/verbs/graph.rs:412`).
#[derive(Debug, Clone)]
struct Import {
    from: String,
    to: String,
    at: String,
}

/// The top-level module a file of `src/` belongs to (`eval` for `eval/verbs/graph.rs`,
/// `files` for `files.rs`); `None` for the crate root (`lib.rs`) and the binary (`main.rs`).
fn top_module(rel: &str) -> Option<String> {
    let first = rel.split('/').next()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_string())
}

/// The text without `//` comments (doc comments and intra-doc links included), lines kept so
/// positions still give line numbers.
fn without_comments(text: &str) -> String {
    text.lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first segments of the path that starts at `rest` (just after a `::`): `model::X` gives
/// `model`; a group `{files, model::{Model, hooks}}` gives `files` and `model`.
fn first_segments(rest: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    if let Some(group) = rest.strip_prefix('{') {
        // The top-level items of the group, up to its closing brace.
        let (mut depth, mut start) = (0usize, 0usize);
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    out.push(ident(&group[start..i]));
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    out.push(ident(&group[start..i]));
                    start = i + 1;
                }
                _ => {}
            }
        }
    } else {
        out.push(ident(rest));
    }
    out.retain(|name| !name.is_empty());
    out
}

/// Every path in `code` that starts with `prefix` (`crate::`, `crate::model::`): its first
/// segments after the prefix, with the line.
fn paths_after(code: &str, prefix: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `mycrate::`, not the crate root
        }
        let line = code[..at].matches('\n').count() + 1;
        for name in first_segments(&code[at + prefix.len()..]) {
            out.push((name, line));
        }
    }
    out
}

/// The first segment of every `crate::` path in `code`, with its line: `crate::model::X` gives
/// `model`; `crate::{files, model::Model}` gives `files` and `model`.
fn crate_paths(code: &str) -> Vec<(String, usize)> {
    paths_after(code, "crate::")
}

/// Every arrow between two different top-level modules among `files` (path relative to
/// `src/`, text).
fn imports(files: &[(String, String)]) -> Vec<Import> {
    let tops: BTreeSet<String> = files.iter().filter_map(|(p, _)| top_module(p)).collect();
    let mut out = Vec::new();
    for (rel, text) in files {
        let Some(from) = top_module(rel) else {
            continue;
        };
        for (to, line) in crate_paths(&without_comments(text)) {
            if to != from && tops.contains(&to) {
                out.push(Import {
                    from: from.clone(),
                    to,
                    at: format!("src/{rel}:{line}"),
                });
            }
        }
    }
    out
}

/// The imports that break the layer rule, each saying which rule and where.
fn violations(imports: &[Import]) -> Vec<String> {
    let mut out = Vec::new();
    for i in imports {
        let (from, to) = (i.from.as_str(), i.to.as_str());
        if ENGINES.contains(&from) && LANGUAGE.contains(&to) {
            out.push(format!(
                "{}: the engine `{from}` imports the language (`{to}`)",
                i.at
            ));
        }
        if from == "model" && ON_MODEL.contains(&to) {
            out.push(format!(
                "{}: `model` imports `{to}`, a layer built on it",
                i.at
            ));
        }
    }
    out
}

/// The module graph's cycles: its strongly connected components of more than one module
/// (Tarjan's algorithm), each with an import on it as evidence.
fn cycles(imports: &[Import]) -> Vec<Vec<String>> {
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for i in imports {
        graph.entry(&i.from).or_default().insert(&i.to);
        graph.entry(&i.to).or_default();
    }
    struct Tarjan<'a> {
        graph: &'a BTreeMap<&'a str, BTreeSet<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        components: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for &w in &self.graph[v] {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.components.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph: &graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for &v in graph.keys() {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    t.components
}

/// Every `.rs` file under `dir`, as (path relative to `src/`, text), sorted.
fn sources(src: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(src, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(src).expect("under src");
            let rel = rel.to_string_lossy().replace('\\', "/");
            out.push((rel, std::fs::read_to_string(&path).expect("source")));
        }
    }
    out.sort();
}

/// The cycles, each with the imports on it (for a readable failure).
fn explain(cycles: &[Vec<String>], imports: &[Import]) -> String {
    let mut out = String::new();
    for c in cycles {
        out.push_str(&format!("cycle among {c:?}:\n"));
        let mut shown = BTreeSet::new();
        for i in imports
            .iter()
            .filter(|i| c.contains(&i.from) && c.contains(&i.to))
        {
            // One place per arrow: the first.
            if shown.insert((&i.from, &i.to)) {
                out.push_str(&format!("  {} -> {} at {}\n", i.from, i.to, i.at));
            }
        }
    }
    out
}

// ---- Inside `model` (ARCHITECTURE.md): its parts import only parts below them ----

/// The part of `model` a file of `src/model/` is in (`loading` for `loading/gguf.rs`, `config`
/// for `config.rs`; `Model` for `mod.rs`, which holds the `Model` type), and its module path
/// below `model` (`["loading", "gguf"]`; `[]` for `mod.rs`).
fn model_file(rel: &str) -> Option<(String, Vec<String>)> {
    let inner = rel.strip_prefix("model/")?.strip_suffix(".rs")?;
    let mut path: Vec<String> = inner.split('/').map(str::to_string).collect();
    if path.last().is_some_and(|s| s == "mod") {
        path.pop();
    }
    let part = path.first().cloned().unwrap_or_else(|| "Model".to_string());
    Some((part, path))
}

/// A statement of `code` (text between `;`s) without its leading attributes.
fn statement(chunk: &str) -> &str {
    let mut s = chunk.trim_start();
    while s.starts_with("#[") {
        s = s.find('\n').map_or("", |i| s[i..].trim_start());
    }
    s
}

/// `model/mod.rs` read for arrows: every name it re-exports (`pub use loading::load::{load,
/// LoadOptions}` maps `load` and `LoadOptions` to `loading`), and the rest of its code (what
/// `Model` itself uses).
fn model_root(code: &str) -> (BTreeMap<String, String>, String) {
    let mut names = BTreeMap::new();
    let mut body = String::new();
    for chunk in code.split(';') {
        let s = statement(chunk);
        let reexport = s
            .strip_prefix("pub use ")
            .or_else(|| s.strip_prefix("pub(crate) use "));
        if let Some(rest) = reexport {
            let part = first_segments(rest).into_iter().next().unwrap_or_default();
            let after_part = rest.split_once("::").map_or("", |(_, r)| r);
            for name in after_part
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .filter(|w| !w.is_empty() && *w != "self" && *w != "as")
            {
                names.insert(name.to_string(), part.clone());
            }
        } else if !(s.starts_with("mod ") || s.starts_with("pub mod ")) {
            body.push_str(chunk);
            body.push(';');
        }
    }
    (names, body)
}

/// The arrows between the parts of `model` among `files` (paths relative to `src/`): paths
/// `crate::model::…` and `super::…` resolved to the part they name, a re-exported name to the
/// part it comes from.
fn model_imports(files: &[(String, String)]) -> Vec<Import> {
    let parts: BTreeSet<String> = files
        .iter()
        .filter_map(|(rel, _)| model_file(rel))
        .map(|(part, _)| part)
        .collect();
    let root = files
        .iter()
        .find(|(rel, _)| rel == "model/mod.rs")
        .map(|(_, text)| model_root(&without_comments(text)))
        .unwrap_or_default();
    let part_of = |name: &str| -> String {
        if parts.contains(name) {
            name.to_string()
        } else {
            root.0
                .get(name)
                .cloned()
                .unwrap_or_else(|| "Model".to_string())
        }
    };
    let mut out = Vec::new();
    let mut arrow = |from: &str, to: String, at: String| {
        if from != to {
            out.push(Import {
                from: from.to_string(),
                to,
                at,
            });
        }
    };
    // `Model` uses what its own code names among the re-exports.
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    for (name, part) in &root.0 {
        let used = root.1.match_indices(name.as_str()).any(|(at, _)| {
            let before = root.1[..at].chars().next_back();
            let after = root.1[at + name.len()..].chars().next();
            !before.is_some_and(is_word) && !after.is_some_and(is_word)
        });
        if used {
            arrow("Model", part.clone(), format!("src/model/mod.rs: {name}"));
        }
    }
    for (rel, text) in files {
        let Some((from, path)) = model_file(rel) else {
            continue;
        };
        if rel == "model/mod.rs" {
            continue;
        }
        let code = without_comments(text);
        for (name, line) in paths_after(&code, "crate::model::") {
            arrow(&from, part_of(&name), format!("src/{rel}:{line}"));
        }
        // `super::super::x`: up from this file's module, then `x`.
        for (at, _) in code.match_indices("super::") {
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| is_word(c) || c == ':') {
                continue; // inside a chain, counted from its start
            }
            let mut rest = &code[at..];
            let mut up = 0;
            while let Some(r) = rest.strip_prefix("super::") {
                rest = r;
                up += 1;
            }
            let Some(base) = path.len().checked_sub(up) else {
                continue; // above `model`: a top-level path, checked with the layers
            };
            let line = code[..at].matches('\n').count() + 1;
            for name in first_segments(rest) {
                let to = match path[..base].first() {
                    Some(part) => part.clone(),
                    None => part_of(&name),
                };
                arrow(&from, to, format!("src/{rel}:{line}"));
            }
        }
    }
    out
}

#[test]
fn the_source_follows_the_layer_rule_and_has_no_module_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &src, &mut files);
    let imports = imports(&files);
    // The arrows the layering rests on are found, so the check is not passing on an empty graph.
    for (from, to) in [
        ("session", "eval"),
        ("eval", "model"),
        ("eval", "syntax"),
        ("attribution", "model"),
        ("repl", "cli"),
    ] {
        assert!(
            imports.iter().any(|i| i.from == from && i.to == to),
            "no {from} -> {to} import found: the scan is broken"
        );
    }
    let bad = violations(&imports);
    assert!(bad.is_empty(), "layer rule broken:\n{}", bad.join("\n"));
    let cycles = cycles(&imports);
    assert!(
        cycles.is_empty(),
        "import cycles between top-level modules:\n{}",
        explain(&cycles, &imports)
    );
}

/// The check itself: a forbidden import (inline or grouped) and a cycle are reported; comments
/// and other crates' paths are not imports.
#[test]
fn the_layer_check_reports_a_forbidden_import_and_a_cycle() {
    let file = |p: &str, t: &str| (p.to_string(), t.to_string());
    let files = vec![
        file("model/forward/x.rs", "use crate::eval::Value;\n"),
        file(
            "model/y.rs",
            "/// see [`crate::analysis`]\n// crate::study::x\nfn f() {\n    let _ = crate::attribution::run();\n    mycrate::tuning::x();\n}\n",
        ),
        file("attribution/z.rs", "use crate::{\n    files,\n    model::{Model, hooks},\n};\n"),
        file("eval/mod.rs", "use crate::model;\n"),
        file("files.rs", ""),
        file("lib.rs", "pub use crate::eval::Value;\n"),
    ];
    let imports = imports(&files);
    let found: Vec<(String, String, String)> = imports
        .iter()
        .map(|i| (i.from.clone(), i.to.clone(), i.at.clone()))
        .collect();
    let want = |f: &str, t: &str, at: &str| (f.to_string(), t.to_string(), at.to_string());
    assert_eq!(
        found,
        vec![
            want("model", "eval", "src/model/forward/x.rs:1"),
            want("model", "attribution", "src/model/y.rs:4"),
            want("attribution", "files", "src/attribution/z.rs:1"),
            want("attribution", "model", "src/attribution/z.rs:1"),
            want("eval", "model", "src/eval/mod.rs:1"),
        ]
    );
    assert_eq!(
        violations(&imports),
        vec![
            "src/model/forward/x.rs:1: the engine `model` imports the language (`eval`)",
            "src/model/y.rs:4: `model` imports `attribution`, a layer built on it",
        ]
    );
    // model -> eval -> model and model -> attribution -> model: one component of three.
    assert_eq!(
        cycles(&imports),
        vec![vec![
            "attribution".to_string(),
            "eval".to_string(),
            "model".to_string()
        ]]
    );
    // Without the two forbidden imports, no cycle is left.
    let allowed: Vec<Import> = imports.into_iter().filter(|i| i.from != "model").collect();
    assert!(cycles(&allowed).is_empty());
}

#[test]
fn the_parts_of_model_import_in_one_direction() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &src, &mut files);
    let imports = model_imports(&files);
    // Arrows ARCHITECTURE.md draws are found, so the check is not passing on an empty graph.
    for (from, to) in [
        ("loading", "Model"),
        ("loading", "arch"),
        ("forward", "kernels"),
        ("Model", "config"),
        ("Model", "weights"),
        ("arch", "config"),
        ("weights", "kernels"),
    ] {
        assert!(
            imports.iter().any(|i| i.from == from && i.to == to),
            "no {from} -> {to} arrow found inside model: the scan is broken"
        );
    }
    let cycles = cycles(&imports);
    assert!(
        cycles.is_empty(),
        "import cycles between the parts of model:\n{}",
        explain(&cycles, &imports)
    );
}

/// Inside `model`, a path through a re-export (`crate::model::load` is `loading`'s) and a
/// `super::super::` chain resolve to the part they name, so a cycle through them is reported.
#[test]
fn the_model_check_resolves_reexports_and_super_chains() {
    let file = |p: &str, t: &str| (p.to_string(), t.to_string());
    let files = vec![
        file(
            "model/mod.rs",
            "pub mod config;\npub use loading::load::{\n    load, LoadOptions,\n};\npub use config::ModelConfig;\n#[derive(Debug)]\npub struct Model {\n    c: ModelConfig,\n}\n",
        ),
        file("model/config.rs", "use crate::model::load;\n"),
        file("model/loading/load.rs", "use super::super::Model;\nuse super::gguf;\n"),
        file("model/loading/gguf.rs", ""),
    ];
    let imports = model_imports(&files);
    let arrows: Vec<(String, String)> = imports
        .iter()
        .map(|i| (i.from.clone(), i.to.clone()))
        .collect();
    let arrow = |f: &str, t: &str| (f.to_string(), t.to_string());
    assert_eq!(
        arrows,
        vec![
            arrow("Model", "config"),
            arrow("config", "loading"),
            arrow("loading", "Model"),
        ]
    );
    assert_eq!(
        cycles(&imports),
        vec![vec![
            "Model".to_string(),
            "config".to_string(),
            "loading".to_string()
        ]]
    );
}
