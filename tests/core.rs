//! End-to-end behaviour of the core (issue: transport, store, profiles, order, resolution),
//! driving the real binary over stdin/stdout.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use common::*;
use serde_json::{json, Value};

// ---- The OpenClaw bugs this project exists to make impossible.

#[test]
fn oauth_login_without_an_order_is_resolved() {
    let s = TempStore::new();
    let put = ok(
        &s.path,
        "profiles.put",
        json!({"profile": oauth("openai-codex:me@example.com", "acc-codex-1", "ref-codex-1")}),
    );
    assert_eq!(put["created"], true);
    assert_eq!(put["order"], Value::Null);
    let r = ok(&s.path, "auth.resolve", json!({"provider": "openai-codex"}));
    assert_eq!(r["profileId"], "openai-codex:me@example.com");
    assert_eq!(r["secret"], "acc-codex-1");
    assert_eq!(r["type"], "oauth");
    assert_eq!(r["source"], "profile");
}

#[test]
fn a_profile_put_into_a_provider_with_an_order_is_appended_and_resolvable() {
    let s = TempStore::new();
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai-codex:paid", "key-paid-1")}),
    );
    ok(
        &s.path,
        "order.set",
        json!({"provider": "openai-codex", "order": ["openai-codex:paid"]}),
    );
    let put = ok(
        &s.path,
        "profiles.put",
        json!({"profile": oauth("openai-codex:sub", "acc-sub-1", "ref-sub-1")}),
    );
    assert_eq!(
        put["order"],
        json!(["openai-codex:paid", "openai-codex:sub"])
    );
    let got = ok(&s.path, "order.get", json!({"provider": "openai-codex"}));
    assert_eq!(
        got["order"],
        json!(["openai-codex:paid", "openai-codex:sub"])
    );
    assert_eq!(
        got["effective"][1],
        json!({"profileId": "openai-codex:sub", "usable": true})
    );
    // Resolvable: pinned, and as soon as the first one goes.
    let r = ok(
        &s.path,
        "auth.resolve",
        json!({"provider": "openai-codex", "profileId": "openai-codex:sub"}),
    );
    assert_eq!(r["secret"], "acc-sub-1");
    ok(
        &s.path,
        "profiles.remove",
        json!({"profileId": "openai-codex:paid"}),
    );
    let r = ok(&s.path, "auth.resolve", json!({"provider": "openai-codex"}));
    assert_eq!(r["profileId"], "openai-codex:sub");
}

#[test]
fn primary_puts_the_profile_first_and_records_last_good() {
    let s = TempStore::new();
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai-codex:paid", "key-paid-2")}),
    );
    ok(
        &s.path,
        "order.set",
        json!({"provider": "openai-codex", "order": ["openai-codex:paid"]}),
    );
    let put = ok(
        &s.path,
        "profiles.put",
        json!({"profile": oauth("openai-codex:sub", "acc-sub-2", "ref-sub-2"), "primary": true}),
    );
    assert_eq!(
        put["order"],
        json!(["openai-codex:sub", "openai-codex:paid"])
    );
    let r = ok(&s.path, "auth.resolve", json!({"provider": "openai-codex"}));
    assert_eq!(r["profileId"], "openai-codex:sub");
    assert_eq!(r["secret"], "acc-sub-2");
}

#[test]
fn primary_without_an_order_creates_one_that_puts_it_first() {
    let s = TempStore::new();
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": oauth("anthropic:sub", "acc-a", "ref-a")}),
    );
    let put = ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("anthropic:paid", "key-a"), "primary": true}),
    );
    assert_eq!(put["order"], json!(["anthropic:paid", "anthropic:sub"]));
    assert_eq!(
        ok(&s.path, "auth.resolve", json!({"provider": "anthropic"}))["profileId"],
        "anthropic:paid"
    );
}

#[test]
fn an_agent_never_seen_before_resolves_shared_profiles() {
    let s = TempStore::new();
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:default", "sk-shared-cron-1")}),
    );
    let r = ok(
        &s.path,
        "auth.resolve",
        json!({"provider": "openai", "agent": "cron-nightly-7f3a"}),
    );
    assert_eq!(r["secret"], "sk-shared-cron-1");
    assert_eq!(r["agent"], "cron-nightly-7f3a");
    assert_eq!(r["profileId"], "openai:default");
}

#[test]
fn a_provider_without_profiles_is_missing_credential_with_a_profiles_put_hint() {
    let s = TempStore::new();
    let e = err(
        &s.path,
        "auth.resolve",
        json!({"provider": "anthropic", "agent": "cron"}),
    );
    assert_eq!(e["code"], -32020);
    assert_eq!(e["data"]["kind"], "missing_credential");
    let hint = e["data"]["hint"].as_str().unwrap();
    assert!(hint.contains("profiles.put"), "{hint}");
    assert!(
        hint.contains("\"type\": \"api_key\""),
        "the hint carries an example: {hint}"
    );
    assert!(!hint.to_lowercase().contains("copy"), "{hint}");
    assert!(!store_exists(&s.path), "a read never creates the store");
}

