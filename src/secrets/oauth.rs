//! The OAuth 2.0 refresh_token grant (RFC 6749 §6) against a token endpoint.
//!
//! The pure part ([`parse_token_response`], [`check_token_url`], [`TokenGrant::expires_at`])
//! turns an HTTP status and body into a grant or a classified error; [`post_refresh`] is
//! the only network call (ureq, rustls, blocking). Nothing here logs or returns a token or
//! a response body: errors carry the HTTP status, the RFC 6749 §5.2 error code when it is
//! one of the registered ones, and a coarse reason.

use std::time::Duration;

use crate::core::secret_value::{normalize_secret_input, Secret};

/// Expiry assumed when a token response has no `expires_in` (seconds): one hour.
pub(crate) const DEFAULT_EXPIRES_IN_S: i64 = 3600;

/// Largest token response read (64 KiB).
const MAX_RESPONSE_BYTES: u64 = 64 * 1024;

/// Whole-request time limit of a token call (connect, send, answer). Bounded so that a
/// process holding the refresh lock cannot hold it for long on a hung endpoint.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenGrant {
    /// The new access token.
    pub access: Secret,
    /// A new refresh token when the server rotates it; `None` keeps the old one.
    pub refresh: Option<Secret>,
    /// Lifetime of the access token in seconds (`expires_in`, else [`DEFAULT_EXPIRES_IN_S`]).
    pub expires_in_s: i64,
}

impl TokenGrant {
    /// When the access token expires, in ms since the epoch, counted from `sent_at` (ms since
    /// the epoch, taken before the request was sent, so the estimate errs early).
    pub(crate) fn expires_at(&self, sent_at: i64) -> i64 {
        sent_at.saturating_add(self.expires_in_s.saturating_mul(1000))
    }
}

/// Why a refresh failed, as far as the endpoint told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EndpointError {
    /// HTTP 400/401 with `error: invalid_grant`: the refresh token is expired, revoked or
    /// already used. A person must log in again.
    InvalidGrant {
        /// The HTTP status.
        status: u16,
    },
    /// Another 4xx (or a redirect): the request or the client configuration is wrong;
    /// retrying the same call will not help.
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The RFC 6749 §5.2 error code, when it is a registered one.
        error: Option<String>,
    },
    /// 5xx, 429, a malformed success response or a network failure: retryable, the stored
    /// credential stays as it is.
    Transient {
        /// The HTTP status, when there was an answer.
        status: Option<u16>,
        /// `server_error`, `rate_limited`, `bad_response` or `network`.
        reason: &'static str,
    },
}

/// The error codes of RFC 6749 §5.2 (the only endpoint strings repeated in our errors).
const RFC6749_ERRORS: [&str; 6] = [
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
];

fn expires_in_of(v: Option<&serde_json::Value>) -> i64 {
    let secs = match v {
        Some(serde_json::Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .unwrap_or(-1),
        Some(serde_json::Value::String(s)) => s.trim().parse::<i64>().unwrap_or(-1),
        _ => -1,
    };
    // Implausible values (none, negative, zero, more than ten years) get the default.
    if secs > 0 && secs <= 10 * 365 * 86_400 {
        secs
    } else {
        DEFAULT_EXPIRES_IN_S
    }
}

/// Classifies a token endpoint answer (RFC 6749 §5.1 / §5.2).
///
/// Errors: [`EndpointError`]; `invalid_grant` only for a 400/401 whose JSON body says so.
pub(crate) fn parse_token_response(status: u16, body: &[u8]) -> Result<TokenGrant, EndpointError> {
    let json: Option<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| match v {
                serde_json::Value::Object(o) => Some(o),
                _ => None,
            });
    match status {
        200..=299 => {
            let bad = EndpointError::Transient {
                status: Some(status),
                reason: "bad_response",
            };
            let o = json.ok_or(bad.clone())?;
            let access = o
                .get("access_token")
                .and_then(|v| v.as_str())
                .and_then(|s| normalize_secret_input(s).ok())
                .ok_or(bad.clone())?;
            let refresh = match o.get("refresh_token") {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) => {
                    Some(normalize_secret_input(s).map_err(|_| bad.clone())?)
                }
                Some(_) => return Err(bad),
            };
            Ok(TokenGrant {
                access,
                refresh,
                expires_in_s: expires_in_of(o.get("expires_in")),
            })
        }
        400 | 401 | 403 => {
            let code = json
                .as_ref()
                .and_then(|o| o.get("error"))
                .and_then(|v| v.as_str())
                .filter(|c| RFC6749_ERRORS.contains(c))
                .map(str::to_string);
            if code.as_deref() == Some("invalid_grant") && status != 403 {
                Err(EndpointError::InvalidGrant { status })
            } else {
                Err(EndpointError::Rejected {
                    status,
                    error: code,
                })
            }
        }
        429 => Err(EndpointError::Transient {
            status: Some(status),
            reason: "rate_limited",
        }),
        500..=599 => Err(EndpointError::Transient {
            status: Some(status),
            reason: "server_error",
        }),
        _ => Err(EndpointError::Rejected {
            status,
            error: None,
        }),
    }
}

