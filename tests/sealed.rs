//! The sealed store (PROTOCOL §9 r3, issue 22), driven through the real binary on SQLite
//! and, with `MODELAUTH_TEST_PG`, on PostgreSQL: no planted key in the store's bytes,
//! fail-closed errors without or with the wrong key, a swapped ciphertext failing only
//! for its profile, rotation with two keys while other helpers write, seal/unseal.

mod common;

use std::process::{Command, Output, Stdio};

use common::*;
use serde_json::{json, Value};

/// A fresh store key from `modelauth store keygen`.
fn keygen() -> String {
    let out = Command::new(BIN)
        .args(["store", "keygen"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let k = String::from_utf8(out.stdout).unwrap();
    assert!(k.ends_with('\n') && k.lines().count() == 1);
    k.trim().to_string()
}

/// The command of `env` with exactly `key` as MODELAUTH_STORE_KEY (or none).
fn with_key(env: &Env, key: Option<&str>) -> Command {
    let mut c = env.command();
    c.env_remove("MODELAUTH_STORE_KEY");
    if let Some(k) = key {
        c.env("MODELAUTH_STORE_KEY", k);
    }
    c
}

fn call_k(env: &Env, key: Option<&str>, method: &str, params: Value) -> Result<Value, Value> {
    let out = call_with_stdin(with_key(env, key), method, &params);
    parse(out)
}

fn parse(out: Output) -> Result<Value, Value> {
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err.lines().last().unwrap_or_default();
        Err(serde_json::from_str(line).unwrap_or_else(|_| json!({"raw": err})))
    }
}

fn store_verb(env: &Env, key: Option<&str>, verb: &str) -> Result<Value, Value> {
    parse(with_key(env, key).args(["store", verb]).output().unwrap())
}

fn fingerprint_of(env: &Env, key: &str) -> String {
    let info = call_k(env, Some(key), "helper.info", json!({})).unwrap();
    // The key that seals new writes is the first in use.
    info["store"]["keys"][0].as_str().unwrap().to_string()
}

/// Everything the store holds as bytes: every file in the store's directory (the SQLite
/// file, its -wal, -shm, lock and refresh-lock sidecars), or every PostgreSQL row.
fn store_bytes(env: &Env) -> Vec<u8> {
    if on_pg() {
        return pg_store_text(&env.store()).into_bytes();
    }
    let mut out = vec![];
    for (_, bytes) in snapshot(env.dir.path()) {
        out.extend_from_slice(&bytes);
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Runs SQL against the store's tables (`{t}` stands for the table prefix).
fn exec_sql(env: &Env, sql: &str) {
    if on_pg() {
        let schema = pg_schema(&env.store());
        let sql = sql.replace("{t}", &format!("{schema}."));
        let mut c = pg_client();
        c.batch_execute(&sql).unwrap();
    } else {
        let c = rusqlite::Connection::open(env.store()).unwrap();
        c.execute_batch(&sql.replace("{t}", "")).unwrap();
    }
}

#[test]
fn a_thousand_planted_keys_never_reach_the_store_bytes() {
    let env = Env::new();
    let key = keygen();
    let mut s = Server::spawn(with_key(&env, Some(&key)), Stdio::inherit());
    let mut planted = vec![];
    for i in 0..1000 {
        let secret = format!(
            "sk-planted-{i:04}-{:016x}",
            (i as u64).wrapping_mul(0x9e3779b97f4a7c15)
        );
        let agent = if i % 10 == 0 {
            json!("cron")
        } else {
            json!(null)
        };
        match i % 3 {
            0 => s.ok(
                "profiles.put",
                json!({"profile": api_key(&format!("openai:k{i}"), &secret), "agent": agent}),
            ),
            1 => s.ok(
                "profiles.put",
                json!({"profile": {"id": format!("anthropic:t{i}"), "type": "token", "token": secret}, "agent": agent}),
            ),
            _ => s.ok(
                "profiles.put",
                json!({"profile": oauth(&format!("xai:o{i}"), &secret, &format!("{secret}-refresh")), "agent": agent}),
            ),
        };
        planted.push(secret);
    }
    // Secrets come back whole where they must.
    let r = s.ok(
        "auth.resolve",
        json!({"provider": "openai", "profileId": "openai:k3"}),
    );
    assert_eq!(r["secret"], planted[3]);
    let r = s.ok(
        "profiles.get",
        json!({"profileId": "xai:o2", "reveal": true}),
    );
    assert_eq!(r["profile"]["refresh"], format!("{}-refresh", planted[2]));
    let info = s.ok("helper.info", json!({}));
    assert_eq!(info["store"]["sealed"], true);
    assert_eq!(info["store"]["keys"].as_array().unwrap().len(), 1);
    let out = s.finish();
    assert!(out.status.success());
    let bytes = store_bytes(&env);
    assert!(!bytes.is_empty());
    for p in &planted {
        assert!(
            !contains(&bytes, p),
            "a planted key is in the store's bytes"
        );
    }
    assert!(contains(&bytes, "$msealed$1$"));
}

#[test]
fn without_a_key_a_sealed_store_answers_what_needs_no_secret() {
    let env = Env::new();
    let key = keygen();
    call_k(
        &env,
        Some(&key),
        "profiles.put",
        json!({"profile": api_key("openai:a", "sk-AAAA1111")}),
    )
    .unwrap();
    call_k(
        &env,
        Some(&key),
        "profiles.put",
        json!({"profile": api_key("openai:b", "sk-BBBB2222")}),
    )
    .unwrap();
    // Reads that need no secret work.
    let list = call_k(&env, None, "profiles.list", json!({})).unwrap();
    assert_eq!(list["profiles"].as_array().unwrap().len(), 2);
    assert!(list["profiles"][0]["secret"].is_null());
    call_k(&env, None, "auth.status", json!({})).unwrap();
    call_k(
        &env,
        None,
        "order.set",
        json!({"provider": "openai", "order": ["openai:b", "openai:a"]}),
    )
    .unwrap();
    let o = call_k(&env, None, "order.get", json!({"provider": "openai"})).unwrap();
    assert_eq!(o["order"], json!(["openai:b", "openai:a"]));
    // Without the key a profile is not "undecryptable": it is as usable as with it.
    assert_eq!(o["effective"][0]["usable"], true, "{o}");
    let st = call_k(&env, None, "auth.status", json!({})).unwrap();
    assert_eq!(
        st["providers"][0]["profiles"][0]["status"], "static",
        "{st}"
    );
    call_k(
        &env,
        None,
        "auth.report",
        json!({"profileId": "openai:b", "httpStatus": 429}),
    )
    .unwrap();
    let info = call_k(&env, None, "helper.info", json!({})).unwrap();
    assert_eq!(info["store"]["sealed"], true);
    // What needs a secret is store_sealed, not retryable, naming the key variables.
    for (m, p) in [
        ("auth.resolve", json!({"provider": "openai"})),
        ("auth.candidates", json!({"provider": "openai"})),
        (
            "profiles.get",
            json!({"profileId": "openai:a", "reveal": true}),
        ),
        ("store.export", json!({"reveal": true})),
        (
            "profiles.put",
            json!({"profile": api_key("openai:c", "sk-CCCC3333")}),
        ),
        ("store.seal", json!({})),
    ] {
        let e = call_k(&env, None, m, p).unwrap_err();
        assert_eq!(e["code"], -32060, "{m}: {e}");
        assert_eq!(e["data"]["kind"], "store_sealed", "{m}: {e}");
        assert_eq!(e["data"]["retryable"], false);
        assert!(e["data"]["hint"]
            .as_str()
            .unwrap()
            .contains("MODELAUTH_STORE_KEY"));
    }
    // Nothing was written by the refused put; export without reveal carries no secret.
    let list = call_k(&env, None, "profiles.list", json!({})).unwrap();
    assert_eq!(list["profiles"].as_array().unwrap().len(), 2);
    let doc = call_k(&env, None, "store.export", json!({}))
        .unwrap()
        .to_string();
    assert!(!doc.contains("sk-AAAA1111") && !doc.contains("$msealed$"));
    let doc = call_k(&env, Some(&key), "store.export", json!({}))
        .unwrap()
        .to_string();
    assert!(!doc.contains("sk-AAAA1111") && !doc.contains("$msealed$"));
    let doc = call_k(&env, Some(&key), "store.export", json!({"reveal": true}))
        .unwrap()
        .to_string();
    assert!(doc.contains("sk-AAAA1111"));
    // With the key, the order set without it is walked (b is in a cooldown: a is chosen).
    let r = call_k(
        &env,
        Some(&key),
        "auth.resolve",
        json!({"provider": "openai"}),
    )
    .unwrap();
    assert_eq!(r["secret"], "sk-AAAA1111");
}

#[test]
fn a_wrong_key_is_store_key_mismatch_and_writes_nothing() {
    let env = Env::new();
    let (right, wrong) = (keygen(), keygen());
    call_k(
        &env,
        Some(&right),
        "profiles.put",
        json!({"profile": api_key("openai:a", "sk-AAAA1111")}),
    )
    .unwrap();
    let expected = fingerprint_of(&env, &right);
    let before = (!on_pg()).then(|| std::fs::read(env.store()).unwrap());
    for (m, p) in [
        ("auth.resolve", json!({"provider": "openai"})),
        (
            "profiles.put",
            json!({"profile": api_key("openai:b", "sk-BBBB2222")}),
        ),
        ("providers.put", json!({"id": "acme"})),
    ] {
        let e = call_k(&env, Some(&wrong), m, p).unwrap_err();
        assert_eq!(e["data"]["kind"], "store_key_mismatch", "{m}: {e}");
        assert_eq!(e["code"], -32060);
        assert_eq!(e["data"]["expected"], json!([expected]));
        let given = e["data"]["given"][0].as_str().unwrap();
        assert!(given.starts_with("sha256:") && given != expected);
    }
    let list = call_k(&env, Some(&right), "profiles.list", json!({})).unwrap();
    assert_eq!(list["profiles"].as_array().unwrap().len(), 1);
    if let Some(before) = before {
        // The SQLite file is byte-for-byte what it was: nothing was written.
        assert!(std::fs::read(env.store()).unwrap() == before);
    }
}

#[test]
fn a_swapped_ciphertext_fails_only_for_its_profile() {
    let env = Env::new();
    let key = keygen();
    for (id, k) in [
        ("openai:a", "sk-AAAA1111"),
        ("openai:b", "sk-BBBB2222"),
        ("openai:c", "sk-CCCC3333"),
    ] {
        call_k(
            &env,
            Some(&key),
            "profiles.put",
            json!({"profile": api_key(id, k)}),
        )
        .unwrap();
    }
    call_k(
        &env,
        Some(&key),
        "order.set",
        json!({"provider": "openai", "order": ["openai:a", "openai:b", "openai:c"]}),
    )
    .unwrap();
    // Swap the bodies' keys of a and b (each envelope is bound to its own profile id).
    exec_sql(
        &env,
        "UPDATE {t}profiles SET body = (SELECT body FROM {t}profiles WHERE id = 'openai:b') WHERE id = 'openai:a';",
    );
    exec_sql(&env, "UPDATE {t}profiles SET body = replace(body, 'openai:b', 'openai:a') WHERE id = 'openai:a';");
    let r = call_k(
        &env,
        Some(&key),
        "auth.resolve",
        json!({"provider": "openai", "explain": true}),
    )
    .unwrap();
    assert_eq!(r["profileId"], "openai:b");
    assert_eq!(r["secret"], "sk-BBBB2222");
    assert_eq!(r["trace"][0]["profileId"], "openai:a");
    assert_eq!(r["trace"][0]["reason"], "undecryptable");
    let o = call_k(&env, Some(&key), "order.get", json!({"provider": "openai"})).unwrap();
    assert_eq!(o["effective"][0]["reason"], "undecryptable");
    // The damaged profile shows no secret and is not revealed; the others are.
    let g = call_k(
        &env,
        Some(&key),
        "profiles.get",
        json!({"profileId": "openai:a", "reveal": true}),
    )
    .unwrap();
    assert!(g["profile"]["secret"].is_null() && g["profile"]["key"].is_null());
    let g = call_k(
        &env,
        Some(&key),
        "profiles.get",
        json!({"profileId": "openai:c", "reveal": true}),
    )
    .unwrap();
    assert_eq!(g["profile"]["key"], "sk-CCCC3333");
    // A flipped character in c's envelope: c fails too, b still resolves.
    exec_sql(
        &env,
        "UPDATE {t}profiles SET body = replace(body, '\"key\":\"$msealed$1$', '\"key\":\"$msealed$1$0') WHERE id = 'openai:c';",
    );
    let e = call_k(
        &env,
        Some(&key),
        "auth.resolve",
        json!({"provider": "openai", "profileId": "openai:c"}),
    )
    .unwrap_err();
    assert!(e.to_string().contains("undecryptable"), "{e}");
    let r = call_k(
        &env,
        Some(&key),
        "auth.resolve",
        json!({"provider": "openai"}),
    )
    .unwrap();
    assert_eq!(r["secret"], "sk-BBBB2222");
}

#[test]
fn rotation_with_two_keys_configured() {
    let env = Env::new();
    let (old, new) = (keygen(), keygen());
    let mut s = Server::spawn(with_key(&env, Some(&old)), Stdio::inherit());
    for j in 0..450 {
        s.put_key(&format!("openai:k{j}"), &secret_of(j));
    }
    assert!(s.finish().status.success());
    let old_fp = fingerprint_of(&env, &old);
    let both = format!("{new}\n{old}");
    // Before the rekey, a helper with both keys writes under the store's key (the old).
    let r = store_verb(&env, Some(&both), "rekey").unwrap();
    assert_eq!(r["sealed"], true);
    assert_eq!(r["profiles"], 450);
    assert!(r["transactions"].as_u64().unwrap() >= 3, "{r}");
    assert_eq!(r["undecryptable"], json!([]));
    let new_fp = r["keys"][0].as_str().unwrap().to_string();
    assert_eq!(r["keys"].as_array().unwrap().len(), 1);
    assert_ne!(new_fp, old_fp);
    // The old key alone no longer opens the store; the new one alone does.
    let e = call_k(
        &env,
        Some(&old),
        "auth.resolve",
        json!({"provider": "openai"}),
    )
    .unwrap_err();
    assert_eq!(e["data"]["kind"], "store_key_mismatch");
    assert_eq!(e["data"]["expected"], json!([new_fp]));
    let r = call_k(
        &env,
        Some(&new),
        "auth.resolve",
        json!({"provider": "openai", "profileId": "openai:k7"}),
    )
    .unwrap();
    assert_eq!(r["secret"], secret_of(7));
    let bytes = store_bytes(&env);
    assert!(!contains(&bytes, &format!("$msealed$1${}$", &old_fp[7..])));
}

fn secret_of(i: usize) -> String {
    format!("sk-rot-{i:05}-ABCDEFGH")
}

#[test]
fn rekey_while_helpers_resolve_and_write_loses_nothing() {
    let env = Env::new();
    let (old, new) = (keygen(), keygen());
    {
        let mut s = Server::spawn(with_key(&env, Some(&old)), Stdio::inherit());
        for j in 0..300 {
            s.put_key(&format!("openai:k{j}"), &secret_of(j));
        }
        s.finish();
    }
    let both = format!("{new}\n{old}");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = vec![];
    // 8 helper processes (issue 22: "while 8 processes … resolve and write").
    for w in 0..8 {
        let mut s = Server::spawn(with_key(&env, Some(&both)), Stdio::inherit());
        let stop = stop.clone();
        workers.push(std::thread::spawn(move || {
            let (mut failed, mut written) = (0u32, vec![]);
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || n < 5 {
                let id = format!("openai:w{w}n{n}");
                let r = s.request(
                    "profiles.put",
                    json!({"profile": api_key(&id, &format!("sk-w{w}-{n}-ZZZZ"))}),
                );
                if r.get("error").is_some() {
                    failed += 1;
                } else {
                    written.push(id);
                }
                let r = s.request(
                    "auth.resolve",
                    json!({"provider": "openai", "profileId": format!("openai:k{}", n % 300)}),
                );
                if r.get("error").is_some() || r["result"]["secret"] != secret_of(n % 300) {
                    failed += 1;
                }
                n += 1;
            }
            s.finish();
            (failed, written)
        }));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let r = store_verb(&env, Some(&both), "rekey").unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut all = vec![];
    for w in workers {
        let (failed, written) = w.join().unwrap();
        assert_eq!(failed, 0, "requests failed during the rekey");
        all.extend(written);
    }
    let new_fp = r["keys"][0].as_str().unwrap().to_string();
    assert_eq!(r["keys"].as_array().unwrap().len(), 1);
    // Every write survived and opens under the new key alone.
    let list = call_k(&env, Some(&new), "profiles.list", json!({})).unwrap();
    let ids: std::collections::HashSet<String> = list["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    for id in &all {
        assert!(ids.contains(id), "{id} lost");
    }
    eprintln!(
        "rekey under load: 8 serve processes, {} acknowledged writes and as many resolves, 0 failed, 0 lost; rekey rewrote {} profiles in {} transactions",
        all.len(),
        r["profiles"],
        r["transactions"]
    );
    let bytes = store_bytes(&env);
    let info = call_k(&env, Some(&new), "helper.info", json!({})).unwrap();
    assert_eq!(info["store"]["keys"], json!([new_fp]));
    assert!(contains(&bytes, &format!("$msealed$1${}$", &new_fp[7..])));
    let last = all.last().unwrap();
    let g = call_k(
        &env,
        Some(&new),
        "profiles.get",
        json!({"profileId": last, "reveal": true}),
    )
    .unwrap();
    assert!(g["profile"]["key"].as_str().unwrap().starts_with("sk-w"));
}

#[test]
fn seal_and_unseal_an_existing_store() {
    let env = Env::new();
    let key = keygen();
    call_k(
        &env,
        None,
        "profiles.put",
        json!({"profile": api_key("openai:a", "sk-PLAINAAAA1111")}),
    )
    .unwrap();
    call_k(
        &env,
        None,
        "profiles.put",
        json!({"profile": oauth("xai:o", "at-PLAINOOOO", "rt-PLAINOOOO")}),
    )
    .unwrap();
    call_k(
        &env,
        None,
        "providers.put",
        json!({"id": "acme", "aliases": ["acme-x"]}),
    )
    .unwrap();
    assert!(contains(&store_bytes(&env), "sk-PLAINAAAA1111"));
    let r = store_verb(&env, Some(&key), "seal").unwrap();
    assert_eq!(
        (
            r["sealed"].clone(),
            r["profiles"].clone(),
            r["plaintextSecrets"].clone()
        ),
        (json!(true), json!(2), json!(0))
    );
    if !on_pg() {
        // secure_delete: the replaced rows are overwritten, not left in free pages.
        let bytes = store_bytes(&env);
        for s in ["sk-PLAINAAAA1111", "at-PLAINOOOO", "rt-PLAINOOOO"] {
            assert!(!contains(&bytes, s), "{s}");
        }
    }
    // Providers survive sealing (authenticated under the key) and aliases still work.
    let p = call_k(&env, Some(&key), "providers.get", json!({"id": "acme-x"})).unwrap();
    assert_eq!(p["provider"]["id"], "acme");
    let r = call_k(
        &env,
        Some(&key),
        "auth.resolve",
        json!({"provider": "openai"}),
    )
    .unwrap();
    assert_eq!(r["secret"], "sk-PLAINAAAA1111");
    // Sealing twice changes nothing.
    let r = store_verb(&env, Some(&key), "seal").unwrap();
    assert_eq!(r["profiles"], 0);
    let r = store_verb(&env, Some(&key), "unseal").unwrap();
    assert_eq!(r["sealed"], false);
    assert_eq!(r["keys"], json!([]));
    let r = call_k(&env, None, "auth.resolve", json!({"provider": "xai"})).unwrap();
    assert_eq!(r["secret"], "at-PLAINOOOO");
    let p = call_k(&env, None, "providers.get", json!({"id": "acme-x"})).unwrap();
    assert_eq!(p["provider"]["id"], "acme");
    let e = store_verb(&env, Some(&key), "rekey").unwrap_err();
    assert_eq!(e["data"]["kind"], "invalid_params");
}

#[test]
fn rows_planted_without_the_key_are_ignored() {
    let env = Env::new();
    let key = keygen();
    call_k(
        &env,
        Some(&key),
        "profiles.put",
        json!({"profile": api_key("openai:a", "sk-AAAA1111")}),
    )
    .unwrap();
    call_k(
        &env,
        Some(&key),
        "providers.put",
        json!({"id": "acme", "oauth": {"tokenUrl": "https://good.example/token", "clientId": "c"}}),
    )
    .unwrap();
    // A database writer without the key changes the token URL and plants an exec provider.
    exec_sql(
        &env,
        "UPDATE {t}providers SET body = replace(body, 'good.example', 'evil.example');",
    );
    exec_sql(
        &env,
        r#"INSERT INTO {t}settings (key, value) VALUES ('secretProviders', '{"evil":{"source":"exec","command":"/bin/sh","args":["-c","id"]}}');"#,
    );
    let list = call_k(&env, Some(&key), "providers.list", json!({}))
        .unwrap()
        .to_string();
    assert!(!list.contains("evil.example"), "{list}");
    assert!(
        !list.contains("\"acme\""),
        "a tampered provider row is ignored: {list}"
    );
    let s = call_k(&env, Some(&key), "settings.get", json!({}))
        .unwrap()
        .to_string();
    assert!(!s.contains("/bin/sh"), "{s}");
    // The reserved state row is never shown.
    assert!(!s.contains("storeId"));
}

#[test]
fn key_sources_file_command_and_refusals() {
    if skip_on_pg("key files are local files; the store backend does not matter") {
        return;
    }
    let env = Env::new();
    let key = keygen();
    let kf = env.dir.path().join("store-key");
    std::fs::write(&kf, format!("# modelauth store key\n{key}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&kf, std::fs::Permissions::from_mode(0o600)).unwrap();
    let put = |c: &mut Command| {
        parse(call_with_stdin(
            std::mem::replace(c, Command::new("true")),
            "profiles.put",
            &json!({"profile": api_key("openai:a", "sk-AAAA1111")}),
        ))
    };
    let mut c = with_key(&env, None);
    c.env("MODELAUTH_STORE_KEY_FILE", &kf);
    put(&mut c).unwrap();
    // The command source opens it too (argv, no shell).
    let mut c = with_key(&env, None);
    c.env(
        "MODELAUTH_STORE_KEY_COMMAND",
        json!(["/bin/cat", kf]).to_string(),
    );
    let r = parse(call_with_stdin(
        c,
        "auth.resolve",
        &json!({"provider": "openai"}),
    ))
    .unwrap();
    assert_eq!(r["secret"], "sk-AAAA1111");
    // systemd's credentials directory, found without configuration.
    let creds = env.dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    std::fs::copy(&kf, creds.join("modelauth-store-key")).unwrap();
    let mut c = with_key(&env, None);
    c.env("CREDENTIALS_DIRECTORY", &creds);
    let r = parse(call_with_stdin(
        c,
        "auth.resolve",
        &json!({"provider": "openai"}),
    ))
    .unwrap();
    assert_eq!(r["secret"], "sk-AAAA1111");
    // A key file group can read is refused, naming the file, never the key.
    std::fs::set_permissions(&kf, std::fs::Permissions::from_mode(0o640)).unwrap();
    let mut c = with_key(&env, None);
    c.env("MODELAUTH_STORE_KEY_FILE", &kf);
    let out = call_with_stdin(c, "auth.resolve", &json!({"provider": "openai"}));
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    let e = parse(out).unwrap_err();
    assert_eq!(e["data"]["kind"], "store_permissions");
    assert!(e["message"].as_str().unwrap().contains("0640"));
    assert!(!text.contains(&key[5..]));
    // Garbage is not a key; the error does not echo it.
    let e = call_k(
        &env,
        Some("msk1-notakeyatallsecretish"),
        "auth.resolve",
        json!({"provider": "openai"}),
    )
    .unwrap_err();
    assert_eq!(e["data"]["kind"], "store_sealed");
    assert!(!e.to_string().contains("notakeyatall"));
}

#[test]
fn keygen_prints_distinct_keys_of_the_documented_format() {
    let (a, b) = (keygen(), keygen());
    assert_ne!(a, b);
    for k in [a, b] {
        assert_eq!(k.len(), 48);
        assert!(k.starts_with("msk1-"));
        assert!(k[5..]
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }
}

#[test]
fn importing_a_sealed_store_file_needs_its_key() {
    // The source is always a SQLite file; the destination is the suite's backend.
    let src = tempfile::tempdir().unwrap();
    let src_store = src.path().join("src.db");
    let key = keygen();
    let put = |k: Option<&str>, id: &str, secret: &str| {
        let mut c = Command::new(BIN);
        c.env_clear()
            .env("HOME", src.path())
            .arg("--store")
            .arg(&src_store);
        if let Some(k) = k {
            c.env("MODELAUTH_STORE_KEY", k);
        }
        let out = call_with_stdin(c, "profiles.put", &json!({"profile": api_key(id, secret)}));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    put(Some(&key), "openai:a", "sk-IMPORTAAAA");
    put(Some(&key), "openai:b", "sk-IMPORTBBBB");
    let env = Env::new();
    let params = json!({"path": src_store, "format": "modelauth-store"});
    // Without the key, or with another, nothing is written.
    let e = call_k(&env, None, "store.import", params.clone()).unwrap_err();
    assert_eq!(e["data"]["kind"], "store_sealed", "{e}");
    let e = call_k(&env, Some(&keygen()), "store.import", params.clone()).unwrap_err();
    assert_eq!(e["data"]["kind"], "store_key_mismatch", "{e}");
    let list = call_k(&env, None, "profiles.list", json!({})).unwrap();
    assert_eq!(list["profiles"], json!([]));
    // With it, the secrets arrive, sealed again in this store (a helper with a key
    // configured seals what it writes), and the source's state row does not travel.
    let r = call_k(&env, Some(&key), "store.import", params).unwrap();
    assert_eq!(r["profiles"].as_array().unwrap().len(), 2, "{r}");
    let r = call_k(
        &env,
        Some(&key),
        "auth.resolve",
        json!({"provider": "openai", "profileId": "openai:b"}),
    )
    .unwrap();
    assert_eq!(r["secret"], "sk-IMPORTBBBB");
    assert!(!contains(&store_bytes(&env), "sk-IMPORTBBBB"));
    let s = call_k(&env, Some(&key), "settings.get", json!({}))
        .unwrap()
        .to_string();
    assert!(!s.contains("storeId"));
}

#[test]
fn check_warns_about_plaintext_in_a_postgres_store_with_the_same_exit_code() {
    let env = Env::new();
    call_k(
        &env,
        None,
        "profiles.put",
        json!({"profile": api_key("openai:a", "sk-CHECKAAAA")}),
    )
    .unwrap();
    let run = |key: Option<&str>, json: bool| {
        let mut c = with_key(&env, key);
        c.arg("check");
        if json {
            c.arg("--json");
        }
        c.output().unwrap()
    };
    let plain = run(None, false);
    let text = String::from_utf8_lossy(&plain.stdout).to_string();
    let j: Value = serde_json::from_slice(&run(None, true).stdout).unwrap();
    if on_pg() {
        assert!(
            text.contains("warning:") && text.contains("plaintext"),
            "{text}"
        );
        assert_eq!(j["plaintextSecretsAtRest"], 1);
        assert!(j["warnings"][0].as_str().unwrap().contains("store seal"));
    } else {
        assert!(!text.contains("plaintext"), "{text}");
        assert!(j.get("plaintextSecretsAtRest").is_none());
    }
    assert_eq!(plain.status.code(), Some(0));
    let key = keygen();
    store_verb(&env, Some(&key), "seal").unwrap();
    let sealed = run(Some(&key), false);
    assert_eq!(sealed.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&sealed.stdout).contains("warning:"));
    let j: Value = serde_json::from_slice(&run(None, true).stdout).unwrap();
    if on_pg() {
        assert_eq!(j["plaintextSecretsAtRest"], 0);
        assert!(j.get("warnings").is_none());
    }
}
