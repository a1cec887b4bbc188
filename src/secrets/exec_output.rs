//! What an exec secret provider printed (protocol §5.1 `exec`), pure: its stdout read as
//! the §5.1 JSON answer or as a raw value, and its stderr as forwarded to modelauth's
//! stderr (redacted, then cut).

use super::file_ref::strip_one_newline;

/// Largest helper stdout read (1 MiB): more is `output_too_large`, never a truncation.
pub(crate) const MAX_EXEC_STDOUT_BYTES: usize = 1 << 20;

/// How much of a failed helper's stderr is forwarded to modelauth's stderr (4 KiB).
pub(crate) const MAX_FORWARDED_STDERR_BYTES: usize = 4096;

/// How much of a helper's stderr is kept to be redacted before the 4 KiB cut (64 KiB).
pub(crate) const MAX_CAPTURED_STDERR_BYTES: usize = 64 * 1024;

/// Extracts `values[id]` from an exec helper's stdout. Pure, for tests. Errors are the
/// `reason` strings: `bad_output` (not the JSON object of §5.1) or `id_missing`.
pub(crate) fn parse_exec_output(stdout: &[u8], id: &str) -> Result<String, &'static str> {
    let v: serde_json::Value = serde_json::from_slice(stdout).map_err(|_| "bad_output")?;
    let obj = v.as_object().ok_or("bad_output")?;
    if let Some(pv) = obj.get("protocolVersion") {
        if pv.as_i64() != Some(1) {
            return Err("bad_output");
        }
    }
    let values = obj
        .get("values")
        .and_then(|x| x.as_object())
        .ok_or("bad_output")?;
    match values.get(id) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        _ => Err("id_missing"),
    }
}

/// The value of a `jsonOnly: false` helper: its whole stdout with one trailing newline
/// dropped (protocol §5.1 r2). Pure. Errors are `reason` strings: `bad_output` (not
/// UTF-8) or `invalid_value` (a line break inside the value — a `pass` entry with
/// metadata lines, say — which would otherwise be joined silently into a wrong key).
pub(crate) fn raw_exec_output(stdout: &[u8]) -> Result<String, &'static str> {
    let text = std::str::from_utf8(stdout).map_err(|_| "bad_output")?;
    let v = strip_one_newline(text);
    if v.contains(['\n', '\r']) {
        return Err("invalid_value");
    }
    Ok(v.to_string())
}

