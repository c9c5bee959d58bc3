//! How each declared object stands, from a plan: shared by `podnetctl
//! status` (run directly) and podnetd's `/v1/status`.

use crate::api::types::{MasterInfo, Node, ObjectState, PfInfo, TierInfo, VfInfo};
use crate::config::NodeConfig;
use crate::plan::{Plan, Role};
use crate::state::Observed;

/// One entry per declared master and shim: converged, drifted (with the
/// steps still to run on it) or failed (its master is missing).
pub fn object_states(desired: &NodeConfig, observed: &Observed, plan: &Plan) -> Vec<ObjectState> {
    let mut out = Vec::new();
    let mut add = |role: Role, name: &str, failed: bool| {
        let pending: Vec<String> = plan
            .actions
            .iter()
            .filter(|a| a.role == role && a.name == name)
            .map(|a| a.to_string())
            .collect();
        let waits = role == Role::Rdma
            && name == crate::plan::RDMA_NETNS_OBJECT
            && plan
                .pending_reboot
                .iter()
                .any(|p| p.starts_with("rdma.netns_mode"));
        let state = if failed {
            "failed"
        } else if pending.is_empty() && waits {
            "pending reboot"
        } else if pending.is_empty() {
            "converged"
        } else {
            "drifted"
        };
        out.push(ObjectState {
            object: format!("{} {name}", role.noun()),
            state: state.into(),
            pending,
        });
    };
    for (name, master) in &desired.masters {
        let missing = observed.link(name).is_none();
        add(Role::Master, name, missing);
        if let Some(shim) = &master.shim {
            add(Role::Shim, &shim.name, missing);
        }
    }
    for name in desired.sriov.keys() {
        add(Role::Sriov, name, observed.pf(name).is_none());
    }
    if let Some(r) = &desired.rdma {
        add(Role::Rdma, crate::plan::RDMA_MODULES_OBJECT, false);
        if r.netns_mode.is_some() {
            add(Role::Rdma, crate::plan::RDMA_NETNS_OBJECT, false);
        }
        for (name, netdev) in &r.soft_roce {
            add(Role::Rdma, name, observed.link(netdev).is_none());
        }
    }
    out
}

/// The declared PFs as the host holds them, each VF with where it is and
/// who uses it, for a CNI or device plugin to allocate from.
pub fn sriov_info(desired: &NodeConfig, observed: &Observed) -> Vec<PfInfo> {
    desired
        .sriov
        .keys()
        .filter_map(|name| observed.pf(name))
        .map(|pf| PfInfo {
            name: pf.name.clone(),
            pci: pf.pci.clone(),
            driver: pf.driver.clone(),
            total_vfs: pf.total_vfs,
            num_vfs: pf.num_vfs,
            vfs: pf
                .vfs
                .iter()
                .map(|v| {
                    let c = &v.config;
                    let vlan = c.vlan.unwrap_or(crate::state::VfVlan {
                        id: 0,
                        qos: 0,
                        proto: crate::config::VlanProto::Dot1q,
                    });
                    let rate = c.rate.unwrap_or_default();
                    VfInfo {
                        index: v.index,
                        pci: v.pci.clone(),
                        netdev: v.netdev.clone(),
                        driver: v.driver.clone(),
                        in_use: v.in_use.clone(),
                        mac: c.mac.clone(),
                        vlan: vlan.id,
                        qos: vlan.qos,
                        vlan_proto: vlan.proto,
                        spoofchk: c.spoofchk,
                        trust: c.trust,
                        link_state: c.link_state,
                        min_tx_rate_mbps: rate.min_mbps,
                        max_tx_rate_mbps: rate.max_mbps,
                    }
                })
                .collect(),
        })
        .collect()
}

/// What the CNI plugin needs to know about the node, from the node files
/// (and the host, for the VFs: none when it could not be observed).
pub fn node_info(
    desired: &NodeConfig,
    observed: Option<&Observed>,
    generation: u64,
    converged_generation: Option<u64>,
) -> Node {
    Node {
        generation,
        converged_generation,
        sriov: observed.map(|o| sriov_info(desired, o)).unwrap_or_default(),
        masters: desired
            .masters
            .iter()
            .map(|(name, m)| MasterInfo {
                name: name.clone(),
                kind: m.kind.to_string(),
                mode: m.effective_mode().to_string(),
                mtu: m.mtu,
                shim: m.shim.as_ref().map(|s| s.name.clone()),
            })
            .collect(),
        tiers: desired
            .tiers
            .iter()
            .map(|(name, t)| TierInfo {
                name: name.clone(),
                egress: t.egress.map(|r| r.bits_per_second()),
                ingress: t.ingress.map(|r| r.bits_per_second()),
            })
            .collect(),
        default_tier: desired
            .shaping
            .as_ref()
            .and_then(|s| s.default_tier.clone()),
    }
}
