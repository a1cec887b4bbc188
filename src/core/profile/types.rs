//! The stored shape of a profile: [`Profile`], its [`Credential`] and [`SecretRef`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::core::secret_value::Secret;

/// The valid profile `type` values, as listed in every `invalid_profile` error.
pub const VALID_TYPES: [&str; 3] = ["api_key", "oauth", "token"];

/// A reference to a secret kept elsewhere: `{source, provider, id}` (protocol §2.2, §5.1;
/// OpenClaw's SecretRef). What it points at is resolved at `auth.resolve` time and never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// Where the secret lives.
    pub source: SecretSource,
    /// A name in `settings.secretProviders` (`default` for `env` needs no entry).
    pub provider: String,
    /// The variable name (`env`), JSON pointer or `value` (`file`), or the id passed to the command (`exec`).
    pub id: String,
}

/// The source kinds of a [`SecretRef`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SecretSource {
    /// An environment variable of the helper process.
    Env,
    /// A file named by `settings.secretProviders.<provider>`.
    File,
    /// A command named by `settings.secretProviders.<provider>`.
    Exec,
    /// A named secret kept in the store itself (OpenClaw 2026.9's shared secret store,
    /// protocol §12 r3): `{source: "store", provider: "default", id: "NAME"}`.
    Store,
}

/// The credential of a profile, tagged by `type` (protocol §2.2 table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum Credential {
    /// A provider API key: literal `key` or `keyRef` (exactly one).
    #[serde(rename = "api_key")]
    ApiKey {
        /// The key itself.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<Secret>,
        /// Where to find the key instead.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_ref: Option<SecretRef>,
        /// Free string→string metadata.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata: Option<BTreeMap<String, String>>,
    },
    /// A static bearer token (for example a setup token): literal `token` or `tokenRef`.
    #[serde(rename = "token")]
    Token {
        /// The token itself.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<Secret>,
        /// Where to find the token instead.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_ref: Option<SecretRef>,
        /// Expiry, milliseconds since the Unix epoch; absent = never expires.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires: Option<i64>,
    },
    /// An OAuth credential (RFC 6749): access and refresh token, refreshable at `tokenUrl`.
    #[serde(rename = "oauth")]
    OAuth {
        /// The access token sent to the provider.
        access: Secret,
        /// The refresh token (RFC 6749 §6).
        refresh: Secret,
        /// When `access` expires, milliseconds since the Unix epoch.
        expires: i64,
        /// The token endpoint; else the provider's `oauth.tokenUrl`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_url: Option<String>,
        /// The OAuth client id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        /// The provider's account id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        account_id: Option<String>,
    },
}

/// A credential's type (protocol §2.2 `type`): the fixed set of kinds a profile holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum CredentialType {
    /// A static API key.
    #[serde(rename = "api_key")]
    ApiKey,
    /// A static bearer token, optionally with `expires`.
    #[serde(rename = "token")]
    Token,
    /// OAuth access and refresh tokens (RFC 6749).
    #[serde(rename = "oauth")]
    OAuth,
}

impl CredentialType {
    /// The wire string: `api_key`, `token` or `oauth`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CredentialType::ApiKey => "api_key",
            CredentialType::Token => "token",
            CredentialType::OAuth => "oauth",
        }
    }
}

impl Credential {
    /// The credential's type.
    pub(crate) fn credential_type(&self) -> CredentialType {
        match self {
            Credential::ApiKey { .. } => CredentialType::ApiKey,
            Credential::Token { .. } => CredentialType::Token,
            Credential::OAuth { .. } => CredentialType::OAuth,
        }
    }

    /// `api_key`, `token` or `oauth`.
    pub(crate) fn type_name(&self) -> &'static str {
        self.credential_type().as_str()
    }

    /// Expiry in milliseconds since the epoch, when the credential has one.
    pub(crate) fn expires(&self) -> Option<i64> {
        match self {
            Credential::ApiKey { .. } => None,
            Credential::Token { expires, .. } => *expires,
            Credential::OAuth { expires, .. } => Some(*expires),
        }
    }

    /// The literal secret to send (key, token or access token), if stored inline.
    pub(crate) fn inline_secret(&self) -> Option<&Secret> {
        match self {
            Credential::ApiKey { key, .. } => key.as_ref(),
            Credential::Token { token, .. } => token.as_ref(),
            Credential::OAuth { access, .. } => Some(access),
        }
    }

    /// The SecretRef, if the secret lives elsewhere.
    pub(crate) fn secret_ref(&self) -> Option<&SecretRef> {
        match self {
            Credential::ApiKey { key_ref, .. } => key_ref.as_ref(),
            Credential::Token { token_ref, .. } => token_ref.as_ref(),
            Credential::OAuth { .. } => None,
        }
    }

    /// Sort rank of the default order: oauth (0) before token (1) before api_key (2).
    pub(crate) fn type_rank(&self) -> u8 {
        match self {
            Credential::OAuth { .. } => 0,
            Credential::Token { .. } => 1,
            Credential::ApiKey { .. } => 2,
        }
    }
}

/// An auth profile as stored: id `<provider>:<name>`, provider, optional `email` and
/// `displayName`, and the credential.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// `<provider>:<name>`, provider part normalised.
    pub id: String,
    /// Normalised provider id.
    pub provider: String,
    /// The account's e-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// A name for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The credential, tagged by `type`.
    #[serde(flatten)]
    pub credential: Credential,
}
