//! The size cap of one stored value (issue 20): a profile's JSON body, an order, a usage
//! record, a setting, a provider registration, a named secret.
//!
//! Without it, one 400 MB row (planted by whoever can write the store, or brought by an
//! import) made every resolve of its provider hold 1.2 GB. Writes over the cap are refused
//! before anything is sent (`invalid_params`); a stored value over it is never read
//! whole: PostgreSQL answers NULL in its place (`CASE WHEN octet_length(…) <= cap`), SQLite
//! stops at its length limit (`SQLITE_LIMIT_LENGTH`), and the read is `store_corrupt`
//! (for a profile, an order or a named secret) or the value is ignored as unreadable
//! (usage, settings and provider registrations, as their undecodable values are).

use crate::core::error::{ErrorKind, RpcError};

/// The largest value one stored row may hold, in bytes (8 MiB: a key of the largest
/// request line, sealed, is far below it; so is the JSON id list SQLite binds for a
/// provider with 100 000 profiles).
pub(crate) const MAX_ROW_BYTES: usize = 8 << 20;

/// Refuses to store `what` (e.g. "profile openai:work") when its stored form is `len`
/// bytes, over [`MAX_ROW_BYTES`]: `invalid_params`, `data.reason: "row_too_large"`,
/// `data.bytes`, `data.maxBytes`. Nothing is written.
pub(crate) fn check_row_size(what: &str, len: usize) -> Result<(), RpcError> {
    if len <= MAX_ROW_BYTES {
        return Ok(());
    }
    Err(RpcError::new(
        ErrorKind::InvalidParams,
        format!("{what} would take {len} bytes in the store, over the {MAX_ROW_BYTES} one stored value may hold; nothing was written"),
    )
    .with("reason", "row_too_large")
    .with("bytes", len as u64)
    .with("maxBytes", MAX_ROW_BYTES as u64)
    .with_hint("store a smaller value (a key or token is at most a few KiB)"))
}

/// A stored value over [`MAX_ROW_BYTES`] met on read (`what`: "a stored profile"):
/// `store_corrupt`, `data.reason: "row_too_large"`; the value was not read.
pub(crate) fn row_too_large(what: &str, store: &str) -> RpcError {
    RpcError::new(
        ErrorKind::StoreCorrupt,
        format!("{what} in the store {store} is larger than the {MAX_ROW_BYTES} bytes one stored value may hold; it was not read"),
    )
    .with("reason", "row_too_large")
    .with("maxBytes", MAX_ROW_BYTES as u64)
    .with_hint("whoever wrote it bypassed modelauth: remove or rewrite that row (profiles.remove, or SQL)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_inclusive_and_the_refusal_says_how_large() {
        assert!(check_row_size("x", MAX_ROW_BYTES).is_ok());
        let e = check_row_size("profile openai:a", MAX_ROW_BYTES + 1).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidParams);
        assert_eq!(e.data()["reason"], "row_too_large");
        assert_eq!(e.data()["bytes"], (MAX_ROW_BYTES + 1) as u64);
        assert_eq!(
            row_too_large("a stored profile", "/s.db").kind,
            ErrorKind::StoreCorrupt
        );
    }
}
