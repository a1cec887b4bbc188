//! `file` SecretRefs (protocol §5.1): a secrets file opened first and checked through
//! its descriptor (owner, mode, regular file), read capped, then the value taken out of it
//! (`singleValue`, or a JSON pointer into a `json` file).

use crate::core::error::RpcError;
use crate::core::profile::SecretRef;
use crate::core::secret_value::{normalize_secret_input, Secret};

use super::refs::{describe, invalid_value, unavailable};

/// Largest secrets file or exec output read (1 MiB).
const MAX_SECRET_SOURCE_BYTES: u64 = 1 << 20;

/// Why a secrets file is refused: `None` when a regular file owned by `uid` with no
/// group/world permission bits (`mode & 0o077 == 0`). Pure, for tests.
pub(crate) fn file_refusal(is_file: bool, owner: u32, mode: u32, uid: u32) -> Option<String> {
    if !is_file {
        Some("is not a regular file".into())
    } else if owner != uid {
        Some(format!(
            "is owned by uid {owner}, not by this user (uid {uid})"
        ))
    } else if mode & 0o077 != 0 {
        Some(format!(
            "has mode {:04o}: group/world-accessible secrets files are refused",
            mode & 0o7777
        ))
    } else {
        None
    }
}

/// Drops one trailing newline (`\n` or `\r\n`) of a `singleValue` file.
pub(crate) fn strip_one_newline(s: &str) -> &str {
    s.strip_suffix("\r\n")
        .or_else(|| s.strip_suffix('\n'))
        .unwrap_or(s)
}

/// Reads a secret out of a file (protocol §5.1 `file`). The file is opened first and
/// checked through its descriptor, so what is checked is what is read.
pub(super) fn resolve_file(r: &SecretRef, path: &str, mode: &str) -> Result<Secret, RpcError> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let p = std::path::Path::new(path);
    if !p.is_absolute() {
        return Err(unavailable(
            r,
            "invalid_provider",
            format!(
                "secret provider `{}` of ref {}: `path` must be absolute",
                r.provider,
                describe(r)
            ),
        ));
    }
    let read_err = |what: String| {
        unavailable(
            r,
            "file_unreadable",
            format!("ref {}: secrets file {path} {what}", describe(r)),
        )
    };
    // O_NONBLOCK: a FIFO (or a device) at the path must not hang the process; it is
    // refused below as "not a regular file" by the descriptor's fstat.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(p)
        .map_err(|e| read_err(format!("cannot be opened: {e}")))?;
    let meta = f
        .metadata()
        .map_err(|e| read_err(format!("cannot be examined: {e}")))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if let Some(why) = file_refusal(meta.is_file(), meta.uid(), meta.mode(), uid) {
        return Err(unavailable(
            r,
            "insecure_file",
            format!("ref {}: secrets file {path} {why}", describe(r)),
        )
        .with("path", path)
        .with_hint(format!(
            "make it a regular file owned by this user and readable by it alone: chmod 600 {path}"
        )));
    }
    // More than the cap is an error, never a silent truncation (a cut key or JSON
    // document would be a wrong secret).
    let bytes =
        crate::fsread::read_capped(f, &meta, MAX_SECRET_SOURCE_BYTES).map_err(|e| match e {
            crate::fsread::ReadError::TooLarge(cap) => unavailable(
                r,
                "file_too_large",
                format!(
                    "ref {}: secrets file {path} is larger than {cap} bytes",
                    describe(r)
                ),
            )
            .with("path", path),
            e => read_err(e.to_string()),
        })?;
    let text =
        String::from_utf8(bytes).map_err(|_| read_err("is not readable UTF-8 text".into()))?;
    value_in_file(r, path, mode, &text)
}

/// The value of ref `r` in the text of its secrets file at `path`, by the provider's
/// `mode`: `singleValue` (id `value`: the whole file, one trailing newline dropped) or
/// `json` (id a JSON pointer to a string).
fn value_in_file(r: &SecretRef, path: &str, mode: &str, text: &str) -> Result<Secret, RpcError> {
    let missing = || {
        unavailable(
            r,
            "id_missing",
            format!(
                "ref {}: secrets file {path} has no string value at `{}`",
                describe(r),
                r.id
            ),
        )
    };
    match mode {
        "singleValue" => {
            if r.id != "value" {
                return Err(unavailable(
                    r,
                    "invalid_id",
                    format!(
                        "ref {}: a `singleValue` file provider takes the id `value`",
                        describe(r)
                    ),
                ));
            }
            normalize_secret_input(strip_one_newline(text)).map_err(|_| invalid_value(r))
        }
        "json" => {
            if !r.id.starts_with('/') {
                return Err(unavailable(
                    r,
                    "invalid_id",
                    format!(
                        "ref {}: a `json` file provider takes a JSON pointer id such as `/openai/apiKey`",
                        describe(r)
                    ),
                ));
            }
            let doc: serde_json::Value = serde_json::from_str(text).map_err(|_| {
                unavailable(
                    r,
                    "bad_file",
                    format!(
                        "ref {}: secrets file {path} is not a JSON document",
                        describe(r)
                    ),
                )
            })?;
            if !doc.is_object() {
                return Err(unavailable(
                    r,
                    "bad_file",
                    format!(
                        "ref {}: secrets file {path} is not a JSON object",
                        describe(r)
                    ),
                ));
            }
            match doc.pointer(&r.id) {
                Some(serde_json::Value::String(s)) => {
                    normalize_secret_input(s).map_err(|_| invalid_value(r))
                }
                _ => Err(missing()),
            }
        }
        other => Err(unavailable(
            r,
            "invalid_provider",
            format!(
                "secret provider `{}` of ref {}: unknown file mode `{other}` (json or singleValue)",
                r.provider,
                describe(r)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_checks() {
        assert!(file_refusal(true, 1000, 0o100600, 1000).is_none());
        assert!(file_refusal(true, 1000, 0o100400, 1000).is_none());
        assert!(file_refusal(true, 1000, 0o100644, 1000)
            .unwrap()
            .contains("0644"));
        assert!(file_refusal(true, 1000, 0o100640, 1000).is_some());
        assert!(file_refusal(true, 0, 0o100600, 1000)
            .unwrap()
            .contains("owned"));
        assert!(file_refusal(false, 1000, 0o040700, 1000).is_some());
    }

    #[test]
    fn one_trailing_newline_is_dropped() {
        assert_eq!(strip_one_newline("abc\n"), "abc");
        assert_eq!(strip_one_newline("abc\r\n"), "abc");
        assert_eq!(strip_one_newline("abc\n\n"), "abc\n");
        assert_eq!(strip_one_newline("abc"), "abc");
    }
}
