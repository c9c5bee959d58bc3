//! What the reconcile loop and the socket's request path share: the state
//! the socket reads (one lock), and the rules both apply to endpoints.

use std::time::{SystemTime, UNIX_EPOCH};

use super::registry::Registry;
use crate::api::types::{Endpoint, Limits, Node, Status};
use crate::config::NodeConfig;

/// What the socket reads, updated after every pass.
pub struct Shared {
    pub status: Status,
    pub node: Node,
    /// The node files in force (for the endpoints' limits).
    pub config: Option<crate::config::NodeConfig>,
    pub registry: Registry,
    /// What the request path knows about shaping.
    pub shaping: super::shaping::ShapingView,
    /// What `GET /metrics` counts.
    pub metrics: super::metrics::Metrics,
}

pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The limits the node's policy gives an endpoint.
pub(super) fn endpoint_limits(config: &NodeConfig, e: &Endpoint) -> Result<Limits, String> {
    let l = crate::policy::limits(config, e.tier.as_deref(), e.egress, e.ingress)?;
    Ok(Limits {
        egress: l.egress,
        ingress: l.ingress,
        burst: l.burst,
        tier: l.tier,
    })
}
