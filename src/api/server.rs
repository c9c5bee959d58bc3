//! The socket server: HTTP/1.1 (hyper) on a Unix socket, one task per
//! connection, every request bounded in size, time and concurrency.
//!
//! Limits ([`Policy`]) and what a client gets when it crosses them:
//!
//! | limit | default | past it |
//! |---|---|---|
//! | peer credentials (`SO_PEERCRED`) | root, podnetd's own uid, or the group | 403, then close |
//! | request line + headers | 16 KiB, 64 headers | 431 (hyper), then close |
//! | body | 64 KiB | 413, then close |
//! | headers, then body, each | 5 s | 408, then close (an idle keep-alive connection is simply closed) |
//! | a response the client does not read | 5 s blocked | close |
//! | open connections | 256 | not accepted until one ends: they wait in the kernel's backlog |
//! | refused peers at once | 8 (of the 256) | closed unanswered |
//!
//! Overload is handled by not accepting: the accept loop takes a permit
//! before it calls `accept`, so excess clients queue in the listen backlog
//! (each with its own client-side timeout) and the daemon never holds more
//! than `max_connections` sockets or tasks for the API. Refused peers hold a
//! permit only briefly and at most [`MAX_REFUSED_AT_ONCE`] of them at a time,
//! so a user who may not use the API cannot crowd out one who may.

use std::convert::Infallible;
use std::future::Future;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Sleep;

use super::types::{ApiError, Endpoint};
use super::{Backend, Refusal};
use crate::config::schema::valid_ifname;

/// How many refused peers are answered at once; more are closed unanswered.
pub const MAX_REFUSED_AT_ONCE: usize = 8;

/// How long [`Server::run`] waits for open connections after its shutdown
/// future completes (a reconcile in progress is allowed to finish).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What the server accepts: who, how much and how slowly.
#[derive(Debug, Clone)]
pub struct Policy {
    /// podnet's group: its members may use the API besides root and the
    /// daemon's own user. `None`: root and the daemon's user only.
    pub group: Option<u32>,
    /// Largest request body (a PUT endpoint is well under 1 KiB).
    pub max_body_bytes: usize,
    /// Largest request line plus headers.
    pub max_header_bytes: usize,
    /// Time allowed for a request's headers, and again for its body; also
    /// how long a response may stay blocked on a client that does not read.
    pub read_timeout: Duration,
    /// Connections served at once; further clients wait in the backlog.
    pub max_connections: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            group: None,
            max_body_bytes: 64 * 1024,
            max_header_bytes: 16 * 1024,
            read_timeout: Duration::from_secs(5),
            max_connections: 256,
        }
    }
}

/// Counters of a running server, readable while it runs.
#[derive(Debug, Clone, Default)]
pub struct ServerStats(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    refused: AtomicU64,
    dropped: AtomicU64,
    closed: AtomicU64,
}

impl ServerStats {
    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.0.accepted.load(Ordering::Relaxed)
    }
    /// Connections from peers that may not use the API (answered 403 or,
    /// past [`MAX_REFUSED_AT_ONCE`], closed unanswered).
    pub fn refused(&self) -> u64 {
        self.0.refused.load(Ordering::Relaxed)
    }
    /// Refused peers closed without an answer because too many were open.
    pub fn dropped(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }
    /// Connections open right now.
    pub fn open(&self) -> u64 {
        // `closed` is read first: a connection closing in between is then
        // counted as open, never as a negative.
        let closed = self.0.closed.load(Ordering::Acquire);
        self.accepted().saturating_sub(closed)
    }
}

/// Serves the API on `listener` until `shutdown` completes, then lets open
/// requests finish (for up to 10 s).
pub async fn serve<B: Backend>(
    listener: UnixListener,
    backend: Arc<B>,
    policy: Policy,
    shutdown: impl Future<Output = ()>,
) {
    Server::new(listener, backend, policy).run(shutdown).await
}

/// The socket server; [`serve`] is the short way to run one.
pub struct Server<B> {
    listener: UnixListener,
    backend: Arc<B>,
    policy: Arc<Policy>,
    stats: ServerStats,
}

