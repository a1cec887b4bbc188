//! Issue 11: a hostile input, store location or caller cannot break the store, steal a
//! token or exhaust the machine. Each test drives the real binary.

mod common;

use common::*;
use serde_json::json;

fn kind(e: &serde_json::Value) -> &str {
    e["data"]["kind"].as_str().unwrap_or_default()
}

/// Before: `busyTimeoutMs: 3000000000` was stored, and every later open panicked.
#[test]
fn an_unbounded_busy_timeout_is_refused_and_stores_nothing() {
    let t = TempStore::new();
    ok(&t.path, "profiles.put", json!({"profile": api_key("openai:a", "sk-test-1")}));
    let e = err(&t.path, "settings.set", json!({"settings": {"busyTimeoutMs": 3_000_000_000u64}}));
    assert_eq!(kind(&e), "invalid_settings", "{e}");
    assert_eq!(e["data"]["pointer"], "/settings/busyTimeoutMs");
    let s = ok(&t.path, "settings.get", json!({}));
    assert_eq!(s["settings"]["busyTimeoutMs"], 5000);
    assert_eq!(s["revision"], 0);
}

/// Before: a bad stored value (written by an older build) made every open panic.
#[test]
fn a_store_with_bad_stored_settings_opens_with_the_defaults_and_a_warning() {
    let t = TempStore::new();
    ok(&t.path, "profiles.put", json!({"profile": api_key("openai:a", "sk-test-1")}));
    {
        let c = rusqlite::Connection::open(&t.path).unwrap();
        c.execute(
            "INSERT INTO settings (key, value) VALUES ('busyTimeoutMs', '3000000000'), ('refreshMarginMs', '-5')",
            [],
        )
        .unwrap();
    }
    let out = call_with_stdin(cmd(&t.path), "settings.get", &json!({}));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["settings"]["busyTimeoutMs"], 5000);
    assert_eq!(s["settings"]["refreshMarginMs"], 300000);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("busyTimeoutMs") && stderr.contains("defaults"), "{stderr}");
    // The store still works, and settings.set repairs it.
    ok(&t.path, "auth.resolve", json!({"provider": "openai"}));
    ok(&t.path, "settings.set", json!({"settings": {"busyTimeoutMs": 4000, "refreshMarginMs": 1000}}));
    let out = call_with_stdin(cmd(&t.path), "settings.get", &json!({}));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("defaults"));
}

/// Before: `settings.set` had no `expectedRevision`; two editors overwrote each other.
#[test]
fn settings_set_honours_expected_revision() {
    let t = TempStore::new();
    let r = ok(&t.path, "settings.set", json!({"settings": {"envFallback": "never"}, "expectedRevision": 0}));
    assert_eq!(r["revision"], 1);
    let e = err(&t.path, "settings.set", json!({"settings": {"envFallback": "always"}, "expectedRevision": 0}));
    assert_eq!(kind(&e), "revision_conflict", "{e}");
    assert_eq!(e["data"]["currentRevision"], 1);
    let s = ok(&t.path, "settings.get", json!({}));
    assert_eq!(s["settings"]["envFallback"], "never");
    assert_eq!(s["revision"], 1);
    let r = ok(&t.path, "settings.set", json!({"settings": {"envFallback": "always"}, "expectedRevision": 1}));
    assert_eq!(r["revision"], 2);
}
