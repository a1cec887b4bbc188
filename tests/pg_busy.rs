//! Issue 20: a stored `busyTimeoutMs: 0` means "do not wait" on PostgreSQL too (it was
//! ignored, and a `lock_timeout` of 0 would mean "wait for ever"). A writer held by
//! another session makes the next write `store_busy` at once. Needs `MODELAUTH_TEST_PG`.

mod common;

use serde_json::json;

fn write_lock_key(c: &mut postgres::Client, schema: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let salt: i64 = c
        .query_one(
            &format!("SELECT value FROM {schema}.meta WHERE key = 'lock_salt'"),
            &[],
        )
        .unwrap()
        .get(0);
    let salt = salt.to_string();
    let mut h = Sha256::new();
    h.update(b"modelauth");
    for p in ["write", schema, salt.as_str()] {
        h.update([0u8]);
        h.update(p.as_bytes());
    }
    i64::from_be_bytes(h.finalize()[..8].try_into().unwrap())
}

#[test]
fn a_stored_busy_timeout_of_zero_does_not_wait() {
    if !common::on_pg() {
        eprintln!("SKIPPED: needs MODELAUTH_TEST_PG");
        return;
    }
    let env = common::Env::new();
    let schema = common::pg_schema(&env.store());
    env.call("settings.set", json!({"settings": {"busyTimeoutMs": 0}}))
        .unwrap();
    env.call(
        "profiles.put",
        json!({"profile": common::api_key("openai:a", "sk-busy0-1")}),
    )
    .unwrap();
    let mut a = common::pg_client();
    let key = write_lock_key(&mut a, &schema);
    let mut tx = a.transaction().unwrap();
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&key])
        .unwrap();
    let t = std::time::Instant::now();
    let e = env
        .call(
            "profiles.put",
            json!({"profile": common::api_key("openai:b", "sk-busy0-2")}),
        )
        .unwrap_err();
    assert_eq!(e["data"]["kind"], "store_busy", "{e}");
    // Before: the stored 0 was ignored and the default 5 s busy timeout applied.
    eprintln!("store_busy after {:?}", t.elapsed());
    assert!(
        t.elapsed() < std::time::Duration::from_secs(4),
        "{:?}",
        t.elapsed()
    );
    tx.rollback().unwrap();
    a.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .unwrap();
}