impl<B: Backend> Server<B> {
    pub fn new(listener: UnixListener, backend: Arc<B>, policy: Policy) -> Self {
        Server {
            listener,
            backend,
            policy: Arc::new(policy),
            stats: ServerStats::default(),
        }
    }

    /// A handle on the counters, to read while the server runs.
    pub fn stats(&self) -> ServerStats {
        self.stats.clone()
    }

    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let max = self.policy.max_connections.clamp(1, u32::MAX as usize);
        let permits = Arc::new(Semaphore::new(max));
        let refused_slots = Arc::new(Semaphore::new(MAX_REFUSED_AT_ONCE));
        let (stop, stopping) = watch::channel(false);
        let own_uid = nix::unistd::geteuid().as_raw();
        tokio::pin!(shutdown);

        loop {
            let permit = tokio::select! {
                _ = &mut shutdown => break,
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break, // never closed
                },
            };
            let stream = tokio::select! {
                _ = &mut shutdown => break,
                r = self.listener.accept() => match r {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of descriptors, accept would fail again at
                        // once: give the open connections time to end. Any
                        // other error (a peer gone before accept) is the
                        // peer's alone; the short pause only keeps a broken
                        // listener from spinning.
                        let pause = if e.raw_os_error().is_some_and(is_fd_exhaustion) { 100 } else { 5 };
                        tokio::time::sleep(Duration::from_millis(pause)).await;
                        continue;
                    }
                },
            };
            self.stats.0.accepted.fetch_add(1, Ordering::Relaxed);

            let refusal = match peer_refusal(&stream, self.policy.group, own_uid) {
                None => None,
                Some(why) => {
                    self.stats.0.refused.fetch_add(1, Ordering::Relaxed);
                    match refused_slots.clone().try_acquire_owned() {
                        Ok(slot) => Some((why, slot)),
                        Err(_) => {
                            self.stats.0.dropped.fetch_add(1, Ordering::Relaxed);
                            self.stats.0.closed.fetch_add(1, Ordering::Release);
                            continue;
                        }
                    }
                }
            };
            let conn = Connection {
                backend: self.backend.clone(),
                policy: self.policy.clone(),
                stats: self.stats.clone(),
                stopping: stopping.clone(),
            };
            tokio::spawn(async move {
                let _permit = permit;
                match refusal {
                    None => conn.serve(stream, None).await,
                    Some((why, _slot)) => conn.serve(stream, Some(why)).await,
                }
            });
        }

        drop(self.listener);
        let _ = stop.send(true);
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, permits.acquire_many(max as u32)).await;
    }
}

fn is_fd_exhaustion(errno: i32) -> bool {
    errno == nix::errno::Errno::EMFILE as i32
        || errno == nix::errno::Errno::ENFILE as i32
        || errno == nix::errno::Errno::ENOBUFS as i32
        || errno == nix::errno::Errno::ENOMEM as i32
}

/// Why a peer may not use the API, or `None` when it may: root, the
/// daemon's own user (it could ptrace the daemon anyway), the group as
/// primary group, or the group among the peer's supplementary groups.
fn peer_refusal(stream: &UnixStream, group: Option<u32>, own_uid: u32) -> Option<String> {
    let cred = match stream.peer_cred() {
        Ok(c) => c,
        Err(e) => return Some(format!("cannot read the peer's credentials: {e}")),
    };
    let allowed = peer_allowed(cred.uid(), cred.gid(), group, own_uid, || {
        // The credentials are those of the process that connected, taken at
        // connect(); its supplementary groups only /proc tells. A peer in
        // another pid namespace has no pid here and is judged without them.
        cred.pid()
            .filter(|pid| *pid > 0)
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
            .map(|s| supplementary_groups(&s))
            .unwrap_or_default()
    });
    if allowed {
        return None;
    }
    Some(match group {
        Some(g) => format!(
            "uid {} (gid {}) may not use podnetd's socket: only root and members of group {g} may",
            cred.uid(),
            cred.gid()
        ),
        None => format!(
            "uid {} (gid {}) may not use podnetd's socket: only root may (no group is configured)",
            cred.uid(),
            cred.gid()
        ),
    })
}

