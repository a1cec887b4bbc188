//! OpenClaw fidelity, round 3 (issue 18, protocol §11 includeSettings, §12): states the real
//! OpenClaw 2026.9.6 CLI wrote with `tests/fixtures/openclaw/rebuild.sh`, each with OpenClaw's
//! answers in `openclaw-answers.json`. Runs without the peer.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::{cmd, err, ok, TempStore};
use serde_json::{json, Value};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/openclaw");

fn fixture(case: &str) -> PathBuf {
    Path::new(FIXTURES).join(case)
}

fn answers(case: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixture(case).join("openclaw-answers.json")).unwrap())
        .unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dst);
        } else if e.file_name() != "openclaw-answers.json" {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// For every provider OpenClaw answered about in `view` (agent `agent`): modelauth's
/// provider roll-up equals OpenClaw's, and its pick is OpenClaw's first effective profile
/// (none when OpenClaw has none).
fn assert_view(store: &Path, agent: Option<&str>, view: &Value) {
    let with_agent = |mut p: Value| {
        if let Some(a) = agent {
            p["agent"] = json!(a);
        }
        p
    };
    let st = ok(store, "auth.status", with_agent(json!({})));
    for (provider, p) in view["providers"].as_object().unwrap() {
        let mine = st["providers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["provider"] == *provider)
            .unwrap_or_else(|| panic!("{provider} missing in {st}"));
        assert_eq!(
            mine["status"], p["status"],
            "{provider}: OpenClaw {p}, modelauth {mine}"
        );
        let (code, r) = common::call(
            store,
            "auth.resolve",
            with_agent(json!({"provider": provider})),
        );
        match p["effectiveProfiles"].as_array().unwrap().first() {
            Some(first) => {
                assert_eq!(code, 0, "{provider}: {r}");
                assert_eq!(&r["profileId"], first, "{provider} pick");
            }
            None => assert_eq!(code, 1, "{provider}: OpenClaw picks nothing, modelauth {r}"),
        }
    }
}

#[test]
fn store_refs_import_their_entries_and_resolve_as_in_openclaw() {
    let case = "store-ref";
    let ans = answers(case);
    // OpenClaw resolved the ref (no unresolved ref in its audit).
    assert_eq!(ans["audit"]["summary"]["unresolvedRefCount"], 0);
    let t = TempStore::new();
    let r = ok(&t.path, "store.import", json!({"path": fixture(case)}));
    assert_eq!(r["errors"], json!([]), "{r}");
    // Only the referenced entry comes over (UNUSED_KEY stays behind), never its value.
    assert_eq!(
        r["secrets"],
        json!([{"provider": "default", "id": "OPENAI_API_KEY", "action": "created", "profiles": ["openai:store"]}])
    );
    assert!(!r.to_string().contains("sk-store-fake"), "{r}");
    assert_view(&t.path, Some("main"), &ans["views"]["main"]);
    let got = ok(
        &t.path,
        "auth.resolve",
        json!({"provider": "openai", "agent": "main"}),
    );
    assert_eq!(got["profileId"], "openai:store");
    assert_eq!(got["secret"], "sk-store-fake-0001");
    // Idempotent: a second import changes nothing.
    let again = ok(&t.path, "store.import", json!({"path": fixture(case)}));
    assert_eq!(again["secrets"][0]["action"], "unchanged");
    // The ref survives an export and a re-import as a ref.
    let exported = ok(&t.path, "store.export", json!({"agent": "main"}));
    assert_eq!(
        exported["document"]["profiles"]["openai:store"]["keyRef"],
        json!({"source": "store", "provider": "default", "id": "OPENAI_API_KEY"})
    );
}

#[test]
fn a_store_ref_without_its_entry_is_named_by_validate_and_import() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("oc");
    copy_dir(&fixture("store-ref"), &dir);
    let db = rusqlite::Connection::open(dir.join("state/openclaw.sqlite")).unwrap();
    // OpenClaw's own soft delete (`openclaw secrets store rm`).
    db.execute(
        "UPDATE secret_store_entries SET deleted_at_ms = 1 WHERE name = 'OPENAI_API_KEY'",
        [],
    )
    .unwrap();
    drop(db);
    let t = TempStore::new();
    let v = ok(&t.path, "store.validate", json!({"path": dir}));
    let w: Vec<&Value> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["kind"] == "store_entry_missing")
        .collect();
    assert_eq!(w.len(), 1, "{v}");
    assert!(w[0]["message"].as_str().unwrap().contains("OPENAI_API_KEY"));
    assert!(
        w[0]["pointer"].as_str().unwrap().ends_with("/keyRef"),
        "{v}"
    );
    let r = ok(&t.path, "store.import", json!({"path": dir}));
    assert_eq!(r["secrets"][0]["action"], "missing", "{r}");
    let e = err(
        &t.path,
        "auth.resolve",
        json!({"provider": "openai", "agent": "main", "profileId": "openai:store"}),
    );
    assert_eq!(e["data"]["kind"], "secret_unavailable", "{e}");
    assert_eq!(e["data"]["reason"], "store_entry_missing", "{e}");
}

