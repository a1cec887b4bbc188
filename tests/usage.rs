//! Issue 4 against the real binary: usage state and cooldowns (auth.report,
//! auth.clearCooldown), settings, the unavailable error, auth.status and `modelauth check`.
//! Windows are shortened with settings.set; no assertion depends on speed.

mod common;

use common::{now_ms, sleep_past, Env};
use serde_json::{json, Value};

const DAY: i64 = 86_400_000;

#[test]
fn a_model_rate_limit_moves_that_model_only_ends_and_clears_across_processes() {
    let env = Env::new();
    let mut s = env.serve();
    let set = s.ok(
        "settings.set",
        json!({"settings": {"cooldowns": {"rateLimitBaseMs": 1500}}}),
    );
    assert_eq!(set["settings"]["cooldowns"]["rateLimitBaseMs"], 1500);
    s.put_key("openai:first", "key-first");
    s.put_key("openai:second", "key-second");
    s.ok(
        "order.set",
        json!({"provider": "openai", "order": ["openai:first", "openai:second"]}),
    );

    let before = now_ms();
    let r = s.ok(
        "auth.report",
        json!({"profileId": "openai:first", "outcome": "rate_limit", "model": "m1"}),
    );
    let until = r["usage"]["cooldownUntil"].as_i64().unwrap();
    assert!(until >= before + 1500 && until <= now_ms() + 1500);
    assert_eq!(r["usage"]["cooldownReason"], "rate_limit");
    assert_eq!(r["usage"]["cooldownModel"], "m1");
    assert_eq!(r["recorded"], true);

    // m1 goes to the second profile, m2 still gets the first.
    let m1 = s.ok("auth.resolve", json!({"provider": "openai", "model": "m1"}));
    assert_eq!(m1["profileId"], "openai:second");
    assert_eq!(m1["secret"], "key-second");
    assert_eq!(m1["fallbackFrom"], "openai:first");
    assert_eq!(m1["fallbackReason"], "cooldown");
    let m2 = s.ok("auth.resolve", json!({"provider": "openai", "model": "m2"}));
    assert_eq!(m2["profileId"], "openai:first");
    assert!(m2.get("fallbackFrom").is_none());
    // A request naming no model respects the model window too.
    let none = s.ok("auth.resolve", json!({"provider": "openai"}));
    assert_eq!(none["profileId"], "openai:second");

    // A second report during the window does not move it; the count rises.
    let r2 = s.ok(
        "auth.report",
        json!({"profileId": "openai:first", "outcome": "rate_limit", "model": "m1"}),
    );
    assert_eq!(r2["usage"]["cooldownUntil"].as_i64().unwrap(), until);
    assert_eq!(r2["usage"]["errorCount"], 2);

    // After the window the first is back.
    sleep_past(until);
    let back = s.ok("auth.resolve", json!({"provider": "openai", "model": "m1"}));
    assert_eq!(back["profileId"], "openai:first");

    // The third rate limit escalates (1500 * 2^2 ms) ...
    let t3 = now_ms();
    let r3 = s.ok(
        "auth.report",
        json!({"profileId": "openai:first", "outcome": "rate_limit", "model": "m1"}),
    );
    let until3 = r3["usage"]["cooldownUntil"].as_i64().unwrap();
    assert!(until3 >= t3 + 6000 && until3 <= now_ms() + 6000, "{until3}");
    assert_eq!(
        s.ok("auth.resolve", json!({"provider": "openai", "model": "m1"}))["profileId"],
        "openai:second"
    );
    // ... and a clearCooldown from another process takes effect at once.
    let cleared = env
        .call(
            "auth.clearCooldown",
            json!({"profileId": "openai:first", "model": "m1"}),
        )
        .unwrap();
    assert_eq!(cleared["cleared"], true);
    assert_eq!(cleared["profileId"], "openai:first");
    assert_eq!(
        s.ok("auth.resolve", json!({"provider": "openai", "model": "m1"}))["profileId"],
        "openai:first"
    );
    // The counts restarted: the next rate limit is the base window again.
    let t4 = now_ms();
    let r4 = s.ok(
        "auth.report",
        json!({"profileId": "openai:first", "outcome": "rate_limit", "model": "m1"}),
    );
    let until4 = r4["usage"]["cooldownUntil"].as_i64().unwrap();
    assert!(until4 >= t4 + 1500 && until4 <= now_ms() + 1500, "{until4}");
    assert_eq!(r4["usage"]["errorCount"], 1);
    // Another model's clear leaves m1's window but resets the counts; then nothing is left.
    let other = env
        .call(
            "auth.clearCooldown",
            json!({"profileId": "openai:first", "model": "m9"}),
        )
        .unwrap();
    assert_eq!(other["cleared"], true);
    assert_eq!(other["usage"]["cooldownUntil"].as_i64().unwrap(), until4);
    assert_eq!(other["usage"]["errorCount"], 0);
    let again = env
        .call(
            "auth.clearCooldown",
            json!({"profileId": "openai:first", "model": "m9"}),
        )
        .unwrap();
    assert_eq!(again["cleared"], false);
}

