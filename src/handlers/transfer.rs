//! The shell of `store.import`, `store.export` and `store.validate` (protocol §3): reads
//! sources, then applies the pure [`crate::openclaw::import`] plan in one store transaction.
//!
//! Sources are only read: JSON files with a plain read, SQLite files opened with
//! `file:PATH?mode=ro&immutable=1` (`SQLITE_OPEN_READ_ONLY | SQLITE_OPEN_URI`), so no lock is
//! taken and no `-wal` / `-shm` file is created next to them, even in a read-only directory.
//! When a source has a non-empty `-wal` (OpenClaw's gateway is running), the database and
//! its `-wal` are copied with plain reads into a private temporary directory and the copy
//! is opened, so committed writes still in the WAL are imported while the source files stay
//! byte-identical and no checkpoint runs on them.
//! A dry run or a validation runs in a read transaction: the store is not even created.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde_json::Value;

use crate::core::error::{ErrorKind, Result, RpcError};
use crate::core::ids;
use crate::core::usage::Usage;
use crate::fsread;
use crate::handlers::{load_aliases, now_ms, App};
use crate::openclaw::export::{self, ExportParams, ExportResult};
use crate::openclaw::import::{
    self, EntryError, Format, ImportParams, ImportPlan, ImportResult, ImportWarning, Loaded,
    OrderAction, Piece, PieceKind, ProfileAction, ValidateParams, ValidateResult,
};
use crate::store::Tx;

/// Largest JSON source read (bytes).
const MAX_JSON_BYTES: u64 = 64 * 1024 * 1024;

fn unreadable(path: &Path, what: impl std::fmt::Display) -> RpcError {
    RpcError::new(
        ErrorKind::ImportInvalid,
        format!(
            "cannot read {}: {what}; nothing was imported",
            path.display()
        ),
    )
}

fn expand_home(p: &str) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/") {
        if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            return PathBuf::from(h).join(rest);
        }
    }
    if p == "~" {
        if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            return PathBuf::from(h);
        }
    }
    PathBuf::from(p)
}

/// Opens a source file without blocking and checks it is a regular file ([`fsread`]).
fn open_source(path: &Path) -> Result<(std::fs::File, std::fs::Metadata)> {
    fsread::open_regular(path).map_err(|e| unreadable(path, e))
}

fn read_json(path: &Path) -> Result<Value> {
    let (f, meta) = open_source(path)?;
    let bytes = fsread::read_capped(f, &meta, MAX_JSON_BYTES).map_err(|e| unreadable(path, e))?;
    serde_json::from_slice(&bytes).map_err(|_| {
        RpcError::new(
            ErrorKind::ShapeUnrecognized,
            format!(
                "{} is neither JSON nor a SQLite database; nothing was imported",
                path.display()
            ),
        )
    })
}

fn is_sqlite(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 16];
    fsread::open_regular(path)
        .ok()
        .is_some_and(|(mut f, _)| f.read_exact(&mut head).is_ok())
        && &head == b"SQLite format 3\0"
}

/// Largest SQLite source opened (bytes): an OpenClaw database holding auth profiles is
/// far smaller.
const MAX_SQLITE_BYTES: u64 = 256 * 1024 * 1024;

/// SQLite virtual-machine steps allowed per source query before it is interrupted, so a
/// crafted schema (a recursive view, an expression index) cannot spin.
const MAX_SQLITE_PROGRESS_CALLS: u32 = 100_000; // × 1000 opcodes

/// Opens a SQLite source strictly read-only and immutable: no lock, no `-wal`/`-shm`.
/// The file is first opened `O_NONBLOCK` and checked to be a regular file of at most
/// [`MAX_SQLITE_BYTES`]; the connection gets hard limits (16 MiB strings and blobs, a
/// 2 MiB page cache, no mmap, an untrusted schema, a bounded number of VM steps), so an
/// 8 KB crafted file cannot make it allocate gigabytes.
fn open_source_db(path: &Path) -> Result<Connection> {
    let (f, meta) = open_source(path)?;
    if meta.len() > MAX_SQLITE_BYTES {
        return Err(unreadable(
            path,
            format!("the database is larger than {MAX_SQLITE_BYTES} bytes"),
        ));
    }
    // Open what was checked: /proc/self/fd/N names the very file behind `f`.
    use std::os::fd::AsRawFd;
    let via_fd = PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()));
    let target = if via_fd.exists() {
        via_fd
    } else {
        std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
    };
    let mut enc = String::new();
    for ch in target.to_string_lossy().chars() {
        match ch {
            '%' => enc.push_str("%25"),
            '?' => enc.push_str("%3f"),
            '#' => enc.push_str("%23"),
            c => enc.push(c),
        }
    }
    let uri = format!("file:{enc}?mode=ro&immutable=1");
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut c = Connection::open_with_flags(&uri, flags).map_err(|e| unreadable(path, e))?;
    drop(f);
    limit_source_connection(&mut c).map_err(|e| unreadable(path, e))?;
    Ok(c)
}

