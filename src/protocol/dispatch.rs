//! The method registry: every method of protocol §3 from the table
//! ([`crate::protocol::methods`]), with the schema and error catalogue the OpenRPC document
//! is built from.
//!
//! [`Dispatcher::call`] runs one method by name with by-name params and returns the
//! `result` or the error object. Framing, ids, batches and notifications are the
//! transport's ([`crate::protocol::transport`]); this module never sees a request id.
//!
//! A call runs the typed handler directly and serialises its result once. (Until issue 23
//! it went through a jsonrpsee `RpcModule`, whose callback serialises a whole response
//! envelope that was then parsed again to take the `result` out: measured at about a
//! quarter of the CPU of a warm `auth.resolve` in `serve`.) The error object is the one the
//! wire carries ([`RpcError::public_message`] and [`RpcError::data`], redacted), so every
//! caller sees the same error whichever way it came.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::core::error::{sanitize_serde_message, ErrorKind, RpcError};
use crate::handlers::App;

/// A method's entry in the catalogue: name, documentation, schemas and error kinds.
pub(crate) struct MethodSpec {
    /// The method name (`profiles.put`).
    pub name: &'static str,
    /// One line for the OpenRPC `summary`.
    pub summary: &'static str,
    /// The method's own `data.kind` values, besides the transport's and the store's
    /// (those follow from `access`: [`MethodSpec::error_kinds`]).
    pub errors: &'static [ErrorKind],
    /// Whether the method reads or writes the store, or does not touch it.
    pub access: Access,
    /// Inline JSON Schema of the params object.
    pub params: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
    /// JSON Schema of the result.
    pub result: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
    /// The handler behind the name: by-name params (raw JSON) to the raw `result`.
    call: DirectCall,
}

/// A registered method as [`Dispatcher::call`] runs it: the context and by-name params
/// (raw JSON; `None` = omitted) to the raw `result` JSON, serialised once.
type DirectCall = Box<dyn Fn(&Ctx, Option<&str>) -> Result<Box<RawValue>, RpcError> + Send + Sync>;

/// What the handlers get: the app and the catalogue.
pub(crate) struct Ctx {
    /// The application.
    pub app: App,
    specs: OnceLock<Vec<MethodSpec>>,
    discover: OnceLock<Value>,
}

impl Ctx {
    /// The OpenRPC document, built on first use (it is not needed on the cold-start path).
    pub(crate) fn openrpc(&self) -> &Value {
        self.discover.get_or_init(|| {
            crate::protocol::openrpc::document(self.specs.get().map(Vec::as_slice).unwrap_or(&[]))
        })
    }
}

/// The registry and its context.
pub struct Dispatcher {
    ctx: Arc<Ctx>,
    /// Method name → its index in the catalogue.
    index: HashMap<&'static str, usize>,
}

/// Parses by-name params into `P`. Omitted params are `{}`; an array is refused.
///
/// Errors are `invalid_params` whose `data.pointer` is the exact JSON pointer of the
/// offending member (`/oauth/scop`, `/order/2`), found with `serde_path_to_error`, and
/// whose hint names the closest known field for a misspelt one (strsim).
pub(crate) fn parse_params<P: DeserializeOwned>(raw: Option<&str>) -> Result<P, RpcError> {
    let raw = raw.map(str::trim_start).unwrap_or("{}");
    let raw = if raw.starts_with("null") { "{}" } else { raw };
    if raw.starts_with('[') {
        return Err(RpcError::invalid_params(
            "params must be an object of named params, not an array",
        )
        .with_hint("send {\"provider\": \"openai\"}, not [\"openai\"]"));
    }
    let mut de = serde_json::Deserializer::from_str(raw);
    let parsed = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| params_error(&json_pointer(e.path()), e.inner()))?;
    de.end().map_err(|e| params_error("", &e))?;
    // serde_json keeps the last of duplicate keys; other parsers keep the first. Refuse
    // them anywhere in the params, so that no two readers can see different requests.
    serde_json::from_str::<NoDuplicateKeys>(raw).map_err(|e| {
        RpcError::invalid_params(format!(
            "invalid params: {}",
            sanitize_serde_message(&e.to_string())
        ))
        .with_hint("send each member of a JSON object once")
    })?;
    Ok(parsed)
}

