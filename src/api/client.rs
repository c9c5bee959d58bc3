//! A client of podnetd's socket, for podnetctl and podnet-cni.
//!
//! Every call opens its own connection (a Unix socket costs little, and the
//! CNI plugin is a short-lived process that makes one or two calls) and is
//! bounded by one timeout, 10 s unless set. [`Client`] is async (hyper);
//! [`BlockingClient`] makes the same calls without a runtime, speaking
//! HTTP/1.1 itself on a blocking socket.

use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use super::server::percent_encode;
use super::types::{
    ApiError, Endpoint, EndpointRecord, Node, ReconcileAnswer, Status, Trial, TryAnswer,
};

/// The default time a call may take, connecting included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest answer read (the endpoint list of a full node is well under it).
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// Why a call failed, in the terms the caller acts on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Nothing listens on the socket: it is missing, or a dead daemon left it.
    #[error("podnetd is not running (nothing listens on {}): {source}", socket.display())]
    NotRunning { socket: PathBuf, source: io::Error },
    /// The socket's permissions keep this user out.
    #[error("may not connect to {}: {source} (run as root or as a member of podnet's group)", socket.display())]
    NoAccess { socket: PathBuf, source: io::Error },
    /// The daemon answered with an error status.
    #[error("podnetd refused: {message} (HTTP {status})")]
    Api { status: u16, message: String },
    /// No complete answer within the timeout.
    #[error("podnetd did not answer within {0:?}")]
    Timeout(Duration),
    /// Any other failure of the socket.
    #[error("talking to podnetd on {}: {source}", socket.display())]
    Io { socket: PathBuf, source: io::Error },
    /// An answer that is not HTTP or not the JSON this version expects.
    #[error("unexpected answer from podnetd: {0}")]
    Protocol(String),
}

impl Error {
    /// The daemon is not there: callers fall back (podnetctl applies
    /// directly) or say so.
    pub fn is_not_running(&self) -> bool {
        matches!(self, Error::NotRunning { .. })
    }

    /// The HTTP status of an API refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// An async client; cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    timeout: Duration,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Client {
            socket: socket.into(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets the time each call may take, connecting included.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub async fn status(&self) -> Result<Status, Error> {
        self.get("/v1/status").await
    }

    pub async fn node(&self) -> Result<Node, Error> {
        self.get("/v1/node").await
    }

    pub async fn endpoints(&self) -> Result<Vec<EndpointRecord>, Error> {
        self.get("/v1/endpoints").await
    }

    /// One endpoint, `None` when it is not registered.
    pub async fn endpoint(
        &self,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<EndpointRecord>, Error> {
        match self.get(&endpoint_path(container_id, ifname)).await {
            Err(Error::Api { status: 404, .. }) => Ok(None),
            r => r.map(Some),
        }
    }

    pub async fn put_endpoint(
        &self,
        container_id: &str,
        ifname: &str,
        endpoint: &Endpoint,
    ) -> Result<EndpointRecord, Error> {
        let body = serde_json::to_vec(endpoint)
            .map_err(|e| Error::Protocol(format!("cannot encode the endpoint: {e}")))?;
        let (_, answer) = self
            .call(
                Method::PUT,
                &endpoint_path(container_id, ifname),
                Some(body),
            )
            .await?;
        decode(&answer)
    }

    /// Removes an endpoint; succeeds when it was not registered.
    pub async fn delete_endpoint(&self, container_id: &str, ifname: &str) -> Result<(), Error> {
        self.call(Method::DELETE, &endpoint_path(container_id, ifname), None)
            .await
            .map(drop)
    }

    /// Asks for a reconcile now and waits for it: give the client a timeout
    /// that covers one pass of the pipeline.
    pub async fn reconcile(&self) -> Result<ReconcileAnswer, Error> {
        self.reconcile_with(Default::default()).await
    }

    /// [`Client::reconcile`] with options for that pass.
    pub async fn reconcile_with(
        &self,
        options: crate::api::types::ReconcileOptions,
    ) -> Result<ReconcileAnswer, Error> {
        let path = format!("/v1/reconcile{}", options.query());
        let (_, answer) = self.call(Method::POST, &path, None).await?;
        decode(&answer)
    }

    /// Puts the files in force on trial for `timeout_seconds`.
    pub async fn try_files(&self, timeout_seconds: u64) -> Result<TryAnswer, Error> {
        let path = format!("/v1/try?timeout={timeout_seconds}");
        let (_, answer) = self.call(Method::POST, &path, None).await?;
        decode(&answer)
    }

    /// Keeps the generation on trial.
    pub async fn confirm(&self) -> Result<Trial, Error> {
        let (_, answer) = self.call(Method::POST, "/v1/confirm", None).await?;
        decode(&answer)
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        let (_, answer) = self.call(Method::GET, path, None).await?;
        decode(&answer)
    }

    /// One request on a fresh connection; a non-2xx answer becomes
    /// [`Error::Api`].
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), Error> {
        match tokio::time::timeout(self.timeout, self.exchange(method, path, body)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout(self.timeout)),
        }
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), Error> {
        let stream = loop {
            match UnixStream::connect(&self.socket).await {
                Ok(s) => break s,
                // The daemon's listen backlog is full (it serves a bounded
                // number of clients at once): wait for room, within the
                // call's timeout.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    tokio::time::sleep(Duration::from_millis(5)).await
                }
                Err(e) => return Err(self.connect_error(e)),
            }
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.hyper_error(e))?;
        // The connection ends when `sender` is dropped at the end of the call.
        tokio::spawn(async move {
            let _ = conn.await;
        });

        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, HeaderValue::from_static("localhost"));
        if body.is_some() {
            req = req.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| Error::Protocol(format!("cannot build the request: {e}")))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| self.hyper_error(e))?;
        let status = resp.status();
        let answer = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| match e.downcast::<hyper::Error>() {
                Ok(e) => self.hyper_error(*e),
                Err(e) => Error::Protocol(format!("reading the answer: {e}")),
            })?
            .to_bytes();
        answered(status, answer)
    }

    fn connect_error(&self, source: io::Error) -> Error {
        connect_error(&self.socket, source)
    }

    fn hyper_error(&self, e: hyper::Error) -> Error {
        let io = std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<io::Error>())
            .map(|s| io::Error::new(s.kind(), s.to_string()));
        match io {
            Some(source) => Error::Io {
                socket: self.socket.clone(),
                source,
            },
            None if e.is_incomplete_message() || e.is_closed() => Error::Io {
                socket: self.socket.clone(),
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "podnetd closed the connection without an answer",
                ),
            },
            None => Error::Protocol(e.to_string()),
        }
    }
}

