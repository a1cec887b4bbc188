//! The README works as written: its first command and its Python and Node clients are
//! pulled out of README.md and run, in one shell as a newcomer would, against the built
//! binary. A client whose interpreter is missing is skipped with a note on stderr.

use std::io::Write;
use std::path::Path;
use std::process::Command;

/// The fenced blocks of `lang` in `text`, in order.
fn blocks(text: &str, lang: &str) -> Vec<String> {
    let mut out = vec![];
    let mut cur: Option<String> = None;
    for line in text.lines() {
        match &mut cur {
            None if line.trim_end() == format!("```{lang}") => cur = Some(String::new()),
            Some(b) if line.trim_end() == "```" => {
                out.push(std::mem::take(b));
                cur = None;
            }
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
            None => {}
        }
    }
    out
}

fn find(name: &str) -> Option<String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([Path::new("/usr/bin").to_path_buf()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
}

/// A note that shows even though the test harness captures `eprintln!`.
fn note(msg: &str) {
    let _ = writeln!(std::io::stderr(), "NOTE (tests/readme.rs): {msg}");
}

#[test]
fn the_first_command_and_both_clients_run_as_written() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let first = blocks(&readme, "sh")
        .into_iter()
        .find(|b| b.contains("modelauth serve") && b.contains("mktemp"))
        .expect("README's first command (a sh block with mktemp and modelauth serve)");
    let python = blocks(&readme, "python")
        .pop()
        .expect("README's Python client");
    let node = blocks(&readme, "js").pop().expect("README's Node client");

    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("client.py"), &python).unwrap();
    std::fs::write(home.path().join("client.mjs"), &node).unwrap();
    let mut script = format!("set -eu\ncd '{}'\n{first}\n", home.path().display());
    // A client that never exits fails the test instead of hanging it.
    let limit = if find("timeout").is_some() {
        "timeout 60 "
    } else {
        ""
    };
    match find("python3") {
        Some(py) => script.push_str(&format!("echo '--- python'\n{limit}{py} client.py\n")),
        None => note("python3 not found: the README's Python client was NOT run"),
    }
    let node_bin = find("node");
    match &node_bin {
        Some(n) => script.push_str(&format!("echo '--- node'\n{limit}{n} client.mjs\n")),
        None => note("node not found: the README's Node client was NOT run"),
    }
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_modelauth")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // A clean environment: the snippets must not depend on anything but PATH and HOME.
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env_clear()
        .env("PATH", path)
        .env("HOME", home.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "README snippets failed:\n{stdout}\n{stderr}"
    );

    // The first command: two responses, the put and the resolve of the shared key.
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .take_while(|l| !l.starts_with("---"))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0]["result"]["created"], true, "{stdout}");
    assert_eq!(lines[1]["result"]["profileId"], "openai:default");
    assert_eq!(lines[1]["result"]["secret"], "sk-example-123");
    assert_eq!(lines[1]["result"]["agent"], "cron-nightly");
    if find("python3").is_some() {
        assert!(
            stdout.contains("--- python\nusing openai:default\n"),
            "{stdout}"
        );
    }
    if node_bin.is_some() {
        assert!(
            stdout.contains("--- node\nusing openai:default\n"),
            "{stdout}"
        );
    }
    // The throwaway store took the key; the default store under HOME was never created.
    assert!(
        !home.path().join(".local/state/modelauth").exists(),
        "the README's first command wrote to the default store"
    );
}

/// docs/import.md: `store.export` returns `{agent, document}`; its `document` member alone
/// is an OpenClaw auth-profiles.json (format `openclaw`), the whole result is `modelauth`.
#[test]
fn the_export_document_of_docs_import_md_is_a_bare_openclaw_file() {
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/import.md")).unwrap();
    assert!(
        docs.contains("| jq .document >"),
        "docs/import.md lost its recipe"
    );
    let dir = tempfile::tempdir().unwrap();
    let run = |store: &str, method: &str, params: serde_json::Value| -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_modelauth"))
            .args([
                "--store",
                &dir.path().join(store).to_string_lossy(),
                "call",
                method,
            ])
            .arg(params.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    run(
        "a.db",
        "profiles.put",
        serde_json::json!({"profile": {"id": "openai:default", "type": "api_key", "keyRef": {"source": "env", "provider": "default", "id": "OPENAI_API_KEY"}}}),
    );
    let exported = run("a.db", "store.export", serde_json::json!({}));
    assert_eq!(exported["agent"], serde_json::Value::Null);
    assert_eq!(exported["document"]["version"], 1);
    let bare = dir.path().join("auth-profiles.json");
    std::fs::write(&bare, exported["document"].to_string()).unwrap();
    let v = run("b.db", "store.validate", serde_json::json!({"path": bare}));
    assert_eq!(v["format"], "openclaw", "{v}");
    assert_eq!(v["valid"], true, "{v}");
}
