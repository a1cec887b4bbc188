//! Resolving a SecretRef to its value at `auth.resolve` time (protocol §5.1).
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
/// Errors: `secret_unavailable` (-32030) naming the ref (never the value), with `data.ref`
/// and `data.reason`: `env_missing`, `provider_unknown`, `invalid_provider`, `invalid_id`,
/// `invalid_value`, `file_unreadable`, `insecure_file`, `bad_file`, `id_missing`,
/// `exec_failed`, `bad_output`, `timeout` (retryable).
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
            }) => resolve_exec(
                r,
                &ExecSpec {
                    command,
                    args,
                    timeout_ms: *timeout_ms,
                    pass_env,
                },
            ),
            _ => Err(provider_unknown(r, "exec")),
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

fn invalid_value(r: &SecretRef) -> RpcError {
    unavailable(
        r,
        "invalid_value",
        format!(
            "the value of ref {} is empty or has control characters",
            describe(r)
        ),
    )
}

/// Largest secrets file or exec output read (1 MiB).
const MAX_SECRET_SOURCE_BYTES: u64 = 1 << 20;

/// Why a secrets file is refused: `None` when a regular file owned by `uid` with no
/// group/world permission bits (`mode & 0o077 == 0`). Pure, for tests.
pub fn file_refusal(is_file: bool, owner: u32, mode: u32, uid: u32) -> Option<String> {
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
pub fn strip_one_newline(s: &str) -> &str {
    s.strip_suffix("\r\n")
        .or_else(|| s.strip_suffix('\n'))
        .unwrap_or(s)
}

/// Reads a secret out of a file (protocol §5.1 `file`). The file is opened first and
/// checked through its descriptor, so what is checked is what is read.
fn resolve_file(r: &SecretRef, path: &str, mode: &str) -> Result<Secret, RpcError> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
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
    let f = std::fs::File::open(p).map_err(|e| read_err(format!("cannot be opened: {e}")))?;
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
    let mut text = String::new();
    f.take(MAX_SECRET_SOURCE_BYTES)
        .read_to_string(&mut text)
        .map_err(|_| read_err("is not readable UTF-8 text".into()))?;
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
            normalize_secret_input(strip_one_newline(&text)).map_err(|_| invalid_value(r))
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
            let doc: serde_json::Value = serde_json::from_str(&text).map_err(|_| {
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

/// An exec secret provider (protocol §5.1 `exec`).
struct ExecSpec<'a> {
    command: &'a str,
    args: &'a [String],
    timeout_ms: u64,
    pass_env: &'a [String],
}

/// Kills the process group `pgid` (the helper and anything it started).
fn kill_group(pgid: u32) {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
    unsafe {
        libc::kill(-(pgid as libc::pid_t), libc::SIGKILL);
    }
}

/// Extracts `values[id]` from an exec helper's stdout. Pure, for tests. Errors are the
/// `reason` strings: `bad_output` (not the JSON object of §5.1) or `id_missing`.
pub fn parse_exec_output(stdout: &[u8], id: &str) -> Result<String, &'static str> {
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

/// Runs an exec helper without a shell: environment cleared but `passEnv`, the request on
/// stdin (then closed), stdout read (at most 1 MiB), stderr discarded. The helper runs in a
/// process group of its own; on time-out the whole group is killed and reaped.
fn resolve_exec(r: &SecretRef, spec: &ExecSpec<'_>) -> Result<Secret, RpcError> {
    use std::io::{Read, Write};
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    if !std::path::Path::new(spec.command).is_absolute() {
        return Err(unavailable(
            r,
            "invalid_provider",
            format!(
                "secret provider `{}` of ref {}: `command` must be an absolute path",
                r.provider,
                describe(r)
            ),
        ));
    }
    let mut cmd = Command::new(spec.command);
    cmd.args(spec.args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
    for name in spec.pass_env {
        if let Some(v) = std::env::var_os(name) {
            cmd.env(name, v);
        }
    }
    let mut child = cmd.spawn().map_err(|e| {
        unavailable(
            r,
            "exec_failed",
            format!("ref {}: cannot run {}: {e}", describe(r), spec.command),
        )
    })?;
    let pid = child.id();
    let request = serde_json::json!({"protocolVersion": 1, "provider": r.provider, "ids": [r.id]});
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that does not read its stdin may close it: ignore EPIPE.
        let _ = stdin.write_all(request.to_string().as_bytes());
    }
    let mut stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = (&mut stdout)
            .take(MAX_SECRET_SOURCE_BYTES)
            .read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    let timeout = Duration::from_millis(spec.timeout_ms);
    let deadline = Instant::now() + timeout;
    let timed_out = || {
        unavailable(
            r,
            "timeout",
            format!(
                "ref {}: {} did not answer within {} ms and was killed",
                describe(r),
                spec.command,
                spec.timeout_ms
            ),
        )
        .with("timeoutMs", spec.timeout_ms)
        .retryable(true)
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() >= deadline => {
                kill_group(pid);
                let _ = child.wait();
                tracing::warn!(secret_provider = %r.provider, timeout_ms = spec.timeout_ms, "exec secret provider timed out; killed");
                return Err(timed_out());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => {
                kill_group(pid);
                let _ = child.wait();
                return Err(unavailable(
                    r,
                    "exec_failed",
                    format!(
                        "ref {}: waiting for {} failed: {e}",
                        describe(r),
                        spec.command
                    ),
                ));
            }
        }
    };
    let left = deadline.saturating_duration_since(Instant::now());
    let out = match rx.recv_timeout(left) {
        Ok(b) => b,
        Err(_) => {
            // Something the helper started still holds stdout open.
            kill_group(pid);
            return Err(timed_out());
        }
    };
    if !status.success() {
        return Err(unavailable(
            r,
            "exec_failed",
            format!(
                "ref {}: {} exited with {}",
                describe(r),
                spec.command,
                status
                    .code()
                    .map(|c| format!("status {c}"))
                    .unwrap_or_else(|| "a signal".into())
            ),
        )
        .with("exitCode", status.code()));
    }
    match parse_exec_output(&out, &r.id) {
        Ok(v) => normalize_secret_input(&v).map_err(|_| invalid_value(r)),
        Err("id_missing") => Err(unavailable(
            r,
            "id_missing",
            format!(
                "ref {}: {} answered without a value for id `{}`",
                describe(r),
                spec.command,
                r.id
            ),
        )),
        Err(reason) => Err(unavailable(
            r,
            reason,
            format!(
                "ref {}: {} did not print {{\"protocolVersion\":1,\"values\":{{...}}}} on stdout",
                describe(r),
                spec.command
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
}
