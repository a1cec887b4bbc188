//! A fleet sharing one store (PROTOCOL §2.3 *(r2)*): the PostgreSQL half of the suite.
//!
//! With `MODELAUTH_TEST_PG` set (a URL, e.g. `postgres:///modelauth_test?host=/var/run/postgresql`)
//! the whole end-to-end suite runs on PostgreSQL (tests/common gives every test store a
//! schema of its own); the fleet figures come from there too:
//! - 8 processes × 500 mixed operations: `tests/reliability.rs`
//!   (`eight_processes_of_500_mixed_operations_lose_nothing`);
//! - 8 processes racing for one refresh: `tests/oauth.rs`
//!   (`eight_processes_at_once_make_exactly_one_refresh`).
//!
//! This file adds what only a server can do: the server going away under a running
//! `serve` (through a proxy the test cuts, so other tests keep their server) and, opt-in with
//! `MODELAUTH_TEST_PG_RESTART=1` as root, a real `pg_ctlcluster` stop/start; a helper
//! SIGKILLed while it holds the refresh lock (both backends); a newer schema; and the
//! refusal of a password in `--store` (no server needed).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

#[test]
fn postgres_backend_is_tested_or_skipped_visibly() {
    match pg_url() {
        None => {
            // Straight to the stderr descriptor: libtest captures eprintln!, and this line
            // must show in a plain `cargo test`.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: the PostgreSQL half of the suite (fleet, conformance, every end-to-end test on PostgreSQL); set MODELAUTH_TEST_PG=postgres://… to run it (.ci/run does)"
            );
        }
        Some(_) => {
            let s = TempStore::new();
            let info = ok(&s.path, "helper.info", json!({}));
            assert_eq!(info["store"]["backend"], "postgres", "{info}");
            assert_eq!(info["store"]["exists"], false);
            eprintln!("PostgreSQL backend: the suite runs on MODELAUTH_TEST_PG");
        }
    }
}

#[test]
fn a_password_in_store_is_a_usage_error_and_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .env_clear()
        .env("HOME", dir.path())
        .args([
            "--store",
            "postgres://fleet:hunter2-secret@127.0.0.1:1/db",
            "call",
            "helper.info",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("hunter2"), "{err}");
    let v: Value = serde_json::from_str(err.lines().last().unwrap()).unwrap();
    assert_eq!(v["data"]["reason"], "password_in_argv", "{v}");
    assert!(v["data"]["hint"]
        .as_str()
        .unwrap()
        .contains("MODELAUTH_STORE"));
    // The same URL in the environment is accepted; a server that is not there is
    // store_unavailable (retryable), with the password nowhere.
    let out = Command::new(BIN)
        .env_clear()
        .env("HOME", dir.path())
        .env(
            "MODELAUTH_STORE",
            "postgres://fleet:hunter2-secret@127.0.0.1:1/db?sslmode=disable",
        )
        .args(["call", "auth.resolve", r#"{"provider":"openai"}"#])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("hunter2"), "{err}");
    let v: Value = serde_json::from_str(err.lines().last().unwrap()).unwrap();
    assert_eq!(
        v["error"]["data"]["kind"]
            .as_str()
            .or(v["data"]["kind"].as_str()),
        Some("store_unavailable"),
        "{v}"
    );
}

// ---- A proxy between the helper and the server that the test can cut and restore.

/// Where `MODELAUTH_TEST_PG` connects: a Unix socket path or a TCP address.
enum Upstream {
    Unix(PathBuf),
    Tcp(String),
}

fn upstream(url: &str) -> (Upstream, postgres::Config) {
    let config: postgres::Config = url.parse().expect("MODELAUTH_TEST_PG");
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let up = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => Upstream::Tcp(format!("{h}:{port}")),
        Some(postgres::config::Host::Unix(p)) => Upstream::Unix(p.join(format!(".s.PGSQL.{port}"))),
        None => Upstream::Unix(PathBuf::from(format!(
            "/var/run/postgresql/.s.PGSQL.{port}"
        ))),
    };
    (up, config)
}

struct Proxy {
    dir: tempfile::TempDir,
    down: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<UnixStream>>>,
}

impl Proxy {
    /// Listens on `<dir>/.s.PGSQL.5432` and forwards to the test server.
    fn start(up: Upstream) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join(".s.PGSQL.5432")).unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let live: Arc<Mutex<Vec<UnixStream>>> = Arc::default();
        let up = Arc::new(up);
        let (d, l) = (down.clone(), live.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                if d.load(Ordering::SeqCst) {
                    drop(conn); // refused while "down"
                    continue;
                }
                l.lock().unwrap().push(conn.try_clone().unwrap());
                let up = up.clone();
                std::thread::spawn(move || {
                    let (mut r1, mut w2): (Box<dyn Read + Send>, Box<dyn Write + Send>);
                    let (mut r2, mut w1): (Box<dyn Read + Send>, Box<dyn Write + Send>);
                    match &*up {
                        Upstream::Unix(p) => {
                            let Ok(s) = UnixStream::connect(p) else {
                                return;
                            };
                            r2 = Box::new(s.try_clone().unwrap());
                            w2 = Box::new(s);
                        }
                        Upstream::Tcp(a) => {
                            let Ok(s) = std::net::TcpStream::connect(a) else {
                                return;
                            };
                            r2 = Box::new(s.try_clone().unwrap());
                            w2 = Box::new(s);
                        }
                    }
                    r1 = Box::new(conn.try_clone().unwrap());
                    w1 = Box::new(conn);
                    let t = std::thread::spawn(move || {
                        let _ = std::io::copy(&mut r1, &mut w2);
                    });
                    let _ = std::io::copy(&mut r2, &mut w1);
                    let _ = t.join();
                });
            }
        });
        Proxy { dir, down, live }
    }

    /// The server "goes away": every connection is cut and new ones are refused.
    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for s in self.live.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

