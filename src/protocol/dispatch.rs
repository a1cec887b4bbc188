//! The method registry: every method of protocol §3 registered in a jsonrpsee
//! [`RpcModule`], with the schema and error catalogue the OpenRPC document is built from.
//!
//! [`Dispatcher::call`] runs one method by name with by-name params and returns the
//! `result` or the error object. Framing, ids, batches and notifications are the
//! transport's ([`crate::protocol::transport`]); this module never sees a request id.

use std::sync::{Arc, OnceLock};

use jsonrpsee::types::{Id, Params};
use jsonrpsee::{Extensions, MethodCallback, RpcModule};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::api::*;
use crate::core::error::{sanitize_serde_message, ErrorKind, RpcError};
use crate::handlers::App;

/// A method's entry in the catalogue: name, documentation, schemas and error kinds.
pub struct MethodSpec {
    /// The method name (`profiles.put`).
    pub name: &'static str,
    /// One line for the OpenRPC `summary`.
    pub summary: &'static str,
    /// The `data.kind` values it can return besides the transport's.
    pub errors: &'static [ErrorKind],
    /// Inline JSON Schema of the params object.
    pub params: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
    /// JSON Schema of the result.
    pub result: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
}

/// What the handlers get: the app and the catalogue.
pub struct Ctx {
    /// The application.
    pub app: App,
    specs: OnceLock<Vec<MethodSpec>>,
    discover: OnceLock<Value>,
}

impl Ctx {
    /// The OpenRPC document, built on first use (it is not needed on the cold-start path).
    pub fn openrpc(&self) -> &Value {
        self.discover.get_or_init(|| {
            crate::protocol::openrpc::document(self.specs.get().map(Vec::as_slice).unwrap_or(&[]))
        })
    }
}

/// The registry and its context.
pub struct Dispatcher {
    module: RpcModule<Arc<Ctx>>,
    ctx: Arc<Ctx>,
}

