//! Errors and store naming for people (PROTOCOL §10 r3).
//!
//! - Which store: [`StoreContext`] is the location made absolute, its backend, whether it
//!   exists and how it was chosen (`--store`, `$MODELAUTH_STORE`, `$XDG_STATE_HOME`, the
//!   default under `$HOME`). Every CLI error carries it as `data.store`, and every empty
//!   answer of a verb names it.
//! - How an error is printed: when stderr is a terminal (and `--json` was not given) as a
//!   sentence, the hint, the kind and the store; otherwise as the JSON error object on one
//!   line, as `modelauth call` always did. `NO_COLOR` (any value) turns colour off; so does
//!   `TERM=dumb`.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use crate::core::error::RpcError;

/// How the store location was chosen (PROTOCOL §2 order of precedence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChosenBy {
    /// `--store`.
    Flag,
    /// `$MODELAUTH_STORE`.
    Env,
    /// `$XDG_STATE_HOME/modelauth/store.db`.
    Xdg,
    /// `~/.local/state/modelauth/store.db`.
    Default,
}

impl ChosenBy {
    /// The word used in `where --json` (`chosenBy`) and in `data.store.chosenBy`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ChosenBy::Flag => "flag",
            ChosenBy::Env => "MODELAUTH_STORE",
            ChosenBy::Xdg => "XDG_STATE_HOME",
            ChosenBy::Default => "default",
        }
    }

    /// The phrase for people.
    pub(crate) fn phrase(self) -> &'static str {
        match self {
            ChosenBy::Flag => "--store",
            ChosenBy::Env => "$MODELAUTH_STORE",
            ChosenBy::Xdg => "$XDG_STATE_HOME",
            ChosenBy::Default => "the default location (~/.local/state)",
        }
    }

    /// Whether a person named the location (a write there creates at most the store's own
    /// directory unless `--create-dirs`).
    pub(crate) fn is_explicit(self) -> bool {
        matches!(self, ChosenBy::Flag | ChosenBy::Env)
    }
}

/// The store this invocation uses, as people are told about it.
#[derive(Debug, Clone)]
pub(crate) struct StoreContext {
    /// The location: an absolute file path, or a PostgreSQL URL without its password.
    pub path: String,
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// How it was chosen.
    pub chosen_by: ChosenBy,
    /// The file path (SQLite only), for `exists`.
    file: Option<PathBuf>,
}

impl StoreContext {
    /// Whether the store exists now: the file for SQLite; `None` for PostgreSQL (only the
    /// server can tell; `where` asks it).
    pub(crate) fn exists(&self) -> Option<bool> {
        self.file.as_ref().map(|p| p.exists())
    }

    /// `data.store` of a CLI error: `{path, backend, exists, chosenBy}`.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "path": self.path,
            "backend": self.backend,
            "exists": self.exists(),
            "chosenBy": self.chosen_by.as_str(),
        })
    }

    /// `store /abs/path (sqlite, exists, chosen by --store)`.
    pub(crate) fn describe(&self) -> String {
        let ex = match self.exists() {
            Some(true) => "exists",
            Some(false) => "does not exist",
            None => "on the server",
        };
        format!(
            "{} ({}, {ex}; chosen by {})",
            self.path,
            self.backend,
            self.chosen_by.phrase()
        )
    }
}

