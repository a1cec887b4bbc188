//! Import sources, read only: JSON files, OpenClaw state directories and SQLite databases
//! (OpenClaw's, and modelauth's own store for `modelauth-store`), each opened
//! non-blocking, checked to be a regular file and read up to a cap ([`crate::fsread`]);
//! a database with a `-wal` is read from a private copy, so the source, its `-wal` and
//! `-shm` stay byte-identical and no checkpoint runs. Never inside a store transaction.

use crate::core::error::{ErrorKind, Result, RpcError};
use crate::core::ids;
use crate::fsread;
use crate::openclaw::import::{
    self, Format, ImportParams, ImportWarning, Loaded, Piece, PieceKind,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Largest JSON source read (bytes).
const MAX_JSON_BYTES: u64 = 64 * 1024 * 1024;

pub(super) fn unreadable(path: &Path, what: impl std::fmt::Display) -> RpcError {
    RpcError::new(
        ErrorKind::ImportInvalid,
        format!(
            "cannot read {}: {what}; nothing was imported",
            path.display()
        ),
    )
}

pub(super) fn expand_home(p: &str) -> PathBuf {
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
    read_json_bytes(path).map(|(v, _)| v)
}

/// [`read_json`] with the bytes it parsed (one read through [`fsread`], so what is parsed
/// twice is one file, never re-opened).
fn read_json_bytes(path: &Path) -> Result<(Value, Vec<u8>)> {
    let (f, meta) = open_source(path)?;
    let bytes = fsread::read_capped(f, &meta, MAX_JSON_BYTES).map_err(|e| unreadable(path, e))?;
    let v = serde_json::from_slice(&bytes).map_err(|_| {
        RpcError::new(
            ErrorKind::ShapeUnrecognized,
            format!(
                "{} is neither JSON nor a SQLite database; nothing was imported",
                path.display()
            ),
        )
    })?;
    Ok((v, bytes))
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
    match std::fs::symlink_metadata(&wal) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        _ => {}
    }
    // The `-wal` is a source file like the database: opened without blocking (a FIFO is
    // refused at once), checked to be a regular file, and capped with the database.
    let (wal_file, wal_meta) = open_source(&wal)?;
    if wal_meta.len() == 0 {
        return Ok(None);
    }
    let (db_file, db_meta) = open_source(path)?;
    let total = db_meta.len().saturating_add(wal_meta.len());
    if total > MAX_SQLITE_BYTES {
        return Err(unreadable(
            path,
            format!("the database and its -wal are larger than {MAX_SQLITE_BYTES} bytes"),
        ));
    }
    let dir = tempfile::Builder::new()
        .prefix("modelauth-import-")
        .tempdir()
        .map_err(|e| unreadable(path, e))?;
    let db = dir.path().join("source.sqlite");
    // The WAL is read before the database: a checkpoint between the two reads then only
    // moves frames the copy already has into the main file, which replays the same way.
    // Streamed (never whole in memory), each read capped by what is left of the budget,
    // so a file that grows meanwhile is still refused.
    let copy = |from: std::fs::File, to: &Path, room: u64, what: &Path| -> Result<u64> {
        use std::io::Read;
        let mut out = std::fs::File::create(to).map_err(|e| unreadable(what, e))?;
        let n =
            std::io::copy(&mut from.take(room + 1), &mut out).map_err(|e| unreadable(what, e))?;
        if n > room {
            return Err(unreadable(
                what,
                format!("the database and its -wal are larger than {MAX_SQLITE_BYTES} bytes"),
            ));
        }
        Ok(n)
    };
    let used = copy(wal_file, &companion(&db, "-wal"), MAX_SQLITE_BYTES, &wal)?;
    copy(db_file, &db, MAX_SQLITE_BYTES - used, path)?;
    Ok(Some(WalCopy { _dir: dir, db }))
}

/// Opens the private copy read-write (SQLite needs to build its WAL index next to it)
/// with the limits of every untrusted source ([`limit_source_connection`]).
fn open_copy_db(copy: &WalCopy, source: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut c = Connection::open_with_flags(&copy.db, flags).map_err(|e| unreadable(source, e))?;
    limit_source_connection(&mut c).map_err(|e| unreadable(source, e))?;
    Ok(c)
}

