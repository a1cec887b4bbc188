//! A blocking PostgreSQL client in which every round trip has a deadline (PROTOCOL §11
//! *(r3)*, §2.3).
//!
//! rust-postgres's blocking `Client` waits for the server without any bound: a server (or a
//! half-dead proxy) that accepts the connection and then says nothing hangs the helper for
//! ever — TCP keepalives and `TCP_USER_TIMEOUT` do not fire while the peer's kernel keeps
//! acknowledging. This wraps tokio-postgres on a current-thread runtime of its own, as the
//! blocking crate does, and bounds each call with `tokio::time::timeout`:
//!
//! - connecting (TCP, TLS, startup and authentication together) by the connect deadline;
//! - each statement by the round-trip deadline (the server-side `statement_timeout` plus a
//!   margin, so the server normally answers first with its own error).
//!
//! When a deadline passes, the connection is dropped (the server sees it close and rolls
//! back what was open) and the call fails with rust-postgres's own time-out error, which
//! carries no SQLSTATE and so maps to `store_unavailable` (retryable).

use std::future::Future;
use std::time::Duration;

use postgres::types::{ToSql, Type};
use postgres::{Error, Row};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::Socket;

/// One statement of a pipeline: SQL text and its typed parameters.
pub(crate) type Statement<'a> = (&'a str, &'a [(&'a (dyn ToSql + Sync), Type)]);

