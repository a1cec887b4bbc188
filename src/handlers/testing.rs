//! Test support for handler unit tests: an [`App`] on a temp-file SQLite store, driven
//! through its typed methods without spawning the binary.

use serde_json::json;

use super::App;

/// An `App` on `store.db` in a fresh temp directory (kept alive by the returned guard).
pub(crate) fn app() -> (tempfile::TempDir, App) {
    let d = tempfile::tempdir().unwrap();
    let app = App::new(d.path().join("store.db"));
    (d, app)
}

/// Typed params from JSON, as the dispatcher would decode them.
pub(crate) fn params<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap()
}

/// Stores an api_key profile `id` with `key` in the shared scope.
pub(crate) fn put(app: &App, id: &str, key: &str) {
    app.profiles_put(params(
        json!({"profile": {"id": id, "type": "api_key", "key": key}}),
    ))
    .unwrap();
}