/// The JSON pointer (RFC 6901) of a `serde_path_to_error` path; `""` is the params object.
fn json_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("/{index}")),
            Segment::Map { key } => {
                out.push('/');
                out.push_str(&key.replace('~', "~0").replace('/', "~1"));
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    out
}

/// Builds the `invalid_params` error of a failed params parse at JSON pointer `pointer`.
fn params_error(pointer: &str, e: &serde_json::Error) -> RpcError {
    let msg = sanitize_serde_message(&e.to_string());
    let mut pointer = pointer.to_string();
    let field_in = |prefix: &str| {
        msg.strip_prefix(prefix)
            .and_then(|r| r.split('`').next())
            .map(str::to_string)
    };
    let mut hint = None;
    if let Some(field) = field_in("missing field `") {
        // The path names the object that lacks the member.
        pointer = format!("{pointer}/{field}");
        hint = Some(format!("add `{field}`"));
    } else if let Some(field) = field_in("unknown field `") {
        // The path already ends at the unknown member; older paths stop at its parent.
        if !pointer.ends_with(&format!("/{field}")) {
            pointer = format!("{pointer}/{field}");
        }
        let expected: Vec<&str> = msg
            .split_once("expected ")
            .map(|(_, r)| r.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        hint = Some(match did_you_mean(&field, expected.iter().copied()) {
            Some(m) => format!(
                "did you mean `{m}`? known fields here: {}",
                expected.join(", ")
            ),
            None if expected.is_empty() => format!("remove `{field}`"),
            None => format!("known fields here: {}", expected.join(", ")),
        });
    }
    let mut err = RpcError::invalid_params(format!("invalid params: {msg}"));
    if !pointer.is_empty() {
        err = err.with("pointer", pointer);
    }
    if let Some(h) = hint {
        err = err.with_hint(h);
    }
    err
}

/// The candidate closest to `input` (Jaro-Winkler similarity of at least 0.8, or the same
/// text after its last `.`), for "did you mean" hints. Only candidates are ever returned,
/// so caller text is never echoed through a suggestion.
pub(crate) fn did_you_mean<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = input.to_ascii_lowercase();
    let tail = |s: &str| s.rsplit('.').next().unwrap_or(s).to_ascii_lowercase();
    let mut best: Option<(f64, &'a str)> = None;
    for c in candidates {
        let mut score = strsim::jaro_winkler(&lower, &c.to_ascii_lowercase());
        if tail(c) == tail(&lower) {
            score = score.max(0.95);
        }
        if score >= 0.8 && best.is_none_or(|(b, _)| score > b) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c)
}

/// A JSON value walked only to refuse an object that has the same key twice, at any depth.
/// Depth is bounded by serde_json's recursion limit (128), like every other parse here.
struct NoDuplicateKeys;

impl<'de> Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicateKeys)
    }
}

impl<'de> serde::de::Visitor<'de> for NoDuplicateKeys {
    type Value = NoDuplicateKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Self, A::Error> {
        while a.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(self)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Self, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(k) = a.next_key::<std::borrow::Cow<'de, str>>()? {
            a.next_value::<NoDuplicateKeys>()?;
            if !seen.insert(k.clone()) {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate key `{}`",
                    shorten(&k)
                )));
            }
        }
        Ok(self)
    }
}

/// A method's handler: the context and typed params to the typed result.
pub(crate) type Handler<P, R> = fn(&Ctx, P) -> Result<R, RpcError>;

