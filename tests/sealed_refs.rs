//! The sealed store (protocol §9) and OpenClaw's `store` SecretRef source (§12) together:
//! the secrets an import brings from OpenClaw's shared secret store are sealed at rest like
//! every other secret field, resolve with the key, and fail closed without it.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::*;
use serde_json::{json, Value};

/// The value OpenClaw's shared secret store holds for `OPENAI_API_KEY` in the fixture (a
/// fake key): agent `main`'s `openai:store` names it with a `store` SecretRef.
const STORE_ENTRY: &str = "sk-store-fake-0001";

/// The literal key of the shared (agent-less) `openai:store` profile in the fixture.
const SHARED_KEY: &str = "sk-placeholder-fake-0000";

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openclaw/store-ref")
}

fn keygen() -> String {
    let out = Command::new(bin())
        .args(["store", "keygen"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn with_key(env: &Env, key: Option<&str>) -> Command {
    let mut c = env.command();
    c.env_remove("MODELAUTH_STORE_KEY");
    if let Some(k) = key {
        c.env("MODELAUTH_STORE_KEY", k);
    }
    c
}

fn parse(out: Output) -> Result<Value, Value> {
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err.lines().last().unwrap_or_default();
        Err(serde_json::from_str(line).unwrap_or_else(|_| json!({"raw": err})))
    }
}

fn call_k(env: &Env, key: Option<&str>, method: &str, params: Value) -> Result<Value, Value> {
    parse(call_with_stdin(with_key(env, key), method, &params))
}

fn store_bytes(env: &Env) -> Vec<u8> {
    if on_pg() {
        return pg_store_text(&env.store()).into_bytes();
    }
    snapshot(env.dir.path()).into_values().flatten().collect()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn store_entries_an_import_brings_are_sealed_at_rest_and_resolve_with_the_key() {
    let env = Env::new();
    let key = keygen();
    let r = call_k(&env, Some(&key), "store.import", json!({"path": fixture()})).unwrap();
    assert_eq!(r["secrets"][0]["id"], "OPENAI_API_KEY", "{r}");
    let info = call_k(&env, Some(&key), "helper.info", json!({})).unwrap();
    assert_eq!(info["store"]["sealed"], true, "{info}");
    let bytes = store_bytes(&env);
    assert!(
        !contains(&bytes, STORE_ENTRY),
        "the store entry is in plaintext at rest"
    );
    assert!(
        !contains(&bytes, SHARED_KEY),
        "the shared profile's key is in plaintext at rest"
    );
    let got = call_k(
        &env,
        Some(&key),
        "auth.resolve",
        json!({"provider": "openai", "agent": "main"}),
    )
    .unwrap();
    assert_eq!(got["secret"], STORE_ENTRY);
    // Without the key: no secret, a kind that says why, and nothing changed.
    let e = call_k(
        &env,
        None,
        "auth.resolve",
        json!({"provider": "openai", "agent": "main"}),
    )
    .unwrap_err();
    assert_eq!(e["data"]["kind"], "store_sealed", "{e}");
    assert!(!e.to_string().contains(STORE_ENTRY));
    // Another key: the entry does not open.
    let e = call_k(
        &env,
        Some(&keygen()),
        "auth.resolve",
        json!({"provider": "openai", "agent": "main"}),
    )
    .unwrap_err();
    assert_eq!(e["data"]["kind"], "store_key_mismatch", "{e}");
    let got = call_k(
        &env,
        Some(&key),
        "auth.resolve",
        json!({"provider": "openai", "agent": "main"}),
    )
    .unwrap();
    assert_eq!(got["secret"], STORE_ENTRY);
}

#[test]
fn seal_and_unseal_cover_the_store_entries() {
    let env = Env::new();
    call_k(&env, None, "store.import", json!({"path": fixture()})).unwrap();
    assert!(
        contains(&store_bytes(&env), STORE_ENTRY),
        "unsealed: plaintext"
    );
    let key = keygen();
    let info = call_k(&env, Some(&key), "helper.info", json!({})).unwrap();
    assert_eq!(info["store"]["sealed"], false);
    parse(
        with_key(&env, Some(&key))
            .args(["store", "seal"])
            .output()
            .unwrap(),
    )
    .unwrap();
    assert!(
        !contains(&store_bytes(&env), STORE_ENTRY) || !on_pg() && sqlite_only_in_freed_pages(&env),
        "store.seal left the store entry in plaintext"
    );
    let got = call_k(
        &env,
        Some(&key),
        "auth.resolve",
        json!({"provider": "openai", "agent": "main"}),
    )
    .unwrap();
    assert_eq!(got["secret"], STORE_ENTRY);
    parse(
        with_key(&env, Some(&key))
            .args(["store", "unseal"])
            .output()
            .unwrap(),
    )
    .unwrap();
    let got = call_k(
        &env,
        None,
        "auth.resolve",
        json!({"provider": "openai", "agent": "main"}),
    )
    .unwrap();
    assert_eq!(got["secret"], STORE_ENTRY);
}

/// SQLite may keep an overwritten row's old bytes in a freed page until it is reused;
/// what counts is that no live row holds the plaintext.
fn sqlite_only_in_freed_pages(env: &Env) -> bool {
    let c = rusqlite::Connection::open(env.store()).unwrap();
    let n: i64 = c
        .query_row(
            "SELECT count(*) FROM named_secrets WHERE value LIKE '%' || ?1 || '%'",
            [STORE_ENTRY],
            |r| r.get(0),
        )
        .unwrap();
    n == 0
}
