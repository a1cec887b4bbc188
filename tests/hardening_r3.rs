//! Issue 20, round 3 (what a hostile server, store or helper can do): PostgreSQL TLS
//! defaults and the cleartext-password guard against fake servers on 127.0.0.1, the
//! store's row-size cap, and what the child of `exec` inherits.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_modelauth");
const PG_PASSWORD: &str = "pg-store-password-r3-1";

fn tls_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

fn read_message<S: Read>(s: &mut S) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let n = (u32::from_be_bytes(len) as usize).checked_sub(4)?;
    let mut body = vec![0u8; n];
    s.read_exact(&mut body).ok()?;
    Some(body)
}

/// After the startup message: asks for a cleartext password, records everything the
/// client sends next, and refuses it (28P01).
fn ask_cleartext<S: Read + Write>(s: &mut S, seen: &Mutex<Vec<u8>>) {
    let Some(m) = read_message(s) else { return };
    assert_eq!(m[..4], [0, 3, 0, 0], "a protocol 3.0 startup message");
    s.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).unwrap();
    s.flush().unwrap();
    let mut buf = [0u8; 4096];
    if let Ok(n) = s.read(&mut buf) {
        seen.lock().unwrap().extend_from_slice(&buf[..n]);
    }
    let body = b"SFATAL\0C28P01\0Mpassword authentication failed\0\0";
    let mut e = vec![b'E'];
    e.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    e.extend_from_slice(body);
    let _ = s.write_all(&e);
    let _ = s.flush();
}

fn server_tls() -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(tls_fixture("server.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(tls_fixture("server.key")).unwrap();
    Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap(),
    )
}

/// An impostor PostgreSQL server on 127.0.0.1 that asks every client for its password in
/// cleartext (with TLS when `tls` and the client asks for it) and records what it gets.
fn impostor(tls: bool) -> (u16, Arc<Mutex<Vec<u8>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut s: TcpStream = s;
            let mut first = [0u8; 8];
            if s.read_exact(&mut first).is_err() {
                continue;
            }
            if first == [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f] {
                if tls {
                    s.write_all(b"S").unwrap();
                    let conn = rustls::ServerConnection::new(server_tls()).unwrap();
                    let mut t = rustls::StreamOwned::new(conn, s);
                    ask_cleartext(&mut t, &seen2);
                    continue;
                }
                s.write_all(b"N").unwrap();
                ask_cleartext(&mut s, &seen2);
            } else {
                // A startup message without SSLRequest: put back what was read.
                let mut chained =
                    std::io::Cursor::new(first.to_vec()).chain(s.try_clone().unwrap());
                let mut both = ReadWrite(&mut chained, &mut s);
                ask_cleartext(&mut both, &seen2);
            }
        }
    });
    (port, seen)
}

/// A reader and a writer as one stream.
struct ReadWrite<'a, R, W>(&'a mut R, &'a mut W);
impl<R: Read, W: Write> Read for ReadWrite<'_, R, W> {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(b)
    }
}
impl<R: Read, W: Write> Write for ReadWrite<'_, R, W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.1.write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.1.flush()
    }
}

