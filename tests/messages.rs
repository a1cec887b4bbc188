//! Errors a person can act on (issue 10): exact pointers for nested params, "did you mean"
//! for methods and fields, JSON syntax errors with line and column, `check` fixes that name
//! the real profile, `call --help` listing the methods, and stdout failures that are said
//! (`> /dev/full`) or kept quiet (a closed pipe).

mod common;

use std::io::Read;
use std::process::{Command, Stdio};

use common::*;
use serde_json::{json, Value};

fn hint(e: &Value) -> &str {
    e["data"]["hint"].as_str().unwrap_or_default()
}

#[test]
fn a_misspelt_nested_field_gets_its_exact_pointer_and_the_right_name() {
    let s = TempStore::new();
    let e = err(
        &s.path,
        "providers.put",
        json!({"id": "acme", "oauth": {"tokenUrl": "https://auth.example/t", "clientId": "c", "scop": "x"}}),
    );
    assert_eq!(e["data"]["kind"], "invalid_params");
    assert_eq!(e["data"]["pointer"], "/oauth/scop");
    assert!(hint(&e).contains("did you mean `scope`?"), "{e}");
    // Nothing was stored.
    assert_eq!(
        ok(&s.path, "providers.list", json!({}))["providers"]
            .as_array()
            .map(|a| a.iter().filter(|p| p["id"] == "acme").count()),
        Some(0)
    );
}

#[test]
fn missing_and_mistyped_members_point_at_themselves() {
    let s = TempStore::new();
    let e = err(
        &s.path,
        "providers.put",
        json!({"id": "acme", "oauth": {"tokenUrl": "https://auth.example/t"}}),
    );
    assert_eq!(e["data"]["pointer"], "/oauth/clientId");
    assert!(hint(&e).contains("clientId"), "{e}");
    let e = err(
        &s.path,
        "order.set",
        json!({"provider": "openai", "order": ["openai:a", 3]}),
    );
    assert_eq!(e["data"]["pointer"], "/order/1");
    assert!(hint(&e).contains("`order.set` takes {"), "{e}");
}

#[test]
fn an_unknown_method_gets_did_you_mean_and_helper_info() {
    let s = TempStore::new();
    for (typo, meant) in [
        ("auth.reslove", "auth.resolve"),
        ("profiles.lst", "profiles.list"),
        ("resolve", "auth.resolve"),
    ] {
        let e = err(&s.path, typo, json!({}));
        assert_eq!(e["data"]["kind"], "method_not_found");
        assert!(
            hint(&e).contains(&format!("did you mean `{meant}`?")),
            "{e}"
        );
        assert!(hint(&e).contains("helper.info"), "{e}");
        assert!(!hint(&e).contains("rpc.discover"), "{e}");
    }
    let e = err(&s.path, "zzzz", json!({}));
    assert!(!hint(&e).contains("did you mean"), "{e}");
    assert!(hint(&e).contains("helper.info"), "{e}");
}

#[test]
fn params_that_are_not_json_say_line_and_column() {
    let s = TempStore::new();
    let out = cmd(&s.path)
        .args(["call", "auth.resolve", "{\"provider\":\n \"openai\",}"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(e["data"]["kind"], "parse_error");
    assert_eq!(
        e["message"],
        "params are not valid JSON: line 2 column 11: syntax error"
    );
    assert!(hint(&e).contains("-"), "{e}");
}

#[test]
fn check_names_the_real_profile_in_its_fixes() {
    let s = TempStore::new();
    ok(
        &s.path,
        "profiles.put",
        json!({"profile": api_key("openai:work", "sk-test-messages-0001")}),
    );
    ok(
        &s.path,
        "auth.report",
        json!({"profileId": "openai:work", "outcome": "billing"}),
    );
    let out = cmd(&s.path).args(["check"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("auth.clearCooldown '{\"profileId\":\"openai:work\"}'"),
        "{text}"
    );
    let out = cmd(&s.path)
        .args(["check", "--provider", "anthropic"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("\"id\":\"anthropic:default\""), "{text}");
    assert!(!text.contains("sk-test-messages-0001"));
}

#[test]
fn call_help_lists_every_method() {
    let s = TempStore::new();
    let info = ok(&s.path, "helper.info", json!({}));
    let out = Command::new(bin())
        .args(["call", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let methods = info["methods"].as_array().unwrap();
    assert!(methods.len() > 20);
    for m in methods {
        let m = m.as_str().unwrap();
        assert!(
            text.contains(&format!("  {m} ")),
            "{m} missing from call --help:\n{text}"
        );
    }
}

#[test]
fn a_full_stdout_is_an_error_with_a_message() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        eprintln!("SKIPPED: no /dev/full on this system");
        return;
    };
    let s = TempStore::new();
    for args in [vec!["schema"], vec!["call", "helper.info"], vec!["check"]] {
        let out = cmd(&s.path)
            .args(&args)
            .stdout(full.try_clone().unwrap())
            .output()
            .unwrap();
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("cannot write to stdout"), "{args:?}: {err}");
    }
}

#[test]
fn a_closed_pipe_stays_quiet() {
    // The schema is larger than a pipe buffer, so the write meets the closed pipe.
    let mut child = Command::new(bin())
        .arg("schema")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(first[0], b'{');
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert_eq!(out.status.code(), Some(0));
}
