//! PROTOCOL §11 *(r3)* and §2.3: every PostgreSQL round trip has a deadline, and SIGTERM
//! ends `serve` within a grace period — against fake servers on 127.0.0.1 started by the
//! test: one that accepts and says nothing, and one that completes the startup handshake
//! and then never answers a statement.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_modelauth");

/// A listener that accepts connections and keeps them open without a word; with
/// `handshake`, it first answers the startup as a server with trust authentication
/// (SSLRequest → 'N', AuthenticationOk, ReadyForQuery) and then stays silent.
fn silent_server(handshake: bool) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = vec![];
        for s in l.incoming().flatten() {
            let mut s: TcpStream = s;
            if handshake {
                startup(&mut s);
            }
            held.push(s);
        }
    });
    port
}

fn read_message(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let n = u32::from_be_bytes(len) as usize;
    let mut body = vec![0u8; n - 4];
    s.read_exact(&mut body).unwrap();
    body
}

fn startup(s: &mut TcpStream) {
    let mut m = read_message(s);
    if m.len() == 4 && m[..4] == [0x04, 0xd2, 0x16, 0x2f] {
        // SSLRequest: no TLS here.
        s.write_all(b"N").unwrap();
        m = read_message(s);
    }
    assert_eq!(m[..4], [0, 3, 0, 0], "a protocol 3.0 startup message");
    s.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 0]).unwrap();
    s.write_all(&[b'Z', 0, 0, 0, 5, b'I']).unwrap();
}

fn command(port: u16, query: &str) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .env(
            "MODELAUTH_STORE",
            format!("postgres://fake@127.0.0.1:{port}/fleet{query}"),
        );
    c
}

/// Waits for `child` at most `limit`; kills it and fails past it.
fn wait_bounded(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after {limit:?}: no deadline");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn last_error(stderr: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stderr);
    serde_json::from_str(text.lines().last().unwrap_or_default())
        .unwrap_or_else(|_| panic!("no JSON error on stderr: {text}"))
}

#[test]
fn a_server_that_accepts_and_says_nothing_is_store_unavailable_in_bounded_time() {
    let port = silent_server(false);
    // With the default sslmode (prefer: an SSLRequest goes first) and without TLS.
    for query in ["", "?sslmode=disable"] {
        let mut child = command(port, query)
            .args(["call", "auth.resolve", r#"{"provider":"openai"}"#])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The connect deadline is 5 s; 30 s is far from it and far from "for ever".
        let st = wait_bounded(&mut child, Duration::from_secs(30));
        assert!(!st.success());
        let mut err = vec![];
        child.stderr.take().unwrap().read_to_end(&mut err).unwrap();
        let e = last_error(&err);
        assert_eq!(e["data"]["kind"], "store_unavailable", "{e}");
        assert_eq!(e["data"]["retryable"], true, "{e}");
    }
}

#[test]
fn sigterm_ends_a_serve_stuck_on_a_silent_server_within_the_grace_period() {
    let port = silent_server(true);
    let mut child = command(port, "?sslmode=disable")
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"auth.resolve\",\"params\":{\"provider\":\"openai\"}}\n")
        .unwrap();
    stdin.flush().unwrap();
    // Connected (the handshake completes at once) and now waiting on a statement.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(child.try_wait().unwrap().is_none(), "serve ended early");
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    // Grace 5 s; the statement deadline (40 s) is far past the limit.
    let st = wait_bounded(&mut child, Duration::from_secs(15));
    assert_eq!(st.code(), Some(0));
    drop(stdin);
}
