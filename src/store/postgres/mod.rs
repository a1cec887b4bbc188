//! The PostgreSQL implementation of [`Store`] (PROTOCOL §2.3 *(r2)*): one store shared by
//! every helper on every machine.
//!
//! - Location: a `postgres://` / `postgresql://` URL ([`super::location`]); the tables live
//!   in one schema (`modelauth`, or `$MODELAUTH_PG_SCHEMA`), created on the first write.
//!   Reads of a database without that schema answer as an empty store and create nothing.
//! - Schema versioned in `<schema>.meta` (`schema_version`); migrations run forward under
//!   a transaction-scoped advisory lock, so many helpers starting at once do not race; a
//!   newer version is refused (`store_newer_schema`), checked again in every write.
//! - Every write transaction takes `pg_advisory_xact_lock(<store key>)` first: writers are
//!   serialised as SQLite's `BEGIN IMMEDIATE` serialises them, so a read-modify-write loses
//!   nothing. `lock_timeout` = `busyTimeoutMs` → `store_busy`. Transaction-scoped locks only
//!   (no session state), so this works behind PgBouncer in transaction mode.
//! - Reads run in one `REPEATABLE READ READ ONLY` transaction on the server, begun lazily.
//!   The change marker is a generation counter in `<schema>.meta` that every write
//!   transaction moves before it commits; the service's read cache is reused only while it
//!   is unchanged, so a request sees every write committed before it started, from any
//!   machine, and a warm `auth.resolve` costs one round trip.
//! - The server unreachable or gone: `store_unavailable` (retryable); the broken client is
//!   dropped and the next request connects again (connect timeout 5 s).
//! - Refresh locks: a dedicated connection holding a transaction with
//!   `pg_try_advisory_xact_lock(hash(schema, scope, id))`, polled with backoff; dropping the
//!   guard rolls back, and the server releases it when the holder's session dies.
//!
//! Queries use `query_typed` (one round trip, unnamed statements: nothing prepared outlives
//! a transaction, which PgBouncer's transaction mode requires).

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::Duration;

use postgres::types::{ToSql, Type};

use super::pg_client::Client;

use crate::core::error::{ErrorKind, RpcError};

use super::location::{PgLocation, PG_CONNECT_TIMEOUT};
use super::{RefreshLocks, Store, StoreDescription, TxBody, DEFAULT_BUSY_TIMEOUT_MS};

/// The schema version this build writes (`<schema>.meta`, key `schema_version`).
pub const PG_SCHEMA_VERSION: i64 = 3;

mod errors;
mod guard;
mod locks;
mod queries;
mod schema;

use errors::map_pg;
use locks::{lock_key, PgLocks};
use queries::MetaProbe;
use queries::PgTx;
use schema::{is_missing_table, newer_schema, probe_catalog, probe_version, Probe};

/// The PostgreSQL store handle: one lazily opened connection, reopened after a failure.
pub struct PgStore {
    loc: Arc<PgLocation>,
    /// In a `RefCell` so that [`Store::describe`] (`&self`) can ask the server.
    client: RefCell<Option<Client>>,
    busy_timeout_ms: u64,
    /// Last known: the schema exists (set by any transaction, `schema_version`, `describe`).
    exists: Cell<bool>,
    /// The store's advisory-lock salt (`<schema>.meta` `lock_salt`), once read.
    salt: Cell<Option<i64>>,
    /// The stored `settings.busyTimeoutMs` was applied (once per handle).
    settings_read: bool,
    /// The stored `settings.busyTimeoutMs` row the last probe read (`Some(None)`: none).
    probed_busy_timeout: Option<Option<String>>,
    /// The generation the last probe read, for the read transaction begun right after it
    /// in the same call ([`PgStore::read_in_tx`]); taken there, never kept longer.
    probed_generation: Option<i64>,
    empty: Option<rusqlite::Connection>,
}

