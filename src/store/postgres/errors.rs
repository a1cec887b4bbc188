//! Error classification of the PostgreSQL store: server and client errors mapped to the
//! store error kinds of PROTOCOL §7.

use crate::core::error::{ErrorKind, RpcError};
use crate::store::location::{PgLocation, SslMode};

/// Maps a PostgreSQL error to the store error kinds of PROTOCOL §7. Messages name the
/// location without its password, and never carry parameter values.
pub(super) fn map_pg(e: postgres::Error, loc: &PgLocation) -> RpcError {
    use postgres::error::SqlState;
    let where_ = &loc.display;
    let Some(code) = e.code() else {
        // No SQLSTATE: the connection failed, closed, timed out, TLS failed, or no password.
        return classify_without_sqlstate(&e, loc);
    };
    let c = code.code();
    if *code == SqlState::LOCK_NOT_AVAILABLE
        || *code == SqlState::QUERY_CANCELED
        || *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
    {
        return RpcError::new(
            ErrorKind::StoreBusy,
            format!("the store {where_} stayed locked by another helper past the busy timeout"),
        )
        .with_hint("retry; raise settings.busyTimeoutMs if this happens often");
    }
    if c == "57P03" || c == "57P01" || c == "57P02" {
        // cannot_connect_now (starting up, shutting down, in recovery), admin/crash shutdown.
        return RpcError::new(
            ErrorKind::StoreUnavailable,
            format!("the PostgreSQL server of {where_} is starting or stopping: {}", short(&e)),
        )
        .with("reason", "server_starting_or_stopping")
        .with_hint("retry in a moment; the helper reconnects by itself once the server accepts connections")
        .retryable(true);
    }
    if c.starts_with("08") || c.starts_with("57P") || c == "53300" {
        return RpcError::new(
            ErrorKind::StoreUnavailable,
            format!("the PostgreSQL store {where_} is unavailable ({c})"),
        )
        .with_hint("retry; the helper reconnects by itself once the server is back")
        .retryable(true);
    }
    if c == "28P01" || (c == "28000" && loc.passfile_ignored.is_some()) {
        return auth_error(
            loc,
            format!("the PostgreSQL server of {where_} refused the password ({c})"),
        );
    }
    if c.starts_with("28") || *code == SqlState::INSUFFICIENT_PRIVILEGE || c == "3D000" {
        return RpcError::new(
            ErrorKind::StorePermissions,
            format!(
                "the PostgreSQL store {where_} refused this role ({c}): {}",
                short(&e)
            ),
        )
        .with_hint("check the user, password (PGPASSWORD, ~/.pgpass), database and grants");
    }
    if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
        return RpcError::new(
            ErrorKind::StoreReadonly,
            format!("the PostgreSQL store {where_} is read-only (a standby?)"),
        );
    }
    if c.starts_with("53") {
        return RpcError::new(
            ErrorKind::StoreReadonly,
            format!(
                "the PostgreSQL server of {where_} is out of resources ({c}); nothing was changed"
            ),
        )
        .retryable(true);
    }
    RpcError::internal(format!("store {where_}: {}", short(&e)))
}

/// Classifies an error that carries no SQLSTATE (PROTOCOL §10 r3): a TLS failure is
/// `store_tls`; a password the server asked for and none was given (or the passfile was
/// ignored for its mode) `store_auth`; an unknown host name `store_unavailable` with a hint
/// naming DNS — none of them retryable; a refused connection, a reset, a closed
/// connection or a time-out `store_unavailable` (retryable: the helper reconnects).
pub(super) fn classify_without_sqlstate(e: &postgres::Error, loc: &PgLocation) -> RpcError {
    let mut causes = vec![];
    let mut io_kind = None;
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        causes.push(c.to_string());
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            io_kind.get_or_insert(io.kind());
        }
        src = c.source();
    }
    classify_parts(e.to_string(), causes, io_kind, loc)
}

/// [`classify_without_sqlstate`] for a socket that could not be opened (the guarded TCP
/// connect of `guard.rs`): name lookup, refused, unreachable.
pub(super) fn classify_io(e: &std::io::Error, loc: &PgLocation) -> RpcError {
    classify_parts(
        "error connecting to server".to_string(),
        vec![e.to_string()],
        Some(e.kind()),
        loc,
    )
}