#[test]
fn an_agent_sees_its_own_profile_over_the_shared_one_and_its_own_order() {
    let s = TempStore::new();
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:default", "sk-shared-x")}),
    );
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:default", "sk-agent-x"), "agent": "main"}),
    );
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:other", "sk-other-x")}),
    );
    assert_eq!(
        ok(
            &s.path,
            "auth.resolve",
            json!({"provider": "openai", "profileId": "openai:default", "agent": "main"})
        )["secret"],
        "sk-agent-x"
    );
    assert_eq!(
        ok(
            &s.path,
            "auth.resolve",
            json!({"provider": "openai", "profileId": "openai:default"})
        )["secret"],
        "sk-shared-x"
    );
    let list = ok(&s.path, "profiles.list", json!({"agent": "main"}));
    let scopes: Vec<(String, String)> = list["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_string(),
                p["scope"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        scopes,
        [
            ("openai:default".into(), "main".into()),
            ("openai:other".into(), "shared".into())
        ]
    );
    // The agent's order wins over the shared one; other agents keep the shared one.
    ok(
        &s.path,
        "order.set",
        json!({"provider": "openai", "order": ["openai:default"]}),
    );
    ok(
        &s.path,
        "order.set",
        json!({"provider": "openai", "agent": "main", "order": ["openai:other"]}),
    );
    let g = ok(
        &s.path,
        "order.get",
        json!({"provider": "openai", "agent": "main"}),
    );
    assert_eq!(
        (g["source"].clone(), g["order"].clone()),
        (json!("agent"), json!(["openai:other"]))
    );
    let g = ok(
        &s.path,
        "order.get",
        json!({"provider": "openai", "agent": "other"}),
    );
    assert_eq!(
        (g["source"].clone(), g["order"].clone()),
        (json!("shared"), json!(["openai:default"]))
    );
    assert_eq!(
        ok(
            &s.path,
            "auth.resolve",
            json!({"provider": "openai", "agent": "main"})
        )["secret"],
        "sk-other-x"
    );
}

#[test]
fn an_agent_put_under_a_shared_order_stays_routable_for_that_agent() {
    let s = TempStore::new();
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:a", "sk-a-1")}),
    );
    ok(
        &s.path,
        "order.set",
        json!({"provider": "openai", "order": ["openai:a"]}),
    );
    let put = ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:mine", "sk-mine-1"), "agent": "main"}),
    );
    assert_eq!(put["order"], json!(["openai:a", "openai:mine"]));
    let eff = ok(
        &s.path,
        "order.get",
        json!({"provider": "openai", "agent": "main"}),
    );
    assert!(
        eff["effective"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["usable"] == true),
        "{eff}"
    );
    // The shared order is untouched.
    assert_eq!(
        ok(&s.path, "order.get", json!({"provider": "openai"}))["order"],
        json!(["openai:a"])
    );
}

// ---- Validation

#[test]
fn an_unknown_type_is_invalid_profile_with_pointer_and_valid_types() {
    let s = TempStore::new();
    let e = err(
        &s.path,
        "profiles.put",
        json!({"profile": {"id": "openai:x", "type": "bearer", "token": "tok-123"}}),
    );
    assert_eq!(e["code"], -32602);
    assert_eq!(e["data"]["kind"], "invalid_profile");
    assert_eq!(e["data"]["pointer"], "/profile/type");
    assert_eq!(
        e["data"]["validTypes"],
        json!(["api_key", "oauth", "token"])
    );
    assert!(!store_exists(&s.path), "a refused put creates nothing");
}

#[test]
fn api_key_field_gets_the_hint_to_use_key() {
    let s = TempStore::new();
    let e = err(
        &s.path,
        "profiles.put",
        json!({"profile": {"id": "openai:x", "type": "api_key", "apiKey": "sk-near-miss-secret"}}),
    );
    assert_eq!(e["data"]["kind"], "invalid_profile");
    assert_eq!(e["data"]["pointer"], "/profile/apiKey");
    assert_eq!(e["data"]["hint"], "did you mean `key`?");
    assert!(!e.to_string().contains("sk-near-miss-secret"));
    let e = err(
        &s.path,
        "profiles.put",
        json!({"profile": {"id": "openai:x", "mode": "api_key", "key": "k"}}),
    );
    assert_eq!(e["data"]["hint"], "did you mean `type`?");
}

