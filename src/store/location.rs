//! Store locations (PROTOCOL §2, §2.3 *(r2)*): a SQLite file path, or a PostgreSQL URL
//! (`postgres://…` / `postgresql://…`, libpq's URL form).
//!
//! For PostgreSQL the libpq conventions apply where the URL leaves something out: `PGHOST`
//! (a directory means a Unix socket), `PGPORT`, `PGUSER` (else the OS user), `PGDATABASE`
//! (else the user name), `PGPASSWORD`, then `PGPASSFILE` or `~/.pgpass`, and `PGSSLMODE`.
//! `sslmode` and `sslrootcert` are read here (rust-postgres knows only disable/prefer/require);
//! everything else in the URL is passed to rust-postgres as is.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::core::error::{ErrorKind, RpcError};

/// The default PostgreSQL schema holding the tables (`$MODELAUTH_PG_SCHEMA` overrides it).
pub(crate) const DEFAULT_PG_SCHEMA: &str = "modelauth";

/// Connect timeout for PostgreSQL (PROTOCOL §2.3: a request made while the server is down
/// answers within `busyTimeoutMs` plus this).
pub(crate) const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a store lives.
#[derive(Clone)]
pub enum StoreLocation {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL database (and schema in it).
    Postgres(Box<PgLocation>),
}

/// TLS policy from `sslmode` (libpq's meanings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS if the server offers it, certificate not checked (libpq's default; here the
    /// default for `localhost`, loopback addresses and Unix sockets only).
    Prefer,
    /// TLS required, certificate not checked.
    Require,
    /// TLS required, certificate chain checked against the roots, host name not checked.
    VerifyCa,
    /// TLS required, certificate chain and host name checked.
    VerifyFull,
}

/// A parsed PostgreSQL location. Its `Debug` shows no password.
#[derive(Clone)]
pub struct PgLocation {
    /// Connection settings for rust-postgres (may hold a password: never print it).
    pub config: tokio_postgres::Config,
    /// The location as shown to people: the URL without any password.
    pub display: String,
    /// The schema holding the tables (a plain lower-case identifier).
    pub schema: String,
    /// TLS policy.
    pub ssl_mode: SslMode,
    /// `sslrootcert`: PEM roots for verify-ca (required) / verify-full (else the webpki
    /// roots, as libpq's `sslrootcert=system`).
    pub root_cert: Option<PathBuf>,
    /// A passfile that exists but was ignored because group or others may read it (libpq's
    /// rule), for the `store_auth` hint (PROTOCOL §10 r3).
    pub passfile_ignored: Option<PathBuf>,
}

impl std::fmt::Debug for PgLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLocation")
            .field("display", &self.display)
            .field("schema", &self.schema)
            .field("ssl_mode", &self.ssl_mode)
            .finish_non_exhaustive()
    }
}

/// Whether `s` is a PostgreSQL location (`postgres://` or `postgresql://`).
pub(crate) fn is_postgres_url(s: &str) -> bool {
    let l = s.trim_start().to_ascii_lowercase();
    l.starts_with("postgres://") || l.starts_with("postgresql://")
}