#[test]
fn billing_disables_across_models_and_success_clears_it() {
    let env = Env::new();
    let mut s = env.serve();
    s.put_key("openai:a", "key-a");
    s.put_key("openai:b", "key-b");
    s.ok(
        "order.set",
        json!({"provider": "openai", "order": ["openai:a", "openai:b"]}),
    );
    let t = now_ms();
    let r = s.ok(
        "auth.report",
        json!({"profileId": "openai:a", "outcome": "billing", "model": "m1"}),
    );
    let until = r["usage"]["disabledUntil"].as_i64().unwrap();
    assert!(until >= t + 600_000 && until <= now_ms() + 600_000);
    assert_eq!(r["usage"]["disabledReason"], "billing");
    for model in [json!("m1"), json!("m2"), Value::Null] {
        let got = s.ok(
            "auth.resolve",
            json!({"provider": "openai", "model": model}),
        );
        assert_eq!(got["profileId"], "openai:b", "model {model}");
        assert_eq!(got["fallbackReason"], "disabled");
    }
    let view = s.ok("profiles.get", json!({"profileId": "openai:a"}));
    assert_eq!(view["profile"]["status"], "disabled");
    let st = s.ok("auth.status", json!({}));
    let a = &st["providers"][0]["profiles"][0];
    assert_eq!(a["profileId"], "openai:a");
    assert_eq!(a["status"], "disabled");
    assert_eq!(a["reason"], "billing");
    assert_eq!(a["until"].as_i64().unwrap(), until);

    let t_ok = now_ms();
    let ok = s.ok(
        "auth.report",
        json!({"profileId": "openai:a", "outcome": "success", "agent": "main"}),
    );
    let last_used = ok["usage"]["lastUsed"].as_i64().unwrap();
    assert!(last_used >= t_ok && last_used <= now_ms());
    assert!(ok["usage"].get("disabledUntil").is_none());
    assert_eq!(ok["usage"]["errorCount"], 0);
    let got = s.ok("auth.resolve", json!({"provider": "openai", "model": "m2"}));
    assert_eq!(got["profileId"], "openai:a");
    assert_eq!(
        s.ok("profiles.get", json!({"profileId": "openai:a"}))["profile"]["status"],
        "static"
    );
    // lastGood was recorded in the request's scope (agent main), not in the shared one.
    let dry = s.ok(
        "profiles.remove",
        json!({"profileId": "openai:a", "dryRun": true}),
    );
    assert_eq!(dry["lastGoodRemoved"], json!([]));
    let s2 = s.ok(
        "auth.report",
        json!({"profileId": "openai:a", "outcome": "success"}),
    );
    assert_eq!(s2["recorded"], true);
    let dry = s.ok(
        "profiles.remove",
        json!({"profileId": "openai:a", "dryRun": true}),
    );
    assert_eq!(dry["lastGoodRemoved"], json!(["openai"]));
}

