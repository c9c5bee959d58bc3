//! The local socket API: HTTP/1.1 + JSON on a Unix socket
//! (`/run/podnet/podnet.sock` by default), so `curl --unix-socket` works.
//!
//! - `GET    /metrics`                             → OpenMetrics text ([`METRICS_CONTENT_TYPE`])
//! - `GET    /v1/status`                           → [`types::Status`]
//! - `GET    /v1/node`                             → [`types::Node`]
//! - `GET    /v1/endpoints`                        → `[EndpointRecord]`
//! - `GET    /v1/endpoints/{container_id}/{ifname}` → [`types::EndpointRecord`]
//! - `PUT    /v1/endpoints/{container_id}/{ifname}` ← [`types::Endpoint`] → [`types::EndpointRecord`]
//! - `DELETE /v1/endpoints/{container_id}/{ifname}` → 204 (also when absent)
//! - `POST   /v1/reconcile`                        → [`types::ReconcileAnswer`]
//! - `POST   /v1/try`                              → [`types::TryAnswer`] (`?timeout=SECONDS`, 120 by default)
//! - `POST   /v1/confirm`                          → [`types::Trial`]
//!
//! Errors are `{"error": "..."}` with a 4xx/5xx status.

pub mod client;
pub mod openapi;
pub mod server;
pub mod types;

use std::future::Future;

use types::{Endpoint, EndpointRecord, Node, ReconcileAnswer, Status, Trial, TryAnswer};

/// Default socket path.
/// The content type of `GET /metrics`.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub const DEFAULT_SOCKET: &str = "/run/podnet/podnet.sock";

/// A refusal the API reports with an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status code (400, 404, 409, 422, 503...).
    pub status: u16,
    pub message: String,
}

impl Refusal {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Refusal {
            status,
            message: message.into(),
        }
    }
}

/// What the socket server asks of the daemon. Every call must be quick
/// except `reconcile`, which waits for a full pass of the pipeline.
pub trait Backend: Send + Sync + 'static {
    /// `GET /metrics`: text in the OpenMetrics format
    /// ([`METRICS_CONTENT_TYPE`]).
    fn metrics(&self) -> String;
    fn status(&self) -> Status;
    fn node(&self) -> Node;
    fn endpoints(&self) -> Vec<EndpointRecord>;
    /// One endpoint, its shaping checked in the kernel now (CHECK asks
    /// this): async, as that may take a netlink read.
    fn endpoint(
        &self,
        container_id: &str,
        ifname: &str,
    ) -> impl Future<Output = Option<EndpointRecord>> + Send;
    /// Registers (or replaces) an endpoint; persisted before it returns.
    fn put_endpoint(
        &self,
        container_id: &str,
        ifname: &str,
        endpoint: Endpoint,
    ) -> Result<EndpointRecord, Refusal>;
    /// Removes an endpoint; `Ok(false)` when it was not registered.
    fn delete_endpoint(&self, container_id: &str, ifname: &str) -> Result<bool, Refusal>;
    /// Runs a reconcile now (coalesced with any already queued) and reports
    /// it; `options` apply to that pass (forced if any request in it was;
    /// the strictest disruption limit of them).
    fn reconcile(
        &self,
        options: types::ReconcileOptions,
    ) -> impl Future<Output = Result<ReconcileAnswer, Refusal>> + Send;
    /// Puts the node files in force on trial: unless [`Backend::confirm`]
    /// comes within `timeout_seconds`, the previous generation comes back.
    fn try_files(
        &self,
        timeout_seconds: u64,
    ) -> impl Future<Output = Result<TryAnswer, Refusal>> + Send;
    /// Keeps the generation on trial; 409 when none is.
    fn confirm(&self) -> impl Future<Output = Result<Trial, Refusal>> + Send;
}
