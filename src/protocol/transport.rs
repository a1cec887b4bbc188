//! Line-delimited JSON-RPC 2.0 framing (protocol §1): classify a line, answer it.
//!
//! - One message per line; a trailing `\r` is tolerated; blank lines are ignored.
//! - Invalid JSON or UTF-8 → -32700 with `id: null`; valid JSON that is not a request →
//!   -32600; positional params → -32602; unknown method → -32601.
//! - A batch is answered with one array; an empty batch is one -32600 error; a batch of
//!   notifications gives no output. Notifications are executed and never answered.
//! - The response echoes the request's `id` byte for byte (`1`, `"1"`, `-1`, `1.5`).
//!
//! [`read_line_limited`] reads one line with a size limit and bounded memory.

use std::io::{self, BufRead};

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::core::error::{ErrorKind, RpcError};
use crate::protocol::dispatch::Dispatcher;

/// Default `--max-message-bytes`: 1 MiB.
pub(crate) const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Most members a batch may hold (more is one `invalid_request` error).
pub(crate) const MAX_BATCH_MEMBERS: usize = 256;

/// Once a batch's answers pass this many bytes (8 MiB), its remaining members are not
/// executed (each gets a short `message_too_large` error).
pub(crate) const MAX_BATCH_ANSWER_BYTES: usize = 8 << 20;

/// The id text of a batch member that would be answered (`None` for a notification; a
/// member whose id cannot be read is answered with `null`).
fn batch_member_id(v: &RawValue) -> Option<String> {
    #[derive(Deserialize)]
    struct IdOnly<'a> {
        #[serde(borrow, default, deserialize_with = "present")]
        id: Option<&'a RawValue>,
    }
    match serde_json::from_str::<IdOnly<'_>>(v.get()) {
        Ok(IdOnly { id: None }) => None,
        Ok(IdOnly { id: Some(id) }) => {
            let t = id.get();
            let ok = t.starts_with('"')
                || t == "null"
                || t.starts_with('-')
                || t.as_bytes()[0].is_ascii_digit();
            Some(if ok { t.to_string() } else { "null".into() })
        }
        Err(_) => Some("null".into()),
    }
}

/// What [`read_line_limited`] read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LineRead {
    /// A full line (without its `\n`) is in the buffer.
    Line,
    /// The line was longer than the limit; it was discarded up to its `\n`.
    TooLarge,
    /// End of input (any partial last line is returned as `Line` first).
    Eof,
}

/// Reads one `\n`-terminated line into `buf` (cleared first), keeping at most `max` bytes
/// in memory: a longer line is consumed and discarded, and `TooLarge` returned.
pub(crate) fn read_line_limited<R: BufRead>(
    r: &mut R,
    max: usize,
    buf: &mut Vec<u8>,
) -> io::Result<LineRead> {
    buf.clear();
    let mut too_large = false;
    let mut read_any = false;
    loop {
        let available = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(match (read_any, too_large) {
                (false, _) => LineRead::Eof,
                (true, true) => LineRead::TooLarge,
                (true, false) => LineRead::Line,
            });
        }
        read_any = true;
        let (chunk, done) = match memchr(available) {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if !too_large {
            if buf.len() + chunk.len() > max {
                too_large = true;
                buf.clear();
                buf.shrink_to(64 * 1024);
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        let used = done.unwrap_or(available.len());
        r.consume(used);
        if done.is_some() {
            return Ok(if too_large {
                LineRead::TooLarge
            } else {
                LineRead::Line
            });
        }
    }
}

fn memchr(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

/// The error response for an over-long line.
pub(crate) fn too_large_response(max: usize) -> String {
    let e = RpcError::new(
        ErrorKind::MessageTooLarge,
        format!("message longer than {max} bytes was discarded"),
    )
    .with("limit", max)
    .with_hint("send smaller messages or raise --max-message-bytes");
    error_response("null", &e)
}

/// `{"jsonrpc":"2.0","id":<id>,"error":{...}}` with `id` as raw JSON text.
pub(crate) fn error_response(id: &str, e: &RpcError) -> String {
    format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"error\":{}}}",
        e.to_json()
    )
}

fn result_response(id: &str, result: &RawValue) -> String {
    format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{}}}",
        result.get()
    )
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    jsonrpc: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    params: Option<&'a RawValue>,
}

/// Keeps an explicit `null` as `Some("null")`, so that `"id": null` is a request and an
/// absent `id` a notification.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

fn invalid_request(msg: &str) -> RpcError {
    RpcError::new(ErrorKind::InvalidRequest, msg.to_string()).with_hint(
        "a request is {\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"helper.info\",\"params\":{}}",
    )
}