fn connect_error(socket: &Path, source: io::Error) -> Error {
    let socket = socket.to_path_buf();
    match source.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
            Error::NotRunning { socket, source }
        }
        io::ErrorKind::PermissionDenied => Error::NoAccess { socket, source },
        _ => Error::Io { socket, source },
    }
}

/// A complete answer: its body when the status is a success, else the
/// daemon's reason as [`Error::Api`].
fn answered(status: StatusCode, answer: Bytes) -> Result<(StatusCode, Bytes), Error> {
    if status.is_success() {
        return Ok((status, answer));
    }
    let message = match serde_json::from_slice::<ApiError>(&answer) {
        Ok(e) => e.error,
        Err(_) if answer.is_empty() => status
            .canonical_reason()
            .unwrap_or("no reason given")
            .to_string(),
        Err(_) => String::from_utf8_lossy(&answer[..answer.len().min(512)]).into_owned(),
    };
    Err(Error::Api {
        status: status.as_u16(),
        message,
    })
}

fn endpoint_path(container_id: &str, ifname: &str) -> String {
    format!(
        "/v1/endpoints/{}/{}",
        percent_encode(container_id),
        percent_encode(ifname)
    )
}

fn decode<T: DeserializeOwned>(answer: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(answer).map_err(|e| Error::Protocol(format!("{e}")))
}

/// The same calls for code without a tokio runtime (podnet-cni,
/// podnetctl). Each call writes one HTTP/1.1 request with `connection:
/// close` on a new blocking connection and reads the answer to its
/// `content-length` (or to the end), every step bounded by what is left of
/// the call's timeout. A CNI plugin makes one or two calls in a process
/// that lives for milliseconds: building a runtime and hyper's connection
/// machinery for them cost more than the exchange itself (bench/cni).
#[derive(Debug, Clone)]
pub struct BlockingClient {
    socket: PathBuf,
    timeout: Duration,
}