/// Parses a store location. `from_argv` is true for `--store` (visible to every user in
/// the process list): a password there is refused (`invalid_params`, `data.reason:
/// "password_in_argv"`; the CLI exits 64).
///
/// Errors: an unparsable URL, an invalid `sslmode`, an invalid `$MODELAUTH_PG_SCHEMA`.
/// No error message contains the password.
pub fn parse_location(
    raw: &Path,
    from_argv: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<StoreLocation, RpcError> {
    let Some(s) = raw.to_str().filter(|s| is_postgres_url(s)) else {
        return Ok(StoreLocation::Sqlite(raw.to_path_buf()));
    };
    parse_pg(s.trim(), from_argv, env).map(|l| StoreLocation::Postgres(Box::new(l)))
}

fn bad_url(msg: impl Into<String>) -> RpcError {
    RpcError::new(ErrorKind::InvalidParams, msg).with("reason", "bad_store_url").with_hint(
        "use postgres://[user@]host[:port]/database[?sslmode=...&host=/socket/dir]; put a password in $MODELAUTH_STORE, PGPASSWORD or ~/.pgpass",
    )
}

fn parse_pg(
    s: &str,
    from_argv: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PgLocation, RpcError> {
    let parts = split_url(s);
    let base = parts.base;
    if parts.host.contains('@') {
        // An unencoded `@` in the password: rust-postgres would take the rest of it for
        // the host, and show it in its errors.
        return Err(bad_url(format!(
            "the store location {} has an `@` in its password or host; percent-encode it as %40",
            redact(base, &[])
        )));
    }
    let q = parse_query(parts.query)?;
    let display = redact(base, &q.kept);
    let url = if q.kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", q.kept.join("&"))
    };
    let mut config: tokio_postgres::Config = url.parse().map_err(|_| {
        bad_url(format!(
            "the store location {display} is not a valid PostgreSQL URL"
        ))
    })?;
    if from_argv && (config.get_password().is_some() || q.password_in_query) {
        return Err(RpcError::new(
            ErrorKind::InvalidParams,
            format!("a password in --store is visible to every user of this machine (the process list); refused: {display}"),
        )
        .with("reason", "password_in_argv")
        .with_hint("put the URL with its password in $MODELAUTH_STORE, or the password in PGPASSWORD or ~/.pgpass"));
    }
    libpq_defaults(&mut config, env);
    let (ssl_mode, root_cert) = tls_policy(q.ssl_mode, q.root_cert, &config, env)?;
    let mut passfile_ignored = None;
    if config.get_password().is_none() {
        passfile_ignored = ignored_passfile(env);
        if let Some(p) = env("PGPASSWORD") {
            config.password(p);
        } else if let Some(p) = passfile_password(&config, env) {
            config.password(p);
        }
    }
    config.ssl_mode(match ssl_mode {
        SslMode::Disable => postgres::config::SslMode::Disable,
        SslMode::Prefer => postgres::config::SslMode::Prefer,
        _ => postgres::config::SslMode::Require,
    });
    config.connect_timeout(PG_CONNECT_TIMEOUT);
    if config.get_application_name().is_none() {
        config.application_name("modelauth");
    }
    Ok(PgLocation {
        config,
        display,
        schema: schema_from_env(env)?,
        ssl_mode,
        root_cert,
        passfile_ignored,
    })
}

/// What the query of a store URL says that is read here (`sslmode`, `sslrootcert`), and
/// the pairs passed on to rust-postgres.
struct Query<'a> {
    ssl_mode: Option<SslMode>,
    root_cert: Option<PathBuf>,
    kept: Vec<&'a str>,
    password_in_query: bool,
}

fn parse_query(query: Option<&str>) -> Result<Query<'_>, RpcError> {
    let mut q = Query {
        ssl_mode: None,
        root_cert: None,
        kept: vec![],
        password_in_query: false,
    };
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "sslmode" => q.ssl_mode = Some(parse_ssl_mode(&percent_decode(v))?),
            "sslrootcert" => q.root_cert = Some(PathBuf::from(percent_decode(v))),
            _ if is_password_pair(pair) => {
                q.password_in_query = true;
                q.kept.push(pair);
            }
            _ => q.kept.push(pair),
        }
    }
    Ok(q)
}

/// libpq's defaults for what the URL leaves out: `PGHOST` (else the usual socket
/// directory, else `localhost`), `PGPORT`, `PGUSER` (else the OS user), `PGDATABASE`
/// (else the user name).
fn libpq_defaults(config: &mut tokio_postgres::Config, env: &dyn Fn(&str) -> Option<String>) {
    if config.get_hosts().is_empty() {
        let hosts = env("PGHOST").unwrap_or_else(|| {
            if Path::new("/var/run/postgresql").is_dir() {
                "/var/run/postgresql".into()
            } else {
                "localhost".into()
            }
        });
        for h in hosts.split(',') {
            config.host(h);
        }
    }
    if config.get_ports().is_empty() {
        if let Some(p) = env("PGPORT").and_then(|p| p.parse::<u16>().ok()) {
            config.port(p);
        }
    }
    if config.get_user().is_none() {
        let user = env("PGUSER")
            .or_else(os_user)
            .unwrap_or_else(|| "postgres".into());
        config.user(&user);
    }
    if config.get_dbname().is_none() {
        let db = env("PGDATABASE").unwrap_or_else(|| config.get_user().unwrap_or("").to_string());
        config.dbname(&db);
    }
}

