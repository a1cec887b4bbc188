//! Running an exec secret provider (protocol §5.1 `exec`, §11 *(r3)*): the command
//! checked ([`super::trust`]), run without a shell in a process group of its own with a
//! deadline, its output read without blocking and judged (`exec_output.rs`).

use crate::core::error::RpcError;
use crate::core::profile::SecretRef;
use crate::core::secret_value::{normalize_secret_input, Secret};

use super::exec_output::{
    forwarded_stderr, parse_exec_output, raw_exec_output, MAX_CAPTURED_STDERR_BYTES,
    MAX_EXEC_STDOUT_BYTES,
};
use super::refs::{describe, invalid_value, unavailable};

/// An exec secret provider (protocol §5.1 `exec`).
pub(super) struct ExecSpec<'a> {
    pub(super) command: &'a str,
    pub(super) args: &'a [String],
    pub(super) timeout_ms: u64,
    pub(super) pass_env: &'a [String],
    pub(super) json_only: bool,
}

/// Kills the process group `pgid` (the helper and anything it started).
fn kill_group(pgid: u32) {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
    unsafe {
        libc::kill(-(pgid as libc::pid_t), libc::SIGKILL);
    }
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
pub(super) fn resolve_exec(r: &SecretRef, spec: &ExecSpec<'_>) -> Result<Secret, RpcError> {
    use std::io::Write;
    use std::time::{Duration, Instant};
    let mut child = spawn_helper(r, spec)?;
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
    judge_run(r, spec, &run).inspect_err(|_| forward_stderr(r, &run))
}

/// Starts the helper: `command` absolute and trusted ([`trusted_command`]), no shell,
/// environment cleared but `passEnv`, pipes for stdin, stdout and stderr, a process group
/// of its own.
fn spawn_helper(r: &SecretRef, spec: &ExecSpec<'_>) -> Result<std::process::Child, RpcError> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
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
    cmd.spawn().map_err(|e| {
        unavailable(
            r,
            "exec_failed",
            format!("ref {}: cannot run {}: {e}", describe(r), spec.command),
        )
    })
}

/// A failed helper's stderr, redacted then cut ([`forwarded_stderr`]), on modelauth's
/// stderr.
fn forward_stderr(r: &SecretRef, run: &HelperRun) {
    use std::io::Write;
    let text = forwarded_stderr(&r.provider, &run.stderr, &run.stdout);
    if !text.is_empty() {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes());
        let _ = err.flush();
    }
}

/// What a finished helper run means: killed for its time or output, a failed exit, or
/// the value it printed ([`value_printed`]).
fn judge_run(r: &SecretRef, spec: &ExecSpec<'_>, run: &HelperRun) -> Result<Secret, RpcError> {
    if run.timed_out {
        tracing::warn!(secret_provider = %r.provider, timeout_ms = spec.timeout_ms, "exec secret provider timed out; killed");
        return Err(unavailable(
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
        .retryable(true));
    }
    if run.too_large {
        return Err(unavailable(
            r,
            "output_too_large",
            format!(
                "ref {}: {} printed more than {} bytes on stdout and was killed",
                describe(r),
                spec.command,
                MAX_EXEC_STDOUT_BYTES
            ),
        )
        .with("maxBytes", MAX_EXEC_STDOUT_BYTES));
    }
    let status = run.status.expect("exited");
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
    value_printed(r, spec, &run.stdout)
}

/// The value on a successful helper's stdout: the §5.1 JSON answer's `values[id]`, or with
/// `jsonOnly: false` the whole stdout ([`raw_exec_output`]).
fn value_printed(r: &SecretRef, spec: &ExecSpec<'_>, stdout: &[u8]) -> Result<Secret, RpcError> {
    let parsed = if spec.json_only {
        parse_exec_output(stdout, &r.id)
    } else {
        raw_exec_output(stdout)
    };
    match parsed {
        Ok(v) => match normalize_secret_input(&v) {
            Ok(s) => Ok(s),
            Err(_) => Err(invalid_value(r)),
        },
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
        Err("invalid_value") => Err(
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
        Err(reason) if spec.json_only => Err(
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
        Err(reason) => Err(unavailable(
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
