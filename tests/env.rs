//! Environment keys (protocol §6) against the real binary: the variables are set on the
//! child process only (its environment is otherwise cleared).

mod common;

use common::Env;
use serde_json::{json, Value};

fn secrets(c: &Value) -> Vec<String> {
    c["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["secret"].as_str().unwrap().to_string())
        .collect()
}

fn vars(c: &Value) -> Vec<String> {
    c["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["envVar"].as_str().unwrap_or("-").to_string())
        .collect()
}

#[test]
fn lists_split_single_and_numbered_keys_in_order_deduplicated() {
    let env = Env::with_vars(&[
        ("OPENAI_API_KEYS", "a, b;c"),
        ("OPENAI_API_KEY", "b"),
        ("OPENAI_API_KEY_2", "d"),
    ]);
    let mut s = env.serve();
    let c = s.ok("auth.candidates", json!({"provider": "openai"}));
    assert_eq!(secrets(&c), vec!["a", "b", "c", "d"]);
    assert_eq!(
        vars(&c),
        vec![
            "OPENAI_API_KEYS",
            "OPENAI_API_KEYS",
            "OPENAI_API_KEYS",
            "OPENAI_API_KEY_2"
        ]
    );
    for x in c["candidates"].as_array().unwrap() {
        assert_eq!(x["source"], "env");
        assert_eq!(x["type"], "api_key");
        assert!(x.get("profileId").is_none());
        assert_eq!(x["expires"], Value::Null);
    }
    let r = s.ok(
        "auth.resolve",
        json!({"provider": "openai", "explain": true}),
    );
    assert_eq!(r["source"], "env");
    assert_eq!(r["envVar"], "OPENAI_API_KEYS");
    assert_eq!(r["secret"], "a");
    assert_eq!(r["profileId"], Value::Null);
    assert_eq!(r["trace"][0]["envVar"], "OPENAI_API_KEYS");
    assert_eq!(r["trace"][0]["decision"], "chosen");
    // Another provider sees none of them.
    let e = s.err("auth.resolve", json!({"provider": "anthropic"}));
    assert_eq!(e["data"]["kind"], "missing_credential");
}

#[test]
fn the_live_key_is_the_only_key() {
    let env = Env::with_vars(&[
        ("OPENAI_API_KEYS", "a, b;c"),
        ("OPENAI_API_KEY", "b"),
        ("MODELAUTH_LIVE_OPENAI_KEY", "z"),
    ]);
    let mut s = env.serve();
    let c = s.ok("auth.candidates", json!({"provider": "openai"}));
    assert_eq!(secrets(&c), vec!["z"]);
    assert_eq!(vars(&c), vec!["MODELAUTH_LIVE_OPENAI_KEY"]);
    let r = s.ok("auth.resolve", json!({"provider": "openai"}));
    assert_eq!(r["secret"], "z");
    assert_eq!(r["envVar"], "MODELAUTH_LIVE_OPENAI_KEY");
}

#[test]
fn google_uses_gemini_names_and_google_api_key() {
    let env = Env::with_vars(&[("GEMINI_API_KEY", "g1"), ("GOOGLE_API_KEY", "g2")]);
    let c = env
        .call("auth.candidates", json!({"provider": "google"}))
        .unwrap();
    assert_eq!(secrets(&c), vec!["g1", "g2"]);
    assert_eq!(vars(&c), vec!["GEMINI_API_KEY", "GOOGLE_API_KEY"]);
}

#[test]
fn a_stored_but_cooled_down_profile_names_env_keys_without_their_values() {
    let env = Env::with_vars(&[("OPENAI_API_KEY", "env-value-must-not-leak")]);
    let mut s = env.serve();
    s.put_key("openai:stored", "stored-key-value");
    s.ok(
        "auth.report",
        json!({"profileId": "openai:stored", "outcome": "rate_limit"}),
    );
    let resp = s.request(
        "auth.resolve",
        json!({"provider": "openai", "explain": true}),
    );
    let e = &resp["error"];
    assert_eq!(e["data"]["kind"], "unavailable");
    assert_eq!(e["data"]["envAvailable"], json!(["OPENAI_API_KEY"]));
    assert!(e["data"]["earliestUntil"].is_i64());
    let text = resp.to_string();
    assert!(!text.contains("env-value-must-not-leak"), "{text}");
    assert!(!text.contains("stored-key-value"), "{text}");
    // whenNoProfiles: candidates do not switch account either.
    let c = s.ok("auth.candidates", json!({"provider": "openai"}));
    assert_eq!(c["candidates"], json!([]));

    // envFallback always: the env key is used, and says what it fell back from.
    s.ok(
        "settings.set",
        json!({"settings": {"envFallback": "always"}}),
    );
    let r = s.ok("auth.resolve", json!({"provider": "openai"}));
    assert_eq!(r["source"], "env");
    assert_eq!(r["envVar"], "OPENAI_API_KEY");
    assert_eq!(r["secret"], "env-value-must-not-leak");
    assert_eq!(r["fallbackFrom"], "openai:stored");
    assert_eq!(r["fallbackReason"], "cooldown");
    let c = s.ok("auth.candidates", json!({"provider": "openai"}));
    assert_eq!(secrets(&c), vec!["env-value-must-not-leak"]);
    // After clearing, the profile comes first, then the env key.
    s.ok("auth.clearCooldown", json!({"profileId": "openai:stored"}));
    let c = s.ok("auth.candidates", json!({"provider": "openai"}));
    assert_eq!(
        secrets(&c),
        vec!["stored-key-value", "env-value-must-not-leak"]
    );
    assert_eq!(c["candidates"][0]["profileId"], "openai:stored");
    assert_eq!(c["candidates"][0]["source"], "profile");

    // envFallback never: no profile for another provider and an env key → missing, named.
    s.ok(
        "settings.set",
        json!({"settings": {"envFallback": "never"}}),
    );
    let c = s.ok("auth.candidates", json!({"provider": "openai"}));
    assert_eq!(secrets(&c), vec!["stored-key-value"]);
}

#[test]
fn never_means_never() {
    let env = Env::with_vars(&[("MISTRAL_API_KEY", "m-secret")]);
    let mut s = env.serve();
    s.ok(
        "settings.set",
        json!({"settings": {"envFallback": "never"}}),
    );
    let resp = s.request("auth.resolve", json!({"provider": "mistral"}));
    assert_eq!(resp["error"]["data"]["kind"], "missing_credential");
    assert_eq!(
        resp["error"]["data"]["envAvailable"],
        json!(["MISTRAL_API_KEY"])
    );
    assert!(!resp.to_string().contains("m-secret"));
    let c = s.ok("auth.candidates", json!({"provider": "mistral"}));
    assert_eq!(c["candidates"], json!([]));
}

#[test]
fn candidates_are_deduplicated_by_secret_in_walk_order() {
    let env = Env::new();
    let mut s = env.serve();
    s.put_key("openai:a", "same");
    s.put_key("openai:b", "same");
    s.put_key("openai:c", "other");
    s.put_key("openai:d", "cooled");
    s.ok(
        "order.set",
        json!({"provider": "openai", "order": ["openai:d", "openai:c", "openai:a", "openai:b"]}),
    );
    s.ok(
        "auth.report",
        json!({"profileId": "openai:d", "outcome": "rate_limit", "model": "m1"}),
    );
    let c = s.ok(
        "auth.candidates",
        json!({"provider": "openai", "model": "m1"}),
    );
    assert_eq!(secrets(&c), vec!["other", "same"]);
    let ids: Vec<&str> = c["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["profileId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["openai:c", "openai:a"]);
    // Another model still gets the cooled one first.
    let c = s.ok(
        "auth.candidates",
        json!({"provider": "openai", "model": "m2"}),
    );
    assert_eq!(secrets(&c), vec!["cooled", "other", "same"]);
}
