//! The store behaviour suite (`modelauth::store::conformance`) against every backend this
//! machine can run. A new backend adds one test here with its constructor.
//!
//! PostgreSQL runs when `MODELAUTH_TEST_PG` holds a URL (e.g.
//! `postgres:///modelauth_test?host=/var/run/postgresql`); each check gets a schema of its own.

use std::path::Path;

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

/// Drops the schemas named `<prefix>…` on `url` when dropped (also when a check panics).
struct DropSchemas(String, String);

impl Drop for DropSchemas {
    fn drop(&mut self) {
        let Ok(mut config) = self.0.parse::<postgres::Config>() else {
            return;
        };
        if config.get_hosts().is_empty() {
            config.host("/var/run/postgresql");
        }
        if config.get_user().is_none() {
            config.user(&std::env::var("USER").unwrap_or_else(|_| "root".into()));
        }
        let Ok(mut c) = config.connect(postgres::NoTls) else {
            return;
        };
        let like = format!("{}%", self.1.replace('_', "\\_"));
        let Ok(rows) = c.query_typed(
            "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1",
            &[(&like, postgres::types::Type::TEXT)],
        ) else {
            return;
        };
        for r in rows {
            let name: String = r.get(0);
            if name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"));
            }
        }
    }
}
