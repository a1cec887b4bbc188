//! OAuth refresh (protocol §5.2) against the real binary and a token endpoint run by the
//! test on 127.0.0.1: single flight across processes and requests, rotation, revoke on
//! reuse, invalid_grant, 5xx, `auth.refresh`, `check --refresh`, providers.*.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{now_ms, Env};
use serde_json::{json, Value};

/// A distinctive suffix of every token the endpoint hands out, to grep for leaks.
const MARK: &str = "xyzzy";

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Rotate the refresh token; a reused one revokes the family (invalid_grant).
    Rotate,
    /// Always 400 invalid_grant.
    InvalidGrant,
    /// Always 500.
    ServerError,
}

struct State {
    mode: Mode,
    latency_ms: u64,
    expires_in: i64,
    calls: usize,
    generation: u32,
    current: String,
    used: HashSet<String>,
    reuses: usize,
    revoked: bool,
    last_form: String,
}

/// A small HTTP/1.1 token endpoint: one thread per connection, `Connection: close`.
struct TokenServer {
    url: String,
    state: Arc<Mutex<State>>,
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = vec![];
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn form_get(form: &str, key: &str) -> Option<String> {
    form.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| url_decode(v))
    })
}

impl TokenServer {
    fn start(mode: Mode, latency_ms: u64, first_refresh: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/oauth/token", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            mode,
            latency_ms,
            expires_in: 3600,
            calls: 0,
            generation: 0,
            current: first_refresh.to_string(),
            used: HashSet::new(),
            reuses: 0,
            revoked: false,
            last_form: String::new(),
        }));
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || handle(conn, &st));
            }
        });
        TokenServer { url, state }
    }

    fn calls(&self) -> usize {
        self.state.lock().unwrap().calls
    }
    fn reuses(&self) -> usize {
        self.state.lock().unwrap().reuses
    }
    fn current(&self) -> String {
        self.state.lock().unwrap().current.clone()
    }
}

fn handle(conn: TcpStream, st: &Mutex<State>) {
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    let form = String::from_utf8(body).unwrap();
    let (status, resp, latency) = {
        let mut s = st.lock().unwrap();
        s.calls += 1;
        s.last_form = form.clone();
        let sent = form_get(&form, "refresh_token").unwrap_or_default();
        let invalid = (400, json!({"error": "invalid_grant"}));
        let (status, v) = match s.mode {
            Mode::InvalidGrant => invalid,
            Mode::ServerError => (500, json!({"error": "server_error"})),
            Mode::Rotate => {
                if s.used.contains(&sent) {
                    s.reuses += 1;
                    s.revoked = true;
                    invalid
                } else if s.revoked || sent != s.current {
                    invalid
                } else {
                    s.generation += 1;
                    let g = s.generation;
                    s.used.insert(sent);
                    s.current = format!("REFRESH-{g}-{MARK}");
                    (
                        200,
                        json!({"access_token": format!("ACCESS-{g}-{MARK}"),
                               "refresh_token": s.current, "token_type": "Bearer",
                               "expires_in": s.expires_in}),
                    )
                }
            }
        };
        (status, v.to_string(), s.latency_ms)
    };
    std::thread::sleep(Duration::from_millis(latency));
    let reason = if status == 200 { "OK" } else { "Error" };
    let mut w = conn;
    let _ = write!(
        w,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{resp}",
        resp.len()
    );
    let _ = w.flush();
}

/// A store with provider `acme` (oauth client at `server`) and oauth profile `acme:work`
/// expiring at `expires`.
fn setup(env: &Env, server: &TokenServer, expires: i64) {
    env.call(
        "providers.put",
        json!({"id": "acme", "aliases": ["acme-cli"],
               "oauth": {"tokenUrl": server.url, "clientId": "client-1"}}),
    )
    .unwrap();
    put_oauth(
        env,
        "acme:work",
        "ACCESS-0-xyzzy",
        "REFRESH-0-xyzzy",
        expires,
    );
}

fn put_oauth(env: &Env, id: &str, access: &str, refresh: &str, expires: i64) {
    env.call(
        "profiles.put",
        json!({"profile": {"id": id, "type": "oauth", "access": access, "refresh": refresh, "expires": expires}}),
    )
    .unwrap();
}