fn classify_parts(
    kind_text: String,
    causes: Vec<String>,
    io_kind: Option<std::io::ErrorKind>,
    loc: &PgLocation,
) -> RpcError {
    let where_ = &loc.display;
    let cause = causes.first().cloned().unwrap_or_default();
    let all = causes.join(": ").to_ascii_lowercase();
    if kind_text.contains("TLS") || all.contains("certificate") || all.contains("tls") {
        return RpcError::new(
            ErrorKind::StoreTls,
            format!("TLS with the PostgreSQL server of {where_} failed: {cause}"),
        )
        .with("reason", "tls")
        .with_hint(format!(
            "the server's certificate did not verify under sslmode={}: give the CA that signed it with sslrootcert=/path/ca.pem in the store URL (or PGSSLROOTCERT), or check the host name it was issued for",
            ssl_mode_word(loc.ssl_mode)
        ))
        .retryable(false);
    }
    if all.contains("channel binding") {
        return RpcError::new(
            ErrorKind::StoreAuth,
            format!("the PostgreSQL server of {where_} did not use channel binding, which the store URL requires: {cause}"),
        )
        .with("reason", "channel_binding")
        .with_hint("channel_binding=require needs TLS (sslmode=require or stronger) and a SCRAM password on the server")
        .retryable(false);
    }
    if all.contains("password missing") {
        let msg =
            format!("the PostgreSQL server of {where_} asks for a password and none was given");
        return auth_error(loc, msg);
    }
    if all.contains("lookup address")
        || all.contains("name or service not known")
        || all.contains("no address associated")
        || all.contains("temporary failure in name resolution")
    {
        return RpcError::new(
            ErrorKind::StoreUnavailable,
            format!("the host of the PostgreSQL store {where_} cannot be found: {cause}"),
        )
        .with("reason", "dns")
        .with_hint("check the host name in the store URL: DNS does not know it (a typo, or no network/DNS here?)")
        .retryable(false);
    }
    let refused = io_kind == Some(std::io::ErrorKind::ConnectionRefused);
    let detail = if cause.is_empty() {
        kind_text.clone()
    } else {
        format!("{kind_text}: {cause}")
    };
    RpcError::new(
        ErrorKind::StoreUnavailable,
        format!("the PostgreSQL store {where_} is unreachable: {detail}"),
    )
    .with("reason", if refused { "connection_refused" } else { "unreachable" })
    .with_hint(if refused {
        "nothing accepts connections at that host and port: start the server (or fix the port); the helper reconnects by itself once it is up"
    } else {
        "retry; the helper reconnects by itself once the server is back"
    })
    .retryable(true)
}

/// `store_auth` (not retryable), with a hint naming the ignored passfile when there is one.
pub(super) fn auth_error(loc: &PgLocation, msg: String) -> RpcError {
    let hint = match &loc.passfile_ignored {
        Some(p) => format!(
            "the passfile {} was ignored because group or others can read it (as libpq does): chmod 0600 {}",
            p.display(),
            p.display()
        ),
        None => "give the password in PGPASSWORD, in $MODELAUTH_STORE's URL, or in ~/.pgpass (mode 0600) — never in --store".to_string(),
    };
    let mut e = RpcError::new(ErrorKind::StoreAuth, msg)
        .with_hint(hint)
        .retryable(false);
    if let Some(p) = &loc.passfile_ignored {
        e = e
            .with("reason", "passfile_ignored")
            .with("passfile", p.display().to_string());
    } else {
        e = e.with("reason", "password");
    }
    e
}

pub(super) fn ssl_mode_word(m: SslMode) -> &'static str {
    match m {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        SslMode::Require => "require",
        SslMode::VerifyCa => "verify-ca",
        SslMode::VerifyFull => "verify-full",
    }
}

/// The error text without detail lines (which could quote row values).
pub(super) fn short(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let s = e.to_string();
            s.lines().next().unwrap_or("").to_string()
        }
    }
}