/// A token endpoint URL that passed [`parse_token_url`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenUrl {
    /// The URL as the `url` crate normalised it (what is sent).
    pub url: url::Url,
    /// Whether the host is a loopback one (`127.0.0.0/8`, `::1`, `localhost`): such calls
    /// never go through a proxy.
    pub loopback: bool,
}

/// Parses and checks a token endpoint URL with a real URL parser (the `url` crate):
/// `https://`, or `http://` only when the parsed host is a loopback one (a refresh token is
/// never sent in clear over a network). Userinfo (`user:pass@`) is refused whatever the
/// scheme: it is how `http://127.0.0.1:1@evil/` passed a hand-written check.
///
/// Errors: a sentence saying why.
pub(crate) fn parse_token_url(raw: &str) -> Result<TokenUrl, String> {
    let url =
        url::Url::parse(raw.trim()).map_err(|e| format!("the token URL is not a URL ({e})"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("a token URL must not carry a user name or password (`user@host`)".into());
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => return Err("the token URL has no host".into()),
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(
                "a token URL must be https:// (plain http:// only to a loopback address)".into(),
            )
        }
        _ => return Err("a token URL must be an https:// URL".into()),
    }
    // What is sent is parsed again by the HTTP client (the `http` crate): refuse a URL on
    // whose host the two parsers disagree.
    let uri: ureq::http::Uri = url
        .as_str()
        .parse()
        .map_err(|_| "the token URL cannot be sent as it is".to_string())?;
    let ours = url.host_str().unwrap_or_default().to_ascii_lowercase();
    if uri.host().map(str::to_ascii_lowercase).as_deref() != Some(ours.as_str()) {
        return Err("the token URL's host is ambiguous".into());
    }
    Ok(TokenUrl { url, loopback })
}

/// Checks a token endpoint URL ([`parse_token_url`]). Errors: a sentence saying why.
pub(crate) fn check_token_url(url: &str) -> Result<(), String> {
    parse_token_url(url).map(|_| ())
}

/// Whether two token URLs name the same endpoint (compared after parsing, so `HTTPS://A/t`
/// and `https://a/t` are one). A URL that does not parse equals nothing.
pub(crate) fn same_endpoint(a: &str, b: &str) -> bool {
    match (parse_token_url(a), parse_token_url(b)) {
        (Ok(a), Ok(b)) => a.url == b.url,
        _ => false,
    }
}

/// One refresh_token grant request (RFC 6749 §6).
pub(crate) struct RefreshRequest<'a> {
    /// The token endpoint.
    pub token_url: &'a str,
    /// The refresh token sent.
    pub refresh_token: &'a Secret,
    /// `client_id`, when known.
    pub client_id: Option<&'a str>,
    /// `client_secret` (sent in the body, RFC 6749 §2.3.1), for confidential clients.
    pub client_secret: Option<&'a Secret>,
    /// `scope`, when the provider asks for one.
    pub scope: Option<&'a str>,
}