/// What a failed helper's stderr looks like on modelauth's stderr: at most
/// [`MAX_FORWARDED_STDERR_BYTES`], each line prefixed with `modelauth: secret provider
/// NAME: `, control characters escaped, and every string the helper printed on stdout
/// (whole, per line and each JSON string value, when at least 4 characters long) replaced
/// by `[redacted]` — a helper that echoes its value on stderr does not leak it. Pure.
pub(crate) fn forwarded_stderr(provider: &str, stderr: &[u8], stdout: &[u8]) -> String {
    // Redact, then cut (issue 20): a value straddling the 4 KiB mark must not leave its
    // prefix behind. What is redacted is everything captured ([`MAX_CAPTURED_STDERR_BYTES`]),
    // less a last line the capture may have cut.
    let mut head = stderr;
    if stderr.len() >= MAX_CAPTURED_STDERR_BYTES {
        if let Some(i) = stderr.iter().rposition(|b| *b == b'\n') {
            head = &stderr[..=i];
        }
    }
    let mut text = String::from_utf8_lossy(head).into_owned();
    let out = String::from_utf8_lossy(stdout);
    let mut hide: Vec<String> = vec![out.trim().to_string()];
    hide.extend(out.lines().map(|l| l.trim().to_string()));
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(stdout) {
        fn strings(v: &serde_json::Value, into: &mut Vec<String>) {
            match v {
                serde_json::Value::String(s) => into.push(s.clone()),
                serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, into)),
                serde_json::Value::Object(o) => o.values().for_each(|x| strings(x, into)),
                _ => {}
            }
        }
        strings(&v, &mut hide);
    }
    hide.retain(|h| h.chars().count() >= 4);
    // Longest first, so that a value is not left half-hidden by one of its lines.
    hide.sort_by_key(|h| std::cmp::Reverse(h.len()));
    for h in &hide {
        text = text.replace(h.as_str(), "[redacted]");
    }
    // A secret printed only on stderr (a failing helper echoing what it fetched): every
    // secret-looking word goes too, as in every error modelauth prints.
    let mut text = crate::core::error::redact_secret_looking(&text);
    if text.len() > MAX_FORWARDED_STDERR_BYTES {
        let mut cut = MAX_FORWARDED_STDERR_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    let mut o = String::new();
    for line in text.lines() {
        let line: String = line
            .chars()
            .map(|c| {
                if c.is_control() && c != '\t' {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect();
        o.push_str(&format!("modelauth: secret provider {provider}: {line}\n"));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_output() {
        let ok = br#"{"protocolVersion":1,"values":{"k":"v1"}}"#;
        assert_eq!(parse_exec_output(ok, "k").unwrap(), "v1");
        assert_eq!(parse_exec_output(ok, "x").unwrap_err(), "id_missing");
        assert_eq!(parse_exec_output(b"nope", "k").unwrap_err(), "bad_output");
        assert_eq!(
            parse_exec_output(br#"{"protocolVersion":2,"values":{"k":"v"}}"#, "k").unwrap_err(),
            "bad_output"
        );
        assert_eq!(
            parse_exec_output(br#"{"values":{"k":1}}"#, "k").unwrap_err(),
            "id_missing"
        );
    }

    #[test]
    fn raw_output_drops_one_newline_and_refuses_a_second_line() {
        assert_eq!(raw_exec_output(b"pw\n").unwrap(), "pw");
        assert_eq!(raw_exec_output(b"pw\r\n").unwrap(), "pw");
        assert_eq!(raw_exec_output(b"pw").unwrap(), "pw");
        assert_eq!(
            raw_exec_output(b"pw\nlogin: me\n").unwrap_err(),
            "invalid_value"
        );
        assert_eq!(raw_exec_output(b"pw\n\n").unwrap_err(), "invalid_value");
        assert_eq!(raw_exec_output(b"\xff\xfe").unwrap_err(), "bad_output");
    }

    #[test]
    fn forwarded_stderr_is_prefixed_capped_escaped_and_redacted() {
        let t = forwarded_stderr("vault", b"denied\nsecond\x1b[31m\n", b"");
        assert_eq!(
            t,
            "modelauth: secret provider vault: denied\nmodelauth: secret provider vault: second\\u{1b}[31m\n"
        );
        let big = b"ab ".repeat(4_000);
        let t = forwarded_stderr("p", &big, b"");
        assert_eq!(
            t.len(),
            "modelauth: secret provider p: ".len() + MAX_FORWARDED_STDERR_BYTES + 1
        );
        let t = forwarded_stderr(
            "p",
            b"value sk-raw-1234 and sk-json-5678",
            br#"{"values":{"k":"sk-json-5678"}}"#,
        );
        // sk-raw-1234 was never on stdout, but looks like a key: redacted too (issue 20).
        assert_eq!(
            t,
            "modelauth: secret provider p: value [redacted] and [redacted]\n"
        );
        // A value straddling the 4 KiB mark: redacted before the cut, no prefix left.
        let secret = "ZXhhbXBsZS1zZWNyZXQtdmFsdWU";
        let mut err = "log line\n".repeat(4090 / 9).into_bytes();
        err.resize(4090, b'.');
        err.extend_from_slice(secret.as_bytes());
        let out = format!(r#"{{"protocolVersion":1,"values":{{"k":"{secret}"}}}}"#);
        let t = forwarded_stderr("p", &err, out.as_bytes());
        assert!(!t.contains("ZXhhb"), "a prefix of the value was forwarded");
        let t = forwarded_stderr("p", b"got sk-raw-1234!", b"sk-raw-1234\n");
        assert_eq!(t, "modelauth: secret provider p: got [redacted]!\n");
        assert_eq!(forwarded_stderr("p", b"", b"x"), "");
    }
}