#[test]
fn only_cooled_down_profiles_give_unavailable_with_earliest_until_and_explain() {
    let env = Env::new();
    let mut s = env.serve();
    s.put_key("anthropic:one", "secret-one-value");
    s.put_key("anthropic:two", "secret-two-value");
    let u1 = s.ok(
        "auth.report",
        json!({"profileId": "anthropic:one", "outcome": "rate_limit"}),
    )["usage"]["cooldownUntil"]
        .as_i64()
        .unwrap();
    let u2 = s.ok(
        "auth.report",
        json!({"profileId": "anthropic:two", "outcome": "overloaded"}),
    )["usage"]["cooldownUntil"]
        .as_i64()
        .unwrap();
    let e = s.err(
        "auth.resolve",
        json!({"provider": "anthropic", "explain": true}),
    );
    assert_eq!(e["code"], -32020);
    assert_eq!(e["data"]["kind"], "unavailable");
    assert_eq!(e["data"]["retryable"], true);
    assert_eq!(e["data"]["earliestUntil"].as_i64().unwrap(), u1.min(u2));
    let mut cands: Vec<(String, String, i64)> = e["data"]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["profileId"].as_str().unwrap().to_string(),
                c["reason"].as_str().unwrap().to_string(),
                c["until"].as_i64().unwrap(),
            )
        })
        .collect();
    cands.sort();
    assert_eq!(
        cands,
        vec![
            ("anthropic:one".into(), "cooldown".into(), u1),
            ("anthropic:two".into(), "cooldown".into(), u2)
        ]
    );
    let trace = e["data"]["trace"].as_array().unwrap();
    assert_eq!(trace.len(), 2);
    for t in trace {
        assert_eq!(t["decision"], "skipped");
        assert_eq!(t["reason"], "cooldown");
        let want = if t["profileId"] == "anthropic:one" {
            u1
        } else {
            u2
        };
        assert_eq!(t["until"].as_i64().unwrap(), want);
    }
    let text = e.to_string();
    assert!(!text.contains("secret-one-value") && !text.contains("secret-two-value"));
    // order.get shows the same.
    let eff = s.ok("order.get", json!({"provider": "anthropic"}))["effective"].clone();
    assert!(eff
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["usable"] == false && x["reason"] == "cooldown"));
    // auth.candidates lists nothing usable.
    let c = s.ok("auth.candidates", json!({"provider": "anthropic"}));
    assert_eq!(c["candidates"], json!([]));
}

#[test]
fn usage_is_shared_by_every_agent_and_exempt_providers_record_nothing() {
    let env = Env::new();
    let mut s = env.serve();
    s.put_key("openai:shared", "k-shared");
    s.put_key("openrouter:r", "k-router");
    s.ok(
        "auth.report",
        json!({"profileId": "openai:shared", "outcome": "timeout", "agent": "cron-nightly"}),
    );
    let e = s.err(
        "auth.resolve",
        json!({"provider": "openai", "agent": "main"}),
    );
    assert_eq!(e["data"]["kind"], "unavailable");
    let r = s.ok(
        "auth.report",
        json!({"profileId": "openrouter:r", "outcome": "rate_limit"}),
    );
    assert_eq!(r["recorded"], false);
    assert!(r["usage"].get("cooldownUntil").is_none());
    assert_eq!(
        s.ok("auth.resolve", json!({"provider": "openrouter"}))["profileId"],
        "openrouter:r"
    );
    // Errors: unknown profile, unknown outcome.
    let e = s.err(
        "auth.report",
        json!({"profileId": "openai:nope", "outcome": "success"}),
    );
    assert_eq!(e["data"]["kind"], "unknown_profile");
    let e = s.err(
        "auth.report",
        json!({"profileId": "openai:shared", "outcome": "teapot"}),
    );
    assert_eq!(e["data"]["kind"], "invalid_params");
    let e = s.err("auth.clearCooldown", json!({"profileId": "openai:nope"}));
    assert_eq!(e["data"]["kind"], "unknown_profile");
    // clearCooldown without a model clears it for everyone.
    let c = s.ok("auth.clearCooldown", json!({"profileId": "openai:shared"}));
    assert_eq!(c["cleared"], true);
    assert_eq!(
        s.ok(
            "auth.resolve",
            json!({"provider": "openai", "agent": "main"})
        )["profileId"],
        "openai:shared"
    );
}

