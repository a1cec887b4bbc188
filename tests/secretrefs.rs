//! SecretRef sources (protocol §5.1) against the real binary: env, file (ownership and
//! mode checks, json and singleValue), exec (no shell, stdin request, passEnv only,
//! time-out that kills the helper and what it started), and no secret in any output but
//! auth.resolve's result.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::Env;
use serde_json::{json, Value};

fn write_file(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// An executable `#!/bin/sh` helper in the test directory.
fn script(env: &Env, name: &str, body: &str) -> PathBuf {
    let p = env.dir.path().join(name);
    write_file(&p, &format!("#!/bin/sh\n{body}\n"), 0o700);
    p
}

fn put_key_ref(env: &Env, id: &str, source: &str, provider: &str, ref_id: &str) {
    env.call(
        "profiles.put",
        json!({"profile": {"id": id, "type": "api_key",
                           "keyRef": {"source": source, "provider": provider, "id": ref_id}}}),
    )
    .unwrap();
}

fn set_providers(env: &Env, providers: Value) {
    env.call(
        "settings.set",
        json!({"settings": {"secretProviders": providers}}),
    )
    .unwrap();
}

#[test]
fn a_key_ref_to_a_missing_env_var_is_secret_unavailable_naming_the_ref() {
    let env = Env::with_vars(&[("PRESENT_KEY", "ENV-SECRET-xyzzy")]);
    put_key_ref(&env, "openai:missing", "env", "default", "MISSING_VAR");
    let e = env
        .call("auth.resolve", json!({"profileId": "openai:missing"}))
        .unwrap_err();
    assert_eq!(e["code"], -32030);
    assert_eq!(e["data"]["kind"], "secret_unavailable");
    assert_eq!(e["data"]["reason"], "env_missing");
    assert_eq!(e["data"]["ref"]["id"], "MISSING_VAR");
    assert!(e["message"]
        .as_str()
        .unwrap()
        .contains("env:default:MISSING_VAR"));
    // Unpinned: skipped as ref_unavailable, the next one wins.
    put_key_ref(&env, "openai:present", "env", "default", "PRESENT_KEY");
    env.call(
        "order.set",
        json!({"provider": "openai", "order": ["openai:missing", "openai:present"]}),
    )
    .unwrap();
    let r = env
        .call("auth.resolve", json!({"provider": "openai"}))
        .unwrap();
    assert_eq!(r["secret"], "ENV-SECRET-xyzzy");
    assert_eq!(r["fallbackReason"], "ref_unavailable");
}

#[test]
fn file_refs_json_and_single_value_and_a_0644_file_is_refused() {
    let env = Env::new();
    let json_path = env.dir.path().join("secrets.json");
    write_file(
        &json_path,
        r#"{"llm": {"openai": "FILE-SECRET-xyzzy"}, "n": 1}"#,
        0o600,
    );
    let single = env.dir.path().join("single.txt");
    write_file(&single, "SINGLE-SECRET-xyzzy\n", 0o400);
    set_providers(
        &env,
        json!({"files": {"source": "file", "path": json_path, "mode": "json"},
               "one": {"source": "file", "path": single, "mode": "singleValue"}}),
    );
    put_key_ref(&env, "openai:file", "file", "files", "/llm/openai");
    put_key_ref(&env, "mistral:one", "file", "one", "value");
    put_key_ref(&env, "groq:absent", "file", "files", "/llm/groq");
    let r = env
        .call("auth.resolve", json!({"provider": "openai"}))
        .unwrap();
    assert_eq!(r["secret"], "FILE-SECRET-xyzzy");
    let r = env
        .call("auth.resolve", json!({"provider": "mistral"}))
        .unwrap();
    assert_eq!(r["secret"], "SINGLE-SECRET-xyzzy");
    let e = env
        .call("auth.resolve", json!({"profileId": "groq:absent"}))
        .unwrap_err();
    assert_eq!(e["data"]["reason"], "id_missing");

    // Group/world-readable: refused, naming the ref and the file, never the value.
    std::fs::set_permissions(&json_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = env
        .call("auth.resolve", json!({"profileId": "openai:file"}))
        .unwrap_err();
    assert_eq!(e["code"], -32030);
    assert_eq!(e["data"]["reason"], "insecure_file");
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains("file:files:/llm/openai") && msg.contains("0644"),
        "{msg}"
    );
    assert!(!e.to_string().contains("xyzzy"));
    // Relative paths are refused when set.
    let e = env
        .call(
            "settings.set",
            json!({"settings": {"secretProviders": {"files": {"source": "file", "path": "secrets.json"}}}}),
        )
        .unwrap_err();
    assert_eq!(e["data"]["pointer"], "/settings/secretProviders/files/path");
}

#[test]
fn exec_refs_run_without_a_shell_with_a_minimal_environment() {
    let env = Env::with_vars(&[("SEED", "s1"), ("OTHER", "leak")]);
    let req = env.dir.path().join("request.json");
    let helper = script(
        &env,
        "vault-get",
        r#"cat > "$1"
printf '{"protocolVersion":1,"values":{"llm/openai":"EXEC-SECRET-%s-%s"}}' "$SEED" "${OTHER:-none}""#,
    );
    let failing = script(
        &env,
        "failing",
        r#"printf '{"protocolVersion":1,"values":{"x":"EXEC-FAIL-xyzzy"}}'; exit 3"#,
    );
    let garbage = script(&env, "garbage", "echo EXEC-GARBAGE-xyzzy");
    set_providers(
        &env,
        json!({"vault": {"source": "exec", "command": helper, "args": [req], "passEnv": ["SEED"]},
               "failing": {"source": "exec", "command": failing},
               "garbage": {"source": "exec", "command": garbage}}),
    );
    put_key_ref(&env, "openai:vault", "exec", "vault", "llm/openai");
    let r = env
        .call("auth.resolve", json!({"provider": "openai"}))
        .unwrap();
    assert_eq!(
        r["secret"], "EXEC-SECRET-s1-none",
        "only passEnv names are passed"
    );
    let sent: Value = serde_json::from_str(&std::fs::read_to_string(&req).unwrap()).unwrap();
    assert_eq!(
        sent,
        json!({"protocolVersion": 1, "provider": "vault", "ids": ["llm/openai"]})
    );
    put_key_ref(&env, "openai:failing", "exec", "failing", "x");
    let e = env
        .call("auth.resolve", json!({"profileId": "openai:failing"}))
        .unwrap_err();
    assert_eq!(e["data"]["reason"], "exec_failed");
    assert_eq!(e["data"]["exitCode"], 3);
    assert!(e["message"].as_str().unwrap().contains("exec:failing:x"));
    assert!(!e.to_string().contains("xyzzy"));
    put_key_ref(&env, "openai:garbage", "exec", "garbage", "x");
    let e = env
        .call("auth.resolve", json!({"profileId": "openai:garbage"}))
        .unwrap_err();
    assert_eq!(e["data"]["reason"], "bad_output");
    assert!(!e.to_string().contains("xyzzy"));
    put_key_ref(&env, "openai:other-id", "exec", "vault", "llm/other");
    let e = env
        .call("auth.resolve", json!({"profileId": "openai:other-id"}))
        .unwrap_err();
    assert_eq!(e["data"]["reason"], "id_missing");
}

fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // A zombie waiting for an init that does not reap is dead too.
        Ok(s) => s
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn an_exec_helper_past_its_timeout_is_killed_with_what_it_started() {
    let env = Env::new();
    let pids = env.dir.path().join("pids");
    let helper = script(
        &env,
        "slow",
        r#"echo $$ > "$1"
sleep 30 &
echo $! >> "$1"
wait"#,
    );
    set_providers(
        &env,
        json!({"slow": {"source": "exec", "command": helper, "args": [pids], "timeoutMs": 300}}),
    );
    put_key_ref(&env, "openai:slow", "exec", "slow", "k");
    let t = Instant::now();
    let e = env
        .call("auth.resolve", json!({"profileId": "openai:slow"}))
        .unwrap_err();
    assert!(t.elapsed().as_secs() < 10, "not killed: {:?}", t.elapsed());
    assert_eq!(e["code"], -32030);
    assert_eq!(e["data"]["reason"], "timeout");
    assert_eq!(e["data"]["timeoutMs"], 300);
    assert!(e["message"].as_str().unwrap().contains("exec:slow:k"));
    let text = std::fs::read_to_string(&pids).unwrap();
    let pids: Vec<u32> = text.lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(pids.len(), 2, "{text}");
    // Give the kernel a moment to finish the SIGKILL of the grandchild.
    let deadline = Instant::now() + std::time::Duration::from_secs(3);
    while !pids.iter().all(|p| gone(*p)) && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for p in pids {
        assert!(gone(p), "process {p} was left behind");
    }
}

#[test]
fn secret_values_appear_in_no_output_but_auth_resolve() {
    let env = Env::with_vars(&[("RUST_LOG", "trace"), ("ENV_KEY", "ENV-SECRET-xyzzy")]);
    let file = env.dir.path().join("s.json");
    write_file(&file, r#"{"k": "FILE-SECRET-xyzzy"}"#, 0o600);
    let helper = script(
        &env,
        "helper",
        r#"printf '{"protocolVersion":1,"values":{"k":"EXEC-SECRET-xyzzy"}}'"#,
    );
    let leaky = script(
        &env,
        "leaky",
        r#"printf 'EXEC-LEAK-xyzzy'; echo EXEC-LEAK-xyzzy >&2; exit 1"#,
    );
    let mut s = env.serve();
    s.ok(
        "settings.set",
        json!({"settings": {"secretProviders": {
            "f": {"source": "file", "path": file},
            "x": {"source": "exec", "command": helper},
            "leaky": {"source": "exec", "command": leaky}}}}),
    );
    for (id, src, prov, rid) in [
        ("openai:env", "env", "default", "ENV_KEY"),
        ("mistral:file", "file", "f", "/k"),
        ("groq:exec", "exec", "x", "k"),
        ("cohere:leaky", "exec", "leaky", "k"),
    ] {
        s.ok(
            "profiles.put",
            json!({"profile": {"id": id, "type": "api_key", "keyRef": {"source": src, "provider": prov, "id": rid}}}),
        );
    }
    s.ok(
        "profiles.put",
        json!({"profile": {"id": "openai:inline", "type": "api_key", "key": "INLINE-SECRET-xyzzy"}}),
    );
    let mut others = vec![];
    for (m, p) in [
        ("profiles.list", json!({})),
        ("profiles.get", json!({"profileId": "openai:inline"})),
        ("auth.status", json!({})),
        ("order.get", json!({"provider": "openai"})),
        ("store.export", json!({})),
        ("auth.resolve", json!({"profileId": "cohere:leaky"})),
    ] {
        others.push(s.request(m, p).to_string());
    }
    let mut resolved = vec![];
    for p in ["openai:inline", "mistral:file", "groq:exec"] {
        resolved.push(s.ok("auth.resolve", json!({"profileId": p}))["secret"].clone());
    }
    assert_eq!(
        resolved,
        vec![
            json!("INLINE-SECRET-xyzzy"),
            json!("FILE-SECRET-xyzzy"),
            json!("EXEC-SECRET-xyzzy")
        ]
    );
    let r = s.ok("auth.resolve", json!({"profileId": "openai:env"}));
    assert_eq!(r["secret"], "ENV-SECRET-xyzzy");
    drop(s);
    for o in &others {
        assert!(!o.contains("xyzzy"), "a secret in {o}");
    }
    // stderr of a traced one-shot process with the same calls.
    let mut logged = false;
    for (m, p) in [
        ("auth.resolve", json!({"provider": "mistral"})),
        ("auth.resolve", json!({"provider": "groq"})),
        ("auth.resolve", json!({"profileId": "openai:env"})),
        ("auth.resolve", json!({"profileId": "cohere:leaky"})),
        ("profiles.list", json!({})),
    ] {
        let out = env
            .command()
            .args(["call", m, &p.to_string()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        logged |= !stderr.trim().is_empty();
        assert!(!stderr.contains("xyzzy"), "{m} logged a secret: {stderr}");
    }
    assert!(logged, "RUST_LOG=trace logs something");
}
