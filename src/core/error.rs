//! The error catalogue of protocol §7: every failure a caller can see, as a stable
//! `data.kind` with its JSON-RPC code.
//!
//! Callers match on [`ErrorKind`] (serialised as `data.kind`), never on the message.
//! No constructor here takes a secret; messages name profiles, refs and fields only.

use serde::Serialize;
use serde_json::{Map, Value};

/// A stable error kind (`data.kind`) and the JSON-RPC error code it maps to (protocol §7).
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
    /// -32602: a profile that breaks the rules of protocol §2.2.
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
    /// -32060: a sealed store and no store key configured (PROTOCOL §9 r3); not retryable.
    StoreSealed,
    /// -32060: the configured store keys are not the sealed store's (PROTOCOL §9 r3).
    StoreKeyMismatch,
    /// -32060: the TLS handshake with the PostgreSQL server failed (certificate, sslmode,
    /// sslrootcert); not retryable (PROTOCOL §10 r3).
    StoreTls,
    /// -32060: the PostgreSQL server wants a password that was not given, refused the one
    /// given, or the passfile was ignored for its mode; not retryable (PROTOCOL §10 r3).
    StoreAuth,
    /// -32070: an import source whose shape is not a known format.
    ShapeUnrecognized,
    /// -32070: an import that fails as a whole.
    ImportInvalid,
    /// -32603: a bug; the message says what failed, never a secret.
    Internal,
}

impl ErrorKind {
    /// The JSON-RPC error code of this kind (protocol §7).
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
            StoreSealed | StoreKeyMismatch => -32060,
            StoreTls | StoreAuth => -32060,
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
            StoreSealed => "store_sealed",
            StoreKeyMismatch => "store_key_mismatch",
            StoreTls => "store_tls",
            StoreAuth => "store_auth",
            ShapeUnrecognized => "shape_unrecognized",
            ImportInvalid => "import_invalid",
            Internal => "internal",
        }
    }

    /// Every kind, for the error catalogue in the OpenRPC document.
    pub const ALL: [ErrorKind; 29] = {
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
            StoreSealed,
            StoreKeyMismatch,
            StoreTls,
            StoreAuth,
        ]
    };

    /// One sentence on what the kind means, for the catalogue under OpenRPC's
    /// `components.errors`.
    pub fn description(self) -> &'static str {
        use ErrorKind::*;
        match self {
            ParseError => "The line (or the params given to `call`) is not valid JSON or not UTF-8.",
            InvalidRequest => "Valid JSON that is not a JSON-RPC 2.0 request, or an empty batch.",
            MessageTooLarge => "A line longer than --max-message-bytes; it was discarded unread.",
            MethodNotFound => "No method of that name.",
            InvalidParams => "Params missing, of the wrong type, positional, duplicated or unknown; data.pointer names the member.",
            InvalidProfile => "A profile that breaks the profile rules; data.pointer and data.validTypes.",
            ProviderMismatch => "A profile id whose provider is not the one the call names.",
            InvalidSettings => "Settings with an unknown key or a wrong value; data.pointer and data.validKeys.",
            UnknownProfile => "No profile with that id in the scope's view.",
            UnknownProvider => "No registered provider with that id.",
            MissingCredential => "No profile for the provider at all, and no usable environment key.",
            ExcludedByAuthOrder => "Profiles exist, but the explicit order lists none of them.",
            Unavailable => "Every candidate was skipped (cooldown, disabled, expired, ...); data.candidates says why.",
            SecretUnavailable => "A SecretRef could not be resolved; data.reason says why, never the value.",
            RefreshFailed => "An OAuth refresh failed; data.reason says why.",
            RevisionConflict => "expectedRevision did not match the stored revision.",
            StoreBusy => "The store stayed locked longer than busyTimeoutMs; retryable.",
            StoreUnavailable => "The PostgreSQL server cannot be reached or is restarting; retryable, the helper reconnects by itself.",
            StoreTls => "The TLS handshake with the PostgreSQL server failed (certificate, sslmode, sslrootcert); not retryable.",
            StoreAuth => "The PostgreSQL server wants a password that was not given or refused it, or the passfile was ignored; not retryable.",
            StoreCorrupt => "The store is not a readable modelauth database; it is left untouched.",
            StorePermissions => "The store or its directory cannot be opened with this user's permissions.",
            StoreReadonly => "The store cannot be written (read-only file or file system).",
            StoreNewerSchema => "The store was written by a newer modelauth; it is never rewritten.",
            StoreSealed => "The store is sealed and no store key is configured; the request needs a secret. Not retryable.",
            StoreKeyMismatch => "The configured store keys are not the sealed store's; data.expected and data.given are key fingerprints.",
            ShapeUnrecognized => "An import source whose shape is no known format.",
            ImportInvalid => "An import that fails as a whole (unreadable source, bad format option); nothing changed.",
            Internal => "A bug; the message says what failed, never a secret.",
        }
    }

    /// The hint given when the code that raised the error had no more specific one, so
    /// every error tells a person what to do next.
    pub fn default_hint(self) -> &'static str {
        use ErrorKind::*;
        match self {
            ParseError => "send one JSON object per line, e.g. {\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"helper.info\"}",
            InvalidRequest => "a request is {\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"helper.info\",\"params\":{}}",
            MessageTooLarge => "send smaller messages or raise --max-message-bytes",
            MethodNotFound => "helper.info lists every method (`modelauth call helper.info`)",
            InvalidParams => "`modelauth schema` (rpc.discover) gives the params of every method",
            InvalidProfile => "a profile is {\"id\":\"openai:default\",\"type\":\"api_key\",\"key\":\"...\"}; types: api_key, oauth, token",
            ProviderMismatch => "a profile id is <provider>:<name>, with the provider the call names",
            InvalidSettings => "settings.get shows every setting and its current value",
            UnknownProfile => "list the stored ids with profiles.list, or create it with profiles.put",
            UnknownProvider => "providers.list shows the registered providers; register one with providers.put",
            MissingCredential => "store one with profiles.put",
            ExcludedByAuthOrder => "add the profile to the order with order.set, or remove the order with order.clear",
            Unavailable => "auth.status shows why each profile is unusable and until when",
            SecretUnavailable => "check what the SecretRef names (variable, file or command) and settings.secretProviders",
            RefreshFailed => "log in again and store the new credential with profiles.put (same id)",
            RevisionConflict => "read the current state again and retry with its revision",
            StoreBusy => "retry; raise settings.busyTimeoutMs if this happens often",
            StoreUnavailable => "retry shortly; check that the PostgreSQL server named by --store / $MODELAUTH_STORE is up",
            StoreTls => "check sslmode and sslrootcert in the store URL against the server's certificate",
            StoreAuth => "give the password in PGPASSWORD, $MODELAUTH_STORE or ~/.pgpass (mode 0600)",
            StoreCorrupt => "move the file aside (it is left untouched) or point --store elsewhere",
            StorePermissions => "make the store and its directory yours (0600 / 0700) or point --store elsewhere",
            StoreReadonly => "make the store and its directory writable or point --store elsewhere",
            StoreNewerSchema => "upgrade modelauth",
            StoreSealed => "give the store key by MODELAUTH_STORE_KEY_FILE, $CREDENTIALS_DIRECTORY/modelauth-store-key, MODELAUTH_STORE_KEY_COMMAND or MODELAUTH_STORE_KEY",
            StoreKeyMismatch => "configure the store's key (data.expected) by MODELAUTH_STORE_KEY_FILE, $CREDENTIALS_DIRECTORY/modelauth-store-key, MODELAUTH_STORE_KEY_COMMAND or MODELAUTH_STORE_KEY; to move to a new key configure both, the new one first, and run `modelauth store rekey`",
            ShapeUnrecognized => "give `format` explicitly; store.validate reports what a source holds",
            ImportInvalid => "store.validate lists every problem of the source without writing",
            Internal => "a bug: report the method and this message (it never holds a secret)",
        }
    }

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
    /// `data.hint`: the call that fixes the problem; when `None`, `data.hint` is the
    /// kind's [`ErrorKind::default_hint`].
    pub hint: Option<String>,
    /// More members of `data` (for example `pointer`, `validTypes`, `candidates`).
    pub extra: Map<String, Value>,
}