fn peer_allowed(
    uid: u32,
    gid: u32,
    group: Option<u32>,
    own_uid: u32,
    supplementary: impl FnOnce() -> Vec<u32>,
) -> bool {
    if uid == 0 || uid == own_uid {
        return true;
    }
    match group {
        Some(g) => gid == g || supplementary().contains(&g),
        None => false,
    }
}

/// The `Groups:` line of `/proc/<pid>/status`.
fn supplementary_groups(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// What one connection task needs.
struct Connection<B> {
    backend: Arc<B>,
    policy: Arc<Policy>,
    stats: ServerStats,
    stopping: watch::Receiver<bool>,
}

impl<B: Backend> Connection<B> {
    /// Serves one connection; a refused peer gets 403 to its first request.
    async fn serve(mut self, stream: UnixStream, refusal: Option<String>) {
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
        self.stats.0.closed.fetch_add(1, Ordering::Release);
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

/// One route of the API; see the module docs of [`crate::api`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Status,
    Node,
    Endpoints,
    Endpoint {
        container_id: String,
        ifname: String,
    },
    Reconcile,
    Try,
    Confirm,
}

impl Route {
    fn parse(path: &str) -> Result<Route, Failure> {
        let not_found = || failure(StatusCode::NOT_FOUND, format!("no such path: {path}"));
        let rest = path.strip_prefix("/v1/").ok_or_else(not_found)?;
        let mut parts = rest.split('/');
        let route = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("status"), None, _, _) => Route::Status,
            (Some("node"), None, _, _) => Route::Node,
            (Some("endpoints"), None, _, _) => Route::Endpoints,
            (Some("reconcile"), None, _, _) => Route::Reconcile,
            (Some("try"), None, _, _) => Route::Try,
            (Some("confirm"), None, _, _) => Route::Confirm,
            (Some("endpoints"), Some(cid), Some(ifname), None) => {
                let container_id = percent_decode(cid)
                    .filter(|c| valid_container_id(c))
                    .ok_or_else(|| {
                        failure(
                            StatusCode::BAD_REQUEST,
                            format!(
                                "bad container id {cid:?}: 1 to 128 of A-Z a-z 0-9 _ . - (not . or ..)"
                            ),
                        )
                    })?;
                let ifname = percent_decode(ifname)
                    .filter(|i| valid_ifname(i))
                    .ok_or_else(|| {
                        failure(
                            StatusCode::BAD_REQUEST,
                            format!(
                                "bad interface name {ifname:?}: 1 to 15 bytes, no '/', ':' or whitespace, not . or .."
                            ),
                        )
                    })?;
                Route::Endpoint {
                    container_id,
                    ifname,
                }
            }
            _ => return Err(not_found()),
        };
        Ok(route)
    }

    /// The methods the route answers, as an `Allow` header says them.
    fn allow(&self) -> &'static str {
        match self {
            Route::Status | Route::Node | Route::Endpoints => "GET",
            Route::Endpoint { .. } => "GET, PUT, DELETE",
            Route::Reconcile | Route::Try | Route::Confirm => "POST",
        }
    }
}

/// A container id as runtimes make them (hex for containerd and CRI-O),
/// checked so it can never be a path component that escapes.
pub fn valid_container_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// What a path segment escapes: all but RFC 3986's unreserved characters.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Decodes `%XX` escapes; `None` for a broken escape (a `%` not followed
/// by two hex digits) or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let well_formed = b
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == b'%')
        .all(|(i, _)| {
            b.get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
        });
    if !well_formed {
        return None;
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Escapes a path segment so [`percent_decode`] gives it back.
pub(crate) fn percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// An error answer: status, message and whether the connection must close
/// (the request's body was not read to its end).
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    message: String,
    close: bool,
    allow: Option<&'static str>,
}

fn failure(status: StatusCode, message: impl Into<String>) -> Failure {
    Failure {
        status,
        message: message.into(),
        close: false,
        allow: None,
    }
}

impl Failure {
    fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let mut r = json(
            self.status,
            &ApiError {
                error: self.message,
            },
        );
        if self.close {
            r.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(allow) = self.allow {
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
        }
        r
    }
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Self {
        let status = StatusCode::from_u16(r.status)
            .ok()
            .filter(|s| s.is_client_error() || s.is_server_error())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        failure(status, r.message)
    }
}

