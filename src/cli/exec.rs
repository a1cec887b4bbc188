//! `modelauth get` and `modelauth exec`: resolve credentials, then print one or hand them to a
//! command in its environment (never in argv), replacing this process with `exec(2)`.

use super::{print_error, EX_USAGE};
use crate::core::error::RpcError;
use crate::protocol::dispatch::Dispatcher;
use std::io::{self};

/// The parts of an `auth.resolve` result that `get` and `exec` use.
#[derive(serde::Deserialize)]
pub(super) struct Resolved {
    pub(super) provider: String,
    pub(super) secret: String,
}

/// Runs `auth.resolve` for `get` and `exec`.
pub(super) fn resolve_secret(
    d: &Dispatcher,
    provider: &str,
    agent: Option<&str>,
    model: Option<&str>,
    profile_id: Option<&str>,
) -> Result<Resolved, RpcError> {
    let mut params = serde_json::json!({ "provider": provider });
    if let Some(a) = agent {
        params["agent"] = a.into();
    }
    if let Some(m) = model {
        params["model"] = m.into();
    }
    if let Some(p) = profile_id {
        params["profileId"] = p.into();
    }
    let raw = d.call("auth.resolve", Some(&params.to_string()))?;
    serde_json::from_str(raw.get())
        .map_err(|_| RpcError::internal("auth.resolve returned an unexpected result"))
}

/// The variable `exec --provider P` sets: the first of P's registered `envVars`, else
/// [`default_env_var`] of the normalised provider id.
fn provider_env_var(d: &Dispatcher, provider: &str) -> String {
    let registered = d
        .call(
            "providers.get",
            Some(&serde_json::json!({ "id": provider }).to_string()),
        )
        .ok()
        .and_then(|r| serde_json::from_str::<serde_json::Value>(r.get()).ok())
        .and_then(|v| {
            v["provider"]["envVars"]
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str())
                        // A store written before these were refused: never a loader variable.
                        .find(|x| !crate::core::envkeys::is_reserved_env_var(x))
                })
                .map(str::to_string)
        });
    registered.unwrap_or_else(|| default_env_var(provider))
}

/// `<BASE>_API_KEY` of protocol §6 for a normalised provider id (`GEMINI_API_KEY` for
/// google). Pure.
pub(crate) fn default_env_var(provider: &str) -> String {
    format!("{}_API_KEY", crate::core::envkeys::env_base(provider))
}

/// The variables that hold (or lead to) the store's own credentials, removed from the
/// environment of `exec`'s child: the PostgreSQL password and passfile, and the store key
/// sources of PROTOCOL §9 (a key, a key file, a key command). `MODELAUTH_STORE` goes too
/// when it carries a password.
pub(super) const STORE_CREDENTIAL_VARS: [&str; 5] = [
    "PGPASSWORD",
    "PGPASSFILE",
    "MODELAUTH_STORE_KEY",
    "MODELAUTH_STORE_KEY_FILE",
    "MODELAUTH_STORE_KEY_COMMAND",
];

/// `modelauth exec`: resolves every credential first (nothing runs unless all resolve),
/// then replaces this process with COMMAND (execvp(3): PATH lookup, no shell) with the
/// credentials added to the inherited environment. Returns only on failure: 1 when a
/// provider cannot be resolved (error object on stderr), 127 when COMMAND is not found,
/// 126 when it cannot be executed.
pub(super) fn exec(
    d: Dispatcher,
    agent: Option<&str>,
    model: Option<&str>,
    providers: &[String],
    bindings: &[(String, String)],
    command: &[std::ffi::OsString],
) -> i32 {
    let Some((program, args)) = command.split_first() else {
        eprintln!("modelauth exec: no COMMAND after `--`");
        return EX_USAGE;
    };
    let mut vars: Vec<(String, crate::core::secret_value::Secret)> = vec![];
    for p in providers {
        match resolve_secret(&d, p, agent, model, None) {
            Ok(r) => {
                let var = provider_env_var(&d, &r.provider);
                vars.push((var, crate::core::secret_value::Secret::new(r.secret)));
            }
            Err(e) => return print_error(&e),
        }
    }
    for (var, p) in bindings {
        match resolve_secret(&d, p, agent, model, None) {
            Ok(r) => vars.push((
                var.clone(),
                crate::core::secret_value::Secret::new(r.secret),
            )),
            Err(e) => return print_error(&e),
        }
    }
    // Close the store before the process image is replaced.
    drop(d);
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    // The store's own credentials are not the child's (issue 20): it gets the credentials
    // it asked for, not the authority over the whole store.
    for var in STORE_CREDENTIAL_VARS {
        cmd.env_remove(var);
    }
    if let Ok(s) = std::env::var("MODELAUTH_STORE") {
        if crate::store::location::redact_location(&s) != s {
            cmd.env_remove("MODELAUTH_STORE");
        }
    }
    for (var, secret) in &vars {
        cmd.env(var, secret.expose());
    }
    use std::os::unix::process::CommandExt;
    let e = cmd.exec();
    let code = match e.kind() {
        io::ErrorKind::NotFound => 127,
        _ => 126,
    };
    eprintln!(
        "modelauth exec: cannot run {}: {e}",
        program.to_string_lossy()
    );
    code
}
