//! One resolve path (issue 23): every method that walks normalises the request the same
//! way, so `order.get` ("the exact walk `auth.resolve` would do now") and `auth.resolve`
//! agree for every spelling of the same request.

mod common;

use common::*;
use serde_json::json;

/// A model-scoped cooldown on the first profile, asked about with the model spelt several
/// ways: `order.get`'s `effective` says the first profile is usable exactly when
/// `auth.resolve` picks it, and `auth.candidates` lists it first exactly then.
#[test]
fn order_get_and_auth_resolve_agree_for_every_spelling_of_the_model() {
    let env = Env::new();
    for (id, key) in [
        ("openai:a", "sk-walk-a-1111"),
        ("openai:b", "sk-walk-b-2222"),
    ] {
        env.call("profiles.put", json!({"profile": api_key(id, key)}))
            .unwrap();
    }
    env.call(
        "order.set",
        json!({"provider": "openai", "order": ["openai:a", "openai:b"]}),
    )
    .unwrap();
    env.call(
        "auth.report",
        json!({"profileId": "openai:a", "outcome": "rate_limit", "model": "m1"}),
    )
    .unwrap();
    let mut blocked_somewhere = false;
    for model in ["m1", " m1 ", "m1\t", "", "   ", "m2"] {
        let got = env
            .call(
                "auth.resolve",
                json!({"provider": "openai", "model": model}),
            )
            .unwrap();
        let picks_a = got["profileId"] == "openai:a";
        let order = env
            .call("order.get", json!({"provider": "openai", "model": model}))
            .unwrap();
        let first = &order["effective"][0];
        assert_eq!(first["profileId"], "openai:a");
        assert_eq!(
            first["usable"], picks_a,
            "model {model:?}: order.get says {first}, auth.resolve picked {}",
            got["profileId"]
        );
        let cands = env
            .call(
                "auth.candidates",
                json!({"provider": "openai", "model": model}),
            )
            .unwrap();
        assert_eq!(
            cands["candidates"][0]["profileId"] == "openai:a",
            picks_a,
            "model {model:?}: auth.candidates {cands}"
        );
        if model.trim() == "m1" {
            assert!(!picks_a, "model {model:?} is m1: its cooldown applies");
            assert_eq!(first["reason"], "cooldown");
            blocked_somewhere = true;
        }
    }
    assert!(blocked_somewhere);
}

/// The wire words of the walk are unchanged by the typed enums: `decision`, `reason`,
/// `source`, `type`, `fallbackReason` and `order.get` `source`.
#[test]
fn the_walks_wire_words_are_the_contracts_strings() {
    let env = Env::new();
    env.call(
        "profiles.put",
        json!({"profile": api_key("openai:a", "sk-walk-a-3333")}),
    )
    .unwrap();
    env.call(
        "profiles.put",
        json!({"profile": api_key("openai:b", "sk-walk-b-4444")}),
    )
    .unwrap();
    env.call(
        "order.set",
        json!({"provider": "openai", "order": ["openai:a", "openai:b"], "agent": "cron"}),
    )
    .unwrap();
    env.call(
        "auth.report",
        json!({"profileId": "openai:a", "outcome": "rate_limit"}),
    )
    .unwrap();
    let r = env
        .call(
            "auth.resolve",
            json!({"provider": "openai", "agent": "cron", "explain": true}),
        )
        .unwrap();
    assert_eq!(r["type"], "api_key");
    assert_eq!(r["source"], "profile");
    assert_eq!(r["fallbackFrom"], "openai:a");
    assert_eq!(r["fallbackReason"], "cooldown");
    assert_eq!(r["trace"][0]["decision"], "skipped");
    assert_eq!(r["trace"][0]["reason"], "cooldown");
    assert_eq!(r["trace"][1]["decision"], "chosen");
    let o = env
        .call("order.get", json!({"provider": "openai", "agent": "cron"}))
        .unwrap();
    assert_eq!(o["source"], "agent");
    let o = env
        .call("order.get", json!({"provider": "openai"}))
        .unwrap();
    assert_eq!(o["source"], serde_json::Value::Null);
}

/// Before (issue 20): `order.get` resolved every usable step's SecretRef to report
/// `effective`, so each call ran every exec helper of the provider (a vault login, a
/// hardware-token prompt) and materialised secrets it never hands out. Now it checks refs
/// as `auth.status` does without `probe`: `env` and `file` refs are read, an exec helper is
/// never run and its profile counts as usable.
#[test]
fn order_get_never_runs_an_exec_helper() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let ran = env.dir.path().join("helper-ran");
    let helper = env.dir.path().join("helper.sh");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\ncat >/dev/null\n: > {}\nprintf '{{\"protocolVersion\":1,\"values\":{{\"k\":\"sk-exec-walk-1\"}}}}'\n",
            ran.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o700)).unwrap();
    env.call(
        "settings.set",
        json!({"settings": {"secretProviders": {"vault": {"source": "exec", "command": helper}}}}),
    )
    .unwrap();
    env.call(
        "profiles.put",
        json!({"profile": {"id": "openai:x", "type": "api_key",
               "keyRef": {"source": "exec", "provider": "vault", "id": "k"}}}),
    )
    .unwrap();
    env.call(
        "profiles.put",
        json!({"profile": {"id": "openai:y", "type": "api_key",
               "keyRef": {"source": "env", "provider": "default", "id": "MODELAUTH_WALK_UNSET_VAR"}}}),
    )
    .unwrap();
    env.call(
        "order.set",
        json!({"provider": "openai", "order": ["openai:y", "openai:x"]}),
    )
    .unwrap();
    let o = env
        .call("order.get", json!({"provider": "openai"}))
        .unwrap();
    assert!(!ran.exists(), "order.get ran the exec helper: {o}");
    // The env ref is still checked (no side effects): not usable.
    assert_eq!(o["effective"][0]["profileId"], "openai:y");
    assert_eq!(o["effective"][0]["usable"], false);
    assert_eq!(o["effective"][0]["reason"], "ref_unavailable");
    assert_eq!(o["effective"][1]["profileId"], "openai:x");
    assert_eq!(o["effective"][1]["usable"], true, "{o}");
    assert!(!o.to_string().contains("sk-exec-walk-1"));
    // The helper itself works: auth.resolve runs it.
    let r = env
        .call("auth.resolve", json!({"provider": "openai"}))
        .unwrap();
    assert_eq!(r["profileId"], "openai:x");
    assert!(ran.exists(), "auth.resolve did not run the helper");
}