/// The limits of a connection on an untrusted SQLite source (see [`open_source_db`]).
fn limit_source_connection(c: &mut Connection) -> rusqlite::Result<()> {
    use rusqlite::limits::Limit;
    c.set_limit(Limit::SQLITE_LIMIT_LENGTH, 16 << 20)?;
    c.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, 64 << 10)?;
    c.set_limit(Limit::SQLITE_LIMIT_EXPR_DEPTH, 100)?;
    c.set_limit(Limit::SQLITE_LIMIT_COMPOUND_SELECT, 16)?;
    c.set_limit(Limit::SQLITE_LIMIT_VDBE_OP, 100_000)?;
    c.set_limit(Limit::SQLITE_LIMIT_FUNCTION_ARG, 16)?;
    c.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
    c.set_limit(Limit::SQLITE_LIMIT_LIKE_PATTERN_LENGTH, 1000)?;
    c.set_limit(Limit::SQLITE_LIMIT_TRIGGER_DEPTH, 1)?;
    c.execute_batch(
        "PRAGMA trusted_schema = OFF; PRAGMA mmap_size = 0; PRAGMA cache_size = -2048;\
         PRAGMA query_only = ON; PRAGMA cell_size_check = ON;",
    )?;
    let mut calls = 0u32;
    c.progress_handler(
        1000,
        Some(move || {
            calls += 1;
            calls > MAX_SQLITE_PROGRESS_CALLS
        }),
    )?;
    Ok(())
}

fn has_table(c: &Connection, name: &str) -> bool {
    c.query_row(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |_| Ok(()),
    )
    .optional()
    .ok()
    .flatten()
    .is_some()
}

fn row_json(c: &Connection, sql: &str, key: &str, path: &Path) -> Result<Option<Value>> {
    let text: Option<String> = c
        .query_row(sql, [key], |r| r.get(0))
        .optional()
        .map_err(|e| unreadable(path, e))?;
    match text {
        None => Ok(None),
        Some(t) => serde_json::from_str(&t).map(Some).map_err(|_| {
            RpcError::new(
                ErrorKind::ImportInvalid,
                format!(
                    "{}: the `{key}` row is not valid JSON; nothing was imported",
                    path.display()
                ),
            )
        }),
    }
}

/// The path of `db`'s companion file with `suffix` (`-wal`, `-shm`).
fn companion(db: &Path, suffix: &str) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// A private copy of a SQLite source and its `-wal`, when that `-wal` is not empty: a
/// committed write still in the WAL (a running OpenClaw gateway) is then read by opening
/// the copy, which replays the WAL there. The source, its `-wal` and `-shm` are only read
/// (plain reads, no SQLite open, no lock, no checkpoint), so they stay byte-identical.
/// `None` when there is no WAL content to read.
struct WalCopy {
    _dir: tempfile::TempDir,
    db: PathBuf,
}

fn wal_copy(path: &Path) -> Result<Option<WalCopy>> {
    let wal = companion(path, "-wal");
    if !std::fs::metadata(&wal).is_ok_and(|m| m.is_file() && m.len() > 0) {
        return Ok(None);
    }
    let dir = tempfile::Builder::new()
        .prefix("modelauth-import-")
        .tempdir()
        .map_err(|e| unreadable(path, e))?;
    let db = dir.path().join("source.sqlite");
    // The WAL is read before the database: a checkpoint between the two reads then only
    // moves frames the copy already has into the main file, which replays the same way.
    let wal_bytes = std::fs::read(&wal).map_err(|e| unreadable(&wal, e))?;
    let db_bytes = std::fs::read(path).map_err(|e| unreadable(path, e))?;
    std::fs::write(&db, db_bytes).map_err(|e| unreadable(path, e))?;
    std::fs::write(companion(&db, "-wal"), wal_bytes).map_err(|e| unreadable(&wal, e))?;
    Ok(Some(WalCopy { _dir: dir, db }))
}

/// Opens the private copy read-write (SQLite needs to build its WAL index next to it)
/// and reads in one transaction.
fn open_copy_db(copy: &WalCopy, source: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(&copy.db, flags).map_err(|e| unreadable(source, e))
}

/// Reads the auth rows of one OpenClaw SQLite file into pieces for `agent`. An agent DB has
/// `auth_profile_store` / `auth_profile_state` (row `primary`); a global DB has
/// `config_machine_state` (`authProfiles.store`, `authProfiles.state`). `None` when the file
/// has neither.
fn sqlite_pieces(
    path: &Path,
    label: &str,
    agent: Option<&str>,
    warnings: &mut Vec<ImportWarning>,
) -> Result<Option<Vec<Piece>>> {
    let copy = wal_copy(path)?;
    let c = match &copy {
        Some(cp) => open_copy_db(cp, path)?,
        None => open_source_db(path)?,
    };
    let mut out = vec![];
    let piece = |kind, doc, src: String| Piece {
        agent: agent.map(str::to_string),
        kind,
        doc,
        source: Some(src),
        strict: false,
    };
    if has_table(&c, "auth_profile_store") {
        let q = "SELECT store_json FROM auth_profile_store WHERE store_key = ?1";
        if let Some(doc) = row_json(&c, q, "primary", path)? {
            import::check_version(&doc, &format!("{label}: "))?;
            out.push(piece(
                PieceKind::Store,
                doc,
                format!("{label} auth_profile_store[primary]"),
            ));
        }
        if has_table(&c, "auth_profile_state") {
            let q = "SELECT state_json FROM auth_profile_state WHERE state_key = ?1";
            if let Some(doc) = row_json(&c, q, "primary", path)? {
                out.push(piece(
                    PieceKind::State,
                    doc,
                    format!("{label} auth_profile_state[primary]"),
                ));
            }
        }
    } else if has_table(&c, "config_machine_state") {
        let q = "SELECT value_json FROM config_machine_state WHERE state_key = ?1";
        if let Some(doc) = row_json(&c, q, "authProfiles.store", path)? {
            import::check_version(&doc, &format!("{label}: "))?;
            out.push(piece(
                PieceKind::Store,
                doc,
                format!("{label} config_machine_state[authProfiles.store]"),
            ));
        }
        if let Some(doc) = row_json(&c, q, "authProfiles.state", path)? {
            out.push(piece(
                PieceKind::State,
                doc,
                format!("{label} config_machine_state[authProfiles.state]"),
            ));
        }
    } else {
        return Ok(None);
    }
    let _ = warnings;
    Ok(Some(out))
}

