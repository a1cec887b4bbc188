//! OpenClaw fidelity (issue 12, protocol §3 r2 "Import" and "auth.status", §5.2): states
//! that the real OpenClaw 2026.9.6 CLI wrote, in `tests/fixtures/openclaw/<case>/`, each with
//! `openclaw-answers.json` (what OpenClaw answered about it: `models status --json`'s
//! `auth.oauth.providers`, `models auth order get --json`, `models auth list --json`).
//! After `store.import`, modelauth must pick and report as OpenClaw did. Runs without the peer.

mod common;

use std::path::{Path, PathBuf};

use common::{cmd, err, ok, snapshot, TempStore};
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

/// `None` = OpenClaw's default agent `main`, modelauth's shared scope.
fn scope(agent: &str) -> Option<&str> {
    (agent != "main").then_some(agent)
}

fn with_agent(mut params: Value, agent: Option<&str>) -> Value {
    if let Some(a) = agent {
        params["agent"] = json!(a);
    }
    params
}

/// For every view OpenClaw answered about: the pick (first of its effective profiles)
/// equals `auth.resolve`'s, and the provider roll-up equals `auth.status`'s.
fn assert_views_match(store: &Path, ans: &Value) {
    for (agent, view) in ans["views"].as_object().unwrap() {
        let a = scope(agent);
        let st = ok(store, "auth.status", with_agent(json!({}), a));
        for (provider, p) in view["providers"].as_object().unwrap() {
            let mine = st["providers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["provider"] == *provider)
                .unwrap_or_else(|| panic!("{agent}/{provider} missing in {st}"));
            assert_eq!(
                mine["status"], p["status"],
                "{agent}/{provider} roll-up: OpenClaw {p}, modelauth {mine}"
            );
            if let Some(first) = p["effectiveProfiles"].as_array().unwrap().first() {
                let r = ok(
                    store,
                    "auth.resolve",
                    with_agent(json!({"provider": provider}), a),
                );
                assert_eq!(&r["profileId"], first, "{agent}/{provider} pick");
            }
        }
    }
}

#[test]
fn agent_keys_and_the_config_order_openclaw_rewrote_pick_what_openclaw_picks() {
    // `paste-api-key --agent cron-nightly` after an order existed: the profile lives in the
    // agent's database, the config order names it first.
    let case = "agent-config-order";
    let ans = answers(case);
    let t = TempStore::new();
    let r = ok(&t.path, "store.import", json!({"path": fixture(case)}));
    assert_eq!(r["errors"], json!([]));
    assert!(
        !r["warnings"].to_string().contains("was not imported"),
        "{r}"
    );
    // No made-up agent order: the agent walks the shared (config) order, as OpenClaw does.
    let orders = r["orders"].as_array().unwrap();
    assert_eq!(orders.len(), 1, "{r}");
    assert_eq!(orders[0]["scope"], "shared");
    assert_eq!(
        orders[0]["order"],
        json!(["openrouter:cron", "openrouter:key", "openrouter:manual"])
    );
    assert_views_match(&t.path, &ans);
    let cron = ok(
        &t.path,
        "auth.resolve",
        json!({"provider": "openrouter", "agent": "cron-nightly"}),
    );
    assert_eq!(cron["profileId"], "openrouter:cron");
    assert_eq!(cron["secret"], "sk-or-cron-fake-0003");
    let main = ok(&t.path, "auth.resolve", json!({"provider": "openrouter"}));
    assert_eq!(main["profileId"], "openrouter:key");
    // A token without expires plus an api_key: the provider is `ok` (OpenClaw), not static.
    assert_eq!(
        ans["views"]["main"]["providers"]["openrouter"]["status"],
        "ok"
    );
}

#[test]
fn agent_keys_without_an_order_walk_openclaws_config_profile_sequence() {
    let case = "agent-config-profiles";
    let ans = answers(case);
    let t = TempStore::new();
    let r = ok(&t.path, "store.import", json!({"path": fixture(case)}));
    assert_eq!(r["errors"], json!([]));
    assert!(
        r["warnings"].to_string().contains("order_from_config"),
        "{r}"
    );
    assert_views_match(&t.path, &ans);
    // OpenClaw keeps its first-pasted key first, for the agent too (not the id order).
    let cron = ok(
        &t.path,
        "auth.resolve",
        json!({"provider": "openrouter", "agent": "cron-nightly"}),
    );
    assert_eq!(cron["profileId"], "openrouter:shared");
}

/// Rewrites the `expires` of each provider in an Era-A oauth.json copy to `now + delta`.
fn rebase_era_a(path: &Path, deltas: &[(&str, i64)]) {
    let mut doc: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    for (p, d) in deltas {
        doc[p]["expires"] = json!(common::now_ms() + d);
    }
    std::fs::write(path, doc.to_string()).unwrap();
}

#[test]
fn era_a_oauth_json_imports_as_oauth_default_in_a_state_dir_and_as_a_file() {
    let case = "era-a-oauth";
    let ans = answers(case);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("openclaw");
    copy_dir(&fixture(case), &dir);
    // OpenClaw answered at its clock: anthropic 30 days ahead, openai-codex an hour past.
    let file = dir.join("credentials/oauth.json");
    rebase_era_a(
        &file,
        &[("anthropic", 30 * 86_400_000), ("openai-codex", -3_600_000)],
    );
    let before = snapshot(&dir);
    let t = TempStore::new();
    let r = ok(&t.path, "store.import", json!({"path": dir}));
    assert_eq!(r["format"], "openclaw-state");
    assert_eq!(r["errors"], json!([]));
    let mut ids: Vec<String> = r["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["profileId"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    let mut want: Vec<String> = ans["authList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    want.sort();
    assert_eq!(ids, want);
    for p in ans["authList"].as_array().unwrap() {
        let got = ok(&t.path, "profiles.get", json!({"profileId": p["id"]}));
        assert_eq!(got["profile"]["type"], p["type"]);
    }
    let st = ok(&t.path, "auth.status", json!({}));
    for (provider, p) in ans["views"]["main"]["providers"].as_object().unwrap() {
        let mine = st["providers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["provider"] == *provider)
            .unwrap();
        assert_eq!(mine["status"], p["status"], "{provider}: {st}");
    }
    assert_eq!(snapshot(&dir), before, "the source is only read");
    // As a file: the same two profiles, no invalid_type.
    let t2 = TempStore::new();
    let r = ok(&t2.path, "store.import", json!({"path": file}));
    assert_eq!(r["format"], "openclaw-flat");
    assert_eq!(r["errors"], json!([]));
    assert_eq!(r["profiles"].as_array().unwrap().len(), 2);
    let p = ok(
        &t2.path,
        "profiles.get",
        json!({"profileId": "openai-codex:default"}),
    );
    assert_eq!(p["profile"]["type"], "oauth");
    assert_eq!(p["profile"]["accountId"], "acct-fake-1");
}

#[test]
fn era_a_entries_fill_only_absent_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("openclaw");
    copy_dir(&fixture("era-a-oauth"), &dir);
    let agent = dir.join("agents/main/agent");
    std::fs::create_dir_all(&agent).unwrap();
    std::fs::write(
        agent.join("auth-profiles.json"),
        json!({"version": 1, "profiles": {"anthropic:default": {"type": "api_key", "provider": "anthropic", "key": "sk-ant-api-fake"}}}).to_string(),
    )
    .unwrap();
    let t = TempStore::new();
    let r = ok(&t.path, "store.import", json!({"path": dir}));
    assert!(r["warnings"].to_string().contains("legacy_skipped"), "{r}");
    let p = ok(
        &t.path,
        "profiles.get",
        json!({"profileId": "anthropic:default"}),
    );
    assert_eq!(p["profile"]["type"], "api_key");
    let p = ok(
        &t.path,
        "profiles.get",
        json!({"profileId": "openai-codex:default"}),
    );
    assert_eq!(p["profile"]["type"], "oauth");
}

#[test]
fn a_ref_beats_a_literal_unknown_order_ids_are_kept_and_refs_are_checked_in_status() {
    let case = "refs-literal-order";
    let ans = answers(case);
    let t = TempStore::new();
    let r = ok(&t.path, "store.import", json!({"path": fixture(case)}));
    assert_eq!(r["errors"], json!([]));
    let w = r["warnings"].as_array().unwrap();
    let lit = w.iter().find(|w| w["kind"] == "literal_dropped").unwrap();
    assert_eq!(lit["pointer"], "/profiles/mistral:both/key");
    assert!(!r.to_string().contains("sk-mistral-literal-fake-9999"));
    let unknown = w
        .iter()
        .find(|w| w["kind"] == "order_entry_unknown")
        .unwrap();
    assert_eq!(unknown["pointer"], "/order/mistral/1");
    // OpenClaw's doctor kept the ref, dropped the literal, and kept the unknown id.
    let migrated = &ans["migratedStore"]["profiles"]["mistral:both"];
    assert!(migrated.get("key").is_none() && migrated.get("keyRef").is_some());
    let o = ok(&t.path, "order.get", json!({"provider": "mistral"}));
    assert_eq!(o["order"], ans["orderGet"]["main"]["mistral"]);
    let exported = ok(&t.path, "store.export", json!({"reveal": true}));
    let both = &exported["document"]["profiles"]["mistral:both"];
    assert!(both.get("key").is_none(), "{both}");
    assert_eq!(both["keyRef"]["id"], "MISTRAL_FIDELITY_KEY");

    // With the ref's variable set, mistral:both is picked (first of the order).
    let mut c = cmd(&t.path);
    c.env("MISTRAL_FIDELITY_KEY", "sk-mistral-env-fake");
    let out = common::call_with_stdin(c, "auth.resolve", &json!({"provider": "mistral"}));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["profileId"], "mistral:both");
    assert_eq!(v["secret"], "sk-mistral-env-fake");

    // Refs in status: an env ref to an unset variable is ref_unavailable, counts as
    // missing, and check exits 1 (OpenClaw itself calls it static: modelauth refines).
    assert_eq!(
        ans["views"]["main"]["providers"]["openrouter"]["status"],
        "static"
    );
    let st = ok(&t.path, "auth.status", json!({"provider": "openrouter"}));
    assert_eq!(st["providers"][0]["status"], "missing", "{st}");
    assert_eq!(
        st["providers"][0]["profiles"][0]["status"],
        "ref_unavailable"
    );
    let out = cmd(&t.path).args(["check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let mut c = cmd(&t.path);
    c.env("MODELAUTH_FIDELITY_UNSET_VAR", "sk-or-env-fake")
        .env("MISTRAL_FIDELITY_KEY", "sk-mistral-env-fake");
    let out = c.args(["check", "--json"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let st: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["overall"], "static");
}

#[test]
fn exec_refs_run_only_with_probe() {
    let t = TempStore::new();
    let dir = t.dir.path();
    let helper = dir.join("helper.sh");
    let marker = dir.join("ran");
    std::fs::write(
        &helper,
        format!("#!/bin/sh\ntouch {}\nexit 3\n", marker.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o700)).unwrap();
    ok(
        &t.path,
        "settings.set",
        json!({"settings": {"secretProviders": {"vault": {"source": "exec", "command": helper}}}}),
    );
    ok(
        &t.path,
        "profiles.put",
        json!({"profile": {"id": "openai:vault", "type": "api_key",
                           "keyRef": {"source": "exec", "provider": "vault", "id": "openai"}}}),
    );
    let out = cmd(&t.path).args(["check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        !marker.exists(),
        "check without --probe ran the exec helper"
    );
    let out = cmd(&t.path)
        .args(["check", "--probe", "--json"])
        .output()
        .unwrap();
    assert!(marker.exists(), "check --probe runs the exec helper");
    assert_eq!(out.status.code(), Some(1));
    let st: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        st["providers"][0]["profiles"][0]["status"],
        "ref_unavailable"
    );
}

#[test]
fn builtin_oauth_providers_are_known_overridable_and_listed() {
    let t = TempStore::new();
    let l = ok(&t.path, "providers.list", json!({}));
    let codex = l["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "openai-codex")
        .unwrap()
        .clone();
    assert_eq!(codex["builtin"], true);
    assert_eq!(
        codex["oauth"]["tokenUrl"],
        "https://auth.openai.com/oauth/token"
    );
    assert_eq!(codex["oauth"]["clientId"], "app_EMoamEEZ73f0CkXaXp7hrann");
    let a = ok(&t.path, "providers.get", json!({"id": "anthropic"}));
    assert_eq!(
        a["provider"]["oauth"]["tokenUrl"],
        "https://platform.claude.com/v1/oauth/token"
    );
    // An imported expired OAuth profile of a built-in provider is refreshable as is.
    let past = common::now_ms() - 3_600_000;
    ok(
        &t.path,
        "profiles.put",
        json!({"profile": {"id": "openai-codex:default", "type": "oauth", "access": "fake-a",
                           "refresh": "fake-r", "expires": past}}),
    );
    let st = ok(&t.path, "auth.status", json!({}));
    let p = &st["providers"][0];
    assert_eq!(p["profiles"][0]["status"], "refreshable", "{st}");
    // OpenClaw rolls an OAuth past expires up as expired, refresh token or not.
    assert_eq!(p["status"], "expired");
    // Overridden by providers.put: the registration wins and is not builtin.
    ok(
        &t.path,
        "providers.put",
        json!({"id": "openai-codex", "oauth": {"tokenUrl": "http://127.0.0.1:9/token", "clientId": "mine"}}),
    );
    let g = ok(&t.path, "providers.get", json!({"id": "openai-codex"}));
    assert_eq!(g["provider"]["builtin"], false);
    assert_eq!(g["provider"]["oauth"]["clientId"], "mine");
    // Removing the override restores the built-in; a built-in is not removable.
    ok(&t.path, "providers.remove", json!({"id": "openai-codex"}));
    let g = ok(&t.path, "providers.get", json!({"id": "openai-codex"}));
    assert_eq!(g["provider"]["builtin"], true);
    let e = err(&t.path, "providers.remove", json!({"id": "openai-codex"}));
    assert_eq!(e["data"]["kind"], "unknown_provider");
}

/// Sets `expires` of profile `id` in the shared store (`authProfiles.store`) of a copied
/// OpenClaw state dir to `at` (ms since the epoch).
fn rebase_shared_expiry(dir: &Path, id: &str, at: i64) {
    let c = rusqlite::Connection::open(dir.join("state/openclaw.sqlite")).unwrap();
    let q = "SELECT value_json FROM config_machine_state WHERE state_key = 'authProfiles.store'";
    let text: String = c.query_row(q, [], |r| r.get(0)).unwrap();
    let mut doc: Value = serde_json::from_str(&text).unwrap();
    doc["profiles"][id]["expires"] = json!(at);
    c.execute(
        "UPDATE config_machine_state SET value_json = ?1 WHERE state_key = 'authProfiles.store'",
        [doc.to_string()],
    )
    .unwrap();
}

#[test]
fn status_roll_ups_and_check_equal_openclaws_models_status() {
    let case = "status-rollup";
    let ans = answers(case);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("openclaw");
    copy_dir(&fixture(case), &dir);
    // OpenClaw answered 65 s after `--expires-in 12h`: keep that token 12 h ahead.
    rebase_shared_expiry(&dir, "mistral:soon", common::now_ms() + 12 * 3_600_000);
    let t = TempStore::new();
    let r = ok(&t.path, "store.import", json!({"path": dir}));
    assert_eq!(r["errors"], json!([]));
    let views = &ans["views"]["main"]["providers"];
    // What OpenClaw said: a token without expires + an api_key → ok; an expired token with
    // an api_key fallback → static; a token expiring in 12 h → expiring.
    assert_eq!(views["openrouter"]["status"], "ok");
    assert_eq!(views["deepseek"]["status"], "static");
    assert_eq!(views["mistral"]["status"], "expiring");
    assert_views_match(&t.path, &ans);
    let st = ok(&t.path, "auth.status", json!({}));
    for p in st["providers"].as_array().unwrap() {
        let theirs = &views[p["provider"].as_str().unwrap()]["profiles"];
        for pr in p["profiles"].as_array().unwrap() {
            assert_eq!(
                pr["status"],
                theirs[pr["profileId"].as_str().unwrap()]["status"],
                "{pr}"
            );
        }
    }
    // check: expiring → 2 (OpenClaw's --check contract); without mistral → 0.
    assert_eq!(st["overall"], "expiring");
    let out = cmd(&t.path).args(["check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = cmd(&t.path)
        .args(["check", "--provider", "deepseek"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_commit_still_in_the_wal_is_imported_and_the_source_stays_byte_identical() {
    // OpenClaw wrote openrouter:new while another connection (a running gateway) held
    // the database open, so that commit is only in `state/openclaw.sqlite-wal`.
    let case = "wal-gateway";
    let ans = answers(case);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("openclaw");
    copy_dir(&fixture(case), &dir);
    let db = dir.join("state/openclaw.sqlite");
    // The fixture is what it claims: an immutable open (no WAL) does not see the new key.
    {
        let uri = format!("file:{}?mode=ro&immutable=1", db.display());
        let c = rusqlite::Connection::open_with_flags(
            uri,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
        )
        .unwrap();
        let q =
            "SELECT value_json FROM config_machine_state WHERE state_key = 'authProfiles.store'";
        let text: String = c.query_row(q, [], |r| r.get(0)).unwrap();
        assert!(!text.contains("openrouter:new"));
    }
    let before = snapshot(&dir);
    assert!(!before[&dir.join("state/openclaw.sqlite-wal")].is_empty());
    let t = TempStore::new();
    let r = ok(&t.path, "store.import", json!({"path": dir}));
    assert_eq!(r["errors"], json!([]));
    assert!(!r["warnings"].to_string().contains("wal_not_read"), "{r}");
    let got = ok(
        &t.path,
        "profiles.get",
        json!({"profileId": "openrouter:new", "reveal": true}),
    );
    assert_eq!(got["profile"]["key"], "sk-or-new-fake-0002");
    // What OpenClaw lists (it reads the WAL too).
    for p in ans["authList"].as_array().unwrap() {
        ok(&t.path, "profiles.get", json!({"profileId": p["id"]}));
    }
    // Source, -wal and -shm byte-identical; no checkpoint ran (the WAL is still there).
    assert_eq!(snapshot(&dir), before);
    assert_views_match(&t.path, &ans);
}
