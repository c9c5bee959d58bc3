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
    /// For the kernel reads of a CHECK (None in tests without one).
    pub(super) kernel: Option<crate::kernel::Kernel>,
}

impl DaemonBackend {
    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        // A panic while holding the lock leaves plain data behind: keep serving it.
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Backend for DaemonBackend {
    fn metrics(&self) -> String {
        let endpoints = self.endpoints();
        let shared = self.shared();
        shared.metrics.render(&shared.status, &endpoints)
    }

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
        let now = crate::shaping::monotonic_ns();
        for r in &mut list {
            r.enforcement = shared.shaping.enforcement_in(r, &entries);
            r.traffic = shared.shaping.traffic_in(r, &entries, now);
        }
        list
    }

    async fn endpoint(&self, container_id: &str, ifname: &str) -> Option<EndpointRecord> {
        // An HTB endpoint's classes are read from the kernel now, outside
        // the lock: what a pass left may have been removed since.
        let (record, htb) = {
            let shared = self.shared();
            let r = shared.registry.get(container_id, ifname).cloned()?;
            let devices: Vec<String> = match &r.endpoint.master {
                Some(m) => shared
                    .shaping
                    .htb
                    .iter()
                    .filter(|d| *d == m)
                    .cloned()
                    .collect(),
                None => shared.shaping.htb.iter().cloned().collect(),
            };
            (r, devices)
        };
        let live = match (&self.kernel, htb.is_empty()) {
            (Some(kernel), false) => {
                let mut classes = std::collections::BTreeMap::new();
                let mut index = std::collections::HashMap::new();
                let mut read = Ok(());
                for d in &htb {
                    match super::sampler::htb_classes(kernel, d, &mut index).await {
                        Ok(c) => classes.extend(c),
                        Err(e) => read = Err(format!("reading the HTB classes on {d}: {e}")),
                    }
                }
                Some(read.map(|_| classes))
            }
            _ => None,
        };
        let shared = self.shared();
        // Registered since? Then as it is now.
        let mut r = shared
            .registry
            .get(container_id, ifname)
            .cloned()
            .unwrap_or(record);
        let entries = shared.shaping.entries_of(&r);
        r.enforcement = match &live {
            Some(Ok(classes)) => shared.shaping.enforcement_with(&r, &entries, Some(classes)),
            Some(Err(err)) => shared.shaping.enforcement_in(&r, &entries).map(|mut e| {
                e.problems.push(err.clone());
                e.enforced = false;
                e
            }),
            None => shared.shaping.enforcement_in(&r, &entries),
        };
        r.traffic = shared
            .shaping
            .traffic_in(&r, &entries, crate::shaping::monotonic_ns());
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
        if let Some(vf) = endpoint.vf.as_deref() {
            if !crate::sysfs::valid_pci_address(vf) {
                return Err(Refusal::new(
                    422,
                    format!("`vf` is not a PCI address: {vf:?} (a VF's, as 0000:01:10.0)"),
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
        // A pass also when the endpoint names a VF or an RDMA device: the
        // node's VFs and HCAs show who uses them, and a VF count change
        // must be refused from now on.
        if !shared.shaping.install(&record)
            || record.endpoint.vf.is_some()
            || record.endpoint.rdma.is_some()
        {
            let _ = self.triggers.send(Trigger::Endpoints);
        }
        let entries = shared.shaping.entries_of(&record);
        record.enforcement = shared.shaping.enforcement_in(&record, &entries);
        record.traffic =
            shared
                .shaping
                .traffic_in(&record, &entries, crate::shaping::monotonic_ns());
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
        if !shaping.uninstall(&gone, |ip| registry.holds(ip))
            || gone.endpoint.vf.is_some()
            || gone.endpoint.rdma.is_some()
        {
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
