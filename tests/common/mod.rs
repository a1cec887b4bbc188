//! Helpers for tests that drive the real `modelauth` binary over stdin/stdout: one-shot
//! `call`s on a [`TempStore`], a long-running [`Server`], and an [`Env`] (a store plus the
//! environment variables a test names, for `serve`, `call` and `check`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};

use serde_json::{json, Value};

/// Path of the binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_modelauth");

/// Path of the binary under test.
pub(crate) fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_modelauth")
}

/// The PostgreSQL URL the suite runs against: `$MODELAUTH_TEST_PG` when set (e.g.
/// `postgres:///modelauth_test?host=/var/run/postgresql`). Without it every store is a
/// SQLite file.
pub(crate) fn pg_url() -> Option<String> {
    std::env::var("MODELAUTH_TEST_PG")
        .ok()
        .filter(|u| !u.is_empty())
}

/// Whether the suite runs on PostgreSQL.
pub(crate) fn on_pg() -> bool {
    pg_url().is_some()
}

/// Skips a test that is about files (modes, paths, corrupt files) when the suite runs on
/// PostgreSQL, with a visible line. Returns true when the caller should return.
pub(crate) fn skip_on_pg(why: &str) -> bool {
    if on_pg() {
        eprintln!("SKIPPED on PostgreSQL (about files): {why}");
        return true;
    }
    false
}

/// Whether this run seals every test store (`MODELAUTH_TEST_STORE_KEY`, issue 22).
pub(crate) fn sealed_run() -> bool {
    std::env::var("MODELAUTH_TEST_STORE_KEY").is_ok_and(|k| !k.trim().is_empty())
}

/// The store key of a sealed run (`MODELAUTH_TEST_STORE_KEY`, issue 22) as the helper's
/// `MODELAUTH_STORE_KEY`, for a test that builds its own environment; empty otherwise.
pub(crate) fn sealed_key_env() -> Vec<(String, String)> {
    std::env::var("MODELAUTH_TEST_STORE_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty())
        .map(|k| vec![("MODELAUTH_STORE_KEY".to_string(), k)])
        .unwrap_or_default()
}

/// Skips (visibly) a test that reads or plants raw plaintext rows, when the run seals
/// every store: there the rows hold envelopes, and a planted plaintext row is ignored by
/// design (`tests/sealed.rs` covers both).
pub(crate) fn skip_when_sealed(why: &str) -> bool {
    if sealed_run() {
        eprintln!("SKIPPED on a sealed store (about raw rows): {why}");
        return true;
    }
    false
}

/// A nonce for this test process, so schemas of different runs on one database never meet.
/// On PostgreSQL, every schema named with it is dropped when the test process exits.
fn run_nonce() -> &'static str {
    static N: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    N.get_or_init(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        if on_pg() {
            // SAFETY: registers a plain extern "C" function; it runs once at exit.
            unsafe {
                libc::atexit(drop_run_schemas);
            }
        }
        format!("{:x}", (t as u64) ^ ((std::process::id() as u64) << 40))
    })
}

/// A client on `MODELAUTH_TEST_PG` for the tests' own bookkeeping.
pub(crate) fn pg_admin() -> Option<postgres::Client> {
    let url = pg_url()?;
    let mut config: postgres::Config = url.parse().ok()?;
    if config.get_hosts().is_empty() {
        config.host("/var/run/postgresql");
    }
    if config.get_user().is_none() {
        config.user(&std::env::var("USER").unwrap_or_else(|_| "root".into()));
    }
    config.connect(postgres::NoTls).ok()
}

/// Drops every schema whose name starts with `prefix` (the tests' own: `t<nonce>_`).
pub(crate) fn drop_schemas_like(prefix: &str) -> usize {
    let Some(mut c) = pg_admin() else { return 0 };
    let like = format!("{}%", prefix.replace('_', "\\_"));
    let Ok(rows) = c.query_typed(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1",
        &[(&like, postgres::types::Type::TEXT)],
    ) else {
        return 0;
    };
    let mut n = 0;
    for r in rows {
        let name: String = r.get(0);
        if name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && c.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                .is_ok()
        {
            n += 1;
        }
    }
    n
}

extern "C" fn drop_run_schemas() {
    if let Some(n) = std::sync::OnceLock::get(&RUN_PREFIX_CELL).cloned() {
        let _ = std::panic::catch_unwind(|| drop_schemas_like(&n));
    }
}

