//! OAuth refresh with single flight across processes (protocol §5.2, RFC 6749 §6).
//!
//! [`App::refresh_profile`] is the one place a refresh token is redeemed:
//! 1. take the profile's refresh lock ([`crate::store::flock`]; others wait, bounded);
//! 2. re-read the profile; if its access/refresh/expires differ from what the caller saw,
//!    someone else refreshed it meanwhile: no call, the caller uses the stored state;
//! 3. POST the refresh_token grant ([`crate::secrets::oauth`]) with the stored refresh token;
//! 4. commit the new access/refresh/expires in one `BEGIN IMMEDIATE` transaction
//!    (`synchronous=FULL`) while still holding the lock, then release it.
//!
//! So a rotated refresh token is never sent twice: every sender holds the lock and reads
//! the latest committed token under it. See ARCHITECTURE.md "OAuth refresh" for what a
//! crash between the endpoint's answer and the commit costs.

use std::collections::HashSet;

use crate::api::ProviderOAuth;
use crate::core::error::{ErrorKind, Result, RpcError};
use crate::core::profile::{Credential, StoredProfile};
use crate::core::secret_value::Secret;
use crate::core::settings::Settings;
use crate::handlers::{load_settings, now_ms, unknown_profile, App};
use crate::secrets::oauth::{self, EndpointError, RefreshRequest, TokenGrant};
use crate::store::{self, Tx};

/// How long the commit of a *rotated* refresh token is retried while the store stays busy
/// (the token exists nowhere else; the refresh lock is held meanwhile).
pub(crate) const ROTATED_COMMIT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// The refresh-relevant state of an oauth profile, compared before and after taking the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// The access token.
    pub access: Secret,
    /// The refresh token.
    pub refresh: Secret,
    /// Expiry of the access token, ms since the epoch.
    pub expires: i64,
}

impl Snapshot {
    /// The snapshot of an oauth profile; `None` for other types.
    pub(crate) fn of(sp: &StoredProfile) -> Option<Snapshot> {
        match &sp.profile.credential {
            Credential::OAuth {
                access,
                refresh,
                expires,
                ..
            } => Some(Snapshot {
                access: access.clone(),
                refresh: refresh.clone(),
                expires: *expires,
            }),
            _ => None,
        }
    }
}

/// What [`App::refresh_profile`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refreshed {
    /// This call redeemed the refresh token and committed the new state.
    Yes {
        /// New expiry, ms since the epoch.
        expires: i64,
    },
    /// Nothing to do: not due, or another process/request refreshed it meanwhile.
    No {
        /// Stored expiry, ms since the epoch.
        expires: i64,
    },
}

/// The OAuth client registered for `provider` (`providers.put {oauth}`), else OpenClaw's
/// built-in one ([`crate::handlers::providers::BUILTIN_OAUTH`]), if any.
///
/// Errors: store errors.
pub(crate) fn provider_oauth(c: &dyn Tx, provider: &str) -> Result<Option<ProviderOAuth>> {
    Ok(c.providers()?
        .into_iter()
        .find(|(id, _)| id == provider)
        .and_then(|(_, body)| body.get("oauth").cloned())
        .and_then(|o| serde_json::from_value(o).ok())
        .or_else(|| crate::handlers::providers::builtin_oauth(provider)))
}

/// Providers with an OAuth token endpoint: registered ones and OpenClaw's built-in ones.
///
/// Errors: store errors.
pub(crate) fn oauth_providers(c: &dyn Tx) -> Result<HashSet<String>> {
    let mut set: HashSet<String> = c
        .providers()?
        .into_iter()
        .filter(|(_, body)| {
            body.get("oauth")
                .and_then(|o| o.get("tokenUrl"))
                .is_some_and(|u| u.is_string())
        })
        .map(|(id, _)| id)
        .collect();
    set.extend(
        crate::handlers::providers::BUILTIN_OAUTH
            .iter()
            .map(|(id, _, _)| id.to_string()),
    );
    Ok(set)
}