#[test]
fn settings_persist_for_every_process_and_unknown_keys_are_refused() {
    let env = Env::new();
    let d = env.call("settings.get", json!({})).unwrap();
    assert_eq!(d["settings"]["envFallback"], "whenNoProfiles");
    assert_eq!(
        d["settings"]["cooldowns"]["transientStepsMs"],
        json!([30000, 60000, 300000])
    );
    assert_eq!(d["settings"]["busyTimeoutMs"], 5000);
    assert!(
        !env.store().exists(),
        "settings.get must not create the store"
    );
    let e = env
        .call(
            "settings.set",
            json!({"settings": {"envfallback": "never"}}),
        )
        .unwrap_err();
    assert_eq!(e["data"]["kind"], "invalid_settings");
    assert!(
        !env.store().exists(),
        "a refused settings.set must not create the store"
    );
    let e = env
        .call(
            "settings.set",
            json!({"settings": {"cooldowns": {"rateLimitBase": 1}}}),
        )
        .unwrap_err();
    assert_eq!(e["data"]["kind"], "invalid_settings");
    let set = env
        .call(
            "settings.set",
            json!({"settings": {"envFallback": "never", "busyTimeoutMs": 2000,
                                 "cooldowns": {"billingBaseMs": 1000}}}),
        )
        .unwrap();
    assert_eq!(set["settings"]["envFallback"], "never");
    let got = env.call("settings.get", json!({})).unwrap();
    assert_eq!(got["settings"]["envFallback"], "never");
    assert_eq!(got["settings"]["busyTimeoutMs"], 2000);
    assert_eq!(got["settings"]["cooldowns"]["billingBaseMs"], 1000);
    assert_eq!(got["settings"]["cooldowns"]["rateLimitBaseMs"], 30000);
    // The shortened billing window is used by the next process.
    let mut s = env.serve();
    s.put_key("openai:x", "kx");
    let t = now_ms();
    let r = s.ok(
        "auth.report",
        json!({"profileId": "openai:x", "outcome": "billing"}),
    );
    let until = r["usage"]["disabledUntil"].as_i64().unwrap();
    assert!(until >= t + 1000 && until <= now_ms() + 1000);
}

fn put_token(s: &mut common::Server, id: &str, expires: i64) {
    s.ok(
        "profiles.put",
        json!({"profile": {"id": id, "type": "token", "token": format!("tok-{id}"), "expires": expires}}),
    );
}

fn status_of(st: &Value, provider: &str) -> (String, Vec<(String, String)>) {
    let p = st["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == provider)
        .unwrap_or_else(|| panic!("no {provider} in {st}"));
    (
        p["status"].as_str().unwrap().to_string(),
        p["profiles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x["profileId"].as_str().unwrap().to_string(),
                    x["status"].as_str().unwrap().to_string(),
                )
            })
            .collect(),
    )
}