/// The keys of `auth.profiles` of an openclaw.json text, in file order (empty when absent
/// or not JSON).
fn config_profile_ids(text: &[u8]) -> Vec<String> {
    use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
    struct Keys(Vec<String>);
    impl<'de> Deserialize<'de> for Keys {
        fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(
                    self,
                    mut m: A,
                ) -> std::result::Result<Keys, A::Error> {
                    let mut out = vec![];
                    while let Some((k, IgnoredAny)) = m.next_entry::<String, IgnoredAny>()? {
                        out.push(k);
                    }
                    Ok(Keys(out))
                }
            }
            d.deserialize_map(V)
        }
    }
    #[derive(serde::Deserialize)]
    struct Auth {
        profiles: Option<Keys>,
    }
    #[derive(serde::Deserialize)]
    struct Config {
        auth: Option<Auth>,
    }
    serde_json::from_slice::<Config>(text)
        .ok()
        .and_then(|c| c.auth?.profiles)
        .map(|k| k.0)
        .unwrap_or_default()
}

/// Reads an OpenClaw state directory: `state/openclaw.sqlite` (shared scope),
/// `agents/<id>/agent/openclaw-agent.sqlite` (agent `<id>`; a legacy
/// `agents/<id>/agent/auth-profiles.json` when there is no database) and the `auth.order`
/// of `openclaw.json` (the shared order). Errors `shape_unrecognized` when none is there.
fn load_state_dir(dir: &Path) -> Result<Loaded> {
    let mut pieces = vec![];
    let mut warnings = vec![];
    let mut errors = vec![];
    let mut found = false;
    let global = dir.join("state/openclaw.sqlite");
    if global.is_file() {
        found = true;
        if let Some(p) = sqlite_pieces(&global, "state/openclaw.sqlite", None, &mut warnings)? {
            pieces.extend(p);
        }
    }
    let config = dir.join("openclaw.json");
    if config.is_file() {
        found = true;
        match read_json(&config) {
            Ok(v) => {
                let ids = std::fs::read(&config)
                    .map(|b| config_profile_ids(&b))
                    .unwrap_or_default();
                if !ids.is_empty() {
                    pieces.push(Piece {
                        agent: None,
                        kind: PieceKind::ConfigProfiles,
                        doc: Value::from(ids),
                        source: Some("openclaw.json /auth/profiles".into()),
                        strict: false,
                    });
                }
                if let Some(order) = v.pointer("/auth/order").filter(|o| !o.is_null()) {
                    pieces.push(Piece {
                        agent: None,
                        kind: PieceKind::ConfigOrder,
                        doc: order.clone(),
                        source: Some("openclaw.json /auth/order".into()),
                        strict: false,
                    });
                }
            }
            Err(_) => warnings.push(ImportWarning {
                pointer: String::new(),
                kind: "source_skipped".into(),
                message:
                    "openclaw.json is not plain JSON (JSON5?); its auth.order was not imported"
                        .into(),
                source: Some("openclaw.json".into()),
            }),
        }
    }
    // Era A: `credentials/oauth.json` `{provider: {access, refresh, expires}}` goes to the
    // shared store as oauth `<provider>:default`, filling only absent ids.
    let legacy_oauth = dir.join("credentials/oauth.json");
    if legacy_oauth.is_file() {
        found = true;
        pieces.push(Piece {
            agent: None,
            kind: PieceKind::FlatFill,
            doc: read_json(&legacy_oauth)?,
            source: Some("credentials/oauth.json".into()),
            strict: false,
        });
    }
    let agents = dir.join("agents");
    if let Ok(rd) = std::fs::read_dir(&agents) {
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            let adir = agents.join(&name).join("agent");
            let db = adir.join("openclaw-agent.sqlite");
            let json = adir.join("auth-profiles.json");
            let state_json = adir.join("auth-state.json");
            let flat_json = adir.join("auth.json");
            if !db.is_file() && !json.is_file() && !state_json.is_file() && !flat_json.is_file() {
                continue;
            }
            found = true;
            let agent = match ids::validate_agent(&name) {
                Ok(a) => a,
                Err(e) => {
                    errors.push(EntryError {
                        pointer: String::new(),
                        kind: "invalid_agent".into(),
                        message: format!("{e}; this agent's profiles were not imported"),
                        valid_types: None,
                        source: Some(format!("agents/{name}")),
                    });
                    continue;
                }
            };
            // The legacy JSON files of an agent (OpenClaw's doctor migrates them into its
            // database): `auth-profiles.json`, `auth-state.json` (order, lastGood,
            // usageStats) and `auth.json` (a flat map that fills only absent ids). Those of
            // the default agent `main` go to the shared store, as the doctor moves them.
            let legacy_agent = (name != "main").then(|| agent.clone());
            let legacy_state = |pieces: &mut Vec<Piece>| -> Result<()> {
                if state_json.is_file() && !db.is_file() {
                    pieces.push(Piece {
                        agent: legacy_agent.clone(),
                        kind: PieceKind::State,
                        doc: read_json(&state_json)?,
                        source: Some(format!("agents/{name}/agent/auth-state.json")),
                        strict: false,
                    });
                }
                if flat_json.is_file() {
                    pieces.push(Piece {
                        agent: legacy_agent.clone(),
                        kind: PieceKind::FlatFill,
                        doc: read_json(&flat_json)?,
                        source: Some(format!("agents/{name}/agent/auth.json")),
                        strict: false,
                    });
                }
                Ok(())
            };
            legacy_state(&mut pieces)?;
            if db.is_file() {
                let label = format!("agents/{name}/agent/openclaw-agent.sqlite");
                if let Some(p) = sqlite_pieces(&db, &label, Some(&agent), &mut warnings)? {
                    pieces.extend(p);
                }
            } else if json.is_file() {
                let doc = read_json(&json)?;
                let label = format!("agents/{name}/agent/auth-profiles.json");
                if import::detect_json(&doc) == Some(Format::Openclaw) {
                    import::check_version(&doc, &format!("{label}: "))?;
                    pieces.push(Piece {
                        agent: legacy_agent,
                        kind: PieceKind::Store,
                        doc,
                        source: Some(label),
                        strict: false,
                    });
                } else {
                    warnings.push(ImportWarning {
                        pointer: String::new(),
                        kind: "source_skipped".into(),
                        message: "not an auth-profiles store; skipped".into(),
                        source: Some(label),
                    });
                }
            }
        }
    }
    if !found {
        return Err(RpcError::new(
            ErrorKind::ShapeUnrecognized,
            format!(
                "{} is not an OpenClaw state directory (no state/openclaw.sqlite, openclaw.json, credentials/oauth.json or agents/*/agent/ auth files); nothing was imported",
                dir.display()
            ),
        )
        .with_hint("point `path` at the OpenClaw state directory, usually ~/.openclaw"));
    }
    Ok(Loaded {
        format: Format::OpenclawState,
        pieces,
        warnings,
        errors,
    })
}

