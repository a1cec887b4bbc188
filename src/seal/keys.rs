//! Where store keys come from (PROTOCOL §9 r3), never the store itself. In this order,
//! every source that is set contributes its keys; the first key found seals new writes and
//! every key is tried for reads:
//!
//! 1. `$MODELAUTH_STORE_KEY_FILE`: a regular file owned by this user (or root) that group
//!    and others cannot access at all (mode `& 0o077 == 0`), as ssh refuses a private key;
//! 2. `$CREDENTIALS_DIRECTORY/modelauth-store-key` (systemd `LoadCredential=` /
//!    `LoadCredentialEncrypted=`), found without configuration, same checks;
//! 3. `$MODELAUTH_STORE_KEY_COMMAND`: a command run without a shell (a JSON array of
//!    strings, or words split on whitespace), stdin closed, 10 s deadline, stdout the
//!    key(s), capped at 64 KiB;
//! 4. `$MODELAUTH_STORE_KEY` (the weakest: the environment is readable by the user's
//!    other processes and often logged).
//!
//! A file or command may hold several keys, one per line (blank lines and lines starting
//! with `#` are ignored). Key format: [`crate::seal::envelope::StoreKey`].

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::core::error::{ErrorKind, RpcError};
use crate::seal::envelope::StoreKey;

/// The key variables, for hints.
pub(crate) const KEY_VARIABLES: &str = "MODELAUTH_STORE_KEY_FILE, $CREDENTIALS_DIRECTORY/modelauth-store-key, MODELAUTH_STORE_KEY_COMMAND or MODELAUTH_STORE_KEY";

/// Largest key file or command output read, bytes.
const MAX_KEY_SOURCE_BYTES: u64 = 64 * 1024;
/// How long a key command may run.
const KEY_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// The configured keys, the first sealing new writes. Empty when none is configured.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    /// In source order, without duplicates.
    pub keys: Vec<StoreKey>,
}

impl KeyRing {
    /// The key whose short id (12 hex) is `id`.
    pub(crate) fn by_short_id(&self, id: &str) -> Option<&StoreKey> {
        self.keys.iter().find(|k| k.short_id() == id)
    }

    /// The fingerprints of the configured keys, in order.
    pub(crate) fn fingerprints(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| k.fingerprint().to_string())
            .collect()
    }
}

fn key_error(kind: ErrorKind, message: String) -> RpcError {
    RpcError::new(kind, message).with_hint(format!(
        "a store key is `msk1-` plus 43 base64url characters (`modelauth store keygen` prints one), given by {KEY_VARIABLES}"
    ))
}

/// Parses the keys of one source: one per line, `#` comments and blank lines ignored.
/// Errors name the source and line, never the content.
pub(crate) fn parse_keys(text: &str, source: &str) -> Result<Vec<StoreKey>, RpcError> {
    let mut out = vec![];
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let k = StoreKey::parse(l).map_err(|_| {
            key_error(
                ErrorKind::StoreSealed,
                format!("{source}, line {}: not a store key", i + 1),
            )
        })?;
        out.push(k);
    }
    if out.is_empty() {
        return Err(key_error(
            ErrorKind::StoreSealed,
            format!("{source} holds no store key"),
        ));
    }
    Ok(out)
}

/// Why a key file is refused: `None` for a regular file owned by `uid` or root with no
/// group/other permission bits. Pure, for tests.
pub(crate) fn key_file_refusal(is_file: bool, owner: u32, mode: u32, uid: u32) -> Option<String> {
    if !is_file {
        Some("is not a regular file".into())
    } else if owner != uid && owner != 0 {
        Some(format!(
            "is owned by uid {owner}, not by this user (uid {uid}) or root"
        ))
    } else if mode & 0o077 != 0 {
        Some(format!(
            "has mode {:04o}: a key file that group or others can access is refused (chmod 600)",
            mode & 0o7777
        ))
    } else {
        None
    }
}

fn read_key_file(path: &Path, source: &str) -> Result<Vec<StoreKey>, RpcError> {
    let (f, meta) = crate::fsread::open_regular(path).map_err(|e| {
        key_error(
            ErrorKind::StorePermissions,
            format!("{source} ({}) cannot be read: {e}", path.display()),
        )
    })?;
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    if let Some(why) = key_file_refusal(meta.is_file(), meta.uid(), meta.mode(), uid) {
        return Err(key_error(
            ErrorKind::StorePermissions,
            format!("{source} ({}) {why}", path.display()),
        ));
    }
    let bytes = Zeroizing::new(
        crate::fsread::read_capped(f, &meta, MAX_KEY_SOURCE_BYTES).map_err(|e| {
            key_error(
                ErrorKind::StorePermissions,
                format!("{source} ({}) cannot be read: {e}", path.display()),
            )
        })?,
    );
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        key_error(
            ErrorKind::StoreSealed,
            format!("{source} is not UTF-8 text"),
        )
    })?;
    parse_keys(text, source)
}

/// Splits `MODELAUTH_STORE_KEY_COMMAND` into argv: a JSON array of strings, else words.
pub(crate) fn command_argv(spec: &str) -> Option<Vec<String>> {
    let t = spec.trim();
    let argv: Vec<String> = if t.starts_with('[') {
        serde_json::from_str(t).ok()?
    } else {
        t.split_whitespace().map(str::to_string).collect()
    };
    (!argv.is_empty() && !argv[0].is_empty()).then_some(argv)
}

