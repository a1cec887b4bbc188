//! The password never goes in cleartext to a server that was not verified (PROTOCOL §11
//! *(r3)*, issue 20).
//!
//! With `sslmode=disable`, `prefer` or `require` nothing proves who the server is: an
//! impostor on the path (or on a port the real server left free) that answers
//! `AuthenticationCleartextPassword` would get the store password from rust-postgres,
//! which sends it to whoever asks. TCP connections in those modes are therefore made here:
//! the socket, and the TLS stream above it when TLS is negotiated, are wrapped in
//! [`Guarded`], which reads the server's startup messages as they arrive and fails the
//! read that would deliver a cleartext password request — before rust-postgres can answer
//! it. SCRAM (which never reveals the password) and MD5 go through, as does trust; after
//! `AuthenticationOk` the guard steps aside. `verify-ca`/`verify-full` connections are
//! not watched: the server proved its certificate. Unix sockets are not watched either
//! (no TLS there, and the socket directory's owner is the server).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use postgres::config::Host;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use crate::core::error::{ErrorKind, RpcError};
use crate::store::location::{PgLocation, SslMode, PG_CONNECT_TIMEOUT};
use crate::store::pg_client::{Client, ConnectError, Driver};

/// `AuthenticationCleartextPassword`'s code in an `R` message.
const AUTH_CLEARTEXT: u32 = 3;
/// `AuthenticationOk`'s code: the password phase is over.
const AUTH_OK: u32 = 0;

/// Where the reader of the server's bytes is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The one-byte answer to an SSLRequest: `S` (TLS follows, watched one layer up) or `N`.
    SslReply,
    /// Message headers (`tag`, length, and for `R` the 4-byte code), bodies skipped.
    Messages,
    /// Nothing more to watch.
    Done,
}

/// Reads the server's side of a startup exchange, byte by byte as it arrives. Pure.
#[derive(Debug, Clone)]
pub(crate) struct Parser {
    state: State,
    head: [u8; 9],
    have: usize,
    skip: usize,
}

impl Parser {
    /// A parser at the start of a connection: `ssl_reply` when the client begins with an
    /// SSLRequest (every mode but `disable`).
    pub(crate) fn new(ssl_reply: bool) -> Self {
        Parser {
            state: if ssl_reply {
                State::SslReply
            } else {
                State::Messages
            },
            head: [0; 9],
            have: 0,
            skip: 0,
        }
    }

    /// A parser that watches nothing (a verified channel).
    fn done() -> Self {
        Parser {
            state: State::Done,
            ..Parser::new(false)
        }
    }

    /// Feeds the next bytes from the server. `Err(())` when they complete a cleartext
    /// password request.
    pub(crate) fn feed(&mut self, mut b: &[u8]) -> Result<(), ()> {
        while !b.is_empty() {
            match self.state {
                State::Done => return Ok(()),
                State::SslReply => {
                    self.state = if b[0] == b'N' {
                        State::Messages
                    } else {
                        State::Done
                    };
                    b = &b[1..];
                }
                State::Messages if self.skip > 0 => {
                    let n = self.skip.min(b.len());
                    self.skip -= n;
                    b = &b[n..];
                }
                State::Messages => {
                    let need = if self.have >= 5 && self.head[0] == b'R' {
                        9
                    } else {
                        5
                    };
                    let n = (need - self.have).min(b.len());
                    self.head[self.have..self.have + n].copy_from_slice(&b[..n]);
                    self.have += n;
                    b = &b[n..];
                    if self.have == need {
                        self.header()?;
                    }
                }
            }
        }
        Ok(())
    }

    /// A complete header (5 bytes, or 9 for `R`) was read.
    fn header(&mut self) -> Result<(), ()> {
        let len = u32::from_be_bytes(self.head[1..5].try_into().expect("4 bytes")) as usize;
        let is_auth = self.head[0] == b'R';
        if len < 4 || (is_auth && len < 8) {
            // Not the protocol: rust-postgres will fail on it by itself.
            self.state = State::Done;
            return Ok(());
        }
        if is_auth && self.have == 5 {
            return Ok(()); // the code comes next
        }
        if is_auth {
            match u32::from_be_bytes(self.head[5..9].try_into().expect("4 bytes")) {
                AUTH_CLEARTEXT => return Err(()),
                AUTH_OK => self.state = State::Done,
                _ => {}
            }
        }
        self.skip = len - (self.have - 1);
        self.have = 0;
        Ok(())
    }
}

/// A stream whose incoming bytes go through a [`Parser`]: the read that completes a
/// cleartext password request fails (and sets `refused`) instead of delivering it.
pub(crate) struct Guarded<S> {
    inner: S,
    parser: Parser,
    refused: Arc<AtomicBool>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if this.parser.feed(&buf.filled()[before..]).is_err() {
            this.refused.store(true, Ordering::SeqCst);
            buf.set_filled(before);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the server asked for the password in cleartext over an unverified connection",
            )));
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: TlsStream + Unpin> TlsStream for Guarded<S> {
    fn channel_binding(&self) -> ChannelBinding {
        self.inner.channel_binding()
    }
}

