//! Did-you-mean at the command line: the protocol's suggestion ([`crate::protocol::suggest`])
//! with a hint that names the verb that fixes it (`modelauth add`, `modelauth list`).

use crate::core::error::{ErrorKind, RpcError};
use crate::protocol::dispatch::Dispatcher;
pub(crate) use crate::protocol::suggest::{known_ids, nearest};

/// [`crate::protocol::suggest::did_you_mean`], with the hint for a person at a shell.
pub(crate) fn did_you_mean(
    d: &Dispatcher,
    e: RpcError,
    provider: Option<&str>,
    profile_id: Option<&str>,
    agent: Option<&str>,
) -> RpcError {
    let guess = e
        .extra
        .get("didYouMean")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let e = crate::protocol::suggest::did_you_mean(d, e, provider, profile_id, agent);
    let guess = guess.or_else(|| {
        e.extra
            .get("didYouMean")
            .and_then(|v| v.as_str())
            .map(str::to_string)
    });
    // At the command line, the way to store one is `modelauth add`, not hand-built JSON.
    let cli_hint = match (e.kind, provider) {
        (ErrorKind::MissingCredential, Some(p)) => format!(
            "store one with: printf '%s' \"$KEY\" | modelauth add {}",
            p.trim().to_ascii_lowercase()
        ),
        (ErrorKind::UnknownProfile, _) => {
            "`modelauth list` shows the stored ids; `modelauth add PROVIDER:NAME` stores one"
                .to_string()
        }
        _ => return e,
    };
    let hint = match guess {
        Some(g) => format!("did you mean `{g}`? Otherwise: {cli_hint}"),
        None => cli_hint,
    };
    e.with_hint(hint)
}
