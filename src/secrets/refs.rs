//! Resolving a SecretRef to its value at `auth.resolve` time (protocol §5.1).
//!
//! The value is never stored, logged or put in an error; errors name the ref only.

use crate::core::error::{ErrorKind, RpcError};
use crate::core::profile::{SecretRef, SecretSource};
use crate::core::secret_value::{normalize_secret_input, Secret};
use crate::core::settings::{SecretProvider, Settings};

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
fn resolve_file(r: &SecretRef, path: &str, mode: &str) -> Result<Secret, RpcError> {
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
    json_only: bool,
}

/// Largest helper stdout read (1 MiB): more is `output_too_large`, never a truncation.
pub(crate) const MAX_EXEC_STDOUT_BYTES: usize = 1 << 20;

/// How much of a failed helper's stderr is forwarded to modelauth's stderr (4 KiB).
pub(crate) const MAX_FORWARDED_STDERR_BYTES: usize = 4096;

/// How much of a helper's stderr is kept to be redacted before the 4 KiB cut (64 KiB).
pub(crate) const MAX_CAPTURED_STDERR_BYTES: usize = 64 * 1024;

/// Kills the process group `pgid` (the helper and anything it started).
fn kill_group(pgid: u32) {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
    unsafe {
        libc::kill(-(pgid as libc::pid_t), libc::SIGKILL);
    }
}

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

/// How a helper run ended.
struct HelperRun {
    /// `None` when it was killed (time-out or too much output).
    status: Option<std::process::ExitStatus>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    timed_out: bool,
    too_large: bool,
}

/// Sets `O_NONBLOCK` on a pipe end of ours.
fn set_nonblocking(fd: std::os::fd::RawFd) {
    // SAFETY: fcntl on a descriptor this process owns; no memory is passed.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
}