#[test]
fn secret_looking_ids_and_bad_secrets_are_refused() {
    let s = TempStore::new();
    let e = err(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:sk-proj-Abc123Def456Ghi789", "k")}),
    );
    assert_eq!(e["data"]["pointer"], "/profile/id");
    assert!(!e.to_string().contains("Abc123Def456Ghi789"));
    let e = err(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:x", " \r\n ")}),
    );
    assert_eq!(e["data"]["pointer"], "/profile/key");
    let e = err(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:x", "a\tb")}),
    );
    assert_eq!(e["data"]["pointer"], "/profile/key");
    // Line breaks are removed and the value trimmed.
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:x", "  sk-wrapped\r\n-key\n")}),
    );
    assert_eq!(
        ok(&s.path, "auth.resolve", json!({"provider": "openai"}))["secret"],
        "sk-wrapped-key"
    );
}

#[test]
fn secrets_are_fingerprinted_unless_revealed() {
    let s = TempStore::new();
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:x", "abc")}),
    );
    let g = ok(&s.path, "profiles.get", json!({"profileId": "openai:x"}));
    assert_eq!(
        g["profile"]["secret"],
        json!({"fingerprint": "sha256:ba7816bf8f01", "length": 3})
    );
    assert!(g["profile"].get("key").is_none());
    let g = ok(
        &s.path,
        "profiles.get",
        json!({"profileId": "openai:x", "reveal": true}),
    );
    assert_eq!(g["profile"]["key"], "abc");
    let l = ok(&s.path, "profiles.list", json!({}));
    assert!(!l.to_string().contains("\"abc\""));
}

// ---- Profiles and order methods

#[test]
fn revisions_and_expected_revision() {
    let s = TempStore::new();
    let a = ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:x", "k1"), "expectedRevision": 0}),
    );
    assert_eq!(
        (a["created"].clone(), a["revision"].clone()),
        (json!(true), json!(1))
    );
    let e = err(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:x", "k2"), "expectedRevision": 0}),
    );
    assert_eq!(e["code"], -32050);
    assert_eq!(e["data"]["kind"], "revision_conflict");
    let b = ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:x", "k2"), "expectedRevision": 1}),
    );
    assert_eq!(
        (b["created"].clone(), b["revision"].clone()),
        (json!(false), json!(2))
    );
    assert_eq!(
        ok(&s.path, "auth.resolve", json!({"provider": "openai"}))["secret"],
        "k2"
    );
    let e = err(
        &s.path,
        "profiles.remove",
        json!({"profileId": "openai:x", "expectedRevision": 1}),
    );
    assert_eq!(e["data"]["kind"], "revision_conflict");
}

#[test]
fn remove_takes_the_profile_out_of_orders_and_dry_run_changes_nothing() {
    let s = TempStore::new();
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:a", "ka")}),
    );
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:b", "kb"), "primary": true}),
    );
    let dry = ok(
        &s.path,
        "profiles.remove",
        json!({"profileId": "openai:b", "dryRun": true}),
    );
    assert_eq!(dry["removed"], false);
    assert_eq!(dry["orderEntriesRemoved"], json!(["openai"]));
    assert_eq!(dry["lastGoodRemoved"], json!(["openai"]));
    assert_eq!(
        ok(&s.path, "order.get", json!({"provider": "openai"}))["order"],
        json!(["openai:b", "openai:a"])
    );
    let r = ok(&s.path, "profiles.remove", json!({"profileId": "openai:b"}));
    assert_eq!(r["removed"], true);
    assert_eq!(
        ok(&s.path, "order.get", json!({"provider": "openai"}))["order"],
        json!(["openai:a"])
    );
    let e = err(&s.path, "profiles.remove", json!({"profileId": "openai:b"}));
    assert_eq!(
        (e["code"].clone(), e["data"]["kind"].clone()),
        (json!(-32010), json!("unknown_profile"))
    );
}

#[test]
fn order_set_checks_ids_and_providers_and_drops_duplicates() {
    let s = TempStore::new();
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:a", "ka")}),
    );
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("anthropic:b", "kb")}),
    );
    let e = err(
        &s.path,
        "order.set",
        json!({"provider": "openai", "order": ["openai:a", "openai:zzz"]}),
    );
    assert_eq!(e["data"]["kind"], "unknown_profile");
    assert_eq!(e["data"]["missing"], json!(["openai:zzz"]));
    let e = err(
        &s.path,
        "order.set",
        json!({"provider": "openai", "order": ["anthropic:b"]}),
    );
    assert_eq!(
        (e["code"].clone(), e["data"]["kind"].clone()),
        (json!(-32602), json!("provider_mismatch"))
    );
    let e = err(
        &s.path,
        "order.set",
        json!({"provider": "openai", "order": []}),
    );
    assert_eq!(e["data"]["kind"], "invalid_params");
    let r = ok(
        &s.path,
        "order.set",
        json!({"provider": " OpenAI ", "order": ["openai:a", "OPENAI:a"]}),
    );
    assert_eq!(
        (
            r["order"].clone(),
            r["provider"].clone(),
            r["revision"].clone()
        ),
        (json!(["openai:a"]), json!("openai"), json!(1))
    );
    let e = err(
        &s.path,
        "order.set",
        json!({"provider": "openai", "order": ["openai:a"], "expectedRevision": 7}),
    );
    assert_eq!(e["data"]["kind"], "revision_conflict");
    assert_eq!(
        ok(&s.path, "order.clear", json!({"provider": "openai"}))["cleared"],
        true
    );
    assert_eq!(
        ok(&s.path, "order.clear", json!({"provider": "openai"}))["cleared"],
        false
    );
}