fn stored(env: &Env, id: &str) -> Value {
    env.call("profiles.get", json!({"profileId": id, "reveal": true}))
        .unwrap()["profile"]
        .clone()
}

/// Starts `n` `modelauth call auth.resolve` processes at once; returns their results.
fn resolve_in_processes(env: &Env, n: usize, params: &Value) -> Vec<Result<Value, String>> {
    let children: Vec<_> = (0..n)
        .map(|_| {
            let mut c = env
                .command()
                .args(["call", "auth.resolve", &params.to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            drop(c.stdin.take());
            c
        })
        .collect();
    children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            if out.status.success() {
                Ok(serde_json::from_slice(&out.stdout).unwrap())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        })
        .collect()
}

#[test]
fn eight_processes_at_once_make_exactly_one_refresh() {
    let env = Env::new();
    let server = TokenServer::start(Mode::Rotate, 300, "REFRESH-0-xyzzy");
    setup(&env, &server, now_ms() + 60_000);
    let results = resolve_in_processes(&env, 8, &json!({"provider": "acme"}));
    assert_eq!(server.calls(), 1, "exactly one token-endpoint call");
    for r in &results {
        let r = r.as_ref().expect("every process resolves");
        assert_eq!(r["secret"], "ACCESS-1-xyzzy");
        assert_eq!(r["profileId"], "acme:work");
        assert!(r["expires"].as_i64().unwrap() > now_ms() + 3_000_000);
    }
    let p = stored(&env, "acme:work");
    assert_eq!(p["refresh"], "REFRESH-1-xyzzy");
    assert_eq!(p["access"], "ACCESS-1-xyzzy");
    assert_eq!(server.current(), "REFRESH-1-xyzzy");
    // The grant of RFC 6749 §6 with the provider's client id.
    let form = server.state.lock().unwrap().last_form.clone();
    assert_eq!(
        form_get(&form, "grant_type").as_deref(),
        Some("refresh_token")
    );
    assert_eq!(form_get(&form, "client_id").as_deref(), Some("client-1"));
    assert_eq!(
        form_get(&form, "refresh_token").as_deref(),
        Some("REFRESH-0-xyzzy")
    );
}

#[test]
fn eight_concurrent_requests_make_exactly_one_refresh() {
    // Eight serve processes, each with one request in flight at once.
    let env = Env::new();
    let server = TokenServer::start(Mode::Rotate, 300, "REFRESH-0-xyzzy");
    setup(&env, &server, now_ms() + 60_000);
    let mut servers: Vec<_> = (0..8)
        .map(|_| {
            env.command()
                .arg("serve")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let req = json!({"jsonrpc": "2.0", "id": 1, "method": "auth.resolve", "params": {"provider": "acme-cli"}});
    for s in &mut servers {
        let stdin = s.stdin.as_mut().unwrap();
        writeln!(stdin, "{req}").unwrap();
        stdin.flush().unwrap();
    }
    for mut s in servers {
        drop(s.stdin.take());
        let out = s.wait_with_output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["result"]["secret"], "ACCESS-1-xyzzy", "{v}");
        assert_eq!(v["result"]["provider"], "acme", "aliases normalise");
    }
    assert_eq!(server.calls(), 1);
    assert_eq!(stored(&env, "acme:work")["refresh"], "REFRESH-1-xyzzy");

    // Eight requests in one serve process (a batch, executed in order): one call.
    let env = Env::new();
    let server = TokenServer::start(Mode::Rotate, 300, "REFRESH-0-xyzzy");
    setup(&env, &server, now_ms() + 60_000);
    let batch: Vec<Value> = (1..=8)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "auth.resolve", "params": {"provider": "acme", "profileId": "acme:work"}}))
        .collect();
    let out = env
        .command()
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            writeln!(c.stdin.take().unwrap(), "{}", Value::Array(batch))?;
            c.wait_with_output()
        })
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 8);
    for r in arr {
        assert_eq!(r["result"]["secret"], "ACCESS-1-xyzzy", "{r}");
    }
    assert_eq!(server.calls(), 1);
}