/// A SQLite source open for reading: on the file itself (immutable, when it has no WAL
/// content), or on a private copy of it and its `-wal` ([`wal_copy`]), kept while the
/// connection lives. Either way with the limits of [`limit_source_connection`], and
/// nothing is created or changed beside the source (no `-shm`, no checkpoint).
pub(super) struct SourceDb {
    conn: Connection,
    _copy: Option<WalCopy>,
}

impl std::ops::Deref for SourceDb {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

/// Opens a SQLite source as [`SourceDb`]. Errors: `import_invalid` (unreadable, a FIFO or
/// device as the file or its `-wal`, too large).
fn open_source_snapshot(path: &Path) -> Result<SourceDb> {
    let copy = wal_copy(path)?;
    let conn = match &copy {
        Some(cp) => open_copy_db(cp, path)?,
        None => open_source_db(path)?,
    };
    Ok(SourceDb { conn, _copy: copy })
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
    let c = open_source_snapshot(path)?;
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
    // OpenClaw 2026.9's shared secret store (protocol §12 r3): live team entries.
    if agent.is_none() && has_table(&c, "secret_store_entries") {
        let entries = secret_store_entries(&c, path)?;
        if !entries.is_empty() {
            out.push(piece(
                PieceKind::SecretStore,
                Value::Object(entries),
                format!("{label} secret_store_entries"),
            ));
        }
    }
    let _ = warnings;
    Ok(Some(out))
}

/// The live team-scope entries of OpenClaw's secret store: `{name: value}`. Soft-deleted
/// entries (`deleted_at_ms` set) are left out, as OpenClaw's `readSecretStoreValue` does.
fn secret_store_entries(c: &Connection, path: &Path) -> Result<serde_json::Map<String, Value>> {
    let mut s = c
        .prepare(
            "SELECT name, value FROM secret_store_entries WHERE scope_kind = 'team' AND scope_id = '' AND deleted_at_ms IS NULL ORDER BY name",
        )
        .map_err(|e| unreadable(path, e))?;
    let rows = s
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(|e| unreadable(path, e))?;
    let mut out = serde_json::Map::new();
    for r in rows {
        let (name, value) = r.map_err(|e| unreadable(path, e))?;
        out.insert(name, Value::String(value));
    }
    Ok(out)
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

mod state_dir;

use state_dir::load_state_dir;

/// Reads a source (`path` or `document`) into pieces, detecting the format when `auto`.
/// Errors: `invalid_params` (neither or both of path/document, an agent with a state
/// directory), `import_invalid` (unreadable), `shape_unrecognized`.
pub(crate) fn load_source(
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
        Format::OpenclawState => load_state_source(&path, &meta, agent),
        Format::OpenclawSqlite => load_sqlite_source(&path, agent),
        f => load_json_source(&path, &meta, f, agent),
    }
}

/// [`load_source`] of an OpenClaw state directory (format `openclaw-state`).
fn load_state_source(path: &Path, meta: &std::fs::Metadata, agent: Option<&str>) -> Result<Loaded> {
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
    load_state_dir(path)
}

/// [`load_source`] of an OpenClaw SQLite database (format `openclaw-sqlite`).
fn load_sqlite_source(path: &Path, agent: Option<&str>) -> Result<Loaded> {
    if !is_sqlite(path) {
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
    let pieces = sqlite_pieces(path, &label, agent, &mut warnings)?.ok_or_else(|| {
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

/// [`load_source`] of a JSON file of format `f` (`auto` detects it).
fn load_json_source(
    path: &Path,
    meta: &std::fs::Metadata,
    f: Format,
    agent: Option<&str>,
) -> Result<Loaded> {
    if meta.is_dir() {
        return Err(RpcError::new(
            ErrorKind::ShapeUnrecognized,
            format!("{} is a directory, not a JSON file", path.display()),
        ));
    }
    let doc = read_json(path)?;
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

/// Opens a modelauth store file to copy from, only reading it: immutable, or a private
/// copy with its `-wal` when that holds commits not yet in the main file (a process still
/// has it open) — capped and limited as every SQLite source ([`open_source_snapshot`]).
/// Errors: `import_invalid` (unreadable, a newer schema), `shape_unrecognized` (not a
/// modelauth store).
pub(super) fn open_modelauth_store(path: &Path) -> Result<SourceDb> {
    let c = open_source_snapshot(path)?;
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

/// `store.import` of format `modelauth-store` (explicit, or detected from the tables).
pub(super) fn modelauth_store_path(p: &ImportParams) -> Result<Option<PathBuf>> {
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