impl PgStore {
    /// A handle on the store at `loc`; nothing is connected or created yet.
    pub fn new(loc: PgLocation) -> Self {
        PgStore {
            loc: Arc::new(loc),
            client: RefCell::new(None),
            busy_timeout_ms: DEFAULT_BUSY_TIMEOUT_MS,
            exists: Cell::new(false),
            salt: Cell::new(None),
            settings_read: false,
            probed_busy_timeout: None,
            probed_generation: None,
            empty: None,
        }
    }

    /// Asks the server whether the schema exists (for `describe`); false when it cannot
    /// tell (the next transaction reports why).
    fn probe_exists(&self) -> bool {
        let Ok(mut slot) = self.client.try_borrow_mut() else {
            return false;
        };
        if slot.as_ref().is_some_and(|c| c.is_closed()) {
            *slot = None;
        }
        if slot.is_none() {
            match connect(&self.loc, self.busy_timeout_ms) {
                Ok(c) => *slot = Some(c),
                Err(_) => return false,
            }
        }
        let c = slot.as_mut().expect("connected above");
        match probe_version(c, &self.loc, &self.salt) {
            Ok(p) => p.is_some(),
            Err(_) => {
                *slot = None;
                false
            }
        }
    }

    fn client(&mut self) -> Result<&mut Client, RpcError> {
        let slot = self.client.get_mut();
        if slot.as_ref().is_some_and(|c| c.is_closed()) {
            *slot = None;
        }
        if slot.is_none() {
            *slot = Some(connect(&self.loc, self.busy_timeout_ms)?);
        }
        let c = slot.as_mut().expect("connected above");
        c.set_round_trip(round_trip(self.busy_timeout_ms));
        Ok(c)
    }

    /// Forgets a client that failed so the next request connects again.
    fn after_error(&mut self) {
        let slot = self.client.get_mut();
        if let Some(c) = slot {
            if c.is_closed() || c.batch_execute("ROLLBACK").is_err() {
                *slot = None;
            }
        }
    }

    /// `Some(probe)` when the schema's meta table exists.
    fn query_version(&mut self) -> Result<Option<Probe>, RpcError> {
        let loc = self.loc.clone();
        let salt = &self.salt;
        let slot = self.client.get_mut();
        if slot.as_ref().is_some_and(|c| c.is_closed()) {
            *slot = None;
        }
        if slot.is_none() {
            *slot = Some(connect(&loc, self.busy_timeout_ms)?);
        }
        let c = slot.as_mut().expect("connected above");
        probe_version(c, &loc, salt)
    }

    fn schema_version_inner(&mut self) -> Result<Option<i64>, RpcError> {
        let v = self.query_version();
        if v.is_err() {
            self.after_error();
        }
        let v = v?.map(|p| {
            self.probed_busy_timeout = Some(p.busy_timeout);
            self.probed_generation = p.generation;
            p.version
        });
        // Known to exist (and so skip this check) only at a version this build reads.
        self.exists
            .set(v.is_some_and(|v| (1..=PG_SCHEMA_VERSION).contains(&v)));
        Ok(v)
    }

    /// Applies a stored `settings.busyTimeoutMs` (as SQLite does when it opens a store).
    fn apply_stored_busy_timeout(&mut self) {
        if self.settings_read || !self.exists.get() {
            return;
        }
        self.settings_read = true;
        // Read by the probe that found the store (same round trip as its version), else now.
        let raw = match self.probed_busy_timeout.take() {
            Some(raw) => raw,
            None => {
                let loc = self.loc.clone();
                let Ok(c) = self.client() else { return };
                let v = c.query_typed_opt(
                    &sqlf(
                        &loc,
                        "SELECT capped(value) FROM {s}.settings WHERE key = 'busyTimeoutMs'",
                    ),
                    &[],
                );
                match v {
                    Ok(Some(r)) => r.get::<_, Option<String>>(0),
                    _ => None,
                }
            }
        };
        if let Some(Ok(v)) = raw.map(|raw| serde_json::from_str(&raw)) {
            self.apply_busy_value(&v);
        }
    }

