//! Issue 20, round 3 (what a hostile server, store or helper can do): PostgreSQL TLS
//! defaults and the cleartext-password guard against fake servers on 127.0.0.1, the
//! store's row-size cap, and what the child of `exec` inherits.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

use serde_json::Value;

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