impl BlockingClient {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        BlockingClient {
            socket: socket.into(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets the time each call may take, connecting included.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn status(&self) -> Result<Status, Error> {
        self.get("/v1/status")
    }

    pub fn node(&self) -> Result<Node, Error> {
        self.get("/v1/node")
    }

    pub fn endpoints(&self) -> Result<Vec<EndpointRecord>, Error> {
        self.get("/v1/endpoints")
    }

    /// One endpoint, `None` when it is not registered.
    pub fn endpoint(
        &self,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<EndpointRecord>, Error> {
        match self.get(&endpoint_path(container_id, ifname)) {
            Err(Error::Api { status: 404, .. }) => Ok(None),
            r => r.map(Some),
        }
    }

    pub fn put_endpoint(
        &self,
        container_id: &str,
        ifname: &str,
        endpoint: &Endpoint,
    ) -> Result<EndpointRecord, Error> {
        let body = serde_json::to_vec(endpoint)
            .map_err(|e| Error::Protocol(format!("cannot encode the endpoint: {e}")))?;
        let (_, answer) = self.call(
            Method::PUT,
            &endpoint_path(container_id, ifname),
            Some(&body),
        )?;
        decode(&answer)
    }

    /// Removes an endpoint; succeeds when it was not registered.
    pub fn delete_endpoint(&self, container_id: &str, ifname: &str) -> Result<(), Error> {
        self.call(Method::DELETE, &endpoint_path(container_id, ifname), None)
            .map(drop)
    }

    /// Asks for a reconcile now and waits for it: give the client a timeout
    /// that covers one pass of the pipeline.
    pub fn reconcile(&self) -> Result<ReconcileAnswer, Error> {
        self.reconcile_with(Default::default())
    }

    pub fn reconcile_with(
        &self,
        options: crate::api::types::ReconcileOptions,
    ) -> Result<ReconcileAnswer, Error> {
        let path = format!("/v1/reconcile{}", options.query());
        let (_, answer) = self.call(Method::POST, &path, None)?;
        decode(&answer)
    }

    pub fn try_files(&self, timeout_seconds: u64) -> Result<TryAnswer, Error> {
        let path = format!("/v1/try?timeout={timeout_seconds}");
        let (_, answer) = self.call(Method::POST, &path, None)?;
        decode(&answer)
    }

    pub fn confirm(&self) -> Result<Trial, Error> {
        let (_, answer) = self.call(Method::POST, "/v1/confirm", None)?;
        decode(&answer)
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        let (_, answer) = self.call(Method::GET, path, None)?;
        decode(&answer)
    }

    /// One request on a fresh connection; a non-2xx answer becomes
    /// [`Error::Api`].
    fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<(StatusCode, Bytes), Error> {
        let deadline = Instant::now() + self.timeout;
        let left = || match deadline.checked_duration_since(Instant::now()) {
            Some(d) if !d.is_zero() => Ok(d),
            _ => Err(Error::Timeout(self.timeout)),
        };
        let mut stream = self.connect(left()?)?;

        let mut request = Vec::with_capacity(256 + body.map_or(0, <[u8]>::len));
        // Writing into a Vec cannot fail.
        let _ = write!(
            request,
            "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n"
        );
        if let Some(body) = body {
            let _ = write!(
                request,
                "content-type: application/json\r\ncontent-length: {}\r\n",
                body.len()
            );
        }
        request.extend_from_slice(b"\r\n");
        request.extend_from_slice(body.unwrap_or_default());
        stream
            .set_write_timeout(Some(left()?))
            .and_then(|()| stream.write_all(&request))
            .map_err(|e| self.io_error(e))?;

        // The head, then the body to its length; without a length, to the
        // end (the request asked podnetd to close after answering).
        let mut buf = Vec::with_capacity(4096);
        let mut head = None;
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(Head {
                start,
                len: Some(n),
                ..
            }) = head
            {
                if buf.len() >= start + n {
                    break;
                }
            }
            stream
                .set_read_timeout(Some(left()?))
                .map_err(|e| self.io_error(e))?;
            let n = match stream.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.io_error(e)),
            };
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > MAX_ANSWER_BYTES + 64 * 1024 {
                return Err(Error::Protocol(format!(
                    "the answer is larger than {MAX_ANSWER_BYTES} bytes"
                )));
            }
            if head.is_none() {
                head = parse_head(&buf)?;
            }
        }
        let cut_short = || Error::Io {
            socket: self.socket.clone(),
            source: io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "podnetd closed the connection without an answer",
            ),
        };
        let head = head.ok_or_else(cut_short)?;
        let end = match head.len {
            Some(n) if buf.len() < head.start + n => return Err(cut_short()),
            Some(n) => head.start + n,
            None => buf.len(),
        };
        answered(head.status, Bytes::from(buf).slice(head.start..end))
    }

    /// A connected socket. A full listen backlog (podnetd serves a bounded
    /// number of clients at once) makes connect wait in the kernel for
    /// room, for at most `timeout` (SO_SNDTIMEO bounds a Unix connect).
    fn connect(&self, timeout: Duration) -> Result<std::os::unix::net::UnixStream, Error> {
        use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, UnixAddr};
        let fd: OwnedFd = socket::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| self.io_error(e.into()))?;
        let timeval = nix::sys::time::TimeVal::new(
            timeout.as_secs() as _,
            timeout.subsec_micros().max(1) as _,
        );
        socket::setsockopt(&fd, sockopt::SendTimeout, &timeval)
            .map_err(|e| self.io_error(e.into()))?;
        let addr =
            UnixAddr::new(&self.socket).map_err(|e| connect_error(&self.socket, e.into()))?;
        match socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
            Ok(()) => Ok(fd.into()),
            Err(nix::errno::Errno::EAGAIN) => Err(Error::Timeout(self.timeout)),
            Err(e) => Err(connect_error(&self.socket, e.into())),
        }
    }

    /// A failure of the connected socket; a read or write that timed out is
    /// the call's timeout.
    fn io_error(&self, source: io::Error) -> Error {
        match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout(self.timeout),
            _ => Error::Io {
                socket: self.socket.clone(),
                source,
            },
        }
    }
}

