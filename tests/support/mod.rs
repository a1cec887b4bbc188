//! Drives the real binary: a long-running `modelauth serve` over pipes, and one-shot
//! `modelauth call` / `modelauth check` processes, all on one temporary store. Every child
//! gets a cleared environment plus the variables a test names.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};

use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_modelauth");

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Sleeps until the wall clock is past `t` (ms since the epoch) plus a margin.
pub fn sleep_past(t: i64) {
    let wait = t - now_ms() + 50;
    if wait > 0 {
        std::thread::sleep(std::time::Duration::from_millis(wait as u64));
    }
}

/// A temporary store and the environment given to every child.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub vars: Vec<(String, String)>,
}

impl Env {
    pub fn new() -> Self {
        Env {
            dir: tempfile::tempdir().unwrap(),
            vars: vec![],
        }
    }

    pub fn with_vars(vars: &[(&str, &str)]) -> Self {
        let mut e = Env::new();
        e.vars = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        e
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store.db")
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env_clear();
        if let Ok(p) = std::env::var("PATH") {
            c.env("PATH", p);
        }
        c.env("HOME", self.dir.path());
        for (k, v) in &self.vars {
            c.env(k, v);
        }
        c.arg("--store").arg(self.store());
        c
    }

    /// A `modelauth serve` process.
    pub fn serve(&self) -> Server {
        let mut child = self
            .command()
            .arg("serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Server {
            child,
            stdin: Some(stdin),
            stdout,
            next_id: 1,
        }
    }

    /// `modelauth call METHOD -` with params on stdin, in a process of its own.
    pub fn call(&self, method: &str, params: Value) -> Result<Value, Value> {
        let mut child = self
            .command()
            .args(["call", method, "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(params.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            Ok(serde_json::from_slice(&out.stdout).unwrap())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            let line = err.lines().last().unwrap_or_default();
            Err(serde_json::from_str(line).unwrap_or_else(|_| json!({"raw": err})))
        }
    }

    /// `modelauth check ARGS`.
    pub fn check(&self, args: &[&str]) -> Output {
        self.command().arg("check").args(args).output().unwrap()
    }
}

/// A running `modelauth serve`.
pub struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    next_id: i64,
}

impl Server {
    /// Sends one request and returns the whole response object.
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{msg}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["id"], id);
        v
    }

    /// The `result`, panicking on an error.
    pub fn ok(&mut self, method: &str, params: Value) -> Value {
        let v = self.request(method, params);
        match v.get("result") {
            Some(r) => r.clone(),
            None => panic!("{method} failed: {}", v["error"]),
        }
    }

    /// The `error`, panicking on a result.
    pub fn err(&mut self, method: &str, params: Value) -> Value {
        let v = self.request(method, params);
        match v.get("error") {
            Some(e) => e.clone(),
            None => panic!("{method} unexpectedly succeeded: {}", v["result"]),
        }
    }

    pub fn put_key(&mut self, id: &str, key: &str) {
        self.ok(
            "profiles.put",
            json!({"profile": {"id": id, "type": "api_key", "key": key}}),
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}
