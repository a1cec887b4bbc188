//! The commands for people (PROTOCOL §10 r3), driven through the real binary: `add`,
//! `list`, `rm`, `order`, `report`, `where`; errors for a person at a terminal (a pty made
//! by script(1)) and as JSON when piped; the store named in every error and empty answer;
//! `--create-dirs`; did-you-mean; the `exec` tip; `check` beside a broken ref.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_modelauth");

/// A clean environment with HOME in a temp dir; the store is a SQLite file named by
/// `--store` (these tests are about the command line, not the backend).
struct T {
    dir: tempfile::TempDir,
}

impl T {
    fn new() -> Self {
        T {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn store(&self) -> PathBuf {
        self.dir.path().join("state").join("store.db")
    }
    fn bare(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .current_dir(self.dir.path());
        c
    }
    fn cmd(&self) -> Command {
        let mut c = self.bare();
        c.arg("--store").arg(self.store());
        c
    }
    fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        run(self.cmd().args(args), stdin)
    }
    fn ok(&self, args: &[&str], stdin: &[u8]) -> String {
        let o = self.run(args, stdin);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args, b"")).unwrap()
    }
    /// A failing command: exit 1 and the JSON error object on stderr (piped).
    fn fail(&self, args: &[&str], stdin: &[u8]) -> Value {
        let o = self.run(args, stdin);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        serde_json::from_slice(&o.stderr)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&o.stderr)))
    }
    fn get(&self, profile: &str) -> String {
        let provider = profile.split(':').next().unwrap();
        let out = self.ok(&["get", provider, "--profile", profile], b"");
        out.strip_suffix('\n').unwrap().to_string()
    }
}

fn run(c: &mut Command, stdin: &[u8]) -> Output {
    let mut ch = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The verb may refuse (and exit) before it reads stdin: a closed pipe is no error here.
    let _ = ch.stdin.take().unwrap().write_all(stdin);
    ch.wait_with_output().unwrap()
}