impl Dispatcher {
    /// Answers one line of input. `None` means nothing is written (a notification, a batch
    /// of notifications, or a blank line).
    pub fn handle_line(&self, line: &[u8]) -> Option<String> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Ok(text) = std::str::from_utf8(line) else {
            return Some(error_response(
                "null",
                &RpcError::new(ErrorKind::ParseError, "the message is not valid UTF-8"),
            ));
        };
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        if text.starts_with('[') {
            let items: Vec<&RawValue> = match serde_json::from_str(text) {
                Ok(v) => v,
                Err(e) => return Some(parse_error(&e)),
            };
            if items.is_empty() {
                return Some(error_response(
                    "null",
                    &invalid_request("an empty batch is not a request"),
                ));
            }
            return self.handle_batch(&items);
        }
        match serde_json::from_str::<&RawValue>(text) {
            Ok(v) => self.handle_value(v),
            Err(e) => Some(parse_error(&e)),
        }
    }

    /// Answers a batch in bounded work and memory: more than [`MAX_BATCH_MEMBERS`] members
    /// is one `invalid_request` error (nothing executed); once the answers reach
    /// [`MAX_BATCH_ANSWER_BYTES`], the remaining members are not executed and each gets a
    /// short `message_too_large` error with its id.
    fn handle_batch(&self, items: &[&RawValue]) -> Option<String> {
        if items.len() > MAX_BATCH_MEMBERS {
            return Some(error_response(
                "null",
                &RpcError::new(
                    ErrorKind::InvalidRequest,
                    format!(
                        "a batch holds at most {MAX_BATCH_MEMBERS} requests, this one {}; nothing was executed",
                        items.len()
                    ),
                )
                .with("maxBatchMembers", MAX_BATCH_MEMBERS)
                .with_hint("split the batch, or send one request per line"),
            ));
        }
        let mut out = String::from("[");
        let mut any = false;
        for v in items {
            let answer = if out.len() > MAX_BATCH_ANSWER_BYTES {
                batch_member_id(v).map(|id| {
                    error_response(
                        &id,
                        &RpcError::new(
                            ErrorKind::MessageTooLarge,
                            format!(
                                "the batch's answer passed {MAX_BATCH_ANSWER_BYTES} bytes; this request was not executed"
                            ),
                        )
                        .with_hint("send it again in a later batch or on its own line"),
                    )
                })
            } else {
                self.handle_value(v)
            };
            if let Some(a) = answer {
                if any {
                    out.push(',');
                }
                out.push_str(&a);
                any = true;
            }
        }
        out.push(']');
        any.then_some(out)
    }

    /// Answers one request value (a line or a batch member).
    fn handle_value(&self, v: &RawValue) -> Option<String> {
        let raw = v.get().trim_start();
        if !raw.starts_with('{') {
            return Some(error_response(
                "null",
                &invalid_request("the message is not a JSON-RPC request object"),
            ));
        }
        let env: Envelope<'_> = match serde_json::from_str(v.get()) {
            Ok(e) => e,
            Err(e) => {
                let msg = crate::core::error::sanitize_serde_message(&e.to_string());
                return Some(error_response(
                    "null",
                    &invalid_request(&format!("not a valid request: {msg}")),
                ));
            }
        };
        // id: absent = notification; else it must be a string, number or null.
        let id = match env.id {
            None => None,
            Some(raw) => {
                let t = raw.get();
                let ok = t.starts_with('"')
                    || t == "null"
                    || t.starts_with('-')
                    || t.as_bytes()[0].is_ascii_digit();
                if !ok {
                    return Some(error_response(
                        "null",
                        &invalid_request("`id` must be a string, a number or null"),
                    ));
                }
                Some(t)
            }
        };
        let reply_id = id.unwrap_or("null");
        if env.jsonrpc.map(RawValue::get) != Some("\"2.0\"") {
            return Some(error_response(
                reply_id,
                &invalid_request("`jsonrpc` must be \"2.0\""),
            ));
        }
        let method: String = match env.method.map(|m| serde_json::from_str::<String>(m.get())) {
            Some(Ok(m)) => m,
            _ => {
                return Some(error_response(
                    reply_id,
                    &invalid_request("`method` must be a string"),
                ))
            }
        };
        let params = match env.params.map(RawValue::get) {
            None | Some("null") => None,
            Some(p) if p.starts_with('{') => Some(p),
            Some(p) if p.starts_with('[') => {
                let e = RpcError::invalid_params(
                    "params must be an object of named params, not an array",
                );
                return id.map(|id| error_response(id, &e));
            }
            Some(_) => {
                return Some(error_response(
                    reply_id,
                    &invalid_request("`params` must be an object"),
                ))
            }
        };
        // Only registered method names are logged: an unknown one is caller text and could
        // be anything, a pasted key included.
        let logged = if self.knows(&method) {
            method.as_str()
        } else {
            "(unknown method)"
        };
        let span = tracing::debug_span!("request", method = logged, notification = id.is_none());
        let _g = span.enter();
        let outcome = guarded(|| self.call(&method, params));
        match &outcome {
            Ok(_) => tracing::debug!("ok"),
            Err(e) => tracing::debug!(kind = e.kind.as_str(), "error"),
        }
        let id = id?;
        Some(match outcome {
            Ok(r) => result_response(id, &r),
            Err(e) => error_response(id, &e),
        })
    }
}