static RUN_PREFIX_CELL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The PostgreSQL schema standing for the store at `store` (one per test store path).
pub(crate) fn pg_schema(store: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    store.hash(&mut h);
    let nonce = run_nonce();
    let _ = RUN_PREFIX_CELL.set(format!("t{nonce}_"));
    format!("t{}_{:016x}", nonce, h.finish())
}

/// The `--store` arguments for a test store: the path, or with `MODELAUTH_TEST_PG` the URL.
pub(crate) fn store_args(store: &Path) -> Vec<std::ffi::OsString> {
    match pg_url() {
        Some(url) => vec!["--store".into(), url.into()],
        None => vec!["--store".into(), store.as_os_str().to_owned()],
    }
}

/// The environment that goes with [`store_args`]: the schema on PostgreSQL, else nothing.
/// The temporary directory a test store lives in (`TempStore` keeps it in `state/`).
fn test_dir(store: &Path) -> &Path {
    let parent = store.parent().unwrap_or(store);
    match parent.file_name() {
        Some(n) if n == "state" => parent.parent().unwrap_or(parent),
        _ => parent,
    }
}

pub(crate) fn store_env(store: &Path) -> Vec<(String, String)> {
    let mut v = match pg_url() {
        Some(_) => vec![
            ("MODELAUTH_PG_SCHEMA".into(), pg_schema(store)),
            // PROTOCOL §11: a shared store runs only helpers under $MODELAUTH_TRUSTED_DIRS;
            // a test's helpers live beside its store (tests/trust.rs checks the refusals).
            (
                "MODELAUTH_TRUSTED_DIRS".into(),
                test_dir(store).display().to_string(),
            ),
        ],
        None => vec![],
    };
    // The whole suite on a sealed store (issue 22): every store gets this store key, so
    // it is sealed from its first secret write.
    if let Some(k) = std::env::var("MODELAUTH_TEST_STORE_KEY")
        .ok()
        .filter(|k| !k.is_empty())
    {
        v.push(("MODELAUTH_STORE_KEY".into(), k));
    }
    v
}

/// `$MODELAUTH_TEST_PG` as a connection config, with libpq's defaults filled in: the
/// socket directory `/var/run/postgresql` when no host is named, `$USER` (else `root`)
/// when no user is.
pub(crate) fn pg_config() -> postgres::Config {
    let url = pg_url().expect("MODELAUTH_TEST_PG");
    let mut config: postgres::Config = url.parse().expect("MODELAUTH_TEST_PG");
    if config.get_hosts().is_empty() {
        config.host("/var/run/postgresql");
    }
    if config.get_user().is_none() {
        config.user(&std::env::var("USER").unwrap_or_else(|_| "root".into()));
    }
    config
}

/// A client on the `$MODELAUTH_TEST_PG` database (the test's own connection, beside the
/// helper's).
pub(crate) fn pg_client() -> postgres::Client {
    pg_config()
        .connect(postgres::NoTls)
        .expect("connect to MODELAUTH_TEST_PG")
}

/// Everything stored in the PostgreSQL schema of a test store, as text (every row of
/// every table), for tests that scan "the store" for secrets. Empty when the schema is
/// missing.
pub(crate) fn pg_store_text(store: &Path) -> String {
    let schema = pg_schema(store);
    let mut c = pg_client();
    let mut out = String::new();
    // Unnamed statements only (query_typed, simple queries): this also works through
    // PgBouncer in transaction mode, where a named prepared statement may land on another
    // server connection.
    let tables = c
        .query_typed(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
            &[(&schema, postgres::types::Type::TEXT)],
        )
        .unwrap();
    for t in tables {
        let name: String = t.get(0);
        for m in c
            .simple_query(&format!("SELECT t::text FROM {schema}.{name} t ORDER BY 1"))
            .unwrap()
        {
            if let postgres::SimpleQueryMessage::Row(r) = m {
                out.push_str(r.get(0).unwrap_or(""));
                out.push('\n');
            }
        }
    }
    out
}

/// Whether the store exists, as `helper.info` reports it (a file, or a PostgreSQL schema).
pub(crate) fn store_exists(store: &Path) -> bool {
    let v = ok(store, "helper.info", json!({}));
    v["store"]["exists"].as_bool().expect("store.exists")
}