fn resolve_against(port: u16, query: &str) -> Value {
    let out = Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .env("PGPASSWORD", PG_PASSWORD)
        .env(
            "MODELAUTH_STORE",
            format!("postgres://fake@127.0.0.1:{port}/fleet{query}"),
        )
        .args(["call", "auth.resolve", r#"{"provider":"openai"}"#])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains(PG_PASSWORD), "{text}");
    serde_json::from_str(text.lines().last().unwrap_or_default())
        .unwrap_or_else(|_| panic!("no JSON error on stderr: {text}"))
}

/// Before: with the default `prefer` (the server declines TLS), with `disable`, and with
/// `require` (TLS, certificate not checked), the password went to the impostor.
#[test]
fn an_impostor_asking_for_a_cleartext_password_never_gets_it() {
    for (tls, query) in [
        (false, ""),
        (false, "?sslmode=prefer"),
        (false, "?sslmode=disable"),
        (true, "?sslmode=require"),
        (true, ""),
    ] {
        let (port, seen) = impostor(tls);
        let e = resolve_against(port, query);
        assert_eq!(e["data"]["kind"], "store_auth", "{query}: {e}");
        assert_eq!(e["data"]["reason"], "cleartext_refused", "{query}: {e}");
        assert_eq!(e["data"]["retryable"], false, "{query}: {e}");
        let got = seen.lock().unwrap().clone();
        assert!(
            !String::from_utf8_lossy(&got).contains(PG_PASSWORD),
            "{query}: the impostor got the password"
        );
    }
}

/// The guard is about unverified channels: a server that proved its certificate
/// (verify-full against the test CA) gets the password it asks for.
#[test]
fn a_verified_server_gets_the_cleartext_password_it_asks_for() {
    let (port, seen) = impostor(true);
    let ca = tls_fixture("ca.pem");
    let e = resolve_against(
        port,
        &format!("?sslmode=verify-full&sslrootcert={}", ca.display()),
    );
    assert_eq!(e["data"]["kind"], "store_auth", "{e}");
    assert_eq!(e["data"]["reason"], "password", "{e}");
    let got = seen.lock().unwrap().clone();
    assert!(String::from_utf8_lossy(&got).contains(PG_PASSWORD));
}

/// verify-ca without its own roots is refused before anything connects (before: it
/// trusted every public CA for any name).
#[test]
fn verify_ca_without_sslrootcert_is_refused() {
    let (port, seen) = impostor(true);
    let e = resolve_against(port, "?sslmode=verify-ca");
    assert_eq!(e["data"]["kind"], "invalid_params", "{e}");
    assert_eq!(e["data"]["reason"], "bad_store_url", "{e}");
    assert!(seen.lock().unwrap().is_empty());
}

/// Before (issue 20): `store.validate` and `store.import` echoed a key pasted as a profile
/// id, a field name, a provider or an order's provider in their pointers and messages
/// (`/profiles/openai:sk-proj-…`), and `auth.candidates`, `order.get`, `order.clear` and
/// `auth.status` echoed a key pasted as the provider.
#[test]
fn secret_looking_values_are_not_echoed_in_results() {
    let env = common::Env::new();
    let src = env.dir.path().join("auth-profiles.json");
    std::fs::write(
        &src,
        json!({"version": 1, "profiles": {
            "openai:sk-proj-LeakAAAA1111bbbb2222": {"type": "api_key", "provider": "openai", "key": "k1"},
            "sk-ant-api03-LeakBBBB": {"type": "api_key", "provider": "anthropic", "key": "k2"},
            "acme:ok": {"type": "api_key", "provider": "ghp_LeakCCCCdddd1234", "key": "k3"},
            "foo:bar": {"type": "token", "provider": "foo", "token": "k4", "sk-live-LeakDDDD": 1}
        }, "order": {"sk-ant-LeakEEEE": ["foo:bar"]}})
        .to_string(),
    )
    .unwrap();
    let path = src.to_str().unwrap();
    let mut answers = vec![];
    answers.push(env.call("store.validate", json!({ "path": path })).unwrap());
    answers.push(
        env.call("store.import", json!({"path": path, "dryRun": true}))
            .unwrap(),
    );
    for m in ["auth.candidates", "order.get", "auth.status", "order.clear"] {
        answers.push(
            env.call(m, json!({"provider": "sk-proj-LeakProvFFFF"}))
                .unwrap(),
        );
    }
    for a in &answers {
        let text = a.to_string().to_ascii_lowercase();
        assert!(!text.contains("leak"), "{a}");
    }
    // What is not a secret is still said: the pointer keeps its place.
    let validate = answers[0].to_string();
    assert!(
        validate.contains("/profiles/openai:[redacted]"),
        "{validate}"
    );
    assert!(validate.contains("acme:ok"), "{validate}");
}

/// Before (issue 20): the child of `exec` inherited the store key (`MODELAUTH_STORE_KEY`)
/// and the key file and command variables, and the passfile.
#[test]
fn the_child_of_exec_does_not_inherit_the_store_keys() {
    let key_out = Command::new(BIN)
        .args(["store", "keygen"])
        .output()
        .unwrap();
    let store_key = String::from_utf8_lossy(&key_out.stdout).trim().to_string();
    assert!(store_key.starts_with("msk1-"), "{store_key}");
    let env = common::Env::with_vars(&[
        ("MODELAUTH_STORE_KEY", &store_key),
        ("PGPASSFILE", "/nonexistent/pgpass-r3"),
        ("KEEP_ME", "yes"),
    ]);
    env.call(
        "profiles.put",
        json!({"profile": common::api_key("openai:a", "sk-child-r3-1")}),
    )
    .unwrap();
    let out = env
        .command()
        .args(["exec", "--provider", "openai", "--", "env"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("OPENAI_API_KEY=sk-child-r3-1"), "{text}");
    assert!(text.contains("KEEP_ME=yes"), "{text}");
    assert!(!text.contains(&store_key), "the child got the store key");
    assert!(!text.contains("MODELAUTH_STORE_KEY"), "{text}");
    assert!(!text.contains("pgpass-r3"), "{text}");
}

/// Before (issue 20): nothing capped a stored value. A 9 MiB profile planted in the
/// store was read whole by every resolve of its provider (one 400 MB row cost 1.2 GB per
/// resolve); now it is `store_corrupt` with `reason: "row_too_large"` and never read,
/// and other providers resolve as before.
#[test]
fn an_oversized_stored_row_is_never_read_whole() {
    if common::skip_when_sealed("plants a plaintext row") {
        return;
    }
    let env = common::Env::new();
    for (id, key) in [
        ("openai:big", "sk-small-r3-1"),
        ("anthropic:a", "sk-ant-r3-2"),
    ] {
        env.call("profiles.put", json!({"profile": common::api_key(id, key)}))
            .unwrap();
    }
    let big = "A".repeat(9 << 20);
    let sql = "UPDATE {t} SET body = replace(body, 'sk-small-r3-1', $1) WHERE id = 'openai:big'";
    if common::on_pg() {
        let schema = common::pg_schema(&env.store());
        let mut c = common::pg_client();
        let n = c
            .execute(
                &sql.replace("{t}", &format!("\"{schema}\".profiles")),
                &[&big],
            )
            .unwrap();
        assert_eq!(n, 1);
    } else {
        let c = rusqlite::Connection::open(env.store()).unwrap();
        let n = c
            .execute(&sql.replace("{t}", "profiles").replace("$1", "?1"), [&big])
            .unwrap();
        assert_eq!(n, 1);
    }
    let e = env
        .call("auth.resolve", json!({"provider": "openai"}))
        .unwrap_err();
    assert_eq!(e["data"]["kind"], "store_corrupt", "{e}");
    assert_eq!(e["data"]["reason"], "row_too_large", "{e}");
    let ok = env
        .call("auth.resolve", json!({"provider": "anthropic"}))
        .unwrap();
    assert_eq!(ok["secret"], "sk-ant-r3-2");
}

/// Before (issue 20): an import source could store a value of any size (a 64 MiB JSON
/// source, a 16 MiB SQLite value). A value over the cap is refused and nothing is written.
#[test]
fn a_value_over_the_row_cap_is_never_written() {
    let env = common::Env::new();
    let src = env.dir.path().join("huge.json");
    let huge = "B".repeat(9 << 20);
    std::fs::write(
        &src,
        json!({"version": 1, "profiles": {
            "openai:huge": {"type": "api_key", "provider": "openai", "key": huge},
            "openai:small": {"type": "api_key", "provider": "openai", "key": "sk-small-r3-3"}
        }})
        .to_string(),
    )
    .unwrap();
    let e = env
        .call("store.import", json!({"path": src.to_str().unwrap()}))
        .unwrap_err();
    assert_eq!(e["data"]["kind"], "invalid_params", "{e}");
    assert_eq!(e["data"]["reason"], "row_too_large", "{e}");
    assert!(
        e.to_string().len() < 4096,
        "the error does not carry the value"
    );
    let list = env.call("profiles.list", json!({})).unwrap();
    assert_eq!(list["profiles"], json!([]), "{list}");
}

/// `channel_binding=require` (rust-postgres) refuses a server that authenticates without
/// SCRAM channel binding — here one that lets anyone in (trust). Before: reported as
/// `store_unavailable`, retryable, as if the server were down; now `store_auth`.
#[test]
fn channel_binding_require_refuses_a_server_that_skips_it() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut s: TcpStream = s;
            let Some(m) = read_message(&mut s) else {
                continue;
            };
            assert_eq!(m[..4], [0, 3, 0, 0], "no SSLRequest with sslmode=disable");
            let _ = s.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 0]);
            let _ = s.write_all(&[b'Z', 0, 0, 0, 5, b'I']);
        }
    });
    let e = resolve_against(port, "?sslmode=disable&channel_binding=require");
    assert_eq!(e["data"]["kind"], "store_auth", "{e}");
    assert_eq!(e["data"]["reason"], "channel_binding", "{e}");
    assert_eq!(e["data"]["retryable"], false, "{e}");
}