/// The head of an answer: its status, where its body starts and how long
/// the body is (`None`: to the end of the connection).
#[derive(Debug, Clone, Copy)]
struct Head {
    status: StatusCode,
    start: usize,
    len: Option<usize>,
}

/// The longest answer head read.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The head of the answer in `buf`, `None` while it is incomplete. A strict
/// reading of what podnetd (hyper) sends: a status line `HTTP/1.x NNN
/// reason`, `name: value` lines, an empty line. (Not httparse: its first
/// use detects the CPU's SIMD features, which costs a CNI ADD tens of
/// microseconds of CPUID exits in a VM, for a head of four lines.)
fn parse_head(buf: &[u8]) -> Result<Option<Head>, Error> {
    let not_http = |what: &str| Error::Protocol(format!("not an HTTP answer: {what}"));
    // A peer that is not HTTP is told apart at once.
    if !b"HTTP/".starts_with(&buf[..buf.len().min(5)]) {
        return Err(not_http(&String::from_utf8_lossy(
            &buf[..buf.len().min(40)],
        )));
    }
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD_BYTES {
            return Err(not_http(&format!(
                "a head longer than {MAX_HEAD_BYTES} bytes"
            )));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| not_http("a head that is not text"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(1..))
        .and_then(|rest| rest.strip_prefix(' '))
        .filter(|rest| rest.len() == 3 || rest.as_bytes().get(3) == Some(&b' '))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| not_http(status_line))?;
    let mut len = None;
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| not_http(&format!("header line {line:?}")))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<usize>()
                .map_err(|_| Error::Protocol(format!("an invalid content-length {value:?}")))?;
            len = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Error::Protocol(format!(
                "an answer in transfer-encoding {value:?}, which podnetd does not send"
            )));
        }
    }
    let start = end + 4;
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        len = Some(0);
    }
    if len.is_some_and(|n| n > MAX_ANSWER_BYTES) {
        return Err(Error::Protocol(format!(
            "the answer is larger than {MAX_ANSWER_BYTES} bytes"
        )));
    }
    Ok(Some(Head { status, start, len }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(s: &str) -> Result<Option<(u16, usize, Option<usize>)>, Error> {
        parse_head(s.as_bytes()).map(|h| h.map(|h| (h.status.as_u16(), h.start, h.len)))
    }

    #[test]
    fn heads_as_hyper_writes_them() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 268\r\ndate: Tue, 01 Dec 2026 14:32:21 GMT\r\n\r\n{";
        assert_eq!(head(ok).unwrap(), Some((200, ok.len() - 1, Some(268))));
        let gone = "HTTP/1.1 204 No Content\r\ndate: x\r\n\r\n";
        assert_eq!(head(gone).unwrap(), Some((204, gone.len(), Some(0))));
        // No length: to the end of the connection. Names in any case.
        assert_eq!(
            head("HTTP/1.0 404 Not Found\r\n\r\n").unwrap(),
            Some((404, 26, None))
        );
        assert_eq!(
            head("HTTP/1.1 422 \r\nContent-Length:  5 \r\n\r\n").unwrap(),
            Some((422, 38, Some(5)))
        );
    }

    #[test]
    fn a_head_cut_anywhere_waits_for_more() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n";
        for n in 0..ok.len() {
            assert_eq!(head(&ok[..n]).unwrap(), None, "{n}");
        }
    }

    #[test]
    fn what_is_not_podnetds_http_is_a_protocol_error() {
        for (answer, want) in [
            ("SSH-2.0-OpenSSH_9.2\r\n", "not an HTTP answer"),
            ("HTTP/2 200\r\n\r\n", "not an HTTP answer"),
            ("HTTP/1.1 20 OK\r\n\r\n", "not an HTTP answer"),
            ("HTTP/1.1 2000 OK\r\n\r\n", "not an HTTP answer"),
            ("HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "header line"),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
                "content-length",
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
                "transfer-encoding",
            ),
        ] {
            let e = head(answer).unwrap_err();
            assert!(matches!(e, Error::Protocol(_)), "{answer:?}: {e}");
            assert!(e.to_string().contains(want), "{answer:?}: {e}");
        }
        let long = format!("HTTP/1.1 200 OK\r\nx: {}", "y".repeat(MAX_HEAD_BYTES));
        assert!(head(&long).is_err());
    }
}