/// Adds one method of the table ([`crate::protocol::methods`]) to the registry.
pub(crate) fn register<P, R>(
    specs: &mut Vec<MethodSpec>,
    (name, access, errors, summary): (&'static str, Access, &'static [ErrorKind], &'static str),
    f: Handler<P, R>,
) where
    P: DeserializeOwned + schemars::JsonSchema + 'static,
    R: Serialize + schemars::JsonSchema + 'static,
{
    assert!(
        specs.iter().all(|s| s.name != name),
        "method names are unique: {name}"
    );
    specs.push(MethodSpec {
        name,
        summary,
        errors,
        access,
        params: |g| P::json_schema(g),
        result: |g| g.subschema_for::<R>(),
        call: Box::new(move |ctx, params| {
            let p: P = parse_params(params).map_err(|e| match e.hint {
                Some(_) => e,
                None => e.with_hint(params_shape::<P>(name)),
            })?;
            encode_result(&f(ctx, p)?)
        }),
    });
}

/// A handler's result as the raw `result` JSON. Through a `Value` so that members come
/// out in the order they always have (sorted by name, as serde_json's map keeps them):
/// the bytes on the wire are those of before the round trip was dropped.
fn encode_result<R: Serialize>(r: &R) -> Result<Box<RawValue>, RpcError> {
    let encode = |e: serde_json::Error| RpcError::internal(format!("encode result: {e}"));
    let v = serde_json::to_value(r).map_err(encode)?;
    serde_json::value::to_raw_value(&v).map_err(encode)
}

/// "`providers.put` takes {id, aliases?, envVars?, oauth?}": the params of a method, from
/// its schema (`?` = optional), for the hint of an `invalid_params` error.
fn params_shape<P: schemars::JsonSchema>(name: &str) -> String {
    let schema = schemars::SchemaGenerator::default().into_root_schema_for::<P>();
    let v = schema.as_value();
    let required: Vec<&str> = v
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let fields: Vec<String> = v
        .get("properties")
        .and_then(Value::as_object)
        .map(|props| {
            props
                .keys()
                .map(|k| match required.contains(&k.as_str()) {
                    true => k.clone(),
                    false => format!("{k}?"),
                })
                .collect()
        })
        .unwrap_or_default();
    format!("`{name}` takes {{{}}}", fields.join(", "))
}

/// How a method touches the store: the store error kinds it can return follow from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Never opens the store (`rpc.discover`).
    None,
    /// Reads in read transactions only.
    Read,
    /// Writes (or may write: a resolve that refreshes an OAuth token commits it).
    Write,
}

/// The store kinds every method that reads the store can return (protocol §7, -32060;
/// *(r3)* a sealed store opened without its key, or with another key, §9).
const STORE_READ_ERRORS: &[ErrorKind] = &[
    ErrorKind::StoreBusy,
    ErrorKind::StoreUnavailable,
    ErrorKind::StoreCorrupt,
    ErrorKind::StorePermissions,
    ErrorKind::StoreNewerSchema,
    ErrorKind::StoreSealed,
    ErrorKind::StoreKeyMismatch,
];

impl Access {
    /// The store's `data.kind` values a method with this access can return.
    pub(crate) fn store_errors(self) -> Vec<ErrorKind> {
        match self {
            Access::None => vec![],
            Access::Read => STORE_READ_ERRORS.to_vec(),
            Access::Write => {
                let mut v = STORE_READ_ERRORS.to_vec();
                v.push(ErrorKind::StoreReadonly);
                v
            }
        }
    }
}

impl MethodSpec {
    /// Every `data.kind` the method can return besides the transport's: its own, then the
    /// store's (derived from [`MethodSpec::access`], so the lists cannot drift).
    pub(crate) fn error_kinds(&self) -> Vec<ErrorKind> {
        let mut out = self.errors.to_vec();
        for k in self.access.store_errors() {
            if !out.contains(&k) {
                out.push(k);
            }
        }
        out
    }
}

