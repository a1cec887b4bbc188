//! store.import / store.export / store.validate against the real binary and the OpenClaw
//! fixtures in `tests/fixtures/openclaw` (protocol §3, issue 3).

mod common;

use common::snapshot;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/openclaw");

fn fixture(rel: &str) -> PathBuf {
    Path::new(FIXTURES).join(rel)
}

fn expected(rel: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixture(rel)).unwrap()).unwrap()
}

/// `modelauth --store STORE call METHOD PARAMS`: Ok(result) or Err(error object).
fn call(store: &Path, method: &str, params: Value) -> Result<Value, Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_modelauth"))
        .args(common::store_args(std::path::Path::new(&store)))
        .envs(common::store_env(std::path::Path::new(&store)))
        .args(["call", method, &params.to_string()])
        .output()
        .unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        Err(serde_json::from_slice(&out.stderr).unwrap())
    }
}

fn ok(store: &Path, method: &str, params: Value) -> Value {
    call(store, method, params).unwrap_or_else(|e| panic!("{method} failed: {e}"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// The bytes of the store and its -wal/-shm files.
fn store_bytes(store: &Path) -> Vec<u8> {
    if common::on_pg() {
        return common::pg_store_text(store).into_bytes();
    }
    let mut all = vec![];
    for suffix in ["", "-wal", "-shm"] {
        let mut p = store.as_os_str().to_owned();
        p.push(suffix);
        if let Ok(b) = std::fs::read(PathBuf::from(p)) {
            all.extend(b);
        }
    }
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Checks one expected profile against `profiles.get {reveal: true}`.
fn check_profile(store: &Path, agent: Option<&str>, exp: &Value) {
    let id = exp["id"].as_str().unwrap();
    let got = ok(
        store,
        "profiles.get",
        json!({"profileId": id, "agent": agent, "reveal": true}),
    )["profile"]
        .clone();
    for f in ["provider", "type"] {
        assert_eq!(got[f], exp[f], "{id} {f}");
    }
    for f in [
        "key",
        "token",
        "access",
        "refresh",
        "keyRef",
        "tokenRef",
        "expires",
        "email",
        "accountId",
        "displayName",
    ] {
        assert_eq!(got.get(f), exp.get(f), "{id}: field {f}");
    }
}

fn export(store: &Path, agent: Option<&str>) -> Value {
    ok(
        store,
        "store.export",
        json!({"agent": agent, "reveal": true}),
    )["document"]
        .clone()
}

fn assert_errors_match(errors: &Value, exp: &Value) {
    let errors = errors.as_array().unwrap();
    let exp = exp.as_array().unwrap();
    assert_eq!(errors.len(), exp.len(), "{errors:?}");
    for e in exp {
        let found = errors
            .iter()
            .find(|g| g["pointer"] == e["pointer"])
            .unwrap_or_else(|| panic!("no error at {}", e["pointer"]));
        assert_eq!(found["kind"], e["reason"], "{}", e["pointer"]);
        if let Some(vt) = e.get("validTypes") {
            assert_eq!(&found["validTypes"], vt);
        }
    }
}

const LEGACY: [&str; 4] = [
    "auth-profiles",
    "auth-profiles.aliases",
    "auth-profiles.invalid",
    "auth",
];

#[test]
fn each_legacy_json_file_imports_as_expected() {
    for name in LEGACY {
        let tmp = tempfile::tempdir().unwrap();
        let src_dir = tmp.path().join("src");
        std::fs::create_dir(&src_dir).unwrap();
        let src = src_dir.join(format!("{name}.json"));
        std::fs::copy(fixture(&format!("legacy-json/{name}.json")), &src).unwrap();
        let before = snapshot(&src_dir);
        let store = tmp.path().join("store.db");
        let exp = expected(&format!("legacy-json/{name}.expected.json"));

        let r = ok(&store, "store.import", json!({"path": src}));
        assert_eq!(r["format"], exp["format"], "{name}");
        assert_eq!(r["dryRun"], false);
        // Profiles: exactly the expected ones, all created, with their fields.
        let mut got: Vec<(String, String)> = r["profiles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                assert_eq!(p["scope"], "shared");
                (
                    p["profileId"].as_str().unwrap().to_string(),
                    p["action"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        got.sort();
        let mut want: Vec<(String, String)> = exp["profiles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["id"].as_str().unwrap().to_string(),
                    p["action"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        want.sort();
        assert_eq!(got, want, "{name}");
        for p in exp["profiles"].as_array().unwrap() {
            check_profile(&store, None, p);
        }
        let listed = ok(&store, "profiles.list", json!({}))["profiles"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(listed, want.len());
        // Orders, lastGood, usageStats as stored.
        let doc = export(&store, None);
        assert_eq!(doc["order"], exp["orders"], "{name} orders");
        assert_eq!(doc["lastGood"], exp["lastGood"], "{name} lastGood");
        assert_eq!(doc["usageStats"], exp["usageStats"], "{name} usageStats");
        for (provider, ids) in exp["orders"].as_object().unwrap() {
            let o = ok(&store, "order.get", json!({"provider": provider}));
            assert_eq!(&o["order"], ids);
            assert_eq!(o["source"], "shared");
        }
        // Errors: pointer, OpenClaw's code as kind, validTypes.
        assert_errors_match(&r["errors"], &exp["errors"]);
        // One warning per normalised entry.
        if let Some(n) = exp.get("normalisations").and_then(Value::as_object) {
            for ptr in n.keys() {
                let w: Vec<_> = r["warnings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|w| w["pointer"] == ptr.as_str())
                    .collect();
                assert_eq!(w.len(), 1, "{name}: warnings at {ptr}: {w:?}");
            }
        }
        // Rejected and superseded secrets are nowhere in the store; kept ones are.
        let bytes = store_bytes(&store);
        let first = &exp["profiles"][0];
        let kept = ["key", "token", "access"]
            .iter()
            .find_map(|f| first.get(*f).and_then(Value::as_str))
            .unwrap();
        // On a sealed run the kept secret is sealed at rest, so the scan must not see it.
        assert_eq!(
            contains(&bytes, kept),
            !common::sealed_run(),
            "{name}: the scan must see stored secrets exactly when the store is not sealed"
        );
        for s in exp
            .get("mustNotAppear")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let s = s.as_str().unwrap();
            assert!(!contains(&bytes, s), "{name}: {s} is in the store");
            assert!(!r.to_string().contains(s), "{name}: {s} is in the result");
        }
        // The source is byte-identical and nothing was added next to it.
        assert_eq!(snapshot(&src_dir), before, "{name}");
    }
}

#[test]
fn an_unrelated_json_document_is_shape_unrecognized_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("state/store.db");
    let exp = expected("legacy-json/not-a-store.expected.json");
    let src = fixture("legacy-json/not-a-store.json");
    let e = call(&store, "store.import", json!({"path": src})).unwrap_err();
    assert_eq!(e["code"], exp["error"]["code"]);
    assert_eq!(e["data"]["kind"], exp["error"]["kind"]);
    assert!(!common::store_exists(&store) && !tmp.path().join("state").exists());
    // Also with an existing store, and with store.validate and an inline document.
    ok(
        &store,
        "profiles.put",
        json!({"profile": {"id": "openai:mine", "type": "api_key", "key": "sk-mine-1"}}),
    );
    let before = export(&store, None);
    let bytes = store_bytes(&store);
    let e = call(&store, "store.import", json!({"path": src})).unwrap_err();
    assert_eq!(e["data"]["kind"], "shape_unrecognized");
    let doc: Value = serde_json::from_slice(&std::fs::read(&src).unwrap()).unwrap();
    let e = call(&store, "store.import", json!({"document": doc})).unwrap_err();
    assert_eq!(e["code"], -32070);
    let e = call(&store, "store.validate", json!({"path": src})).unwrap_err();
    assert_eq!(e["data"]["kind"], "shape_unrecognized");
    let e = call(&store, "store.import", json!({"document": {}})).unwrap_err();
    assert_eq!(e["data"]["kind"], "shape_unrecognized");
    // An unreadable source fails as a whole too.
    let e = call(
        &store,
        "store.import",
        json!({"path": tmp.path().join("missing.json")}),
    )
    .unwrap_err();
    assert_eq!(e["data"]["kind"], "import_invalid");
    assert_eq!(store_bytes(&store), bytes);
    assert_eq!(export(&store, None), before);
}

#[test]
fn the_state_directory_imports_profiles_secrets_expiry_and_orders_per_scope() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("openclaw");
    copy_dir(&fixture("state-basic"), &dir);
    let before = snapshot(&dir);
    let store = tmp.path().join("store.db");
    let exp = expected("state-basic/expected.json");

    let r = ok(
        &store,
        "store.import",
        json!({"path": dir, "format": "auto"}),
    );
    assert_eq!(r["format"], exp["format"]);
    assert_eq!(r["errors"], json!([]));
    let actions: Vec<_> = r["profiles"].as_array().unwrap().clone();
    assert_eq!(
        actions.len(),
        exp["counts"]["profiles"].as_u64().unwrap() as usize
    );
    assert!(actions.iter().all(|a| a["action"] == "created"));
    for p in exp["profiles"].as_array().unwrap() {
        let scope = p["scope"].as_str().unwrap();
        let agent = (scope != "shared").then_some(scope);
        check_profile(&store, agent, p);
        let got = ok(
            &store,
            "profiles.get",
            json!({"profileId": p["id"], "agent": agent}),
        );
        assert_eq!(got["profile"]["scope"], p["scope"]);
        // Not revealed: fingerprint only.
        assert!(got["profile"].get("key").is_none() && got["profile"].get("token").is_none());
    }
    let shared = ok(&store, "profiles.list", json!({}))["profiles"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(shared as u64, exp["counts"]["shared"].as_u64().unwrap());
    // Each agent sees what OpenClaw showed it.
    for (agent, ids) in exp["openclawAgentView"].as_object().unwrap() {
        let got: Vec<Value> = ok(&store, "profiles.list", json!({"agent": agent}))["profiles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].clone())
            .collect();
        assert_eq!(&Value::Array(got), ids);
        let own = export(&store, Some(agent));
        assert_eq!(
            own["profiles"].as_object().unwrap().len() as u64,
            exp["counts"][agent].as_u64().unwrap()
        );
        assert_eq!(own["lastGood"], exp["lastGood"][agent]);
        assert_eq!(own["usageStats"], exp["usageStats"][agent]);
    }
    // Orders: the agent override per agent, the config order shared.
    for (agent, orders) in exp["orderOverrides"].as_object().unwrap() {
        assert_eq!(&export(&store, Some(agent))["order"], orders);
        for (provider, ids) in orders.as_object().unwrap() {
            let o = ok(
                &store,
                "order.get",
                json!({"provider": provider, "agent": agent}),
            );
            assert_eq!(&o["order"], ids);
            assert_eq!(o["source"], "agent");
        }
    }
    assert_eq!(export(&store, None)["order"], exp["configOrder"]);
    // auth.resolve returns what OpenClaw would have used: the first of the order.
    let res = ok(
        &store,
        "auth.resolve",
        json!({"provider": "openrouter", "agent": "main"}),
    );
    assert_eq!(res["profileId"], "openrouter:key");
    assert_eq!(res["secret"], "sk-or-test-key-002");
    let res = ok(&store, "auth.resolve", json!({"provider": "deepseek"}));
    assert_eq!(res["profileId"], "deepseek:work");
    assert_eq!(res["expires"], 1797903942333i64);
    let res = ok(
        &store,
        "auth.resolve",
        json!({"provider": "openai", "agent": "cron-new"}),
    );
    assert_eq!(res["secret"], "sk-test-openai-004");
    // The source directory is byte-identical, with no new files (-wal, -shm, backups).
    assert_eq!(snapshot(&dir), before);

    // A second identical import changes nothing and says so.
    let doc = export(&store, None);
    let list = ok(&store, "profiles.list", json!({"agent": "main"}));
    let again = ok(&store, "store.import", json!({"path": dir}));
    assert!(again["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["action"] == "unchanged"));
    assert!(again["orders"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["action"] == "unchanged"));
    assert_eq!(export(&store, None), doc);
    assert_eq!(ok(&store, "profiles.list", json!({"agent": "main"})), list);
    // An agent param makes no sense for a state directory.
    let e = call(
        &store,
        "store.import",
        json!({"path": dir, "agent": "main"}),
    )
    .unwrap_err();
    assert_eq!(e["data"]["kind"], "invalid_params");
}

#[test]
fn single_openclaw_sqlite_files_import_into_the_given_scope() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("openclaw");
    copy_dir(&fixture("state-basic"), &dir);
    let before = snapshot(&dir);
    let store = tmp.path().join("store.db");
    let r = ok(
        &store,
        "store.import",
        json!({"path": dir.join("state/openclaw.sqlite")}),
    );
    assert_eq!(r["format"], "openclaw-sqlite");
    assert_eq!(r["profiles"].as_array().unwrap().len(), 4);
    let r = ok(
        &store,
        "store.import",
        json!({"path": dir.join("agents/main/agent/openclaw-agent.sqlite"),
               "format": "openclaw-sqlite", "agent": "main"}),
    );
    assert_eq!(r["format"], "openclaw-sqlite");
    assert_eq!(
        r["orders"],
        json!([{"provider": "openrouter", "scope": "main", "action": "created",
                "order": ["openrouter:key", "openrouter:manual"]}])
    );
    assert_eq!(snapshot(&dir), before);
}

#[test]
fn dry_run_writes_nothing_and_reports_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("sub/store.db");
    let src = fixture("legacy-json/auth-profiles.invalid.json");
    let dry = ok(&store, "store.import", json!({"path": src, "dryRun": true}));
    assert_eq!(dry["dryRun"], true);
    assert!(!common::store_exists(&store) && !tmp.path().join("sub").exists());
    let dir = fixture("state-basic");
    let dry_state = ok(&store, "store.import", json!({"path": dir, "dryRun": true}));
    assert!(!tmp.path().join("sub").exists());
    let real = ok(&store, "store.import", json!({"path": src}));
    for f in ["profiles", "orders", "warnings", "errors", "format"] {
        assert_eq!(dry[f], real[f], "{f}");
    }
    // A dry run against a store with data says what would happen, and changes nothing.
    let bytes = store_bytes(&store);
    let d2 = ok(&store, "store.import", json!({"path": src, "dryRun": true}));
    assert!(d2["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["action"] == "unchanged"));
    assert_eq!(store_bytes(&store), bytes);
    assert_eq!(dry_state["orders"].as_array().unwrap().len(), 2);
}

#[test]
fn an_existing_different_credential_is_kept_unless_replace() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store.db");
    ok(
        &store,
        "profiles.put",
        json!({"profile": {"id": "openai:default", "type": "api_key", "key": "sk-existing-999"}}),
    );
    let src = fixture("legacy-json/auth-profiles.json");
    let r = ok(&store, "store.import", json!({"path": src}));
    let a = r["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["profileId"] == "openai:default")
        .unwrap()
        .clone();
    assert_eq!(a["action"], "skipped");
    assert_eq!(a["reason"], "exists");
    let get = |s: &Path| {
        ok(
            s,
            "profiles.get",
            json!({"profileId": "openai:default", "reveal": true}),
        )["profile"]["key"]
            .clone()
    };
    assert_eq!(get(&store), "sk-existing-999");
    // The others were created; a second run reports them unchanged.
    let again = ok(&store, "store.import", json!({"path": src}));
    for p in again["profiles"].as_array().unwrap() {
        let want = if p["profileId"] == "openai:default" {
            "skipped"
        } else {
            "unchanged"
        };
        assert_eq!(p["action"], want, "{p}");
    }
    let r = ok(
        &store,
        "store.import",
        json!({"path": src, "replace": true}),
    );
    let a = r["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["profileId"] == "openai:default")
        .unwrap()
        .clone();
    assert_eq!(a["action"], "updated");
    assert_eq!(get(&store), "sk-test-legacy-openai-001");
}

#[test]
fn export_then_import_into_a_fresh_store_gives_the_same_document() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a.db");
    let b = tmp.path().join("b.db");
    let c = tmp.path().join("c.db");
    for name in LEGACY {
        let src = fixture(&format!("legacy-json/{name}.json"));
        ok(&a, "store.import", json!({"path": src}));
    }
    ok(
        &a,
        "store.import",
        json!({"path": fixture("state-basic"), "replace": true}),
    );
    let doc = export(&a, None);
    let keys: Vec<&String> = doc.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["lastGood", "order", "profiles", "usageStats", "version"]
    );
    assert_eq!(doc["version"], 1);
    // Inline document (format auto = openclaw).
    let r = ok(&b, "store.import", json!({"document": doc}));
    assert_eq!(r["errors"], json!([]));
    assert_eq!(export(&b, None), doc);
    // The saved result of `modelauth call store.export` (format modelauth).
    let file = tmp.path().join("backup.json");
    let result = ok(&a, "store.export", json!({"reveal": true}));
    std::fs::write(&file, result.to_string()).unwrap();
    let r = ok(&c, "store.import", json!({"path": file}));
    assert_eq!(r["format"], "modelauth");
    assert_eq!(export(&c, None), doc);
    // Without reveal, secrets are fingerprints, and such a document is refused per entry.
    let hidden = ok(&a, "store.export", json!({}))["document"].clone();
    let text = hidden.to_string();
    let plain = doc["profiles"]["openai:default"]["key"].as_str().unwrap();
    assert!(!text.contains(plain));
    let k = &hidden["profiles"]["openai:default"]["key"];
    assert!(k["fingerprint"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(k["length"], plain.len());
    let v = ok(&c, "store.validate", json!({"document": hidden}));
    assert_eq!(v["valid"], false);
    assert!(v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "redacted_secret"));
}

#[test]
fn validate_reports_the_same_errors_as_import_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store.db");
    for name in LEGACY {
        let src = fixture(&format!("legacy-json/{name}.json"));
        let exp = expected(&format!("legacy-json/{name}.expected.json"));
        let v = ok(&store, "store.validate", json!({"path": src}));
        assert!(!common::store_exists(&store));
        assert_eq!(v["format"], exp["format"]);
        assert_errors_match(&v["errors"], &exp["errors"]);
        assert_eq!(v["valid"], exp["errors"].as_array().unwrap().is_empty());
        let other = tmp.path().join(format!("{name}.db"));
        let r = ok(&other, "store.import", json!({"path": src}));
        assert_eq!(v["errors"], r["errors"]);
        assert_eq!(v["warnings"], r["warnings"]);
    }
    let v = ok(
        &store,
        "store.validate",
        json!({"path": fixture("state-basic")}),
    );
    assert_eq!(v["valid"], true);
    assert!(!common::store_exists(&store));
}

#[test]
fn serve_imports_and_resolves_in_one_session() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_modelauth"))
        .args(common::store_args(std::path::Path::new(&store)))
        .envs(common::store_env(std::path::Path::new(&store)))
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "store.import",
               "params": {"path": fixture("legacy-json/auth.json")}}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "auth.resolve",
               "params": {"provider": "openrouter"}}),
        json!({"jsonrpc": "2.0", "id": 3, "method": "store.import",
               "params": {"path": fixture("legacy-json/auth.json"), "format": "openclaw-sqlite"}}),
    ];
    {
        let mut stdin = child.stdin.take().unwrap();
        for l in &lines {
            writeln!(stdin, "{l}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let replies: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(replies[0]["result"]["format"], "openclaw-flat");
    assert_eq!(replies[1]["result"]["profileId"], "openrouter:default");
    assert_eq!(replies[1]["result"]["secret"], "sk-or-test-flat-033");
    assert_eq!(replies[2]["error"]["data"]["kind"], "shape_unrecognized");
}

#[test]
fn the_methods_are_in_the_openrpc_document() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store.db");
    let doc = ok(&store, "rpc.discover", json!({}));
    let names: Vec<&str> = doc["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    for m in ["store.import", "store.export", "store.validate"] {
        assert!(names.contains(&m), "{m}");
    }
}
