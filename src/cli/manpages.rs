//! Man pages: `modelauth(1)` and one page per subcommand (`modelauth-add(1)`, ...), each
//! with EXIT STATUS, ENVIRONMENT and FILES sections (rendered by clap_mangen from the same
//! command definitions as `--help`, plus the sections below).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

use super::Cli;

/// `modelauth man`.
#[derive(Debug, Clone, clap::Args)]
pub struct ManArgs {
    /// The page of one subcommand (e.g. `add`); default: modelauth(1).
    pub subcommand: Option<String>,
    /// Write every page (modelauth.1 and modelauth-SUBCOMMAND.1) into DIR, creating it,
    /// and print their paths.
    #[arg(long, value_name = "DIR", conflicts_with = "subcommand")]
    pub dir: Option<PathBuf>,
}

/// The exit status of each subcommand (the table of `src/cli/mod.rs`'s module doc).
pub(crate) fn exit_status(sub: Option<&str>) -> &'static str {
    match sub {
        None => "Each subcommand's page gives its own; in every subcommand a usage error (unknown flag, missing or malformed argument) exits 64 (EX_USAGE), and --help and --version exit 0.",
        Some("serve") => "0 at end of input or on SIGTERM/SIGINT (a store that cannot be opened is answered per request with a store error, and the loop goes on); 64 usage error.",
        Some("call") => "0 with the result on stdout; 1 with the error object on stderr; 64 usage error.",
        Some("get") => "0 with the secret on stdout; 1 with the error on stderr and nothing on stdout; 64 usage error.",
        Some("check") => "0 everything ok or static; 1 expired, missing, needs re-auth, a SecretRef that cannot be read beside no usable credential of its provider, a failed refresh or an auth.status error; 2 something expires within 24 h; 64 usage error.",
        Some("exec") => "COMMAND's own status or signal; 1 when a provider cannot be resolved (COMMAND is not run); 126 COMMAND not executable; 127 COMMAND not found; 64 usage error.",
        Some("add") | Some("list") | Some("rm") | Some("order") | Some("report") | Some("where") => "0 done (an empty answer is not an error); 1 with the error on stderr (a sentence, hint and kind at a terminal, else the JSON error object), naming the store; 64 usage error.",
        Some("man") => "0 page printed or written; 1 a page cannot be written; 64 usage error (an unknown subcommand).",
        Some(_) => "0 printed; 64 usage error.",
    }
}

const ENVIRONMENT: &[(&str, &str)] = &[
    ("MODELAUTH_STORE", "The store when --store is not given: a SQLite file path or a postgres:// URL (the place for a URL with a password)."),
    ("XDG_STATE_HOME", "Else the store is $XDG_STATE_HOME/modelauth/store.db."),
    ("HOME", "Else the store is ~/.local/state/modelauth/store.db."),
    ("MODELAUTH_PG_SCHEMA", "The PostgreSQL schema holding the tables (default modelauth)."),
    ("PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, PGPASSFILE, PGSSLMODE, PGSSLROOTCERT", "libpq's defaults for what a postgres:// URL leaves out."),
    ("RUST_LOG", "The log filter for stderr (default: warnings)."),
    ("NO_COLOR", "Any value turns colour off in errors printed for a person."),
];

const FILES: &[(&str, &str)] = &[
    ("~/.local/state/modelauth/store.db", "The default store (directory 0700, file 0600), with store.db-wal and store.db-shm beside it."),
    ("store.db-wal, store.db-shm, store.db.lock", "SQLite's write-ahead log and its index (kept between runs, so a read writes nothing) and the setup lock, beside the store. Single-flight OAuth refresh locks are byte-range locks on store.db itself."),
    ("~/.pgpass", "PostgreSQL passwords (ignored unless mode 0600, as libpq does)."),
];

