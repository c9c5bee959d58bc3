//! Links: `RTM_NEWLINK` messages → [`Link`], parents still as ifindexes.

use netlink_packet_route::link::{
    InfoData, InfoIpVlan, InfoMacVlan, IpVlanMode, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
    MacVlanMode, VfInfo, VfLinkState, VfVlan, VlanProtocol,
};

use crate::config::{ChildMode, VlanProto};
use crate::state::{Link, VfConfig, VfRate, VfVlan as StateVlan};

/// A link as dumped, with its lower device still an ifindex.
pub(super) struct RawLink {
    pub link: Link,
    pub parent_index: Option<u32>,
    /// `IFLA_NUM_VF`: present on a device with a bus parent (a PCI NIC), so
    /// worth asking sysfs whether it is an SR-IOV PF.
    pub num_vf: Option<u32>,
    /// Its VFs' settings (`IFLA_VFINFO_LIST`), by VF index.
    pub vfs: Vec<(u32, VfConfig)>,
}

pub(super) fn parse(msg: &LinkMessage) -> RawLink {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        kind: None,
        parent: None,
        mode: None,
        mtu: 0,
        up: msg.header.flags.contains(LinkFlags::Up),
        oper: String::new(),
        alias: None,
        mac: None,
        group: 0,
        tx_queues: 1,
    };
    let mut parent_index = None;
    let mut num_vf = None;
    let mut vfs = Vec::new();
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::NumVf(n) => num_vf = Some(*n),
            LinkAttribute::VfInfoList(list) => {
                vfs = list.iter().filter_map(|info| vf_config(&info.0)).collect()
            }
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Mtu(m) => link.mtu = *m,
            LinkAttribute::Group(g) => link.group = *g,
            LinkAttribute::NumTxQueues(n) => link.tx_queues = *n,
            LinkAttribute::OperState(s) => link.oper = format!("{s:?}").to_lowercase(),
            LinkAttribute::IfAlias(a) if !a.is_empty() => link.alias = Some(a.clone()),
            LinkAttribute::Address(a) if a.len() == 6 => link.mac = Some(mac(a)),
            LinkAttribute::Link(i) => parent_index = Some(*i),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(k) => link.kind = Some(k.to_string()),
                        LinkInfo::Data(InfoData::MacVlan(data)) => {
                            link.mode = data.iter().find_map(|d| match d {
                                InfoMacVlan::Mode(m) => macvlan_mode(*m),
                                _ => None,
                            })
                        }
                        LinkInfo::Data(InfoData::IpVlan(data)) => {
                            link.mode = data.iter().find_map(|d| match d {
                                InfoIpVlan::Mode(m) => ipvlan_mode(*m),
                                _ => None,
                            })
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    // A veth's IFLA_LINK is its peer, not a lower device.
    if !matches!(
        link.kind.as_deref(),
        Some("macvlan" | "ipvlan" | "macvtap" | "vlan")
    ) {
        parent_index = None;
    }
    RawLink {
        link,
        parent_index,
        num_vf,
        vfs,
    }
}

/// One `IFLA_VF_INFO`: its VF index and every setting the kernel reported.
fn vf_config(info: &[VfInfo]) -> Option<(u32, VfConfig)> {
    let mut id = None;
    let mut c = VfConfig::default();
    for attr in info {
        match attr {
            VfInfo::Mac(m) => {
                id = Some(m.vf_id);
                c.mac = Some(mac(&m.mac[..6]));
            }
            VfInfo::Vlan(v) => {
                // IFLA_VF_VLAN_LIST, when present, adds the protocol.
                let proto = c.vlan.map_or(VlanProto::Dot1q, |old| old.proto);
                c.vlan = Some(StateVlan {
                    id: v.vlan_id as u16,
                    qos: v.qos as u8,
                    proto,
                });
            }
            VfInfo::VlanList(list) => {
                if let Some(VfVlan::Info(v)) = list.first() {
                    c.vlan = Some(StateVlan {
                        id: v.vlan_id as u16,
                        qos: v.qos as u8,
                        proto: match v.protocol {
                            VlanProtocol::Ieee8021Ad => VlanProto::Dot1ad,
                            _ => VlanProto::Dot1q,
                        },
                    });
                }
            }
            VfInfo::Rate(r) => {
                c.rate = Some(VfRate {
                    min_mbps: r.min_tx_rate,
                    max_mbps: r.max_tx_rate,
                })
            }
            VfInfo::SpoofCheck(s) => c.spoofchk = Some(s.enabled),
            VfInfo::Trust(t) => c.trust = Some(t.enabled),
            VfInfo::LinkState(l) => {
                c.link_state = Some(match l.state {
                    VfLinkState::Enable => crate::config::VfLinkState::Enable,
                    VfLinkState::Disable => crate::config::VfLinkState::Disable,
                    _ => crate::config::VfLinkState::Auto,
                })
            }
            _ => {}
        }
    }
    Some((id?, c))
}

/// `02:00:00:00:00:10`, as `ip` prints a MAC.
fn mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn macvlan_mode(m: MacVlanMode) -> Option<ChildMode> {
    match m {
        MacVlanMode::Bridge => Some(ChildMode::Bridge),
        MacVlanMode::Vepa => Some(ChildMode::Vepa),
        MacVlanMode::Private => Some(ChildMode::Private),
        MacVlanMode::Passthrough => Some(ChildMode::Passthru),
        _ => None,
    }
}

fn ipvlan_mode(m: IpVlanMode) -> Option<ChildMode> {
    match m {
        IpVlanMode::L2 => Some(ChildMode::L2),
        IpVlanMode::L3 => Some(ChildMode::L3),
        IpVlanMode::L3S => Some(ChildMode::L3s),
        _ => None,
    }
}

pub(crate) fn to_macvlan_mode(m: ChildMode) -> MacVlanMode {
    match m {
        ChildMode::Vepa => MacVlanMode::Vepa,
        ChildMode::Private => MacVlanMode::Private,
        ChildMode::Passthru => MacVlanMode::Passthrough,
        _ => MacVlanMode::Bridge,
    }
}

pub(crate) fn to_ipvlan_mode(m: ChildMode) -> IpVlanMode {
    match m {
        ChildMode::L3 => IpVlanMode::L3,
        ChildMode::L3s => IpVlanMode::L3S,
        _ => IpVlanMode::L2,
    }
}
