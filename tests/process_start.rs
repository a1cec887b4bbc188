//! Process start-up (`src/cli/start.rs`, the binary is `#![no_main]`): what the Rust
//! runtime's start-up did for this program still holds. A closed stdout or stderr is
//! opened on `/dev/null` before any store file is opened, so an answer never lands in the
//! store; SIGPIPE is ignored, so a reader that went away is a quiet exit, not a death by
//! signal; and the children of `exec` still start with SIGPIPE's default.

mod common;

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Stdio;

use common::Env;
use serde_json::json;

#[test]
fn a_closed_stdout_and_stderr_are_dev_null_for_the_process_and_its_children() {
    let env = Env::new();
    env.put_key("openai:a", "sk-start-a");
    let wrote = env.dir.path().join("child-wrote");
    let mut c = env.command();
    c.args(["exec", "--provider", "openai", "--", "sh", "-c"])
        .arg(r#"echo out && echo err >&2 && touch "$0""#)
        .arg(&wrote)
        .stdin(Stdio::null());
    // SAFETY: `close` is async-signal-safe; the child closes its own stdout and stderr
    // between fork and exec, as a careless parent might hand them over.
    unsafe {
        c.pre_exec(|| {
            libc::close(1);
            libc::close(2);
            Ok(())
        });
    }
    let status = c.status().unwrap();
    // Both descriptors are `/dev/null`, open for writing, before the store is opened: the
    // command's writes succeed. Without that, the store's first descriptors would take
    // their places (SQLite puts a read-only `/dev/null` there, a PostgreSQL socket is
    // closed at exec) and the command's `echo` would fail.
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        wrote.exists(),
        "the command could not write to its stdout or stderr"
    );
    // And the store is as it was.
    let got = env
        .call("auth.resolve", json!({"provider": "openai"}))
        .unwrap();
    assert_eq!(got["secret"], "sk-start-a");
}

#[test]
fn a_reader_that_went_away_is_a_quiet_exit_not_a_signal() {
    let env = Env::new();
    env.put_key("openai:a", "sk-pipe-a");
    // `get` exits 1 (a secret not delivered is a failure a caller must see), the others 0;
    // none is killed by SIGPIPE, and none says a word about a reader that left.
    for (args, code) in [
        (&["get", "openai"][..], 1),
        (&["call", "helper.info"], 0),
        (&["list"], 0),
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = env
            .command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(out.status.signal(), None, "{args:?}: killed by a signal");
        assert_eq!(out.status.code(), Some(code), "{args:?}: {out:?}");
        assert!(out.stderr.is_empty(), "{args:?}: {out:?}");
    }
}

#[test]
fn exec_children_start_with_sigpipe_at_its_default() {
    let env = Env::new();
    env.put_key("openai:a", "sk-exec-pipe");
    let out = env
        .command()
        .args([
            "exec",
            "--provider",
            "openai",
            "--",
            "grep",
            "^SigIgn:",
            "/proc/self/status",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let line = String::from_utf8(out.stdout).unwrap();
    let mask = u64::from_str_radix(line.trim().trim_start_matches("SigIgn:").trim(), 16)
        .unwrap_or_else(|e| panic!("{line}: {e}"));
    // Signal n is bit n - 1; SIGPIPE is 13.
    assert_eq!(mask & (1 << (libc::SIGPIPE - 1)), 0, "{line}");
}
