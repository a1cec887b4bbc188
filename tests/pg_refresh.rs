//! Issue 20: a PostgreSQL connection lost between the token endpoint's answer and the
//! commit of the rotated refresh token must not lose it. The fake token endpoint below,
//! before it answers, ends the helper's idle store connection (`pg_terminate_backend`), as
//! a server restart or a proxy cut would; the helper reconnects and commits. Before, the
//! rotated token was dropped and the profile ended in `needs_reauth`. Needs
//! `MODELAUTH_TEST_PG`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

use serde_json::json;

fn admin() -> postgres::Client {
    common::pg_client()
}

/// A token endpoint that rotates once and, before answering, ends every idle `modelauth`
/// session (the helper's store connection; the refresh lock's is idle in a transaction).
fn token_server() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/oauth/token", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let t = line.trim_end();
                if t.is_empty() {
                    break;
                }
                if let Some((k, v)) = t.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap();
                    }
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let mut a = admin();
            let ended: i64 = a
                .query_one(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                      WHERE application_name = 'modelauth' AND state = 'idle'
                        AND pid <> pg_backend_pid()) t",
                    &[],
                )
                .unwrap()
                .get(0);
            assert!(ended >= 1, "no idle helper connection to end");
            let resp =
                json!({"access_token": "ACCESS-1-rotated", "refresh_token": "REFRESH-1-rotated",
                              "token_type": "Bearer", "expires_in": 3600})
                .to_string();
            let mut w = conn;
            let _ = write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{resp}",
                resp.len()
            );
        }
    });
    url
}

#[test]
fn a_connection_lost_before_the_commit_keeps_the_rotated_refresh_token() {
    if !common::on_pg() {
        eprintln!("SKIPPED: needs MODELAUTH_TEST_PG");
        return;
    }
    let env = common::Env::new();
    let url = token_server();
    let mut srv = env.serve();
    srv.ok(
        "providers.put",
        json!({"id": "acme", "oauth": {"tokenUrl": url, "clientId": "client-1"}}),
    );
    srv.ok(
        "profiles.put",
        json!({"profile": {"id": "acme:work", "type": "oauth", "access": "ACCESS-0-old",
                           "refresh": "REFRESH-0-old", "expires": common::now_ms() + 3_600_000}}),
    );
    let r = srv.ok(
        "auth.refresh",
        json!({"profileId": "acme:work", "force": true}),
    );
    assert_eq!(r["refreshed"], true, "{r}");
    let r = srv.ok(
        "profiles.get",
        json!({"profileId": "acme:work", "reveal": true}),
    );
    assert_eq!(r["profile"]["refresh"], "REFRESH-1-rotated", "{r}");
    let st = srv.ok("auth.status", json!({"provider": "acme"}));
    assert!(!st.to_string().contains("needs_reauth"), "{st}");
}
