//! The store behaviour suite (`modelauth::store::conformance`) against every backend this
//! machine can run. A new backend adds one test here with its constructor.

use modelauth::store::{conformance, SqliteStore, Store};

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
