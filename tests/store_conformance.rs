//! The store behaviour suite (`modelauth::store::conformance`) against every backend this
//! machine can run. A new backend adds one test here with its constructor.
//!
//! PostgreSQL runs when `MODELAUTH_TEST_PG` holds a URL (e.g.
//! `postgres:///modelauth_test?host=/var/run/postgresql`); each check gets a schema of its own.

use std::path::Path;

#[path = "common/drop_schemas.rs"]
mod drop_schemas;
use drop_schemas::DropSchemas;

use modelauth::store::{conformance, parse_location, PgStore, SqliteStore, Store, StoreLocation};

#[test]
fn sqlite_passes_the_store_conformance_suite() {
    let dirs = std::sync::Mutex::new(Vec::new());
    conformance::run(&|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store.db");
        dirs.lock().unwrap().push(dir);
        Box::new(move || Box::new(SqliteStore::new(path.clone())) as Box<dyn Store>)
    });
}

#[test]
fn postgres_passes_the_store_conformance_suite() {
    let Some(url) = std::env::var("MODELAUTH_TEST_PG")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        eprintln!("SKIPPED: set MODELAUTH_TEST_PG=postgres://… to run the conformance suite on PostgreSQL");
        return;
    };
    let n = std::sync::atomic::AtomicUsize::new(0);
    let run = format!("{:x}", std::process::id());
    // Every schema this test creates is dropped at the end, pass or fail.
    let _cleanup = DropSchemas(url.clone(), format!("conf_{run}_"));
    conformance::run(&|| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let schema = format!("conf_{run}_{i}_{}", modelauth_test_nonce());
        let url = url.clone();
        let env = move |k: &str| match k {
            "MODELAUTH_PG_SCHEMA" => Some(schema.clone()),
            _ => std::env::var(k).ok().filter(|v| !v.is_empty()),
        };
        let loc = match parse_location(Path::new(&url), false, &env).expect("MODELAUTH_TEST_PG") {
            StoreLocation::Postgres(l) => *l,
            StoreLocation::Sqlite(_) => panic!("MODELAUTH_TEST_PG is not a postgres:// URL"),
        };
        Box::new(move || Box::new(PgStore::new(loc.clone())) as Box<dyn Store>)
    });
}

/// A per-run nonce (ms since the epoch, base 36) so repeated runs on one database never
/// share a schema.
fn modelauth_test_nonce() -> String {
    let mut t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let mut s = String::new();
    while t > 0 {
        s.insert(0, char::from_digit((t % 36) as u32, 36).unwrap());
        t /= 36;
    }
    s
}