/// Whether `sp` can be refreshed: an oauth profile with its own `tokenUrl` or whose
/// provider is in `with_oauth` ([`oauth_providers`]), unless its access or refresh token is
/// OpenClaw's failed-refresh fence ([`crate::core::fence`]).
pub(crate) fn refreshable(sp: &StoredProfile, with_oauth: &HashSet<String>) -> bool {
    match &sp.profile.credential {
        Credential::OAuth {
            token_url,
            access,
            refresh,
            ..
        } => {
            // OpenClaw's failed-refresh fence holds no usable token: nothing to refresh.
            !crate::core::fence::is_refresh_fence(access.expose())
                && !crate::core::fence::is_refresh_fence(refresh.expose())
                && (token_url.is_some() || with_oauth.contains(&sp.profile.provider))
        }
        _ => false,
    }
}

/// A `refresh_failed` (-32040) error naming the profile and a `reason`.
pub(crate) fn refresh_failed(id: &str, reason: &str, retryable: bool, message: String) -> RpcError {
    RpcError::new(ErrorKind::RefreshFailed, message)
        .with("profileId", id)
        .with("reason", reason)
        .retryable(retryable)
}

fn needs_reauth_error(id: &str, reason: &str, message: String) -> RpcError {
    refresh_failed(id, reason, false, message).with_hint(format!(
        "log in again and store the new credential with profiles.put {{\"profile\": {{\"id\": \"{id}\", \"type\": \"oauth\", ...}}}}"
    ))
}

fn endpoint_error(id: &str, e: &EndpointError) -> RpcError {
    match e {
        EndpointError::InvalidGrant { status } => needs_reauth_error(
            id,
            "invalid_grant",
            format!("the token endpoint refused the refresh token of `{id}` (invalid_grant): it is expired, revoked or was already used"),
        )
        .with("status", status),
        EndpointError::Rejected { status, error } => refresh_failed(
            id,
            "rejected",
            false,
            format!(
                "the token endpoint rejected the refresh of `{id}` with HTTP {status}{}",
                error.as_deref().map(|c| format!(" ({c})")).unwrap_or_default()
            ),
        )
        .with("status", status)
        .with("error", error)
        .with_hint("check the profile's tokenUrl/clientId or the provider's oauth settings (providers.get)"),
        EndpointError::Transient { status, reason } => refresh_failed(
            id,
            reason,
            true,
            match status {
                Some(s) => format!("the token endpoint answered HTTP {s} to the refresh of `{id}`; the stored credential is unchanged"),
                None => format!("the token endpoint could not be reached to refresh `{id}`; the stored credential is unchanged"),
            },
        )
        .with("status", status),
    }
}

impl App {
    /// Refreshes the oauth profile `id` of `scope` (`None` = shared) under its single-flight
    /// lock. `seen` is the state the caller decided on: if the stored state differs once the
    /// lock is held, another process or request refreshed it and nothing is sent. Without
    /// `force` only a token inside `refreshMarginMs` of `expires` is refreshed.
    ///
    /// Errors: `unknown_profile`; `invalid_params` (not an oauth profile); `refresh_failed`
    /// (-32040) with `data.reason`: `invalid_grant` / `needs_reauth` (retryable false; the
    /// profile is marked `needs_reauth`), `rejected`, `no_token_url`, `insecure_token_url`
    /// (retryable false), `server_error`, `rate_limited`, `bad_response`, `network`,
    /// `refresh_in_progress`, `lock_failed` (retryable true; the stored credential is
    /// untouched); `secret_unavailable` for the client secret; store errors.
    pub(crate) fn refresh_profile(
        &self,
        scope: Option<&str>,
        id: &str,
        seen: Option<&Snapshot>,
        force: bool,
    ) -> Result<Refreshed> {
        let _lock = match self.refresh_locks.lock(scope, id, store::REFRESH_WAIT) {
            Ok(Some(l)) => l,
            Ok(None) => {
                return Err(refresh_failed(
                    id,
                    "refresh_in_progress",
                    true,
                    format!(
                        "another process has been refreshing `{id}` for more than {} s",
                        store::REFRESH_WAIT.as_secs()
                    ),
                ))
            }
            Err(e) => {
                return Err(refresh_failed(
                    id,
                    "lock_failed",
                    true,
                    format!("cannot take the refresh lock: {}", e.message),
                ))
            }
        };
        self.refresh_locked(scope, id, seen, force)
    }