/// Parses by-name params into `P`. Omitted params are `{}`; an array is refused.
///
/// Errors are `invalid_params` whose `data.pointer` is the exact JSON pointer of the
/// offending member (`/oauth/scop`, `/order/2`), found with `serde_path_to_error`, and
/// whose hint names the closest known field for a misspelt one (strsim).
pub fn parse_params<P: DeserializeOwned>(raw: Option<&str>) -> Result<P, RpcError> {
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
pub fn did_you_mean<'a>(
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

type Handler<P, R> = fn(&Ctx, P) -> Result<R, RpcError>;

fn register<P, R>(
    module: &mut RpcModule<Arc<Ctx>>,
    specs: &mut Vec<MethodSpec>,
    name: &'static str,
    summary: &'static str,
    errors: &'static [ErrorKind],
    f: Handler<P, R>,
) where
    P: DeserializeOwned + schemars::JsonSchema + 'static,
    R: Serialize + schemars::JsonSchema + 'static,
{
    specs.push(MethodSpec {
        name,
        summary,
        errors,
        params: |g| P::json_schema(g),
        result: |g| g.subschema_for::<R>(),
    });
    module
        .register_method(
            name,
            move |params: Params<'_>, ctx: &Arc<Ctx>, _: &Extensions| -> Result<Value, RpcError> {
                let p: P = parse_params(params.as_str()).map_err(|e| match e.hint {
                    Some(_) => e,
                    None => e.with_hint(params_shape::<P>(name)),
                })?;
                let r = f(ctx, p)?;
                serde_json::to_value(r)
                    .map_err(|e| RpcError::internal(format!("encode result: {e}")))
            },
        )
        .expect("method names are unique");
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

use ErrorKind as K;
const STORE_ERRORS: &[ErrorKind] = &[
    K::StoreBusy,
    K::StoreCorrupt,
    K::StorePermissions,
    K::StoreReadonly,
    K::StoreNewerSchema,
];

impl Dispatcher {
    /// Registers every method over `app`.
    pub fn new(app: App) -> Self {
        let ctx = Arc::new(Ctx {
            app,
            specs: OnceLock::new(),
            discover: OnceLock::new(),
        });
        let mut m = RpcModule::new(ctx.clone());
        let mut s = Vec::new();
        register(
            &mut m,
            &mut s,
            "helper.info",
            "Name, version, protocol version, store location and the method list.",
            STORE_ERRORS,
            |c, p: InfoParams| {
                c.app.info(
                    p,
                    c.specs
                        .get()
                        .map(|v| v.iter().map(|s| s.name.to_string()).collect())
                        .unwrap_or_default(),
                )
            },
        );
        register(
            &mut m,
            &mut s,
            "rpc.discover",
            "The OpenRPC 1.x document of every method.",
            &[],
            |c, _: DiscoverParams| Ok(OpenRpcDocument(c.openrpc().clone())),
        );
        register(&mut m, &mut s, "profiles.put", "Create or replace a profile; keeps it routable (appended to an explicit order, or first with primary).",
            &[K::InvalidParams, K::InvalidProfile, K::ProviderMismatch, K::RevisionConflict, K::StoreBusy, K::StoreReadonly, K::StorePermissions, K::StoreCorrupt, K::StoreNewerSchema],
            |c, p: PutParams| c.app.profiles_put(p));
        register(
            &mut m,
            &mut s,
            "profiles.get",
            "One profile of the scope's view; secrets fingerprinted unless reveal.",
            &[
                K::InvalidParams,
                K::UnknownProfile,
                K::StoreBusy,
                K::StoreCorrupt,
                K::StoreNewerSchema,
            ],
            |c, p: GetParams| c.app.profiles_get(p),
        );
        register(
            &mut m,
            &mut s,
            "profiles.list",
            "Every profile of the scope's view, sorted by provider and id.",
            &[
                K::InvalidParams,
                K::StoreBusy,
                K::StoreCorrupt,
                K::StoreNewerSchema,
            ],
            |c, p: ListParams| c.app.profiles_list(p),
        );
        register(
            &mut m,
            &mut s,
            "profiles.remove",
            "Remove a profile from a scope, its orders and lastGood.",
            &[
                K::InvalidParams,
                K::UnknownProfile,
                K::RevisionConflict,
                K::StoreBusy,
                K::StoreReadonly,
                K::StoreCorrupt,
                K::StoreNewerSchema,
            ],
            |c, p: RemoveParams| c.app.profiles_remove(p),
        );
        register(
            &mut m,
            &mut s,
            "order.get",
            "The explicit order in effect and the exact walk auth.resolve would do now.",
            &[
                K::InvalidParams,
                K::StoreBusy,
                K::StoreCorrupt,
                K::StoreNewerSchema,
            ],
            |c, p: OrderGetParams| c.app.order_get(p),
        );
        register(
            &mut m,
            &mut s,
            "order.set",
            "Set the scope's explicit order for a provider.",
            &[
                K::InvalidParams,
                K::UnknownProfile,
                K::ProviderMismatch,
                K::RevisionConflict,
                K::StoreBusy,
                K::StoreReadonly,
                K::StoreCorrupt,
                K::StoreNewerSchema,
            ],
            |c, p: OrderSetParams| c.app.order_set(p),
        );
        register(
            &mut m,
            &mut s,
            "order.clear",
            "Remove the scope's explicit order for a provider.",
            &[
                K::InvalidParams,
                K::StoreBusy,
                K::StoreReadonly,
                K::StoreCorrupt,
                K::StoreNewerSchema,
            ],
            |c, p: OrderClearParams| c.app.order_clear(p),
        );
        register(
            &mut m,
            &mut s,
            "auth.resolve",
            "The credential to use now for a provider, and why.",
            &[
                K::InvalidParams,
                K::ProviderMismatch,
                K::UnknownProfile,
                K::MissingCredential,
                K::ExcludedByAuthOrder,
                K::Unavailable,
                K::SecretUnavailable,
                K::RefreshFailed,
                K::StoreBusy,
                K::StoreCorrupt,
                K::StoreNewerSchema,
            ],
            |c, p: ResolveParams| c.app.auth_resolve(p),
        );
        register(
            &mut m,
            &mut s,
            "auth.candidates",
            "Every usable credential in resolution order, deduplicated, then environment keys.",
            &[
                K::InvalidParams,
                K::StoreBusy,
                K::StoreCorrupt,
                K::StoreNewerSchema,
            ],
            |c, p: CandidatesParams| c.app.auth_candidates(p),
        );
        register(
            &mut m,
            &mut s,
            "auth.report",
            "Record how a call with a profile went: success, rate_limit, billing, ... (cooldowns).",
            &[
                K::InvalidParams,
                K::UnknownProfile,
                K::StoreBusy,
                K::StoreReadonly,
                K::StoreCorrupt,
                K::StoreNewerSchema,
            ],
            |c, p: ReportParams| c.app.auth_report(p),
        );
        register(
            &mut m,
            &mut s,
            "auth.clearCooldown",
            "Clear a profile's cooldown and disable windows (or one model's) and its failure counts.",
            &[
                K::InvalidParams,
                K::UnknownProfile,
                K::StoreBusy,
                K::StoreReadonly,
                K::StoreCorrupt,
                K::StoreNewerSchema,
            ],
            |c, p: ClearCooldownParams| c.app.auth_clear_cooldown(p),
        );
        register(
            &mut m,
            &mut s,
            "auth.status",
            "Health of every provider and profile in the view, rolled up like `openclaw models status`.",
            &[
                K::InvalidParams,
                K::StoreBusy,
                K::StoreCorrupt,
                K::StoreNewerSchema,
            ],
            |c, p: StatusParams| c.app.auth_status(p),
        );
        register(
            &mut m,
            &mut s,
            "settings.get",
            "The effective settings (cooldowns, envFallback, refresh margin, ...).",
            STORE_ERRORS,
            |c, p: SettingsGetParams| c.app.settings_get(p),
        );
        register(
            &mut m,
            &mut s,
            "settings.set",
            "Merge the given keys into the stored settings; returns the effective settings.",
            &[
                K::InvalidParams,
                K::InvalidSettings,
                K::StoreBusy,
                K::StoreReadonly,
                K::StorePermissions,
                K::StoreCorrupt,
                K::StoreNewerSchema,
            ],
            |c, p: SettingsSetParams| c.app.settings_set(p),
        );
        register(
            &mut m,
            &mut s,
            "store.import",
            "Import credentials (modelauth, OpenClaw auth-profiles.json, auth.json, SQLite, state directory) in one transaction.",
            &[
                K::InvalidParams,
                K::ShapeUnrecognized,
                K::ImportInvalid,
                K::StoreBusy,
                K::StoreReadonly,
                K::StorePermissions,
                K::StoreCorrupt,
                K::StoreNewerSchema,
            ],
            |c, p: crate::openclaw::import::ImportParams| c.app.store_import(p),
        );
        register(
            &mut m,
            &mut s,
            "store.export",
            "One scope as OpenClaw's auth-profiles.json v1 document; secrets fingerprinted unless reveal.",
            &[
                K::InvalidParams,
                K::StoreBusy,
                K::StoreCorrupt,
                K::StoreNewerSchema,
            ],
            |c, p: crate::openclaw::export::ExportParams| c.app.store_export(p),
        );
        register(
            &mut m,
            &mut s,
            "store.validate",
            "The errors and warnings store.import would report for a source; writes nothing.",
            &[
                K::InvalidParams,
                K::ShapeUnrecognized,
                K::ImportInvalid,
                K::StoreBusy,
                K::StoreCorrupt,
                K::StoreNewerSchema,
            ],
            |c, p: crate::openclaw::import::ValidateParams| c.app.store_validate(p),
        );
        register(
            &mut m,
            &mut s,
            "auth.refresh",
            "Refresh an OAuth profile now if it is inside the refresh margin (or always with force); one token call per rotation across processes.",
            &[
                K::InvalidParams,
                K::UnknownProfile,
                K::RefreshFailed,
                K::SecretUnavailable,
                K::StoreBusy,
                K::StoreReadonly,
                K::StoreCorrupt,
                K::StoreNewerSchema,
            ],
            |c, p: RefreshParams| c.app.auth_refresh(p),
        );
        register(
            &mut m,
            &mut s,
            "providers.put",
            "Register or replace a provider: aliases, extra env key names, OAuth client (tokenUrl, clientId, clientSecretRef, scope).",
            &[
                K::InvalidParams,
                K::StoreBusy,
                K::StoreReadonly,
                K::StorePermissions,
                K::StoreCorrupt,
                K::StoreNewerSchema,
            ],
            |c, p: ProviderPutParams| c.app.providers_put(p),
        );
        register(
            &mut m,
            &mut s,
            "providers.get",
            "One registered provider, by id or alias.",
            &[
                K::InvalidParams,
                K::UnknownProvider,
                K::StoreBusy,
                K::StoreCorrupt,
                K::StoreNewerSchema,
            ],
            |c, p: ProviderIdParams| c.app.providers_get(p),
        );
        register(
            &mut m,
            &mut s,
            "providers.list",
            "Every registered provider, sorted by id.",
            STORE_ERRORS,
            |c, p: ProvidersListParams| c.app.providers_list(p),
        );
        register(
            &mut m,
            &mut s,
            "providers.remove",
            "Unregister a provider (its profiles are kept).",
            &[
                K::InvalidParams,
                K::UnknownProvider,
                K::StoreBusy,
                K::StoreReadonly,
                K::StoreCorrupt,
                K::StoreNewerSchema,
            ],
            |c, p: ProviderIdParams| c.app.providers_remove(p),
        );
        let _ = ctx.specs.set(s);
        Dispatcher { module: m, ctx }
    }

    /// The catalogue, in registration order.
    pub fn specs(&self) -> &[MethodSpec] {
        self.ctx.specs.get().map(Vec::as_slice).unwrap_or(&[])
    }

    /// The OpenRPC document (`rpc.discover`).
    pub fn openrpc(&self) -> &Value {
        self.ctx.openrpc()
    }

    /// Whether `method` is registered.
    pub fn knows(&self, method: &str) -> bool {
        self.module.method(method).is_some()
    }

    /// Runs `method` with by-name `params` (raw JSON; `None` = omitted) and returns the
    /// raw `result` JSON, or the error.
    pub fn call(&self, method: &str, params: Option<&str>) -> Result<Box<RawValue>, RpcError> {
        let Some(cb) = self.module.method(method) else {
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
        let MethodCallback::Sync(cb) = cb else {
            return Err(RpcError::internal(
                "only synchronous methods are registered",
            ));
        };
        let resp = cb(
            Id::Number(0),
            Params::new(params),
            usize::MAX,
            Extensions::new(),
        );
        let (json, _, _) = resp.into_parts();
        #[derive(Deserialize)]
        struct Envelope {
            result: Option<Box<RawValue>>,
            error: Option<ErrorObj>,
        }
        #[derive(Deserialize)]
        struct ErrorObj {
            code: i32,
            message: String,
            data: Option<Value>,
        }
        let env: Envelope = serde_json::from_str(json.get())
            .map_err(|e| RpcError::internal(format!("decode response: {e}")))?;
        if let Some(r) = env.result {
            return Ok(r);
        }
        let e = env
            .error
            .ok_or_else(|| RpcError::internal("response without result or error"))?;
        let e = rebuild_error(e.code, e.message, e.data);
        // PROTOCOL §10 r3: an unknown provider or profile id gets a did-you-mean.
        Err(super::suggest::for_params(self, e, method, params))
    }
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 64 {
        format!("{}…", s.chars().take(64).collect::<String>())
    } else {
        s.to_string()
    }
}

/// Turns a jsonrpsee error object back into an [`RpcError`] (ours carry `data.kind`).
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