/// Reads a source (`path` or `document`) into pieces, detecting the format when `auto`.
/// Errors: `invalid_params` (neither or both of path/document, an agent with a state
/// directory), `import_invalid` (unreadable), `shape_unrecognized`.
pub fn load_source(
    path: Option<&str>,
    document: Option<Value>,
    format: Format,
    agent: Option<&str>,
) -> Result<Loaded> {
    let path = match (path, document) {
        (Some(_), Some(_)) => {
            return Err(
                RpcError::invalid_params("give `path` or `document`, not both")
                    .with("pointer", "/document"),
            )
        }
        (None, None) => return Err(RpcError::invalid_params(
            "give `path` (a file or an OpenClaw state directory such as ~/.openclaw) or `document`",
        )
        .with("pointer", "/path")),
        (None, Some(doc)) => return import::load_json(doc, format, agent),
        (Some(p), None) => expand_home(p),
    };
    // stat (not open) never blocks; anything but a directory or a regular file (a FIFO,
    // /dev/zero) is refused before it is opened.
    let meta = std::fs::metadata(&path).map_err(|e| unreadable(&path, e))?;
    if !meta.is_dir() && !meta.is_file() {
        return Err(unreadable(
            &path,
            format!("it is a {}, not a regular file", fsread::file_kind(&meta)),
        ));
    }
    let format = if format == Format::Auto {
        if meta.is_dir() {
            Format::OpenclawState
        } else if is_sqlite(&path) {
            Format::OpenclawSqlite
        } else {
            Format::Auto
        }
    } else {
        format
    };
    match format {
        Format::OpenclawState => {
            if agent.is_some() {
                return Err(RpcError::invalid_params(
                    "`agent` cannot be used with openclaw-state: the directory names the scopes (shared, and agents/<id>)",
                )
                .with("pointer", "/agent"));
            }
            if !meta.is_dir() {
                return Err(RpcError::new(
                    ErrorKind::ShapeUnrecognized,
                    format!(
                        "{} is not a directory (format openclaw-state)",
                        path.display()
                    ),
                ));
            }
            load_state_dir(&path)
        }
        Format::OpenclawSqlite => {
            if !is_sqlite(&path) {
                return Err(RpcError::new(
                    ErrorKind::ShapeUnrecognized,
                    format!(
                        "{} is not a SQLite database (format openclaw-sqlite)",
                        path.display()
                    ),
                ));
            }
            let label = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut warnings = vec![];
            let pieces = sqlite_pieces(&path, &label, agent, &mut warnings)?.ok_or_else(|| {
                RpcError::new(
                    ErrorKind::ShapeUnrecognized,
                    format!(
                        "{} has no OpenClaw auth tables (auth_profile_store or config_machine_state); nothing was imported",
                        path.display()
                    ),
                )
            })?;
            Ok(Loaded {
                format: Format::OpenclawSqlite,
                pieces,
                warnings,
                errors: vec![],
            })
        }
        f => {
            if meta.is_dir() {
                return Err(RpcError::new(
                    ErrorKind::ShapeUnrecognized,
                    format!("{} is a directory, not a JSON file", path.display()),
                ));
            }
            let doc = read_json(&path)?;
            import::load_json(doc, f, agent).map_err(|e| {
                if e.kind == ErrorKind::ShapeUnrecognized {
                    RpcError {
                        message: format!("{}: {}", path.display(), e.message),
                        ..e
                    }
                } else {
                    e
                }
            })
        }
    }
}

/// Adds the orders OpenClaw's walk takes from openclaw.json `auth.profiles`
/// ([`import::config_profile_orders`]).
fn with_config_orders(plan: &mut ImportPlan, loaded: &Loaded, aliases: &crate::core::ids::Aliases) {
    for piece in loaded
        .pieces
        .iter()
        .filter(|p| p.kind == PieceKind::ConfigProfiles)
    {
        let ids: Vec<String> = piece
            .doc
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        import::config_profile_orders(plan, &ids, now_ms(), aliases);
    }
}