    /// Takes a stored `busyTimeoutMs` value: plain JSON, or on a sealed store the
    /// `{"$seal": tag, "value": …}` row the sealing layer writes (a bounded wait is no
    /// authority, so the tag is not needed here). Out-of-range values are ignored.
    fn apply_busy_value(&mut self, v: &serde_json::Value) {
        let value = match v {
            serde_json::Value::Object(o) => o.get("value").and_then(|v| v.as_u64()),
            v => v.as_u64(),
        };
        if let Some(ms) =
            value.filter(|ms| crate::core::settings::BUSY_TIMEOUT_MS_RANGE.contains(ms))
        {
            self.busy_timeout_ms = pg_lock_ms(ms);
        }
    }

    fn read_in_tx(&mut self, f: TxBody<'_>) -> Result<(), RpcError> {
        self.probed_generation = None;
        if !self.exists.get() {
            // A cold read: the catalog half of the probe now (nothing in the schema is read
            // before it answers); the store's own rows go out with the read's BEGIN — one
            // round trip fewer (issue 19). A store not at this build's version is rolled
            // back and probed the full way below.
            let loc = self.loc.clone();
            let found = probe_catalog(self.client()?, &loc);
            match found {
                Ok(false) => return self.read_empty(f),
                Ok(true) => {
                    if self.run_read(f, true)? {
                        return Ok(());
                    }
                }
                Err(e) => {
                    self.after_error();
                    return Err(e);
                }
            }
            match self.schema_version_inner()? {
                None => return self.read_empty(f),
                Some(v) if v > PG_SCHEMA_VERSION => return Err(newer_schema(&self.loc, v)),
                // A store an older modelauth wrote: bring it to this version first (as the
                // SQLite backend does on open), so a read never queries a table that does
                // not exist yet (named_secrets, import_marks).
                Some(v) if v < PG_SCHEMA_VERSION => {
                    self.setup()?;
                    self.empty = None;
                    // The migration wrote: the probed generation is no marker any more.
                    self.probed_generation = None;
                }
                Some(_) => {}
            }
        }
        if self.run_read(f, false)? {
            Ok(())
        } else {
            Err(RpcError::internal("a read probed the store's schema twice"))
        }
    }

    /// A read of a store that does not exist: an empty in-memory store answers.
    fn read_empty(&mut self, f: TxBody<'_>) -> Result<(), RpcError> {
        if self.empty.is_none() {
            self.empty = Some(super::sqlite::empty_connection()?);
        }
        let c = self.empty.as_mut().expect("set above");
        let tx = c
            .transaction()
            .map_err(|e| RpcError::internal(format!("empty store: {e}")))?;
        f(&*tx)
    }

