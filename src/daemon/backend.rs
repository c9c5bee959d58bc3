//! The daemon as the socket API sees it.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::events::{Trigger, Triggers};
use super::shared::{endpoint_limits, unix_millis, Shared};
use crate::api::types::{
    Endpoint, EndpointRecord, Node, ReconcileAnswer, Status, Trial, TryAnswer,
};
use crate::api::{Backend, Refusal};

/// A cheap, cloneable handle on the daemon's shared state and its loop.
#[derive(Clone)]
pub struct DaemonBackend {
    pub(super) shared: Arc<Mutex<Shared>>,
    pub(super) triggers: Triggers,
}

impl DaemonBackend {
    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        // A panic while holding the lock leaves plain data behind: keep serving it.
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Backend for DaemonBackend {
    fn status(&self) -> Status {
        self.shared().status.clone()
    }

    fn node(&self) -> Node {
        self.shared().node.clone()
    }

    fn endpoints(&self) -> Vec<EndpointRecord> {
        let shared = self.shared();
        let mut list = shared.registry.list();
        let entries = shared.shaping.entries();
        for r in &mut list {
            r.enforcement = shared.shaping.enforcement_in(r, &entries);
        }
        list
    }

    fn endpoint(&self, container_id: &str, ifname: &str) -> Option<EndpointRecord> {
        let shared = self.shared();
        let mut r = shared.registry.get(container_id, ifname).cloned()?;
        r.enforcement = shared.shaping.enforcement(&r);
        Some(r)
    }

    fn put_endpoint(
        &self,
        container_id: &str,
        ifname: &str,
        endpoint: Endpoint,
    ) -> Result<EndpointRecord, Refusal> {
        let mut shared = self.shared();
        // Readiness by generation: a pod is not told all is well on a node
        // that has never matched its files.
        if shared.status.converged_generation.is_none() {
            let why = shared
                .status
                .last_reconcile
                .as_ref()
                .and_then(|r| r.error.clone())
                .unwrap_or_else(|| "the first reconcile has not finished".into());
            return Err(Refusal::new(
                503,
                format!("the node has not converged yet: {why}"),
            ));
        }
        if let Some(master) = &endpoint.master {
            if !shared.node.masters.iter().any(|m| &m.name == master) {
                return Err(Refusal::new(
                    422,
                    format!("`{master}` is not a master in the node files"),
                ));
            }
        }
        let limits = match &shared.config {
            Some(config) => {
                Some(endpoint_limits(config, &endpoint).map_err(|e| Refusal::new(422, e))?)
            }
            None => None,
        };
        let mut record = shared
            .registry
            .put(container_id, ifname, endpoint, limits, unix_millis())
            .map_err(|e| Refusal::new(503, format!("cannot persist the endpoint registry: {e}")))?;
        // Shaped before ADD returns, so from the pod's first packet. A
        // pass is needed only when that could not be done here; every pass
        // confirms the map against the whole registry anyway.
        if !shared.shaping.install(&record) {
            let _ = self.triggers.send(Trigger::Endpoints);
        }
        record.enforcement = shared.shaping.enforcement(&record);
        Ok(record)
    }

    fn delete_endpoint(&self, container_id: &str, ifname: &str) -> Result<bool, Refusal> {
        let mut shared = self.shared();
        let Some(gone) = shared.registry.get(container_id, ifname).cloned() else {
            return Ok(false);
        };
        shared
            .registry
            .delete(container_id, ifname)
            .map_err(|e| Refusal::new(503, format!("cannot persist the endpoint registry: {e}")))?;
        let Shared {
            registry, shaping, ..
        } = &mut *shared;
        if !shaping.uninstall(&gone, |ip| registry.holds(ip)) {
            let _ = self.triggers.send(Trigger::Endpoints);
        }
        Ok(true)
    }

    async fn reconcile(
        &self,
        options: crate::api::types::ReconcileOptions,
    ) -> Result<ReconcileAnswer, Refusal> {
        let (reply, answer) = oneshot::channel();
        self.triggers
            .send(Trigger::Request { options, reply })
            .map_err(|_| Refusal::new(503, "the daemon is shutting down"))?;
        let reconcile = answer
            .await
            .map_err(|_| Refusal::new(503, "the daemon is shutting down"))?;
        let generation = self.shared().status.generation;
        Ok(ReconcileAnswer {
            generation,
            reconcile,
        })
    }

    async fn try_files(&self, timeout_seconds: u64) -> Result<TryAnswer, Refusal> {
        let (reply, answer) = oneshot::channel();
        let timeout = std::time::Duration::from_secs(timeout_seconds);
        self.triggers
            .send(Trigger::Try { timeout, reply })
            .map_err(|_| Refusal::new(503, "the daemon is shutting down"))?;
        answer
            .await
            .map_err(|_| Refusal::new(503, "the daemon is shutting down"))?
    }

    async fn confirm(&self) -> Result<Trial, Refusal> {
        let (reply, answer) = oneshot::channel();
        self.triggers
            .send(Trigger::Confirm { reply })
            .map_err(|_| Refusal::new(503, "the daemon is shutting down"))?;
        answer
            .await
            .map_err(|_| Refusal::new(503, "the daemon is shutting down"))?
    }
}