/// Shorthand for results of fallible modelauth operations.
pub(crate) type Result<T, E = RpcError> = std::result::Result<T, E>;

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
        let hint = self.hint.as_deref().unwrap_or(self.kind.default_hint());
        data.insert("hint".into(), Value::from(hint));
        for (k, v) in &self.extra {
            data.insert(k.clone(), v.clone());
        }
        let mut data = Value::Object(data);
        redact_strings(&mut data);
        data
    }

    /// The message as sent: secret-looking words replaced ([`redact_secret_looking`]).
    pub fn public_message(&self) -> String {
        redact_secret_looking(&self.message)
    }

    /// The whole JSON-RPC error object `{code, message, data}`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "code": self.kind.code(),
            "message": self.public_message(),
            "data": self.data(),
        })
    }
}

impl From<RpcError> for jsonrpsee::types::ErrorObjectOwned {
    fn from(e: RpcError) -> Self {
        let data = e.data();
        jsonrpsee::types::ErrorObject::owned(e.kind.code(), e.public_message(), Some(data))
    }
}

/// Replaces every word of `text` that looks like a secret ([`crate::core::ids::looks_like_secret`]:
/// a known key prefix such as `sk-`, or a long random-looking run) with `[redacted]`, so
/// caller input echoed in an error (an unknown field name, an agent id, a settings key)
/// never carries a key pasted in the wrong place. Words are split at whitespace, quotes,
/// backquotes and `/ , ; = ( ) [ ] { } < >`; inside a word, what follows a `:`, `.` or `|`
/// is judged on its own too (`openai:sk-…` → `openai:[redacted]`, issue 20).
pub(crate) fn redact_secret_looking(text: &str) -> String {
    let is_sep = |c: char| c.is_whitespace() || "\"'`/,;=()[]{}<>".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if !word.is_empty() {
            out.push_str(&redact_word(word));
            word.clear();
        }
    };
    for c in text.chars() {
        if is_sep(c) {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// One word of [`redact_secret_looking`]: from the first `:`/`.`/`|` boundary after which
/// the rest looks like a secret (what precedes it kept, when that does not), else the
/// whole word when it looks like one, else the word as it is.
fn redact_word(word: &str) -> String {
    use crate::core::ids::looks_like_secret;
    for (i, c) in word.char_indices() {
        if matches!(c, ':' | '.' | '|') {
            let (head, rest) = word.split_at(i + 1);
            if !rest.is_empty() && looks_like_secret(rest) {
                if looks_like_secret(head) {
                    break;
                }
                return format!("{head}[redacted]");
            }
        }
    }
    if looks_like_secret(word) {
        "[redacted]".to_string()
    } else {
        word.to_string()
    }
}

/// Serialises a string of a result echoed from caller input (an import source's pointers,
/// messages, provider names) through [`redact_secret_looking`]: for `serialize_with`.
pub(crate) fn serialize_redacted<S: serde::Serializer>(s: &str, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(&redact_secret_looking(s))
}

/// [`serialize_redacted`] for an optional string.
pub(crate) fn serialize_redacted_opt<S: serde::Serializer>(
    s: &Option<String>,
    ser: S,
) -> Result<S::Ok, S::Error> {
    match s {
        Some(s) => ser.serialize_some(&redact_secret_looking(s)),
        None => ser.serialize_none(),
    }
}

/// [`redact_secret_looking`] over every string of an error's `data`, except `kind`.
fn redact_strings(v: &mut Value) {
    match v {
        Value::String(s) => {
            let r = redact_secret_looking(s);
            if r != *s {
                *s = r;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact_strings),
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if k != "kind" {
                    redact_strings(v);
                }
            }
        }
        _ => {}
    }
}

/// Removes quoted values and positions from a serde message, so that a secret passed in
/// the wrong place is never echoed (`invalid type: string "sk-…"` → `invalid type: string`).
pub(crate) fn sanitize_serde_message(msg: &str) -> String {
    let msg = match msg.find(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    };
    // Keep backquoted field names (`agent`), drop double-quoted values.
    let mut out = String::with_capacity(msg.len());
    let mut in_quote = false;
    for ch in msg.chars() {
        if ch == '"' {
            if !in_quote {
                out.push_str("(value)");
            }
            in_quote = !in_quote;
            continue;
        }
        if !in_quote {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_looking_words_in_errors_are_redacted_and_the_rest_kept() {
        let e = RpcError::new(
            ErrorKind::InvalidProfile,
            "unknown field `sk-proj-LEAK1234567890abcdefgh`, expected `key`",
        )
        .with("pointer", "/profile/sk-proj-LEAK1234567890abcdefgh")
        .with_hint("did you mean `key`? see https://example.com/docs/a-b");
        let j = e.to_json().to_string();
        assert!(!j.contains("LEAK"), "{j}");
        assert_eq!(e.data()["pointer"], "/profile/[redacted]");
        assert_eq!(
            e.public_message(),
            "unknown field `[redacted]`, expected `key`"
        );
        assert_eq!(
            e.data()["hint"],
            "did you mean `key`? see https://example.com/docs/a-b"
        );
        assert_eq!(e.data()["kind"], "invalid_profile");
        for (text, want) in [
            ("openai:sk-ant-short1", "openai:[redacted]"),
            ("a|sk-x1", "a|[redacted]"),
            ("`ghp_abc:<name>`", "`[redacted]<name>`"),
            ("x.sk_live_1 ok", "x.[redacted] ok"),
            (
                "/profiles/openai:sk-proj-LeakAAAA1111bbbb2222",
                "/profiles/openai:[redacted]",
            ),
        ] {
            // Before (issue 20): a word after `:`, `.` or `|` was judged only with what
            // preceded it, and short keys passed.
            assert_eq!(redact_secret_looking(text), want, "{text}");
        }
        for keep in [
            "openai:default",
            "example.com:5432",
            "a|b.c:d",
            "sha256:0123456789ab",
            "/tmp/x/store.db",
            "9d1c250a-e61b-44d9-88ed-5944d1962f5e",
        ] {
            assert_eq!(redact_secret_looking(keep), keep);
        }
    }

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
    fn every_error_carries_a_hint() {
        for k in ErrorKind::ALL {
            let j = RpcError::new(k, "m").to_json();
            let h = j["data"]["hint"].as_str().unwrap_or_default();
            assert!(h.len() > 10, "{k:?} has no useful hint: {h:?}");
        }
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
