//! Refresh locks of the PostgreSQL store: transaction-scoped advisory locks on a dedicated
//! connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::types::{ToSql, Type};
use sha2::{Digest, Sha256};

use crate::core::error::RpcError;
use crate::store::location::PgLocation;
use crate::store::pg_client::Client;
use crate::store::{scope_key, RefreshGuard, RefreshLocks, DEFAULT_BUSY_TIMEOUT_MS};

use super::errors::map_pg;
use super::{connect, sqlf};

/// The 64-bit advisory lock key of `parts` (SHA-256, first 8 bytes).
pub(super) fn lock_key(parts: &[&str]) -> i64 {
    let mut h = Sha256::new();
    h.update(b"modelauth");
    for p in parts {
        h.update([0u8]);
        h.update(p.as_bytes());
    }
    let d = h.finalize();
    i64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// How long a refresh-lock transaction may sit idle before the server ends it (ms): past
/// the token call's 20 s limit and a waiter's 30 s wait.
pub(super) const REFRESH_LOCK_IDLE_MS: u64 = 120_000;

/// Refresh locks as transaction-scoped advisory locks, each on a dedicated connection.
pub(super) struct PgLocks {
    pub(super) loc: Arc<PgLocation>,
}

pub(super) struct PgGuard {
    client: Option<Client>,
}

impl RefreshGuard for PgGuard {}

impl Drop for PgGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.client.take() {
            let _ = c.batch_execute("ROLLBACK");
        }
    }
}

impl RefreshLocks for PgLocks {
    fn lock(
        &self,
        scope: Option<&str>,
        profile_id: &str,
        wait: Duration,
    ) -> Result<Option<Box<dyn RefreshGuard>>, RpcError> {
        let lock_failed = |e: RpcError| e.with("reason", "lock_failed");
        let mut c = connect(&self.loc, DEFAULT_BUSY_TIMEOUT_MS).map_err(lock_failed)?;
        // The salt is read here, each time: a helper that last saw the store at version 1
        // (unsalted) must not lock apart from those that migrated it. Before BEGIN, so a
        // store not created yet (no meta table: nothing to refresh) aborts nothing.
        let salt = match c.query_typed_opt(
            &sqlf(
                &self.loc,
                "SELECT value FROM {s}.meta WHERE key = 'lock_salt'",
            ),
            &[],
        ) {
            Ok(row) => row
                .map(|r| r.get::<_, i64>(0).to_string())
                .unwrap_or_default(),
            Err(e) if e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) => {
                String::new()
            }
            Err(e) => return Err(lock_failed(map_pg(e, &self.loc))),
        };
        // The lock lives as long as this transaction, which stays idle while the token
        // call runs (up to 20 s): a server-wide `idle_in_transaction_session_timeout`
        // shorter than that would end the session, release the lock mid-refresh and let a
        // second helper send the same refresh token. This transaction gets its own,
        // longer than any holder's wait (a dead holder's session still ends).
        c.batch_execute(&format!(
            "BEGIN; SET LOCAL idle_in_transaction_session_timeout = {REFRESH_LOCK_IDLE_MS}"
        ))
        .map_err(|e| lock_failed(map_pg(e, &self.loc)))?;
        let key = lock_key(&[
            "refresh",
            &self.loc.schema,
            &salt,
            scope_key(scope),
            profile_id,
        ]);
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(5);
        loop {
            let got: bool = c
                .query_typed_one(
                    "SELECT pg_try_advisory_xact_lock($1)",
                    &[(&key as &(dyn ToSql + Sync), Type::INT8)],
                )
                .map_err(|e| lock_failed(map_pg(e, &self.loc)))?
                .get(0);
            if got {
                return Ok(Some(Box::new(PgGuard { client: Some(c) })));
            }
            let now = Instant::now();
            if now >= deadline {
                let _ = c.batch_execute("ROLLBACK");
                return Ok(None);
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_differ_by_every_part() {
        let a = lock_key(&["refresh", "modelauth", "", "x:a"]);
        assert_ne!(a, lock_key(&["refresh", "modelauth", "cron", "x:a"]));
        assert_ne!(a, lock_key(&["refresh", "other", "", "x:a"]));
        assert_ne!(lock_key(&["a", "bc"]), lock_key(&["ab", "c"]));
        assert_eq!(a, lock_key(&["refresh", "modelauth", "", "x:a"]));
    }
}
