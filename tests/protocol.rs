//! The committed protocol documents stay true: `protocol/openrpc.json` is what
//! `modelauth schema` prints, and the golden transcripts in `protocol/examples/` replay
//! byte for byte (timestamps aside). Run with `MODELAUTH_BLESS=1` to rewrite them after an
//! intended change, then review the diff.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{json, Value};

fn protocol_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol")
}

fn bless() -> bool {
    std::env::var_os("MODELAUTH_BLESS").is_some()
}

#[test]
fn openrpc_json_is_what_modelauth_schema_prints() {
    let out = std::process::Command::new(bin())
        .arg("schema")
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let path = protocol_dir().join("openrpc.json");
    if bless() {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&printed).unwrap() + "\n",
        )
        .unwrap();
    }
    let committed: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(
        committed == printed,
        "protocol/openrpc.json differs from `modelauth schema`: regenerate it with `cargo run -- schema > protocol/openrpc.json` (or MODELAUTH_BLESS=1 cargo test --test protocol)"
    );
}

#[test]
fn rpc_discover_returns_the_same_document_and_lists_every_method() {
    let s = TempStore::new();
    let doc = ok(&s.path, "rpc.discover", json!({}));
    let out = std::process::Command::new(bin())
        .arg("schema")
        .output()
        .unwrap();
    assert_eq!(doc, serde_json::from_slice::<Value>(&out.stdout).unwrap());
    assert!(doc["openrpc"].as_str().unwrap().starts_with("1."));
    let info = ok(&s.path, "helper.info", json!({}));
    let names: Vec<&str> = doc["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    for m in info["methods"].as_array().unwrap() {
        assert!(
            names.contains(&m.as_str().unwrap()),
            "{m} missing from rpc.discover"
        );
    }
    for m in doc["methods"].as_array().unwrap() {
        assert_eq!(m["paramStructure"], "by-name");
        assert!(m["result"]["schema"].is_object(), "{}", m["name"]);
        for e in m["errors"].as_array().unwrap() {
            assert!(e["code"].is_i64() && e["data"]["kind"].is_string());
        }
    }
    // Every $ref points into components.schemas.
    let text = doc.to_string();
    for part in text.split("\"$ref\":\"").skip(1) {
        let r = part.split('"').next().unwrap();
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("bad ref {r}"));
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "dangling ref {r}"
        );
    }
}

/// Sets every `createdAt`/`updatedAt` to 0 so that transcripts compare across runs.
fn normalise(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "createdAt" || k == "updatedAt" {
                    *x = json!(0);
                } else {
                    normalise(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(normalise),
        _ => {}
    }
}

#[test]
fn golden_transcripts_replay() {
    let dir = protocol_dir().join("examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let Some(stem) = name.strip_suffix(".requests.jsonl") else {
            continue;
        };
        n += 1;
        let s = TempStore::new();
        let input = std::fs::read(&path).unwrap();
        let (lines, out) = serve_lines(&s.path, &input, &[]);
        assert!(out.status.success(), "{stem}");
        let resp_path = dir.join(format!("{stem}.responses.jsonl"));
        if bless() {
            // Rewrite only when something other than timestamps changed.
            let same = std::fs::read_to_string(&resp_path).is_ok_and(|old| {
                let norm = |l: &str| {
                    let mut v: Value = serde_json::from_str(l).unwrap_or(Value::Null);
                    normalise(&mut v);
                    v
                };
                old.lines().map(norm).eq(lines.iter().map(|l| norm(l)))
            });
            if !same {
                std::fs::write(&resp_path, lines.join("\n") + "\n").unwrap();
            }
        }
        let expected: Vec<String> = std::fs::read_to_string(&resp_path)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(lines.len(), expected.len(), "{stem}: number of responses");
        for (i, (got, want)) in lines.iter().zip(&expected).enumerate() {
            let mut g: Value = serde_json::from_str(got).unwrap();
            let mut w: Value = serde_json::from_str(want).unwrap();
            normalise(&mut g);
            normalise(&mut w);
            assert_eq!(g, w, "{stem}: response {} differs", i + 1);
        }
    }
    assert!(n >= 3, "transcripts found: {n}");
}

/// Every method that touches the store lists every store kind it can meet (issue 23: the
/// lists had drifted — `store_unavailable` was in none, `store_permissions` missing from
/// most). Methods that write also list `store_readonly`. And a kind a method really
/// returns is in its list: `profiles.list` in a 0777 directory is `store_permissions`.
#[test]
fn every_method_lists_the_store_kinds_it_can_return() {
    let doc: Value = serde_json::from_slice(
        &std::process::Command::new(bin())
            .arg("schema")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let kinds_of = |m: &Value| -> Vec<String> {
        m["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["data"]["kind"].as_str().unwrap().to_string())
            .collect()
    };
    let writers = [
        "profiles.put",
        "profiles.remove",
        "order.set",
        "order.clear",
        "auth.resolve",
        "auth.report",
        "auth.clearCooldown",
        "settings.set",
        "store.import",
        "auth.refresh",
        "providers.put",
        "providers.remove",
    ];
    let mut checked = 0;
    for m in doc["methods"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        let kinds = kinds_of(m);
        if name == "rpc.discover" {
            assert!(
                !kinds.iter().any(|k| k.starts_with("store_")),
                "{name}: {kinds:?}"
            );
            continue;
        }
        for k in [
            "store_busy",
            "store_unavailable",
            "store_corrupt",
            "store_permissions",
            "store_newer_schema",
        ] {
            assert!(
                kinds.iter().any(|x| x == k),
                "{name} does not list {k}: {kinds:?}"
            );
        }
        if writers.contains(&name) {
            assert!(
                kinds.iter().any(|x| x == "store_readonly"),
                "{name}: {kinds:?}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 23, "{checked} methods checked");

    if on_pg() {
        return; // file modes: the rest is about a SQLite directory
    }
    use std::os::unix::fs::PermissionsExt;
    let s = TempStore::new();
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:a", "sk-kinds-1")}),
    );
    let dir = s.path.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = err(&s.path, "profiles.list", json!({}));
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let returned = e["data"]["kind"].as_str().unwrap().to_string();
    assert_eq!(returned, "store_permissions", "{e}");
    let list = doc["methods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "profiles.list")
        .unwrap();
    assert!(kinds_of(list).contains(&returned));
}
