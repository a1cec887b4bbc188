//! The layering rule of ARCHITECTURE.md, checked on the source: each top-level module of
//! `src/` may name (as `crate::X`) only the modules below it, so no part reaches up and
//! there is no cycle between top-level modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What each top-level module may depend on.
const ALLOWED: &[(&str, &[&str])] = &[
    (
        "cli",
        &[
            "protocol", "handlers", "api", "core", "store", "secrets", "openclaw", "fsread", "seal",
        ],
    ),
    ("protocol", &["handlers", "api", "core", "openclaw"]),
    (
        "handlers",
        &[
            "api", "core", "store", "secrets", "openclaw", "fsread", "seal",
        ],
    ),
    ("api", &["core", "openclaw"]),
    ("store", &["core", "fsread", "seal"]),
    ("seal", &["core", "fsread"]),
    ("secrets", &["core", "fsread"]),
    ("openclaw", &["core"]),
    ("fsread", &[]),
    ("core", &[]),
];

fn rs_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Top-level module → the top-level modules its non-test code names.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    rs_files(&src, &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let top = first.trim_end_matches(".rs").to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        let deps = g.entry(top.clone()).or_default();
        for line in code.lines() {
            let line = line.split("//").next().unwrap();
            for (i, _) in line.match_indices("crate::") {
                let rest = &line[i + "crate::".len()..];
                let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                    group.split([',', '}']).collect()
                } else {
                    vec![rest]
                };
                for n in names {
                    let m: String = n
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    if !m.is_empty() && m != top {
                        deps.insert(m);
                    }
                }
            }
        }
    }
    g
}

#[test]
fn every_top_level_module_depends_only_on_the_layers_below_it() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let g = graph();
    let mut wrong = vec![];
    for (m, deps) in &g {
        let ok = allowed.get(m.as_str()).unwrap_or_else(|| {
            panic!("src/{m} is not in ARCHITECTURE.md's layers: add it to ALLOWED")
        });
        for d in deps {
            if !ok.contains(&d.as_str()) {
                wrong.push(format!("{m} -> {d}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "dependencies that reach up or sideways: {wrong:?}"
    );
    assert_eq!(
        g.len(),
        ALLOWED.len(),
        "a layer in ALLOWED has no source: {g:?}"
    );
}

#[test]
fn the_allowed_layers_have_no_cycle() {
    // Depth-first search over ALLOWED: if the allowed graph has no cycle, neither has the
    // real one (the test above keeps it inside ALLOWED).
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    fn visit<'a>(
        n: &'a str,
        a: &BTreeMap<&'a str, &'a [&'a str]>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        assert!(!path.contains(&n), "cycle: {path:?} -> {n}");
        if done.contains(n) {
            return;
        }
        path.push(n);
        for d in a[n].iter() {
            visit(d, a, path, done);
        }
        path.pop();
        done.insert(n);
    }
    let mut done = BTreeSet::new();
    for n in allowed.keys() {
        visit(n, &allowed, &mut vec![], &mut done);
    }
}