#[test]
fn an_order_that_lists_no_stored_profile_is_excluded_by_auth_order() {
    let s = TempStore::new();
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:a", "ka")}),
    );
    ok(
        &s.path,
        "order.set",
        json!({"provider": "openai", "order": ["openai:a"], "agent": "main"}),
    );
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:b", "kb")}),
    );
    // Shared order is absent; main's lists only a, so b shows as excluded for main.
    let e = ok(
        &s.path,
        "order.get",
        json!({"provider": "openai", "agent": "main"}),
    );
    assert_eq!(
        e["effective"][1],
        json!({"profileId": "openai:b", "usable": false, "reason": "excluded_by_auth_order"})
    );
    ok(&s.path, "profiles.remove", json!({"profileId": "openai:a"}));
    let e = err(
        &s.path,
        "auth.resolve",
        json!({"provider": "openai", "agent": "main", "explain": true}),
    );
    assert_eq!(e["data"]["kind"], "excluded_by_auth_order");
    assert!(e["data"]["hint"].as_str().unwrap().contains("order.set"));
}

#[test]
fn an_expired_token_is_skipped_with_fallback_named_and_explained() {
    let s = TempStore::new();
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": {"id": "anthropic:sub", "type": "token", "token": "tok-old", "expires": 1_700_000_000_000i64}}),
    );
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("anthropic:paid", "key-paid")}),
    );
    ok(
        &s.path,
        "order.set",
        json!({"provider": "anthropic", "order": ["anthropic:sub", "anthropic:paid"]}),
    );
    let r = ok(
        &s.path,
        "auth.resolve",
        json!({"provider": "anthropic", "explain": true}),
    );
    assert_eq!(r["profileId"], "anthropic:paid");
    assert_eq!(r["fallbackFrom"], "anthropic:sub");
    assert_eq!(r["fallbackReason"], "expired");
    assert_eq!(r["trace"][0]["decision"], "skipped");
    assert_eq!(r["trace"][0]["reason"], "expired");
    assert_eq!(r["trace"][1]["decision"], "chosen");
    let e = err(
        &s.path,
        "auth.resolve",
        json!({"provider": "anthropic", "profileId": "anthropic:sub"}),
    );
    assert_eq!(
        (e["code"].clone(), e["data"]["kind"].clone()),
        (json!(-32020), json!("unavailable"))
    );
}