    /// [`App::refresh_profile`] once its lock is held: re-reads the profile, decides
    /// whether a refresh is due, posts the grant and stores (or reports) the answer.
    fn refresh_locked(
        &self,
        scope: Option<&str>,
        id: &str,
        seen: Option<&Snapshot>,
        force: bool,
    ) -> Result<Refreshed> {
        let (sp, usage, settings, pconf) = self.store().read(|c| {
            let sp = c
                .scope_profile(scope, id)?
                .ok_or_else(|| unknown_profile(id, scope))?;
            let usage = c.usage(id)?;
            let pconf = provider_oauth(c, &sp.profile.provider)?;
            Ok((sp, usage, load_settings(c)?, pconf))
        })?;
        let Some(cur) = Snapshot::of(&sp) else {
            return Err(RpcError::invalid_params(format!(
                "profile `{id}` is of type {}; only oauth profiles are refreshed",
                sp.profile.credential.type_name()
            ))
            .with("pointer", "/profileId"));
        };
        if seen.is_some_and(|s| *s != cur) {
            tracing::debug!(profile_id = %id, "already refreshed by another process or request");
            return Ok(Refreshed::No {
                expires: cur.expires,
            });
        }
        let now = now_ms();
        if !force && now < cur.expires.saturating_sub(settings.refresh_margin_ms) {
            return Ok(Refreshed::No {
                expires: cur.expires,
            });
        }
        if usage.needs_reauth && !force {
            return Err(needs_reauth_error(
                id,
                "needs_reauth",
                format!("the refresh token of `{id}` was refused before; it needs a new login"),
            ));
        }
        let client = token_client(id, &sp, pconf.as_ref(), &settings)?;
        let sent_at = now_ms();
        tracing::info!(profile_id = %id, "refreshing the OAuth access token");
        let answer = oauth::post_refresh(&RefreshRequest {
            token_url: &client.endpoint,
            refresh_token: &cur.refresh,
            client_id: client.client_id.as_deref(),
            client_secret: client.client_secret.as_ref(),
            scope: client.scope.as_deref(),
        });
        match answer {
            Ok(grant) => self.store_grant(scope, id, &cur, &grant, sent_at),
            Err(EndpointError::InvalidGrant { status }) => {
                self.mark_needs_reauth(scope, id, &cur, status)
            }
            Err(e) => {
                let err = endpoint_error(id, &e);
                tracing::warn!(profile_id = %id, reason = ?err.extra.get("reason"), "OAuth refresh failed");
                Err(err)
            }
        }
    }

    /// Commits a granted token (see [`App::commit_grant`]) and reports the outcome.
    fn store_grant(
        &self,
        scope: Option<&str>,
        id: &str,
        cur: &Snapshot,
        grant: &TokenGrant,
        sent_at: i64,
    ) -> Result<Refreshed> {
        let expires = grant.expires_at(sent_at);
        let rotated = grant.refresh.is_some();
        match self.commit_grant(scope, id, cur, grant, expires) {
            Ok(true) => {
                tracing::info!(profile_id = %id, rotated, expires, "OAuth access token refreshed");
                Ok(Refreshed::Yes { expires })
            }
            Ok(false) => {
                tracing::warn!(profile_id = %id, "the profile was replaced during the refresh; the new one is kept");
                Ok(Refreshed::No {
                    expires: cur.expires,
                })
            }
            Err(e) => {
                tracing::error!(profile_id = %id, rotated, kind = e.kind.as_str(), "the refreshed token could not be stored");
                Err(e)
            }
        }
    }