/// Runs a handler so that a panic (a bug) becomes an `internal` error for that request
/// and serving goes on. The panic's payload is never put in the response: it may hold a
/// secret. The panic hook ([`crate::cli::install_panic_hook`]) withholds it from stderr too.
pub(crate) fn guarded<T>(f: impl FnOnce() -> Result<T, RpcError>) -> Result<T, RpcError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(RpcError::internal(
            "the request failed with an internal error (a bug); details are withheld because they may hold a secret",
        ))
    })
}

/// "line 1 column 14: syntax error": where a JSON text broke and how, never the text itself
/// (it may hold a secret).
pub(crate) fn json_error_text(e: &serde_json::Error) -> String {
    format!(
        "line {} column {}: {}",
        e.line(),
        e.column(),
        match e.classify() {
            serde_json::error::Category::Eof => "unexpected end of input",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "bad value",
            serde_json::error::Category::Io => "read error",
        }
    )
}

fn parse_error(e: &serde_json::Error) -> String {
    let msg = format!("invalid JSON at {}", json_error_text(e));
    error_response("null", &RpcError::new(ErrorKind::ParseError, msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_with_a_secret_in_scope_becomes_an_internal_error_without_it() {
        let secret = crate::core::secret_value::Secret::new("sk-panic-secret-0001");
        let r: Result<(), RpcError> = crate::cli::with_quiet_panics(|| {
            guarded(|| panic!("boom with {} and {secret:?}", secret.expose()))
        });
        let e = r.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Internal);
        assert!(!e.to_json().to_string().contains("sk-panic-secret-0001"));
    }

    mod property {
        use crate::handlers::App;
        use crate::protocol::dispatch::Dispatcher;
        use proptest::prelude::*;
        use serde_json::{json, Value};

        fn dispatcher() -> (tempfile::TempDir, Dispatcher) {
            let dir = tempfile::tempdir().unwrap();
            let d = Dispatcher::new(App::new(dir.path().join("store.db")));
            (dir, d)
        }

        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(Value::from),
                "[a-z:._\\-]{0,12}".prop_map(Value::from),
                any::<String>().prop_map(Value::from),
            ];
            leaf.prop_recursive(4, 32, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                    prop::collection::btree_map(
                        prop_oneof![
                            Just("id".to_string()),
                            Just("type".to_string()),
                            Just("key".to_string()),
                            Just("provider".to_string()),
                            Just("profile".to_string()),
                            "[a-zA-Z]{1,8}"
                        ],
                        inner,
                        0..6
                    )
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        fn request() -> impl Strategy<Value = Value> {
            let method = prop_oneof![
                Just("helper.info"),
                Just("profiles.put"),
                Just("profiles.get"),
                Just("profiles.list"),
                Just("profiles.remove"),
                Just("order.get"),
                Just("order.set"),
                Just("order.clear"),
                Just("auth.resolve"),
                Just("auth.report"),
                Just("auth.status"),
                Just("auth.candidates"),
                Just("auth.clearCooldown"),
                Just("settings.get"),
                Just("settings.set"),
                Just("store.validate"),
                Just("no.such"),
            ];
            let id = prop_oneof![
                Just(None),
                Just(Some(Value::Null)),
                any::<i64>().prop_map(|i| Some(json!(i))),
                (-1e6f64..1e6).prop_map(|f| Some(json!(f))),
                "[ -~]{0,16}".prop_map(|s| Some(json!(s))),
                json_value().prop_map(Some),
            ];
            let params = prop_oneof![
                Just(None),
                json_value().prop_map(Some),
                (json_value(), json_value()).prop_map(|(a, b)| Some(json!({
                    "profile": {"id": "openai:p", "type": "api_key", "key": a},
                    "provider": "openai", "profileId": b,
                }))),
            ];
            (method, id, params, any::<bool>()).prop_map(|(m, id, params, v2)| {
                let mut r = json!({"method": m, "jsonrpc": if v2 { "2.0" } else { "1.0" }});
                if let Some(id) = id {
                    r["id"] = id;
                }
                if let Some(p) = params {
                    r["params"] = p;
                }
                r
            })
        }

        /// Checks one response object; returns its id.
        fn check_response(v: &Value) -> Value {
            assert_eq!(v["jsonrpc"], "2.0", "{v}");
            let obj = v.as_object().unwrap();
            assert_eq!(obj.len(), 3, "{v}");
            assert!(obj.contains_key("id"), "{v}");
            match (obj.get("result"), obj.get("error")) {
                (Some(_), None) => {}
                (None, Some(e)) => {
                    assert!(e["code"].is_i64() && e["message"].is_string(), "{v}");
                    assert!(e["data"]["kind"].is_string(), "{v}");
                    assert!(e["data"]["retryable"].is_boolean(), "{v}");
                }
                _ => panic!("exactly one of result and error: {v}"),
            }
            v["id"].clone()
        }

        /// The property: a line gets exactly one well-formed response line (one object, or
        /// one array for a batch), or none exactly when it holds only notifications.
        fn check_line(d: &Dispatcher, line: &[u8]) {
            let out = d.handle_line(line);
            let parsed: Option<Value> = std::str::from_utf8(line)
                .ok()
                .and_then(|t| serde_json::from_str(t.trim_end_matches('\r')).ok());
            // A well-formed notification: no `id`, `jsonrpc` "2.0", a string method and
            // params absent, null, an object or an array. Anything else without an id is an
            // invalid request, answered with `id: null`.
            let is_notification = |v: &Value| {
                v.is_object()
                    && v.get("id").is_none()
                    && v["jsonrpc"] == "2.0"
                    && v["method"].is_string()
                    && matches!(
                        v.get("params"),
                        None | Some(Value::Null | Value::Object(_) | Value::Array(_))
                    )
            };
            match out {
                None => {
                    let blank = std::str::from_utf8(line).is_ok_and(|t| t.trim().is_empty());
                    let silent = match &parsed {
                        Some(Value::Array(a)) => !a.is_empty() && a.iter().all(is_notification),
                        Some(v) => is_notification(v),
                        None => false,
                    };
                    assert!(
                        blank || silent,
                        "no answer to {}",
                        String::from_utf8_lossy(line)
                    );
                }
                Some(text) => {
                    assert!(!text.contains('\n'), "one line: {text}");
                    let v: Value = serde_json::from_str(&text).expect("the response is JSON");
                    match (&v, &parsed) {
                        (Value::Array(items), Some(Value::Array(reqs))) => {
                            let expected = reqs.iter().filter(|r| !is_notification(r)).count();
                            assert_eq!(items.len(), expected, "{text}");
                            for i in items {
                                check_response(i);
                            }
                        }
                        (Value::Array(_), _) => panic!("an array for a non-batch: {text}"),
                        (obj, req) => {
                            let id = check_response(obj);
                            if let Some(Value::Object(r)) = req {
                                if let Some(rid @ (Value::String(_) | Value::Number(_))) =
                                    r.get("id")
                                {
                                    assert_eq!(&id, rid, "{text}");
                                }
                            }
                        }
                    }
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn every_request_gets_exactly_one_well_formed_answer(r in request()) {
                let (_dir, d) = dispatcher();
                check_line(&d, r.to_string().as_bytes());
            }

            #[test]
            fn batches_get_one_array_with_an_answer_per_request(rs in prop::collection::vec(request(), 0..5)) {
                let (_dir, d) = dispatcher();
                check_line(&d, Value::from(rs).to_string().as_bytes());
            }

            #[test]
            fn arbitrary_bytes_never_panic_and_get_an_answer_or_none(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
                let (_dir, d) = dispatcher();
                let line: Vec<u8> = bytes.into_iter().filter(|b| *b != b'\n').collect();
                check_line(&d, &line);
            }

            #[test]
            fn arbitrary_json_values_get_an_answer_or_none(v in json_value()) {
                let (_dir, d) = dispatcher();
                check_line(&d, v.to_string().as_bytes());
            }
        }
    }

    #[test]
    fn lines_are_read_with_a_limit_and_the_rest_discarded() {
        let input = b"short\nthis line is far too long\nok\nlast".to_vec();
        let mut r = io::BufReader::with_capacity(4, &input[..]);
        let mut buf = vec![];
        assert_eq!(
            read_line_limited(&mut r, 10, &mut buf).unwrap(),
            LineRead::Line
        );
        assert_eq!(buf, b"short");
        assert_eq!(
            read_line_limited(&mut r, 10, &mut buf).unwrap(),
            LineRead::TooLarge
        );
        assert!(buf.capacity() <= 64 * 1024);
        assert_eq!(
            read_line_limited(&mut r, 10, &mut buf).unwrap(),
            LineRead::Line
        );
        assert_eq!(buf, b"ok");
        assert_eq!(
            read_line_limited(&mut r, 10, &mut buf).unwrap(),
            LineRead::Line
        );
        assert_eq!(buf, b"last");
        assert_eq!(
            read_line_limited(&mut r, 10, &mut buf).unwrap(),
            LineRead::Eof
        );
    }
}