#[test]
fn a_key_ref_to_a_missing_variable_is_ref_unavailable_and_a_set_one_resolves() {
    let s = TempStore::new();
    let p = json!({"id": "openai:env", "type": "api_key", "keyRef": {"source": "env", "provider": "default", "id": "MA_TEST_KEY_VAR"}});
    ok(&s.path, "profiles.put", json!({"profile": p}));
    let e = err(
        &s.path,
        "auth.resolve",
        json!({"provider": "openai", "explain": true}),
    );
    assert_eq!(e["data"]["kind"], "unavailable");
    assert_eq!(e["data"]["candidates"][0]["reason"], "ref_unavailable");
    let e = err(
        &s.path,
        "auth.resolve",
        json!({"provider": "openai", "profileId": "openai:env"}),
    );
    assert_eq!(
        (e["code"].clone(), e["data"]["kind"].clone()),
        (json!(-32030), json!("secret_unavailable"))
    );
    let out = cmd(&s.path)
        .env("MA_TEST_KEY_VAR", "sk-from-env-1")
        .args(["call", "auth.resolve", r#"{"provider":"openai"}"#])
        .output()
        .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["secret"], "sk-from-env-1");
    let g = ok(&s.path, "profiles.get", json!({"profileId": "openai:env"}));
    assert_eq!(g["profile"]["secret"], Value::Null);
    assert_eq!(g["profile"]["keyRef"]["id"], "MA_TEST_KEY_VAR");
}

// ---- Transport

#[test]
fn ids_are_echoed_with_their_json_type() {
    let s = TempStore::new();
    let input = [
        r#"{"jsonrpc":"2.0","id":1,"method":"helper.info"}"#,
        r#"{"jsonrpc":"2.0","id":"1","method":"helper.info"}"#,
        r#"{"jsonrpc":"2.0","id":-1,"method":"helper.info"}"#,
        r#"{"jsonrpc":"2.0","id":1.5,"method":"helper.info"}"#,
        r#"{"jsonrpc":"2.0","id":null,"method":"helper.info"}"#,
    ]
    .join("\n");
    let (lines, out) = serve_lines(&s.path, format!("{input}\n").as_bytes(), &[]);
    assert!(out.status.success());
    let ids: Vec<String> = lines
        .iter()
        .map(|l| {
            let i = l.find("\"id\":").unwrap() + 5;
            l[i..].split(',').next().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids, ["1", "\"1\"", "-1", "1.5", "null"]);
}

#[test]
fn a_malformed_line_and_a_2_mib_line_do_not_stop_the_pipeline() {
    let s = TempStore::new();
    let mut input = Vec::new();
    let mut push = |l: &str| {
        input.extend_from_slice(l.as_bytes());
        input.push(b'\n');
    };
    push(&json!({"jsonrpc": "2.0", "id": 1, "method": "profiles.put", "params": {"profile": api_key("openai:a", "sk-pipe-1")}}).to_string());
    push("{this is not json");
    push(&json!({"jsonrpc": "2.0", "id": 2, "method": "auth.resolve", "params": {"provider": "openai"}}).to_string());
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":99,"method":"helper.info","params":{{"pad":"{}"}}}}"#,
        "x".repeat(2 << 20)
    );
    push(&big);
    push(&json!({"jsonrpc": "2.0", "id": 3, "method": "profiles.list"}).to_string());
    push(&json!({"jsonrpc": "2.0", "method": "helper.info"}).to_string()); // notification
    push(&json!({"jsonrpc": "2.0", "id": 4, "method": "order.get", "params": {"provider": "openai"}}).to_string());
    let (lines, out) = serve_lines(&s.path, &input, &[]);
    assert_eq!(out.status.code(), Some(0));
    let v: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(v.len(), 6, "{lines:?}");
    assert_eq!(v[0]["id"], 1);
    assert_eq!(
        (v[1]["id"].clone(), v[1]["error"]["code"].clone()),
        (Value::Null, json!(-32700))
    );
    assert_eq!(v[2]["result"]["secret"], "sk-pipe-1");
    assert_eq!(v[3]["error"]["code"], -32600);
    assert_eq!(v[3]["error"]["data"]["kind"], "message_too_large");
    assert_eq!(v[4]["id"], 3);
    assert_eq!(v[5]["id"], 4);
}

#[test]
fn classification_follows_json_rpc_2() {
    let s = TempStore::new();
    let mut srv = Server::start(&s.path);
    let cases: &[(&str, i64, &str)] = &[
        ("42", -32600, "invalid_request"),
        ("[1]", -32600, "invalid_request"),
        (r#"{"jsonrpc":"2.0"}"#, -32600, "invalid_request"),
        (
            r#"{"jsonrpc":"1.0","id":1,"method":"helper.info"}"#,
            -32600,
            "invalid_request",
        ),
        (
            r#"{"jsonrpc":"2.0","id":{},"method":"helper.info"}"#,
            -32600,
            "invalid_request",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":7}"#,
            -32600,
            "invalid_request",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"nope.nope"}"#,
            -32601,
            "method_not_found",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"profiles.list","params":["x"]}"#,
            -32602,
            "invalid_params",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"profiles.list","params":{"agentId":"x"}}"#,
            -32602,
            "invalid_params",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"profiles.get","params":{}}"#,
            -32602,
            "invalid_params",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"profiles.list","params":{"agent":"Not Valid"}}"#,
            -32602,
            "invalid_params",
        ),
        ("[]", -32600, "invalid_request"),
        ("{\"a\":", -32700, "parse_error"),
    ];
    for (line, code, kind) in cases {
        let v = srv.raw(line);
        let e = if v.is_array() {
            v[0]["error"].clone()
        } else {
            v["error"].clone()
        };
        assert_eq!(e["code"], *code, "{line}: {v}");
        assert_eq!(e["data"]["kind"], *kind, "{line}: {v}");
        assert!(e["data"]["retryable"].is_boolean());
    }
    let v = srv.raw("\u{feff}garbage");
    assert_eq!(v["error"]["code"], -32700);
    assert_eq!(srv.ok("helper.info", json!({}))["name"], "modelauth");
    let out = srv.finish();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn invalid_utf8_and_nul_bytes_are_parse_errors_and_serving_goes_on() {
    let s = TempStore::new();
    let mut input = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"helper.info\xff\"}\n".to_vec();
    input.extend_from_slice(b"\0\0\n");
    input.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"helper.info\"}\r\n");
    let (lines, out) = serve_lines(&s.path, &input, &[]);
    assert!(out.status.success());
    let v: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(v.len(), 3);
    assert_eq!(v[0]["error"]["code"], -32700);
    assert_eq!(v[1]["error"]["code"], -32700);
    assert_eq!(
        v[2]["result"]["name"], "modelauth",
        "a trailing CR is tolerated"
    );
}

