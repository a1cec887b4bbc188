//! The store behaviour suite (`modelauth::store::conformance`) on a **sealed** store
//! (issue 22): each backend wrapped in the sealing decorator
//! (`modelauth::store::sealed::SealedStore`) with a store key, as `store::open` does when
//! a key is configured. Every secret the suite writes is stored sealed; the suite must
//! not notice.
//!
//! PostgreSQL runs when `MODELAUTH_TEST_PG` holds a URL; each check gets a schema of its own.

use std::path::Path;

#[path = "common/drop_schemas.rs"]
mod drop_schemas;
use drop_schemas::DropSchemas;

use modelauth::seal::envelope::StoreKey;
use modelauth::seal::keys::KeyRing;
use modelauth::store::sealed::SealedStore;
use modelauth::store::{conformance, parse_location, PgStore, SqliteStore, Store, StoreLocation};

fn ring() -> KeyRing {
    KeyRing {
        keys: vec![StoreKey::from_bytes([0x5e; 32])],
    }
}

#[test]
fn sealed_sqlite_passes_the_store_conformance_suite() {
    let dirs = std::sync::Mutex::new(Vec::new());
    conformance::run(&|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store.db");
        dirs.lock().unwrap().push(dir);
        Box::new(move || {
            Box::new(SealedStore::new(
                Box::new(SqliteStore::new(path.clone())),
                Ok(ring()),
            )) as Box<dyn Store>
        })
    });
}

#[test]
fn sealed_postgres_passes_the_store_conformance_suite() {
    let Some(url) = std::env::var("MODELAUTH_TEST_PG")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        eprintln!("SKIPPED: set MODELAUTH_TEST_PG=postgres://… to run the conformance suite on a sealed PostgreSQL store");
        return;
    };
    let n = std::sync::atomic::AtomicUsize::new(0);
    let run = format!(
        "{:x}_{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let _cleanup = DropSchemas(url.clone(), format!("sconf_{run}_"));
    conformance::run(&|| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let schema = format!("sconf_{run}_{i}");
        let url = url.clone();
        let env = move |k: &str| match k {
            "MODELAUTH_PG_SCHEMA" => Some(schema.clone()),
            _ => std::env::var(k).ok().filter(|v| !v.is_empty()),
        };
        let loc = match parse_location(Path::new(&url), false, &env).expect("MODELAUTH_TEST_PG") {
            StoreLocation::Postgres(l) => *l,
            StoreLocation::Sqlite(_) => panic!("MODELAUTH_TEST_PG is not a postgres:// URL"),
        };
        Box::new(move || {
            Box::new(SealedStore::new(
                Box::new(PgStore::new(loc.clone())),
                Ok(ring()),
            )) as Box<dyn Store>
        })
    });
}
