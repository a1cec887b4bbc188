//! What callers see of a stored profile: [`StoredProfile`], [`UsageView`], [`ProfileView`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::types::{Credential, Profile, SecretRef};
use crate::core::secret_value::{Secret, SecretView};

/// A profile as stored, with its scope and bookkeeping.
#[derive(Debug, Clone)]
pub struct StoredProfile {
    /// The profile itself.
    pub profile: Profile,
    /// `None` = shared scope, `Some(agent)` = that agent's scope.
    pub scope: Option<String>,
    /// Increases by one on every put of this id in this scope (first put = 1).
    pub revision: i64,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    /// Milliseconds since the epoch.
    pub updated_at: i64,
}

/// Usage as shown in a [`ProfileView`] (protocol §3): times in ms since the epoch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageView {
    /// Last `success` report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used: Option<i64>,
    /// End of the active cooldown that ends last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown_until: Option<i64>,
    /// Why (`rate_limit`, `timeout`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown_reason: Option<String>,
    /// The model the cooldown is scoped to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown_model: Option<String>,
    /// End of the active disable window (billing, auth_permanent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_until: Option<i64>,
    /// Why it is disabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// Consecutive failures in the current failure window.
    pub error_count: u32,
}

/// What callers see of a profile (protocol §3 `ProfileView`): secrets only as
/// `{fingerprint, length}` unless revealed.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileView {
    /// `<provider>:<name>`.
    pub id: String,
    /// Provider id.
    pub provider: String,
    /// `api_key`, `token` or `oauth`.
    #[serde(rename = "type")]
    pub kind: super::CredentialType,
    /// `shared` or the agent id.
    pub scope: String,
    /// E-mail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// OAuth account id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// api_key metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Expiry, ms since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
    /// The key's SecretRef.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_ref: Option<SecretRef>,
    /// The token's SecretRef.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_ref: Option<SecretRef>,
    /// OAuth token endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// OAuth client id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Fingerprint of the inline secret (for oauth: of the access token); null for a ref.
    pub secret: Option<SecretView>,
    /// Revision of this profile in its scope.
    pub revision: i64,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    /// Milliseconds since the epoch.
    pub updated_at: i64,
    /// `ok`, `static`, `expiring`, `expired`, `refreshable`, `cooldown`, `disabled`,
    /// `needs_reauth` or `ref_unavailable`.
    pub status: crate::core::status::ProfileHealth,
    /// Usage state (shared by every agent).
    pub usage: UsageView,
    /// With `reveal: true`: the plain API key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<Secret>,
    /// With `reveal: true`: the plain token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// With `reveal: true`: the plain access token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<Secret>,
    /// With `reveal: true`: the plain refresh token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh: Option<Secret>,
}

impl ProfileView {
    /// Builds the view of `sp` with `status` and `usage` computed by the caller.
    pub(crate) fn new(
        sp: &StoredProfile,
        status: crate::core::status::ProfileHealth,
        usage: UsageView,
        reveal: bool,
    ) -> Self {
        let p = &sp.profile;
        // A sealed secret that could not be opened (PROTOCOL §9 r3) is shown as none.
        let undecryptable = crate::core::sealed::credential_unopened(&p.credential);
        let reveal = reveal && !undecryptable;
        let mut v = ProfileView {
            id: p.id.clone(),
            provider: p.provider.clone(),
            kind: p.credential.credential_type(),
            scope: sp.scope.clone().unwrap_or_else(|| "shared".to_string()),
            email: p.email.clone(),
            display_name: p.display_name.clone(),
            account_id: None,
            metadata: None,
            expires: p.credential.expires(),
            key_ref: None,
            token_ref: None,
            token_url: None,
            client_id: None,
            secret: p
                .credential
                .inline_secret()
                .filter(|_| !undecryptable)
                .map(Secret::view),
            revision: sp.revision,
            created_at: sp.created_at,
            updated_at: sp.updated_at,
            status,
            usage,
            key: None,
            token: None,
            access: None,
            refresh: None,
        };
        match &p.credential {
            Credential::ApiKey {
                key,
                key_ref,
                metadata,
            } => {
                v.key_ref = key_ref.clone();
                v.metadata = metadata.clone();
                if reveal {
                    v.key = key.clone();
                }
            }
            Credential::Token {
                token, token_ref, ..
            } => {
                v.token_ref = token_ref.clone();
                if reveal {
                    v.token = token.clone();
                }
            }
            Credential::OAuth {
                access,
                refresh,
                token_url,
                client_id,
                account_id,
                ..
            } => {
                v.account_id = account_id.clone();
                v.token_url = token_url.clone();
                v.client_id = client_id.clone();
                if reveal {
                    v.access = Some(access.clone());
                    v.refresh = Some(refresh.clone());
                }
            }
        }
        v
    }
}