    /// One read transaction running `f`. With `probe` (a cold read of a store whose meta
    /// table exists) the meta rows come with its `BEGIN` ([`PgTx::with_meta_probe`]), sent
    /// before `f` runs; `Ok(false)` when they say the store is not at this build's version,
    /// or cannot be read: rolled back, `f` not run, and the caller probes the full way.
    fn run_read(&mut self, f: TxBody<'_>, probe: bool) -> Result<bool, RpcError> {
        // A probe just made in this call read the generation before any snapshot: it is
        // this transaction's change marker (one round trip fewer on a cold read).
        let generation = self.probed_generation.take();
        self.apply_stored_busy_timeout();
        let loc = self.loc.clone();
        let ms = self.busy_timeout_ms;
        let c = self.client()?;
        // With `probe`, the stored busy timeout is not known yet: this one BEGIN has the
        // default's statement timeout.
        let begin = format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL statement_timeout = {}",
            ms + 30_000
        );
        let (r, begun, meta, settings) = {
            let mut tx = PgTx::new(&mut *c, &loc, Some(begin)).with_generation(generation);
            // With `probe`, BEGIN and the meta rows go first, before `f` runs: `f` runs
            // once, and only on a store at this build's version.
            let ready = if probe {
                tx = tx.with_meta_probe();
                tx.ensure_begun()
            } else {
                Ok(())
            };
            let r = ready.and_then(|()| f(&tx));
            let begun = tx.begun.get();
            let meta = tx.meta_probe.get();
            // Only a probing read takes the stored busy timeout from its prefetch.
            let settings = if probe { tx.read_settings() } else { None };
            let r = match tx.failed.into_inner() {
                Some(e) if r.is_ok() => Err(e),
                _ => r,
            };
            (r, begun, meta, settings)
        };
        match meta {
            MetaProbe::Off | MetaProbe::Pending => {}
            MetaProbe::Read(m) if m.version == PG_SCHEMA_VERSION => {
                self.exists.set(true);
                if m.salt.is_some() {
                    self.salt.set(m.salt);
                }
                if let Some(v) = settings.as_ref().and_then(|s| s.get("busyTimeoutMs")) {
                    self.apply_busy_value(v);
                }
                self.settings_read = settings.is_some();
            }
            MetaProbe::Read(_) | MetaProbe::Failed => {
                self.after_error();
                return Ok(false);
            }
        }
        match r {
            Ok(()) => {
                if !begun {
                    return Ok(true);
                }
                // Waited for even by a process about to exit: behind PgBouncer (transaction
                // pooling) a client that leaves before its COMMIT is answered makes the
                // pooler close that server connection, and the next call pays a new backend.
                let c = self.client()?;
                if let Err(e) = c.batch_execute("COMMIT") {
                    let e = map_pg(e, &loc);
                    self.after_error();
                    return Err(e);
                }
                Ok(true)
            }
            Err(e) => {
                if e.kind == ErrorKind::Internal && is_missing_table(&e) {
                    self.exists.set(false);
                }
                self.after_error();
                Err(e)
            }
        }
    }

    fn write_in_tx(&mut self, f: TxBody<'_>) -> Result<(), RpcError> {
        // Without the salt (a version-1 store seen by a read), check again and migrate.
        if !self.exists.get() || self.salt.get().is_none() {
            match self.schema_version_inner()? {
                Some(v) if v > PG_SCHEMA_VERSION => return Err(newer_schema(&self.loc, v)),
                Some(v) if v == PG_SCHEMA_VERSION => {}
                _ => self.setup()?,
            }
            self.empty = None;
        }
        self.apply_stored_busy_timeout();
        let loc = self.loc.clone();
        let ms = self.busy_timeout_ms;
        let salt = self.salt.get();
        let c = self.client()?;
        let begin = (|| {
            c.batch_execute(&format!(
                "BEGIN; SET LOCAL lock_timeout = {ms}; SET LOCAL statement_timeout = {}",
                ms + 30_000
            ))?;
            let salt = salt.map(|s| s.to_string()).unwrap_or_default();
            let key = lock_key(&["write", &loc.schema, &salt]);
            let row = c.query_typed_one(
                &sqlf(&loc, "SELECT pg_advisory_xact_lock($1)::text, (SELECT value FROM {s}.meta WHERE key = 'schema_version')"),
                &[(&key as &(dyn ToSql + Sync), Type::INT8)],
            )?;
            Ok::<Option<i64>, postgres::Error>(row.get(1))
        })();
        let version = match begin {
            Ok(v) => v,
            Err(e) => {
                let missing = e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE);
                let e = map_pg(e, &loc);
                self.after_error();
                if missing {
                    // The schema was dropped under us: create it again on the next write.
                    self.exists.set(false);
                }
                return Err(e);
            }
        };
        if let Some(v) = version.filter(|v| *v > PG_SCHEMA_VERSION) {
            self.after_error();
            return Err(newer_schema(&loc, v));
        }
        let r = {
            let tx = PgTx::new(&mut *c, &loc, None);
            let r = f(&tx);
            match tx.failed.into_inner() {
                Some(e) if r.is_ok() => Err(e),
                _ => r,
            }
        };
        match r {
            Ok(()) => {
                // Every write moves the generation (the change marker of every reader).
                let commit = sqlf(
                    &loc,
                    "UPDATE {s}.meta SET value = value + 1 WHERE key = 'generation'; COMMIT",
                );
                if let Err(e) = c.batch_execute(&commit) {
                    let e = map_pg(e, &loc);
                    self.after_error();
                    return Err(e);
                }
                Ok(())
            }
            Err(e) => {
                self.after_error();
                Err(e)
            }
        }
    }
}