/// A temp directory with a store path inside (the store itself is not created).
pub(crate) struct TempStore {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl TempStore {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("store.db");
        TempStore { dir, path }
    }
}

/// A command for the binary with a clean environment and the given store.
pub(crate) fn cmd(store: &Path) -> Command {
    let mut c = Command::new(bin());
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", store.parent().unwrap())
        .args(store_args(store))
        .envs(store_env(store));
    c
}

/// Runs `c call METHOD -` with `params` written to stdin (the way secrets are passed).
pub(crate) fn call_with_stdin(mut c: Command, method: &str, params: &Value) -> Output {
    c.args(["call", method, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            // A call refused before stdin is read (a bad store location, say) closes it:
            // that is its answer, not a harness failure.
            match c
                .stdin
                .take()
                .unwrap()
                .write_all(params.to_string().as_bytes())
            {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e),
                _ => {}
            }
            c.wait_with_output()
        })
        .unwrap()
}

/// Runs `modelauth call METHOD PARAMS` and returns (exit code, stdout JSON or stderr JSON).
pub(crate) fn call(store: &Path, method: &str, params: Value) -> (i32, Value) {
    let out = call_with_stdin(cmd(store), method, &params);
    let code = out.status.code().unwrap_or(-1);
    let text = if code == 0 { &out.stdout } else { &out.stderr };
    let v: Value = serde_json::from_slice(text)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(text)));
    (code, v)
}

/// `call` that must succeed; returns the result.
pub(crate) fn ok(store: &Path, method: &str, params: Value) -> Value {
    let (code, v) = call(store, method, params);
    assert_eq!(code, 0, "{method} failed: {v}");
    v
}

/// `call` that must fail; returns the error object.
pub(crate) fn err(store: &Path, method: &str, params: Value) -> Value {
    let (code, v) = call(store, method, params);
    assert_eq!(code, 1, "{method} should fail: {v}");
    v
}

/// Pipes whole lines into `modelauth serve` and returns its output lines and status.
pub(crate) fn serve_lines(
    store: &Path,
    input: &[u8],
    extra_env: &[(&str, &str)],
) -> (Vec<String>, Output) {
    let mut c = cmd(store);
    for (k, v) in extra_env {
        c.env(k, v);
    }
    let mut child = c
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let lines = String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    (lines, out)
}

/// A running `modelauth serve` for request/response tests.
pub(crate) struct Server {
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    next_id: i64,
}

impl Server {
    pub(crate) fn start(store: &Path) -> Self {
        Self::start_with(cmd(store))
    }

    /// `c serve` with stderr captured (read it with [`Server::finish`]).
    pub(crate) fn start_with(c: Command) -> Self {
        Self::spawn(c, Stdio::piped())
    }

    /// `c serve` with the given stderr.
    pub(crate) fn spawn(mut c: Command, stderr: Stdio) -> Self {
        let mut child = c
            .arg("serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Server {
            child,
            stdin,
            stdout,
            next_id: 1,
        }
    }

    /// Sends one raw line and reads one line back.
    pub(crate) fn raw(&mut self, line: &str) -> Value {
        self.send_raw(line);
        self.read()
    }

    pub(crate) fn send_raw(&mut self, line: &str) {
        let s = self.stdin.as_mut().unwrap();
        s.write_all(line.as_bytes()).unwrap();
        s.write_all(b"\n").unwrap();
        s.flush().unwrap();
    }

    pub(crate) fn read(&mut self) -> Value {
        let mut l = String::new();
        self.stdout.read_line(&mut l).unwrap();
        serde_json::from_str(&l).unwrap_or_else(|_| panic!("not JSON: {l:?}"))
    }