/// Runs `sh -c CMD` under script(1), so stdin, stdout and stderr are a terminal.
/// Returns (exit code, everything the terminal showed, `\r\n` → `\n`).
fn at_terminal(t: &T, shell: &str, envs: &[(&str, &str)]) -> Option<(i32, String)> {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIPPED: script(1) is not installed");
        return None;
    }
    let o = {
        let mut c2 = Command::new("script");
        c2.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", t.dir.path())
            .env("MODELAUTH", BIN)
            .env("TERM", "xterm")
            .current_dir(t.dir.path());
        for (k, v) in envs {
            c2.env(k, v);
        }
        c2.args(["-qec", shell, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    Some((
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).replace("\r\n", "\n"),
    ))
}

#[test]
fn add_stores_secrets_with_quotes_backslashes_and_non_ascii_exactly() {
    let t = T::new();
    let secrets = [
        ("openai:quote", "sk-a\"b\"c-0001"),
        ("openai:backslash", "sk-a\\b\\\\c-0002"),
        ("openai:unicode", "clé-ünï-密钥-🔑-0003"),
        ("openai:both", "\"\\\"{}'$`-0004"),
    ];
    for (id, s) in secrets {
        let out = t.ok(&["add", id], format!("{s}\n").as_bytes());
        assert!(out.starts_with(&format!("stored {id} (api_key")), "{out}");
        assert!(!out.contains(s), "the secret is echoed: {out}");
        assert_eq!(t.get(id), s);
    }
    // Without a trailing newline and with \r\n, the same.
    t.ok(&["add", "openai:nonl"], b"sk-nonewline-0005");
    assert_eq!(t.get("openai:nonl"), "sk-nonewline-0005");
    t.ok(&["add", "openai:crlf"], b"sk-crlf-0006\r\n");
    assert_eq!(t.get("openai:crlf"), "sk-crlf-0006");
    // From a variable and from a file.
    let mut c = t.cmd();
    c.env("MY_KEY", "sk-from-env-\"0007\"")
        .args(["add", "groq", "--from-env", "MY_KEY"]);
    assert!(run(&mut c, b"").status.success());
    assert_eq!(t.get("groq:default"), "sk-from-env-\"0007\"");
    let f = t.dir.path().join("key.txt");
    std::fs::write(&f, "tok-ü-\\-0008\n").unwrap();
    t.ok(
        &[
            "add",
            "anthropic:file",
            "--type",
            "token",
            "--from-file",
            f.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(t.get("anthropic:file"), "tok-ü-\\-0008");
    // The list never shows a secret.
    let list = t.ok(&["list"], b"");
    for (_, s) in secrets {
        assert!(!list.contains(s), "{list}");
    }
}

#[test]
fn a_second_line_or_an_embedded_newline_is_refused_and_nothing_is_stored() {
    let t = T::new();
    t.ok(&["add", "openai:keep"], b"sk-keep-0001\n");
    for input in [
        &b"sk-line-one\nsk-line-two\n"[..],
        b"sk-one\n\n",
        b"sk-a\rb",
        b"",
        b"\n",
    ] {
        let e = t.fail(&["add", "openai:keep"], input);
        assert_eq!(e["data"]["kind"], "invalid_params", "{e}");
        let s = e.to_string();
        assert!(!s.contains("sk-line") && !s.contains("sk-one"), "{s}");
    }
    let e = t.fail(&["add", "openai:x"], b"a\nb\n");
    assert_eq!(e["data"]["reason"], "multiline_secret");
    // From a variable too.
    let mut c = t.cmd();
    c.env("K", "sk-a\nsk-b")
        .args(["add", "openai:keep", "--from-env", "K"]);
    let o = run(&mut c, b"");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(t.get("openai:keep"), "sk-keep-0001");
    let list: Value = t.json(&["list", "--json"]);
    assert_eq!(list["profiles"].as_array().unwrap().len(), 1, "{list}");
}

#[test]
fn the_secret_is_never_taken_from_argv() {
    let t = T::new();
    // No positional secret exists: an extra argument is a usage error (64).
    let o = t.run(&["add", "openai", "sk-in-argv-0001"], b"sk-x\n");
    assert_eq!(o.status.code(), Some(64));
    assert!(!t.store().exists());
}

#[test]
fn add_stores_a_secret_ref_instead_of_a_secret() {
    let t = T::new();
    let r = t.json(&["add", "openai:env", "--ref", "env:MY_OPENAI_KEY", "--json"]);
    assert_eq!(r["profileId"], "openai:env");
    assert_eq!(r["created"], true);
    let v = t.json(&["list", "--json"]);
    assert_eq!(
        v["profiles"][0]["keyRef"],
        json!({"source": "env", "provider": "default", "id": "MY_OPENAI_KEY"})
    );
    let mut c = t.cmd();
    c.env("MY_OPENAI_KEY", "sk-resolved-0001")
        .args(["get", "openai"]);
    let o = run(&mut c, b"");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "sk-resolved-0001\n");
    let e = t.fail(&["add", "openai:x", "--ref", "vault:thing"], b"");
    assert_eq!(e["data"]["kind"], "invalid_params");
    // A token with an expiry.
    let r = t.json(&[
        "add",
        "anthropic:t",
        "--type",
        "token",
        "--ref",
        "exec:vault#anthropic",
        "--expires",
        "2030-01-01",
        "--json",
    ]);
    assert_eq!(r["profileId"], "anthropic:t");
    let v = t.json(&["list", "anthropic", "--json"]);
    assert_eq!(v["profiles"][0]["expires"], 1_893_456_000_000i64);
    assert_eq!(v["profiles"][0]["tokenRef"]["source"], "exec");
}

#[test]
fn each_verb_json_is_its_methods_result() {
    let t = T::new();
    let put: Value =
        serde_json::from_str(&t.ok(&["add", "openai:a", "--json"], b"sk-a-0001\n")).unwrap();
    assert_eq!(
        put,
        json!({"agent": null, "created": true, "order": null, "profileId": "openai:a", "revision": 1})
    );
    t.ok(&["add", "openai:b"], b"sk-b-0002\n");
    let list = t.json(&["list", "--json"]);
    let o = t.run(&["call", "profiles.list"], b"");
    let direct: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list, direct);
    let set = t.json(&["order", "openai", "b", "openai:a", "--json"]);
    assert_eq!(set["order"], json!(["openai:b", "openai:a"]));
    let get = t.json(&["order", "openai", "--json"]);
    assert_eq!(get["order"], json!(["openai:b", "openai:a"]));
    assert_eq!(get["source"], "shared");
    let rm = t.json(&["rm", "openai:b", "--json"]);
    assert_eq!(rm["profileId"], "openai:b");
    assert_eq!(rm["removed"], true);
    assert_eq!(rm["orderEntriesRemoved"], json!(["openai"]));
    let clear = t.json(&["order", "openai", "--clear", "--json"]);
    assert_eq!(clear["cleared"], true);
    let clear = t.json(&["order", "openai", "--clear", "--json"]);
    assert_eq!(clear["cleared"], false);
}

#[test]
fn list_shows_ids_types_status_and_order_position_and_rm_removes() {
    let t = T::new();
    t.ok(&["add", "openai:work"], b"sk-work-0001\n");
    t.ok(&["add", "openai:home"], b"sk-home-0002\n");
    t.ok(&["order", "openai", "home", "work"], b"");
    let out = t.ok(&["list"], b"");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("ID"), "{out}");
    let home = lines.iter().find(|l| l.starts_with("openai:home")).unwrap();
    let work = lines.iter().find(|l| l.starts_with("openai:work")).unwrap();
    assert!(
        home.contains("api_key") && home.contains("static"),
        "{home}"
    );
    let col = |l: &str| l.split_whitespace().nth(4).unwrap().to_string();
    assert_eq!(col(home), "1");
    assert_eq!(col(work), "2");
    assert!(
        out.contains(&format!("store: {}", t.store().display())),
        "{out}"
    );
    let out = t.ok(&["rm", "openai:home"], b"");
    assert!(
        out.contains("removed openai:home") && out.contains("order of openai"),
        "{out}"
    );
    let out = t.ok(&["order", "openai"], b"");
    assert!(
        out.contains("order of openai (shared order): openai:work"),
        "{out}"
    );
    let e = t.fail(&["rm", "openai:home"], b"");
    assert_eq!(e["data"]["kind"], "unknown_profile");
}