#[test]
fn batches_answer_in_order_and_notifications_get_nothing() {
    let s = TempStore::new();
    let batch = json!([
        {"jsonrpc": "2.0", "id": "p", "method": "profiles.put", "params": {"profile": api_key("openai:a", "sk-batch-1")}},
        {"jsonrpc": "2.0", "method": "profiles.put", "params": {"profile": api_key("openai:b", "sk-batch-2")}},
        {"jsonrpc": "2.0", "id": "r", "method": "auth.resolve", "params": {"provider": "openai", "profileId": "openai:b"}},
        5
    ]);
    let notes = json!([{"jsonrpc": "2.0", "method": "helper.info"}, {"jsonrpc": "2.0", "method": "helper.info"}]);
    let input = format!(
        "{batch}\n{notes}\n{}\n",
        json!({"jsonrpc": "2.0", "id": 9, "method": "helper.info"})
    );
    let (lines, _) = serve_lines(&s.path, input.as_bytes(), &[]);
    assert_eq!(
        lines.len(),
        2,
        "a batch of notifications gives no output: {lines:?}"
    );
    let b: Value = serde_json::from_str(&lines[0]).unwrap();
    let arr = b.as_array().unwrap();
    assert_eq!(arr.len(), 3);
    assert_eq!(arr[0]["id"], "p");
    assert_eq!(arr[1]["id"], "r");
    assert_eq!(
        arr[1]["result"]["secret"], "sk-batch-2",
        "the notification ran before"
    );
    assert_eq!(arr[2]["error"]["code"], -32600);
    assert_eq!(serde_json::from_str::<Value>(&lines[1]).unwrap()["id"], 9);
}

#[test]
fn sigterm_finishes_and_exits_zero() {
    let s = TempStore::new();
    let mut srv = Server::start(&s.path);
    assert_eq!(srv.ok("helper.info", json!({}))["protocolVersion"], 1);
    let pid = srv.child.id();
    let st = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let status = srv.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn call_reads_params_from_stdin_and_reports_errors_on_stderr() {
    let s = TempStore::new();
    let mut child = cmd(&s.path)
        .args(["call", "profiles.put", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"profile":{"id":"openai:x","type":"api_key","key":"sk-stdin-1"}}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["profileId"], "openai:x");
    let out = cmd(&s.path)
        .args(["call", "auth.resolve", r#"{"provider":"nobody"}"#])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let e: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(e["data"]["kind"], "missing_credential");
    let out = cmd(&s.path).args(["bogus"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(64),
        "usage errors exit 64 (EX_USAGE)"
    );
}

// ---- Store

#[test]
fn files_are_0600_and_the_directory_0700_under_umask_022() {
    if common::skip_on_pg("file and directory modes") {
        return;
    }
    let s = TempStore::new();
    let script = format!(
        "umask 022; printf '%s\\n' '{}' | exec '{}' --store '{}' serve",
        json!({"jsonrpc": "2.0", "id": 1, "method": "profiles.put", "params": {"profile": api_key("openai:a", "sk-perm-1")}}),
        bin(),
        s.path.display()
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"created\":true"));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(s.path.parent().unwrap()), 0o700);
    for entry in std::fs::read_dir(s.path.parent().unwrap()).unwrap() {
        let p = entry.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    // While a server holds the store open, -wal and -shm exist and are 0600 too.
    let mut srv = Server::start_with({
        let mut c = std::process::Command::new("sh");
        c.arg("-c")
            .arg(format!(
                "umask 022; exec '{}' --store '{}' \"$@\"",
                bin(),
                s.path.display()
            ))
            .arg("sh");
        c
    });
    srv.ok(
        "profiles.put",
        json!({"profile": api_key("openai:b", "sk-perm-2")}),
    );
    let dir = s.path.parent().unwrap();
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.ends_with("-wal")), "{names:?}");
    for n in &names {
        assert_eq!(mode(&dir.join(n)), 0o600, "{n}");
    }
    srv.finish();
}

#[test]
fn two_processes_writing_300_profiles_each_lose_nothing() {
    let s = TempStore::new();
    let input = |tag: &str| {
        let mut v = String::new();
        for i in 0..300 {
            v.push_str(&json!({"jsonrpc": "2.0", "id": i, "method": "profiles.put",
                "params": {"profile": api_key(&format!("openai:{tag}-{i}"), &format!("sk-{tag}-{i}"))}}).to_string());
            v.push('\n');
        }
        v
    };
    let (ia, ib) = (input("a"), input("b"));
    let pa = s.path.clone();
    let pb = s.path.clone();
    let ta = std::thread::spawn(move || serve_lines(&pa, ia.as_bytes(), &[]));
    let tb = std::thread::spawn(move || serve_lines(&pb, ib.as_bytes(), &[]));
    for t in [ta, tb] {
        let (lines, out) = t.join().unwrap();
        assert!(out.status.success());
        assert_eq!(lines.len(), 300);
        for l in lines {
            assert!(l.contains("\"created\":true"), "{l}");
        }
    }
    let list = ok(&s.path, "profiles.list", json!({"provider": "openai"}));
    assert_eq!(list["profiles"].as_array().unwrap().len(), 600);
}

#[test]
fn a_store_of_a_newer_schema_is_refused_and_left_untouched() {
    if common::skip_on_pg("a SQLite file of a newer schema (PostgreSQL: tests/fleet.rs)") {
        return;
    }
    let s = TempStore::new();
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:a", "k")}),
    );
    {
        let c = rusqlite::Connection::open(&s.path).unwrap();
        c.pragma_update(None, "user_version", 999).unwrap();
    }
    let before = std::fs::read(&s.path).unwrap();
    let e = err(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:b", "k")}),
    );
    assert_eq!(
        (e["code"].clone(), e["data"]["kind"].clone()),
        (json!(-32060), json!("store_newer_schema"))
    );
    let e = err(&s.path, "auth.resolve", json!({"provider": "openai"}));
    assert_eq!(e["data"]["kind"], "store_newer_schema");
    assert_eq!(std::fs::read(&s.path).unwrap(), before);
}

