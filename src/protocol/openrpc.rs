//! The OpenRPC 1.x document (`rpc.discover`, `modelauth schema`, `protocol/openrpc.json`),
//! generated from the same serde/schemars types the handlers use.
//!
//! Schemas are JSON Schema draft-07 (OpenRPC's meta-schema), shared ones under
//! `#/components/schemas/`. Each method lists the error kinds it can return; the
//! transport errors (-32700, -32600, -32601, -32602) apply to every method. The whole
//! error catalogue is under `components.errors`, keyed by `data.kind`.

use serde_json::{json, Map, Value};

use crate::core::error::ErrorKind;
use crate::protocol::dispatch::MethodSpec;

fn error_entry(k: ErrorKind) -> Value {
    json!({
        "code": k.code(),
        "message": k.as_str(),
        "data": {"kind": k.as_str()}
    })
}

/// Builds the OpenRPC document for `specs`.
pub(crate) fn document(specs: &[MethodSpec]) -> Value {
    let mut settings = schemars::generate::SchemaSettings::draft07();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    let mut g = settings.into_generator();
    let mut methods = vec![];
    for s in specs {
        let params_schema = (s.params)(&mut g);
        let obj = params_schema.as_object().cloned().unwrap_or_default();
        let required: Vec<String> = obj
            .get("required")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let mut params = vec![];
        if let Some(Value::Object(props)) = obj.get("properties") {
            for (name, schema) in props {
                let mut d = Map::new();
                d.insert("name".into(), Value::from(name.clone()));
                if let Some(desc) = schema.get("description") {
                    d.insert("description".into(), desc.clone());
                }
                d.insert("required".into(), Value::from(required.contains(name)));
                d.insert("schema".into(), schema.clone());
                params.push(Value::Object(d));
            }
        }
        let result = (s.result)(&mut g);
        let kinds = s.error_kinds();
        let mut errors: Vec<Value> = kinds.iter().map(|k| error_entry(*k)).collect();
        if !kinds.contains(&ErrorKind::InvalidParams) {
            errors.insert(0, error_entry(ErrorKind::InvalidParams));
        }
        errors.push(error_entry(ErrorKind::Internal));
        methods.push(json!({
            "name": s.name,
            "summary": s.summary,
            "paramStructure": "by-name",
            "params": params,
            "result": {"name": "result", "schema": result},
            "errors": errors,
        }));
    }
    let schemas = g.take_definitions(true);
    // The error catalogue: OpenRPC's `components.errors`, one entry per `data.kind`.
    let catalogue: Map<String, Value> = ErrorKind::ALL
        .iter()
        .map(|k| {
            let e = json!({
                "code": k.code(),
                "message": k.description(),
                "data": {
                    "kind": k.as_str(),
                    "retryable": k.default_retryable(),
                    "hint": k.default_hint(),
                },
            });
            (k.as_str().to_string(), e)
        })
        .collect();
    json!({
        "openrpc": "1.2.6",
        "info": {
            "title": "modelauth",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A non-interactive credential helper for model-provider auth profiles: line-delimited JSON-RPC 2.0 over stdin/stdout, SQLite store. Every error is {code, message, data: {kind, retryable, hint?}}; callers match on data.kind. Times are integer milliseconds since the Unix epoch.",
        },
        "methods": methods,
        "components": {
            "schemas": schemas,
            "errors": catalogue,
        }
    })
}