    /// Stores `grant` (expiring at `expires`, ms since the epoch) on the profile if its
    /// refresh token is still `cur.refresh`; `Ok(false)` when the profile was replaced or
    /// removed meanwhile. Commits before anyone uses the token; a busy store is retried
    /// (for up to [`ROTATED_COMMIT_PATIENCE`] when the refresh token was rotated, since it
    /// exists nowhere else; three times otherwise).
    fn commit_grant(
        &self,
        scope: Option<&str>,
        id: &str,
        cur: &Snapshot,
        grant: &TokenGrant,
        expires: i64,
    ) -> Result<bool> {
        let rotated = grant.refresh.is_some();
        let mut tries = 0u32;
        let commit_started = std::time::Instant::now();
        loop {
            let r = self.store().write(|c| {
                let Some(mut now_sp) = c.scope_profile(scope, id)? else {
                    return Ok(false);
                };
                match &mut now_sp.profile.credential {
                    Credential::OAuth {
                        access,
                        refresh,
                        expires: e,
                        ..
                    } if *refresh == cur.refresh => {
                        *access = grant.access.clone();
                        if let Some(r) = &grant.refresh {
                            *refresh = r.clone();
                        }
                        *e = expires;
                    }
                    // Already stored: an earlier try committed, and only its
                    // acknowledgement was lost with the connection.
                    Credential::OAuth { access, .. } if *access == grant.access => return Ok(true),
                    // Replaced by profiles.put while we were out: keep the new one.
                    _ => return Ok(false),
                }
                c.upsert_profile(scope, &now_sp.profile, now_ms())?;
                let mut u = c.usage(id)?;
                if u.needs_reauth {
                    u.needs_reauth = false;
                    c.put_usage(id, &u)?;
                }
                Ok(true)
            });
            // A rotated refresh token exists only in this process now, and the
            // refresh lock keeps every other process from using the old one: keep
            // retrying a busy store for up to ROTATED_COMMIT_PATIENCE rather than
            // drop it. Without rotation, three tries are enough. A connection lost
            // before the commit (PostgreSQL restarting, a proxy cut) is retried the same
            // way (issue 20): the next try reconnects.
            let retry = match &r {
                Err(e)
                    if e.kind == ErrorKind::StoreBusy || e.kind == ErrorKind::StoreUnavailable =>
                {
                    if rotated {
                        commit_started.elapsed() < ROTATED_COMMIT_PATIENCE
                    } else {
                        tries < 3
                    }
                }
                _ => false,
            };
            if !retry {
                return r;
            }
            tries += 1;
            tracing::warn!(profile_id = %id, tries, rotated, "the store is busy; retrying the commit of the refreshed token");
            std::thread::sleep(std::time::Duration::from_millis(
                (25u64 << tries.min(5)).min(500),
            ));
        }
    }

    /// After an `invalid_grant` answer (HTTP `status`): re-reads once; if the stored
    /// refresh token changed (a sibling or a profiles.put), uses the new state, else marks
    /// the profile `needs_reauth` and returns the `refresh_failed` error.
    fn mark_needs_reauth(
        &self,
        scope: Option<&str>,
        id: &str,
        cur: &Snapshot,
        status: u16,
    ) -> Result<Refreshed> {
        let marked = self.store().write(|c| {
            let same = c
                .scope_profile(scope, id)?
                .and_then(|s| Snapshot::of(&s))
                .is_some_and(|s| s.refresh == cur.refresh);
            if same {
                let mut u = c.usage(id)?;
                u.needs_reauth = true;
                c.put_usage(id, &u)?;
            }
            Ok(same)
        })?;
        if !marked {
            tracing::info!(profile_id = %id, "invalid_grant, but the stored refresh token changed meanwhile");
            return Ok(Refreshed::No {
                expires: cur.expires,
            });
        }
        tracing::warn!(profile_id = %id, status, "refresh token refused (invalid_grant): needs_reauth");
        Err(endpoint_error(id, &EndpointError::InvalidGrant { status }))
    }
}

/// Where and as which client a refresh token is redeemed.
struct TokenClient {
    /// The token endpoint (checked by [`oauth::check_token_url`]).
    endpoint: String,
    client_id: Option<String>,
    client_secret: Option<Secret>,
    /// The provider's `scope` parameter.
    scope: Option<String>,
}

