//! A `serve` whose store is opened read-only (its first request a read: nothing is written,
//! issue 19) keeps its read cache between requests once the store's files have settled,
//! and still sees a commit of another process at its next request.

mod common;

use common::*;
use serde_json::json;

/// Waits past the 2 s within which a just-modified store is not trusted as a read-cache
/// key (`store::sqlite::open::readonly_marker`): the next answers come from the cache.
fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(2300));
}

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
    settle();
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
    settle();
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
    settle();
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

/// A `serve` keeps each walk until the first stored instant it depends on (issue 19,
/// `core::resolve::walk_horizon`): a token that expires while the store stays unchanged is
/// skipped from that moment on, by the same process, with nothing written in between.
#[test]
fn a_kept_walk_ends_when_a_token_it_chose_expires() {
    let s = TempStore::new();
    let expires = now_ms() + 4_500;
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": {"id": "openai:tok", "type": "token", "token": "tok-short-1", "expires": expires}}),
    );
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:key", "sk-after-2")}),
    );
    let mut srv = Server::start(&s.path);
    settle(); // from here the walk is kept
    for _ in 0..3 {
        let r = srv.ok("auth.resolve", json!({"provider": "openai"}));
        assert_eq!(r["secret"], "tok-short-1");
        assert!(r.get("fallbackFrom").is_none(), "{r}");
    }
    sleep_past(expires);
    for _ in 0..2 {
        let r = srv.ok("auth.resolve", json!({"provider": "openai"}));
        assert_eq!(r["secret"], "sk-after-2", "{r}");
        assert_eq!(r["fallbackFrom"], "openai:tok");
        assert_eq!(r["fallbackReason"], "expired");
    }
    let st = srv.ok("order.get", json!({"provider": "openai"}));
    assert_eq!(st["effective"][0]["reason"], "expired", "{st}");
    assert!(srv.finish().status.success());
}

/// Walks are kept per model: a cooldown scoped to one model skips the profile for that
/// model and for requests naming none, and never for another model, however the requests
/// interleave in one `serve`.
#[test]
fn kept_walks_are_per_model() {
    let s = TempStore::new();
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:a", "sk-a-1")}),
    );
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:b", "sk-b-2")}),
    );
    ok(
        &s.path,
        "order.set",
        json!({"provider": "openai", "order": ["openai:a", "openai:b"]}),
    );
    ok(
        &s.path,
        "auth.report",
        json!({"profileId": "openai:a", "outcome": "rate_limit", "model": "m1"}),
    );
    let mut srv = Server::start(&s.path);
    settle();
    let expect = [
        (Some("m1"), "sk-b-2"),
        (Some("m2"), "sk-a-1"),
        (None, "sk-b-2"),
    ];
    for _ in 0..3 {
        for (model, secret) in expect {
            let mut p = json!({"provider": "openai"});
            if let Some(m) = model {
                p["model"] = json!(m);
            }
            assert_eq!(
                srv.ok("auth.resolve", p)["secret"],
                secret,
                "model {model:?}"
            );
        }
    }
    // Many models, each a walk of its own: the kept walks are replaced, never wrong.
    for i in 0..40 {
        let r = srv.ok(
            "auth.resolve",
            json!({"provider": "openai", "model": format!("x{i}")}),
        );
        assert_eq!(r["secret"], "sk-a-1");
        let r = srv.ok("auth.resolve", json!({"provider": "openai", "model": "m1"}));
        assert_eq!(r["secret"], "sk-b-2");
    }
    assert!(srv.finish().status.success());
}
