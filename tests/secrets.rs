//! Secrets never leak (issue 6): a scripted run of every method at `RUST_LOG=trace`, under
//! umask 022, with the working directory inside the scanned temp dir.
//!
//! - No secret byte in stdout outside `auth.resolve`, `auth.candidates` and `reveal: true`
//!   results, none in stderr, none in any file of the temp dir except the store itself
//!   (`store.db`, `-wal`, `-shm`).
//! - None in the running process's argv (`/proc/<pid>/cmdline`) or environment (except the
//!   variable a `keyRef` deliberately points at), and the process has no children.
//! - The store, its `-wal` and `-shm` are 0600 and its directory 0700 under umask 022.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_modelauth");

const SECRETS: [&str; 11] = [
    "sk-leak-key-0001",
    "tok-leak-0002",
    "acc-leak-0003",
    "ref-leak-0004",
    "sk-near-miss-0005",
    "sk-bad-type-0006",
    "sk-import-0008",
    "sk-replaced-0009",
    "sk-bare-string-0010",
    "sk-looks-like-a-key-0011",
    "sk-call-stdin-0012",
];
/// The value behind an env keyRef: it is in the process environment by the user's choice.
const ENV_SECRET: &str = "sk-env-leak-0007";

fn all_secrets() -> impl Iterator<Item = &'static str> {
    SECRETS.iter().copied().chain([ENV_SECRET])
}

fn script() -> Vec<Value> {
    let far = 4_000_000_000_000i64;
    vec![
        json!({"method": "helper.info"}),
        json!({"method": "rpc.discover"}),
        json!({"method": "profiles.put", "params": {"profile": {"id": "openai:a", "type": "api_key", "key": SECRETS[0]}}}),
        json!({"method": "profiles.put", "params": {"profile": {"id": "openai:a", "type": "api_key", "key": SECRETS[7]}, "expectedRevision": 1}}),
        json!({"method": "profiles.put", "params": {"profile": {"id": "openai:a", "type": "api_key", "key": SECRETS[0]}, "expectedRevision": 1}}),
        json!({"method": "profiles.put", "params": {"profile": {"id": "anthropic:t", "type": "token", "token": SECRETS[1], "expires": far}}}),
        json!({"method": "profiles.put", "params": {"profile": {"id": "openai-codex:o", "type": "oauth", "access": SECRETS[2], "refresh": SECRETS[3], "expires": far}, "primary": true}}),
        json!({"method": "profiles.put", "params": {"profile": {"id": "openai:bad", "type": "api_key", "apiKey": SECRETS[4]}}}),
        json!({"method": "profiles.put", "params": {"profile": {"id": "openai:bad", "type": "bearer", "token": SECRETS[5]}}}),
        json!({"method": "profiles.put", "params": {"profile": {"id": "openai:bad", "type": "api_key", "key": 5, "extra": SECRETS[5]}}}),
        json!({"method": "profiles.put", "params": {"profile": SECRETS[8]}}),
        json!({"method": "profiles.put", "params": {"profile": {"id": "openai:env", "type": "api_key", "keyRef": {"source": "env", "provider": "default", "id": "LEAK_ENV"}}}}),
        json!({"method": "profiles.put", "params": {"profile": {"id": "openai:missing", "type": "api_key", "keyRef": {"source": "env", "provider": "default", "id": "NOT_SET_ANYWHERE"}}}}),
        json!({"method": "profiles.get", "params": {"profileId": "openai:a"}}),
        json!({"method": "profiles.get", "params": {"profileId": "openai:a", "reveal": true}}),
        json!({"method": "profiles.list", "params": {}}),
        json!({"method": "profiles.list", "params": {"agent": SECRETS[9]}}),
        json!({"method": "order.set", "params": {"provider": "openai", "order": ["openai:missing", "openai:env", "openai:a"]}}),
        json!({"method": "order.get", "params": {"provider": "openai"}}),
        json!({"method": "auth.resolve", "params": {"provider": "openai", "explain": true}}),
        json!({"method": "auth.resolve", "params": {"provider": "openai-codex", "agent": "cron"}}),
        json!({"method": "auth.candidates", "params": {"provider": "openai"}}),
        json!({"method": "auth.report", "params": {"profileId": "openai:a", "outcome": "rate_limit", "model": "m"}}),
        json!({"method": "auth.report", "params": {"profileId": "openai:a", "outcome": "success"}}),
        json!({"method": "auth.clearCooldown", "params": {"profileId": "openai:a"}}),
        json!({"method": "auth.status", "params": {}}),
        json!({"method": "settings.get", "params": {}}),
        json!({"method": "settings.set", "params": {"settings": {"busyTimeoutMs": 4000}}}),
        json!({"method": "settings.set", "params": {"settings": {"nope": SECRETS[5]}}}),
        json!({"method": "store.validate", "params": {"document": {"version": 1, "profiles": {"openai:imp": {"type": "api_key", "provider": "openai", "key": SECRETS[6]}}}}}),
        json!({"method": "store.import", "params": {"document": {"version": 1, "profiles": {"openai:imp": {"type": "api_key", "provider": "openai", "key": SECRETS[6]}}}}}),
        json!({"method": "store.import", "params": {"document": {"version": 1, "profiles": {"openai:imp2": {"type": "bearer", "provider": "openai", "token": SECRETS[6]}}}}}),
        json!({"method": "store.export", "params": {}}),
        json!({"method": "store.export", "params": {"reveal": true}}),
        // The sealed store's methods (issue 22); without a store key they answer store_sealed.
        json!({"method": "store.seal", "params": {}}),
        json!({"method": "store.rekey", "params": {}}),
        json!({"method": "store.unseal", "params": {}}),
        json!({"method": "providers.put", "params": {"id": "openai-codex", "aliases": ["codex-cli"], "oauth": {"tokenUrl": "http://127.0.0.1:9/token", "clientId": "client-x"}}}),
        json!({"method": "providers.get", "params": {"id": "openai-codex"}}),
        json!({"method": "providers.list", "params": {}}),
        // The endpoint is closed: a retryable refresh_failed that names no token.
        json!({"method": "auth.refresh", "params": {"profileId": "codex-cli:o", "force": true}}),
        json!({"method": "auth.resolve", "params": {"provider": "codex-cli"}}),
        json!({"method": "providers.remove", "params": {"id": "openai-codex"}}),
        json!({"method": "profiles.remove", "params": {"profileId": "anthropic:t", "dryRun": true}}),
        json!({"method": "profiles.remove", "params": {"profileId": "anthropic:t"}}),
        json!({"method": "order.clear", "params": {"provider": "openai"}}),
        json!({"method": "no.such.method", "params": {"key": SECRETS[0]}}),
    ]
}