impl Dispatcher {
    /// Registers every method of the table ([`crate::protocol::methods::register_all`])
    /// over `app`.
    pub fn new(app: App) -> Self {
        let ctx = Arc::new(Ctx {
            app,
            specs: OnceLock::new(),
            discover: OnceLock::new(),
        });
        let mut s = Vec::new();
        crate::protocol::methods::register_all(&mut s);
        let index = s.iter().enumerate().map(|(i, m)| (m.name, i)).collect();
        let _ = ctx.specs.set(s);
        Dispatcher { ctx, index }
    }

    /// The method names, in table order (`helper.info` `methods`).
    pub(crate) fn method_names(ctx: &Ctx) -> Vec<String> {
        ctx.specs
            .get()
            .map(|v| v.iter().map(|s| s.name.to_string()).collect())
            .unwrap_or_default()
    }

    /// The application behind the methods (for CLI verbs that report beside a call,
    /// such as `check`'s plaintext-at-rest warning).
    pub(crate) fn app(&self) -> &App {
        &self.ctx.app
    }

    /// The catalogue, in registration order.
    pub(crate) fn specs(&self) -> &[MethodSpec] {
        self.ctx.specs.get().map(Vec::as_slice).unwrap_or(&[])
    }

    /// The OpenRPC document (`rpc.discover`).
    pub(crate) fn openrpc(&self) -> &Value {
        self.ctx.openrpc()
    }

    /// Whether `method` is registered.
    pub(crate) fn knows(&self, method: &str) -> bool {
        self.index.contains_key(method)
    }

    /// Runs `method` with by-name `params` (raw JSON; `None` = omitted) and returns the
    /// raw `result` JSON, or the error.
    pub(crate) fn call(
        &self,
        method: &str,
        params: Option<&str>,
    ) -> Result<Box<RawValue>, RpcError> {
        let Some(spec) = self.index.get(method).map(|i| &self.specs()[*i]) else {
            let names = self.specs().iter().map(|s| s.name);
            let hint = match did_you_mean(method, names) {
                Some(m) => format!(
                    "did you mean `{m}`? helper.info lists every method (`modelauth call helper.info`)"
                ),
                None => "helper.info lists every method (`modelauth call helper.info`)".into(),
            };
            return Err(RpcError::new(
                ErrorKind::MethodNotFound,
                format!("unknown method `{}`", shorten(method)),
            )
            .with_hint(hint));
        };
        (spec.call)(&self.ctx, params).map_err(|e| {
            // The error as the wire carries it: message and data redacted.
            let e = rebuild_error(e.kind.code(), e.public_message(), Some(e.data()));
            // PROTOCOL §10 r3: an unknown provider or profile id gets a did-you-mean.
            super::suggest::for_params(self, e, method, params)
        })
    }
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 64 {
        format!("{}…", s.chars().take(64).collect::<String>())
    } else {
        s.to_string()
    }
}

/// Turns an error object (`code`, `message`, `data` with `kind`) back into an [`RpcError`].
fn rebuild_error(code: i32, message: String, data: Option<Value>) -> RpcError {
    let Some(Value::Object(mut d)) = data else {
        let kind = ErrorKind::ALL
            .into_iter()
            .find(|k| k.code() == code)
            .unwrap_or(ErrorKind::Internal);
        return RpcError::new(kind, message);
    };
    let kind = d
        .get("kind")
        .and_then(Value::as_str)
        .and_then(|k| ErrorKind::ALL.into_iter().find(|x| x.as_str() == k))
        .unwrap_or(ErrorKind::Internal);
    let retryable = d.get("retryable").and_then(Value::as_bool).unwrap_or(false);
    let hint = d.get("hint").and_then(Value::as_str).map(str::to_string);
    d.remove("kind");
    d.remove("retryable");
    d.remove("hint");
    RpcError {
        kind,
        message,
        retryable,
        hint,
        extra: d,
    }
}
