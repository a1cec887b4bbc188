//! The shell front door (protocol §8 r2) against the real binary: usage errors exit 64 in
//! every subcommand, `get` prints only the secret, `exec` runs a command with the
//! credentials in its environment (never in any argv; exit status and signals are the
//! command's), `completions` and `man`, and the warning of `call` for secrets in argv.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::Env;
use serde_json::{json, Value};

fn run(env: &Env, args: &[&str]) -> Output {
    env.command()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// An executable `#!/bin/sh` script in the test directory.
fn script(env: &Env, name: &str, body: &str) -> PathBuf {
    let p = env.dir.path().join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
    p
}

fn wait_for_file(p: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !p.exists() {
        assert!(Instant::now() < deadline, "{} never appeared", p.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn usage_errors_exit_64_in_every_subcommand_and_help_exits_0() {
    let env = Env::new();
    for args in [
        &[][..],
        &["bogus"],
        &["serve", "--bogus"],
        &["call"],
        &["call", "helper.info", "{}", "extra"],
        &["check", "--bogus"],
        &["check", "--agent"],
        &["schema", "--bogus"],
        &["get"],
        &["get", "openai", "--bogus"],
        &["exec", "--", "true"],
        &["exec", "--provider", "openai"],
        &["exec", "--provider", "openai", "true"],
        &["exec", "--env", "1BAD=openai", "--", "true"],
        &["exec", "--env", "NOEQUALS", "--", "true"],
        &["completions"],
        &["completions", "tcsh"],
        &["man", "--bogus"],
    ] {
        let out = run(&env, args);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).starts_with("error:"),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for args in [
        &["--help"][..],
        &["--version"],
        &["check", "--help"],
        &["exec", "--help"],
    ] {
        let out = run(&env, args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(!out.stdout.is_empty(), "{args:?}");
    }
    // Nothing was created by any of them.
    assert!(!env.store().exists());
    // check's 2 still means "expiring" only: an empty store is missing → 1.
    assert_eq!(run(&env, &["check"]).status.code(), Some(1));
}

#[test]
fn get_prints_only_the_secret_and_a_newline() {
    let env = Env::new();
    env.put_key("openai:a", "sk-get-secret-1");
    env.put_key("openai:b", "sk-get-secret-2");
    let out = run(&env, &["get", "openai", "--profile", "openai:b"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, b"sk-get-secret-2\n");
    let out = run(&env, &["get", " OpenAI ", "--model", "gpt-x"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let got = String::from_utf8(out.stdout).unwrap();
    assert!(
        got == "sk-get-secret-1\n" || got == "sk-get-secret-2\n",
        "{got}"
    );
    assert!(out.stderr.is_empty());
    // An agent sees the shared profile too.
    let out = run(
        &env,
        &["get", "openai", "--agent", "work", "--profile", "openai:a"],
    );
    assert_eq!(out.stdout, b"sk-get-secret-1\n");
    // Errors as `call`: nothing on stdout, the error object on stderr, exit 1.
    let out = run(&env, &["get", "mistral"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let e: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(e["data"]["kind"], "missing_credential");
    let out = run(&env, &["get", "openai", "--profile", "openai:nope"]);
    assert_eq!(out.status.code(), Some(1));
    let e: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(e["data"]["kind"], "unknown_profile");
}

#[test]
fn exec_children_read_the_credentials_from_their_own_environment() {
    let env = Env::with_vars(&[("KEEP_ME", "inherited")]);
    env.put_key("openai:a", "sk-exec-openai");
    env.put_key("google:a", "gm-exec-google");
    env.put_key("acme:a", "ac-exec-acme");
    env.call(
        "providers.put",
        json!({"id": "acme", "envVars": ["ACME_TOKEN", "ACME_OTHER"]}),
    )
    .unwrap();
    let out = run(
        &env,
        &[
            "exec",
            "--provider",
            "openai",
            "--provider",
            "google",
            "--provider",
            "acme",
            "--env",
            "MY_KEY=openai",
            "--",
            "env",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let vars: Vec<&str> = text.lines().collect();
    for want in [
        "OPENAI_API_KEY=sk-exec-openai",
        "GEMINI_API_KEY=gm-exec-google",
        "ACME_TOKEN=ac-exec-acme",
        "MY_KEY=sk-exec-openai",
        "KEEP_ME=inherited",
    ] {
        assert!(vars.contains(&want), "{want} not in {text}");
    }
    assert!(!text.contains("ACME_API_KEY"), "{text}");
    assert!(!text.contains("ACME_OTHER"), "{text}");
}

#[test]
fn exec_passes_the_exit_status_and_signals_of_the_command_through() {
    let env = Env::new();
    env.put_key("openai:a", "sk-exec-status");
    let out = run(
        &env,
        &["exec", "--provider", "openai", "--", "sh", "-c", "exit 7"],
    );
    assert_eq!(out.status.code(), Some(7));
    let out = run(
        &env,
        &[
            "exec",
            "--provider",
            "openai",
            "--",
            "sh",
            "-c",
            "kill -TERM $$",
        ],
    );
    assert_eq!(out.status.signal(), Some(libc::SIGTERM), "{out:?}");
    // A signal sent to modelauth reaches COMMAND: it is the same process.
    let marker = env.dir.path().join("pid");
    let child_script = script(
        &env,
        "waiter",
        r#"echo $$ > "$1.tmp"; mv "$1.tmp" "$1"; exec sleep 60"#,
    );
    let mut child = env
        .command()
        .args(["exec", "--provider", "openai", "--"])
        .arg(&child_script)
        .arg(&marker)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_file(&marker);
    let pid: u32 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, child.id());
    // SAFETY: signals our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = child.wait().unwrap();
    assert_eq!(st.signal(), Some(libc::SIGTERM));
    // Not found → 127, like a shell.
    let out = run(
        &env,
        &["exec", "--provider", "openai", "--", "/nonexistent/cmd"],
    );
    assert_eq!(out.status.code(), Some(127));
}

#[test]
fn exec_does_not_run_the_command_when_a_provider_cannot_be_resolved() {
    let env = Env::new();
    env.put_key("openai:a", "sk-exec-unres");
    let marker = env.dir.path().join("ran");
    let out = env
        .command()
        .args([
            "exec",
            "--provider",
            "openai",
            "--provider",
            "mistral",
            "--",
            "touch",
        ])
        .arg(&marker)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!marker.exists(), "COMMAND ran");
    let e: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(e["data"]["kind"], "missing_credential");
    assert_eq!(e["data"]["provider"], "mistral");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("sk-exec-unres"));
}

#[test]
fn exec_puts_the_secret_in_no_proc_cmdline_while_the_child_runs() {
    let env = Env::new();
    let secret = "sk-exec-cmdline-7f3a9c";
    env.put_key("openai:a", secret);
    let marker = env.dir.path().join("ready");
    let child_script = script(
        &env,
        "child",
        r#"echo ready > "$1.tmp"; mv "$1.tmp" "$1"
read _line
printf '%s' "$OPENAI_API_KEY""#,
    );
    let mut child = env
        .command()
        .args(["exec", "--provider", "openai", "--"])
        .arg(&child_script)
        .arg(&marker)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_file(&marker);
    let mut seen_child = false;
    let mut scanned = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        scanned += 1;
        let text = String::from_utf8_lossy(&cmdline);
        assert!(
            !text.contains(secret),
            "the secret is in {:?}",
            entry.path()
        );
        seen_child |= text.contains(&*child_script.to_string_lossy());
    }
    assert!(scanned > 1);
    assert!(
        seen_child,
        "the running child was not among the scanned processes"
    );
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    // ... and the child did have it, in its environment.
    assert_eq!(out.stdout, secret.as_bytes());
}

#[test]
fn completions_and_man_page() {
    let env = Env::new();
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef modelauth"),
        ("fish", "complete -c modelauth"),
    ] {
        let out = run(&env, &["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(marker), "{shell}: {text}");
        for sub in ["exec", "get", "check", "completions"] {
            assert!(text.contains(sub), "{shell} lacks {sub}");
        }
    }
    let out = run(&env, &["man"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(".TH modelauth 1"), "{text}");
    assert!(text.contains("exec"));
    assert!(!env.store().exists());
}

#[test]
fn call_warns_when_argv_params_carry_a_secret_but_still_runs() {
    let env = Env::new();
    let params = json!({"profile": {"id": "openai:w", "type": "api_key", "key": "sk-argv-warn-1"}});
    let out = run(&env, &["call", "profiles.put", &params.to_string()]);
    assert_eq!(out.status.code(), Some(0), "not refused");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("warning"), "{stderr}");
    assert!(stderr.contains("/profile/key"), "{stderr}");
    assert!(stderr.contains("modelauth call profiles.put -"), "{stderr}");
    assert!(!stderr.contains("sk-argv-warn-1"), "{stderr}");
    // The same params on stdin, or argv without a secret: no warning.
    let out = common::call_with_stdin(env.command(), "profiles.put", &params);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(
        &env,
        &["call", "profiles.get", r#"{"profileId": "openai:w"}"#],
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stderr.is_empty());
}
