//! Resolving a SecretRef to its value at `auth.resolve` time (protocol §5.1).
//!
//! The value is never stored, logged or put in an error; errors name the ref only.
//! The `file` source is in `file_ref.rs`, `exec` in `exec_ref.rs` (running the helper)
//! and `exec_output.rs` (reading what it printed, pure).

use crate::core::error::{ErrorKind, RpcError};

use super::exec_ref::{resolve_exec, ExecSpec};
use super::file_ref::resolve_file;
use crate::core::profile::{SecretRef, SecretSource};
use crate::core::secret_value::{normalize_secret_input, Secret};
use crate::core::settings::{SecretProvider, Settings};

/// A `secret_unavailable` error naming the ref (never its value).
pub(super) fn unavailable(r: &SecretRef, reason: &str, message: String) -> RpcError {
    RpcError::new(ErrorKind::SecretUnavailable, message)
        .with("ref", r)
        .with("reason", reason)
}

/// How a ref is named in messages: `source:provider:id`.
pub(super) fn describe(r: &SecretRef) -> String {
    let source = match r.source {
        SecretSource::Env => "env",
        SecretSource::File => "file",
        SecretSource::Exec => "exec",
        SecretSource::Store => "store",
    };
    format!("{source}:{}:{}", r.provider, r.id)
}

/// Resolves `r` with the secret providers of `settings`.
///
/// Errors: `secret_unavailable` (-32030) naming the ref (never the value), with `data.ref`
/// and `data.reason`: `env_missing`, `provider_unknown`, `invalid_provider`, `invalid_id`,
/// `invalid_value`, `file_unreadable`, `insecure_file`, `bad_file`, `id_missing`,
/// `exec_failed`, `bad_output`, `output_too_large`, `timeout` (retryable),
/// `untrusted_command` (PROTOCOL §11: the command's owner, mode, directory, or on a shared
/// store `$MODELAUTH_TRUSTED_DIRS`; `data.trust` says which). A failing exec
/// helper's stderr (first 4 KiB, redacted) goes to modelauth's stderr.
pub(crate) fn resolve_ref(r: &SecretRef, settings: &Settings) -> Result<Secret, RpcError> {
    match r.source {
        SecretSource::Env => resolve_env(r, settings),
        SecretSource::File => match settings.secret_providers.get(&r.provider) {
            Some(SecretProvider::File { path, mode }) => resolve_file(r, path, mode),
            _ => Err(provider_unknown(r, "file")),
        },
        SecretSource::Exec => match settings.secret_providers.get(&r.provider) {
            Some(SecretProvider::Exec {
                command,
                args,
                timeout_ms,
                pass_env,
                json_only,
            }) => resolve_exec(
                r,
                &ExecSpec {
                    command,
                    args,
                    timeout_ms: *timeout_ms,
                    pass_env,
                    json_only: *json_only,
                },
            ),
            _ => Err(provider_unknown(r, "exec")),
        },
        SecretSource::Store => match settings
            .named_secrets
            .get(&(r.provider.clone(), r.id.clone()))
        {
            Some(v) => Ok(v.clone()),
            None => Err(unavailable(
                r,
                "store_entry_missing",
                format!(
                    "the store holds no named secret for ref {}",
                    describe(r)
                ),
            )
            .with_hint(
                "import the OpenClaw state that holds it (store.import), or point the profile at another source",
            )),
        },
    }
}

fn provider_unknown(r: &SecretRef, source: &str) -> RpcError {
    unavailable(
        r,
        "provider_unknown",
        format!(
            "ref {} names secret provider `{}`, which is not a `{source}` entry of settings.secretProviders",
            describe(r),
            r.provider
        ),
    )
    .with_hint(format!(
        "settings.set {{\"settings\": {{\"secretProviders\": {{\"{}\": {{\"source\": \"{source}\", ...}}}}}}}}",
        r.provider
    ))
}

/// `invalid_value`: the value is empty or has control characters.
pub(super) fn invalid_value(r: &SecretRef) -> RpcError {
    unavailable(
        r,
        "invalid_value",
        format!(
            "the value of ref {} is empty or has control characters",
            describe(r)
        ),
    )
}

/// An `env` ref: the variable `r.id` of this process (provider `default` or an `env`
/// entry of `settings.secretProviders`).
fn resolve_env(r: &SecretRef, settings: &Settings) -> Result<Secret, RpcError> {
    if r.provider != "default"
        && !matches!(
            settings.secret_providers.get(&r.provider),
            Some(SecretProvider::Env {})
        )
    {
        return Err(unavailable(
            r,
            "provider_unknown",
            format!(
                "secret provider `{}` of ref {} is not in settings.secretProviders",
                r.provider,
                describe(r)
            ),
        ));
    }
    let v = std::env::var(&r.id).unwrap_or_default();
    if v.is_empty() {
        return Err(unavailable(
            r,
            "env_missing",
            format!(
                "environment variable {} (ref {}) is not set or empty",
                r.id,
                describe(r)
            ),
        )
        .with_hint(format!(
            "export {} in the environment of the process that spawns modelauth",
            r.id
        )));
    }
    normalize_secret_input(&v).map_err(|_| {
        unavailable(
            r,
            "invalid_value",
            format!(
                "the value of ref {} is empty or has control characters",
                describe(r)
            ),
        )
    })
}
