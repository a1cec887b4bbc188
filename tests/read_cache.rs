//! A `serve` whose store is opened read-only (its first request a read: nothing is written,
//! issue 19) keeps its read cache between requests once the store's files have settled,
//! and still sees a commit of another process at its next request.

mod common;

use common::*;
use serde_json::json;

#[test]
fn a_read_only_server_sees_a_commit_made_after_its_cache_settled() {
    let s = TempStore::new();
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:a", "sk-first-1")}),
    );
    let mut srv = Server::start(&s.path);
    assert_eq!(
        srv.ok("auth.resolve", json!({"provider": "openai"}))["secret"],
        "sk-first-1"
    );
    // Past the 2 s within which a just-modified store is not trusted as a cache key
    // (`store::sqlite::open::readonly_marker`): the next answers come from the cache.
    std::thread::sleep(std::time::Duration::from_millis(2300));
    for _ in 0..3 {
        assert_eq!(
            srv.ok("auth.resolve", json!({"provider": "openai"}))["secret"],
            "sk-first-1"
        );
    }
    // Another process replaces the key, then adds a profile and puts it first: each is seen at once.
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:a", "sk-second-2")}),
    );
    assert_eq!(
        srv.ok("auth.resolve", json!({"provider": "openai"}))["secret"],
        "sk-second-2"
    );
    std::thread::sleep(std::time::Duration::from_millis(2300));
    assert_eq!(
        srv.ok("auth.resolve", json!({"provider": "openai"}))["secret"],
        "sk-second-2"
    );
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:b", "sk-third-3")}),
    );
    ok(
        &s.path,
        "order.set",
        json!({"provider": "openai", "order": ["openai:b", "openai:a"]}),
    );
    assert_eq!(
        srv.ok("auth.resolve", json!({"provider": "openai"}))["secret"],
        "sk-third-3"
    );
    assert!(srv.finish().status.success());
}

/// `settings.get` answers from the read cache (issue 19: the trivial method a warm `serve`
/// is measured against) and still sees another process's `settings.set` at once, in the
/// server that answered the first read and in one that has served it from the cache.
#[test]
fn settings_get_from_the_cache_sees_another_process_set() {
    let s = TempStore::new();
    ok(
        &s.path,
        "settings.set",
        json!({"settings": {"envFallback": "never"}}),
    );
    let mut srv = Server::start(&s.path);
    let first = srv.ok("settings.get", json!({}));
    assert_eq!(first["settings"]["envFallback"], "never");
    std::thread::sleep(std::time::Duration::from_millis(2300));
    for _ in 0..3 {
        assert_eq!(srv.ok("settings.get", json!({})), first);
    }
    ok(
        &s.path,
        "settings.set",
        json!({"settings": {"envFallback": "always"}}),
    );
    let after = srv.ok("settings.get", json!({}));
    assert_eq!(after["settings"]["envFallback"], "always");
    assert!(
        after["revision"].as_i64() > first["revision"].as_i64(),
        "{first} -> {after}"
    );
    assert!(srv.finish().status.success());
}