/// A TLS connector whose stream is [`Guarded`] (watching when `watch` is true).
struct GuardConnect<T> {
    inner: T,
    watch: bool,
    refused: Arc<AtomicBool>,
}

impl<S, T> TlsConnect<S> for GuardConnect<T>
where
    T: TlsConnect<S>,
    T::Future: Send + 'static,
{
    type Stream = Guarded<T::Stream>;
    type Error = T::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Guarded<T::Stream>, T::Error>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let fut = self.inner.connect(stream);
        let parser = if self.watch {
            Parser::new(false)
        } else {
            Parser::done()
        };
        let refused = self.refused;
        Box::pin(async move {
            Ok(Guarded {
                inner: fut.await?,
                parser,
                refused,
            })
        })
    }
}

/// Whether `mode` leaves the server unverified, so a cleartext password request is refused.
fn unverified(mode: SslMode) -> bool {
    matches!(mode, SslMode::Disable | SslMode::Prefer | SslMode::Require)
}

/// Connects over TCP to the first of `config`'s TCP hosts that answers (and, with
/// `target_session_attrs=read-write`, accepts writes), as rust-postgres's own connect
/// does; Unix socket hosts are left to [`Client::connect`]. TLS per `loc.ssl_mode`, with
/// the guard of this module on unverified channels. `config` carries keepalive and
/// user-timeout settings, applied to the socket here, and `hostaddr`s. All hosts share
/// the connect deadline.
///
/// Errors: as `map_pg`, and `store_auth` with `data.reason: "cleartext_refused"` when the
/// server asked for the password in cleartext over an unverified channel (it was not sent).
pub(super) fn connect_tcp(
    loc: &PgLocation,
    config: &tokio_postgres::Config,
    round_trip: Duration,
) -> Result<Client, RpcError> {
    let refused = Arc::new(AtomicBool::new(false));
    let mut make = match loc.ssl_mode {
        SslMode::Disable => None,
        _ => Some(super::tls::connector(loc)?),
    };
    let mut last = ConnectError::Io(io::Error::new(
        io::ErrorKind::InvalidInput,
        "no TCP host in the store URL",
    ));
    // One deadline for every host together, as before (PROTOCOL §2.3: an answer within
    // busyTimeoutMs plus the 5 s connect timeout).
    let deadline = std::time::Instant::now() + PG_CONNECT_TIMEOUT;
    for target in tcp_hosts(config) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        let fut = connect_one(loc, config, &target, make.as_mut(), &refused);
        match Client::connect_with(fut, left, round_trip) {
            Ok(mut c) => match refuses_writes(config, &mut c) {
                Ok(false) => return Ok(c),
                Ok(true) => {
                    last = ConnectError::Io(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        "database does not allow writes (target_session_attrs=read-write)",
                    ))
                }
                Err(e) => last = ConnectError::Pg(e),
            },
            Err(_) if refused.load(Ordering::SeqCst) => return Err(cleartext_refused(loc)),
            Err(e) => last = e,
        }
    }
    Err(match last {
        ConnectError::Pg(e) => super::map_pg(e, loc),
        ConnectError::Io(e) => super::errors::classify_io(&e, loc),
    })
}

/// One TCP host to try: its name (for TLS and, without `hostaddr`, for the lookup), the
/// address given by `hostaddr`, and the port.
struct Target {
    host: String,
    addr: Option<std::net::IpAddr>,
    port: u16,
}

/// Opens the socket to `t`, wraps it in the guard, and runs rust-postgres's startup over
/// it (TLS per `config`'s `sslmode`, the guard above TLS too on unverified channels).
async fn connect_one(
    loc: &PgLocation,
    config: &tokio_postgres::Config,
    t: &Target,
    make: Option<&mut tokio_postgres_rustls::MakeRustlsConnect>,
    refused: &Arc<AtomicBool>,
) -> Result<(tokio_postgres::Client, Driver), ConnectError> {
    let tcp = open_socket(t, config).await.map_err(ConnectError::Io)?;
    let watch = unverified(loc.ssl_mode);
    let raw = Guarded {
        inner: tcp,
        parser: if watch {
            Parser::new(loc.ssl_mode != SslMode::Disable)
        } else {
            Parser::done()
        },
        refused: refused.clone(),
    };
    let r = match make {
        None => config
            .connect_raw(raw, tokio_postgres::NoTls)
            .await
            .map(|(c, conn)| (c, Box::pin(conn) as Driver)),
        Some(m) => {
            let tls = GuardConnect {
                inner: MakeTlsConnect::<Guarded<TcpStream>>::make_tls_connect(m, &t.host)
                    .map_err(|e| ConnectError::Io(io::Error::other(e)))?,
                watch,
                refused: refused.clone(),
            };
            config
                .connect_raw(raw, tls)
                .await
                .map(|(c, conn)| (c, Box::pin(conn) as Driver))
        }
    };
    r.map_err(ConnectError::Pg)
}

