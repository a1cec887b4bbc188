//! One behaviour suite for every [`Store`] implementation, in the manner of object_store's
//! shared integration tests: a backend's test file calls [`run`] with a function that
//! opens a handle on one fresh, empty store location, and every check here must pass.
//!
//! Each check gets `open`, which returns a *new handle on the same location* every time it
//! is called (as a second process would open it), so checks can prove that commits are
//! seen by other handles, that failed writes leave nothing behind, and that the refresh
//! lock excludes other holders.
//!
//! The checks panic with a message on failure; [`run`] runs all of them and panics with
//! the names of those that failed.

use std::time::Duration;

use super::{Store, Tx};
use crate::core::error::{ErrorKind, RpcError};
use crate::core::profile::{Credential, Profile};
use crate::core::resolve::{ExplicitOrder, OrderSource};
use crate::core::secret_value::Secret;
use crate::core::usage::Usage;

/// Opens a new handle on the location under test.
pub(crate) type Open<'a> = &'a dyn Fn() -> Box<dyn Store>;

/// One check of the suite.
pub(crate) type Check = fn(Open<'_>);

/// Every check: `(name, check)`.
pub(crate) const CHECKS: &[(&str, Check)] = &[
    (
        "a_missing_store_reads_as_empty",
        a_missing_store_reads_as_empty,
    ),
    (
        "an_agent_sees_its_own_profiles_over_shared_ones",
        an_agent_sees_its_own_profiles_over_shared_ones,
    ),
    (
        "revisions_count_puts_and_keep_created_at",
        revisions_count_puts_and_keep_created_at,
    ),
    ("deletes_are_per_scope", deletes_are_per_scope),
    (
        "orders_fall_back_from_agent_to_shared",
        orders_fall_back_from_agent_to_shared,
    ),
    (
        "last_good_is_per_scope_and_cleared_by_id",
        last_good_is_per_scope_and_cleared_by_id,
    ),
    (
        "usage_belongs_to_the_credential",
        usage_belongs_to_the_credential,
    ),
    (
        "settings_and_providers_round_trip",
        settings_and_providers_round_trip,
    ),
    (
        "a_failed_write_changes_nothing",
        a_failed_write_changes_nothing,
    ),
    (
        "another_handle_sees_every_commit",
        another_handle_sees_every_commit,
    ),
    (
        "the_refresh_lock_excludes_other_holders",
        the_refresh_lock_excludes_other_holders,
    ),
    (
        "concurrent_order_appends_lose_nothing",
        concurrent_order_appends_lose_nothing,
    ),
    (
        "named_secrets_round_trip_and_roll_back",
        named_secrets_round_trip_and_roll_back,
    ),
    ("import_marks_are_per_source", import_marks_are_per_source),
];

/// Runs every check, each on a location from `fresh`: `fresh()` returns an `open` function
/// for a new, empty location. Panics naming the checks that failed.
pub fn run(fresh: &dyn Fn() -> Box<dyn Fn() -> Box<dyn Store>>) {
    let mut failed = vec![];
    for (name, check) in CHECKS {
        let open = fresh();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&*open)));
        match r {
            Ok(()) => eprintln!("conformance: {name} ... ok"),
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                eprintln!("conformance: {name} ... FAILED: {msg}");
                failed.push(*name);
            }
        }
    }
    assert!(
        failed.is_empty(),
        "store conformance checks failed: {failed:?}"
    );
}

fn profile(id: &str, key: &str) -> Profile {
    Profile {
        id: id.into(),
        provider: id.split(':').next().unwrap_or_default().into(),
        email: None,
        display_name: None,
        credential: Credential::ApiKey {
            key: Some(Secret::new(key)),
            key_ref: None,
            metadata: None,
        },
    }
}