fn scope_name(agent: Option<&str>) -> String {
    agent.unwrap_or("shared").to_string()
}

fn provider_of(id: &str) -> &str {
    id.split_once(':').map(|(p, _)| p).unwrap_or("")
}

/// Applies `plan` on `c` (inside the caller's transaction). With `write` false nothing is
/// written and the result says what would happen. Returns `(profiles, orders, warnings)`.
fn apply(
    c: &dyn Tx,
    plan: &ImportPlan,
    replace: bool,
    write: bool,
    now: i64,
) -> Result<(Vec<ProfileAction>, Vec<OrderAction>, Vec<ImportWarning>)> {
    let mut actions = vec![];
    let mut order_actions = vec![];
    let mut warnings = vec![];
    let shared_planned: BTreeSet<&str> = plan
        .scopes
        .iter()
        .filter(|s| s.agent.is_none())
        .flat_map(|s| s.profiles.keys().map(String::as_str))
        .collect();
    let all_planned: BTreeSet<&str> = plan
        .scopes
        .iter()
        .flat_map(|s| s.profiles.keys().map(String::as_str))
        .collect();
    // The shared orders as this import leaves them (also in a dry run).
    let mut shared_final: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for scope in &plan.scopes {
        let a = scope.agent.as_deref();
        // 1. Profiles.
        let mut imported: Vec<&str> = vec![];
        for (id, pp) in &scope.profiles {
            let existing = c.scope_profile(a, id)?;
            let (action, reason) = match &existing {
                None => ("created", None),
                Some(e) if e.profile == pp.profile => ("unchanged", None),
                Some(_) if replace => ("updated", None),
                Some(_) => ("skipped", Some("exists".to_string())),
            };
            if matches!(action, "created" | "updated") {
                imported.push(id);
                if write {
                    c.upsert_profile(a, &pp.profile, now)?;
                    match scope.usage.get(id) {
                        Some(u) => c.put_usage(id, u)?,
                        None if action == "updated" => {
                            // Replacing a credential clears its cooldowns and failure counts.
                            let u = Usage {
                                last_used: c.usage(id)?.last_used,
                                ..Default::default()
                            };
                            c.put_usage(id, &u)?;
                        }
                        None => {}
                    }
                }
            }
            actions.push(ProfileAction {
                profile_id: id.clone(),
                scope: scope_name(a),
                action: action.into(),
                reason,
            });
        }
        // Ids the scope's view holds after the import.
        let mut visible: BTreeSet<String> = c
            .view_profiles(a, None)?
            .into_iter()
            .map(|s| s.profile.id)
            .collect();
        visible.extend(scope.profiles.keys().cloned());
        if a.is_some() {
            visible.extend(shared_planned.iter().map(|s| s.to_string()));
        }
        let warn = |w: &mut Vec<ImportWarning>, ptr: &str, src: &Option<String>, msg: String| {
            w.push(ImportWarning {
                pointer: ptr.to_string(),
                kind: "order_entry_dropped".into(),
                message: msg,
                source: src.clone(),
            })
        };
        // 2. Orders.
        let mut ordered: BTreeSet<&str> = BTreeSet::new();
        for (provider, po) in &scope.orders {
            ordered.insert(provider);
            let mut ids = vec![];
            let mut named = false;
            for (k, id) in po.ids.iter().enumerate() {
                let ptr = match po.indexes.get(k) {
                    Some(i) => format!("{}/{i}", po.pointer),
                    None => po.pointer.clone(),
                };
                if provider_of(id) != provider {
                    warn(
                        &mut warnings,
                        &ptr,
                        &po.source,
                        format!("`{id}` is not a {provider} profile; left out of the order"),
                    );
                } else if visible.contains(id) {
                    named = true;
                    ids.push(id.clone());
                } else if a.is_none()
                    && (all_planned.contains(id.as_str()) || c.profile_id_exists_anywhere(id)?)
                {
                    // An agent's own profile in the shared (config) order, as OpenClaw writes
                    // it for `paste-api-key --agent`: that agent's walk uses it from here.
                    named = true;
                    ids.push(id.clone());
                } else {
                    // OpenClaw keeps such an entry and skips it when walking; so does modelauth.
                    warnings.push(ImportWarning {
                        pointer: ptr,
                        kind: "order_entry_unknown".into(),
                        message: format!(
                            "`{id}` names no profile; kept in the {provider} order, where the walk skips it until such a profile exists"
                        ),
                        source: po.source.clone(),
                    });
                    ids.push(id.clone());
                }
            }
            if !named {
                warn(
                    &mut warnings,
                    &po.pointer,
                    &po.source,
                    format!("no id of the {provider} order is stored; the order was not imported"),
                );
                continue;
            }
            let existing = c.scope_order(a, provider)?.map(|(ids, _)| ids);
            let (final_ids, action, reason) = match existing {
                None => (ids, "created", None),
                Some(e) if e == ids => (ids, "unchanged", None),
                Some(_) if replace => (ids, "updated", None),
                Some(mut e) => {
                    let before = e.len();
                    for id in &imported {
                        if provider_of(id) == provider && !e.iter().any(|x| x == id) {
                            e.push(id.to_string());
                        }
                    }
                    if e.len() > before {
                        (e, "updated", Some("appended".to_string()))
                    } else {
                        (e, "skipped", Some("exists".to_string()))
                    }
                }
            };
            if write && action != "unchanged" && action != "skipped" {
                c.set_order(a, provider, &final_ids, now)?;
            }
            if a.is_none() {
                shared_final.insert(provider.clone(), final_ids.clone());
            }
            order_actions.push(OrderAction {
                provider: provider.clone(),
                scope: scope_name(a),
                order: final_ids,
                action: action.into(),
                reason,
            });
        }
        // Routability (as profiles.put): an imported profile missing from the scope's own
        // explicit order of its provider is appended to it.
        let mut by_provider: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for id in &imported {
            by_provider.entry(provider_of(id)).or_default().push(id);
        }
        for (provider, new_ids) in by_provider {
            if ordered.contains(provider) {
                continue;
            }
            let own = c.scope_order(a, provider)?.map(|(ids, _)| ids);
            let base = match (&own, a) {
                (Some(ids), _) => Some(ids.clone()),
                (None, Some(_)) => match shared_final.get(provider) {
                    Some(ids) => Some(ids.clone()),
                    None => c.scope_order(None, provider)?.map(|(ids, _)| ids),
                },
                (None, None) => None,
            };
            if let Some(mut ids) = base {
                let before = ids.clone();
                for id in new_ids {
                    if !ids.iter().any(|x| x == id) {
                        ids.push(id.to_string());
                    }
                }
                if ids != before {
                    if write {
                        c.set_order(a, provider, &ids, now)?;
                    }
                    order_actions.push(OrderAction {
                        provider: provider.to_string(),
                        scope: scope_name(a),
                        order: ids,
                        action: if own.is_some() { "updated" } else { "created" }.into(),
                        reason: Some("appended".into()),
                    });
                }
            }
        }
        // 3. lastGood.
        for (provider, (id, ptr, src)) in &scope.last_good {
            if provider_of(id) != provider || !visible.contains(id) {
                warnings.push(ImportWarning {
                    pointer: ptr.clone(),
                    kind: "last_good_dropped".into(),
                    message: format!(
                        "`{id}` is not a stored {provider} profile; lastGood not imported"
                    ),
                    source: src.clone(),
                });
                continue;
            }
            if write && c.last_good(a, provider)?.as_deref() != Some(id) {
                c.set_last_good(a, provider, id)?;
            }
        }
    }
    Ok((actions, order_actions, warnings))
}