#[test]
fn a_revoke_on_reuse_endpoint_never_sees_a_reuse() {
    let env = Env::new();
    let server = TokenServer::start(Mode::Rotate, 0, "REFRESH-0-xyzzy");
    // Every token it hands out is inside the refresh margin, so every resolve wants a
    // refresh: the race is on in every round.
    server.state.lock().unwrap().expires_in = 60;
    setup(&env, &server, now_ms() + 60_000);
    for round in 0..50 {
        let results = resolve_in_processes(&env, 4, &json!({"provider": "acme"}));
        for r in results {
            let r = r.unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert!(r["secret"].as_str().unwrap().starts_with("ACCESS-"));
        }
    }
    assert_eq!(server.reuses(), 0, "a rotated refresh token was sent twice");
    assert!(server.calls() >= 50);
    assert_eq!(stored(&env, "acme:work")["refresh"], server.current());
}

#[test]
fn invalid_grant_fails_closed_and_needs_reauth() {
    let env = Env::new();
    let server = TokenServer::start(Mode::InvalidGrant, 0, "REFRESH-0-xyzzy");
    // Still valid for a minute: the stale access token must not be handed out anyway.
    setup(&env, &server, now_ms() + 60_000);
    let e = env
        .call(
            "auth.resolve",
            json!({"provider": "acme", "profileId": "acme:work"}),
        )
        .unwrap_err();
    assert_eq!(e["code"], -32040, "{e}");
    assert_eq!(e["data"]["kind"], "refresh_failed");
    assert_eq!(e["data"]["retryable"], false);
    assert_eq!(e["data"]["reason"], "invalid_grant");
    assert!(!e.to_string().contains(MARK));
    let st = env.call("auth.status", json!({})).unwrap();
    let pr = &st["providers"][0]["profiles"][0];
    assert_eq!(pr["status"], "needs_reauth", "{st}");
    assert_eq!(env.check(&[]).status.code(), Some(1));
    // Pinned again: still refresh_failed, and no new call (it is known to be refused).
    let e = env
        .call("auth.resolve", json!({"profileId": "acme:work"}))
        .unwrap_err();
    assert_eq!(e["data"]["kind"], "refresh_failed");
    assert_eq!(server.calls(), 1);
    // Unpinned with another profile: skipped with needs_reauth.
    env.call(
        "profiles.put",
        json!({"profile": {"id": "acme:key", "type": "api_key", "key": "k-1"}}),
    )
    .unwrap();
    let r = env
        .call("auth.resolve", json!({"provider": "acme", "explain": true}))
        .unwrap();
    assert_eq!(r["profileId"], "acme:key");
    assert_eq!(r["fallbackFrom"], "acme:work");
    assert_eq!(r["fallbackReason"], "needs_reauth");
    // A new login (profiles.put) clears it.
    put_oauth(&env, "acme:work", "A2", "R2", now_ms() + 3_600_000);
    let st = env
        .call("auth.status", json!({"provider": "acme"}))
        .unwrap();
    // One hour left: OpenClaw's `models status` calls an oauth within 24 h `expiring`.
    assert_eq!(
        st["providers"][0]["profiles"][0]["status"], "expiring",
        "{st}"
    );
}