#[test]
fn helper_info_reports_the_store_and_every_method() {
    let s = TempStore::new();
    let i = ok(&s.path, "helper.info", json!({}));
    assert_eq!(i["store"]["exists"], false);
    assert_eq!(i["store"]["schemaVersion"], Value::Null);
    let methods: Vec<&str> = i["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    for m in [
        "helper.info",
        "rpc.discover",
        "profiles.put",
        "profiles.get",
        "profiles.list",
        "profiles.remove",
        "order.get",
        "order.set",
        "order.clear",
        "auth.resolve",
    ] {
        assert!(methods.contains(&m), "{m}");
    }
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:a", "k")}),
    );
    let i = ok(&s.path, "helper.info", json!({}));
    assert_eq!(i["store"]["exists"], true);
    assert_eq!(i["store"]["schemaVersion"], 2);
}

#[test]
fn the_default_store_path_follows_xdg_state_home() {
    if common::skip_on_pg("the default store path") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin())
        .env_clear()
        .env("XDG_STATE_HOME", dir.path())
        .args([
            "call",
            "profiles.put",
            r#"{"profile":{"id":"openai:a","type":"api_key","key":"k"}}"#,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("modelauth/store.db").exists());
    let out = std::process::Command::new(bin())
        .env_clear()
        .env("HOME", dir.path())
        .env("MODELAUTH_STORE", dir.path().join("x.db"))
        .args(["call", "profiles.list"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        !dir.path().join("x.db").exists(),
        "reads never create the store"
    );
}

// ---- Secrets never leak

#[test]
fn a_scripted_run_of_every_method_at_trace_level_never_logs_a_secret() {
    let s = TempStore::new();
    let secrets = [
        "sk-leak-key-0001",
        "tok-leak-0002",
        "acc-leak-0003",
        "ref-leak-0004",
        "sk-near-miss-0005",
        "sk-bad-type-0006",
        "sk-env-leak-0007",
    ];
    let reqs = vec![
        json!({"method": "helper.info"}),
        json!({"method": "profiles.put", "params": {"profile": api_key("openai:a", secrets[0])}}),
        json!({"method": "profiles.put", "params": {"profile": {"id": "anthropic:t", "type": "token", "token": secrets[1], "expires": 4_000_000_000_000i64}}}),
        json!({"method": "profiles.put", "params": {"profile": {"id": "openai-codex:o", "type": "oauth", "access": secrets[2], "refresh": secrets[3], "expires": 4_000_000_000_000i64}, "primary": true}}),
        json!({"method": "profiles.put", "params": {"profile": {"id": "openai:bad", "type": "api_key", "apiKey": secrets[4]}}}),
        json!({"method": "profiles.put", "params": {"profile": {"id": "openai:bad", "type": "bearer", "token": secrets[5]}}}),
        json!({"method": "profiles.put", "params": {"profile": {"id": "openai:env", "type": "api_key", "keyRef": {"source": "env", "provider": "default", "id": "LEAK_ENV"}}}}),
        json!({"method": "profiles.put", "params": {"profile": "sk-bare-string-0008"}}),
        json!({"method": "profiles.get", "params": {"profileId": "openai:a"}}),
        json!({"method": "profiles.get", "params": {"profileId": "openai:a", "reveal": true}}),
        json!({"method": "profiles.list", "params": {}}),
        json!({"method": "order.set", "params": {"provider": "openai", "order": ["openai:env", "openai:a"]}}),
        json!({"method": "order.get", "params": {"provider": "openai"}}),
        json!({"method": "auth.resolve", "params": {"provider": "openai", "explain": true}}),
        json!({"method": "auth.resolve", "params": {"provider": "openai-codex", "agent": "cron"}}),
        json!({"method": "auth.resolve", "params": {"provider": "anthropic", "profileId": "anthropic:t"}}),
        json!({"method": "profiles.remove", "params": {"profileId": "anthropic:t", "dryRun": true}}),
        json!({"method": "profiles.remove", "params": {"profileId": "anthropic:t"}}),
        json!({"method": "order.clear", "params": {"provider": "openai"}}),
        json!({"method": "rpc.discover"}),
        json!({"method": "profiles.list", "params": {"agent": "sk-looks-like-a-key-0009"}}),
        json!({"method": "sk-method-name-0010", "params": {}}),
    ];
    let mut input = String::new();
    for (i, r) in reqs.iter().enumerate() {
        let mut r = r.clone();
        r["jsonrpc"] = json!("2.0");
        r["id"] = json!(i);
        input.push_str(&r.to_string());
        input.push('\n');
    }
    let (lines, out) = serve_lines(
        &s.path,
        input.as_bytes(),
        &[("RUST_LOG", "trace"), ("LEAK_ENV", secrets[6])],
    );
    assert!(out.status.success());
    assert_eq!(lines.len(), reqs.len());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("TRACE") || stderr.contains("DEBUG"),
        "trace logging is on"
    );
    for s in secrets.iter().chain(
        [
            "sk-bare-string-0008",
            "sk-looks-like-a-key-0009",
            "sk-method-name-0010",
        ]
        .iter(),
    ) {
        assert!(!stderr.contains(s), "{s} leaked into stderr");
    }
    // stdout carries secrets only in auth.resolve results and the reveal: true view.
    for (i, l) in lines.iter().enumerate() {
        let method = reqs[i]["method"].as_str().unwrap();
        let revealing = method == "auth.resolve"
            || (method == "profiles.get" && reqs[i]["params"]["reveal"] == true);
        if !revealing {
            for s in &secrets {
                assert!(
                    !l.contains(s),
                    "{s} leaked in the response to {method}: {l}"
                );
            }
        }
    }
    assert!(
        lines[13].contains(secrets[6]),
        "the env ref resolved: {}",
        lines[13]
    );
}

#[test]
fn a_long_lived_server_sees_writes_of_other_processes_and_its_own_at_once() {
    let s = TempStore::new();
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:a", "sk-first-1")}),
    );
    let mut srv = Server::start(&s.path);
    for _ in 0..3 {
        assert_eq!(
            srv.ok("auth.resolve", json!({"provider": "openai"}))["secret"],
            "sk-first-1"
        );
    }
    // Another process replaces the key and adds a preferred profile.
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:a", "sk-second-2")}),
    );
    assert_eq!(
        srv.ok("auth.resolve", json!({"provider": "openai"}))["secret"],
        "sk-second-2"
    );
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": oauth("openai:o", "acc-third-3", "ref-3")}),
    );
    assert_eq!(
        srv.ok("auth.resolve", json!({"provider": "openai"}))["secret"],
        "acc-third-3"
    );
    // Its own write is seen by its next request.
    srv.ok("profiles.remove", json!({"profileId": "openai:o"}));
    assert_eq!(
        srv.ok("auth.resolve", json!({"provider": "openai"}))["secret"],
        "sk-second-2"
    );
    srv.ok(
        "order.set",
        json!({"provider": "openai", "order": ["openai:a"]}),
    );
    srv.ok(
        "profiles.put",
        json!({"profile": api_key("openai:b", "sk-b-4"), "primary": true}),
    );
    assert_eq!(
        srv.ok("auth.resolve", json!({"provider": "openai"}))["secret"],
        "sk-b-4"
    );
    // An alias-free provider spelled differently resolves to the same cached view.
    assert_eq!(
        srv.ok("auth.resolve", json!({"provider": " OpenAI "}))["secret"],
        "sk-b-4"
    );
    assert!(srv.finish().status.success());
}