/// `timeout=SECONDS` of `POST /v1/try`: 1 s to 1 h, 120 s when absent.
fn try_timeout(query: Option<&str>) -> Result<u64, Failure> {
    let bad = || {
        failure(
            StatusCode::BAD_REQUEST,
            "timeout must be a whole number of seconds from 1 to 3600".to_string(),
        )
    };
    let Some(query) = query else { return Ok(120) };
    let mut timeout = 120;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("timeout", v)) => timeout = v.parse().map_err(|_| bad())?,
            _ => return Err(bad()),
        }
    }
    if (1..=3600).contains(&timeout) {
        Ok(timeout)
    } else {
        Err(bad())
    }
}

fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    let (status, body) = match serde_json::to_vec(value) {
        Ok(body) => (status, body),
        // Not expected for these types; still an answer in the API's shape.
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({ "error": format!("cannot encode the answer: {e}") })
                .to_string()
                .into_bytes(),
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

async fn respond<B: Backend>(
    req: Request<Incoming>,
    backend: Arc<B>,
    policy: &Policy,
) -> Response<Full<Bytes>> {
    match handle(req, backend, policy).await {
        Ok(r) => r,
        Err(f) => f.into_response(),
    }
}

async fn handle<B: Backend>(
    req: Request<Incoming>,
    backend: Arc<B>,
    policy: &Policy,
) -> Result<Response<Full<Bytes>>, Failure> {
    let route = Route::parse(req.uri().path())?;
    let method = req.method().clone();
    let ok = StatusCode::OK;
    match (route, method) {
        (Route::Status, Method::GET) => Ok(json(ok, &backend.status())),
        (Route::Node, Method::GET) => Ok(json(ok, &backend.node())),
        (Route::Endpoints, Method::GET) => Ok(json(ok, &backend.endpoints())),
        (Route::Reconcile, Method::POST) => {
            let options = crate::api::types::ReconcileOptions::parse(req.uri().query())
                .map_err(|e| failure(StatusCode::BAD_REQUEST, e))?;
            Ok(json(ok, &backend.reconcile(options).await?))
        }
        (Route::Try, Method::POST) => {
            let timeout = try_timeout(req.uri().query())?;
            Ok(json(ok, &backend.try_files(timeout).await?))
        }
        (Route::Confirm, Method::POST) => Ok(json(ok, &backend.confirm().await?)),
        (
            Route::Endpoint {
                container_id,
                ifname,
            },
            Method::GET,
        ) => match backend.endpoint(&container_id, &ifname) {
            Some(record) => Ok(json(ok, &record)),
            None => Err(failure(
                StatusCode::NOT_FOUND,
                format!("no endpoint {container_id}/{ifname}"),
            )),
        },
        (
            Route::Endpoint {
                container_id,
                ifname,
            },
            Method::PUT,
        ) => {
            let endpoint = read_endpoint(req, policy).await?;
            // Registering persists to disk before it returns: keep that off
            // the runtime's thread, which serves every other client.
            let record =
                blocking(move || backend.put_endpoint(&container_id, &ifname, endpoint)).await?;
            Ok(json(ok, &record))
        }
        (
            Route::Endpoint {
                container_id,
                ifname,
            },
            Method::DELETE,
        ) => {
            blocking(move || backend.delete_endpoint(&container_id, &ifname)).await?;
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            Ok(r)
        }
        (route, m) => Err(Failure {
            allow: Some(route.allow()),
            ..failure(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{m} is not allowed here; use {}", route.allow()),
            )
        }),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Refusal> + Send + 'static,
) -> Result<T, Failure> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(Failure::from),
        Err(e) => Err(failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the registry failed: {e}"),
        )),
    }
}