#[test]
fn invalid_grant_after_a_sibling_replaced_the_token_uses_the_new_state() {
    let env = Env::new();
    let server = TokenServer::start(Mode::InvalidGrant, 600, "REFRESH-0-xyzzy");
    setup(&env, &server, now_ms() + 60_000);
    let child = env
        .command()
        .args(["call", "auth.resolve", r#"{"profileId":"acme:work"}"#])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // While the refused call is in flight, a new login replaces the credential.
    while server.calls() == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    put_oauth(
        &env,
        "acme:work",
        "NEW-ACCESS",
        "NEW-REFRESH",
        now_ms() + 3_600_000,
    );
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["secret"], "NEW-ACCESS");
    let st = env.call("auth.status", json!({})).unwrap();
    assert_eq!(st["providers"][0]["profiles"][0]["status"], "expiring");
}

#[test]
fn a_500_is_retryable_and_the_valid_old_token_still_resolves() {
    let env = Env::new();
    let server = TokenServer::start(Mode::ServerError, 0, "REFRESH-0-xyzzy");
    setup(&env, &server, now_ms() + 60_000);
    for params in [
        json!({"provider": "acme"}),
        json!({"profileId": "acme:work"}),
    ] {
        let r = env.call("auth.resolve", params).unwrap();
        assert_eq!(r["secret"], "ACCESS-0-xyzzy");
    }
    let e = env
        .call("auth.refresh", json!({"profileId": "acme:work"}))
        .unwrap_err();
    assert_eq!(e["code"], -32040);
    assert_eq!(e["data"]["retryable"], true);
    assert_eq!(e["data"]["status"], 500);
    let p = stored(&env, "acme:work");
    assert_eq!(
        p["refresh"], "REFRESH-0-xyzzy",
        "stored credential untouched"
    );
    assert_eq!(p["access"], "ACCESS-0-xyzzy");
    assert_ne!(p["status"], "needs_reauth");
    // Past expiry the old token is not handed out: a retryable refresh_failed.
    put_oauth(
        &env,
        "acme:work",
        "ACCESS-0-xyzzy",
        "REFRESH-0-xyzzy",
        now_ms() - 1000,
    );
    let e = env
        .call("auth.resolve", json!({"profileId": "acme:work"}))
        .unwrap_err();
    assert_eq!(e["data"]["kind"], "refresh_failed");
    assert_eq!(e["data"]["retryable"], true);
    let e = env
        .call("auth.resolve", json!({"provider": "acme"}))
        .unwrap_err();
    assert_eq!(e["data"]["kind"], "refresh_failed");
}

#[test]
fn a_token_endpoint_that_is_down_is_retryable() {
    let env = Env::new();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    put_oauth(&env, "acme:work", "A", "R", now_ms() + 60_000);
    env.call(
        "providers.put",
        json!({"id": "acme", "oauth": {"tokenUrl": format!("http://127.0.0.1:{port}/t"), "clientId": "c"}}),
    )
    .unwrap();
    let e = env
        .call("auth.refresh", json!({"profileId": "acme:work"}))
        .unwrap_err();
    assert_eq!(e["data"]["reason"], "network");
    assert_eq!(e["data"]["retryable"], true);
}

#[test]
fn auth_refresh_only_inside_the_margin_unless_forced() {
    let env = Env::new();
    let server = TokenServer::start(Mode::Rotate, 0, "REFRESH-0-xyzzy");
    let far = now_ms() + 7_200_000;
    setup(&env, &server, far);
    let r = env
        .call("auth.refresh", json!({"profileId": "acme:work"}))
        .unwrap();
    assert_eq!(r["refreshed"], false);
    assert_eq!(r["expires"], far);
    assert_eq!(server.calls(), 0);
    let r = env
        .call(
            "auth.refresh",
            json!({"profileId": "acme:work", "force": true}),
        )
        .unwrap();
    assert_eq!(r["refreshed"], true);
    assert_eq!(server.calls(), 1);
    assert_eq!(stored(&env, "acme:work")["refresh"], "REFRESH-1-xyzzy");
    let e = env
        .call("auth.refresh", json!({"profileId": "acme:nope"}))
        .unwrap_err();
    assert_eq!(e["data"]["kind"], "unknown_profile");
    env.call(
        "profiles.put",
        json!({"profile": {"id": "acme:key", "type": "api_key", "key": "k"}}),
    )
    .unwrap();
    let e = env
        .call("auth.refresh", json!({"profileId": "acme:key"}))
        .unwrap_err();
    assert_eq!(e["data"]["kind"], "invalid_params");
}

#[test]
fn check_refresh_renews_profiles_inside_the_margin() {
    let env = Env::new();
    let server = TokenServer::start(Mode::Rotate, 0, "REFRESH-0-xyzzy");
    setup(&env, &server, now_ms() + 120_000);
    let far = now_ms() + 3 * 86_400_000;
    // A second profile with its own endpoint, not due.
    env.call(
        "profiles.put",
        json!({"profile": {"id": "acme:other", "type": "oauth", "access": "O", "refresh": "OR",
                           "expires": far, "tokenUrl": server.url, "clientId": "c2"}}),
    )
    .unwrap();
    let out = env.check(&["--refresh"]);
    let text = String::from_utf8_lossy(&out.stdout);
    // The renewed token lasts an hour: `expiring` within 24 h, as OpenClaw's --check (2).
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("refreshed acme:work"), "{text}");
    assert!(!text.contains("refreshed acme:other"));
    assert_eq!(server.calls(), 1);
    let p = stored(&env, "acme:work");
    assert_eq!(p["access"], "ACCESS-1-xyzzy");
    assert!(p["expires"].as_i64().unwrap() > now_ms() + 3_000_000);
    assert_eq!(stored(&env, "acme:other")["expires"], far);
    assert!(!text.contains(MARK));

    // A refused refresh makes check --refresh exit 1.
    server.state.lock().unwrap().mode = Mode::InvalidGrant;
    put_oauth(&env, "acme:work", "A", "R", now_ms() + 60_000);
    let out = env.check(&["--refresh", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let js: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(js["overall"], "expired");
}

#[test]
fn providers_put_get_list_remove_and_aliases() {
    let env = Env::new();
    let r = env
        .call(
            "providers.put",
            json!({"id": "Anthropic", "aliases": ["claude-cli"], "envVars": ["MY_CLAUDE_KEY"],
                   "oauth": {"tokenUrl": "https://auth.example.com/token", "clientId": "cid", "scope": "a b"}}),
        )
        .unwrap();
    assert_eq!(r["created"], true);
    assert_eq!(r["provider"]["id"], "anthropic");
    let g = env
        .call("providers.get", json!({"id": "claude-cli"}))
        .unwrap();
    assert_eq!(g["provider"]["id"], "anthropic");
    assert_eq!(g["provider"]["oauth"]["clientId"], "cid");
    assert_eq!(g["provider"]["envVars"], json!(["MY_CLAUDE_KEY"]));
    // Aliases normalise provider ids in profile ids and params.
    env.call(
        "profiles.put",
        json!({"profile": {"id": "claude-cli:me", "type": "api_key", "key": "k-1"}}),
    )
    .unwrap();
    let r = env
        .call("auth.resolve", json!({"provider": "claude-cli"}))
        .unwrap();
    assert_eq!(r["profileId"], "anthropic:me");
    let l = env.call("providers.list", json!({})).unwrap();
    let registered: Vec<&Value> = l["providers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["builtin"] == false)
        .collect();
    assert_eq!(registered.len(), 1, "{l}");
    assert_eq!(registered[0]["id"], "anthropic");
    // Refused: plain http to a non-loopback host, an alias that is taken.
    let e = env
        .call(
            "providers.put",
            json!({"id": "x", "oauth": {"tokenUrl": "http://auth.example.com/t", "clientId": "c"}}),
        )
        .unwrap_err();
    assert_eq!(e["data"]["kind"], "invalid_params");
    assert_eq!(e["data"]["pointer"], "/oauth/tokenUrl");
    let e = env
        .call(
            "providers.put",
            json!({"id": "y", "aliases": ["claude-cli"]}),
        )
        .unwrap_err();
    assert_eq!(e["data"]["pointer"], "/aliases/0");
    let e = env
        .call("providers.get", json!({"id": "nope"}))
        .unwrap_err();
    assert_eq!(e["code"], -32010);
    assert_eq!(e["data"]["kind"], "unknown_provider");
    let r = env
        .call("providers.remove", json!({"id": "anthropic"}))
        .unwrap();
    assert_eq!(r["removed"], true);
    let e = env
        .call("providers.remove", json!({"id": "anthropic"}))
        .unwrap_err();
    assert_eq!(e["data"]["kind"], "unknown_provider");
}

#[test]
fn tokens_never_reach_logs_or_errors() {
    let env = Env::with_vars(&[("RUST_LOG", "trace")]);
    let server = TokenServer::start(Mode::Rotate, 0, "REFRESH-0-xyzzy");
    setup(&env, &server, now_ms() + 60_000);
    let out = env
        .command()
        .args([
            "call",
            "auth.resolve",
            r#"{"provider":"acme","explain":true}"#,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refresh"), "trace logging is on: {stderr}");
    assert!(!stderr.contains(MARK), "a token in the log: {stderr}");
    // Only auth.resolve's result carries the (access) token; never the refresh token.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ACCESS-1-xyzzy"));
    assert!(!stdout.contains("REFRESH-"));
    for (m, p) in [
        ("auth.status", json!({})),
        ("profiles.list", json!({})),
        ("order.get", json!({"provider": "acme"})),
        (
            "auth.refresh",
            json!({"profileId": "acme:work", "force": true}),
        ),
    ] {
        let out = env
            .command()
            .args(["call", m, &p.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{m}");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.contains(MARK), "{m} leaked: {all}");
    }
}

/// Before: `RUST_LOG=ureq_proto::util=trace` printed the token endpoint's answer.
#[test]
fn module_level_trace_of_http_crates_prints_no_token() {
    for spec in [
        "trace,ureq_proto::util=trace,ureq::unversioned=trace,rustls::client=trace",
        // Issue 20: one colon, or a partial module name, also matched by prefix.
        "ureq_proto:=trace,ureq:=trace,rustls:=trace",
        "ureq_proto:u=trace,ureq::u=trace,ureq_=trace",
    ] {
        module_level_trace_prints_no_token(spec);
    }
}

fn module_level_trace_prints_no_token(spec: &str) {
    let env = Env::with_vars(&[("RUST_LOG", spec)]);
    let server = TokenServer::start(Mode::Rotate, 0, "REFRESH-0-xyzzy");
    setup(&env, &server, now_ms() + 60_000);
    let out = env
        .command()
        .args([
            "call",
            "auth.refresh",
            r#"{"profileId":"acme:work","force":true}"#,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(server.calls(), 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(MARK), "a token in the log: {stderr}");
}

/// Before: `HTTPS_PROXY`/`ALL_PROXY` sent a loopback token call (refresh token and client
/// secret in clear) to the proxy.
#[test]
fn loopback_token_calls_bypass_proxies() {
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let purl = format!("http://{}", proxy.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(0usize));
    let s2 = seen.clone();
    std::thread::spawn(move || {
        for c in proxy.incoming() {
            *s2.lock().unwrap() += 1;
            drop(c);
        }
    });
    let env = Env::with_vars(&[
        ("HTTPS_PROXY", &purl),
        ("HTTP_PROXY", &purl),
        ("ALL_PROXY", &purl),
        ("https_proxy", &purl),
        ("http_proxy", &purl),
        ("all_proxy", &purl),
    ]);
    let server = TokenServer::start(Mode::Rotate, 0, "REFRESH-0-xyzzy");
    setup(&env, &server, now_ms() + 60_000);
    let r = env.call(
        "auth.refresh",
        json!({"profileId": "acme:work", "force": true}),
    );
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(server.calls(), 1);
    assert_eq!(*seen.lock().unwrap(), 0, "the proxy saw the token call");
}

/// Before: the provider's client secret went to a profile's own `tokenUrl`.
#[test]
fn the_client_secret_goes_only_to_the_providers_token_url() {
    let env = Env::with_vars(&[("ACME_CLIENT_SECRET", "client-secret-xyzzy")]);
    let provider_ep = TokenServer::start(Mode::Rotate, 0, "REFRESH-0-xyzzy");
    let profile_ep = TokenServer::start(Mode::Rotate, 0, "REFRESH-0-xyzzy");
    env.call(
        "providers.put",
        json!({"id": "acme", "oauth": {"tokenUrl": provider_ep.url, "clientId": "client-1",
               "clientSecretRef": {"source": "env", "provider": "default", "id": "ACME_CLIENT_SECRET"}}}),
    )
    .unwrap();
    env.call(
        "profiles.put",
        json!({"profile": {"id": "acme:own", "type": "oauth", "access": "ACCESS-0-xyzzy",
               "refresh": "REFRESH-0-xyzzy", "expires": now_ms() + 60_000, "tokenUrl": profile_ep.url}}),
    )
    .unwrap();
    env.call(
        "auth.refresh",
        json!({"profileId": "acme:own", "force": true}),
    )
    .unwrap();
    assert_eq!(profile_ep.calls(), 1);
    let form = profile_ep.state.lock().unwrap().last_form.clone();
    assert_eq!(form_get(&form, "client_id").as_deref(), Some("client-1"));
    assert!(form_get(&form, "client_secret").is_none(), "{form}");
    // The provider's own endpoint still gets it.
    put_oauth(
        &env,
        "acme:work",
        "ACCESS-0-xyzzy",
        "REFRESH-0-xyzzy",
        now_ms() + 60_000,
    );
    env.call(
        "auth.refresh",
        json!({"profileId": "acme:work", "force": true}),
    )
    .unwrap();
    let form = provider_ep.state.lock().unwrap().last_form.clone();
    assert_eq!(
        form_get(&form, "client_secret").as_deref(),
        Some("client-secret-xyzzy")
    );
}

/// Before: `http://127.0.0.1:1@HOST/` passed as loopback.
#[test]
fn token_urls_with_userinfo_are_refused_everywhere() {
    let env = Env::new();
    for u in [
        "http://127.0.0.1:1@evil.example/t",
        "http://[::1]@evil.example/t",
        "http://localhost:x@evil.example/t",
    ] {
        let e = env
            .call(
                "providers.put",
                json!({"id": "acme", "oauth": {"tokenUrl": u, "clientId": "c"}}),
            )
            .unwrap_err();
        assert_eq!(e["data"]["kind"], "invalid_params", "{u}: {e}");
        env.call(
            "profiles.put",
            json!({"profile": {"id": "acme:x", "type": "oauth", "access": "a", "refresh": "r",
                   "expires": now_ms() + 60_000, "tokenUrl": u}}),
        )
        .ok();
        let e = env
            .call(
                "auth.refresh",
                json!({"profileId": "acme:x", "force": true}),
            )
            .unwrap_err();
        let all = e.to_string();
        assert!(
            all.contains("insecure_token_url") || all.contains("invalid_profile"),
            "{u}: {all}"
        );
    }
}

/// Before: the refresh lock was keyed by the store path as typed; processes reaching one
/// store through a symlink both sent the same rotated refresh token and it was revoked.
#[test]
fn processes_reaching_the_store_through_a_symlink_share_one_refresh() {
    if common::skip_on_pg("a symlink to a SQLite store file") {
        return;
    }
    let env = Env::new();
    let server = TokenServer::start(Mode::Rotate, 300, "REFRESH-0-xyzzy");
    setup(&env, &server, now_ms() + 60_000);
    let link_dir = tempfile::tempdir().unwrap();
    let link = link_dir.path().join("linked.db");
    std::os::unix::fs::symlink(env.store(), &link).unwrap();
    let children: Vec<_> = (0..6)
        .map(|i| {
            let mut c = if i % 2 == 1 {
                let mut c = std::process::Command::new(common::BIN);
                c.env_clear()
                    .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                    .env("HOME", env.dir.path())
                    .envs(common::store_env(&link))
                    .arg("--store")
                    .arg(&link);
                c
            } else {
                env.command()
            };
            c.args(["call", "auth.resolve", r#"{"provider":"acme"}"#])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["secret"], "ACCESS-1-xyzzy");
    }
    assert_eq!(server.calls(), 1);
    assert_eq!(server.reuses(), 0);
}

/// Before: the commit of a rotated refresh token was tried 4 times; a store that stayed
/// busy longer lost the token (it existed nowhere else) and the profile needed a new login.
#[test]
fn a_rotated_refresh_token_survives_a_store_that_stays_busy() {
    let env = Env::new();
    let server = TokenServer::start(Mode::Rotate, 0, "REFRESH-0-xyzzy");
    setup(&env, &server, now_ms() + 60_000);
    env.call("settings.set", json!({"settings": {"busyTimeoutMs": 50}}))
        .unwrap();
    // Another process holds the write lock for a while (far longer than 4 busy timeouts).
    let c = rusqlite::Connection::open(env.store()).unwrap();
    c.execute_batch("BEGIN IMMEDIATE").unwrap();
    let child = env
        .command()
        .args([
            "call",
            "auth.refresh",
            r#"{"profileId":"acme:work","force":true}"#,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the token call has happened, then keep the store busy a while longer.
    for _ in 0..3000 {
        if server.calls() > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(server.calls(), 1, "the token call did not happen");
    std::thread::sleep(Duration::from_millis(1500));
    c.execute_batch("COMMIT").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.calls(), 1);
    assert_eq!(stored(&env, "acme:work")["refresh"], server.current());
}