impl Store for PgStore {
    fn describe(&self) -> StoreDescription {
        StoreDescription {
            backend: "postgres",
            path: self.loc.display.clone(),
            exists: self.exists.get() || self.probe_exists(),
        }
    }

    fn schema_version(&mut self) -> Result<Option<i64>, RpcError> {
        self.schema_version_inner()
    }

    fn set_busy_timeout(&mut self, ms: u64) {
        self.busy_timeout_ms = pg_lock_ms(ms);
        self.settings_read = true;
    }

    fn read_tx(&mut self, f: TxBody<'_>) -> Result<(), RpcError> {
        self.read_in_tx(f)
    }

    fn write_tx(&mut self, f: TxBody<'_>) -> Result<(), RpcError> {
        self.write_in_tx(f)
    }

    fn refresh_locks(&self) -> Arc<dyn RefreshLocks> {
        Arc::new(PgLocks {
            loc: self.loc.clone(),
        })
    }
}

/// Connects, with TLS per `sslmode`. Errors: `store_unavailable` (retryable) when the server
/// cannot be reached; `store_permissions` when it refuses the login.
fn connect(loc: &PgLocation, busy_timeout_ms: u64) -> Result<Client, RpcError> {
    let mut config = loc.config.clone();
    // Bounds a request when the link is cut mid-query: unacknowledged data for this long
    // aborts the connection (Linux TCP_USER_TIMEOUT).
    config.tcp_user_timeout(PG_CONNECT_TIMEOUT + Duration::from_millis(busy_timeout_ms));
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(30));
    // libpq never negotiates TLS on a Unix socket; skipping it saves a round trip.
    let unix_only = config
        .get_hosts()
        .iter()
        .all(|h| matches!(h, postgres::config::Host::Unix(_)));
    let rt = round_trip(busy_timeout_ms);
    if !unix_only {
        // TCP: the socket is opened here, so that a cleartext password request over an
        // unverified channel is refused (guard.rs).
        return guard::connect_tcp(loc, &config, rt);
    }
    config.ssl_mode(postgres::config::SslMode::Disable);
    Client::connect(&config, postgres::NoTls, PG_CONNECT_TIMEOUT, rt).map_err(|e| map_pg(e, loc))
}

/// `busyTimeoutMs` as a PostgreSQL `lock_timeout`: 0 means "do not wait" to SQLite but
/// "wait for ever" to PostgreSQL, so it becomes 1 ms (issue 20: a stored 0 was ignored).
fn pg_lock_ms(ms: u64) -> u64 {
    ms.max(1)
}

/// The client-side deadline of one statement (PROTOCOL §11 *(r3)*): the server-side
/// `statement_timeout` the transactions set (`busyTimeoutMs` + 30 s) plus 5 s, so a live
/// server answers first with its own error and a silent one is abandoned.
fn round_trip(busy_timeout_ms: u64) -> Duration {
    Duration::from_millis(busy_timeout_ms + 30_000) + PG_CONNECT_TIMEOUT
}