/// A `serve` on the test server through `host_dir` (a proxy), schema of its own.
fn serve_via(host_dir: &Path, config: &postgres::Config, schema: &str) -> Server {
    let mut url = format!(
        "postgres:///{}?host={}&user={}",
        config.get_dbname().unwrap_or("postgres"),
        host_dir.display(),
        config
            .get_user()
            .map(str::to_string)
            .unwrap_or_else(|| std::env::var("USER").unwrap_or_else(|_| "root".into()))
    );
    if let Some(p) = config.get_password() {
        url.push_str(&format!("&password={}", String::from_utf8_lossy(p)));
    }
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("HOME", host_dir)
        .env("MODELAUTH_STORE", url)
        .env("MODELAUTH_PG_SCHEMA", schema)
        .envs(sealed_key_env());
    Server::start_with(c)
}

fn kind(e: &Value) -> String {
    e["data"]["kind"].as_str().unwrap_or_default().to_string()
}

#[test]
fn the_server_going_away_mid_stream_is_store_unavailable_then_serve_recovers() {
    let Some(url) = pg_url() else {
        eprintln!("SKIPPED: needs MODELAUTH_TEST_PG");
        return;
    };
    let (up, config) = upstream(&url);
    let proxy = Proxy::start(up);
    let schema = pg_schema(&proxy.dir.path().join("restart"));
    let mut s = serve_via(proxy.dir.path(), &config, &schema);
    let pid = s.child.id();
    s.put_key("openai:a", "sk-before-1");
    assert_eq!(
        s.ok("auth.resolve", json!({"provider": "openai"}))["secret"],
        "sk-before-1"
    );

    proxy.cut();
    let mut unavailable = 0;
    for method in ["auth.resolve", "profiles.list", "profiles.put"] {
        let params = match method {
            "profiles.put" => json!({"profile": api_key("openai:b", "sk-during-2")}),
            "auth.resolve" => json!({"provider": "openai"}),
            _ => json!({}),
        };
        let e = s.err(method, params);
        assert_eq!(kind(&e), "store_unavailable", "{method}: {e}");
        assert_eq!(e["data"]["retryable"], true, "{e}");
        assert!(!e.to_string().contains("sk-before-1"));
        unavailable += 1;
    }

    proxy.restore();
    // The same process reconnects on its own, and answers from the server, not a cache.
    assert_eq!(
        s.ok("auth.resolve", json!({"provider": "openai"}))["secret"],
        "sk-before-1"
    );
    s.put_key("openai:b", "sk-after-3");
    let list = s.ok("profiles.list", json!({}));
    assert_eq!(list["profiles"].as_array().unwrap().len(), 2, "{list}");
    assert_eq!(s.child.id(), pid);
    eprintln!("fleet: {unavailable} requests answered store_unavailable while cut; the same serve (pid {pid}) recovered");
}