/// With `target_session_attrs=read-write`: whether the server refuses writes (a standby),
/// so the next host is tried, as rust-postgres does.
fn refuses_writes(
    config: &tokio_postgres::Config,
    c: &mut Client,
) -> Result<bool, postgres::Error> {
    if config.get_target_session_attrs() != tokio_postgres::config::TargetSessionAttrs::ReadWrite {
        return Ok(false);
    }
    let rows = c.query_typed("SHOW transaction_read_only", &[])?;
    Ok(rows
        .first()
        .and_then(|r| r.try_get::<_, String>(0).ok())
        .is_some_and(|v| v == "on"))
}

/// The TCP hosts of `config` with their `hostaddr`s and ports (one port for all, or one
/// per host; 5432).
fn tcp_hosts(config: &tokio_postgres::Config) -> Vec<Target> {
    let ports = config.get_ports();
    let addrs = config.get_hostaddrs();
    config
        .get_hosts()
        .iter()
        .enumerate()
        .filter_map(|(i, h)| match h {
            Host::Tcp(h) => {
                let port = match ports.len() {
                    0 => 5432,
                    1 => ports[0],
                    _ => ports.get(i).copied().unwrap_or(5432),
                };
                Some(Target {
                    host: h.clone(),
                    addr: addrs.get(i).copied(),
                    port,
                })
            }
            Host::Unix(_) => None,
        })
        .collect()
}

/// A TCP connection to `t` with `TCP_NODELAY`, keepalives and the user timeout of
/// `config`, as rust-postgres sets them.
async fn open_socket(t: &Target, config: &tokio_postgres::Config) -> io::Result<TcpStream> {
    let s = match t.addr {
        Some(ip) => TcpStream::connect((ip, t.port)).await?,
        None => TcpStream::connect((t.host.as_str(), t.port)).await?,
    };
    s.set_nodelay(true)?;
    let sock = socket2::SockRef::from(&s);
    if config.get_keepalives() {
        sock.set_tcp_keepalive(
            &socket2::TcpKeepalive::new().with_time(config.get_keepalives_idle()),
        )?;
    }
    if let Some(t) = config.get_tcp_user_timeout() {
        sock.set_tcp_user_timeout(Some(*t))?;
    }
    Ok(s)
}

/// `store_auth`: the server asked for a cleartext password over an unverified channel.
fn cleartext_refused(loc: &PgLocation) -> RpcError {
    RpcError::new(
        ErrorKind::StoreAuth,
        format!(
            "the PostgreSQL server of {} asked for the password in cleartext over a connection whose server is not verified (sslmode={}); the password was not sent",
            loc.display,
            super::errors::ssl_mode_word(loc.ssl_mode)
        ),
    )
    .with("reason", "cleartext_refused")
    .with_hint("an impostor asks for cleartext: use sslmode=verify-full (with sslrootcert=/path/ca.pem for a private CA) or a Unix socket, or have the server use scram-sha-256 (channel_binding=require insists on it)")
    .retryable(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn feed_split(p: &mut Parser, bytes: &[u8], chunk: usize) -> Result<(), ()> {
        bytes.chunks(chunk).try_for_each(|c| p.feed(c))
    }

    #[test]
    fn a_cleartext_request_is_caught_however_the_bytes_arrive() {
        let mut stream = b"N".to_vec();
        stream.extend(msg(b'E', b"SFATAL\0Mnoise\0\0"));
        stream.extend(msg(b'R', &3u32.to_be_bytes()));
        for chunk in [1, 2, 3, 5, 7, 100] {
            assert!(feed_split(&mut Parser::new(true), &stream, chunk).is_err());
            assert!(feed_split(&mut Parser::new(false), &stream[1..], chunk).is_err());
        }
    }

    #[test]
    fn scram_md5_and_trust_pass_and_the_guard_steps_aside_after_ok() {
        let mut sasl = msg(b'R', &[0, 0, 0, 10, b'S', b'C', b'R', b'A', b'M', 0, 0]);
        sasl.extend(msg(b'R', &[0, 0, 0, 11, 1, 2, 3]));
        sasl.extend(msg(b'R', &[0, 0, 0, 5, 9, 9, 9, 9]));
        sasl.extend(msg(b'R', &0u32.to_be_bytes()));
        // After AuthenticationOk, bytes that would look like a request are row data.
        sasl.extend(msg(b'R', &3u32.to_be_bytes()));
        for chunk in [1, 4, 64] {
            assert!(feed_split(&mut Parser::new(false), &sasl, chunk).is_ok());
        }
        // TLS accepted: the raw stream is not parsed (the TLS layer is).
        let mut tls = b"S".to_vec();
        tls.extend(msg(b'R', &3u32.to_be_bytes()));
        assert!(Parser::new(true).feed(&tls).is_ok());
    }
}