fn roff_text(s: &str) -> String {
    let s = s.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

fn extra_sections(sub: Option<&str>, subs: &[String]) -> String {
    let mut t = String::new();
    t.push_str(".SH \"EXIT STATUS\"\n");
    t.push_str(&roff_text(exit_status(sub)));
    t.push('\n');
    t.push_str(".SH ENVIRONMENT\n");
    for (k, v) in ENVIRONMENT {
        t.push_str(&format!(".TP\n.B {}\n{}\n", roff_text(k), roff_text(v)));
    }
    t.push_str(".SH FILES\n");
    for (k, v) in FILES {
        t.push_str(&format!(".TP\n.I {}\n{}\n", roff_text(k), roff_text(v)));
    }
    t.push_str(".SH \"SEE ALSO\"\n");
    let see: Vec<String> = match sub {
        None => subs.iter().map(|s| format!("modelauth\\-{s}(1)")).collect(),
        Some(_) => vec!["modelauth(1)".into()],
    };
    t.push_str(&see.join(", "));
    t.push_str("\n.PP\nThe contract: PROTOCOL.md; the reference: protocol/README.md and `modelauth schema`.\n");
    t
}

/// Every page: `(file name, roff)`, modelauth.1 first, then one per subcommand.
pub(crate) fn pages() -> Result<Vec<(String, Vec<u8>)>, std::io::Error> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let subs: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| s.get_name().to_string())
        .collect();
    let mut out = vec![];
    let render =
        |c: clap::Command, sub: Option<&str>| -> Result<(String, Vec<u8>), std::io::Error> {
            let man = clap_mangen::Man::new(c);
            let mut buf = Vec::new();
            man.render(&mut buf)?;
            buf.extend_from_slice(extra_sections(sub, &subs).as_bytes());
            Ok((man.get_filename(), buf))
        };
    out.push(render(cmd.clone(), None)?);
    for s in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        out.push(render(s.clone(), Some(s.get_name()))?);
    }
    Ok(out)
}

/// `modelauth man [SUBCOMMAND] [--dir DIR]`; returns the exit code.
pub(crate) fn man(a: &ManArgs) -> i32 {
    let pages = match pages() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("modelauth: cannot render the man pages: {e}");
            return 1;
        }
    };
    if let Some(dir) = &a.dir {
        return write_all(dir, &pages);
    }
    let want = match &a.subcommand {
        None => "modelauth.1".to_string(),
        Some(s) => format!("modelauth-{s}.1"),
    };
    match pages.iter().find(|(n, _)| *n == want) {
        Some((_, roff)) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(roff).and_then(|_| out.flush());
            0
        }
        None => {
            let names: Vec<&str> = pages
                .iter()
                .filter_map(|(n, _)| n.strip_prefix("modelauth-")?.strip_suffix(".1"))
                .collect();
            eprintln!(
                "error: no subcommand `{}`; pages: {}",
                a.subcommand.as_deref().unwrap_or(""),
                names.join(", ")
            );
            super::EX_USAGE
        }
    }
}

fn write_all(dir: &Path, pages: &[(String, Vec<u8>)]) -> i32 {
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("modelauth: cannot create {}: {e}", dir.display());
        return 1;
    }
    let mut listing = String::new();
    for (name, roff) in pages {
        let p = dir.join(name);
        if let Err(e) = std::fs::write(&p, roff) {
            eprintln!("modelauth: cannot write {}: {e}", p.display());
            return 1;
        }
        listing.push_str(&format!("{}\n", p.display()));
    }
    super::write_stdout(&listing, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_has_exit_status_environment_and_files_and_every_reference_exists() {
        let pages = pages().unwrap();
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        for want in [
            "modelauth.1",
            "modelauth-add.1",
            "modelauth-call.1",
            "modelauth-where.1",
        ] {
            assert!(names.contains(&want), "{names:?}");
        }
        for (name, roff) in &pages {
            let t = String::from_utf8_lossy(roff);
            for s in [".SH \"EXIT STATUS\"", ".SH ENVIRONMENT", ".SH FILES"] {
                assert!(t.contains(s), "{name} lacks {s}");
            }
            // Every modelauth-X(1) it names is a page that exists.
            for (i, _) in t.match_indices("modelauth\\-") {
                let rest = &t[i + "modelauth\\-".len()..];
                if let Some(end) = rest.find("(1)") {
                    let sub = &rest[..end];
                    if sub.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
                        let page = format!("modelauth-{sub}.1");
                        assert!(names.contains(&page.as_str()), "{name} names {page}");
                    }
                }
            }
        }
        assert!(!names.contains(&"modelauth-help.1"));
    }
}
