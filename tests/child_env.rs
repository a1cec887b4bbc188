//! What `modelauth exec` and `call` do with the environment and argv (issue 20): a
//! credential never goes into a loader or start-up variable (`exec --env LD_PRELOAD=P`,
//! a provider's `envVars`), the child does not inherit the store's own password
//! (`PGPASSWORD`, a `MODELAUTH_STORE` URL with one), and `call`'s argv warning knows the
//! usual spellings of a key (`apiKey`, `api_key`, `clientSecret`).

mod common;

use common::Env;
use serde_json::json;

#[test]
fn a_credential_never_goes_into_a_loader_variable() {
    let env = Env::new();
    env.put_key("openai:a", "sk-loader-test-1");
    for var in [
        "LD_PRELOAD",
        "LD_AUDIT",
        "DYLD_INSERT_LIBRARIES",
        "GLIBC_TUNABLES",
    ] {
        let out = env
            .command()
            .args(["exec", "--env", &format!("{var}=openai"), "--", "env"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{var}: {out:?}");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.contains("sk-loader-test-1"), "{all}");
    }
    let e = env
        .call(
            "providers.put",
            json!({"id": "acme", "envVars": ["ACME_KEY", "LD_PRELOAD"]}),
        )
        .unwrap_err();
    assert_eq!(e["data"]["kind"], "invalid_params", "{e}");
    assert_eq!(e["data"]["pointer"], "/envVars/1", "{e}");
}

#[test]
fn the_child_does_not_inherit_the_stores_password() {
    let env = Env::with_vars(&[("PGPASSWORD", "pg-store-password-1"), ("KEEP_ME", "yes")]);
    env.put_key("openai:a", "sk-child-env-1");
    let out = env
        .command()
        .args(["exec", "--provider", "openai", "--", "env"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("OPENAI_API_KEY=sk-child-env-1"), "{text}");
    assert!(text.contains("KEEP_ME=yes"), "{text}");
    assert!(!text.contains("pg-store-password-1"), "{text}");
}

#[test]
fn the_argv_warning_knows_api_key_spellings() {
    let env = Env::new();
    for field in ["apiKey", "api_key", "clientSecret", "key"] {
        let params = json!({"profile": {"id": "openai:w", "type": "api_key", "key": "sk-argv-1",
                                         "metadata": {field: "sk-argv-secret-2"}}});
        let out = env
            .command()
            .args(["call", "profiles.put", &params.to_string()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("carry a secret"), "{field}: {err}");
        if field != "key" {
            assert!(
                err.contains(&format!("/profile/metadata/{field}")),
                "{field}: {err}"
            );
        }
    }
}

#[test]
fn get_into_a_full_device_fails() {
    let env = Env::new();
    env.put_key("openai:a", "sk-dev-full-1");
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = env
        .command()
        .args(["get", "openai"])
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot write to stdout"), "{err}");
    assert!(!err.contains("sk-dev-full-1"), "{err}");
}
