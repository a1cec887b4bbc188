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

fn discover_batch(n: usize) -> String {
    let members: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"rpc.discover"}}"#))
        .collect();
    format!("[{}]\n", members.join(","))
}

/// Before: one 1 MiB line of ~20,000 `rpc.discover` calls took 4.2 GB and produced a
/// 1.4 GB answer. Now: one clear error, nothing executed, and the process keeps serving.
#[test]
fn a_batch_with_too_many_members_is_one_error() {
    let t = TempStore::new();
    let mut input = discover_batch(19_500);
    input.push_str(r#"{"jsonrpc":"2.0","id":"after","method":"helper.info"}"#);
    input.push('\n');
    let (lines, out) = serve_lines(&t.path, input.as_bytes(), &[]);
    assert!(out.status.success());
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].len() < 4096, "answer of {} bytes", lines[0].len());
    let e: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(e["error"]["code"], -32600);
    assert_eq!(e["error"]["data"]["maxBatchMembers"], 256);
    let after: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(after["id"], "after");
    assert!(after["result"].is_object());
}

/// Within the member cap, the answer stops growing past 8 MiB: later members are not
/// executed and each gets a short `message_too_large` error with its own id.
#[test]
fn a_batch_answer_is_bounded_in_bytes() {
    let t = TempStore::new();
    let input = discover_batch(256);
    let (lines, out) = serve_lines(&t.path, input.as_bytes(), &[]);
    assert!(out.status.success());
    assert_eq!(lines.len(), 1);
    assert!(lines[0].len() < 10 << 20, "answer of {} bytes", lines[0].len());
    let answers: Vec<serde_json::Value> = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(answers.len(), 256);
    assert!(answers[0]["result"].is_object());
    let last = &answers[255];
    assert_eq!(last["id"], 255);
    assert_eq!(last["error"]["data"]["kind"], "message_too_large", "{last}");
}