fn run_key_command(spec: &str) -> Result<Vec<StoreKey>, RpcError> {
    const SRC: &str = "MODELAUTH_STORE_KEY_COMMAND";
    let argv = command_argv(spec).ok_or_else(|| {
        key_error(
            ErrorKind::StoreSealed,
            format!("{SRC} is empty or not a JSON array of strings"),
        )
    })?;
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            key_error(
                ErrorKind::StoreSealed,
                format!("{SRC} ({}) could not be started: {e}", argv[0]),
            )
        })?;
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut buf = Zeroizing::new(Vec::new());
        let _ = (&mut stdout)
            .take(MAX_KEY_SOURCE_BYTES + 1)
            .read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + KEY_COMMAND_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(key_error(
                    ErrorKind::StoreSealed,
                    format!("{SRC} ({}) did not finish within 10 s", argv[0]),
                ));
            }
        }
    };
    let out = reader.join().unwrap_or_default();
    if !status.success() {
        return Err(key_error(
            ErrorKind::StoreSealed,
            format!("{SRC} ({}) failed: {status}", argv[0]),
        ));
    }
    if out.len() as u64 > MAX_KEY_SOURCE_BYTES {
        return Err(key_error(
            ErrorKind::StoreSealed,
            format!("{SRC} ({}) printed more than 64 KiB", argv[0]),
        ));
    }
    let text = std::str::from_utf8(&out)
        .map_err(|_| key_error(ErrorKind::StoreSealed, format!("{SRC} printed non-UTF-8")))?;
    parse_keys(text, SRC)
}

/// The keys configured by `env` (a lookup of environment variables; empty values count
/// as unset). Errors: a source that is set but unusable — a key file group/other can read
/// (`store_permissions`), an unreadable file, a failing command, text that is not a key
/// (`store_sealed`); the message names the source, never a key.
pub(crate) fn load(env: &dyn Fn(&str) -> Option<String>) -> Result<KeyRing, RpcError> {
    let mut keys: Vec<StoreKey> = vec![];
    if let Some(p) = env("MODELAUTH_STORE_KEY_FILE") {
        keys.extend(read_key_file(Path::new(&p), "MODELAUTH_STORE_KEY_FILE")?);
    }
    if let Some(dir) = env("CREDENTIALS_DIRECTORY") {
        let p = Path::new(&dir).join("modelauth-store-key");
        if p.exists() {
            keys.extend(read_key_file(
                &p,
                "$CREDENTIALS_DIRECTORY/modelauth-store-key",
            )?);
        }
    }
    if let Some(c) = env("MODELAUTH_STORE_KEY_COMMAND") {
        keys.extend(run_key_command(&c)?);
    }
    if let Some(k) = env("MODELAUTH_STORE_KEY") {
        let v = Zeroizing::new(k);
        keys.extend(parse_keys(&v, "MODELAUTH_STORE_KEY")?);
    }
    let mut seen = std::collections::HashSet::new();
    keys.retain(|k| seen.insert(k.fingerprint().to_string()));
    Ok(KeyRing { keys })
}

/// [`load`] from the process environment.
pub(crate) fn load_from_env() -> Result<KeyRing, RpcError> {
    load(&|k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::envelope::generate_key;

    #[test]
    fn several_keys_one_per_line_first_first() {
        let (a, b) = (generate_key(), generate_key());
        let text = format!("# rotation\n{}\n\n  {}  \n", a.encode(), b.encode());
        let ks = parse_keys(&text, "test").unwrap();
        assert_eq!(ks.len(), 2);
        assert_eq!(ks[0].fingerprint(), a.fingerprint());
        assert_eq!(ks[1].fingerprint(), b.fingerprint());
    }

    #[test]
    fn a_bad_line_is_named_without_its_content() {
        let e = parse_keys("msk1-secretlookingbutwrong", "X").unwrap_err();
        assert_eq!(e.kind, ErrorKind::StoreSealed);
        assert!(!e.message.contains("secretlooking"), "{}", e.message);
        assert!(e.message.contains("line 1"));
        assert!(parse_keys("\n# only a comment\n", "X").is_err());
    }

    #[test]
    fn key_file_checks() {
        assert!(key_file_refusal(true, 1000, 0o100600, 1000).is_none());
        assert!(key_file_refusal(true, 0, 0o100400, 1000).is_none());
        assert!(key_file_refusal(true, 1000, 0o100640, 1000).is_some());
        assert!(key_file_refusal(true, 1000, 0o100604, 1000).is_some());
        assert!(key_file_refusal(true, 1001, 0o100600, 1000).is_some());
        assert!(key_file_refusal(false, 1000, 0o600, 1000).is_some());
    }

    #[test]
    fn command_argv_forms() {
        assert_eq!(
            command_argv("systemd-creds decrypt /x -").unwrap(),
            vec!["systemd-creds", "decrypt", "/x", "-"]
        );
        assert_eq!(
            command_argv(r#"["/bin/cat", "a b"]"#).unwrap(),
            vec!["/bin/cat", "a b"]
        );
        assert!(command_argv("  ").is_none());
        assert!(command_argv("[1]").is_none());
    }

    #[test]
    fn sources_in_order_and_deduplicated() {
        let (a, b) = (generate_key(), generate_key());
        let both = format!("{}\n{}", b.encode(), a.encode());
        let ea = a.encode();
        let env = move |k: &str| match k {
            "MODELAUTH_STORE_KEY" => Some(both.clone()),
            "MODELAUTH_STORE_KEY_COMMAND" => Some(format!("/bin/echo {ea}")),
            _ => None,
        };
        let ring = load(&env).unwrap();
        assert_eq!(
            ring.fingerprints(),
            vec![a.fingerprint().to_string(), b.fingerprint().to_string()]
        );
        let none = load(&|_: &str| None).unwrap();
        assert!(none.keys.is_empty());
    }
}
