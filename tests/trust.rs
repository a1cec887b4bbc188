//! PROTOCOL §11 *(r3)*, against the real binary: a command named by store content (an
//! `exec` secret provider) runs only when its file and directories are owned by root or
//! the user and not writable by others, and on a shared (PostgreSQL) store only from a
//! directory of the machine-local `$MODELAUTH_TRUSTED_DIRS`. A refused helper never runs.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::Env;
use serde_json::{json, Value};

/// A helper that records that it ran (a marker file) and prints a value.
fn helper(dir: &Path, name: &str, mode: u32) -> (PathBuf, PathBuf) {
    let p = dir.join(name);
    let marker = dir.join(format!("{name}.ran"));
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\ntouch '{}'\nprintf 'trusted-helper-value-1'\n",
            marker.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    (p, marker)
}

fn setup(env: &Env, command: &Path) {
    env.call(
        "settings.set",
        json!({"settings": {"secretProviders": {"h": {
            "source": "exec", "command": command, "jsonOnly": false}}}}),
    )
    .unwrap();
    env.call(
        "profiles.put",
        json!({"profile": {"id": "openai:t", "type": "api_key",
                           "keyRef": {"source": "exec", "provider": "h", "id": "k"}}}),
    )
    .unwrap();
}

fn resolve(env: &Env) -> Result<Value, Value> {
    env.call("auth.resolve", json!({"profileId": "openai:t"}))
}

fn refused(e: &Value, trust: &str) {
    assert_eq!(e["data"]["kind"], "secret_unavailable", "{e}");
    assert_eq!(e["data"]["reason"], "untrusted_command", "{e}");
    assert_eq!(e["data"]["trust"], trust, "{e}");
}

#[test]
fn a_writable_helper_or_one_in_a_writable_directory_never_runs() {
    let env = Env::new();
    let (p, marker) = helper(env.dir.path(), "open-helper", 0o777);
    setup(&env, &p);
    refused(&resolve(&env).unwrap_err(), "writable");
    assert!(!marker.exists(), "the refused helper ran");

    let shared = env.dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let (p, marker) = helper(&shared, "in-open-dir", 0o755);
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    setup(&env, &p);
    refused(&resolve(&env).unwrap_err(), "dir_writable");
    assert!(!marker.exists());
    // A symlink from a closed directory to it is judged at its target.
    let link = env.dir.path().join("link");
    std::os::unix::fs::symlink(&p, &link).unwrap();
    setup(&env, &link);
    refused(&resolve(&env).unwrap_err(), "dir_writable");
    assert!(!marker.exists());

    // Closed again: it runs.
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ok = resolve(&env).unwrap();
    assert_eq!(ok["secret"], "trusted-helper-value-1", "{ok}");
    assert!(marker.exists());
}

#[test]
fn a_helper_owned_by_another_user_never_runs() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: chown to another user needs root");
        return;
    }
    let env = Env::new();
    let (p, marker) = helper(env.dir.path(), "theirs", 0o755);
    std::os::unix::fs::chown(&p, Some(4242), None).unwrap();
    setup(&env, &p);
    refused(&resolve(&env).unwrap_err(), "bad_owner");
    assert!(!marker.exists());
}

#[test]
fn a_shared_store_runs_only_helpers_under_the_trusted_dirs() {
    if !common::on_pg() {
        eprintln!("SKIPPED: needs MODELAUTH_TEST_PG (a shared store)");
        return;
    }
    let bin = tempfile::tempdir().unwrap();
    let (p, marker) = helper(bin.path(), "fleet-helper", 0o755);
    // Env::command names the test directory; the helper is elsewhere.
    let env = Env::new();
    setup(&env, &p);
    let e = resolve(&env).unwrap_err();
    refused(&e, "outside_trusted_dirs");
    assert!(!marker.exists());

    // Unset: nothing store-named runs, and the hint names the variable.
    let mut c = env.command();
    c.env_remove("MODELAUTH_TRUSTED_DIRS");
    let out = common::call_with_stdin(c, "auth.resolve", &json!({"profileId": "openai:t"}));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let e: Value = serde_json::from_str(err.lines().last().unwrap()).unwrap();
    refused(&e, "no_trusted_dirs");
    assert!(
        e["data"]["hint"]
            .as_str()
            .unwrap()
            .contains("MODELAUTH_TRUSTED_DIRS"),
        "{e}"
    );
    assert!(!marker.exists());

    // Listed (among others): it runs.
    let mut c = env.command();
    c.env(
        "MODELAUTH_TRUSTED_DIRS",
        format!("/nonexistent:{}", bin.path().display()),
    );
    let out = common::call_with_stdin(c, "auth.resolve", &json!({"profileId": "openai:t"}));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["secret"], "trusted-helper-value-1");
    assert!(marker.exists());
}
