//! A PostgreSQL password with an unencoded `/` or `?` (common in base64 passwords) is never
//! shown: not in `helper.info.store.path`, not in store errors, not in the `--store`
//! refusal (PROTOCOL §2.3: "the location minus any password"), against the real binary.

use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_modelauth");
const PASSWORDS: &[&str] = &["c2VjcmV0/cGFzcw?x=1", "Zm9v/YmFyYmF6", "pw?sslmode=disable"];

/// A port on 127.0.0.1 where nothing listens (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn run(store_env: Option<&str>, args: &[&str]) -> (String, String) {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .args(args);
    if let Some(s) = store_env {
        c.env("MODELAUTH_STORE", s);
    }
    let out = c.output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_password_never_shows_in_info_errors_or_the_refusal() {
    let port = closed_port();
    for pw in PASSWORDS {
        let url = format!("postgres://fleet:{pw}@127.0.0.1:{port}/db?sslmode=disable");
        let (out, err) = run(Some(&url), &["call", "helper.info", "{}"]);
        assert!(!out.contains(pw) && !err.contains(pw), "{out}{err}");
        if let Ok(v) = serde_json::from_str::<Value>(&out) {
            let path = v["store"]["path"].as_str().unwrap();
            assert!(path.starts_with("postgres://fleet@127.0.0.1:"), "{path}");
        }
        let (out, err) = run(
            Some(&url),
            &["call", "auth.resolve", r#"{"provider":"openai"}"#],
        );
        assert!(!out.contains(pw) && !err.contains(pw), "{out}{err}");
        assert!(err.contains("store_unavailable"), "{err}");
        let (out, err) = run(None, &["--store", &url, "call", "helper.info", "{}"]);
        assert!(!out.contains(pw) && !err.contains(pw), "{out}{err}");
        assert!(err.contains("password_in_argv"), "{err}");
        // No piece of the password either (its part after the first `/` or `?`).
        for piece in pw.split(['/', '?']).filter(|p| p.len() >= 4) {
            assert!(!err.contains(piece), "{piece} in {err}");
        }
    }
}