fn agent_param(a: Option<String>) -> Result<Option<String>> {
    a.map(|a| {
        ids::validate_agent(&a)
            .map_err(|e| RpcError::invalid_params(e.to_string()).with("pointer", "/agent"))
    })
    .transpose()
}

/// Whether an open SQLite file is a modelauth store (it has every table of one).
fn is_modelauth_store(c: &Connection) -> bool {
    [
        "profiles",
        "orders",
        "last_good",
        "usage",
        "providers",
        "settings",
    ]
    .iter()
    .all(|t| has_table(c, t))
}

/// Opens a modelauth store file to copy from, only reading it: `mode=ro&immutable=1`, or
/// `mode=ro` when a non-empty `-wal` holds commits not yet in the main file (a process
/// still has it open). Errors: `import_invalid` (unreadable, a newer schema),
/// `shape_unrecognized` (not a modelauth store).
fn open_modelauth_store(path: &Path) -> Result<Connection> {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let live_wal = std::fs::metadata(PathBuf::from(wal)).is_ok_and(|m| m.len() > 0);
    let c = if live_wal {
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let mut enc = String::new();
        for ch in abs.to_string_lossy().chars() {
            match ch {
                '%' => enc.push_str("%25"),
                '?' => enc.push_str("%3f"),
                '#' => enc.push_str("%23"),
                c => enc.push(c),
            }
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        Connection::open_with_flags(format!("file:{enc}?mode=ro"), flags)
            .map_err(|e| unreadable(path, e))?
    } else {
        open_source_db(path)?
    };
    if !is_modelauth_store(&c) {
        return Err(RpcError::new(
            ErrorKind::ShapeUnrecognized,
            format!(
                "{} is not a modelauth store (format modelauth-store); nothing was imported",
                path.display()
            ),
        ));
    }
    let v: i64 = c
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| unreadable(path, e))?;
    if v > crate::store::SCHEMA_VERSION {
        return Err(RpcError::new(
            ErrorKind::ImportInvalid,
            format!(
                "{} has store schema version {v}, newer than this modelauth reads; nothing was imported",
                path.display()
            ),
        )
        .with_hint("upgrade modelauth"));
    }
    Ok(c)
}

