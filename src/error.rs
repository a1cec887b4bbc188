//! The error catalogue of PROTOCOL §7: every failure a caller can see, as a stable
//! `data.kind` with its JSON-RPC code.
//!
//! Callers match on [`ErrorKind`] (serialised as `data.kind`), never on the message.
//! No constructor here takes a secret; messages name profiles, refs and fields only.

use serde::Serialize;
use serde_json::{Map, Value};

/// A stable error kind (`data.kind`) and the JSON-RPC error code it maps to (PROTOCOL §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// -32700: the line is not JSON (or not UTF-8).
    ParseError,
    /// -32600: valid JSON that is not a JSON-RPC 2.0 request.
    InvalidRequest,
    /// -32600: a line longer than `--max-message-bytes`.
    MessageTooLarge,
    /// -32601: no such method.
    MethodNotFound,
    /// -32602: params missing, of the wrong type, positional, or unknown.
    InvalidParams,
    /// -32602: a profile that breaks the rules of PROTOCOL §2.2.
    InvalidProfile,
    /// -32602: a profile id of another provider than the one named.
    ProviderMismatch,
    /// -32602: settings with an unknown key or a wrong value.
    InvalidSettings,
    /// -32010: no profile with that id in the scope's view.
    UnknownProfile,
    /// -32010: no registered provider with that id.
    UnknownProvider,
    /// -32020: no profile for the provider at all.
    MissingCredential,
    /// -32020: profiles exist but the explicit order lists none of them.
    ExcludedByAuthOrder,
    /// -32020: every candidate was skipped (cooldown, disabled, expired, ...).
    Unavailable,
    /// -32030: a SecretRef could not be resolved.
    SecretUnavailable,
    /// -32040: an OAuth refresh failed.
    RefreshFailed,
    /// -32050: `expectedRevision` did not match.
    RevisionConflict,
    /// -32060: the store stayed locked past the busy timeout (retryable).
    StoreBusy,
    /// -32060: the store file is not a readable SQLite database.
    StoreCorrupt,
    /// -32060: the store or its directory cannot be opened with our permissions.
    StorePermissions,
    /// -32060: the store cannot be written (read-only file system or file).
    StoreReadonly,
    /// -32060: the store was written by a newer modelauth; it is never rewritten.
    StoreNewerSchema,
    /// -32060: the PostgreSQL server is unreachable or restarting (retryable, PROTOCOL §2.3 r2).
    StoreUnavailable,
    /// -32070: an import source whose shape is not a known format.
    ShapeUnrecognized,
    /// -32070: an import that fails as a whole.
    ImportInvalid,
    /// -32603: a bug; the message says what failed, never a secret.
    Internal,
}

impl ErrorKind {
    /// The JSON-RPC error code of this kind (PROTOCOL §7).
    pub fn code(self) -> i32 {
        use ErrorKind::*;
        match self {
            ParseError => -32700,
            InvalidRequest | MessageTooLarge => -32600,
            MethodNotFound => -32601,
            InvalidParams | InvalidProfile | ProviderMismatch | InvalidSettings => -32602,
            UnknownProfile | UnknownProvider => -32010,
            MissingCredential | ExcludedByAuthOrder | Unavailable => -32020,
            SecretUnavailable => -32030,
            RefreshFailed => -32040,
            RevisionConflict => -32050,
            StoreBusy | StoreCorrupt | StorePermissions | StoreReadonly | StoreNewerSchema
            | StoreUnavailable => -32060,
            ShapeUnrecognized | ImportInvalid => -32070,
            Internal => -32603,
        }
    }

    /// The `data.kind` string.
    pub fn as_str(self) -> &'static str {
        use ErrorKind::*;
        match self {
            ParseError => "parse_error",
            InvalidRequest => "invalid_request",
            MessageTooLarge => "message_too_large",
            MethodNotFound => "method_not_found",
            InvalidParams => "invalid_params",
            InvalidProfile => "invalid_profile",
            ProviderMismatch => "provider_mismatch",
            InvalidSettings => "invalid_settings",
            UnknownProfile => "unknown_profile",
            UnknownProvider => "unknown_provider",
            MissingCredential => "missing_credential",
            ExcludedByAuthOrder => "excluded_by_auth_order",
            Unavailable => "unavailable",
            SecretUnavailable => "secret_unavailable",
            RefreshFailed => "refresh_failed",
            RevisionConflict => "revision_conflict",
            StoreBusy => "store_busy",
            StoreCorrupt => "store_corrupt",
            StorePermissions => "store_permissions",
            StoreReadonly => "store_readonly",
            StoreNewerSchema => "store_newer_schema",
            StoreUnavailable => "store_unavailable",
            ShapeUnrecognized => "shape_unrecognized",
            ImportInvalid => "import_invalid",
            Internal => "internal",
        }
    }

    /// Every kind, for the error catalogue in the OpenRPC document.
    pub const ALL: [ErrorKind; 25] = {
        use ErrorKind::*;
        [
            ParseError,
            InvalidRequest,
            MessageTooLarge,
            MethodNotFound,
            InvalidParams,
            InvalidProfile,
            ProviderMismatch,
            InvalidSettings,
            UnknownProfile,
            UnknownProvider,
            MissingCredential,
            ExcludedByAuthOrder,
            Unavailable,
            SecretUnavailable,
            RefreshFailed,
            RevisionConflict,
            StoreBusy,
            StoreCorrupt,
            StorePermissions,
            StoreReadonly,
            StoreNewerSchema,
            StoreUnavailable,
            ShapeUnrecognized,
            ImportInvalid,
            Internal,
        ]
    };

    /// Whether retrying the same call later may succeed without any other change.
    pub fn default_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::StoreBusy | ErrorKind::Unavailable | ErrorKind::StoreUnavailable
        )
    }
}