/// Reads what `r` has now without blocking: appends at most `room` bytes to `buf` (the
/// rest is read and counted but dropped). Returns (bytes read, end of file).
fn drain(r: &mut impl std::io::Read, buf: &mut Vec<u8>, room: usize) -> (usize, bool) {
    let mut chunk = [0u8; 16 * 1024];
    let mut total = 0;
    loop {
        match r.read(&mut chunk) {
            Ok(0) => return (total, true),
            Ok(n) => {
                total += n;
                let keep = n.min(room.saturating_sub(buf.len()));
                buf.extend_from_slice(&chunk[..keep]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return (total, false),
            Err(_) => return (total, true),
        }
    }
}

/// Runs a spawned helper to its end on this thread: no reader threads, so nothing is left
/// behind when a process the helper started (even one in a session of its own, `setsid`)
/// keeps its stdout or stderr open. The pipes are read without blocking while the helper
/// runs; once it has exited, what is buffered is read and the pipes are closed, without
/// waiting for an end of file that may never come. Time-out or more than
/// [`MAX_EXEC_STDOUT_BYTES`] on stdout: the helper's process group is killed and reaped.
fn run_helper(
    child: &mut std::process::Child,
    deadline: std::time::Instant,
) -> std::io::Result<HelperRun> {
    use std::os::fd::AsRawFd;
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    set_nonblocking(out.as_raw_fd());
    set_nonblocking(err.as_raw_fd());
    let pid = child.id();
    let mut run = HelperRun {
        status: None,
        stdout: Vec::new(),
        stderr: Vec::new(),
        timed_out: false,
        too_large: false,
    };
    let (mut out_open, mut err_open) = (true, true);
    let cap = MAX_EXEC_STDOUT_BYTES + 1;
    loop {
        if out_open {
            let (_, eof) = drain(&mut out, &mut run.stdout, cap);
            out_open = !eof;
            if run.stdout.len() > MAX_EXEC_STDOUT_BYTES {
                run.too_large = true;
            }
        }
        if err_open {
            let (_, eof) = drain(&mut err, &mut run.stderr, MAX_CAPTURED_STDERR_BYTES);
            err_open = !eof;
        }
        if run.too_large {
            kill_group(pid);
            child.wait()?;
            return Ok(run);
        }
        if let Some(st) = child.try_wait()? {
            // Everything the helper wrote before it exited is in the pipes now.
            if out_open {
                drain(&mut out, &mut run.stdout, cap);
                run.too_large = run.stdout.len() > MAX_EXEC_STDOUT_BYTES;
            }
            if err_open {
                drain(&mut err, &mut run.stderr, MAX_CAPTURED_STDERR_BYTES);
            }
            run.status = Some(st);
            return Ok(run);
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            kill_group(pid);
            child.wait()?;
            run.timed_out = true;
            return Ok(run);
        }
        // Wait for output, or at most 10 ms before looking at the helper again.
        let wait_ms = (deadline - now).as_millis().clamp(1, 10) as libc::c_int;
        let mut fds = vec![];
        if out_open {
            fds.push(libc::pollfd {
                fd: out.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        if err_open {
            fds.push(libc::pollfd {
                fd: err.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        if fds.is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(wait_ms as u64));
        } else {
            // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs for the call.
            unsafe {
                libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms);
            }
        }
    }
}

/// The file to run for an exec provider's `command`, once this machine vouches for it
/// (PROTOCOL §11 *(r3)*, [`super::trust`]).
///
/// Errors: `secret_unavailable` with `data.reason: "untrusted_command"` and `data.trust`
/// saying why (`bad_owner`, `writable`, `dir_writable`, `no_trusted_dirs`, ...); the hint
/// names `$MODELAUTH_TRUSTED_DIRS` when the store is shared.
fn trusted_command(r: &SecretRef, command: &str) -> Result<std::path::PathBuf, RpcError> {
    use super::trust;
    let shared = trust::shared_store();
    let dirs = shared
        .then(|| trust::trusted_dirs(&std::env::var(trust::TRUSTED_DIRS_VAR).unwrap_or_default()));
    trust::check_command(
        std::path::Path::new(command),
        trust::current_uid(),
        dirs.as_deref(),
    )
    .map_err(|refusal| {
        let hint = match refusal.why {
            "no_trusted_dirs" | "outside_trusted_dirs" => format!(
                "a shared (PostgreSQL) store runs only commands this machine lists: set {}=/dir/of/the/helper (colon-separated) in the environment of the process that spawns modelauth",
                trust::TRUSTED_DIRS_VAR
            ),
            _ => "make the command and its directory owned by root or you and not writable by group or others (chmod go-w)".to_string(),
        };
        unavailable(
            r,
            "untrusted_command",
            format!(
                "ref {}: secret provider `{}` names a command this machine does not trust: {}",
                describe(r),
                r.provider,
                refusal.message
            ),
        )
        .with("trust", refusal.why)
        .with_hint(hint)
    })
}

/// Runs an exec helper without a shell: environment cleared but `passEnv`, the request on
/// stdin (then closed), stdout read (at most 1 MiB), the first 4 KiB of stderr kept and
/// forwarded to modelauth's stderr only when the helper fails ([`forwarded_stderr`]). The
/// helper runs in a process group of its own; on time-out the whole group is killed and
/// reaped. With `jsonOnly: false` the whole stdout is the value ([`raw_exec_output`]).
fn resolve_exec(r: &SecretRef, spec: &ExecSpec<'_>) -> Result<Secret, RpcError> {
    use std::io::Write;
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
    let program = trusted_command(r, spec.command)?;
    let mut cmd = Command::new(&program);
    // argv[0] stays as the store named it (a multi-call binary reached by a symlink).
    cmd.arg0(spec.command);
    cmd.args(spec.args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
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
    let deadline = Instant::now() + Duration::from_millis(spec.timeout_ms);
    let request = serde_json::json!({"protocolVersion": 1, "provider": r.provider, "ids": [r.id]});
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that does not read its stdin may close it: ignore EPIPE.
        let _ = stdin.write_all(request.to_string().as_bytes());
    }
    let run = match run_helper(&mut child, deadline) {
        Ok(run) => run,
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
    };
    let fail = |e: RpcError| {
        let text = forwarded_stderr(&r.provider, &run.stderr, &run.stdout);
        if !text.is_empty() {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(text.as_bytes());
            let _ = err.flush();
        }
        Err(e)
    };
    if run.timed_out {
        tracing::warn!(secret_provider = %r.provider, timeout_ms = spec.timeout_ms, "exec secret provider timed out; killed");
        return fail(
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
            .retryable(true),
        );
    }
    if run.too_large {
        return fail(
            unavailable(
                r,
                "output_too_large",
                format!(
                    "ref {}: {} printed more than {} bytes on stdout and was killed",
                    describe(r),
                    spec.command,
                    MAX_EXEC_STDOUT_BYTES
                ),
            )
            .with("maxBytes", MAX_EXEC_STDOUT_BYTES),
        );
    }
    let status = run.status.expect("exited");
    if !status.success() {
        return fail(
            unavailable(
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
            .with("exitCode", status.code()),
        );
    }
    let parsed = if spec.json_only {
        parse_exec_output(&run.stdout, &r.id)
    } else {
        raw_exec_output(&run.stdout)
    };
    match parsed {
        Ok(v) => match normalize_secret_input(&v) {
            Ok(s) => Ok(s),
            Err(_) => fail(invalid_value(r)),
        },
        Err("id_missing") => fail(unavailable(
            r,
            "id_missing",
            format!(
                "ref {}: {} answered without a value for id `{}`",
                describe(r),
                spec.command,
                r.id
            ),
        )),
        Err("invalid_value") => fail(
            unavailable(
                r,
                "invalid_value",
                format!(
                    "ref {}: {} printed more than one line; with `jsonOnly: false` the whole stdout (one trailing newline dropped) is the value",
                    describe(r),
                    spec.command
                ),
            )
            .with_hint("make the helper print the secret alone, e.g. `op read op://vault/item/field`, or wrap a multi-line `pass` entry in a script that prints its first line"),
        ),
        Err(reason) if spec.json_only => fail(
            unavailable(
                r,
                reason,
                format!(
                    "ref {}: {} did not print {{\"protocolVersion\":1,\"values\":{{...}}}} on stdout",
                    describe(r),
                    spec.command
                ),
            )
            .with_hint("a helper that prints the bare value needs `\"jsonOnly\": false` in its secretProviders entry"),
        ),
        Err(reason) => fail(unavailable(
            r,
            reason,
            format!(
                "ref {}: {} printed something that is not UTF-8 text on stdout",
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