/// Copies a whole modelauth store (`src`) into `dst`: providers and settings (kept when
/// `dst` has the key, unless `replace`), then per scope the profiles (`created`,
/// `unchanged`, `updated` with `replace`, else `skipped: exists`), their usage state,
/// orders (same rules; a kept order gets the created profiles appended so they stay
/// routable) and lastGood. With `write` false nothing is written (a dry run).
fn copy_store(
    src: &dyn Tx,
    dst: &dyn Tx,
    replace: bool,
    write: bool,
    now: i64,
) -> Result<(Vec<ProfileAction>, Vec<OrderAction>, Vec<ImportWarning>)> {
    let mut warnings = vec![];
    let dst_providers: BTreeMap<String, Value> = dst.providers()?.into_iter().collect();
    for (id, body) in src.providers()? {
        match dst_providers.get(&id) {
            Some(b) if *b == body => {}
            Some(_) if !replace => warnings.push(ImportWarning {
                pointer: format!("/providers/{id}"),
                kind: "provider_kept".into(),
                message: format!(
                    "provider `{id}` is registered differently here; kept (see `replace`)"
                ),
                source: None,
            }),
            _ => {
                if write {
                    dst.put_provider(&id, &body)?;
                }
            }
        }
    }
    for (k, v) in src.settings()? {
        match dst.setting(&k)? {
            Some(d) if d == v => {}
            Some(_) if !replace => warnings.push(ImportWarning {
                pointer: format!("/settings/{k}"),
                kind: "setting_kept".into(),
                message: format!("setting `{k}` differs here; kept (see `replace`)"),
                source: None,
            }),
            _ => {
                if write {
                    dst.put_setting(&k, &v)?;
                }
            }
        }
    }
    let mut profiles = vec![];
    let mut orders = vec![];
    let mut usage_done = BTreeSet::new();
    for scope in src.scopes()? {
        let a = scope.as_deref();
        let mut created: Vec<(String, String)> = vec![];
        for sp in src
            .view_profiles(a, None)?
            .into_iter()
            .filter(|s| s.scope.as_deref() == a)
        {
            let p = sp.profile;
            let action = match dst.scope_profile(a, &p.id)? {
                None => "created",
                Some(e) if e.profile == p => "unchanged",
                Some(_) if replace => "updated",
                Some(_) => "skipped",
            };
            if write && matches!(action, "created" | "updated") {
                dst.upsert_profile(a, &p, now)?;
            }
            if action == "created" {
                created.push((p.provider.clone(), p.id.clone()));
            }
            if action != "skipped" && usage_done.insert(p.id.clone()) {
                let u = src.usage(&p.id)?;
                if u != Usage::default()
                    && (replace || dst.usage(&p.id)? == Usage::default())
                    && write
                {
                    dst.put_usage(&p.id, &u)?;
                }
            }
            profiles.push(ProfileAction {
                profile_id: p.id,
                scope: scope_name(a),
                action: action.into(),
                reason: (action == "skipped").then(|| "exists".into()),
            });
        }
        let src_orders = src.scope_orders(a)?;
        let mut providers_done = BTreeSet::new();
        for (provider, ids) in &src_orders {
            providers_done.insert(provider.clone());
            let (order, action, reason) = match dst.scope_order(a, provider)? {
                None => (ids.clone(), "created", None),
                Some((have, _)) if have == *ids => (have, "unchanged", None),
                Some(_) if replace => (ids.clone(), "updated", None),
                Some((mut have, _)) => {
                    let mut appended = false;
                    for (_, id) in created.iter().filter(|(p, _)| p == provider) {
                        if !have.contains(id) {
                            have.push(id.clone());
                            appended = true;
                        }
                    }
                    if appended {
                        (have, "updated", Some("appended".to_string()))
                    } else {
                        (have, "skipped", Some("exists".to_string()))
                    }
                }
            };
            if write && matches!(action, "created" | "updated") {
                dst.set_order(a, provider, &order, now)?;
            }
            orders.push(OrderAction {
                provider: provider.clone(),
                scope: scope_name(a),
                order,
                action: action.into(),
                reason,
            });
        }
        // Created profiles of a provider the source has no order for, under a kept order
        // of the destination: appended so they stay routable.
        for (provider, have) in dst.scope_orders(a)? {
            if providers_done.contains(&provider) {
                continue;
            }
            let mut order = have.clone();
            for (_, id) in created.iter().filter(|(p, _)| *p == provider) {
                if !order.contains(id) {
                    order.push(id.clone());
                }
            }
            if order != have {
                if write {
                    dst.set_order(a, &provider, &order, now)?;
                }
                orders.push(OrderAction {
                    provider,
                    scope: scope_name(a),
                    order,
                    action: "updated".into(),
                    reason: Some("appended".into()),
                });
            }
        }
        for (provider, id) in src.scope_last_good(a)? {
            let have = dst.last_good(a, &provider)?;
            if have.as_deref() == Some(id.as_str()) || (have.is_some() && !replace) {
                continue;
            }
            if write {
                dst.set_last_good(a, &provider, &id)?;
            }
        }
    }
    Ok((profiles, orders, warnings))
}

/// `store.import` of format `modelauth-store` (explicit, or detected from the tables).
fn modelauth_store_path(p: &ImportParams) -> Result<Option<PathBuf>> {
    let Some(raw) = p.path.as_deref() else {
        return Ok(None);
    };
    let path = expand_home(raw);
    let detect = p.format == Format::Auto
        && path.is_file()
        && is_sqlite(&path)
        && open_source_db(&path).is_ok_and(|c| is_modelauth_store(&c));
    if p.format != Format::ModelauthStore && !detect {
        return Ok(None);
    }
    if p.agent.is_some() {
        return Err(RpcError::invalid_params(
            "`agent` cannot be used with modelauth-store: the store names its scopes",
        )
        .with("pointer", "/agent"));
    }
    if p.document.is_some() {
        return Err(RpcError::invalid_params(
            "format modelauth-store needs a `path`, not a `document`",
        )
        .with("pointer", "/document"));
    }
    Ok(Some(path))
}

impl App {
    /// `store.import` of a modelauth SQLite store file: everything it holds, in one write
    /// transaction on this store (a dry run reads only).
    fn import_modelauth_store(&self, path: &Path, p: &ImportParams) -> Result<ImportResult> {
        let src = open_modelauth_store(path)?;
        let rtx = src
            .unchecked_transaction()
            .map_err(|e| unreadable(path, e))?;
        let now = now_ms();
        let run = |c: &dyn Tx, write: bool| -> Result<ImportResult> {
            let (profiles, orders, warnings) = copy_store(&*rtx, c, p.replace, write, now)?;
            if write {
                tracing::info!(
                    format = "modelauth-store",
                    profiles = profiles.len(),
                    "import applied"
                );
            }
            Ok(ImportResult {
                format: Format::ModelauthStore,
                agent: None,
                dry_run: !write,
                profiles,
                orders,
                warnings,
                errors: vec![],
            })
        };
        let mut st = self.store();
        if p.dry_run {
            st.read(|c| run(c, false))
        } else {
            st.write(|c| run(c, true))
        }
    }

