//! A client of podnetd's socket, for podnetctl and podnet-cni.
//!
//! Every call opens its own connection (a Unix socket costs little, and the
//! CNI plugin is a short-lived process that makes one or two calls) and is
//! bounded by one timeout, 10 s unless set. [`BlockingClient`] wraps the
//! same calls for code without a runtime.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

    fn connect_error(&self, source: io::Error) -> Error {
        let socket = self.socket.clone();
        match source.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                Error::NotRunning { socket, source }
            }
            io::ErrorKind::PermissionDenied => Error::NoAccess { socket, source },
            _ => Error::Io { socket, source },
        }
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

/// The same calls for code without a tokio runtime (podnet-cni): each call
/// runs on a single-threaded runtime this client owns.
#[derive(Debug)]
pub struct BlockingClient {
    client: Client,
    runtime: tokio::runtime::Runtime,
}

impl BlockingClient {
    pub fn new(socket: impl Into<PathBuf>) -> Result<Self, Error> {
        let socket = socket.into();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| Error::Io {
                socket: socket.clone(),
                source,
            })?;
        Ok(BlockingClient {
            client: Client::new(socket),
            runtime,
        })
    }

    /// Sets the time each call may take, connecting included.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.client = self.client.with_timeout(timeout);
        self
    }

    pub fn status(&self) -> Result<Status, Error> {
        self.runtime.block_on(self.client.status())
    }

    pub fn node(&self) -> Result<Node, Error> {
        self.runtime.block_on(self.client.node())
    }

    pub fn endpoints(&self) -> Result<Vec<EndpointRecord>, Error> {
        self.runtime.block_on(self.client.endpoints())
    }

    pub fn endpoint(
        &self,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<EndpointRecord>, Error> {
        self.runtime
            .block_on(self.client.endpoint(container_id, ifname))
    }

    pub fn put_endpoint(
        &self,
        container_id: &str,
        ifname: &str,
        endpoint: &Endpoint,
    ) -> Result<EndpointRecord, Error> {
        self.runtime
            .block_on(self.client.put_endpoint(container_id, ifname, endpoint))
    }

    pub fn delete_endpoint(&self, container_id: &str, ifname: &str) -> Result<(), Error> {
        self.runtime
            .block_on(self.client.delete_endpoint(container_id, ifname))
    }

    pub fn reconcile(&self) -> Result<ReconcileAnswer, Error> {
        self.runtime.block_on(self.client.reconcile())
    }

    pub fn reconcile_with(
        &self,
        options: crate::api::types::ReconcileOptions,
    ) -> Result<ReconcileAnswer, Error> {
        self.runtime.block_on(self.client.reconcile_with(options))
    }

    pub fn try_files(&self, timeout_seconds: u64) -> Result<TryAnswer, Error> {
        self.runtime
            .block_on(self.client.try_files(timeout_seconds))
    }

    pub fn confirm(&self) -> Result<Trial, Error> {
        self.runtime.block_on(self.client.confirm())
    }
}