#[test]
fn check_exits_0_healthy_2_expiring_1_expired_or_missing() {
    let env = Env::new();
    // An empty store: nothing at all is missing.
    let out = env.check(&[]);
    assert_eq!(out.status.code(), Some(1));
    {
        let mut s = env.serve();
        s.put_key("openai:k", "kk");
        put_token(&mut s, "anthropic:long", now_ms() + 10 * DAY);
    }
    let out = env.check(&[]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("anthropic:long") && text.contains("openai:k"),
        "{text}"
    );
    assert!(
        !text.contains("tok-anthropic") && !text.contains("kk "),
        "{text}"
    );
    let st = env.call("auth.status", json!({})).unwrap();
    assert_eq!(st["overall"], "ok");
    assert_eq!(
        status_of(&st, "openai"),
        ("static".into(), vec![("openai:k".into(), "static".into())])
    );
    assert_eq!(
        status_of(&st, "anthropic"),
        ("ok".into(), vec![("anthropic:long".into(), "ok".into())])
    );

    // A token expiring within 24 h: 2.
    let soon = now_ms() + 3_600_000;
    {
        let mut s = env.serve();
        put_token(&mut s, "anthropic:soon", soon);
    }
    let out = env.check(&[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let st = env.call("auth.status", json!({})).unwrap();
    assert_eq!(st["overall"], "expiring");
    let (ps, profiles) = status_of(&st, "anthropic");
    assert_eq!(ps, "expiring");
    assert!(profiles.contains(&("anthropic:soon".into(), "expiring".into())));
    assert!(profiles.contains(&("anthropic:long".into(), "ok".into())));
    let p = st["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == "anthropic")
        .unwrap();
    assert_eq!(p["expires"].as_i64().unwrap(), soon);
    // A shorter horizon makes it ok.
    let st = env
        .call("auth.status", json!({"expiringWithinMs": 60_000}))
        .unwrap();
    assert_eq!(st["overall"], "ok");

    // An expired token: 1, and --json carries the same statuses.
    {
        let mut s = env.serve();
        put_token(&mut s, "google:old", now_ms() - 1000);
    }
    let out = env.check(&["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let js: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(js["overall"], "expired");
    assert_eq!(
        status_of(&js, "google"),
        (
            "expired".into(),
            vec![("google:old".into(), "expired".into())]
        )
    );
    let st = env.call("auth.status", json!({})).unwrap();
    assert_eq!(st["overall"], "expired");
    assert_eq!(status_of(&st, "google").0, "expired");
    // Per provider: only openai is healthy; an unknown provider is missing.
    assert_eq!(env.check(&["--provider", "openai"]).status.code(), Some(0));
    assert_eq!(
        env.check(&["--provider", "anthropic"]).status.code(),
        Some(2)
    );
    let out = env.check(&["--provider", "mistral", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let js: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status_of(&js, "mistral"), ("missing".into(), vec![]));
    // An agent sees the shared profiles too.
    assert_eq!(
        env.check(&["--agent", "main", "--provider", "google"])
            .status
            .code(),
        Some(1)
    );
    // --refresh is accepted (nothing here is OAuth, so nothing is refreshed).
    let out = env.check(&["--refresh", "--provider", "openai"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("refreshed"));
}

#[test]
fn cooldowns_show_in_status_but_do_not_fail_check() {
    let env = Env::new();
    let mut s = env.serve();
    s.put_key("openai:k", "kk");
    s.ok(
        "auth.report",
        json!({"profileId": "openai:k", "outcome": "rate_limit", "model": "gpt"}),
    );
    let st = s.ok("auth.status", json!({"provider": "openai"}));
    assert_eq!(
        status_of(&st, "openai"),
        (
            "static".into(),
            vec![("openai:k".into(), "cooldown".into())]
        )
    );
    assert_eq!(st["providers"][0]["profiles"][0]["reason"], "rate_limit");
    let out = env.check(&[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("cooldown"));
    drop(s);
}

#[test]
fn auth_report_takes_an_http_status_and_retry_after() {
    let env = Env::new();
    let mut s = env.serve();
    for id in ["openai:a", "openai:b", "openai:c", "openai:d", "openai:e"] {
        s.put_key(id, &format!("key-{id}"));
    }
    // The HTTP status maps to an outcome, which the result echoes.
    for (status, outcome, field) in [
        (429, "rate_limit", "cooldownReason"),
        (402, "billing", "disabledReason"),
        (503, "overloaded", "cooldownReason"),
        (418, "format", "cooldownReason"),
    ] {
        let r = s.ok(
            "auth.report",
            json!({"profileId": "openai:a", "httpStatus": status}),
        );
        assert_eq!(r["outcome"], outcome, "{status}");
        if status != 402 {
            // Only the first failure opens a cooldown window (later ones are covered by it).
            continue;
        }
        assert_eq!(r["usage"][field], outcome);
    }
    // An explicit outcome wins over the status.
    let r = s.ok(
        "auth.report",
        json!({"profileId": "openai:b", "outcome": "timeout", "httpStatus": 200}),
    );
    assert_eq!(r["outcome"], "timeout");
    let r = s.ok(
        "auth.report",
        json!({"profileId": "openai:b", "httpStatus": 204}),
    );
    assert_eq!(r["outcome"], "success");
    assert!(r["usage"].get("cooldownUntil").is_none());
    // Retry-After: a new rate-limit window lasts at least that long (base 30 s here).
    let before = now_ms();
    let r = s.ok(
        "auth.report",
        json!({"profileId": "openai:c", "httpStatus": 429, "retryAfterMs": 600000}),
    );
    let until = r["usage"]["cooldownUntil"].as_i64().unwrap();
    assert!(
        until >= before + 600_000 && until <= now_ms() + 600_000,
        "{r}"
    );
    // ... and never shortens or extends the active one.
    let r = s.ok(
        "auth.report",
        json!({"profileId": "openai:c", "httpStatus": 429, "retryAfterMs": 1000}),
    );
    assert_eq!(r["usage"]["cooldownUntil"].as_i64().unwrap(), until);
    let r = s.ok(
        "auth.report",
        json!({"profileId": "openai:c", "outcome": "rate_limit", "retryAfterMs": 9 * DAY}),
    );
    assert_eq!(r["usage"]["cooldownUntil"].as_i64().unwrap(), until);
    // Capped at rateLimitMaxMs.
    s.ok(
        "settings.set",
        json!({"settings": {"cooldowns": {"rateLimitMaxMs": 3600000}}}),
    );
    let before = now_ms();
    let r = s.ok(
        "auth.report",
        json!({"profileId": "openai:d", "httpStatus": 504, "retryAfterMs": 9 * DAY}),
    );
    assert_eq!(r["outcome"], "timeout");
    let until = r["usage"]["cooldownUntil"].as_i64().unwrap();
    assert!(
        until >= before + 3_600_000 && until <= now_ms() + 3_600_000,
        "{r}"
    );
    // Neither outcome nor httpStatus, or a bad one: invalid_params, nothing recorded.
    for bad in [
        json!({"profileId": "openai:e"}),
        json!({"profileId": "openai:e", "retryAfterMs": 1000}),
        json!({"profileId": "openai:e", "httpStatus": -1}),
        json!({"profileId": "openai:e", "httpStatus": "429"}),
        json!({"profileId": "openai:e", "httpStatus": 429, "retryAfterMs": -5}),
    ] {
        let e = s.err("auth.report", bad.clone());
        assert_eq!(e["code"], -32602, "{bad}");
        assert_eq!(e["data"]["kind"], "invalid_params", "{bad}");
        assert!(e["data"]["hint"].is_string() || e["message"].is_string());
    }
    let e = s.err("auth.report", json!({"profileId": "openai:e"}));
    assert!(e["data"]["hint"].as_str().unwrap().contains("httpStatus"));
    let v = s.ok("profiles.get", json!({"profileId": "openai:e"}));
    assert_eq!(v["profile"]["usage"]["errorCount"], 0);
    // The process kept serving.
    assert_eq!(
        s.ok("auth.resolve", json!({"provider": "openai"}))["profileId"],
        "openai:e"
    );
}
