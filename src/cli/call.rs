//! `modelauth call METHOD [PARAMS | -]`: one request, its result on stdout, its error object
//! on stderr (exit 1).

use std::io::{self, Read, Write as _};

use super::{print_error, secret_pointers, write_stdout};
use crate::core::error::{ErrorKind, RpcError};
use crate::protocol::dispatch::Dispatcher;
use crate::protocol::transport;

/// Runs `method` with `params` (a JSON object in argv, `-` for stdin, or none) and prints
/// the result; returns the exit code.
pub(super) fn call(d: &Dispatcher, method: &str, params: Option<&str>) -> i32 {
    let params = match read_params(method, params) {
        Ok(p) => p,
        Err(e) => return print_error(&e),
    };
    let params = match check_params(params.as_deref()) {
        Ok(p) => p,
        Err(e) => return print_error(&e),
    };
    let no_params = params.is_none();
    match d.call(method, params) {
        Ok(r) => write_stdout(&format!("{}\n", r.get()), 0),
        // Params forgotten (or piped without `-`, which leaves stdin unread): say so
        // first, instead of only naming the missing member.
        Err(e) if no_params && e.kind == ErrorKind::InvalidParams => {
            let hint = e
                .hint
                .clone()
                .unwrap_or_else(|| e.kind.default_hint().to_string());
            print_error(&e.with_hint(format!(
                "no params were given (stdin is read only with `-`): modelauth call {method} '{{...}}', or pipe them into modelauth call {method} -; {hint}"
            )))
        }
        // The did-you-mean of an unknown provider or profile id comes with the
        // error (Dispatcher::call); the hint stays the method's.
        Err(e) => print_error(&e),
    }
}

/// The params text: stdin for `-` (bounded like a `serve` line, at most
/// --max-message-bytes' default), else argv, warning on stderr when argv carries a secret.
///
/// Errors: `invalid_params` (stdin unreadable), `message_too_large`.
fn read_params(method: &str, params: Option<&str>) -> Result<Option<String>, RpcError> {
    match params {
        Some("-") => {
            let cap = transport::DEFAULT_MAX_MESSAGE_BYTES as u64;
            let mut s = String::new();
            if let Err(e) = io::stdin().take(cap + 1).read_to_string(&mut s) {
                return Err(RpcError::invalid_params(format!(
                    "cannot read params from stdin: {e}"
                )));
            }
            if s.len() as u64 > cap {
                zeroize::Zeroize::zeroize(&mut s);
                return Err(RpcError::new(
                    ErrorKind::MessageTooLarge,
                    format!("params on stdin are larger than {cap} bytes"),
                )
                .with("maxMessageBytes", cap)
                .with_hint("send smaller params, or use `serve`"));
            }
            Ok(Some(s))
        }
        Some(p) => {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(p) {
                let at = secret_pointers(&v);
                if !at.is_empty() {
                    let _ = writeln!(
                        io::stderr(),
                        "modelauth: warning: the params in argv carry a secret ({}); any user can read argv (ps, /proc/PID/cmdline): pass them on stdin instead: `modelauth call {method} -`",
                        at.join(", ")
                    );
                }
            }
            Ok(Some(p.to_string()))
        }
        None => Ok(None),
    }
}

/// The params to send: none for absent, blank or `null`; a JSON object as is.
///
/// Errors: `invalid_params` (valid JSON but not an object), `parse_error` (not JSON).
fn check_params(params: Option<&str>) -> Result<Option<&str>, RpcError> {
    let Some(p) = params.map(str::trim).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    match serde_json::from_str::<&serde_json::value::RawValue>(p) {
        Ok(_) if p.starts_with('{') => Ok(Some(p)),
        Ok(_) if p == "null" => Ok(None),
        Ok(_) => Err(RpcError::invalid_params(
            "params must be a JSON object of named params",
        )),
        Err(e) => Err(RpcError::new(
            ErrorKind::ParseError,
            format!("params are not valid JSON: {}", transport::json_error_text(&e)),
        )
        .with_hint("give one JSON object in single quotes, e.g. '{\"provider\":\"openai\"}', or `-` and the object on stdin")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_an_object_or_nothing() {
        assert_eq!(check_params(None).unwrap(), None);
        assert_eq!(check_params(Some("  ")).unwrap(), None);
        assert_eq!(check_params(Some("null")).unwrap(), None);
        assert_eq!(
            check_params(Some(" {\"a\":1} ")).unwrap(),
            Some("{\"a\":1}")
        );
        assert_eq!(
            check_params(Some("[1]")).unwrap_err().kind,
            ErrorKind::InvalidParams
        );
        assert_eq!(
            check_params(Some("{nope")).unwrap_err().kind,
            ErrorKind::ParseError
        );
    }
}