#[test]
fn store_refs_are_validated_with_openclaws_id_rule() {
    let t = TempStore::new();
    let p = |id: &str| {
        json!({"profile": {"id": "openai:s", "type": "api_key",
            "keyRef": {"source": "store", "provider": "default", "id": id}}})
    };
    ok(&t.path, "profiles.put", p("OPENAI_API_KEY"));
    for bad in ["openai_api_key", "1KEY", "A-B", ""] {
        let e = err(&t.path, "profiles.put", p(bad));
        assert_eq!(e["data"]["pointer"], "/profile/keyRef/id", "{bad}: {e}");
    }
    // Nothing stored under that name: the ref is unavailable, naming the ref, not a value.
    let e = err(
        &t.path,
        "auth.resolve",
        json!({"provider": "openai", "profileId": "openai:s"}),
    );
    assert_eq!(e["data"]["reason"], "store_entry_missing", "{e}");
}

/// The secret-providers fixture with its absolute paths moved into `dir`, and the file and
/// command they name created there (owned by the user, not group/world-accessible).
fn secret_providers_state(dir: &Path) -> PathBuf {
    let case = "secret-providers";
    let ans = answers(case);
    let state = dir.join("oc");
    copy_dir(&fixture(case), &state);
    let ext = dir.join("ext");
    std::fs::create_dir_all(&ext).unwrap();
    let from = ans["fixtureDir"].as_str().unwrap();
    let cfg = std::fs::read_to_string(state.join("openclaw.json")).unwrap();
    std::fs::write(
        state.join("openclaw.json"),
        cfg.replace(from, ext.to_str().unwrap()),
    )
    .unwrap();
    let keys = ext.join("keys.json");
    std::fs::write(&keys, r#"{"openai": {"key": "sk-file-fake-0002"}}"#).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    let vault = ext.join("vault-get");
    std::fs::copy(fixture("secret-providers.vault-get"), &vault).unwrap();
    std::fs::set_permissions(&vault, std::fs::Permissions::from_mode(0o755)).unwrap();
    state
}

#[test]
fn openclaw_secret_providers_come_only_with_include_settings_and_are_named() {
    let ans = answers("secret-providers");
    // The state and the command it names live beside the store: on a PostgreSQL store
    // only commands under $MODELAUTH_TRUSTED_DIRS run (§11), and the harness trusts the
    // test's own directory.
    let t = TempStore::new();
    let state = secret_providers_state(t.dir.path());
    let names = |r: &Value| -> Vec<(String, String)> {
        r["settings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap().to_string(),
                    s["action"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    // store.validate and the dry run name each provider, with what it runs or reads.
    let v = ok(&t.path, "store.validate", json!({"path": state}));
    assert_eq!(
        names(&v),
        vec![
            ("files".into(), "skipped".into()),
            ("vault".into(), "skipped".into())
        ]
    );
    assert!(v["settings"][1]["summary"]
        .as_str()
        .unwrap()
        .ends_with("/vault-get"));
    let dry = ok(
        &t.path,
        "store.import",
        json!({"path": state, "dryRun": true, "includeSettings": true}),
    );
    assert_eq!(
        names(&dry),
        vec![
            ("files".into(), "created".into()),
            ("vault".into(), "created".into())
        ]
    );
    // Without includeSettings: profiles only, each provider named in a warning.
    let r = ok(&t.path, "store.import", json!({"path": state}));
    assert_eq!(r["settings"][0]["reason"], "includeSettings");
    let warned = r["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["kind"] == "setting_not_imported")
        .count();
    assert_eq!(warned, 2, "{r}");
    let s = ok(&t.path, "settings.get", json!({}));
    assert_eq!(s["settings"]["secretProviders"], json!({}));
    let e = err(
        &t.path,
        "auth.resolve",
        json!({"provider": "anthropic", "agent": "main", "profileId": "anthropic:exec"}),
    );
    assert_eq!(e["data"]["reason"], "provider_unknown", "{e}");
    // With it: the providers are settings, and the picks and roll-ups are OpenClaw's.
    let r = ok(
        &t.path,
        "store.import",
        json!({"path": state, "includeSettings": true}),
    );
    assert_eq!(
        names(&r),
        vec![
            ("files".into(), "created".into()),
            ("vault".into(), "created".into())
        ]
    );
    let s = ok(&t.path, "settings.get", json!({}));
    assert_eq!(s["settings"]["secretProviders"]["vault"]["source"], "exec");
    assert_eq!(s["settings"]["secretProviders"]["files"]["mode"], "json");
    assert_view(&t.path, Some("main"), &ans["views"]["main"]);
    let a = ok(
        &t.path,
        "auth.resolve",
        json!({"provider": "anthropic", "agent": "main"}),
    );
    assert_eq!(a["secret"], "sk-ant-exec-fake-0003");
    let o = ok(
        &t.path,
        "auth.resolve",
        json!({"provider": "openai", "agent": "main"}),
    );
    assert_eq!(o["secret"], "sk-file-fake-0002");
    // OpenClaw's audit resolved both refs too.
    assert_eq!(ans["audit"]["summary"]["unresolvedRefCount"], 0);
    // Re-import: unchanged.
    let again = ok(
        &t.path,
        "store.import",
        json!({"path": state, "includeSettings": true}),
    );
    assert_eq!(
        names(&again),
        vec![
            ("files".into(), "unchanged".into()),
            ("vault".into(), "unchanged".into())
        ]
    );
}

#[test]
fn a_modelauth_store_file_brings_providers_and_settings_only_with_include_settings() {
    if common::skip_on_pg("the source of format modelauth-store is a SQLite file") {
        return;
    }
    let src = TempStore::new();
    ok(
        &src.path,
        "settings.set",
        json!({"settings": {"refreshMarginMs": 60000, "secretProviders": {"vault": {"source": "exec", "command": "/usr/local/bin/vault-get"}}}}),
    );
    ok(
        &src.path,
        "providers.put",
        json!({"id": "acme", "envVars": ["ACME_KEY"]}),
    );
    ok(
        &src.path,
        "profiles.put",
        json!({"profile": {"id": "acme:a", "type": "api_key", "key": "sk-acme-fake-1"}}),
    );
    let dst = TempStore::new();
    let v = ok(
        &dst.path,
        "store.validate",
        json!({"path": src.path, "format": "modelauth-store"}),
    );
    let listed: Vec<&str> = v["settings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["pointer"].as_str().unwrap())
        .collect();
    assert!(listed.contains(&"/providers/acme"), "{v}");
    assert!(listed.contains(&"/settings/secretProviders"), "{v}");
    assert!(listed.contains(&"/settings/refreshMarginMs"), "{v}");
    let r = ok(&dst.path, "store.import", json!({"path": src.path}));
    assert!(r["settings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["action"] == "skipped" && s["reason"] == "includeSettings"));
    assert_eq!(r["profiles"][0]["action"], "created");
    let s = ok(&dst.path, "settings.get", json!({}));
    assert_eq!(s["settings"]["secretProviders"], json!({}));
    assert_eq!(s["settings"]["refreshMarginMs"], 300000);
    let e = err(&dst.path, "providers.get", json!({"id": "acme"}));
    assert_eq!(e["data"]["kind"], "unknown_provider");
    let r = ok(
        &dst.path,
        "store.import",
        json!({"path": src.path, "includeSettings": true}),
    );
    assert!(
        r["settings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["action"] == "created"),
        "{r}"
    );
    let s = ok(&dst.path, "settings.get", json!({}));
    assert_eq!(s["settings"]["refreshMarginMs"], 60000);
    assert_eq!(
        s["settings"]["secretProviders"]["vault"]["command"],
        "/usr/local/bin/vault-get"
    );
    ok(&dst.path, "providers.get", json!({"id": "acme"}));
}

/// Runs `modelauth openclaw-provider` on `store` with `request` on stdin.
fn provider(store: &Path, request: &Value) -> (i32, Value, String) {
    let mut c = cmd(store);
    c.arg("openclaw-provider")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        v,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn openclaw_resolves_a_key_through_modelauth_openclaw_provider() {
    let ans = answers("exec-provider");
    // What OpenClaw answered when its exec provider was `modelauth openclaw-provider`.
    let resolved = &ans["auditResolved"];
    assert_eq!(resolved["resolution"]["refsChecked"], 1, "{resolved}");
    assert_eq!(resolved["summary"]["unresolvedRefCount"], 0, "{resolved}");
    // After the credential was removed from modelauth, its NOT_FOUND made OpenClaw report
    // the ref unresolved.
    let gone = &ans["auditNotFound"];
    assert_eq!(gone["summary"]["unresolvedRefCount"], 1, "{gone}");
    assert!(
        gone["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == "REF_UNRESOLVED"
                && f["jsonPath"] == "profiles.openai:modelauth.key")
    );
    // The request OpenClaw sent, replayed: the same answer without OpenClaw.
    let req = &ans["execRequest"];
    assert_eq!(req["protocolVersion"], 1);
    let t = TempStore::new();
    ok(
        &t.path,
        "profiles.put",
        json!({"profile": common::api_key("openai:work", "sk-modelauth-fake-0004")}),
    );
    let (code, v, stderr) = provider(&t.path, req);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(v["protocolVersion"], 1);
    assert_eq!(req["ids"], json!(["openai"]));
    assert_eq!(v["values"]["openai"], "sk-modelauth-fake-0004");
    assert_eq!(v["errors"], json!({}));
    // The same request once the credential is gone: NOT_FOUND, the code OpenClaw reported.
    ok(
        &t.path,
        "profiles.remove",
        json!({"profileId": "openai:work"}),
    );
    let (code, v, _) = provider(&t.path, req);
    assert_eq!(code, 0);
    assert_eq!(v["values"], json!({}));
    assert_eq!(v["errors"]["openai"]["code"], "NOT_FOUND", "{v}");
}

#[test]
fn openclaw_provider_ids_name_agent_and_model_and_unknown_ones_are_not_found() {
    let t = TempStore::new();
    ok(
        &t.path,
        "profiles.put",
        json!({"profile": common::api_key("openai:shared", "sk-shared-fake-1")}),
    );
    ok(
        &t.path,
        "profiles.put",
        json!({"agent": "cron-nightly", "profile": common::api_key("openai:cron", "sk-cron-fake-2")}),
    );
    ok(
        &t.path,
        "profiles.put",
        json!({"profile": common::api_key("anthropic:a", "sk-ant-fake-3")}),
    );
    ok(
        &t.path,
        "profiles.put",
        json!({"profile": common::api_key("anthropic:b", "sk-ant-fake-4")}),
    );
    ok(
        &t.path,
        "order.set",
        json!({"provider": "anthropic", "order": ["anthropic:a", "anthropic:b"]}),
    );
    // A model-scoped rate limit on anthropic:a for claude-sonnet-5 only.
    ok(
        &t.path,
        "auth.report",
        json!({"profileId": "anthropic:a", "outcome": "rate_limit", "model": "claude-sonnet-5"}),
    );
    let req = json!({"protocolVersion": 1, "provider": "modelauth", "ids": [
        "openai", "openai#agent:cron-nightly", "anthropic#model:claude-sonnet-5",
        "anthropic#model:claude-haiku-5", "mistral", "openai#agent:nobody#model:x"]});
    let (code, v, stderr) = provider(&t.path, &req);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(v["values"]["openai"], "sk-shared-fake-1");
    assert_eq!(v["values"]["openai#agent:cron-nightly"], "sk-cron-fake-2");
    assert_eq!(
        v["values"]["anthropic#model:claude-sonnet-5"],
        "sk-ant-fake-4"
    );
    // The cooldown is of claude-sonnet-5 only: another model still gets anthropic:a.
    assert_eq!(
        v["values"]["anthropic#model:claude-haiku-5"],
        "sk-ant-fake-3"
    );
    assert_eq!(v["errors"]["mistral"]["code"], "NOT_FOUND");
    // An agent with nothing of its own sees the shared profiles (protocol §2.1).
    assert_eq!(
        v["values"]["openai#agent:nobody#model:x"],
        "sk-shared-fake-1"
    );
    assert!(!stderr.contains("sk-"), "{stderr}");
    // A request that is not protocol v1: exit 1, nothing on stdout.
    let (code, v, stderr) = provider(&t.path, &json!({"protocolVersion": 2, "ids": []}));
    assert_eq!(code, 1);
    assert_eq!(v, Value::Null);
    assert!(stderr.contains("protocolVersion"), "{stderr}");
}

fn warning_kinds(r: &Value) -> Vec<String> {
    r["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["kind"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn an_empty_config_order_disables_and_a_stale_mode_is_skipped_as_in_openclaw() {
    let case = "order-rules";
    let ans = answers(case);
    // What OpenClaw said: openrouter (order []) picks nothing and is `missing`; deepseek
    // skips deepseek:a, whose config mode says token while it holds an api_key.
    let view = &ans["views"]["main"];
    assert_eq!(
        view["providers"]["openrouter"]["effectiveProfiles"],
        json!([])
    );
    assert_eq!(
        view["providers"]["deepseek"]["effectiveProfiles"],
        json!(["deepseek:b"])
    );
    let t = TempStore::new();
    let r = ok(&t.path, "store.import", json!({"path": fixture(case)}));
    assert_eq!(r["errors"], json!([]));
    let kinds = warning_kinds(&r);
    assert!(kinds.contains(&"order_empty".to_string()), "{r}");
    assert!(kinds.contains(&"mode_mismatch".to_string()), "{r}");
    assert_view(&t.path, Some("main"), view);
    assert_view(&t.path, None, view);
    let e = err(&t.path, "auth.resolve", json!({"provider": "openrouter"}));
    assert_eq!(e["data"]["kind"], "excluded_by_auth_order", "{e}");
    // order.clear enables the provider again.
    ok(&t.path, "order.clear", json!({"provider": "openrouter"}));
    ok(&t.path, "auth.resolve", json!({"provider": "openrouter"}));
}

#[test]
fn a_profile_outside_the_order_an_agent_walks_gets_no_invented_agent_order() {
    let case = "main-order";
    let ans = answers(case);
    let t = TempStore::new();
    let r = ok(&t.path, "store.import", json!({"path": fixture(case)}));
    assert_eq!(r["errors"], json!([]));
    assert!(
        r["orders"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["scope"] != "main"),
        "no made-up order for agent main: {r}"
    );
    assert_view(&t.path, Some("main"), &ans["views"]["main"]);
    // The effective order for main is OpenClaw's, entry by entry.
    let o = ok(
        &t.path,
        "order.get",
        json!({"provider": "openrouter", "agent": "main"}),
    );
    let mine: Vec<&Value> = o["effective"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["usable"] == true)
        .map(|e| &e["profileId"])
        .collect();
    let theirs: Vec<&Value> = ans["views"]["main"]["providers"]["openrouter"]["effectiveProfiles"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(mine, theirs, "{o}");
}

/// Copies `<case>/<part>` over `dst` (emptied first), as OpenClaw changing its state in place.
fn put_state(case: &str, part: &str, dst: &Path) {
    let _ = std::fs::remove_dir_all(dst);
    copy_dir(&fixture(case).join(part), dst);
}

#[test]
fn a_sync_re_import_follows_openclaws_changes_and_a_default_one_warns() {
    let case = "reimport";
    let ans = answers(case);
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("openclaw");
    put_state(case, "before", &state);
    let t = TempStore::new();
    let r = ok(&t.path, "store.import", json!({"path": state}));
    assert_eq!(r["errors"], json!([]));
    for (agent, view) in ans["before"]["views"].as_object().unwrap() {
        assert_view(&t.path, Some(agent), view);
    }
    // OpenClaw changes: openai:a rotated, openai:old logged out, cron-nightly's override
    // changed, openai:c added.
    put_state(case, "after", &state);
    let r = ok(&t.path, "store.import", json!({"path": state}));
    let stale: Vec<String> = r["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["kind"] == "stale_kept")
        .map(|w| w["message"].as_str().unwrap().to_string())
        .collect();
    assert!(stale.iter().any(|m| m.contains("openai:a")), "{r}");
    assert!(stale.iter().any(|m| m.contains("openai:old")), "{r}");
    assert!(!r.to_string().contains("sk-openai"), "{r}");
    // sync: modelauth's view of the source is OpenClaw's current one, and it says so.
    let dry = ok(
        &t.path,
        "store.import",
        json!({"path": state, "sync": true, "dryRun": true}),
    );
    let r = ok(
        &t.path,
        "store.import",
        json!({"path": state, "sync": true}),
    );
    assert_eq!(dry["profiles"], r["profiles"]);
    let removed: Vec<&Value> = r["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["action"] == "removed")
        .collect();
    assert!(
        removed
            .iter()
            .all(|p| p["profileId"] == "openai:old" && p["reason"] == "removed_in_source"),
        "{r}"
    );
    assert!(!removed.is_empty(), "{r}");
    assert!(r["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["profileId"] == "openai:a" && p["action"] == "updated"));
    for (agent, view) in ans["after"]["views"].as_object().unwrap() {
        assert_view(&t.path, Some(agent), view);
    }
    for scope in [json!({}), json!({"agent": "main"})] {
        let mut p = scope.clone();
        p["profileId"] = json!("openai:old");
        let e = err(&t.path, "profiles.get", p);
        assert_eq!(e["data"]["kind"], "unknown_profile");
    }
    let a = ok(
        &t.path,
        "auth.resolve",
        json!({"provider": "openai", "profileId": "openai:a"}),
    );
    assert_eq!(a["secret"], "sk-openai-a-fake-0011");
    // A profile that came from elsewhere is never removed by a sync.
    ok(
        &t.path,
        "profiles.put",
        json!({"profile": common::api_key("openai:mine", "sk-mine-fake-1")}),
    );
    let again = ok(
        &t.path,
        "store.import",
        json!({"path": state, "sync": true}),
    );
    assert!(
        again["profiles"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["action"] != "removed"),
        "{again}"
    );
    ok(&t.path, "profiles.get", json!({"profileId": "openai:mine"}));
    // sync needs a path.
    let e = err(
        &t.path,
        "store.import",
        json!({"document": {"version": 1, "profiles": {}}, "sync": true}),
    );
    assert_eq!(e["data"]["pointer"], "/sync");
}

/// Moves `expires` of `id` in the shared OpenClaw store of `state` to `at`.
fn set_expires(state: &Path, id: &str, at: i64) {
    let db = rusqlite::Connection::open(state.join("state/openclaw.sqlite")).unwrap();
    db.execute(
        "UPDATE config_machine_state SET value_json = json_set(value_json, ?1, ?2) WHERE state_key = 'authProfiles.store'",
        rusqlite::params![format!("$.profiles.\"{id}\".expires"), at],
    )
    .unwrap();
}

#[test]
fn chatgpt_oauth_under_openai_is_built_in_refreshable_and_expired_as_in_openclaw() {
    let case = "openai-oauth";
    let ans = answers(case);
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("openclaw");
    copy_dir(&fixture(case), &state);
    // OpenClaw answered an hour after expiry; pin the same distance to now.
    set_expires(&state, "openai:default", common::now_ms() - 3_600_000);
    let t = TempStore::new();
    let r = ok(&t.path, "store.import", json!({"path": state}));
    assert_eq!(r["errors"], json!([]));
    let view = &ans["views"]["main"]["providers"]["openai"];
    assert_eq!(view["status"], "expired");
    assert_eq!(view["effectiveProfiles"], json!(["openai:default"]));
    let st = ok(&t.path, "auth.status", json!({}));
    let p = st["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == "openai")
        .unwrap();
    assert_eq!(p["status"], "expired", "{st}");
    assert_eq!(p["profiles"][0]["status"], "refreshable", "{st}");
    // Usable in the effective order: auth.resolve refreshes it first.
    let o = ok(&t.path, "order.get", json!({"provider": "openai"}));
    assert_eq!(o["effective"][0]["profileId"], "openai:default", "{o}");
    assert_eq!(o["effective"][0]["usable"], true, "{o}");
    let g = ok(&t.path, "providers.get", json!({"id": "openai"}));
    assert_eq!(
        g["provider"]["oauth"]["tokenUrl"],
        "https://auth.openai.com/oauth/token"
    );
    assert_eq!(g["provider"]["builtin"], true, "{g}");
    // While valid, OpenClaw and modelauth say ok and pick it.
    set_expires(&state, "openai:default", common::now_ms() + 30 * 86_400_000);
    let t2 = TempStore::new();
    ok(&t2.path, "store.import", json!({"path": state}));
    assert_view(&t2.path, None, &ans["viewsValid"]["main"]);
}

#[test]
fn a_failed_refresh_fence_is_expired_and_the_warning_names_the_real_tokens() {
    let case = "refresh-fence";
    let ans = answers(case);
    let t = TempStore::new();
    let v = ok(&t.path, "store.validate", json!({"path": fixture(case)}));
    let r = ok(&t.path, "store.import", json!({"path": fixture(case)}));
    for doc in [&v, &r] {
        let w = doc["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["kind"] == "refresh_fence")
            .unwrap_or_else(|| panic!("{doc}"));
        assert!(
            w["message"]
                .as_str()
                .unwrap()
                .contains("oauth.json.migrated-"),
            "{w}"
        );
    }
    let view = &ans["views"]["main"]["providers"]["openai"];
    assert_eq!(view["status"], "expired");
    let st = ok(&t.path, "auth.status", json!({}));
    let p = st["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == "openai")
        .unwrap();
    assert_eq!(p["status"], view["status"], "{st}");
    assert_eq!(p["profiles"][0]["status"], "expired", "{st}");
    // Deliberate exception: OpenClaw keeps the fenced profile in its effective list (it
    // would send the fence to the token endpoint); modelauth never hands out or refreshes a
    // fence, so the provider resolves nothing until someone logs in again.
    let e = err(&t.path, "auth.resolve", json!({"provider": "openai"}));
    assert_ne!(e["data"]["kind"], "refresh_failed", "{e}");
    assert!(
        !e.to_string().contains("openclaw-oauth-refresh-fence"),
        "{e}"
    );
}

#[test]
fn a_legacy_per_agent_auth_json_imports_as_openclaws_doctor_migrates_it() {
    let case = "legacy-agent-auth";
    let ans = answers(case);
    let t = TempStore::new();
    let r = ok(&t.path, "store.import", json!({"path": fixture(case)}));
    assert_eq!(r["errors"], json!([]));
    // The legacy file fills deepseek:default, as OpenClaw's doctor migrated it.
    assert!(r["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["profileId"] == "deepseek:default" && p["action"] == "created"));
    let mut mine: Vec<String> = ok(&t.path, "profiles.list", json!({"agent": "main"}))["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    mine.sort();
    mine.dedup();
    let mut theirs: Vec<String> = ans["authList"]["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    theirs.sort();
    assert_eq!(mine, theirs);
    assert_view(&t.path, Some("main"), &ans["views"]["main"]);
}

/// The `source` modelauth gives an order that OpenClaw's `models auth order get --json`
/// read from `authStatePath`: an agent's own database (`agents/<id>/agent/
/// openclaw-agent.sqlite`) holds that agent's order; the shared state database
/// (`state/openclaw.sqlite`) holds the order every agent without its own database reads,
/// whichever `agentId` OpenClaw echoes.
fn source_of(open_claw_order_get: &Value) -> &'static str {
    let path = open_claw_order_get["authStatePath"].as_str().unwrap();
    if path.ends_with("/agent/openclaw-agent.sqlite") {
        "agent"
    } else {
        assert!(path.ends_with("state/openclaw.sqlite"), "{path}");
        "shared"
    }
}

#[test]
fn an_order_doctor_moved_into_the_shared_database_is_labelled_as_openclaw_reads_it() {
    let case = "doctor-shared-order";
    let ans = answers(case);
    let t = TempStore::new();
    let r = ok(&t.path, "store.import", json!({"path": fixture(case)}));
    assert_eq!(r["errors"], json!([]), "{r}");
    // OpenClaw answers for `main` (the default agent) and for `cron-nightly`, an agent added
    // after the doctor ran, from the same row of the shared database: the order is not
    // main's own, so importing it as agent `main`'s would lose it for cron-nightly.
    for (asked, agent) in [
        ("default", None),
        ("main", Some("main")),
        ("cron-nightly", Some("cron-nightly")),
    ] {
        let theirs = &ans["orderGet"][asked];
        assert_eq!(theirs["authStatePath"], "state/openclaw.sqlite");
        let mut p = json!({"provider": "openrouter"});
        if let Some(a) = agent {
            p["agent"] = json!(a);
        }
        let mine = ok(&t.path, "order.get", p);
        assert_eq!(mine["order"], theirs["order"], "{asked}: {mine}");
        assert_eq!(mine["source"], source_of(theirs), "{asked}: {mine}");
    }
    for agent in ["main", "cron-nightly"] {
        assert_view(&t.path, Some(agent), &ans["views"][agent]);
    }
}

#[test]
fn an_order_set_for_an_agent_is_that_agents_as_in_openclaw() {
    let t = TempStore::new();
    let state = t.dir.path().join("after");
    put_state("reimport", "after", &state);
    let r = ok(&t.path, "store.import", json!({"path": state}));
    assert_eq!(r["errors"], json!([]), "{r}");
    let theirs = &answers("reimport")["after"]["orderGet"]["main"]["openai"];
    let mine = ok(
        &t.path,
        "order.get",
        json!({"provider": "openai", "agent": "main"}),
    );
    assert_eq!(mine["order"], theirs["order"], "{mine}");
    assert_eq!(mine["source"], source_of(theirs), "{mine}");
    assert_eq!(mine["source"], "agent");
}

/// PROTOCOL §11 (r3), issue 20: a provider registration an import brings never takes over a
/// built-in provider or another provider's id through an alias without saying so, even with
/// `includeSettings: true`; `replace: true` takes it, and says so too.
#[test]
fn an_imported_provider_never_shadows_a_builtin_or_an_existing_id_silently() {
    if common::skip_on_pg("the source of format modelauth-store is a SQLite file") {
        return;
    }
    let src = TempStore::new();
    ok(
        &src.path,
        "providers.put",
        json!({"id": "anthropic", "oauth": {"tokenUrl": "https://collector.example/token", "clientId": "x"}}),
    );
    ok(
        &src.path,
        "providers.put",
        json!({"id": "acme", "aliases": ["openai"]}),
    );
    ok(&src.path, "providers.put", json!({"id": "plain"}));
    let dst = TempStore::new();
    ok(
        &dst.path,
        "profiles.put",
        json!({"profile": {"id": "openai:a", "type": "api_key", "key": "sk-openai-fake-1"}}),
    );
    // store.validate names both, and the dry run and the import skip both.
    let v = ok(
        &dst.path,
        "store.validate",
        json!({"path": src.path, "format": "modelauth-store"}),
    );
    let kinds: Vec<&str> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"provider_shadows_builtin") && kinds.contains(&"alias_shadows_provider"),
        "{v}"
    );
    let params = json!({"path": src.path, "format": "modelauth-store", "includeSettings": true});
    let mut dry = params.clone();
    dry["dryRun"] = true.into();
    let d = ok(&dst.path, "store.import", dry);
    let r = ok(&dst.path, "store.import", params);
    for doc in [&d, &r] {
        let action = |name: &str| {
            doc["settings"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["name"] == name)
                .unwrap_or_else(|| panic!("{name}: {doc}"))
                .clone()
        };
        let warn = |kind: &str| {
            doc["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w["kind"] == kind)
        };
        assert_eq!(action("anthropic")["action"], "skipped", "{doc}");
        assert_eq!(action("anthropic")["reason"], "provider_shadows_builtin");
        assert_eq!(action("acme")["action"], "skipped", "{doc}");
        assert_eq!(action("acme")["reason"], "alias_shadows_provider");
        assert!(
            warn("provider_shadows_builtin") && warn("alias_shadows_provider"),
            "{doc}"
        );
        assert_ne!(action("plain")["action"], "skipped", "{doc}");
    }
    // Nothing was taken over: anthropic is still the built-in, openai still openai.
    let a = ok(&dst.path, "providers.get", json!({"id": "anthropic"}));
    assert_eq!(a["provider"]["builtin"], true, "{a}");
    assert!(!a.to_string().contains("collector.example"), "{a}");
    let got = ok(&dst.path, "auth.resolve", json!({"provider": "openai"}));
    assert_eq!(got["profileId"], "openai:a");
    // replace: true takes them, and still names each one.
    let r = ok(
        &dst.path,
        "store.import",
        json!({"path": src.path, "format": "modelauth-store", "includeSettings": true, "replace": true}),
    );
    let kinds: Vec<&str> = r["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"provider_shadows_builtin") && kinds.contains(&"alias_shadows_provider"),
        "{r}"
    );
    let a = ok(&dst.path, "providers.get", json!({"id": "anthropic"}));
    assert_eq!(
        a["provider"]["oauth"]["tokenUrl"], "https://collector.example/token",
        "{a}"
    );
}