#[test]
fn empty_answers_name_the_store_and_whether_it_exists() {
    let t = T::new();
    let out = t.ok(&["list"], b"");
    let want = format!(
        "store: {} (sqlite, does not exist; chosen by --store)",
        t.store().display()
    );
    assert!(
        out.starts_with("no profiles in the shared scope\n"),
        "{out}"
    );
    assert!(out.contains(&want), "{out}");
    let out = t.ok(&["order", "openai"], b"");
    assert!(
        out.contains("no profiles of openai") && out.contains(&want),
        "{out}"
    );
    // Reads created nothing.
    assert!(!t.store().exists() && !t.store().parent().unwrap().exists());
}

#[test]
fn report_closes_the_circle_get_opens() {
    let t = T::new();
    t.ok(&["add", "openai:a"], b"sk-a-0001\n");
    t.ok(&["add", "openai:b"], b"sk-b-0002\n");
    t.ok(&["order", "openai", "a", "b"], b"");
    assert_eq!(t.ok(&["get", "openai"], b""), "sk-a-0001\n");
    // No name: the profile the walk picks now (a).
    let before = now_ms();
    let r = t.json(&[
        "report",
        "openai",
        "--status",
        "429",
        "--retry-after",
        "120",
        "--json",
    ]);
    assert_eq!(r["profileId"], "openai:a");
    assert_eq!(r["outcome"], "rate_limit");
    let until = r["usage"]["cooldownUntil"].as_i64().unwrap();
    assert!(until >= before + 120_000, "{r}");
    // The walk moves on.
    assert_eq!(t.ok(&["get", "openai"], b""), "sk-b-0002\n");
    let out = t.ok(&["report", "openai:b", "--status", "401"], b"");
    assert!(
        out.starts_with("reported HTTP 401 for openai:b: auth"),
        "{out}"
    );
    // Nothing usable: a clear error, exit 1.
    let e = t.fail(&["report", "openai", "--status", "429"], b"");
    assert_eq!(e["data"]["kind"], "unavailable", "{e}");
    let e = t.fail(&["report", "nobody", "--status", "429"], b"");
    assert_eq!(e["data"]["kind"], "missing_credential", "{e}");
    // Usage: the status is required and numeric.
    assert_eq!(t.run(&["report", "openai:a"], b"").status.code(), Some(64));
    assert_eq!(
        t.run(&["report", "openai:a", "--status", "soon"], b"")
            .status
            .code(),
        Some(64)
    );
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn where_says_location_backend_existence_and_how_it_was_chosen() {
    let t = T::new();
    // A relative --store is reported absolute.
    let v: Value = serde_json::from_slice(
        &run(
            t.bare().args(["--store", "rel/s.db", "where", "--json"]),
            b"",
        )
        .stdout,
    )
    .unwrap();
    let abs = t.dir.path().join("rel/s.db");
    assert_eq!(v["path"], abs.to_str().unwrap());
    assert_eq!(v["backend"], "sqlite");
    assert_eq!(v["exists"], false);
    assert_eq!(v["chosenBy"], "flag");
    let mut c = t.bare();
    c.env("MODELAUTH_STORE", t.dir.path().join("e.db"))
        .args(["where", "--json"]);
    let v: Value = serde_json::from_slice(&run(&mut c, b"").stdout).unwrap();
    assert_eq!(v["chosenBy"], "MODELAUTH_STORE");
    let mut c = t.bare();
    c.env("XDG_STATE_HOME", t.dir.path().join("xdg"))
        .args(["where", "--json"]);
    let v: Value = serde_json::from_slice(&run(&mut c, b"").stdout).unwrap();
    assert_eq!(v["chosenBy"], "XDG_STATE_HOME");
    assert_eq!(
        v["path"],
        t.dir
            .path()
            .join("xdg/modelauth/store.db")
            .to_str()
            .unwrap()
    );
    let v: Value =
        serde_json::from_slice(&run(t.bare().args(["where", "--json"]), b"").stdout).unwrap();
    assert_eq!(v["chosenBy"], "default");
    assert_eq!(
        v["path"],
        t.dir
            .path()
            .join(".local/state/modelauth/store.db")
            .to_str()
            .unwrap()
    );
    t.ok(&["add", "openai"], b"sk-0001\n");
    let out = t.ok(&["where"], b"");
    assert_eq!(
        out,
        format!(
            "{}\nbackend: sqlite\nexists: yes\nchosen by: --store\n",
            t.store().display()
        )
    );
}

#[test]
fn piped_errors_are_the_json_object_with_the_store_absolute() {
    let t = T::new();
    let o = run(
        t.bare().args(["--store", "typo/store.db", "get", "openai"]),
        b"",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    let e: Value = serde_json::from_slice(&o.stderr).unwrap();
    assert_eq!(e["code"], -32020);
    assert_eq!(e["data"]["kind"], "missing_credential");
    assert_eq!(
        e["data"]["store"],
        json!({"path": t.dir.path().join("typo/store.db").to_str().unwrap(), "backend": "sqlite", "exists": false, "chosenBy": "flag"})
    );
    assert!(
        e["data"]["hint"]
            .as_str()
            .unwrap()
            .contains("modelauth add openai"),
        "{e}"
    );
    // `call` too.
    let o = run(
        t.bare().args([
            "--store",
            "typo/store.db",
            "call",
            "profiles.get",
            r#"{"profileId":"openai:x"}"#,
        ]),
        b"",
    );
    let e: Value = serde_json::from_slice(&o.stderr).unwrap();
    assert_eq!(e["data"]["store"]["exists"], false);
}

#[test]
fn errors_at_a_terminal_are_a_sentence_the_hint_and_the_kind() {
    let t = T::new();
    t.ok(&["add", "openai:work"], b"sk-work-0001\n");
    let store = t.store();
    let Some((code, shown)) = at_terminal(
        &t,
        &format!("\"$MODELAUTH\" --store '{}' get opnai", store.display()),
        &[("NO_COLOR", "1")],
    ) else {
        return;
    };
    assert_eq!(code, 1, "{shown}");
    assert!(
        shown.starts_with("error: No auth profile for provider `opnai` in the shared scope.\n"),
        "{shown}"
    );
    assert!(shown.contains("  hint: did you mean `openai`?"), "{shown}");
    assert!(
        shown.contains("  kind: missing_credential (-32020, not retryable)\n"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!(
            "  store: {} (sqlite, exists; chosen by --store)",
            store.display()
        )),
        "{shown}"
    );
    assert!(!shown.contains('\x1b'), "NO_COLOR: {shown:?}");
    assert!(!shown.contains("{\"code\""), "{shown}");
    // Colour unless NO_COLOR; --json keeps the JSON object even at a terminal.
    let (_, shown) = at_terminal(
        &t,
        &format!("\"$MODELAUTH\" --store '{}' rm openai:wrk", store.display()),
        &[],
    )
    .unwrap();
    assert!(shown.contains("\x1b[1;31merror:"), "{shown:?}");
    assert!(shown.contains("did you mean `openai:work`?"), "{shown}");
    let (_, shown) = at_terminal(
        &t,
        &format!(
            "\"$MODELAUTH\" --store '{}' rm openai:wrk --json",
            store.display()
        ),
        &[],
    )
    .unwrap();
    let e: Value = serde_json::from_str(shown.trim()).unwrap();
    assert_eq!(e["data"]["kind"], "unknown_profile");
    assert_eq!(e["data"]["didYouMean"], "openai:work");
}

#[test]
fn did_you_mean_for_providers_and_profile_ids() {
    let t = T::new();
    t.ok(&["add", "anthropic:work"], b"sk-ant-0001\n");
    let e = t.fail(&["get", "antropic"], b"");
    assert_eq!(e["data"]["didYouMean"], "anthropic");
    // A built-in provider on an empty scope.
    let e = t.fail(&["get", "opnai"], b"");
    assert_eq!(e["data"]["didYouMean"], "openai");
    let e = t.fail(&["rm", "anthropic:wrok"], b"");
    assert_eq!(e["data"]["didYouMean"], "anthropic:work");
    let e = t.fail(&["get", "antropic", "--profile", "antropic:work"], b"");
    assert_eq!(e["data"]["didYouMean"], "anthropic:work", "{e}");
    let e = t.fail(&["report", "anthropic:wrk", "--status", "429"], b"");
    assert_eq!(e["data"]["didYouMean"], "anthropic:work");
    // `call` too.
    let e = t.fail(&["call", "auth.resolve", r#"{"provider":"antropic"}"#], b"");
    assert_eq!(e["data"]["didYouMean"], "anthropic", "{e}");
    let e = t.fail(
        &["call", "profiles.get", r#"{"profileId":"anthropic:wrk"}"#],
        b"",
    );
    assert_eq!(e["data"]["didYouMean"], "anthropic:work", "{e}");
    // Nothing near: no guess.
    let e = t.fail(&["get", "zzzzzzzz"], b"");
    assert!(e["data"].get("didYouMean").is_none(), "{e}");
}

#[test]
fn exec_without_the_double_dash_gets_a_tip() {
    let t = T::new();
    let o = t.run(&["exec", "--provider", "openai", "python3", "x.py"], b"");
    assert_eq!(o.status.code(), Some(64));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "tip: put the command after `--`: modelauth exec --provider openai -- python3 x.py"
        ),
        "{err}"
    );
}

#[test]
fn a_named_location_creates_only_its_own_directory_unless_create_dirs() {
    let t = T::new();
    let deep = t.dir.path().join("typo/deeper/store.db");
    let e = t.fail_with(
        &["--store", deep.to_str().unwrap(), "add", "openai"],
        b"sk-0001\n",
        &[],
    );
    assert_eq!(e["data"]["reason"], "store_directory_missing", "{e}");
    assert!(e["data"]["hint"]
        .as_str()
        .unwrap()
        .contains("--create-dirs"));
    assert!(!t.dir.path().join("typo").exists());
    // $MODELAUTH_STORE too, for `call` as well.
    let e = t.fail_with(
        &["call", "profiles.put", "-"],
        br#"{"profile":{"id":"openai:a","type":"api_key","key":"sk-0002"}}"#,
        &[("MODELAUTH_STORE", deep.to_str().unwrap())],
    );
    assert_eq!(e["data"]["reason"], "store_directory_missing", "{e}");
    assert!(!t.dir.path().join("typo").exists());
    // With --create-dirs the chain is made (0700).
    let o = run(
        t.bare().args([
            "--store",
            deep.to_str().unwrap(),
            "--create-dirs",
            "add",
            "openai",
        ]),
        b"sk-0003\n",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(deep.exists());
    // The store's own directory alone is created without the flag.
    let one = t.dir.path().join("one/store.db");
    let o = run(
        t.bare()
            .args(["--store", one.to_str().unwrap(), "add", "openai"]),
        b"sk-4\n",
    );
    assert!(o.status.success());
    // The default location's directories are created as before.
    let o = run(t.bare().args(["add", "openai"]), b"sk-5\n");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(t
        .dir
        .path()
        .join(".local/state/modelauth/store.db")
        .exists());
}

impl T {
    fn fail_with(&self, args: &[&str], stdin: &[u8], envs: &[(&str, &str)]) -> Value {
        let mut c = self.bare();
        c.envs(envs.iter().copied()).args(args);
        let o = run(&mut c, stdin);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&o.stdout)
        );
        serde_json::from_slice(&o.stderr).unwrap()
    }
}

#[test]
fn check_a_broken_ref_beside_a_working_key_is_a_profile_problem_not_a_missing_provider() {
    let t = T::new();
    t.ok(&["add", "openai:key"], b"sk-works-0001\n");
    t.ok(&["add", "openai:ref", "--ref", "env:NOT_SET_ANYWHERE"], b"");
    // get returns the usable key …
    assert_eq!(t.ok(&["get", "openai"], b""), "sk-works-0001\n");
    // … so check does not call the provider missing (exit 0, as OpenClaw's --check for a
    // usable fallback), and still shows the broken profile.
    let o = t.run(&["check", "--json"], b"");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(o.status.code(), Some(0), "{v}");
    assert_eq!(v["providers"][0]["status"], "static", "{v}");
    let refp = v["providers"][0]["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["profileId"] == "openai:ref")
        .unwrap()
        .clone();
    assert_eq!(refp["status"], "ref_unavailable", "{v}");
    // Only the broken ref: missing, exit 1.
    t.ok(&["rm", "openai:key"], b"");
    let o = t.run(&["check", "--json"], b"");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["providers"][0]["status"], "missing");
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn helper_info_answers_when_the_postgres_server_cannot_be_reached() {
    let t = T::new();
    // Port 1 on loopback: connection refused at once.
    let o = run(
        t.bare().args([
            "--store",
            "postgres://nobody@127.0.0.1:1/db?sslmode=disable",
            "call",
            "helper.info",
        ]),
        b"",
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["store"]["backend"], "postgres");
    assert_eq!(v["store"]["reachable"], false);
    assert_eq!(v["store"]["error"]["kind"], "store_unavailable");
    assert_eq!(v["store"]["error"]["retryable"], true);
    assert!(v["methods"].as_array().unwrap().len() > 10);
    // And `where` says so.
    let o = run(
        t.bare().args([
            "--store",
            "postgres://nobody@127.0.0.1:1/db?sslmode=disable",
            "where",
        ]),
        b"",
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.starts_with("postgres://nobody@127.0.0.1:1/db\nbackend: postgres\n"),
        "{out}"
    );
    assert!(out.contains("reachable: no"), "{out}");
}

#[test]
fn an_unknown_postgres_host_is_unavailable_with_a_dns_hint() {
    let t = T::new();
    let o = run(
        t.bare().args([
            "--store",
            "postgres://nobody@no-such-host.invalid/db?sslmode=disable",
            "list",
        ]),
        b"",
    );
    assert_eq!(o.status.code(), Some(1));
    let e: Value = serde_json::from_slice(&o.stderr).unwrap();
    assert_eq!(e["data"]["kind"], "store_unavailable", "{e}");
    assert_eq!(e["data"]["reason"], "dns", "{e}");
    assert_eq!(e["data"]["retryable"], false, "{e}");
    assert!(e["data"]["hint"].as_str().unwrap().contains("DNS"), "{e}");
}

#[test]
fn a_passfile_that_others_can_read_is_noted_as_ignored_for_the_store_auth_hint() {
    use std::os::unix::fs::PermissionsExt;
    let t = T::new();
    let pf = t.dir.path().join("pgpass");
    std::fs::write(&pf, "*:*:*:*:pw-0001\n").unwrap();
    let loc = |mode: u32| {
        std::fs::set_permissions(&pf, std::fs::Permissions::from_mode(mode)).unwrap();
        let p = pf.to_str().unwrap().to_string();
        let env = move |k: &str| (k == "PGPASSFILE").then(|| p.clone());
        match modelauth::store::parse_location(
            std::path::Path::new("postgres://u@127.0.0.1:5432/db"),
            false,
            &env,
        )
        .unwrap()
        {
            modelauth::store::StoreLocation::Postgres(l) => l,
            _ => panic!("not postgres"),
        }
    };
    let l = loc(0o644);
    assert_eq!(l.passfile_ignored.as_deref(), Some(pf.as_path()));
    assert!(l.config.get_password().is_none());
    let l = loc(0o600);
    assert!(l.passfile_ignored.is_none());
    assert_eq!(l.config.get_password(), Some(&b"pw-0001"[..]));
}

/// PostgreSQL failure causes → kinds against a real server that wants a password over TCP
/// and offers TLS with a certificate no public root signed (a stock Debian cluster):
/// `MODELAUTH_TEST_PG_TCP=postgres://USER@127.0.0.1:PORT/DB` (no password in it).
#[test]
fn postgres_tls_and_password_failures_have_their_own_kinds() {
    let Some(url) = std::env::var("MODELAUTH_TEST_PG_TCP")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        eprintln!("SKIPPED: set MODELAUTH_TEST_PG_TCP=postgres://user@127.0.0.1:port/db (a password-protected TCP server with a self-signed certificate)");
        return;
    };
    let t = T::new();
    let kind_of = |store: String, envs: &[(&str, &str)]| -> Value {
        let mut c = t.bare();
        c.envs(envs.iter().copied())
            .args(["--store", &store, "list"]);
        let o = run(&mut c, b"");
        assert_eq!(
            o.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&o.stdout)
        );
        serde_json::from_slice::<Value>(&o.stderr).unwrap()["data"].clone()
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let d = kind_of(format!("{url}{sep}sslmode=disable"), &[]);
    assert_eq!(
        (d["kind"].as_str(), d["retryable"].as_bool()),
        (Some("store_auth"), Some(false)),
        "{d}"
    );
    let d = kind_of(
        format!("{url}{sep}sslmode=disable"),
        &[("PGPASSWORD", "wrong-0001")],
    );
    assert_eq!(d["kind"], "store_auth", "{d}");
    let pf = t.dir.path().join("pgpass");
    std::fs::write(&pf, "*:*:*:*:wrong-0002\n").unwrap();
    let d = kind_of(
        format!("{url}{sep}sslmode=disable"),
        &[("PGPASSFILE", pf.to_str().unwrap())],
    );
    assert_eq!(d["reason"], "passfile_ignored", "{d}");
    assert!(d["hint"].as_str().unwrap().contains("chmod 0600"), "{d}");
    let d = kind_of(
        format!("{url}{sep}sslmode=verify-full"),
        &[("PGPASSWORD", "x")],
    );
    assert_eq!(
        (d["kind"].as_str(), d["retryable"].as_bool()),
        (Some("store_tls"), Some(false)),
        "{d}"
    );
}

#[test]
fn serve_answers_unknown_provider_and_profile_ids_with_a_did_you_mean() {
    let t = T::new();
    t.ok(&["add", "anthropic:work"], b"sk-ant-0001\n");
    let input = concat!(
        r#"{"jsonrpc":"2.0","id":1,"method":"auth.resolve","params":{"provider":"antropic"}}"#,
        "\n",
        r#"{"jsonrpc":"2.0","id":2,"method":"profiles.remove","params":{"profileId":"anthropic:wrok"}}"#,
        "\n",
        r#"{"jsonrpc":"2.0","id":3,"method":"order.set","params":{"provider":"anthropic","order":["anthropic:wrk"]}}"#,
        "\n"
    );
    let o = t.run(&["serve"], input.as_bytes());
    let lines: Vec<Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines[0]["error"]["data"]["didYouMean"], "anthropic",
        "{}",
        lines[0]
    );
    assert!(lines[0]["error"]["data"]["hint"]
        .as_str()
        .unwrap()
        .starts_with("did you mean `anthropic`?"));
    assert_eq!(
        lines[1]["error"]["data"]["didYouMean"], "anthropic:work",
        "{}",
        lines[1]
    );
    assert_eq!(
        lines[2]["error"]["data"]["kind"], "unknown_profile",
        "{}",
        lines[2]
    );
}

#[test]
fn params_piped_to_call_without_the_dash_get_a_hint_that_names_it_and_nothing_is_stored() {
    let t = T::new();
    t.ok(&["add", "openai:a"], b"sk-a-0001\n");
    let params =
        br#"{"profile":{"id":"openai:b","type":"api_key","provider":"openai","key":"sk-b-0002"}}"#;
    let e = t.fail(&["call", "profiles.put"], params);
    assert_eq!(e["data"]["kind"], "invalid_params", "{e}");
    let hint = e["data"]["hint"].as_str().unwrap();
    assert!(
        hint.contains("stdin is read only with `-`")
            && hint.contains("modelauth call profiles.put -"),
        "{hint}"
    );
    assert!(!e.to_string().contains("sk-b-0002"), "{e}");
    // The same params with `-` are taken; before that, nothing was stored.
    let list = t.json(&["list", "--json"]);
    assert_eq!(list["profiles"].as_array().unwrap().len(), 1, "{list}");
    t.ok(&["call", "profiles.put", "-"], params);
    assert_eq!(t.get("openai:b"), "sk-b-0002");
}