/// One item of [`Client::pipeline`].
pub(crate) enum Pipelined<'a> {
    /// Statements in the simple protocol (`BEGIN …; SET LOCAL …`).
    Batch(&'a str),
    /// One unnamed statement with typed parameters.
    Query(&'a str, &'a [(&'a (dyn ToSql + Sync), Type)]),
}

/// A connection whose every call is bounded in time.
pub(crate) struct Client {
    rt: Runtime,
    inner: tokio_postgres::Client,
    /// The task driving the connection (polled while a call runs on `rt`).
    conn: JoinHandle<()>,
    round_trip: Duration,
    /// A deadline passed: the connection is abandoned.
    dead: bool,
}

/// A connection's driver: the future that moves its bytes (rust-postgres's `Connection`).
pub(crate) type Driver = std::pin::Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;

/// Why [`Client::connect_with`] failed.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// rust-postgres's error (the time-out one when the deadline passed).
    Pg(Error),
    /// The socket could not be opened (name lookup, refused, unreachable).
    Io(std::io::Error),
}

/// The time-out error (rust-postgres's: no SQLSTATE, "timeout waiting for server").
fn timed_out() -> Error {
    // tokio-postgres keeps the constructor public for the blocking crate's `is_valid`.
    Error::__private_api_timeout()
}

impl Client {
    /// Connects with `config` over `tls`; TCP connect, TLS handshake, startup and
    /// authentication together must finish within `connect_deadline`. Each later call
    /// must finish within `round_trip`.
    ///
    /// Errors: rust-postgres's (the time-out one when a deadline passed).
    pub(crate) fn connect<T>(
        config: &tokio_postgres::Config,
        tls: T,
        connect_deadline: Duration,
        round_trip: Duration,
    ) -> Result<Client, Error>
    where
        T: MakeTlsConnect<Socket> + 'static + Send,
        T::TlsConnect: Send,
        T::Stream: Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|_| timed_out())?;
        let (inner, connection) = rt
            .block_on(async { tokio::time::timeout(connect_deadline, config.connect(tls)).await })
            .map_err(|_| timed_out())??;
        Ok(Client::from_parts(rt, inner, connection, round_trip))
    }

    /// Runs `connecting` (which opens a socket itself and hands it to rust-postgres's
    /// `connect_raw`) within `connect_deadline`. Each later call must finish within
    /// `round_trip`.
    ///
    /// Errors: `connecting`'s, or the time-out one when the deadline passed.
    pub(crate) fn connect_with(
        connecting: impl Future<Output = Result<(tokio_postgres::Client, Driver), ConnectError>>,
        connect_deadline: Duration,
        round_trip: Duration,
    ) -> Result<Client, ConnectError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ConnectError::Io)?;
        let (inner, connection) = rt
            .block_on(async { tokio::time::timeout(connect_deadline, connecting).await })
            .map_err(|_| ConnectError::Pg(timed_out()))??;
        Ok(Client::from_parts(rt, inner, connection, round_trip))
    }

    /// A connected client: `connection` (rust-postgres's driver of the socket) runs on
    /// `rt` for as long as the client lives.
    fn from_parts<F>(
        rt: tokio::runtime::Runtime,
        inner: tokio_postgres::Client,
        connection: F,
        round_trip: Duration,
    ) -> Client
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let conn = rt.spawn(async move {
            let _ = connection.await;
        });
        Client {
            rt,
            inner,
            conn,
            round_trip,
            dead: false,
        }
    }

    /// Whether the connection is closed or was abandoned after a deadline.
    pub(crate) fn is_closed(&self) -> bool {
        self.dead || self.inner.is_closed()
    }

    /// Sets the deadline of each later call.
    pub(crate) fn set_round_trip(&mut self, d: Duration) {
        self.round_trip = d;
    }

    fn run<R>(
        rt: &Runtime,
        d: Duration,
        dead: &mut bool,
        conn: &JoinHandle<()>,
        f: impl Future<Output = Result<R, Error>>,
    ) -> Result<R, Error> {
        if *dead {
            return Err(timed_out());
        }
        match rt.block_on(async { tokio::time::timeout(d, f).await }) {
            Ok(r) => r,
            Err(_) => {
                *dead = true;
                conn.abort();
                Err(timed_out())
            }
        }
    }

    /// Runs `sql` (one or more statements, simple protocol).
    pub(crate) fn batch_execute(&mut self, sql: &str) -> Result<(), Error> {
        let c = &self.inner;
        Self::run(
            &self.rt,
            self.round_trip,
            &mut self.dead,
            &self.conn,
            c.batch_execute(sql),
        )
    }

    /// One unnamed statement with typed parameters; every row.
    pub(crate) fn query_typed(
        &mut self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>, Error> {
        let c = &self.inner;
        Self::run(
            &self.rt,
            self.round_trip,
            &mut self.dead,
            &self.conn,
            c.query_typed(sql, params),
        )
    }

    /// [`Client::query_typed`], at most one row.
    pub(crate) fn query_typed_opt(
        &mut self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Option<Row>, Error> {
        Ok(self.query_typed(sql, params)?.into_iter().next())
    }

    /// [`Client::query_typed`], exactly one row (else rust-postgres's row-count error).
    pub(crate) fn query_typed_one(
        &mut self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Row, Error> {
        let c = &self.inner;
        Self::run(
            &self.rt,
            self.round_trip,
            &mut self.dead,
            &self.conn,
            c.query_typed_one(sql, params),
        )
    }

    /// Simple-protocol batches and unnamed statements, in the order given, sent together
    /// and answered in one round trip (rust-postgres pipelines the requests of futures
    /// polled together, in the order they are first polled); each item's own result in
    /// order (a batch's: no rows). `Err` only when the round trip itself
    /// failed (its deadline passed).
    pub(crate) fn pipeline(
        &mut self,
        items: &[Pipelined<'_>],
    ) -> Result<Vec<Result<Vec<Row>, Error>>, Error> {
        type Answer<'f> = std::pin::Pin<Box<dyn Future<Output = Result<Vec<Row>, Error>> + 'f>>;
        let c = &self.inner;
        let all = join_all(items.iter().map(|item| -> Answer<'_> {
            match *item {
                Pipelined::Batch(sql) => {
                    Box::pin(async move { c.batch_execute(sql).await.map(|()| Vec::new()) })
                }
                Pipelined::Query(sql, params) => Box::pin(c.query_typed(sql, params)),
            }
        }));
        Self::run(
            &self.rt,
            self.round_trip,
            &mut self.dead,
            &self.conn,
            async { Ok(all.await) },
        )
    }

    /// Unnamed statements sent together and answered in one round trip (see
    /// [`Client::pipeline`]); each statement's own result, in order. Each
    /// ends in its own Sync, so outside a transaction one failing does not undo another.
    /// `Err` only when the round trip itself failed (its deadline passed).
    pub(crate) fn query_typed_pipelined(
        &mut self,
        stmts: &[Statement<'_>],
    ) -> Result<Vec<Result<Vec<Row>, Error>>, Error> {
        let items: Vec<Pipelined<'_>> = stmts
            .iter()
            .map(|(sql, params)| Pipelined::Query(sql, params))
            .collect();
        self.pipeline(&items)
    }

    /// One unnamed statement with typed parameters; the number of rows it changed.
    pub(crate) fn execute_typed(
        &mut self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<u64, Error> {
        let c = &self.inner;
        Self::run(
            &self.rt,
            self.round_trip,
            &mut self.dead,
            &self.conn,
            c.execute_typed(sql, params),
        )
    }
}

/// Polls every future of `fs` until all are ready; their outputs in order. Written here
/// rather than taken from `futures::future::join_all` because a pipeline's correctness
/// rests on the first polls happening in order (a `BEGIN` must leave before the statements
/// of its transaction), which this guarantees and that crate does not document.
async fn join_all<F: Future>(fs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    use std::task::Poll;
    let mut fs: Vec<std::pin::Pin<Box<F>>> = fs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = fs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in fs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *o = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|o| o.expect("every future is ready"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::time::Instant;

    /// A fake server on 127.0.0.1 that completes a trust-auth startup, then never answers.
    fn silent_after_startup() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut held = vec![];
            for mut s in l.incoming().flatten() {
                let mut len = [0u8; 4];
                s.read_exact(&mut len).unwrap();
                let mut body = vec![0u8; u32::from_be_bytes(len) as usize - 4];
                s.read_exact(&mut body).unwrap();
                s.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 0]).unwrap();
                s.write_all(&[b'Z', 0, 0, 0, 5, b'I']).unwrap();
                held.push(s);
            }
        });
        port
    }

    #[test]
    fn a_statement_the_server_never_answers_times_out_and_the_client_is_closed() {
        let port = silent_after_startup();
        let mut config = tokio_postgres::Config::new();
        config.host("127.0.0.1").port(port).user("fake").dbname("x");
        let mut c = Client::connect(
            &config,
            tokio_postgres::NoTls,
            Duration::from_secs(5),
            Duration::from_millis(300),
        )
        .unwrap();
        let t = Instant::now();
        let e = c.batch_execute("SELECT 1").unwrap_err();
        assert!(e.code().is_none(), "no SQLSTATE: maps to store_unavailable");
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(c.is_closed());
        // Later calls fail at once instead of waiting again.
        assert!(c.query_typed("SELECT 1", &[]).is_err());
    }
}
