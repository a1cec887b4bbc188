//! The command lines a credential helper's callers run most — `call METHOD [PARAMS]` and
//! `get PROVIDER`, with the global `--store`/`--create-dirs` before them — parsed without
//! building clap's command tree (issue 19: building every subcommand's arguments was ~180 µs
//! of a ~2 ms one-shot call, BENCHMARKS.md "Issue 19, round 3").
//!
//! Only exact shapes are taken; anything else — a flag after the subcommand, a repeated
//! flag, `help` or `--help`, a value that starts with `-`, an empty `--store`, a word that is
//! not UTF-8 — gives `None`, and clap parses the line as always (its errors and help
//! included). The tests below check that clap gives the same [`Cli`] for every line this
//! parser takes.

use std::ffi::OsString;
use std::path::PathBuf;

use super::{Cli, Command};

/// The [`Cli`] of `args` (the program name first) when it has one of the fast shapes.
pub(super) fn parse(args: &[OsString]) -> Option<Cli> {
    let mut words = args.iter().skip(1).map(|a| a.to_str());
    let mut store: Option<PathBuf> = None;
    let mut create_dirs = false;
    loop {
        let w = words.next()??;
        if w == "--create-dirs" && !create_dirs {
            create_dirs = true;
        } else if let Some(v) = store_value(w, &mut words) {
            if store.is_some() {
                return None;
            }
            store = Some(PathBuf::from(v?));
        } else {
            let command = match w {
                "call" => Command::Call {
                    method: plain(words.next()??)?.to_string(),
                    params: match words.next() {
                        None => None,
                        Some(p) => Some(plain(p?)?.to_string()),
                    },
                },
                "get" => Command::Get {
                    provider: plain(words.next()??)?.to_string(),
                    agent: None,
                    model: None,
                    profile_id: None,
                },
                _ => return None,
            };
            if words.next().is_some() {
                return None;
            }
            return Some(Cli {
                store,
                create_dirs,
                command,
            });
        }
    }
}

/// `--store VALUE` or `--store=VALUE`: `Some(Some(value))`; `Some(None)` when the flag is
/// there but its value is not a plain word; `None` when `w` is not the flag.
fn store_value<'a>(
    w: &'a str,
    words: &mut impl Iterator<Item = Option<&'a str>>,
) -> Option<Option<&'a str>> {
    let v = if w == "--store" {
        words.next().flatten()
    } else {
        Some(w.strip_prefix("--store=")?)
    };
    Some(v.filter(|v| !v.is_empty() && !v.starts_with('-')))
}

/// A positional word clap reads as a value, not a flag or the help request.
fn plain(w: &str) -> Option<&str> {
    (!w.starts_with('-') && w != "help").then_some(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(words: &[&str]) -> Vec<OsString> {
        std::iter::once("modelauth")
            .chain(words.iter().copied())
            .map(OsString::from)
            .collect()
    }

    /// Every line the fast parser takes, clap parses to the same `Cli`; the common lines
    /// are taken (so the fast path is not dead), and the others are left to clap.
    #[test]
    fn the_fast_parser_agrees_with_clap_on_every_line_it_takes() {
        let prefixes: &[&[&str]] = &[
            &[],
            &["--store", "/s/store.db"],
            &["--store=postgres://u@h/db"],
            &["--create-dirs"],
            &["--create-dirs", "--store", "rel/s.db"],
            &["--store", "a", "--create-dirs"],
            &["--store", "a", "--store", "b"],
            &["--create-dirs", "--create-dirs"],
            &["--store", "-x"],
            &["--store", ""],
            &["--store="],
            &["--store"],
            &["--stor", "x"],
        ];
        let bodies: &[&[&str]] = &[
            &["call", "auth.resolve"],
            &["call", "auth.resolve", r#"{"provider":"openai"}"#],
            &["call", "auth.resolve", "{}", "extra"],
            &["call"],
            &["call", "-x"],
            &["call", "help"],
            &["call", "auth.resolve", "--store", "x"],
            &["call", ""],
            &["call", "m", ""],
            &["get", "openai"],
            &["get"],
            &["get", "openai", "--agent", "a"],
            &["get", "-1"],
            &["get", "help"],
            &["serve"],
            &["help"],
            &["--help"],
            &["-h"],
            &["--version"],
            &[],
        ];
        let mut taken = 0;
        for p in prefixes {
            for b in bodies {
                let words: Vec<&str> = p.iter().chain(b.iter()).copied().collect();
                let args = line(&words);
                let Some(fast) = parse(&args) else { continue };
                taken += 1;
                let clap = super::super::parse_with_clap(&args).unwrap_or_else(|_| {
                    panic!("clap refuses what the fast parser took: {words:?}")
                });
                assert_eq!(format!("{fast:?}"), format!("{clap:?}"), "{words:?}");
            }
        }
        for common in [
            &["call", "auth.resolve", "{}"][..],
            &["--store", "/s.db", "get", "openai"],
            &["--store=/s.db", "--create-dirs", "call", "settings.get"],
        ] {
            assert!(parse(&line(common)).is_some(), "{common:?} is not taken");
        }
        assert!(taken >= 30, "only {taken} lines taken");
        // Not UTF-8: left to clap.
        use std::os::unix::ffi::OsStringExt;
        let mut args = line(&["get"]);
        args.push(OsString::from_vec(vec![0xff, 0xfe]));
        assert!(parse(&args).is_none());
    }
}
