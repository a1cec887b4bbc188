//! Resolving a SecretRef to its value at `auth.resolve` time (PROTOCOL §5.1).
//!
//! The value is never stored, logged or put in an error; errors name the ref only.

use crate::error::{ErrorKind, RpcError};
use crate::profile::{SecretRef, SecretSource};
use crate::secret::{normalize_secret_input, Secret};
use crate::settings::{SecretProvider, Settings};

fn unavailable(r: &SecretRef, reason: &str, message: String) -> RpcError {
    RpcError::new(ErrorKind::SecretUnavailable, message)
        .with("ref", r)
        .with("reason", reason)
}

fn describe(r: &SecretRef) -> String {
    let source = match r.source {
        SecretSource::Env => "env",
        SecretSource::File => "file",
        SecretSource::Exec => "exec",
    };
    format!("{source}:{}:{}", r.provider, r.id)
}

/// Resolves `r` with the secret providers of `settings`.
///
/// Errors: `secret_unavailable` (-32030) with `data.ref` and `data.reason`
/// (`env_missing`, `provider_unknown`, `unsupported`, `invalid_value`).
pub fn resolve_ref(r: &SecretRef, settings: &Settings) -> Result<Secret, RpcError> {
    match r.source {
        SecretSource::Env => {
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
        SecretSource::File | SecretSource::Exec => Err(unavailable(
            r,
            "unsupported",
            format!(
                "ref {}: file and exec secret providers are not supported by this version",
                describe(r)
            ),
        )),
    }
}
