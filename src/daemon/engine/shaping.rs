//! The shaping side of a pass: the endpoint registry as the plan reads it
//! (under the lock the request path holds to register an endpoint and write
//! its entry), and the request path's view of shaping after the pass.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tracing::warn;

use super::Engine;
use crate::api::types::EndpointRecord;
use crate::apply::{Registry, RegistryView};
use crate::daemon::shared::Shared;
use crate::plan::{Plan, Role};

/// The daemon's registry, behind the lock it shares with the request path.
/// A poisoned lock still holds a consistent registry (every change is
/// undone in memory when it cannot be persisted): it is used, never read
/// as empty.
pub(in crate::daemon) struct SharedRegistry(pub Arc<Mutex<Shared>>);

impl Registry for SharedRegistry {
    fn locked(&self, f: &mut dyn FnMut(&dyn RegistryView)) {
        let shared = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&*shared)
    }
}

impl RegistryView for Shared {
    fn endpoints(&self) -> Vec<EndpointRecord> {
        self.registry.list()
    }
    fn holds(&self, ip: IpAddr) -> bool {
        self.registry.holds(ip)
    }
    fn changes(&self) -> u64 {
        self.registry.changes()
    }
}

impl Engine {
    /// What the request path knows of shaping, after a pass: the devices
    /// shaped now (planned shaped, with no step on them left undone), the
    /// program on them, the map to write new pods' entries to.
    pub(super) fn refresh_shaping_view(
        &mut self,
        desired: &crate::config::NodeConfig,
        observed: &crate::state::Observed,
        mode: crate::shaping::AttachMode,
        plan: &Plan,
        remaining: &Plan,
        endpoints: &[EndpointRecord],
    ) {
        let identity = self
            .shaper
            .as_mut()
            .and_then(|s| s.identity(crate::shaping::Prog::Egress).ok());
        let ours = identity.as_ref().map_or(0, |p| p.id);
        let map_id = identity.and_then(|p| p.map_ids.first().copied());
        // The program on a device: this daemon's where this pass put it
        // there, else the one found there (current: same tag, same map).
        let program = |d: &str| {
            let attached_now = plan.actions.iter().any(|a| {
                a.name == d
                    && matches!(
                        a.change,
                        crate::plan::Change::AttachProgram {
                            prog: crate::shaping::Prog::Egress,
                            ..
                        } | crate::plan::Change::SwapProgram {
                            prog: crate::shaping::Prog::Egress,
                            ..
                        }
                    )
            });
            let found = observed.shaping_of(d).and_then(|s| match mode {
                crate::shaping::AttachMode::Tcx => s.tcx.as_ref(),
                crate::shaping::AttachMode::Clsact => s.clsact.as_ref(),
            });
            match found {
                Some(p) if !attached_now => p.id,
                _ => ours,
            }
        };
        let shaped: BTreeMap<String, u32> = plan
            .shaped
            .iter()
            .filter(|d| {
                !remaining
                    .actions
                    .iter()
                    .any(|a| a.role == Role::Shaping && &a.name == *d)
            })
            .map(|d| (d.clone(), program(d)))
            .collect();
        // HTB: the addresses planned a class on a device shaped now, with
        // no step on them left undone.
        let htb: BTreeSet<String> = plan
            .htb
            .iter()
            .filter(|d| shaped.contains_key(*d))
            .cloned()
            .collect();
        let queueing = crate::policy::Queueing::of(desired);
        // The objects with a step left undone, looked up per address.
        let undone: BTreeSet<&str> = remaining.actions.iter().map(|a| a.name.as_str()).collect();
        let in_force = |wanted: BTreeMap<std::net::IpAddr, crate::shaping::EgressLimit>| {
            wanted
                .into_iter()
                .filter(|(ip, _)| !undone.contains(ip.to_string().as_str()))
                .map(|(ip, l)| (ip, l.rate_bps))
                .collect::<BTreeMap<_, _>>()
        };
        let htb_in_force = in_force(crate::policy::wanted(endpoints, &htb, &queueing));
        // Ingress: in force once no step on the ifb is left undone.
        let ingress = plan.ingress.filter(|_| {
            !remaining
                .actions
                .iter()
                .any(|a| a.role == Role::Shaping && a.name == crate::shaping::INGRESS_DEVICE)
        });
        // The veth pods' veths shaping now: no step on them left undone.
        let backend = |k: crate::shaping::tc::RootKind| match k {
            crate::shaping::tc::RootKind::Htb => "htb",
            crate::shaping::tc::RootKind::Fq => "edt",
        };
        let root = crate::plan::root_kind(desired, observed).ok();
        let pod_ingress: BTreeMap<String, &'static str> = plan
            .veths
            .iter()
            .filter(|v| {
                !remaining
                    .actions
                    .iter()
                    .any(|a| a.role == Role::Shaping && &a.name == *v)
            })
            .filter_map(|v| Some((v.clone(), backend(root?))))
            .collect();
        // HTB ingress classes in force: on the ifb or the veth, with no
        // step on the address left undone.
        let masters = shaped.keys().cloned().collect();
        let on_htb = endpoints.iter().filter(|e| {
            let backend = match &e.endpoint.veth {
                Some(v) => pod_ingress.get(v).copied(),
                None => ingress.map(backend),
            };
            backend == Some("htb")
        });
        let ingress_in_force = in_force(crate::policy::wanted_in(
            on_htb,
            &masters,
            &queueing,
            crate::state::Direction::Ingress,
        ));
        // Veth pods' egress tags: in force with no step left undone on the
        // address nor on its veth.
        let untagged: BTreeSet<IpAddr> = plan
            .tagged
            .iter()
            .filter(|(ip, veth)| {
                undone.contains(ip.to_string().as_str()) || undone.contains(veth.as_str())
            })
            .map(|(ip, _)| *ip)
            .collect();
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let view = &mut shared.shaping;
        view.untagged = untagged;
        view.ingress = ingress.map(backend);
        view.ingress_in_force = ingress_in_force;
        view.pod_ingress = pod_ingress;
        view.configured = crate::policy::shaping_masters(desired);
        view.queueing = queueing;
        view.shaped = shaped;
        view.htb = plan.htb.clone();
        view.htb_in_force = htb_in_force;
        view.refreshed_at = Some(std::time::Instant::now());
        // A map loaded anew (its pin was gone) is another map: reopen it.
        if view.map.as_ref().and_then(|m| m.id().ok()) != map_id {
            view.map = None;
        }
        if self.shaper.is_none() {
            view.map = None;
        } else if view.map.is_none() {
            match crate::shaping::Endpoints::open(&self.shaping_paths.pin_dir) {
                Ok(m) => view.map = Some(m),
                Err(e) => warn!("opening the endpoint map for requests: {e}"),
            }
        }
    }
}