/// `t` with `{s}` replaced by the schema name, quoted: a name that is also an SQL keyword
/// (`user`, `select`) works like any other (the name is `[a-z_][a-z0-9_]*`, so quoting
/// does not change which schema it is).
///
/// `capped(col)` becomes `CASE WHEN octet_length(col) <= MAX_ROW_BYTES THEN col END`: a
/// stored value over the cap is answered as NULL, never sent (`store::limits`).
fn sqlf(loc: &PgLocation, t: &str) -> String {
    let mut s = t.replace("{s}", &format!("\"{}\"", loc.schema));
    while let Some(i) = s.find("capped(") {
        let Some(len) = s[i..].find(')') else { break };
        let col = s[i + 7..i + len].to_string();
        s.replace_range(
            i..=i + len,
            &format!(
                "CASE WHEN octet_length({col}) <= {} THEN {col} END",
                super::limits::MAX_ROW_BYTES
            ),
        );
    }
    s
}

mod tls {
    //! rustls for `sslmode` (ring provider; webpki roots or `sslrootcert`).
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::client::WebPkiServerVerifier;
    use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
    use tokio_postgres_rustls::MakeRustlsConnect;

    use super::super::location::{PgLocation, SslMode};
    use crate::core::error::{ErrorKind, RpcError};

    fn tls_error(msg: String) -> RpcError {
        RpcError::new(ErrorKind::StoreTls, msg)
            .retryable(false)
            .with("reason", "tls")
            .with_hint("check sslmode and sslrootcert in the store URL")
    }

    pub(super) fn connector(loc: &PgLocation) -> Result<MakeRustlsConnect, RpcError> {
        let provider = Arc::new(provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(format!("TLS setup: {e}")))?;
        let config = match loc.ssl_mode {
            SslMode::Disable | SslMode::Prefer | SslMode::Require => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                .with_no_client_auth(),
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let mut roots = RootCertStore::empty();
                match &loc.root_cert {
                    Some(path) => {
                        use rustls::pki_types::pem::PemObject;
                        let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
                            tls_error(format!("cannot read sslrootcert {}: {e}", path.display()))
                        })?;
                        for c in certs {
                            let c = c.map_err(|e| {
                                tls_error(format!("bad sslrootcert {}: {e}", path.display()))
                            })?;
                            roots.add(c).map_err(|e| {
                                tls_error(format!("bad sslrootcert {}: {e}", path.display()))
                            })?;
                        }
                    }
                    None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
                }
                let inner =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| tls_error(format!("TLS roots: {e}")))?;
                if loc.ssl_mode == SslMode::VerifyCa {
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(AnyName(inner)))
                        .with_no_client_auth()
                } else {
                    builder.with_webpki_verifier(inner).with_no_client_auth()
                }
            }
        };
        Ok(MakeRustlsConnect::new(config))
    }

    /// ring's provider with P-256 first among the key-exchange groups: TLS 1.3 sends a key
    /// share for the first group only, and PostgreSQL up to 17 accepts only P-256
    /// (`ssl_ecdh_curve = prime256v1`), so an X25519 share costs a HelloRetryRequest — one
    /// more round trip on every connection (issue 19). X25519 stays offered.
    fn provider() -> CryptoProvider {
        use rustls::crypto::ring::kx_group::{SECP256R1, SECP384R1, X25519};
        CryptoProvider {
            kx_groups: vec![SECP256R1, X25519, SECP384R1],
            ..rustls::crypto::ring::default_provider()
        }
    }

    /// `sslmode=prefer/require`: encrypted, certificate not checked (as libpq without a
    /// root certificate).
    #[derive(Debug)]
    struct NoVerify(Arc<CryptoProvider>);

    impl ServerCertVerifier for NoVerify {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// `sslmode=verify-ca`: the chain is checked, the host name is not.
    #[derive(Debug)]
    struct AnyName(Arc<WebPkiServerVerifier>);

    impl ServerCertVerifier for AnyName {
        fn verify_server_cert(
            &self,
            end: &CertificateDer<'_>,
            mids: &[CertificateDer<'_>],
            name: &ServerName<'_>,
            ocsp: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            match self.0.verify_server_cert(end, mids, name, ocsp, now) {
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )) => Ok(ServerCertVerified::assertion()),
                other => other,
            }
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls12_signature(m, c, d)
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls13_signature(m, c, d)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.supported_verify_schemes()
        }
    }
}