#[test]
fn a_real_server_restart_mid_stream_when_allowed() {
    let Some(url) = pg_url() else {
        eprintln!("SKIPPED: needs MODELAUTH_TEST_PG");
        return;
    };
    if std::env::var("MODELAUTH_TEST_PG_RESTART").as_deref() != Ok("1") {
        eprintln!("SKIPPED: set MODELAUTH_TEST_PG_RESTART=1 (as root, alone: it stops the whole cluster) to restart PostgreSQL under a serve");
        return;
    }
    let _ = url;
    let cluster = std::env::var("MODELAUTH_TEST_PG_CLUSTER").unwrap_or_else(|_| "15 main".into());
    let ctl = |action: &str| {
        let mut args: Vec<&str> = cluster.split_whitespace().collect();
        args.push(action);
        let st = Command::new("pg_ctlcluster").args(&args).status().unwrap();
        assert!(st.success(), "pg_ctlcluster {cluster} {action}");
    };
    let store = TempStore::new();
    let mut s = Server::start(&store.path);
    s.put_key("openai:a", "sk-restart-1");
    ctl("stop");
    let e = s.err("auth.resolve", json!({"provider": "openai"}));
    ctl("start");
    assert_eq!(kind(&e), "store_unavailable", "{e}");
    assert_eq!(e["data"]["retryable"], true);
    // Recovery in the same process; the server may take a moment to accept logins.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = s.request("auth.resolve", json!({"provider": "openai"}));
        if r.get("result").is_some() {
            assert_eq!(r["result"]["secret"], "sk-restart-1");
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {r}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---- The refresh lock of a SIGKILLed holder.

/// A token endpoint whose first call hangs until the test lets go; later calls rotate.
struct HangingEndpoint {
    url: String,
    calls: Arc<AtomicUsize>,
}

fn hanging_endpoint() -> HangingEndpoint {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/oauth/token", listener.local_addr().unwrap());
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let n = c.fetch_add(1, Ordering::SeqCst) + 1;
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut len = 0;
                loop {
                    let mut l = String::new();
                    if r.read_line(&mut l).unwrap_or(0) == 0 {
                        return;
                    }
                    if l.trim_end().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = l.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse().unwrap();
                        }
                    }
                }
                let mut body = vec![0; len];
                let _ = r.read_exact(&mut body);
                if n == 1 {
                    // Hold the first caller (who holds the refresh lock) until it is killed.
                    std::thread::sleep(Duration::from_secs(60));
                    return;
                }
                let resp = json!({"access_token": format!("ACCESS-{n}"), "refresh_token": format!("REFRESH-{n}"),
                                  "token_type": "Bearer", "expires_in": 3600})
                .to_string();
                let mut w = conn;
                let _ = write!(
                    w,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{resp}",
                    resp.len()
                );
            });
        }
    });
    HangingEndpoint { url, calls }
}

#[test]
fn a_helper_killed_while_holding_the_refresh_lock_releases_it() {
    let env = Env::new();
    let ep = hanging_endpoint();
    env.call(
        "providers.put",
        json!({"id": "acme", "oauth": {"tokenUrl": ep.url, "clientId": "client-1"}}),
    )
    .unwrap();
    env.call(
        "profiles.put",
        json!({"profile": {"id": "acme:work", "type": "oauth", "access": "ACCESS-0",
                           "refresh": "REFRESH-0", "expires": now_ms() + 3_600_000}}),
    )
    .unwrap();
    let params = json!({"profileId": "acme:work", "force": true}).to_string();
    let mut holder = env
        .command()
        .args(["call", "auth.refresh", &params])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The holder has the lock once its call reached the endpoint.
    let deadline = Instant::now() + Duration::from_secs(20);
    while ep.calls.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the holder never called the endpoint"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    holder.kill().unwrap(); // SIGKILL
    holder.wait().unwrap();
    // Another helper takes the lock (a held one would make it wait 30 s and answer
    // refresh_in_progress) and refreshes with the unchanged stored token.
    let r = env
        .call(
            "auth.refresh",
            json!({"profileId": "acme:work", "force": true}),
        )
        .expect("the lock of a killed holder is released");
    assert_eq!(r["refreshed"], true, "{r}");
    assert_eq!(ep.calls.load(Ordering::SeqCst), 2);
    let p = env
        .call(
            "profiles.get",
            json!({"profileId": "acme:work", "reveal": true}),
        )
        .unwrap();
    assert_eq!(p["profile"]["access"], "ACCESS-2");
}