/// Results that may carry secrets by design.
fn revealing(req: &Value) -> bool {
    let m = req["method"].as_str().unwrap();
    m == "auth.resolve" || m == "auth.candidates" || req["params"]["reveal"] == true
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Every file under `dir`, recursively.
fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// The state directory is 0700, the store files 0600, refresh-lock directories 0700.
fn assert_store_files_are_private(state: &Path) {
    assert_eq!(mode(state), 0o700);
    let names: BTreeSet<String> = std::fs::read_dir(state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for n in ["store.db", "store.db-wal", "store.db-shm"] {
        assert!(names.contains(n), "{names:?}");
    }
    // Files 0600; directories (the refresh locks) 0700; the same one level down.
    let mut all = vec![];
    files(state, &mut all);
    for p in &all {
        assert_eq!(mode(p), 0o600, "{}", p.display());
        let parent = p.parent().unwrap();
        assert_eq!(mode(parent), 0o700, "{}", parent.display());
    }
    assert!(names.iter().all(|n| {
        let p = state.join(n);
        p.is_dir() || all.contains(&p)
    }));
}

#[test]
fn a_trace_level_run_of_every_method_leaks_no_secret_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("state/store.db");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("umask 022; exec \"$@\"")
        .arg("sh")
        .arg(BIN)
        .args(common::store_args(std::path::Path::new(&store)))
        .arg("serve")
        .env_clear()
        .envs(common::store_env(std::path::Path::new(&store)))
        .env("HOME", dir.path())
        .env("RUST_LOG", "trace")
        .env("LEAK_ENV", ENV_SECRET)
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    // stderr is drained on a thread so that trace logging can never block the server.
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stderr_thread = std::thread::spawn(move || {
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut stderr_pipe, &mut s).unwrap();
        s
    });
    let reqs = script();
    let mut lines = vec![];
    for (i, r) in reqs.iter().enumerate() {
        let mut r = r.clone();
        r["jsonrpc"] = json!("2.0");
        r["id"] = json!(i);
        writeln!(stdin, "{r}").unwrap();
        stdin.flush().unwrap();
        let mut l = String::new();
        stdout.read_line(&mut l).unwrap();
        lines.push(l);
    }

    // While it runs: argv, environment, children, file modes.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline);
    assert!(cmdline.contains("serve"), "{cmdline}");
    for s in all_secrets() {
        assert!(!cmdline.contains(s), "{s} in argv");
    }
    let environ = String::from_utf8_lossy(&environ);
    for s in SECRETS {
        assert!(!environ.contains(s), "{s} in the environment");
    }
    let mut children = String::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let p = t.unwrap().path().join("children");
        children.push_str(&std::fs::read_to_string(p).unwrap_or_default());
    }
    assert_eq!(children.trim(), "", "modelauth started child processes");
    let state = store.parent().unwrap();
    if common::on_pg() {
        eprintln!("SKIPPED on PostgreSQL (about files): store file modes");
    } else {
        assert_store_files_are_private(state);
    }

    drop(stdin);
    assert!(child.wait().unwrap().success());
    let stderr = String::from_utf8_lossy(&stderr_thread.join().unwrap()).into_owned();
    assert!(
        stderr.contains("TRACE") || stderr.contains("DEBUG"),
        "trace logging is on"
    );

    // Every method was exercised.
    let info: Value = serde_json::from_str(&lines[0]).unwrap();
    let covered: BTreeSet<&str> = reqs.iter().map(|r| r["method"].as_str().unwrap()).collect();
    for m in info["result"]["methods"].as_array().unwrap() {
        assert!(covered.contains(m.as_str().unwrap()), "{m} not covered");
    }

    // stdout: secrets only in revealing results.
    for (i, l) in lines.iter().enumerate() {
        if !revealing(&reqs[i]) {
            // A secret-looking *agent id* is the caller's own choice of id and is echoed
            // as `agent` by design; it must still never reach stderr (checked below).
            for s in all_secrets().filter(|s| *s != SECRETS[9]) {
                assert!(!l.contains(s), "{s} in the answer to {}: {l}", reqs[i]);
            }
        }
    }
    // The revealing paths did reveal (so the scan above looked at real traffic).
    assert!(lines[19].contains(ENV_SECRET), "{}", lines[19]);
    assert!(lines[14].contains(SECRETS[7]), "{}", lines[14]);
    // stderr: nothing at all.
    for s in all_secrets() {
        assert!(!stderr.contains(s), "{s} in stderr");
    }
    // Files: only the store may hold secrets.
    let mut all = vec![];
    files(dir.path(), &mut all);
    for p in &all {
        let name = p.file_name().unwrap().to_string_lossy();
        if p.parent() == Some(state)
            && ["store.db", "store.db-wal", "store.db-shm"].contains(&name.as_ref())
        {
            continue;
        }
        let bytes = std::fs::read(p).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for s in all_secrets() {
            assert!(!text.contains(s), "{s} in {}", p.display());
        }
    }
    eprintln!(
        "secrets: {} requests over {} methods at trace level; {} bytes of stderr and {} files scanned, no secret outside the store and revealing results",
        reqs.len(),
        covered.len(),
        stderr.len(),
        all.len()
    );
}

#[test]
fn call_and_check_keep_secrets_out_of_argv_logs_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    let run = |args: &[&str], stdin: &str| {
        let mut c = Command::new(BIN)
            .env_clear()
            .env("RUST_LOG", "trace")
            .args(common::store_args(std::path::Path::new(&store)))
            .envs(common::store_env(std::path::Path::new(&store)))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    };
    let secret = SECRETS[10];
    let put = json!({"profile": {"id": "openai:c", "type": "api_key", "key": secret}}).to_string();
    let out = run(&["call", "profiles.put", "-"], &put);
    assert!(out.status.success());
    // A bad profile with the secret: the error on stderr does not echo it.
    let bad = json!({"profile": {"id": "openai:c", "type": "api_key", "key": 5, "apiKey": secret}})
        .to_string();
    let out_bad = run(&["call", "profiles.put", "-"], &bad);
    assert_eq!(out_bad.status.code(), Some(1));
    let out_check = run(&["check"], "");
    let out_json = run(&["check", "--json"], "");
    for o in [&out, &out_bad, &out_check, &out_json] {
        assert!(!String::from_utf8_lossy(&o.stdout).contains(secret));
        assert!(!String::from_utf8_lossy(&o.stderr).contains(secret));
    }
}