/// POSTs the form-encoded refresh_token grant and classifies the answer. Redirects are
/// not followed (the refresh token goes to the configured endpoint only); the whole call
/// is bounded by [`REQUEST_TIMEOUT`].
///
/// Errors: [`EndpointError`] (network failures are `Transient { reason: "network" }`).
pub(crate) fn post_refresh(req: &RefreshRequest<'_>) -> Result<TokenGrant, EndpointError> {
    let endpoint = parse_token_url(req.token_url).map_err(|_| EndpointError::Rejected {
        status: 0,
        error: None,
    })?;
    // A loopback endpoint is reached directly: `HTTPS_PROXY`/`ALL_PROXY` must not route a
    // refresh token for 127.0.0.1 through another host. Others honour the proxy variables.
    let proxy = if endpoint.loopback {
        None
    } else {
        ureq::Proxy::try_from_env()
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .proxy(proxy)
        .timeout_global(Some(REQUEST_TIMEOUT))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("modelauth/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut form: Vec<(&str, &str)> = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", req.refresh_token.expose()),
    ];
    if let Some(c) = req.client_id {
        form.push(("client_id", c));
    }
    if let Some(s) = req.client_secret {
        form.push(("client_secret", s.expose()));
    }
    if let Some(s) = req.scope {
        form.push(("scope", s));
    }
    let network = EndpointError::Transient {
        status: None,
        reason: "network",
    };
    let mut resp = agent
        .post(endpoint.url.as_str())
        .header("Accept", "application/json")
        .send_form(form)
        .map_err(|_| network.clone())?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_vec()
        .map_err(|_| network)?;
    parse_token_response(status, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_success_with_rotation() {
        let g = parse_token_response(
            200,
            br#"{"access_token":"at-2","refresh_token":"rt-2","expires_in":3600,"token_type":"Bearer"}"#,
        )
        .unwrap();
        assert_eq!(g.access.expose(), "at-2");
        assert_eq!(g.refresh.unwrap().expose(), "rt-2");
        assert_eq!(g.expires_in_s, 3600);
    }

    #[test]
    fn a_success_without_rotation_or_expiry() {
        let g = parse_token_response(200, br#"{"access_token":"at"}"#).unwrap();
        assert!(g.refresh.is_none());
        assert_eq!(g.expires_in_s, DEFAULT_EXPIRES_IN_S);
        let g = parse_token_response(200, br#"{"access_token":"at","expires_in":"120"}"#).unwrap();
        assert_eq!(g.expires_in_s, 120);
        let g = parse_token_response(200, br#"{"access_token":"at","expires_in":-5}"#).unwrap();
        assert_eq!(g.expires_in_s, DEFAULT_EXPIRES_IN_S);
    }

    #[test]
    fn expiry_arithmetic_in_ms() {
        let g = TokenGrant {
            access: Secret::new("a"),
            refresh: None,
            expires_in_s: 60,
        };
        assert_eq!(g.expires_at(1_700_000_000_000), 1_700_000_060_000);
    }

    #[test]
    fn malformed_successes_are_transient() {
        for body in [
            &b"nope"[..],
            br#"{"token":"x"}"#,
            br#"{"access_token":""}"#,
            br#"[1]"#,
        ] {
            assert_eq!(
                parse_token_response(200, body).unwrap_err(),
                EndpointError::Transient {
                    status: Some(200),
                    reason: "bad_response"
                }
            );
        }
    }

    #[test]
    fn invalid_grant_and_other_rejections() {
        assert_eq!(
            parse_token_response(400, br#"{"error":"invalid_grant","error_description":"x"}"#)
                .unwrap_err(),
            EndpointError::InvalidGrant { status: 400 }
        );
        assert_eq!(
            parse_token_response(401, br#"{"error":"invalid_grant"}"#).unwrap_err(),
            EndpointError::InvalidGrant { status: 401 }
        );
        assert_eq!(
            parse_token_response(401, br#"{"error":"invalid_client"}"#).unwrap_err(),
            EndpointError::Rejected {
                status: 401,
                error: Some("invalid_client".into())
            }
        );
        // An unregistered error string is never repeated.
        assert_eq!(
            parse_token_response(400, br#"{"error":"sk-leaked"}"#).unwrap_err(),
            EndpointError::Rejected {
                status: 400,
                error: None
            }
        );
        assert!(matches!(
            parse_token_response(302, b"").unwrap_err(),
            EndpointError::Rejected { status: 302, .. }
        ));
    }

    #[test]
    fn server_errors_are_transient() {
        assert!(matches!(
            parse_token_response(500, b"oops").unwrap_err(),
            EndpointError::Transient {
                reason: "server_error",
                ..
            }
        ));
        assert!(matches!(
            parse_token_response(429, b"").unwrap_err(),
            EndpointError::Transient {
                reason: "rate_limited",
                ..
            }
        ));
    }

    #[test]
    fn token_urls() {
        assert!(check_token_url("https://auth.example.com/oauth/token").is_ok());
        assert!(check_token_url("http://127.0.0.1:8080/token").is_ok());
        assert!(check_token_url("http://localhost/token").is_ok());
        assert!(check_token_url("http://[::1]:9/t").is_ok());
        assert!(check_token_url("http://auth.example.com/token").is_err());
        assert!(check_token_url("http://127.0.0.1.evil.com/token").is_err());
        assert!(check_token_url("ftp://x").is_err());
        assert!(check_token_url("https://").is_err());
        assert!(parse_token_url("http://LOCALHOST:8/t").unwrap().loopback);
        assert!(parse_token_url("http://127.9.9.9/t").unwrap().loopback);
        assert!(
            !parse_token_url("https://auth.example.com/t")
                .unwrap()
                .loopback
        );
    }

    /// Before: these passed the hand-written check as "loopback" and the refresh token and
    /// client secret went in clear to HOST.
    #[test]
    fn userinfo_and_lookalike_loopback_urls_are_refused() {
        for u in [
            "http://127.0.0.1:1@evil.example/t",
            "http://[::1]@evil.example/t",
            "http://localhost:x@evil.example/t",
            "https://user:pw@auth.example.com/t",
            "https://user@auth.example.com/t",
            "http://localhost.evil.example/t",
            "http://127.0.0.1%2f@evil.example/t",
            "http://0x7f.1@evil.example/t",
            "http:/\\evil.example/t",
        ] {
            assert!(check_token_url(u).is_err(), "{u}");
        }
    }

    #[test]
    fn same_endpoint_compares_parsed_urls() {
        assert!(same_endpoint(
            "HTTPS://Auth.Example.com/t",
            "https://auth.example.com/t"
        ));
        assert!(!same_endpoint(
            "https://auth.example.com/t",
            "https://auth.example.com/u"
        ));
        assert!(!same_endpoint("nope", "nope"));
    }
}