/// A JSON-RPC error as this protocol shapes it:
/// `{code, message, data: {kind, retryable, hint?, ...extra}}`.
///
/// Build one with [`RpcError::new`] and the `with_*` methods. It converts into jsonrpsee's
/// `ErrorObjectOwned`, so a method handler can return `Result<_, RpcError>`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct RpcError {
    /// The stable kind (`data.kind`).
    pub kind: ErrorKind,
    /// A human sentence; never contains a secret.
    pub message: String,
    /// `data.retryable`.
    pub retryable: bool,
    /// `data.hint`: the call that fixes the problem, when there is one.
    pub hint: Option<String>,
    /// More members of `data` (for example `pointer`, `validTypes`, `candidates`).
    pub extra: Map<String, Value>,
}

/// Shorthand for results of fallible modelauth operations.
pub type Result<T, E = RpcError> = std::result::Result<T, E>;

impl RpcError {
    /// A new error of `kind` with a message (which must not contain a secret).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        RpcError {
            kind,
            message: message.into(),
            retryable: kind.default_retryable(),
            hint: None,
            extra: Map::new(),
        }
    }

    /// Sets `data.hint`.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds a member to `data`.
    pub fn with(mut self, key: &str, value: impl Serialize) -> Self {
        let v = serde_json::to_value(value).unwrap_or(Value::Null);
        self.extra.insert(key.to_string(), v);
        self
    }

    /// Sets `data.retryable`.
    pub fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// `invalid_params` with a message.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        RpcError::new(ErrorKind::InvalidParams, message)
    }

    /// `internal` with a message.
    pub fn internal(message: impl Into<String>) -> Self {
        RpcError::new(ErrorKind::Internal, message)
    }

    /// The `data` member of the error object.
    pub fn data(&self) -> Value {
        let mut data = Map::new();
        data.insert("kind".into(), Value::from(self.kind.as_str()));
        data.insert("retryable".into(), Value::from(self.retryable));
        if let Some(h) = &self.hint {
            data.insert("hint".into(), Value::from(h.clone()));
        }
        for (k, v) in &self.extra {
            data.insert(k.clone(), v.clone());
        }
        Value::Object(data)
    }

    /// The whole JSON-RPC error object `{code, message, data}`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "code": self.kind.code(),
            "message": self.message,
            "data": self.data(),
        })
    }
}

impl From<RpcError> for jsonrpsee::types::ErrorObjectOwned {
    fn from(e: RpcError) -> Self {
        let data = e.data();
        jsonrpsee::types::ErrorObject::owned(e.kind.code(), e.message, Some(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_the_code_of_protocol_section_7() {
        for k in ErrorKind::ALL {
            let s = serde_json::to_value(k).unwrap();
            assert_eq!(s, Value::from(k.as_str()));
        }
        assert_eq!(ErrorKind::MessageTooLarge.code(), -32600);
        assert_eq!(ErrorKind::ProviderMismatch.code(), -32602);
        assert_eq!(ErrorKind::ExcludedByAuthOrder.code(), -32020);
        assert_eq!(ErrorKind::StoreNewerSchema.code(), -32060);
        assert_eq!(ErrorKind::ShapeUnrecognized.code(), -32070);
    }

    #[test]
    fn error_data_carries_kind_retryable_hint_and_extras() {
        let e = RpcError::new(ErrorKind::StoreBusy, "busy")
            .with_hint("retry")
            .with("pointer", "/x");
        let j = e.to_json();
        assert_eq!(j["code"], -32060);
        assert_eq!(j["data"]["kind"], "store_busy");
        assert_eq!(j["data"]["retryable"], true);
        assert_eq!(j["data"]["hint"], "retry");
        assert_eq!(j["data"]["pointer"], "/x");
    }
}