/// Reads and decodes a PUT body: JSON, within the size and time limits.
async fn read_endpoint(req: Request<Incoming>, policy: &Policy) -> Result<Endpoint, Failure> {
    if let Some(ct) = req.headers().get(CONTENT_TYPE) {
        let essence = ct
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(failure(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "the body must be application/json, not {essence:?} (curl: use --json, not -d)"
                ),
            )
            .closing());
        }
    }
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
    let bytes = match tokio::time::timeout(policy.read_timeout, body.collect()).await {
        Err(_) => {
            return Err(failure(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not arrive within {:?}", policy.read_timeout),
            )
            .closing())
        }
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large()),
        Ok(Err(e)) => {
            return Err(
                failure(StatusCode::BAD_REQUEST, format!("reading the body: {e}")).closing(),
            )
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    // Syntax first, then shape: a body that is not JSON at all is a 400,
    // JSON that is not an endpoint (serde would even take `[]`) a 422.
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        failure(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {e}"),
        )
    })?;
    if !value.is_object() {
        return Err(failure(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a valid endpoint: the body must be a JSON object",
        ));
    }
    Endpoint::deserialize(value).map_err(|e| {
        failure(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("not a valid endpoint: {e}"),
        )
    })
}

/// Makes the socket at `path` for the server: the parent directory (0755)
/// if missing, a stale socket from a dead daemon removed, mode 0660 and, with
/// `group`, owner root:group.
///
/// Refuses when a daemon answers on `path`, and when `path` is something
/// other than a socket. Call it from within a tokio runtime.
pub fn bind(path: &Path, group: Option<u32>) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!(
                        "{} is in use: another podnetd (or some other program) is listening on it",
                        path.display()
                    ),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path)?
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("cannot tell whether {} is stale: {e}", path.display()),
                    ))
                }
            }
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket: not removing it",
                    path.display()
                ),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // Until the chmod below the socket has the umask's mode; the peer check
    // is what guards it in any case.
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    if let Some(g) = group {
        std::os::unix::fs::chown(path, Some(0), Some(g))?;
    }
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_and_check_their_segments() {
        assert_eq!(Route::parse("/v1/status").unwrap(), Route::Status);
        assert_eq!(Route::parse("/v1/endpoints").unwrap(), Route::Endpoints);
        assert_eq!(
            Route::parse("/v1/endpoints/abc123/eth0").unwrap(),
            Route::Endpoint {
                container_id: "abc123".into(),
                ifname: "eth0".into()
            }
        );
        for (path, status) in [
            ("/v1/status/", 404),
            ("/v1/nope", 404),
            ("/v2/status", 404),
            ("/v1/endpoints/abc", 404),
            ("/v1/endpoints/a/b/c", 404),
            ("/v1/endpoints/../eth0", 400),
            ("/v1/endpoints/a%2Fb/eth0", 400),
            ("/v1/endpoints/abc/a:b", 400),
            ("/v1/endpoints/abc/x234567890123456", 400),
            ("/v1/endpoints/abc/%ff", 400),
            ("/v1/endpoints/abc/%4", 400),
            ("/v1/endpoints//eth0", 400),
        ] {
            let got = Route::parse(path)
                .map(|_| 200)
                .unwrap_or_else(|f| f.status.as_u16());
            assert_eq!(got, status, "{path}");
        }
        let long = "a".repeat(129);
        assert!(Route::parse(&format!("/v1/endpoints/{long}/eth0")).is_err());
    }

    #[test]
    fn percent_encoding_round_trips() {
        for s in ["eth0", "a b", "%", "ü", "net1.100", "x/y:z"] {
            assert_eq!(percent_decode(&percent_encode(s)).as_deref(), Some(s));
        }
    }

    #[test]
    fn peers_are_root_the_daemon_user_or_in_the_group() {
        let none = Vec::new;
        assert!(peer_allowed(0, 0, None, 1000, none));
        assert!(peer_allowed(1000, 1000, None, 1000, none));
        assert!(!peer_allowed(1001, 1001, None, 1000, none));
        assert!(peer_allowed(1001, 42, Some(42), 1000, none));
        assert!(peer_allowed(1001, 1001, Some(42), 1000, || vec![7, 42]));
        assert!(!peer_allowed(1001, 1001, Some(42), 1000, || vec![7]));
    }

    #[test]
    fn supplementary_groups_come_from_proc_status() {
        let status = "Name:\tcat\nUid:\t1000\t1000\t1000\t1000\nGroups:\t4 24 27 1000 \nNgid:\t0\n";
        assert_eq!(supplementary_groups(status), vec![4, 24, 27, 1000]);
        assert_eq!(supplementary_groups("Groups:\t\n"), Vec::<u32>::new());
    }
}