fn ids(v: &[crate::core::profile::StoredProfile]) -> Vec<(String, Option<String>)> {
    v.iter()
        .map(|p| (p.profile.id.clone(), p.scope.clone()))
        .collect()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn read<T>(st: &mut Box<dyn Store>, f: impl FnOnce(&dyn Tx) -> Result<T, RpcError>) -> T {
    st.read(f).expect("read transaction")
}

fn write<T>(st: &mut Box<dyn Store>, f: impl FnOnce(&dyn Tx) -> Result<T, RpcError>) -> T {
    st.write(f).expect("write transaction")
}

fn a_missing_store_reads_as_empty(open: Open<'_>) {
    let mut st = open();
    assert!(
        !st.describe().exists,
        "a new location exists before any write"
    );
    assert_eq!(st.schema_version().expect("schema version"), None);
    assert!(read(&mut st, |c| c.view_profiles(None, None)).is_empty());
    assert!(read(&mut st, |c| c.scopes()).is_empty());
    assert!(!st.describe().exists, "a read created the store");
    write(&mut st, |c| {
        c.upsert_profile(None, &profile("openai:a", "k1"), 1)
    });
    assert!(st.describe().exists);
    assert!(st.schema_version().expect("schema version").is_some());
}

fn an_agent_sees_its_own_profiles_over_shared_ones(open: Open<'_>) {
    let mut st = open();
    write(&mut st, |c| {
        c.upsert_profile(None, &profile("openai:a", "k1"), 1)?;
        c.upsert_profile(None, &profile("openai:b", "k2"), 1)?;
        c.upsert_profile(Some("main"), &profile("openai:a", "k3"), 2)?;
        c.upsert_profile(None, &profile("anthropic:x", "k4"), 1)
    });
    let main = read(&mut st, |c| c.view_profiles(Some("main"), Some("openai")));
    assert_eq!(
        ids(&main),
        [
            ("openai:a".into(), Some("main".into())),
            ("openai:b".into(), None)
        ]
    );
    let shared = read(&mut st, |c| c.view_profiles(None, None));
    assert_eq!(
        ids(&shared),
        [
            ("anthropic:x".into(), None),
            ("openai:a".into(), None),
            ("openai:b".into(), None)
        ]
    );
    let one = read(&mut st, |c| c.view_profile(Some("main"), "openai:b")).expect("shared one");
    assert_eq!(one.scope, None);
    let own = read(&mut st, |c| c.view_profile(Some("main"), "openai:a")).expect("own one");
    assert_eq!(own.scope.as_deref(), Some("main"));
    assert!(read(&mut st, |c| c.scope_profile(Some("main"), "openai:b")).is_none());
    assert!(read(&mut st, |c| c.view_profile(Some("other"), "openai:zz")).is_none());
    assert_eq!(
        read(&mut st, |c| c.scopes()),
        [None, Some("main".to_string())]
    );
}

fn revisions_count_puts_and_keep_created_at(open: Open<'_>) {
    let mut st = open();
    let first = write(&mut st, |c| {
        c.upsert_profile(None, &profile("x:a", "k1"), 10)
    });
    let second = write(&mut st, |c| {
        c.upsert_profile(None, &profile("x:a", "k2"), 20)
    });
    assert_eq!((first, second), ((true, 1), (false, 2)));
    let p = read(&mut st, |c| c.scope_profile(None, "x:a")).expect("stored");
    assert_eq!((p.revision, p.created_at, p.updated_at), (2, 10, 20));
    match &p.profile.credential {
        Credential::ApiKey { key: Some(k), .. } => assert_eq!(k.expose(), "k2"),
        other => panic!("unexpected credential {other:?}"),
    }
}

fn deletes_are_per_scope(open: Open<'_>) {
    let mut st = open();
    write(&mut st, |c| {
        c.upsert_profile(None, &profile("x:a", "k1"), 1)?;
        c.upsert_profile(Some("cron"), &profile("x:a", "k2"), 1)
    });
    assert!(write(&mut st, |c| c.delete_profile(None, "x:a")));
    assert!(!write(&mut st, |c| c.delete_profile(None, "x:a")));
    assert!(read(&mut st, |c| c.profile_id_exists_anywhere("x:a")));
    assert!(write(&mut st, |c| c.delete_profile(Some("cron"), "x:a")));
    assert!(!read(&mut st, |c| c.profile_id_exists_anywhere("x:a")));
}

fn orders_fall_back_from_agent_to_shared(open: Open<'_>) {
    let mut st = open();
    assert_eq!(
        write(&mut st, |c| c.set_order(None, "x", &s(&["x:a", "x:b"]), 1)),
        1
    );
    assert_eq!(
        write(&mut st, |c| c.set_order(None, "x", &s(&["x:b"]), 2)),
        2
    );
    assert_eq!(
        read(&mut st, |c| c.effective_order(Some("cron"), "x")),
        Some(ExplicitOrder {
            ids: s(&["x:b"]),
            source: OrderSource::Shared
        })
    );
    write(&mut st, |c| c.set_order(Some("cron"), "x", &s(&["x:a"]), 3));
    assert_eq!(
        read(&mut st, |c| c.effective_order(Some("cron"), "x")),
        Some(ExplicitOrder {
            ids: s(&["x:a"]),
            source: OrderSource::Agent
        })
    );
    assert_eq!(
        read(&mut st, |c| c.scope_order(Some("cron"), "x")),
        Some((s(&["x:a"]), 1))
    );
    write(&mut st, |c| c.set_order(None, "a", &s(&["a:1"]), 4));
    assert_eq!(
        read(&mut st, |c| c.scope_orders(None)),
        [
            ("a".to_string(), s(&["a:1"])),
            ("x".to_string(), s(&["x:b"]))
        ]
    );
    assert!(write(&mut st, |c| c.clear_order(Some("cron"), "x")));
    assert!(!write(&mut st, |c| c.clear_order(Some("cron"), "x")));
    assert_eq!(
        read(&mut st, |c| c.effective_order(Some("cron"), "x")),
        Some(ExplicitOrder {
            ids: s(&["x:b"]),
            source: OrderSource::Shared
        })
    );
    assert_eq!(read(&mut st, |c| c.effective_order(None, "none")), None);
}

fn last_good_is_per_scope_and_cleared_by_id(open: Open<'_>) {
    let mut st = open();
    write(&mut st, |c| {
        c.set_last_good(None, "x", "x:a")?;
        c.set_last_good(None, "y", "y:a")?;
        c.set_last_good(Some("cron"), "x", "x:a")?;
        c.set_last_good(None, "x", "x:b")
    });
    assert_eq!(
        read(&mut st, |c| c.last_good(None, "x")).as_deref(),
        Some("x:b")
    );
    assert_eq!(
        read(&mut st, |c| c.scope_last_good(None)),
        [("x".into(), "x:b".into()), ("y".into(), "y:a".into())]
    );
    assert_eq!(
        write(&mut st, |c| c.clear_last_good_for(Some("cron"), "x:a")),
        1
    );
    assert_eq!(read(&mut st, |c| c.last_good(Some("cron"), "x")), None);
    assert_eq!(
        read(&mut st, |c| c.last_good(None, "x")).as_deref(),
        Some("x:b")
    );
}

fn usage_belongs_to_the_credential(open: Open<'_>) {
    let mut st = open();
    assert_eq!(read(&mut st, |c| c.usage("x:a")), Usage::default());
    let u = Usage {
        last_used: Some(5),
        error_count: 2,
        ..Usage::default()
    };
    write(&mut st, |c| c.put_usage("x:a", &u));
    assert_eq!(read(&mut st, |c| c.usage("x:a")), u);
    let all = read(&mut st, |c| c.usages(&["x:a", "x:b"]));
    assert_eq!(all.len(), 1);
    assert_eq!(all.get("x:a"), Some(&u));
    write(&mut st, |c| c.put_usage("x:a", &Usage::default()));
    assert!(read(&mut st, |c| c.usages(&["x:a"])).is_empty());
}

fn settings_and_providers_round_trip(open: Open<'_>) {
    let mut st = open();
    let v = serde_json::json!({"a": [1, 2], "b": "c"});
    write(&mut st, |c| c.put_setting("cooldowns", &v));
    assert_eq!(read(&mut st, |c| c.setting("cooldowns")), Some(v.clone()));
    assert_eq!(read(&mut st, |c| c.setting("none")), None);
    assert_eq!(read(&mut st, |c| c.settings()).get("cooldowns"), Some(&v));
    let body = serde_json::json!({"aliases": ["claude-cli"]});
    assert!(write(&mut st, |c| c.put_provider("anthropic", &body)));
    assert!(!write(&mut st, |c| c.put_provider("anthropic", &body)));
    write(&mut st, |c| c.put_provider("aaa", &serde_json::json!({})));
    let names: Vec<String> = read(&mut st, |c| c.providers())
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(names, ["aaa", "anthropic"]);
    assert!(write(&mut st, |c| c.delete_provider("aaa")));
    assert!(!write(&mut st, |c| c.delete_provider("aaa")));
}

fn a_failed_write_changes_nothing(open: Open<'_>) {
    let mut st = open();
    write(&mut st, |c| {
        c.upsert_profile(None, &profile("x:a", "k1"), 1)
    });
    let e = st
        .write(|c| -> Result<(), RpcError> {
            c.upsert_profile(None, &profile("x:b", "k2"), 2)?;
            c.set_order(None, "x", &s(&["x:b"]), 2)?;
            c.delete_profile(None, "x:a")?;
            Err(RpcError::new(ErrorKind::InvalidParams, "stop"))
        })
        .expect_err("the body failed");
    assert_eq!(e.kind, ErrorKind::InvalidParams);
    let mut other = open();
    let v = read(&mut other, |c| c.view_profiles(None, None));
    assert_eq!(ids(&v), [("x:a".to_string(), None)]);
    assert_eq!(read(&mut other, |c| c.scope_order(None, "x")), None);
}

fn another_handle_sees_every_commit(open: Open<'_>) {
    let mut a = open();
    let mut b = open();
    write(&mut a, |c| c.upsert_profile(None, &profile("x:a", "k1"), 1));
    let m1 = read(&mut b, |c| {
        Ok((c.change_marker()?, c.view_profiles(None, None)?.len()))
    });
    assert_eq!(m1.1, 1);
    write(&mut a, |c| c.upsert_profile(None, &profile("x:b", "k2"), 2));
    let m2 = read(&mut b, |c| {
        Ok((c.change_marker()?, c.view_profiles(None, None)?.len()))
    });
    assert_eq!(m2.1, 2, "a commit by another handle was not seen");
    if let (Some(x), Some(y)) = (m1.0, m2.0) {
        assert_ne!(
            x, y,
            "the change marker did not change after another handle's commit"
        );
    }
    let m3 = read(&mut b, |c| c.change_marker());
    let m4 = read(&mut b, |c| c.change_marker());
    assert_eq!(m3, m4, "the change marker moved without a commit");
}

fn the_refresh_lock_excludes_other_holders(open: Open<'_>) {
    let a = open();
    let b = open();
    let (la, lb) = (a.refresh_locks(), b.refresh_locks());
    let held = la
        .lock(None, "x:a", Duration::ZERO)
        .expect("lock")
        .expect("free lock taken");
    assert!(
        lb.lock(None, "x:a", Duration::from_millis(50))
            .expect("lock")
            .is_none(),
        "a held lock was taken twice"
    );
    let other = lb.lock(Some("cron"), "x:a", Duration::ZERO).expect("lock");
    assert!(other.is_some(), "another scope's lock is independent");
    drop(held);
    assert!(
        lb.lock(None, "x:a", Duration::from_secs(5))
            .expect("lock")
            .is_some(),
        "a dropped lock was not released"
    );
}

fn concurrent_order_appends_lose_nothing(open: Open<'_>) {
    const THREADS: usize = 4;
    const EACH: usize = 25;
    // Create the store first, so every thread opens an existing one.
    let mut st = open();
    write(&mut st, |c| c.set_order(None, "x", &[], 0));
    let handles: Vec<Box<dyn Store>> = (0..THREADS).map(|_| open()).collect();
    std::thread::scope(|sc| {
        for (t, mut h) in handles.into_iter().enumerate() {
            sc.spawn(move || {
                for i in 0..EACH {
                    let id = format!("x:t{t}-{i}");
                    let mut tries = 0;
                    loop {
                        let r = h.write(|c| {
                            let mut ids =
                                c.scope_order(None, "x")?.map(|o| o.0).unwrap_or_default();
                            ids.push(id.clone());
                            c.set_order(None, "x", &ids, 1)
                        });
                        match r {
                            Ok(_) => break,
                            Err(e) if e.retryable && tries < 50 => tries += 1,
                            Err(e) => panic!("append failed: {e:?}"),
                        }
                    }
                }
            });
        }
    });
    let (ids, rev) = read(&mut st, |c| c.scope_order(None, "x")).expect("order");
    assert_eq!(ids.len(), THREADS * EACH, "an append was lost");
    assert_eq!(rev as usize, THREADS * EACH + 1);
}

/// Named secrets (the `store` SecretRef source, protocol §12 r3): keyed by (provider, id),
/// replaced in place, deleted, seen by another handle, and a failed write leaves none.
fn named_secrets_round_trip_and_roll_back(open: Open<'_>) {
    let mut st = open();
    assert!(read(&mut st, |t| t.named_secrets()).is_empty());
    assert!(read(&mut st, |t| t.named_secret("default", "A")).is_none());
    let created = write(&mut st, |t| {
        let a = t.put_named_secret("default", "OPENAI_API_KEY", &Secret::new("v1"), 1)?;
        let b = t.put_named_secret("default", "OPENAI_API_KEY", &Secret::new("v2"), 2)?;
        let c = t.put_named_secret("other", "OPENAI_API_KEY", &Secret::new("o"), 2)?;
        Ok((a, b, c))
    });
    assert_eq!(created, (true, false, true));
    let mut other = open();
    let all = read(&mut other, |t| t.named_secrets());
    let flat: Vec<(String, String, String)> = all
        .iter()
        .map(|(p, i, v)| (p.clone(), i.clone(), v.expose().to_string()))
        .collect();
    assert_eq!(
        flat,
        vec![
            ("default".into(), "OPENAI_API_KEY".into(), "v2".into()),
            ("other".into(), "OPENAI_API_KEY".into(), "o".into())
        ]
    );
    let failed = st.write(|t| {
        t.put_named_secret("default", "NEW", &Secret::new("n"), 3)?;
        t.delete_named_secret("default", "OPENAI_API_KEY")?;
        Err::<(), _>(RpcError::internal("rolled back"))
    });
    assert!(failed.is_err());
    assert!(read(&mut other, |t| t.named_secret("default", "NEW")).is_none());
    assert_eq!(
        read(&mut other, |t| t.named_secret("default", "OPENAI_API_KEY"))
            .map(|s| s.expose().to_string()),
        Some("v2".into())
    );
    assert!(write(&mut st, |t| t
        .delete_named_secret("default", "OPENAI_API_KEY")));
    assert!(!write(&mut st, |t| t
        .delete_named_secret("default", "OPENAI_API_KEY")));
    assert!(read(&mut other, |t| t.named_secret("default", "OPENAI_API_KEY")).is_none());
}

/// Import provenance: marks are listed per source, taken over by a later source, deleted.
fn import_marks_are_per_source(open: Open<'_>) {
    let mut st = open();
    assert!(read(&mut st, |t| t.import_marks("/a")).is_empty());
    write(&mut st, |t| {
        t.set_import_mark(None, "profile", "x:1", "/a")?;
        t.set_import_mark(Some("cron"), "profile", "x:1", "/a")?;
        t.set_import_mark(None, "order", "x", "/a")?;
        t.set_import_mark(None, "profile", "x:2", "/b")
    });
    let mut other = open();
    assert_eq!(
        read(&mut other, |t| t.import_marks("/a")),
        vec![
            (None, "order".to_string(), "x".to_string()),
            (None, "profile".to_string(), "x:1".to_string()),
            (
                Some("cron".to_string()),
                "profile".to_string(),
                "x:1".to_string()
            ),
        ]
    );
    write(&mut st, |t| t.set_import_mark(None, "profile", "x:1", "/b"));
    assert!(write(&mut st, |t| t.delete_import_mark(None, "order", "x")));
    assert!(!write(&mut st, |t| t.delete_import_mark(None, "order", "x")));
    assert_eq!(
        read(&mut other, |t| t.import_marks("/a")),
        vec![(
            Some("cron".to_string()),
            "profile".to_string(),
            "x:1".to_string()
        )]
    );
    assert_eq!(read(&mut other, |t| t.import_marks("/b")).len(), 2);
}
