//! How each declared object stands, from a plan: shared by `podnetctl
//! status` (run directly) and podnetd's `/v1/status`.

use crate::api::types::{
    HcaInfo, HcaPortInfo, MasterInfo, Node, ObjectState, PfInfo, RdmaInfo, TierInfo, VfInfo,
};
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
        // The HCAs offered to pods: there (on the host or in a pod) or not.
        let hcas = rdma_info(desired, observed)
            .map(|i| i.hcas)
            .unwrap_or_default();
        for selector in &r.devices {
            let found: Vec<&HcaInfo> = hcas.iter().filter(|h| offers(selector, h)).collect();
            out.push(ObjectState {
                object: format!("hca {selector}"),
                state: if found.is_empty() { "failed" } else { "converged" }.into(),
                pending: if found.is_empty() {
                    vec![format!(
                        "no RDMA device here is {selector} or sits on it (a netdev or a PCI address)"
                    )]
                } else {
                    found
                        .iter()
                        .map(|h| match &h.endpoint {
                            Some(e) => format!("{} in use by endpoint {e} ({})", h.name, h.netns),
                            None => format!("{} free ({})", h.name, h.netns),
                        })
                        .collect()
                },
            });
        }
    }
    out
}

/// `rdma.devices` entry `selector` names HCA `h`: by its name, a netdev
/// of its ports or its PCI address.
fn offers(selector: &str, h: &HcaInfo) -> bool {
    h.name == selector
        || h.pci.as_deref() == Some(selector)
        || h.ports
            .iter()
            .any(|p| p.netdev.as_deref() == Some(selector))
}

/// The RDMA subsystem and every HCA the host sees or an endpoint holds,
/// where the node files have `[rdma]`.
pub fn rdma_info(desired: &NodeConfig, observed: &Observed) -> Option<RdmaInfo> {
    let r = desired.rdma.as_ref()?;
    let none = crate::state::RdmaState::default();
    let have = observed.rdma.as_ref().unwrap_or(&none);
    let shared = have.netns_mode != Some(crate::config::RdmaNetnsMode::Exclusive);
    let mut hcas: Vec<HcaInfo> = have
        .devices
        .iter()
        .map(|d| {
            let holder = have.holder(&d.name);
            HcaInfo {
                name: d.name.clone(),
                offered: false,
                driver: d.driver.clone(),
                node_type: d.node_type.clone(),
                node_guid: d.node_guid.clone(),
                fw: d.fw.clone(),
                pci: d.pci.clone(),
                ports: d
                    .ports
                    .iter()
                    .map(|p| HcaPortInfo {
                        index: p.index,
                        state: p.state.clone(),
                        phys_state: p.phys_state.clone(),
                        link_layer: p.link_layer.clone(),
                        netdev: p.netdev.clone(),
                    })
                    .collect(),
                char_devices: d.char_devices.clone(),
                netns: if shared { "shared" } else { "host" }.into(),
                endpoint: holder.map(|h| h.endpoint.clone()),
            }
        })
        .collect();
    // Held in a pod's namespace: the host no longer sees it.
    for h in have.held.iter().filter(|h| have.device(&h.name).is_none()) {
        hcas.push(HcaInfo {
            name: h.name.clone(),
            offered: false,
            driver: None,
            node_type: None,
            node_guid: None,
            fw: None,
            pci: None,
            ports: Vec::new(),
            char_devices: Vec::new(),
            netns: h.netns.clone().unwrap_or_else(|| "a pod's".into()),
            endpoint: Some(h.endpoint.clone()),
        });
    }
    for h in &mut hcas {
        h.offered = r.devices.iter().any(|s| offers(s, h));
    }
    Some(RdmaInfo {
        netns_mode: have.netns_mode,
        rdma_cm: have.rdma_cm.then(|| "/dev/infiniband/rdma_cm".into()),
        hcas,
    })
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
        rdma: observed.and_then(|o| rdma_info(desired, o)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{HeldRdma, RdmaDevice, RdmaPort, RdmaState};

    fn device(name: &str, netdev: &str) -> RdmaDevice {
        RdmaDevice {
            index: 1,
            name: name.into(),
            node_type: Some("ca".into()),
            protocol: None,
            fw: None,
            node_guid: None,
            driver: Some("rxe".into()),
            uverbs: Some("/dev/infiniband/uverbs1".into()),
            pci: None,
            char_devices: vec!["/dev/infiniband/uverbs1".into()],
            ports: vec![RdmaPort {
                index: 1,
                state: "ACTIVE".into(),
                phys_state: "LINK_UP".into(),
                netdev: Some(netdev.into()),
                netdev_index: Some(7),
                link_layer: Some("Ethernet".into()),
            }],
        }
    }

    fn node(devices: &[&str]) -> NodeConfig {
        let list: Vec<String> = devices.iter().map(|d| format!("{d:?}")).collect();
        let text = format!("version = 1\n[rdma]\ndevices = [{}]\n", list.join(", "));
        crate::config::load_files(vec![("10-node.toml".into(), text)])
            .unwrap()
            .config
    }

    /// An HCA is offered by its name or a netdev of its ports; one in a
    /// pod's namespace is listed with its holder; the offered selector
    /// that matches nothing fails its object.
    #[test]
    fn hcas_are_offered_by_name_or_netdev_and_held_ones_are_listed() {
        let observed = Observed {
            rdma: Some(RdmaState {
                netns_mode: Some(crate::config::RdmaNetnsMode::Exclusive),
                devices: vec![device("rxe0", "ens192"), device("rxe1", "ens224")],
                rdma_cm: true,
                held: vec![
                    HeldRdma {
                        name: "rxe1".into(),
                        endpoint: "c1/eth0".into(),
                        netns: Some("/run/netns/p1".into()),
                    },
                    HeldRdma {
                        name: "mlx5_3".into(),
                        endpoint: "c2/net1".into(),
                        netns: Some("/run/netns/p2".into()),
                    },
                ],
                ..RdmaState::default()
            }),
            ..Observed::default()
        };
        let desired = node(&["ens192", "mlx5_3", "mlx5_9"]);
        let info = rdma_info(&desired, &observed).unwrap();
        assert_eq!(info.rdma_cm.as_deref(), Some("/dev/infiniband/rdma_cm"));
        let by = |n: &str| info.hcas.iter().find(|h| h.name == n).unwrap();
        assert!(by("rxe0").offered, "by its netdev");
        assert_eq!(by("rxe0").netns, "host");
        assert_eq!(by("rxe0").ports[0].link_layer.as_deref(), Some("Ethernet"));
        assert!(!by("rxe1").offered);
        assert_eq!(
            by("rxe1").endpoint.as_deref(),
            Some("c1/eth0"),
            "visible and held"
        );
        assert!(by("mlx5_3").offered, "by its name, in a pod");
        assert_eq!(by("mlx5_3").netns, "/run/netns/p2");
        assert!(by("mlx5_3").ports.is_empty());
        let plan = crate::plan::Plan::default();
        let states = object_states(&desired, &observed, &plan);
        let state = |o: &str| states.iter().find(|s| s.object == o).unwrap().state.clone();
        assert_eq!(state("hca ens192"), "converged");
        assert_eq!(state("hca mlx5_3"), "converged");
        assert_eq!(state("hca mlx5_9"), "failed");
    }
}