/// The `sslmode` and roots: the URL's, else `PGSSLMODE` / `PGSSLROOTCERT`, else
/// [`default_ssl_mode`]; `sslrootcert=system` is the public roots, which `verify-ca`
/// refuses (it would accept any certificate any public CA issued).
fn tls_policy(
    ssl_mode: Option<SslMode>,
    mut root_cert: Option<PathBuf>,
    config: &tokio_postgres::Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(SslMode, Option<PathBuf>), RpcError> {
    let ssl_mode = match ssl_mode {
        Some(m) => Some(m),
        None => env("PGSSLMODE").map(|v| parse_ssl_mode(&v)).transpose()?,
    };
    if root_cert.is_none() {
        root_cert = env("PGSSLROOTCERT").map(PathBuf::from);
    }
    let ssl_mode = ssl_mode.unwrap_or_else(|| default_ssl_mode(config));
    // libpq's `sslrootcert=system`: the public roots (what no sslrootcert means here).
    if root_cert.as_deref() == Some(Path::new("system")) {
        if ssl_mode == SslMode::VerifyCa {
            return Err(bad_url("sslmode=verify-ca with the public roots accepts any certificate any public CA issued, for any name: give sslrootcert=/path/ca.pem, or use verify-full"));
        }
        root_cert = None;
    }
    if ssl_mode == SslMode::VerifyCa && root_cert.is_none() {
        // A chain to any public CA, for any host name, proves nothing about the server.
        return Err(bad_url("sslmode=verify-ca needs sslrootcert=/path/ca.pem (the CA that signed the server's certificate); with the public roots it would accept any certificate issued to anyone — or use verify-full"));
    }
    Ok((ssl_mode, root_cert))
}

/// `$MODELAUTH_PG_SCHEMA`, else [`DEFAULT_PG_SCHEMA`]; refused unless [`valid_schema`].
fn schema_from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<String, RpcError> {
    let schema = env("MODELAUTH_PG_SCHEMA").unwrap_or_else(|| DEFAULT_PG_SCHEMA.to_string());
    if !valid_schema(&schema) {
        return Err(RpcError::new(
            ErrorKind::InvalidParams,
            format!("MODELAUTH_PG_SCHEMA {schema:?} is not a plain schema name"),
        )
        .with("reason", "bad_schema_name")
        .with_hint(
            "use lower-case letters, digits and _ (at most 63, not starting with a digit; not public, information_schema or pg_*)",
        ));
    }
    Ok(schema)
}

/// The `sslmode` when neither the URL nor `PGSSLMODE` gives one (issue 20): `verify-full`
/// when any host is reached over the network (not a Unix socket, not `localhost`, not a
/// loopback address), so a store's keys never cross a network to a server that has not
/// proved its name; libpq's `prefer` otherwise (the cleartext password guard still holds).
fn default_ssl_mode(config: &tokio_postgres::Config) -> SslMode {
    let remote = config.get_hosts().iter().any(|h| match h {
        postgres::config::Host::Unix(_) => false,
        postgres::config::Host::Tcp(h) => !is_loopback(h),
    });
    if remote {
        SslMode::VerifyFull
    } else {
        SslMode::Prefer
    }
}

/// `localhost` or a loopback address (`127.0.0.0/8`, `::1`, bracketed or not).
fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// The passfile (`PGPASSFILE`, else `~/.pgpass`) when it exists but group or others may
/// read it, so [`passfile_password`] ignores it.
fn ignored_passfile(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = env("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".pgpass")))?;
    let meta = std::fs::metadata(&path).ok()?;
    (meta.is_file() && meta.permissions().mode() & 0o077 != 0).then_some(path)
}

/// A schema name we accept: `^[a-z_][a-z0-9_]{0,62}$` (so it never needs quoting rules),
/// and not a schema of the system or shared by every role: `public` (often writable by
/// every role, so anyone could plant tables in it), `information_schema`, `pg_*`.
pub(crate) fn valid_schema(s: &str) -> bool {
    let b = s.as_bytes();
    !matches!(s, "public" | "information_schema")
        && !s.starts_with("pg_")
        && !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

fn parse_ssl_mode(v: &str) -> Result<SslMode, RpcError> {
    Ok(match v {
        "disable" | "allow" => SslMode::Disable,
        "prefer" => SslMode::Prefer,
        "require" => SslMode::Require,
        "verify-ca" => SslMode::VerifyCa,
        "verify-full" => SslMode::VerifyFull,
        other => {
            return Err(bad_url(format!(
                "sslmode {other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
            )))
        }
    })
}

/// A PostgreSQL URL cut where rust-postgres cuts it: the userinfo ends at the first `@`
/// (so a password may hold unencoded `/`, `?`, `:`), the host list at the next `/` or
/// `?`, and the query starts at the first `?` after the userinfo.
struct UrlParts<'a> {
    /// Everything before the query.
    base: &'a str,
    /// The host list (`h1:5432,h2`), empty for a socket-only URL.
    host: &'a str,
    query: Option<&'a str>,
}

fn split_url(s: &str) -> UrlParts<'_> {
    let after_scheme = s.find("://").map(|i| i + 3).unwrap_or(0);
    let host_start = s[after_scheme..]
        .find('@')
        .map(|i| after_scheme + i + 1)
        .unwrap_or(after_scheme);
    let host_end = s[host_start..]
        .find(['/', '?'])
        .map(|i| host_start + i)
        .unwrap_or(s.len());
    let (base, query) = match s[host_end..].find('?') {
        Some(i) => (&s[..host_end + i], Some(&s[host_end + i + 1..])),
        None => (s, None),
    };
    UrlParts {
        base,
        host: &s[host_start..host_end],
        query,
    }
}

/// The one way a store location is shown (PROTOCOL §2.3: "the location minus any
/// password"): `helper.info.store.path`, every store error, the `--store` refusal. The
/// userinfo keeps only the user (cut where rust-postgres cuts it, so a password with an
/// unencoded `/` or `?` is hidden whole), a host list holding an `@` is cut after its last
/// one, and `password=` query pairs are dropped. A string that is not a URL is returned
/// as it is.
pub(crate) fn redact_location(s: &str) -> String {
    let parts = split_url(s);
    let kept: Vec<&str> = parts
        .query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .collect();
    redact(parts.base, &kept)
}

/// `base` (a URL without its query) without a password, then the `query` pairs but
/// `password=`.
fn redact(base: &str, query: &[&str]) -> String {
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (user, after) = match rest.split_once('@') {
                Some((userinfo, after)) => (Some(userinfo.split(':').next().unwrap_or("")), after),
                None => (None, rest),
            };
            let host_end = after.find('/').unwrap_or(after.len());
            let (host, tail) = after.split_at(host_end);
            // A stray `@` in the host list is the rest of a password.
            let host = host.rsplit('@').next().unwrap_or("");
            match user {
                Some(u) => format!("{scheme}://{u}@{host}{tail}"),
                None => format!("{scheme}://{host}{tail}"),
            }
        }
        None => base.to_string(),
    };
    let shown: Vec<&str> = query
        .iter()
        .copied()
        .filter(|p| !is_password_pair(p))
        .collect();
    if !shown.is_empty() {
        out.push('?');
        out.push_str(&shown.join("&"));
    }
    out
}