#[test]
fn a_newer_schema_on_the_server_is_refused_and_left_untouched() {
    let Some(url) = pg_url() else {
        eprintln!("SKIPPED: needs MODELAUTH_TEST_PG");
        return;
    };
    let s = TempStore::new();
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:a", "sk-new-1")}),
    );
    let schema = pg_schema(&s.path);
    let (_, mut config) = upstream(&url);
    if config.get_hosts().is_empty() {
        config.host("/var/run/postgresql");
    }
    if config.get_user().is_none() {
        config.user(&std::env::var("USER").unwrap_or_else(|_| "root".into()));
    }
    let mut c = config.connect(postgres::NoTls).unwrap();
    c.batch_execute(&format!(
        "UPDATE {schema}.meta SET value = 99 WHERE key = 'schema_version'"
    ))
    .unwrap();
    let before = pg_store_text(&s.path);
    for (method, params) in [
        ("auth.resolve", json!({"provider": "openai"})),
        (
            "profiles.put",
            json!({"profile": api_key("openai:b", "sk-new-2")}),
        ),
    ] {
        let e = err(&s.path, method, params);
        assert_eq!(e["data"]["kind"], "store_newer_schema", "{method}: {e}");
    }
    assert_eq!(pg_store_text(&s.path), before, "the store was changed");
}

// ---- Moving a machine's SQLite store into the fleet store.

