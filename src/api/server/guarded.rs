//! Guarded I/O: one connection's reads and writes under the policy's limits
//! (header size and time, body size and time, a response the client does
//! not read), and the 408 hyper would not send.

use std::convert::Infallible;
use std::future::Future;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tokio::sync::watch;
use tokio::time::Sleep;

use super::accept::ServerStats;
use super::routes::{failure, respond, Failure};
use super::Policy;
use crate::api::Backend;

/// What one connection task needs.
pub(super) struct Connection<B> {
    pub(super) backend: Arc<B>,
    pub(super) policy: Arc<Policy>,
    pub(super) stats: ServerStats,
    pub(super) stopping: watch::Receiver<bool>,
}

impl<B: Backend> Connection<B> {
    /// Serves one connection; a refused peer gets 403 to its first request.
    pub(super) async fn serve(mut self, stream: UnixStream, refusal: Option<String>) {
        // hyper closes a connection whose headers time out without a word
        // and drops the socket with it; this second descriptor lets us say
        // 408 first when part of a request had arrived.
        let spare = stream.as_fd().try_clone_to_owned().ok();
        let partial = Arc::new(AtomicBool::new(false));
        let io = TokioIo::new(Guarded {
            inner: stream,
            stall: self.policy.read_timeout,
            write_deadline: None,
            partial: partial.clone(),
        });

        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.policy.read_timeout)
            .max_header_size(self.policy.max_header_bytes)
            .max_headers(64)
            .max_buf_size((self.policy.max_header_bytes * 2).max(16 * 1024))
            .keep_alive(refusal.is_none());

        let result = match refusal {
            Some(why) => {
                let service = service_fn(move |_req: Request<Incoming>| {
                    let response = failure(StatusCode::FORBIDDEN, why.clone()).closing();
                    async move { Ok::<_, Infallible>(response.into_response()) }
                });
                let conn = builder.serve_connection(io, service);
                drive(conn, &mut self.stopping).await
            }
            None => {
                let backend = self.backend.clone();
                let policy = self.policy.clone();
                let service = service_fn(move |req: Request<Incoming>| {
                    let backend = backend.clone();
                    let policy = policy.clone();
                    async move { Ok::<_, Infallible>(respond(req, backend, &policy).await) }
                });
                let conn = builder.serve_connection(io, service);
                drive(conn, &mut self.stopping).await
            }
        };
        if let (Err(e), Some(fd)) = (result, spare) {
            if e.is_timeout() && partial.load(Ordering::Relaxed) {
                say_timeout(fd);
            }
        }
        self.stats.closed_one();
    }
}

/// Runs a hyper connection to its end, or shuts it down gracefully (the
/// request in progress finishes) when the server stops.
async fn drive<S>(
    conn: http1::Connection<TokioIo<Guarded>, S>,
    stopping: &mut watch::Receiver<bool>,
) -> hyper::Result<()>
where
    S: hyper::service::HttpService<Incoming, ResBody = Full<Bytes>>,
{
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => r,
        // A closed channel means the server is gone: stop as well.
        _ = async { drop(stopping.wait_for(|s| *s).await) } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

/// Writes a 408 on the spare descriptor of a connection hyper gave up on.
/// It is tiny and goes into an empty socket buffer; if it does not, the
/// close alone tells the client.
fn say_timeout(fd: OwnedFd) {
    let body = r#"{"error":"request not received in time"}"#;
    let msg = format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = std::os::unix::net::UnixStream::from(fd);
    let _ = s.write(msg.as_bytes());
}

/// The socket as hyper sees it: notes whether a request has begun arriving
/// since the last response, and fails a write blocked for too long (a
/// client that sends requests but never reads the answers).
struct Guarded {
    inner: UnixStream,
    stall: Duration,
    write_deadline: Option<Pin<Box<Sleep>>>,
    partial: Arc<AtomicBool>,
}

impl Guarded {
    fn blocked(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let stall = self.stall;
        let deadline = self
            .write_deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        ready!(deadline.as_mut().poll(cx));
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "client does not read its response",
        ))
    }

    fn progressed<T>(
        &mut self,
        r: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match r {
            Poll::Pending => self.blocked(cx).map(Err),
            Poll::Ready(r) => {
                self.write_deadline = None;
                Poll::Ready(r)
            }
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.partial.store(true, Ordering::Relaxed);
        }
        r
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.partial.store(false, Ordering::Relaxed);
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        self.progressed(r, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.partial.store(false, Ordering::Relaxed);
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progressed(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.progressed(r, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.progressed(r, cx)
    }
}

/// Reads a request's body within the size and time limits. Each failure
/// closes the connection: the body was not read to its end.
pub(super) async fn read_body(req: Request<Incoming>, policy: &Policy) -> Result<Bytes, Failure> {
    let too_large = || {
        failure(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {} bytes", policy.max_body_bytes),
        )
        .closing()
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > policy.max_body_bytes as u64) {
        return Err(too_large());
    }
    let body = Limited::new(req.into_body(), policy.max_body_bytes);
    match tokio::time::timeout(policy.read_timeout, body.collect()).await {
        Err(_) => Err(failure(
            StatusCode::REQUEST_TIMEOUT,
            format!("the body did not arrive within {:?}", policy.read_timeout),
        )
        .closing()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(e)) => {
            Err(failure(StatusCode::BAD_REQUEST, format!("reading the body: {e}")).closing())
        }
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}