/// Whether a query pair sets the password (its key percent-decoded, as rust-postgres
/// decodes it: `pass%77ord=` is one too).
fn is_password_pair(pair: &str) -> bool {
    let key = pair.split_once('=').map(|(k, _)| k).unwrap_or(pair);
    percent_decode(key) == "password"
}

/// `%XX` escapes decoded (bytes, never slicing inside a character: `%` followed by a
/// non-ASCII character stays as it is); invalid UTF-8 is replaced.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let hex = |c: u8| (c as char).to_digit(16);
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn os_user() -> Option<String> {
    // SAFETY: getpwuid returns a pointer into static storage or null; we copy the name out
    // at once and this process does not call getpwuid from another thread meanwhile.
    unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        if pw.is_null() || (*pw).pw_name.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr((*pw).pw_name)
            .to_str()
            .ok()
            .map(str::to_string)
    }
}

/// The password for this connection from `PGPASSFILE` or `~/.pgpass`
/// (`host:port:database:user:password`, `*` matches anything, `\` escapes), as libpq
/// reads it; the file is ignored when group or others may read it.
fn passfile_password(
    config: &tokio_postgres::Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let path = env("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".pgpass")))?;
    let meta = std::fs::metadata(&path).ok()?;
    if !meta.is_file() || meta.permissions().mode() & 0o077 != 0 {
        return None;
    }
    let text = std::fs::read_to_string(&path).ok()?;
    let host = match config.get_hosts().first()? {
        postgres::config::Host::Tcp(h) => h.clone(),
        postgres::config::Host::Unix(_) => "localhost".to_string(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let db = config.get_dbname().unwrap_or("");
    let user = config.get_user().unwrap_or("");
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = split_passfile_line(line);
        if fields.len() != 5 {
            continue;
        }
        let want = [host.as_str(), port.as_str(), db, user];
        if fields[..4]
            .iter()
            .zip(want)
            .all(|(f, w)| f == "*" || f == w)
        {
            return Some(fields[4].clone());
        }
    }
    None
}

fn split_passfile_line(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.last_mut().expect("one field").push(n);
                }
            }
            ':' if out.len() < 5 => out.push(String::new()),
            c => out.last_mut().expect("one field").push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn pg(s: &str, argv: bool) -> Result<PgLocation, RpcError> {
        match parse_location(Path::new(s), argv, &no_env)? {
            StoreLocation::Postgres(p) => Ok(*p),
            StoreLocation::Sqlite(_) => panic!("not postgres: {s}"),
        }
    }

    #[test]
    fn a_password_with_unencoded_slash_or_question_mark_is_never_shown() {
        for pw in [
            "ab/cd+ef==",
            "q?uery=1&x",
            "a:b/c?d",
            "Zm9v/YmFy?",
            "/lead",
            "trail?",
        ] {
            for tail in ["/fleet", "/fleet?sslmode=disable&application_name=x", ""] {
                let url = format!("postgres://alice:{pw}@db.example:5432{tail}");
                let p = pg(&url, false).unwrap();
                assert_eq!(
                    p.config.get_password(),
                    Some(pw.as_bytes()),
                    "{url}: the password is the whole userinfo after the first `:`"
                );
                for shown in [p.display.clone(), redact_location(&url)] {
                    assert!(!shown.contains(pw), "{shown}");
                    assert!(
                        shown.starts_with("postgres://alice@db.example:5432"),
                        "{shown}"
                    );
                }
                let e = pg(&url, true).unwrap_err();
                assert_eq!(e.data()["reason"], "password_in_argv");
                assert!(!e.message.contains(pw), "{}", e.message);
                assert!(!e.data().to_string().contains(pw));
            }
        }
    }

    #[test]
    fn an_at_sign_in_the_password_and_encoded_password_keys_are_hidden() {
        let e = pg("postgres://u:p@ss@db.example/fleet", false).unwrap_err();
        assert!(
            !e.message.contains("p@ss") && !e.message.contains("ss@"),
            "{}",
            e.message
        );
        assert!(!redact_location("postgres://u:p@ss@db.example/fleet").contains("ss"));
        let p = pg(
            "postgres://u@h/db?pass%77ord=hunter2&sslmode=disable",
            false,
        )
        .unwrap();
        assert!(!p.display.contains("hunter2"), "{}", p.display);
        assert_eq!(
            pg("postgres://u@h/db?pass%77ord=hunter2", true)
                .unwrap_err()
                .data()["reason"],
            "password_in_argv"
        );
    }

    #[test]
    fn shared_and_system_schemas_are_refused() {
        for bad in [
            "public",
            "information_schema",
            "pg_catalog",
            "pg_temp",
            "Upper",
            "1x",
            "",
        ] {
            assert!(!valid_schema(bad), "{bad}");
        }
        for good in ["modelauth", "user", "select", "_x1", "fleet_eu"] {
            assert!(valid_schema(good), "{good}");
        }
    }

    #[test]
    fn percent_decoding_never_panics() {
        assert_eq!(percent_decode("%é1"), "%é1");
        assert_eq!(percent_decode("a%2Fb%"), "a/b%");
        assert_eq!(percent_decode("%4"), "%4");
        assert!(pg("postgres://u@h/db?sslrootcert=%ée", false).is_ok());
        assert!(pg("postgres://u@h/db?sslmode=%é", false).is_err());
    }

    #[test]
    fn a_path_is_sqlite_and_a_url_is_postgres() {
        assert!(matches!(
            parse_location(Path::new("/tmp/x.db"), true, &no_env).unwrap(),
            StoreLocation::Sqlite(_)
        ));
        let p = pg(
            "postgresql://u@db.example:5433/fleet?sslmode=verify-full",
            true,
        )
        .unwrap();
        assert_eq!(p.ssl_mode, SslMode::VerifyFull);
        assert_eq!(p.schema, "modelauth");
        assert_eq!(p.config.get_dbname(), Some("fleet"));
        assert_eq!(p.config.get_ports(), &[5433]);
        assert_eq!(p.display, "postgresql://u@db.example:5433/fleet");
    }

    #[test]
    fn a_password_in_argv_is_refused_without_echoing_it() {
        for url in [
            "postgres://u:hunter2@h/db",
            "postgres://u@h/db?password=hunter2",
        ] {
            let e = pg(url, true).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidParams);
            assert!(!e.to_json().to_string().contains("hunter2"), "{url}");
            let ok = pg(url, false).unwrap();
            assert_eq!(ok.config.get_password(), Some(&b"hunter2"[..]));
            assert!(!ok.display.contains("hunter2"));
            assert!(!format!("{ok:?}").contains("hunter2"));
        }
    }

    #[test]
    fn a_socket_directory_and_bad_values() {
        let p = pg(
            "postgres:///db?host=/var/run/postgresql&sslmode=disable",
            true,
        )
        .unwrap();
        assert!(matches!(
            p.config.get_hosts()[0],
            postgres::config::Host::Unix(_)
        ));
        assert_eq!(p.ssl_mode, SslMode::Disable);
        assert!(pg("postgres://h/db?sslmode=maybe", true).is_err());
        let env = |k: &str| (k == "MODELAUTH_PG_SCHEMA").then(|| "Bad-Name".to_string());
        assert!(parse_location(Path::new("postgres://h/db"), true, &env).is_err());
    }

    #[test]
    fn a_network_host_defaults_to_verify_full_and_verify_ca_needs_its_roots() {
        // Before (issue 20): every host defaulted to `prefer`, an impostor's certificate
        // was accepted, and verify-ca without sslrootcert trusted every public CA.
        assert_eq!(
            pg("postgres://u@db.example/x", false).unwrap().ssl_mode,
            SslMode::VerifyFull
        );
        assert_eq!(
            pg("postgres://u@localhost,db.example/x", false)
                .unwrap()
                .ssl_mode,
            SslMode::VerifyFull
        );
        for local in [
            "postgres://u@localhost/x",
            "postgres://u@127.0.0.1:5433/x",
            "postgres://u@[::1]:5433/x",
            "postgres:///x?host=/var/run/postgresql",
        ] {
            assert_eq!(
                pg(local, false).unwrap().ssl_mode,
                SslMode::Prefer,
                "{local}"
            );
        }
        assert_eq!(
            pg("postgres://u@db.example/x?sslmode=prefer", false)
                .unwrap()
                .ssl_mode,
            SslMode::Prefer
        );
        let env = |k: &str| (k == "PGSSLMODE").then(|| "require".to_string());
        match parse_location(Path::new("postgres://u@db.example/x"), false, &env).unwrap() {
            StoreLocation::Postgres(p) => assert_eq!(p.ssl_mode, SslMode::Require),
            StoreLocation::Sqlite(_) => unreachable!(),
        }
        for bad in [
            "postgres://u@db.example/x?sslmode=verify-ca",
            "postgres://u@db.example/x?sslmode=verify-ca&sslrootcert=system",
        ] {
            let e = pg(bad, false).unwrap_err();
            assert_eq!(e.data()["reason"], "bad_store_url", "{bad}");
            assert!(e.message.contains("sslrootcert"), "{}", e.message);
        }
        let p = pg(
            "postgres://u@db.example/x?sslmode=verify-ca&sslrootcert=/etc/ca.pem",
            false,
        )
        .unwrap();
        assert_eq!(p.root_cert.as_deref(), Some(Path::new("/etc/ca.pem")));
        let p = pg("postgres://u@db.example/x?sslrootcert=system", false).unwrap();
        assert_eq!((p.ssl_mode, p.root_cert), (SslMode::VerifyFull, None));
    }

    #[test]
    fn passfile_lines_split_with_escapes() {
        assert_eq!(
            split_passfile_line(r"h:5432:*:u:pa\:ss"),
            ["h", "5432", "*", "u", "pa:ss"]
        );
    }
}