/// Makes a relative file path absolute against the working directory (lexically: `..` and
/// symlinks are kept as given, as `std::path::absolute` does).
pub(crate) fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The store location and how it was chosen, from `--store` and the environment (pure in
/// `env`). A file path is made absolute. `None` when nothing names a store (no `HOME`).
pub(crate) fn locate(
    flag: Option<&Path>,
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Option<(PathBuf, ChosenBy)> {
    let (p, by) = if let Some(p) = flag {
        (p.to_path_buf(), ChosenBy::Flag)
    } else if let Some(p) = env("MODELAUTH_STORE") {
        (PathBuf::from(p), ChosenBy::Env)
    } else if let Some(x) = env("XDG_STATE_HOME") {
        (PathBuf::from(x).join("modelauth/store.db"), ChosenBy::Xdg)
    } else {
        let h = env("HOME")?;
        (
            PathBuf::from(h).join(".local/state/modelauth/store.db"),
            ChosenBy::Default,
        )
    };
    if is_postgres(&p) {
        Some((p, by))
    } else {
        Some((absolute(&p), by))
    }
}

fn is_postgres(p: &Path) -> bool {
    p.to_str()
        .is_some_and(crate::store::location::is_postgres_url)
}

fn process_env(k: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(k).filter(|v| !v.is_empty())
}

/// Builds the context for `--store` (or the environment); the PostgreSQL URL is shown
/// without its password.
pub(crate) fn store_context(flag: Option<&Path>) -> Option<StoreContext> {
    let (p, chosen_by) = locate(flag, &process_env)?;
    if is_postgres(&p) {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let path = match crate::store::parse_location(&p, false, &env) {
            Ok(crate::store::StoreLocation::Postgres(l)) => l.display.clone(),
            _ => "(an unparsable PostgreSQL URL)".to_string(),
        };
        return Some(StoreContext {
            path,
            backend: "postgres",
            chosen_by,
            file: None,
        });
    }
    Some(StoreContext {
        path: p.display().to_string(),
        backend: "sqlite",
        chosen_by,
        file: Some(p),
    })
}

static CONTEXT: OnceLock<StoreContext> = OnceLock::new();
static JSON: AtomicBool = AtomicBool::new(false);

/// Records the store of this invocation (once per process) for [`print_error`].
pub(crate) fn set_context(c: StoreContext) {
    let _ = CONTEXT.set(c);
}

/// The store of this invocation, when known.
pub(crate) fn context() -> Option<&'static StoreContext> {
    CONTEXT.get()
}

/// `--json` was given: errors stay JSON even at a terminal.
pub(crate) fn set_json(on: bool) {
    JSON.store(on, Ordering::Relaxed);
}

/// Whether errors are printed for a person: stderr is a terminal and no `--json`.
pub(crate) fn human_errors() -> bool {
    !JSON.load(Ordering::Relaxed) && io::stderr().is_terminal()
}

fn colour() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// The error with `data.store` added (when the store of this invocation is known).
pub(crate) fn with_store(e: &RpcError) -> RpcError {
    match context() {
        Some(c) if !e.extra.contains_key("store") => e.clone().with("store", c.to_json()),
        _ => e.clone(),
    }
}

/// The text of an error for a person: the message as a sentence, the hint, the kind (and
/// whether retrying may help) and the store. Pure but for `colour`.
pub(crate) fn render_error(e: &RpcError, colour: bool) -> String {
    let j = e.to_json();
    let mut msg = j["message"].as_str().unwrap_or("").trim().to_string();
    if let Some(f) = msg.chars().next() {
        msg = f.to_uppercase().collect::<String>() + &msg[f.len_utf8()..];
    }
    if !msg.ends_with(['.', '!', '?']) {
        msg.push('.');
    }
    let (b, r, z) = if colour {
        ("\x1b[1m", "\x1b[1;31m", "\x1b[0m")
    } else {
        ("", "", "")
    };
    let mut out = format!("{r}error:{z} {b}{msg}{z}\n");
    if let Some(h) = j["data"]["hint"].as_str() {
        out.push_str(&format!("  hint: {h}\n"));
    }
    if let Some(d) = j["data"]["didYouMean"].as_str() {
        if !j["data"]["hint"].as_str().unwrap_or("").contains(d) {
            out.push_str(&format!("  did you mean: {d}\n"));
        }
    }
    out.push_str(&format!(
        "  kind: {} ({}{})\n",
        e.kind.as_str(),
        j["code"],
        if e.retryable {
            ", retryable"
        } else {
            ", not retryable"
        }
    ));
    if let Some(c) = context() {
        out.push_str(&format!("  store: {}\n", c.describe()));
    }
    out
}

/// Prints an error on stderr (for a person at a terminal, else the JSON error object with
/// `data.store`) and returns exit code 1.
pub(crate) fn print_error(e: &RpcError) -> i32 {
    let e = with_store(e);
    let mut err = io::stderr().lock();
    if human_errors() {
        let _ = err.write_all(render_error(&e, colour()).as_bytes());
    } else {
        let _ = writeln!(err, "{}", e.to_json());
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::error::ErrorKind;

    #[test]
    fn the_location_is_absolute_and_says_how_it_was_chosen() {
        let env = |k: &str| match k {
            "HOME" => Some("/home/u".into()),
            "XDG_STATE_HOME" => Some("/x".into()),
            _ => None,
        };
        let (p, by) = locate(Some(Path::new("rel/s.db")), &env).unwrap();
        assert!(p.is_absolute() && p.ends_with("rel/s.db"), "{p:?}");
        assert_eq!(by, ChosenBy::Flag);
        assert_eq!(
            locate(None, &env).unwrap(),
            (PathBuf::from("/x/modelauth/store.db"), ChosenBy::Xdg)
        );
        let home = |k: &str| (k == "HOME").then(|| "/home/u".into());
        assert_eq!(
            locate(None, &home).unwrap(),
            (
                PathBuf::from("/home/u/.local/state/modelauth/store.db"),
                ChosenBy::Default
            )
        );
        let pg = |k: &str| (k == "MODELAUTH_STORE").then(|| "postgres://h/db".into());
        assert_eq!(
            locate(None, &pg).unwrap(),
            (PathBuf::from("postgres://h/db"), ChosenBy::Env)
        );
        assert!(locate(None, &|_| None).is_none());
    }

    #[test]
    fn a_person_reads_a_sentence_the_hint_and_the_kind() {
        let e = RpcError::new(ErrorKind::UnknownProfile, "no profile `openai:wrk`")
            .with_hint("did you mean `openai:work`?");
        let t = render_error(&e, false);
        assert!(t.starts_with("error: No profile `openai:wrk`.\n"), "{t}");
        assert!(t.contains("  hint: did you mean `openai:work`?\n"), "{t}");
        assert!(
            t.contains("  kind: unknown_profile (-32010, not retryable)"),
            "{t}"
        );
        assert!(!t.contains('\x1b'));
        assert!(render_error(&e, true).contains("\x1b[1;31merror:"));
    }
}