    /// Sends a request and returns the whole response object.
    pub(crate) fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let r = self.raw(
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string(),
        );
        assert_eq!(r["id"], id);
        r
    }

    /// A request that must succeed; returns `result`.
    pub(crate) fn ok(&mut self, method: &str, params: Value) -> Value {
        let r = self.request(method, params);
        assert!(r.get("error").is_none(), "{method}: {r}");
        r["result"].clone()
    }

    /// A request that must fail; returns `error`.
    pub(crate) fn err(&mut self, method: &str, params: Value) -> Value {
        let r = self.request(method, params);
        assert!(r.get("result").is_none(), "{method} should fail: {r}");
        r["error"].clone()
    }

    /// Stores an api_key profile.
    pub(crate) fn put_key(&mut self, id: &str, key: &str) {
        self.ok("profiles.put", json!({"profile": api_key(id, key)}));
    }

    /// Closes stdin and waits for the exit status and the captured stderr.
    pub(crate) fn finish(mut self) -> Output {
        drop(self.stdin.take());
        let mut stderr = Vec::new();
        if let Some(mut e) = self.child.stderr.take() {
            std::io::Read::read_to_end(&mut e, &mut stderr).unwrap();
        }
        let status = self.child.wait().unwrap();
        Output {
            status,
            stdout: Vec::new(),
            stderr,
        }
    }
}

impl Drop for Server {
    /// End of input: the server exits 0; wait for it so no process outlives the test.
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// An api_key profile.
pub(crate) fn api_key(id: &str, key: &str) -> Value {
    json!({"id": id, "type": "api_key", "key": key})
}

/// An oauth profile expiring in an hour.
pub(crate) fn oauth(id: &str, access: &str, refresh: &str) -> Value {
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 3_600_000;
    json!({"id": id, "type": "oauth", "access": access, "refresh": refresh, "expires": expires})
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Sleeps until the wall clock is past `t` (ms since the epoch) plus a margin.
pub(crate) fn sleep_past(t: i64) {
    let wait = t - now_ms() + 50;
    if wait > 0 {
        std::thread::sleep(std::time::Duration::from_millis(wait as u64));
    }
}

/// A temporary store and the environment given to every child.
pub(crate) struct Env {
    pub dir: tempfile::TempDir,
    pub vars: Vec<(String, String)>,
}

impl Env {
    pub(crate) fn new() -> Self {
        Env {
            dir: tempfile::tempdir().unwrap(),
            vars: vec![],
        }
    }

    pub(crate) fn with_vars(vars: &[(&str, &str)]) -> Self {
        let mut e = Env::new();
        e.vars = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        e
    }

    pub(crate) fn store(&self) -> PathBuf {
        self.dir.path().join("store.db")
    }

    pub(crate) fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env_clear();
        if let Ok(p) = std::env::var("PATH") {
            c.env("PATH", p);
        }
        c.env("HOME", self.dir.path());
        if on_pg() {
            // PROTOCOL §11: a shared store runs only helpers under $MODELAUTH_TRUSTED_DIRS;
            // the tests' helpers live in the test directory.
            c.env("MODELAUTH_TRUSTED_DIRS", self.dir.path());
        }
        for (k, v) in &self.vars {
            c.env(k, v);
        }
        c.args(store_args(&self.store()))
            .envs(store_env(&self.store()));
        c
    }

    /// A `modelauth serve` process (stderr inherited, except that the log lines a test
    /// turned on with `RUST_LOG` are dropped unless `MODELAUTH_TEST_LOGS` is set: a plain
    /// `cargo test` prints no log lines).
    pub(crate) fn serve(&self) -> Server {
        let logs_on = self.vars.iter().any(|(k, _)| k == "RUST_LOG");
        let stderr = if logs_on && std::env::var_os("MODELAUTH_TEST_LOGS").is_none() {
            Stdio::null()
        } else {
            Stdio::inherit()
        };
        Server::spawn(self.command(), stderr)
    }

    /// `modelauth call METHOD -` with params on stdin, in a process of its own.
    /// Stores an api_key profile with a one-shot `call profiles.put` (params on stdin).
    pub(crate) fn put_key(&self, id: &str, key: &str) {
        self.call("profiles.put", json!({"profile": api_key(id, key)}))
            .unwrap();
    }

    pub(crate) fn call(&self, method: &str, params: Value) -> Result<Value, Value> {
        let out = call_with_stdin(self.command(), method, &params);
        if out.status.success() {
            Ok(serde_json::from_slice(&out.stdout).unwrap())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            let line = err.lines().last().unwrap_or_default();
            Err(serde_json::from_str(line).unwrap_or_else(|_| json!({"raw": err})))
        }
    }

    /// `modelauth check ARGS`.
    pub(crate) fn check(&self, args: &[&str]) -> Output {
        self.command().arg("check").args(args).output().unwrap()
    }
}

/// Every file under `dir` with its bytes, to prove a source was only read.
pub(crate) fn snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}