/// `modelauth --store <sqlite file> call METHOD` (always SQLite, whatever the suite runs on).
fn sqlite_ok(file: &Path, method: &str, params: Value) -> Value {
    let out = call_with_stdin(
        {
            let mut c = Command::new(BIN);
            c.env_clear()
                .env("HOME", file.parent().unwrap())
                .envs(sealed_key_env())
                .arg("--store")
                .arg(file);
            c
        },
        method,
        &params,
    );
    assert!(
        out.status.success(),
        "{method}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn store_import_of_a_modelauth_sqlite_store_copies_everything_in_one_call() {
    let src_dir = tempfile::tempdir().unwrap();
    let src = src_dir.path().join("laptop.db");
    sqlite_ok(
        &src,
        "providers.put",
        json!({"id": "acme", "aliases": ["acme-cli"],
        "oauth": {"tokenUrl": "https://acme.example/token", "clientId": "c1"}}),
    );
    sqlite_ok(
        &src,
        "settings.set",
        json!({"settings": {"cooldowns": {"rateLimitBaseMs": 1234}}}),
    );
    sqlite_ok(
        &src,
        "profiles.put",
        json!({"profile": api_key("openai:a", "sk-move-a")}),
    );
    sqlite_ok(
        &src,
        "profiles.put",
        json!({"profile": api_key("openai:b", "sk-move-b"), "primary": true}),
    );
    sqlite_ok(
        &src,
        "profiles.put",
        json!({"profile": oauth("acme:work", "acc-move-1", "ref-move-1")}),
    );
    sqlite_ok(
        &src,
        "profiles.put",
        json!({"agent": "cron", "profile": api_key("openai:cron", "sk-move-c")}),
    );
    sqlite_ok(
        &src,
        "order.set",
        json!({"agent": "cron", "provider": "openai", "order": ["openai:cron", "openai:a"]}),
    );
    sqlite_ok(
        &src,
        "auth.report",
        json!({"profileId": "openai:a", "outcome": "rate_limit"}),
    );
    let export = |f: &dyn Fn(&str, Value) -> Value, agent: Option<&str>| {
        f("store.export", json!({"agent": agent, "reveal": true}))["document"].clone()
    };
    let from_src = |m: &str, p: Value| sqlite_ok(&src, m, p);
    let want_shared = export(&from_src, None);
    let want_cron = export(&from_src, Some("cron"));
    let want_settings = from_src("settings.get", json!({}));
    let want_providers = from_src("providers.list", json!({}));
    let before = common::snapshot(src_dir.path());

    let s = TempStore::new();
    let dry = ok(
        &s.path,
        "store.import",
        json!({"path": src, "dryRun": true}),
    );
    assert_eq!(dry["format"], "modelauth-store");
    assert!(!store_exists(&s.path), "a dry run created the store");
    // Providers and settings come only with includeSettings (protocol §11 r3).
    let r = ok(
        &s.path,
        "store.import",
        json!({"path": src, "includeSettings": true}),
    );
    assert_eq!(r["format"], "modelauth-store", "{r}");
    assert_eq!(r["profiles"].as_array().unwrap().len(), 4, "{r}");
    assert!(
        r["profiles"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["action"] == "created"),
        "{r}"
    );

    let from_dst = |m: &str, p: Value| ok(&s.path, m, p);
    assert_eq!(export(&from_dst, None), want_shared);
    assert_eq!(export(&from_dst, Some("cron")), want_cron);
    assert_eq!(from_dst("settings.get", json!({})), want_settings);
    assert_eq!(from_dst("providers.list", json!({})), want_providers);
    let u = from_dst("profiles.get", json!({"profileId": "openai:a"}));
    assert_eq!(u["profile"]["usage"]["cooldownReason"], "rate_limit", "{u}");
    // Again: nothing changes.
    let again = ok(
        &s.path,
        "store.import",
        json!({"path": src, "includeSettings": true}),
    );
    assert!(
        again["profiles"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["action"] == "unchanged"),
        "{again}"
    );
    // The source was only read: same files, same bytes.
    assert_eq!(common::snapshot(src_dir.path()), before);
    eprintln!(
        "fleet: store.import modelauth-store copied 4 profiles in 2 scopes, orders, lastGood, usage, providers and settings (backend: {})",
        if on_pg() { "postgres" } else { "sqlite" }
    );
}

/// The advisory lock key modelauth's writers take (`src/store/postgres/locks.rs` `lock_key`).
/// The store's write-lock key: it includes the store's random salt (`meta.lock_salt`,
/// issue 20), which only a role that may read the schema knows.
fn write_lock_key(c: &mut postgres::Client, schema: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let salt: i64 = c
        .query_one(
            &format!("SELECT value FROM {schema}.meta WHERE key = 'lock_salt'"),
            &[],
        )
        .unwrap()
        .get(0);
    let salt = salt.to_string();
    let mut h = Sha256::new();
    h.update(b"modelauth");
    for p in ["write", schema, salt.as_str()] {
        h.update([0u8]);
        h.update(p.as_bytes());
    }
    i64::from_be_bytes(h.finalize()[..8].try_into().unwrap())
}

#[test]
fn a_writer_held_past_busy_timeout_is_store_busy_and_nothing_changes() {
    let Some(url) = pg_url() else {
        eprintln!("SKIPPED: needs MODELAUTH_TEST_PG");
        return;
    };
    let s = TempStore::new();
    let mut srv = Server::start(&s.path);
    srv.ok("settings.set", json!({"settings": {"busyTimeoutMs": 300}}));
    srv.put_key("openai:a", "sk-busy-1");
    let (_, mut config) = upstream(&url);
    if config.get_hosts().is_empty() {
        config.host("/var/run/postgresql");
    }
    if config.get_user().is_none() {
        config.user(&std::env::var("USER").unwrap_or_else(|_| "root".into()));
    }
    // Another writer (this test) holds the store's write lock in an open transaction.
    let mut other = config.connect(postgres::NoTls).unwrap();
    // The unsalted key (computable by any role that may connect) blocks nothing.
    {
        use sha2::{Digest, Sha256};
        let schema = pg_schema(&s.path);
        let mut h = Sha256::new();
        h.update(b"modelauth");
        for p in ["write", schema.as_str()] {
            h.update([0u8]);
            h.update(p.as_bytes());
        }
        let unsalted = i64::from_be_bytes(h.finalize()[..8].try_into().unwrap());
        let mut third = config.connect(postgres::NoTls).unwrap();
        let mut t3 = third.transaction().unwrap();
        t3.execute("SELECT pg_advisory_xact_lock($1)", &[&unsalted])
            .unwrap();
        srv.put_key("openai:c", "sk-unblocked-3");
        drop(t3);
    }
    let key = write_lock_key(&mut other, &pg_schema(&s.path));
    let mut tx = other.transaction().unwrap();
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&key])
        .unwrap();
    let e = srv.err(
        "profiles.put",
        json!({"profile": api_key("openai:b", "sk-busy-2")}),
    );
    assert_eq!(e["data"]["kind"], "store_busy", "{e}");
    assert_eq!(e["data"]["retryable"], true);
    // Reads do not wait for writers.
    assert_eq!(
        srv.ok("auth.resolve", json!({"provider": "openai"}))["secret"],
        "sk-busy-1"
    );
    tx.rollback().unwrap();
    srv.put_key("openai:b", "sk-busy-2");
    let list = srv.ok("profiles.list", json!({}));
    assert_eq!(list["profiles"].as_array().unwrap().len(), 3);
}

#[test]
fn eight_helpers_creating_the_store_at_once_all_succeed() {
    let s = TempStore::new();
    let children: Vec<_> = (0..8)
        .map(|i| {
            let p = json!({"profile": api_key(&format!("openai:k{i}"), &format!("sk-first-{i}"))});
            let mut c = cmd(&s.path)
                .args(["call", "profiles.put", &p.to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            drop(c.stdin.take());
            c
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let list = ok(&s.path, "profiles.list", json!({}));
    assert_eq!(list["profiles"].as_array().unwrap().len(), 8);
    assert_eq!(
        ok(&s.path, "helper.info", json!({}))["store"]["schemaVersion"],
        if pg_url().is_some() {
            modelauth::store::postgres::PG_SCHEMA_VERSION
        } else {
            modelauth::store::SCHEMA_VERSION
        }
    );
}