/// The token endpoint and client of oauth profile `sp` (its own `tokenUrl`/`clientId`, else
/// its provider's oauth settings `pconf`). Errors: `refresh_failed` with `no_token_url` or
/// `insecure_token_url`; `secret_unavailable` for the provider's client secret.
fn token_client(
    id: &str,
    sp: &StoredProfile,
    pconf: Option<&ProviderOAuth>,
    settings: &Settings,
) -> Result<TokenClient> {
    let Credential::OAuth {
        token_url,
        client_id,
        ..
    } = &sp.profile.credential
    else {
        unreachable!("Snapshot::of matched oauth");
    };
    let endpoint = token_url
        .clone()
        .or_else(|| pconf.map(|p| p.token_url.clone()))
        .ok_or_else(|| {
            refresh_failed(
                id,
                "no_token_url",
                false,
                format!(
                    "profile `{id}` has no tokenUrl and provider `{}` has no oauth settings",
                    sp.profile.provider
                ),
            )
            .with_hint(format!(
                "providers.put {{\"id\": \"{}\", \"oauth\": {{\"tokenUrl\": \"https://...\", \"clientId\": \"...\"}}}}",
                sp.profile.provider
            ))
        })?;
    if let Err(why) = oauth::check_token_url(&endpoint) {
        return Err(refresh_failed(
            id,
            "insecure_token_url",
            false,
            format!("profile `{id}`: {why}"),
        ));
    }
    let client_id = client_id
        .clone()
        .or_else(|| pconf.map(|p| p.client_id.clone()));
    // The provider's client secret goes only with the provider's own client id, and
    // only to the provider's own token endpoint: a profile's own `tokenUrl` (which
    // anyone who can put a profile chooses) never receives it.
    let client_secret = match pconf {
        Some(p)
            if client_id.as_deref() == Some(p.client_id.as_str())
                && oauth::same_endpoint(&endpoint, &p.token_url) =>
        {
            p.client_secret_ref
                .as_ref()
                .map(|r| crate::secrets::resolve_ref(r, settings))
                .transpose()?
        }
        _ => None,
    };
    Ok(TokenClient {
        endpoint,
        client_id,
        client_secret,
        scope: pconf.and_then(|p| p.scope.clone()),
    })
}

impl App {
    /// `auth.refresh`: refreshes an oauth profile of the agent's view now if it is inside
    /// `refreshMarginMs` of expiry (or always with `force`), under the single-flight lock.
    ///
    /// Errors: `invalid_params` (bad id or agent, not an oauth profile), `unknown_profile`,
    /// `refresh_failed`, `secret_unavailable` (client secret), store errors.
    pub(crate) fn auth_refresh(
        &self,
        p: crate::api::RefreshParams,
    ) -> Result<crate::api::RefreshResult> {
        let agent =
            match p.agent {
                None => None,
                Some(a) => Some(crate::core::ids::validate_agent(&a).map_err(|e| {
                    RpcError::invalid_params(e.to_string()).with("pointer", "/agent")
                })?),
            };
        let a = agent.as_deref();
        let sp = self.store().read(|c| {
            let aliases = crate::handlers::load_aliases(c)?;
            let (id, _) =
                crate::core::ids::normalize_profile_id(&p.profile_id, &aliases).map_err(|e| {
                    RpcError::invalid_params(e.to_string()).with("pointer", "/profileId")
                })?;
            let sp = c
                .view_profile(a, &id)?
                .ok_or_else(|| unknown_profile(&id, a))?;
            crate::handlers::seal::require_secrets(c, [&sp])?;
            Ok(sp)
        })?;
        let id = sp.profile.id.clone();
        let seen = Snapshot::of(&sp).ok_or_else(|| {
            RpcError::invalid_params(format!(
                "profile `{id}` is of type {}; only oauth profiles are refreshed",
                sp.profile.credential.type_name()
            ))
            .with("pointer", "/profileId")
        })?;
        let r = self.refresh_profile(sp.scope.as_deref(), &id, Some(&seen), p.force)?;
        let (refreshed, expires) = match r {
            Refreshed::Yes { expires } => (true, expires),
            Refreshed::No { .. } => {
                // Report what is stored now (another process may have refreshed it).
                let e = self.store().read(|c| {
                    Ok(c.scope_profile(sp.scope.as_deref(), &id)?
                        .and_then(|s| s.profile.credential.expires()))
                })?;
                (false, e.unwrap_or(seen.expires))
            }
        };
        Ok(crate::api::RefreshResult {
            profile_id: id,
            agent,
            refreshed,
            expires,
        })
    }
}
