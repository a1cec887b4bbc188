//! Hostile input (issue 6): a table of malformed and adversarial messages, each with the
//! error kind it must get, all sent to ONE `modelauth serve` process, which must answer
//! every one (or stay silent for a notification) and keep serving.
//!
//! After each case a sentinel request is sent; everything read before the sentinel's
//! answer is the case's output, so "exactly one response" (or none) is checked exactly.
//! Plus a bounded, seeded random-input run against the binary (the in-process property
//! tests live in `src/transport.rs`).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_modelauth");

/// What a case must produce.
#[derive(Debug, Clone)]
enum Expect {
    /// One error response with this `data.kind` and this id (raw JSON text).
    Err(&'static str, String),
    /// One success response with this id (raw JSON text).
    Ok(String),
    /// One batch response: one array whose members have these kinds (`"ok"` for a result).
    Batch(Vec<&'static str>),
    /// No output at all.
    Silent,
}

struct Case {
    name: &'static str,
    line: Vec<u8>,
    expect: Expect,
}

fn err(kind: &'static str) -> Expect {
    Expect::Err(kind, "null".into())
}
fn err_id(kind: &'static str, id: &str) -> Expect {
    Expect::Err(kind, id.into())
}

fn req(method: &str, params: &str) -> Vec<u8> {
    format!(r#"{{"jsonrpc":"2.0","id":7,"method":"{method}","params":{params}}}"#).into_bytes()
}

fn put(profile: &str) -> Vec<u8> {
    req("profiles.put", &format!(r#"{{"profile":{profile}}}"#))
}

fn nested(open: &str, close: &str, depth: usize, inner: &str) -> String {
    let mut s = String::with_capacity(depth * (open.len() + close.len()) + inner.len());
    for _ in 0..depth {
        s.push_str(open);
    }
    s.push_str(inner);
    for _ in 0..depth {
        s.push_str(close);
    }
    s
}

fn cases() -> Vec<Case> {
    let c = |name, line: &[u8], expect| Case {
        name,
        line: line.to_vec(),
        expect,
    };
    let cv = |name, line: Vec<u8>, expect| Case { name, line, expect };
    let long_id = format!("\"{}\"", "i".repeat(200_000));
    let long_method = "m".repeat(500_000);
    let deep_batch = nested("[", "]", 100_000, "");
    let deep_params_array = nested("[", "]", 100_000, "1");
    let deep_params_object = nested("{\"a\":", "}", 50_000, "1");
    let big_order: String = (0..20_000)
        .map(|i| format!("\"openai:n{i}\""))
        .collect::<Vec<_>>()
        .join(",");
    vec![
        // ---- Not JSON at all.
        c("plain text", b"hello there", err("parse_error")),
        c("a lone brace", b"{", err("parse_error")),
        c(
            "truncated request",
            br#"{"jsonrpc":"2.0","id":1,"method":"helper.info""#,
            err("parse_error"),
        ),
        c(
            "trailing garbage",
            br#"{"jsonrpc":"2.0","id":1,"method":"helper.info"} x"#,
            err("parse_error"),
        ),
        c(
            "two objects on one line",
            br#"{"jsonrpc":"2.0","id":1,"method":"helper.info"}{"jsonrpc":"2.0","id":2,"method":"helper.info"}"#,
            err("parse_error"),
        ),
        c("single quotes", b"{'jsonrpc':'2.0','id':1,'method':'helper.info'}", err("parse_error")),
        c(
            "trailing comma",
            br#"{"jsonrpc":"2.0","id":1,"method":"helper.info",}"#,
            err("parse_error"),
        ),
        c("NaN", br#"{"jsonrpc":"2.0","id":NaN,"method":"helper.info"}"#, err("parse_error")),
        // ---- Bytes that are not UTF-8, NUL and BOM.
        c("invalid UTF-8", b"\xff\xfe\xfd", err("parse_error")),
        c(
            "invalid UTF-8 inside a string",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"helper.\xc3\x28\"}",
            err("parse_error"),
        ),
        c(
            "overlong UTF-8 slash",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xc0\xaf\"}",
            err("parse_error"),
        ),
        c(
            "CESU-8 surrogate",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xed\xa0\x80\"}",
            err("parse_error"),
        ),
        c(
            "raw NUL after the object",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"helper.info\"}\0",
            err("parse_error"),
        ),
        c(
            "raw NUL inside a string",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"helper\0info\"}",
            err("parse_error"),
        ),
        c("only NUL bytes", b"\0\0\0\0", err("parse_error")),
        c(
            "UTF-8 byte order mark",
            b"\xef\xbb\xbf{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"helper.info\"}",
            err("parse_error"),
        ),
        c(
            "escaped NUL in the method",
            br#"{"jsonrpc":"2.0","id":1,"method":"helper.info\u0000"}"#,
            err_id("method_not_found", "1"),
        ),
        c(
            "lone surrogate escape in the method",
            br#"{"jsonrpc":"2.0","id":1,"method":"\ud800"}"#,
            err_id("invalid_request", "1"),
        ),
        c(
            "escaped NUL in a secret",
            &put(r#"{"id":"openai:nul","type":"api_key","key":"abc\u0000def"}"#),
            err_id("invalid_profile", "7"),
        ),
        c(
            "escaped NUL in a profile id",
            &put(r#"{"id":"openai:a\u0000b","type":"api_key","key":"k"}"#),
            err_id("invalid_profile", "7"),
        ),
        // ---- Valid JSON that is not a request.
        c("a number", b"42", err("invalid_request")),
        c("a string", br#""helper.info""#, err("invalid_request")),
        c("null", b"null", err("invalid_request")),
        c("true", b"true", err("invalid_request")),
        c("an empty object", b"{}", err("invalid_request")),
        c("an empty batch", b"[]", err("invalid_request")),
        c(
            "a batch of numbers",
            b"[1,2]",
            Expect::Batch(vec!["invalid_request", "invalid_request"]),
        ),
        c(
            "jsonrpc 1.0",
            br#"{"jsonrpc":"1.0","id":1,"method":"helper.info"}"#,
            err_id("invalid_request", "1"),
        ),
        c(
            "jsonrpc as a number",
            br#"{"jsonrpc":2.0,"id":1,"method":"helper.info"}"#,
            err_id("invalid_request", "1"),
        ),
        c("no method", br#"{"jsonrpc":"2.0","id":1}"#, err_id("invalid_request", "1")),
        c(
            "method as a number",
            br#"{"jsonrpc":"2.0","id":1,"method":5}"#,
            err_id("invalid_request", "1"),
        ),
        c(
            "method as an array",
            br#"{"jsonrpc":"2.0","id":1,"method":["helper.info"]}"#,
            err_id("invalid_request", "1"),
        ),
        // ---- Ids.
        c(
            "id as an object",
            br#"{"jsonrpc":"2.0","id":{"a":1},"method":"helper.info"}"#,
            err("invalid_request"),
        ),
        c(
            "id as an array",
            br#"{"jsonrpc":"2.0","id":[1],"method":"helper.info"}"#,
            err("invalid_request"),
        ),
        c(
            "id as a boolean",
            br#"{"jsonrpc":"2.0","id":true,"method":"helper.info"}"#,
            err("invalid_request"),
        ),
        c(
            "id 1e400 (beyond f64)",
            br#"{"jsonrpc":"2.0","id":1e400,"method":"helper.info"}"#,
            Expect::Ok("1e400".into()),
        ),
        c(
            "id beyond u64",
            br#"{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"helper.info"}"#,
            Expect::Ok("123456789012345678901234567890".into()),
        ),
        c(
            "id -0",
            br#"{"jsonrpc":"2.0","id":-0,"method":"helper.info"}"#,
            Expect::Ok("-0".into()),
        ),
        cv(
            "a 200 KB string id",
            format!(r#"{{"jsonrpc":"2.0","id":{long_id},"method":"helper.info"}}"#).into_bytes(),
            Expect::Ok(long_id.clone()),
        ),
        c(
            "duplicate id keys",
            br#"{"jsonrpc":"2.0","id":1,"id":2,"method":"helper.info"}"#,
            err("invalid_request"),
        ),
        c(
            "duplicate method keys",
            br#"{"jsonrpc":"2.0","id":1,"method":"helper.info","method":"profiles.remove"}"#,
            err("invalid_request"),
        ),
        // ---- Methods and params.
        cv(
            "a 500 KB method name",
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{long_method}"}}"#).into_bytes(),
            err_id("method_not_found", "1"),
        ),
        c(
            "unknown method",
            br#"{"jsonrpc":"2.0","id":1,"method":"profiles.steal"}"#,
            err_id("method_not_found", "1"),
        ),
        c(
            "positional params",
            br#"{"jsonrpc":"2.0","id":1,"method":"auth.resolve","params":["openai"]}"#,
            err_id("invalid_params", "1"),
        ),
        c(
            "params as a string",
            br#"{"jsonrpc":"2.0","id":1,"method":"auth.resolve","params":"openai"}"#,
            err_id("invalid_request", "1"),
        ),
        c(
            "params as a number",
            br#"{"jsonrpc":"2.0","id":1,"method":"auth.resolve","params":1}"#,
            err_id("invalid_request", "1"),
        ),
        c(
            "duplicate keys in params",
            &req("auth.resolve", r#"{"provider":"openai","provider":"anthropic"}"#),
            err_id("invalid_params", "7"),
        ),
        c(
            "duplicate secret keys in a profile",
            &put(r#"{"id":"openai:dup","type":"api_key","key":"k-one","key":"k-two"}"#),
            err_id("invalid_params", "7"),
        ),
        c(
            "duplicate keys in a nested metadata map",
            &put(r#"{"id":"openai:dup","type":"api_key","key":"k","metadata":{"a":"1","a":"2"}}"#),
            err_id("invalid_params", "7"),
        ),
        c(
            "duplicate type keys in a profile",
            &put(r#"{"id":"openai:dup","type":"api_key","type":"token","key":"k-one"}"#),
            err_id("invalid_params", "7"),
        ),
        c(
            "a __proto__ param",
            &req("auth.resolve", r#"{"provider":"openai","__proto__":{"admin":true}}"#),
            err_id("invalid_params", "7"),
        ),
        c(
            "provider as a number",
            &req("auth.resolve", r#"{"provider":42}"#),
            err_id("invalid_params", "7"),
        ),
        c(
            "reveal as a string",
            &req("profiles.get", r#"{"profileId":"openai:a","reveal":"true"}"#),
            err_id("invalid_params", "7"),
        ),
        c(
            "expectedRevision 1e400",
            &req(
                "profiles.remove",
                r#"{"profileId":"openai:a","expectedRevision":1e400}"#,
            ),
            err_id("invalid_params", "7"),
        ),
        c(
            "expectedRevision beyond i64",
            &req(
                "profiles.remove",
                r#"{"profileId":"openai:a","expectedRevision":99999999999999999999}"#,
            ),
            err_id("invalid_params", "7"),
        ),
        c(
            "expires as a float",
            &put(r#"{"id":"anthropic:t","type":"token","token":"tok-1","expires":1.5}"#),
            err_id("invalid_profile", "7"),
        ),
        c(
            "expires 1e400",
            &put(r#"{"id":"anthropic:t","type":"token","token":"tok-1","expires":1e400}"#),
            err_id("invalid_params", "7"),
        ),
        c(
            "profile as a string",
            &put(r#""openai:a""#),
            err_id("invalid_profile", "7"),
        ),
        c(
            "metadata value as an object",
            &put(r#"{"id":"openai:m","type":"api_key","key":"k","metadata":{"a":{"b":1}}}"#),
            err_id("invalid_profile", "7"),
        ),
        // ---- Deep nesting: no stack overflow, an answer every time.
        cv(
            "100k unclosed [",
            "[".repeat(100_000).into_bytes(),
            err("parse_error"),
        ),
        cv(
            "100k unclosed {\"a\":",
            "{\"a\":".repeat(100_000).into_bytes(),
            err("parse_error"),
        ),
        cv(
            "a batch holding a 100k-deep array",
            deep_batch.into_bytes(),
            Expect::Batch(vec!["invalid_request"]),
        ),
        cv(
            "a 100k-deep array as the profile",
            put(&deep_params_array),
            err_id("invalid_params", "7"),
        ),
        cv(
            "a 50k-deep object as settings",
            req("settings.set", &format!(r#"{{"settings":{deep_params_object}}}"#)),
            err_id("invalid_params", "7"),
        ),
        cv(
            "a 100k-deep array as the id",
            format!(
                r#"{{"jsonrpc":"2.0","id":{},"method":"helper.info"}}"#,
                nested("[", "]", 100_000, "")
            )
            .into_bytes(),
            err("invalid_request"),
        ),
        // ---- Unicode look-alikes and invisible characters in ids.
        c(
            "Cyrillic o in the provider",
            &put(r#"{"id":"оpenai:a","type":"api_key","key":"k"}"#),
            err_id("invalid_profile", "7"),
        ),
        c(
            "fullwidth provider",
            &put(r#"{"id":"ｏｐｅｎａｉ:a","type":"api_key","key":"k"}"#),
            err_id("invalid_profile", "7"),
        ),
        c(
            "Kelvin sign in the provider",
            &req("auth.resolve", "{\"provider\":\"\u{212a}imi\"}"),
            err_id("invalid_params", "7"),
        ),
        c(
            "dotted capital I in the provider",
            &req("auth.resolve", "{\"provider\":\"\u{130}nflection\"}"),
            err_id("invalid_params", "7"),
        ),
        c(
            "zero-width space in the provider",
            &req("auth.resolve", "{\"provider\":\"open\u{200b}ai\"}"),
            err_id("invalid_params", "7"),
        ),
        c(
            "right-to-left override in a profile name",
            &put("{\"id\":\"openai:a\u{202e}b\",\"type\":\"api_key\",\"key\":\"k\"}"),
            err_id("invalid_profile", "7"),
        ),
        c(
            "Greek alpha in an agent",
            &req("profiles.list", "{\"agent\":\"m\u{3b1}in\"}"),
            err_id("invalid_params", "7"),
        ),
        c(
            "combining accent in a profile name",
            &put("{\"id\":\"openai:e\u{301}\",\"type\":\"api_key\",\"key\":\"k\"}"),
            err_id("invalid_profile", "7"),
        ),
        c(
            "a secret-looking profile id",
            &put(r#"{"id":"openai:sk-abcdef0123456789abcdef0123456789","type":"api_key","key":"k"}"#),
            err_id("invalid_profile", "7"),
        ),
        c(
            "a control character in a secret",
            &put(r#"{"id":"openai:ctl","type":"api_key","key":"ab\u001bcd"}"#),
            err_id("invalid_profile", "7"),
        ),
        c(
            "a secret of only line breaks",
            &put(r#"{"id":"openai:empty","type":"api_key","key":"\r\n\u2028"}"#),
            err_id("invalid_profile", "7"),
        ),
        // ---- Size.
        cv(
            "an order of 20,000 unknown ids",
            req("order.set", &format!(r#"{{"provider":"openai","order":[{big_order}]}}"#)),
            err_id("unknown_profile", "7"),
        ),
        cv(
            "a 2 MiB line",
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"helper.info","params":{{"x":"{}"}}}}"#,
                "x".repeat(2 << 20)
            )
            .into_bytes(),
            err("message_too_large"),
        ),
        // ---- Framing that must stay silent or succeed.
        c("a blank line", b"   \t ", Expect::Silent),
        c(
            "a notification of an unknown method",
            br#"{"jsonrpc":"2.0","method":"profiles.steal"}"#,
            Expect::Silent,
        ),
        c(
            "a notification with bad params",
            br#"{"jsonrpc":"2.0","method":"auth.resolve","params":["x"]}"#,
            Expect::Silent,
        ),
        c(
            "a batch of notifications",
            br#"[{"jsonrpc":"2.0","method":"helper.info"},{"jsonrpc":"2.0","method":"nope"}]"#,
            Expect::Silent,
        ),
        c(
            "a mixed batch",
            br#"[{"jsonrpc":"2.0","id":1,"method":"helper.info"},5,{"jsonrpc":"2.0","method":"helper.info"},{"jsonrpc":"2.0","id":2,"method":"nope"}]"#,
            Expect::Batch(vec!["ok", "invalid_request", "method_not_found"]),
        ),
        c(
            "CRLF line ending",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"helper.info\"}\r",
            Expect::Ok("1".into()),
        ),
        c(
            "an unknown envelope member is ignored",
            br#"{"jsonrpc":"2.0","id":1,"method":"helper.info","extra":{"a":[1,2]}}"#,
            Expect::Ok("1".into()),
        ),
    ]
}

/// Splits `{"jsonrpc":"2.0","id":<raw>,REST` into (raw id, `{REST` as JSON). The id is
/// kept as text because `1e400` is valid JSON that serde_json cannot hold as a number.
fn split_response(line: &str) -> (String, Value) {
    let rest = line
        .strip_prefix(r#"{"jsonrpc":"2.0","id":"#)
        .unwrap_or_else(|| panic!("not a response: {}", shorten(line)));
    // The id is a JSON value: find where it ends with a streaming parse.
    let mut de =
        serde_json::Deserializer::from_str(rest).into_iter::<&serde_json::value::RawValue>();
    let _ = de.next();
    let end = de.byte_offset();
    let (id, tail) = rest.split_at(end);
    let tail = tail.strip_prefix(',').expect("a comma after the id");
    let body: Value = serde_json::from_str(&format!("{{{tail}"))
        .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", shorten(line)));
    (id.to_string(), body)
}

fn shorten(s: &str) -> String {
    s.chars().take(300).collect()
}

fn kind_of(body: &Value) -> String {
    if body.get("result").is_some() {
        assert!(body.get("error").is_none());
        return "ok".into();
    }
    let e = &body["error"];
    let kind = e["data"]["kind"].as_str().expect("data.kind").to_string();
    assert!(e["code"].is_i64(), "code: {e}");
    assert!(e["message"].is_string(), "message: {e}");
    assert!(e["data"]["retryable"].is_boolean(), "retryable: {e}");
    kind
}

#[test]
fn every_hostile_message_gets_its_answer_and_serving_goes_on() {
    let table = cases();
    assert!(table.len() >= 40, "{} cases", table.len());
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    let mut child = Command::new(BIN)
        .env_clear()
        .env("HOME", dir.path())
        .args(common::store_args(std::path::Path::new(&store)))
        .envs(common::store_env(std::path::Path::new(&store)))
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut failures = vec![];
    for (n, case) in table.iter().enumerate() {
        stdin.write_all(&case.line).unwrap();
        stdin.write_all(b"\n").unwrap();
        let sentinel = format!("\"sentinel-{n}\"");
        writeln!(
            stdin,
            r#"{{"jsonrpc":"2.0","id":{sentinel},"method":"helper.info"}}"#
        )
        .unwrap();
        stdin.flush().unwrap();
        let mut got = vec![];
        loop {
            let mut l = String::new();
            let read = stdout.read_line(&mut l).unwrap();
            assert!(
                read > 0,
                "serve ended after case {:?}: {:?}",
                case.name,
                child.wait()
            );
            let l = l.trim_end_matches('\n').to_string();
            if l.starts_with(&format!(r#"{{"jsonrpc":"2.0","id":{sentinel},"result""#)) {
                break;
            }
            got.push(l);
        }
        let verdict = check(&case.expect, &got);
        if let Err(why) = verdict {
            failures.push(format!("{}: {why}", case.name));
        }
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "exit: {:?}", out.status);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "hostile input: {} cases, all answered as expected",
        table.len()
    );
}

fn check(expect: &Expect, got: &[String]) -> Result<(), String> {
    let lines: Vec<String> = got.iter().map(|l| shorten(l)).collect();
    match expect {
        Expect::Silent => {
            if got.is_empty() {
                Ok(())
            } else {
                Err(format!("expected no output, got {lines:?}"))
            }
        }
        _ if got.len() != 1 => Err(format!("expected one line, got {}: {lines:?}", got.len())),
        Expect::Batch(kinds) => {
            let v: Value = serde_json::from_str(&got[0]).map_err(|e| format!("{e}: {lines:?}"))?;
            let arr = v.as_array().ok_or(format!("not an array: {lines:?}"))?;
            let got_kinds: Vec<String> = arr.iter().map(kind_of).collect();
            if got_kinds == *kinds {
                Ok(())
            } else {
                Err(format!("expected {kinds:?}, got {got_kinds:?}"))
            }
        }
        Expect::Err(kind, id) => {
            let (got_id, body) = split_response(&got[0]);
            let k = kind_of(&body);
            if &k == kind && &got_id == id {
                Ok(())
            } else {
                Err(format!(
                    "expected {kind} with id {}, got {k} with id {}: {lines:?}",
                    shorten(id),
                    shorten(&got_id)
                ))
            }
        }
        Expect::Ok(id) => {
            let (got_id, body) = split_response(&got[0]);
            let k = kind_of(&body);
            if k == "ok" && &got_id == id {
                Ok(())
            } else {
                Err(format!(
                    "expected a result with id {}, got {k}: {lines:?}",
                    shorten(id)
                ))
            }
        }
    }
}

/// A tiny xorshift64* generator: seeded, so every run sends the same bytes.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Mutates valid requests (byte flips, truncation, splicing of JSON tokens) and sends 2,000
/// of them with ids to one process: each gets exactly one well-formed response line.
#[test]
fn two_thousand_mutated_requests_each_get_exactly_one_answer() {
    let seeds: Vec<String> = vec![
        json!({"jsonrpc":"2.0","id":1,"method":"profiles.put","params":{"profile":{"id":"openai:a","type":"api_key","key":"k-1"}}}).to_string(),
        json!({"jsonrpc":"2.0","id":1,"method":"auth.resolve","params":{"provider":"openai","explain":true}}).to_string(),
        json!({"jsonrpc":"2.0","id":1,"method":"order.set","params":{"provider":"openai","order":["openai:a"]}}).to_string(),
        json!({"jsonrpc":"2.0","id":1,"method":"auth.report","params":{"profileId":"openai:a","outcome":"rate_limit","model":"m"}}).to_string(),
        json!({"jsonrpc":"2.0","id":1,"method":"settings.set","params":{"settings":{"busyTimeoutMs":3000}}}).to_string(),
    ];
    let tokens: [&[u8]; 14] = [
        b"[", b"]", b"{", b"}", b"\"", b",", b":", b"null", b"1e400", b"-", b"\\u0000", b"\xff",
        b"\"id\":", b"\\ud800",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut input = Vec::new();
    let n = 2000;
    for _ in 0..n {
        let mut line = seeds[rng.below(seeds.len())].clone().into_bytes();
        for _ in 0..=rng.below(4) {
            if line.is_empty() {
                break;
            }
            let at = rng.below(line.len());
            match rng.below(4) {
                0 => line[at] = (rng.next() & 0xff) as u8,
                1 => line.truncate(at),
                2 => {
                    let t = tokens[rng.below(tokens.len())];
                    line.splice(at..at, t.iter().copied());
                }
                _ => {
                    line.remove(at);
                }
            }
        }
        // Keep line framing: a mutation must not add line breaks.
        for b in line.iter_mut() {
            if *b == b'\n' {
                *b = b' ';
            }
        }
        input.extend_from_slice(&line);
        input.push(b'\n');
        // A request with a known id after each one proves the process is still serving.
        input.extend_from_slice(br#"{"jsonrpc":"2.0","id":"alive","method":"helper.info"}"#);
        input.push(b'\n');
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .env_clear()
        .env("HOME", dir.path())
        .args(common::store_args(std::path::Path::new(
            &dir.path().join("store.db"),
        )))
        .envs(common::store_env(std::path::Path::new(
            &dir.path().join("store.db"),
        )))
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("stdout is UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    let alive = lines
        .iter()
        .filter(|l| l.starts_with(r#"{"jsonrpc":"2.0","id":"alive","result""#))
        .count();
    assert_eq!(alive, n, "every liveness probe answered");
    for l in &lines {
        // Every line is one well-formed response or batch response.
        if l.starts_with('[') {
            let v: Value = serde_json::from_str(l).expect("a batch response is JSON");
            for m in v.as_array().unwrap() {
                assert_eq!(m["jsonrpc"], "2.0");
                assert!(m.get("result").is_some() != m.get("error").is_some());
            }
        } else {
            let (_, body) = split_response(l);
            assert!(
                body.get("result").is_some() != body.get("error").is_some(),
                "{l}"
            );
            if let Some(e) = body.get("error") {
                assert!(e["data"]["kind"].is_string(), "{l}");
            }
        }
    }
    // Lines between probes: at most one (a notification or blank line gives none).
    let mut since = 0;
    for l in &lines {
        if l.starts_with(r#"{"jsonrpc":"2.0","id":"alive","result""#) {
            since = 0;
        } else {
            since += 1;
            assert!(since <= 1, "two answers to one line near {}", shorten(l));
        }
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
