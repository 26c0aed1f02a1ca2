//! The API's listener: a cap on open connections, an idle timeout, and a
//! bound on what each connection buffers.
//!
//! Every connection holds a descriptor, and so do the jobs: a thousand
//! clients that connect and say nothing must not leave the scheduler unable
//! to open a pipe. At most [`MAX_CONNECTIONS`] are served at once (more
//! wait in the kernel's backlog), and one silent both ways for
//! [`IDLE_TIMEOUT`] while no request is being answered is closed (a
//! request that runs a job for an hour keeps its connection). A connection buffers at most [`BUFFER`]
//! of its answer before it waits for the client to read: a hundred slow
//! followers of a loud run hold a few megabytes between them.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, Sleep};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 160;

/// Streams (live events, followed output) served at once: the other
/// connections stay for the CLI and ordinary requests.
pub const MAX_STREAMS: usize = MAX_CONNECTIONS - 32;

/// A connection that neither sends nor is sent anything this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a connection holds of a request or an answer, at most (and the
/// longest request head it takes).
pub const BUFFER: usize = 64 * 1024;

/// A TCP listener that hands out at most [`MAX_CONNECTIONS`] at once.
pub struct Limited {
    inner: TcpListener,
    places: Arc<Semaphore>,
    idle: Duration,
}

impl Limited {
    /// Limits `inner` to `max` connections, each closed after `idle` of
    /// silence.
    pub fn new(inner: TcpListener, max: usize, idle: Duration) -> Limited {
        Limited {
            inner,
            places: Arc::new(Semaphore::new(max)),
            idle,
        }
    }
}

impl Limited {
    /// Serves `app` on every connection (over TLS with `tls`) until
    /// `stop` turns true, then lets the open ones finish (streams end
    /// with the daemon's stop).
    pub async fn serve(
        mut self,
        app: axum::Router,
        tls: Option<tokio_rustls::TlsAcceptor>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let (io, _) = tokio::select! {
                accepted = axum::serve::Listener::accept(&mut self) => accepted,
                _ = stop.wait_for(|s| *s) => break,
            };
            // The connection is never idle while a request on it is answered.
            let busy = Arc::clone(&io.busy);
            let app = app.clone().layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    let _answering = Answering::start(&busy);
                    async move {
                        let _answering = _answering;
                        next.run(request).await
                    }
                },
            ));
            let stopping = stop.clone();
            let tls = tls.clone();
            connections.spawn(async move {
                match tls {
                    None => serve_connection(io, app, stopping).await,
                    Some(tls) => {
                        // A handshake takes no longer than an idle spell.
                        let handshake = tokio::time::timeout(IDLE_TIMEOUT, tls.accept(io));
                        if let Ok(Ok(io)) = handshake.await {
                            serve_connection(io, app, stopping).await;
                        }
                    }
                }
            });
            while connections.try_join_next().is_some() {}
        }
        while connections.join_next().await.is_some() {}
    }
}

/// Serves `app` on one connection until it closes, or gracefully once
/// `stopping` turns true.
async fn serve_connection<I>(io: I, app: axum::Router, mut stopping: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(app);
    let connection = hyper::server::conn::http1::Builder::new()
        .max_buf_size(BUFFER)
        .timer(hyper_util::rt::TokioTimer::new())
        .serve_connection(hyper_util::rt::TokioIo::new(io), service);
    tokio::pin!(connection);
    let stopped = async move {
        let _ = stopping.wait_for(|s| *s).await;
    };
    tokio::select! {
        _ = connection.as_mut() => return,
        () = stopped => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

impl axum::serve::Listener for Limited {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Connection, SocketAddr) {
        let place = Arc::clone(&self.places)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        let connection = Connection {
            stream,
            _place: place,
            idle: self.idle,
            deadline: Box::pin(tokio::time::sleep(self.idle)),
            busy: Arc::default(),
        };
        (connection, addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// One connection: its place among the allowed ones is given back when it
/// closes; it fails with `TimedOut` once silent for too long.
pub struct Connection {
    stream: TcpStream,
    _place: OwnedSemaphorePermit,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    /// Requests being answered on it now.
    busy: Arc<AtomicUsize>,
}

/// A request being answered: counted on its connection while it lives.
struct Answering(Arc<AtomicUsize>);

impl Answering {
    fn start(busy: &Arc<AtomicUsize>) -> Answering {
        busy.fetch_add(1, Ordering::Relaxed);
        Answering(Arc::clone(busy))
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Connection {
    /// Something went through: the silence starts again.
    fn active(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + self.idle);
    }

    /// `Pending` while the connection may wait; an error once it has been
    /// silent too long with no request being answered.
    fn check_idle<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if self.busy.load(Ordering::Relaxed) > 0 {
            // Looked at again when the answer is written.
            self.active();
            return Poll::Pending;
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the connection was idle too long",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(done) => {
                self.active();
                Poll::Ready(done)
            }
            Poll::Pending => self.check_idle(cx),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write(cx, buf) {
            Poll::Ready(done) => {
                self.active();
                Poll::Ready(done)
            }
            Poll::Pending => self.check_idle(cx),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write_vectored(cx, bufs) {
            Poll::Ready(done) => {
                self.active();
                Poll::Ready(done)
            }
            Poll::Pending => self.check_idle(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// `GET /` on a connection of its own: the whole answer.
    async fn get_root(addr: SocketAddr) -> String {
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        answer
    }

    /// Two idle connections fill a listener of two places; a third client
    /// is served once they have been silent for the idle timeout, and the
    /// idle ones are closed.
    #[tokio::test]
    async fn idle_connections_are_closed_and_their_places_given_back() {
        let inner = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = inner.local_addr().unwrap();
        let listener = Limited::new(inner, 2, Duration::from_millis(300));
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "hi" }));
        let server = tokio::spawn(async move { axum::serve(listener, app).await });

        let mut idle = Vec::new();
        for _ in 0..2 {
            idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        let answer = get_root(addr).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("hi"), "{answer}");
        // The third was served because the silent ones were closed.
        for mut stream in idle {
            let mut rest = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
                .await
                .expect("closed by the server, not left open");
            assert!(read.is_err() || rest.is_empty(), "closed without an answer");
        }
        server.abort();
    }

    /// A request whose answer takes longer than the idle timeout (a job
    /// run through the API) keeps its connection until it is answered.
    #[tokio::test]
    async fn a_slow_answer_is_not_idleness() {
        let inner = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = inner.local_addr().unwrap();
        let listener = Limited::new(inner, 2, Duration::from_millis(200));
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_millis(800)).await;
                "done"
            }),
        );
        let (_stop, stop) = watch::channel(false);
        let server = tokio::spawn(listener.serve(app, None, stop));
        let answer = get_root(addr).await;
        assert!(answer.ends_with("done"), "{answer}");
        server.abort();
    }
}