    /// `store.import`: reads the source, then applies every valid entry in one transaction
    /// (or, with `dryRun`, in a read transaction that creates nothing). Errors:
    /// `invalid_params`, `import_invalid`, `shape_unrecognized`, store errors; on any error
    /// nothing is changed.
    pub fn store_import(&self, p: ImportParams) -> Result<ImportResult> {
        if let Some(path) = modelauth_store_path(&p)? {
            return self.import_modelauth_store(&path, &p);
        }
        let agent = agent_param(p.agent)?;
        let a = agent.as_deref();
        let loaded = load_source(p.path.as_deref(), p.document, p.format, a)?;
        let now = now_ms();
        let run = |c: &dyn Tx, write: bool| -> Result<ImportResult> {
            let aliases = load_aliases(c)?;
            let mut plan = import::plan(&loaded, &aliases);
            with_config_orders(&mut plan, &loaded, &aliases);
            let (profiles, orders, extra) = apply(c, &plan, p.replace, write, now)?;
            let mut warnings = plan.warnings;
            warnings.extend(extra);
            if write {
                tracing::info!(
                    format = plan.format.as_str(),
                    profiles = profiles.len(),
                    errors = plan.errors.len(),
                    "import applied"
                );
            }
            Ok(ImportResult {
                format: plan.format,
                agent: agent.clone(),
                dry_run: !write,
                profiles,
                orders,
                warnings,
                errors: plan.errors,
            })
        };
        let mut st = self.store();
        if p.dry_run {
            st.read(|c| run(c, false))
        } else {
            st.write(|c| run(c, true))
        }
    }

    /// `store.validate`: the errors and warnings `store.import` would report for the
    /// source, judged on its own (not against the store). Writes nothing.
    pub fn store_validate(&self, p: ValidateParams) -> Result<ValidateResult> {
        if p.format == Format::ModelauthStore {
            let path = p.path.as_deref().ok_or_else(|| {
                RpcError::invalid_params("format modelauth-store needs a `path`")
                    .with("pointer", "/path")
            })?;
            open_modelauth_store(&expand_home(path))?;
            return Ok(ValidateResult {
                valid: true,
                format: Format::ModelauthStore,
                errors: vec![],
                warnings: vec![],
            });
        }
        let loaded = load_source(p.path.as_deref(), p.document, p.format, None)?;
        let aliases = self.store().read(load_aliases)?;
        let mut plan = import::plan(&loaded, &aliases);
        with_config_orders(&mut plan, &loaded, &aliases);
        Ok(ValidateResult {
            valid: plan.errors.is_empty(),
            format: plan.format,
            errors: plan.errors,
            warnings: plan.warnings,
        })
    }

    /// `store.export`: one scope as OpenClaw's auth-profiles.json v1 document.
    pub fn store_export(&self, p: ExportParams) -> Result<ExportResult> {
        let agent = agent_param(p.agent)?;
        let a = agent.as_deref();
        self.store().read(|c| {
            let profiles: Vec<_> = c
                .view_profiles(a, None)?
                .into_iter()
                .filter(|s| s.scope.as_deref() == a)
                .map(|s| s.profile)
                .collect();
            let orders = c.scope_orders(a)?;
            let last_good = c.scope_last_good(a)?;
            let mut usage = BTreeMap::new();
            for p in &profiles {
                usage.insert(p.id.clone(), c.usage(&p.id)?);
            }
            Ok(ExportResult {
                agent: agent.clone(),
                document: export::document(&profiles, &orders, &last_good, &usage, p.reveal),
            })
        })
    }
}

/// The body of the `import` fuzz target (`fuzz/fuzz_targets/import.rs`) and of its
/// seeded-corpus test (`tests/import_fuzz.rs`): the first byte picks a parser, the rest
/// is the source — 0: a JSON document through every JSON format, 1: the bytes as a SQLite
/// file, 2: the bytes as a JSON file (both through [`load_source`], written under
/// `scratch`). Each accepted source is planned as an import. Never panics; returns whether
/// the source was accepted.
pub fn fuzz_import_source(data: &[u8], scratch: &Path) -> bool {
    let Some((selector, body)) = data.split_first() else {
        return false;
    };
    let aliases = ids::Aliases::new();
    let mut accepted = false;
    match selector % 3 {
        0 => {
            let Ok(doc) = serde_json::from_slice::<Value>(body) else {
                return false;
            };
            for format in [
                Format::Auto,
                Format::Openclaw,
                Format::OpenclawFlat,
                Format::Modelauth,
            ] {
                if let Ok(loaded) = import::load_json(doc.clone(), format, None) {
                    let _ = import::plan(&loaded, &aliases);
                    accepted = true;
                }
            }
        }
        n => {
            let path = scratch.join(if n == 1 { "src.sqlite" } else { "src.json" });
            if std::fs::write(&path, body).is_err() {
                return false;
            }
            if let Ok(loaded) = load_source(path.to_str(), None, Format::Auto, None) {
                let _ = import::plan(&loaded, &aliases);
                accepted = true;
            }
        }
    }
    accepted
}
