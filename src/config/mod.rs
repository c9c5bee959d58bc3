//! Node files: the types an operator writes under `/etc/podnet/*.toml`, and
//! how they are loaded, merged and validated.
//!
//! These types are the *desired* state. The JSON schema in
//! `schemas/podnet.schema.json` is generated from them, so a doc comment here
//! is also the hover text an editor shows.

mod diag;
mod load;
mod nodes;
pub mod schema;
pub mod units;
mod validate;

use std::collections::BTreeMap;

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use diag::{Diagnostic, Diagnostics, Location, Sources};
pub use load::{
    load_bytes, load_bytes_for, load_dir, load_dir_for, load_files, node_files, Loaded,
    DEFAULT_CONFIG_DIR,
};
pub use nodes::{glob_match, host_node_name, Match, Skipped};
pub use units::{Bits, Delay, Horizon, Rate};

/// The only file format version this podnet reads.
pub const VERSION: u32 = 1;

/// A podnet node description, merged from every `*.toml` file of the config
/// directory in lexical order (a later file overrides keys of an earlier one).
/// A file with a `[match]` table is merged only on the nodes it names.
///
/// ```toml
/// #:schema /usr/share/podnet/podnet.schema.json
/// version = 1
///
/// [masters.ens192]
/// kind = "ipvlan"
/// mode = "l2"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// File format version; must be 1.
    pub version: u32,
    /// Parents of ipvlan/macvlan pod interfaces, by interface name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub masters: BTreeMap<String, Master>,
    /// SR-IOV physical functions, by interface name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sriov: BTreeMap<String, SriovPf>,
    /// RDMA devices offered to pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdma: Option<Rdma>,
    /// IPIP encapsulation between nodes (Calico semantics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipip: Option<Ipip>,
    /// Named bandwidth tiers: an operator's shorthand for a pair of rates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tiers: BTreeMap<String, Tier>,
    /// Node-wide bandwidth shaping policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shaping: Option<Shaping>,
}

/// A master: the existing host interface that pods' ipvlan or macvlan
/// interfaces hang off. podnet never creates a master; it makes sure it is up
/// with the declared MTU, and manages the optional host shim on it.
///
/// ```toml
/// [masters.ens192]
/// kind = "macvlan"
/// mode = "bridge"
/// mtu = 9000
/// shim = { name = "pn-shim0", addresses = ["172.51.0.230/32"], routes = ["172.51.0.0/24"] }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Master {
    /// Kind of the pod interfaces on this master.
    pub kind: ChildKind,
    /// ipvlan: l2, l3 or l3s; macvlan: bridge, vepa, private or passthru.
    /// Unset: l2 for ipvlan, bridge for macvlan (the CNI plugins' defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ChildMode>,
    /// MTU of the master (and of its shim). Unset: left as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 68, max = 65535))]
    pub mtu: Option<u32>,
    /// Attach the egress shaper to this master (`false`: leave its qdiscs
    /// alone). Unset: shaped once a `[shaping]` table exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shaping: Option<bool>,
    /// The host's own ipvlan/macvlan interface on this master, so the host
    /// can reach its pods (ipvlan and macvlan isolate a master from its children).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shim: Option<Shim>,
}

impl Master {
    /// The mode in effect: the declared one or the kind's default (what the
    /// ipvlan and macvlan CNI plugins default to).
    pub fn effective_mode(&self) -> ChildMode {
        self.mode.unwrap_or(match self.kind {
            ChildKind::Ipvlan => ChildMode::L2,
            ChildKind::Macvlan => ChildMode::Bridge,
        })
    }
}

/// The host's interface on a master, of the master's kind and mode.
///
/// ```toml
/// shim = { name = "pn-shim0", addresses = ["172.51.0.230/32"], routes = ["172.51.0.0/24"] }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Shim {
    /// Interface name (at most 15 bytes).
    #[schemars(length(min = 1, max = 15), extend("format" = "ifname"))]
    pub name: String,
    /// Addresses of the shim, with prefix length.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<PrefixSchema>")]
    pub addresses: Vec<IpNet>,
    /// Pod ranges reached through the shim (routes `dev <shim> scope link`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<PrefixSchema>")]
    pub routes: Vec<IpNet>,
}

/// An IP prefix such as `10.0.0.1/24` or `fd00::/64`.
#[derive(JsonSchema)]
#[schemars(extend("format" = "ip-prefix"))]
#[allow(dead_code)]
struct PrefixSchema(String);

/// An IP address such as `10.0.19.91`.
#[derive(JsonSchema)]
#[schemars(extend("format" = "ip"))]
#[allow(dead_code)]
struct IpSchema(String);

/// Kind of a master's pod interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChildKind {
    Ipvlan,
    Macvlan,
}

/// Mode of ipvlan (l2, l3, l3s) or macvlan (bridge, vepa, private, passthru) interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChildMode {
    L2,
    L3,
    L3s,
    Bridge,
    Vepa,
    Private,
    Passthru,
}

impl ChildMode {
    /// The kind this mode belongs to.
    pub fn kind(self) -> ChildKind {
        match self {
            ChildMode::L2 | ChildMode::L3 | ChildMode::L3s => ChildKind::Ipvlan,
            _ => ChildKind::Macvlan,
        }
    }
}

impl std::fmt::Display for ChildKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChildKind::Ipvlan => "ipvlan",
            ChildKind::Macvlan => "macvlan",
        })
    }
}

impl std::fmt::Display for ChildMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChildMode::L2 => "l2",
            ChildMode::L3 => "l3",
            ChildMode::L3s => "l3s",
            ChildMode::Bridge => "bridge",
            ChildMode::Vepa => "vepa",
            ChildMode::Private => "private",
            ChildMode::Passthru => "passthru",
        })
    }
}

/// An SR-IOV physical function (PF) and its virtual functions (VFs).
///
/// ```toml
/// [sriov.ens2f0]
/// num_vfs = 8
/// vf = { trust = true, spoofchk = false }
/// [sriov.ens2f0.vfs.0]
/// mac = "02:00:00:00:00:10"
/// vlan = 100
/// tier = "gold"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SriovPf {
    /// Number of VFs (`sriov_numvfs`); changing it goes through 0 and resets every VF.
    #[schemars(range(max = 256))]
    pub num_vfs: u32,
    /// Defaults for every VF of this PF.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vf: Option<VfSettings>,
    /// Per-VF settings, by VF index.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vfs: BTreeMap<String, VfSettings>,
    /// Let `driver = "vfio-pci"` bind VFs that have no IOMMU group, through
    /// vfio's unsafe no-IOMMU mode (a VF's user can then DMA anywhere in
    /// the host's memory: for labs and trusted DPDK appliances only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vfio_noiommu: Option<bool>,
}

/// Settings of a VF (NIC-enforced; set through the PF).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VfSettings {
    /// MAC address of the VF.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "mac"))]
    pub mac: Option<String>,
    /// VLAN tag the NIC inserts (0 = none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 4094))]
    pub vlan: Option<u16>,
    /// 802.1p priority of the VLAN tag (needs `vlan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 7))]
    pub qos: Option<u8>,
    /// The VLAN tag's protocol (needs `vlan`); many NICs take only 802.1Q.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan_proto: Option<VlanProto>,
    /// Let the VF change its MAC and enter promiscuous mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<bool>,
    /// MAC anti-spoofing check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spoofchk: Option<bool>,
    /// The VF's link as its user sees it: following the PF's (`auto`),
    /// always up (`enable`, VF-to-VF traffic without a cable) or down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_state: Option<VfLinkState>,
    /// NIC-enforced egress limit of the VF, in whole Mbit/s (the unit
    /// the kernel takes); not with `tier`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tx_rate: Option<Rate>,
    /// Egress rate the NIC guarantees the VF, in whole Mbit/s (few NICs
    /// offer it: QEMU's and Intel's igb do not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tx_rate: Option<Rate>,
    /// Tier whose egress rate becomes the VF's `max_tx_rate` (rounded down
    /// to whole Mbit/s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// The VF's driver: the kernel's VF driver (`kernel`: a netdev the
    /// sriov CNI can move into a pod) or `vfio-pci` (for DPDK and KubeVirt
    /// pods, which take the PCI device itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<VfDriver>,
}

/// Which driver a VF is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum VfDriver {
    // The driver the kernel binds to the VF by itself (igbvf, iavf,
    // mlx5_core...).
    Kernel,
    // vfio-pci, through the VF's `driver_override`.
    VfioPci,
}

impl VfSettings {
    /// These settings with `defaults` filling what they leave unset.
    pub fn over(&self, defaults: &VfSettings) -> VfSettings {
        VfSettings {
            mac: self.mac.clone().or_else(|| defaults.mac.clone()),
            vlan: self.vlan.or(defaults.vlan),
            qos: self.qos.or(defaults.qos),
            vlan_proto: self.vlan_proto.or(defaults.vlan_proto),
            trust: self.trust.or(defaults.trust),
            spoofchk: self.spoofchk.or(defaults.spoofchk),
            link_state: self.link_state.or(defaults.link_state),
            // A per-VF rate or tier replaces the PF-wide one of either kind.
            max_tx_rate: match (&self.max_tx_rate, &self.tier) {
                (None, None) => defaults.max_tx_rate,
                _ => self.max_tx_rate,
            },
            min_tx_rate: self.min_tx_rate.or(defaults.min_tx_rate),
            tier: match (&self.max_tx_rate, &self.tier) {
                (None, None) => defaults.tier.clone(),
                _ => self.tier.clone(),
            },
            driver: self.driver.or(defaults.driver),
        }
    }
}

/// A VF's VLAN protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum VlanProto {
    #[serde(rename = "802.1Q")]
    Dot1q,
    #[serde(rename = "802.1ad")]
    Dot1ad,
}

/// A VF's administrative link state (`ip link set PF vf N state ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum VfLinkState {
    Auto,
    Enable,
    Disable,
}

/// RDMA host channel adapters (HCAs) offered to pods.
///
/// ```toml
/// [rdma]
/// netns_mode = "exclusive"
/// devices = ["mlx5_0"]
/// soft_roce = { rxe0 = "ens192" }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rdma {
    /// RDMA subsystem network namespace mode (`ib_core netns_mode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns_mode: Option<RdmaNetnsMode>,
    /// HCAs offered to pods, each by its name (`mlx5_0`), a netdev one of
    /// its ports sits on (`ens192`) or its PCI address: podnet-cni hands
    /// only these to pods (`rdma` in its conflist entry).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// Soft-RoCE links to create: RDMA device name = network interface.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub soft_roce: BTreeMap<String, String>,
    /// The extended resource podnetd's device plugin registers with
    /// kubelet for the offered HCAs. Default: `rdma/hca`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 3, max = 253),
        regex(pattern = r"^[A-Za-z0-9][-A-Za-z0-9_.]*/[A-Za-z0-9][-A-Za-z0-9_.]*$")
    )]
    pub resource_name: Option<String>,
    /// How many pods may share one offered HCA: the devices per HCA the
    /// plugin lists (the RDMA shared-device plugin's `rdmaHcaMax`).
    /// Default: 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub pods_per_hca: Option<u32>,
}

impl Rdma {
    pub const DEFAULT_RESOURCE: &'static str = "rdma/hca";
    pub const DEFAULT_PODS_PER_HCA: u32 = 1000;
}

/// `shared`: every namespace sees every HCA; `exclusive`: an HCA belongs to one namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RdmaNetnsMode {
    Shared,
    Exclusive,
}

impl RdmaNetnsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RdmaNetnsMode::Shared => "shared",
            RdmaNetnsMode::Exclusive => "exclusive",
        }
    }
}

/// IPIP encapsulation between nodes, with Calico's modes.
///
/// ```toml
/// [ipip]
/// mode = "cross-subnet"
/// device = "tunl0"
/// mtu = 1480
/// [[ipip.peers]]
/// node = "10.0.19.91"
/// pod_cidr = "192.168.118.64/26"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ipip {
    /// never | always | cross-subnet (encapsulate only to peers in another subnet).
    pub mode: IpipMode,
    /// Tunnel device name. Unset: tunl0, the kernel's fallback device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 15), extend("format" = "ifname"))]
    pub device: Option<String>,
    /// Tunnel MTU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 68, max = 65515))]
    pub mtu: Option<u32>,
    /// This node's underlay address, the tunnel's source and what the
    /// peers reach it at. Unset: the address of `local_interface`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<IpSchema>")]
    pub local_address: Option<std::net::IpAddr>,
    /// The underlay interface whose (first IPv4) address is this node's,
    /// when `local_address` is unset. Unset: the one the route to the
    /// first peer leaves by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 15), extend("format" = "ifname"))]
    pub local_interface: Option<String>,
    /// Other nodes and the pod ranges behind them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<IpipPeer>,
}

/// Calico's IPIP modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum IpipMode {
    Never,
    Always,
    CrossSubnet,
}

/// A node reached over IPIP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IpipPeer {
    /// The peer node's underlay address.
    #[schemars(with = "IpSchema")]
    pub node: std::net::IpAddr,
    /// The pod range behind the peer.
    #[schemars(with = "PrefixSchema")]
    pub pod_cidr: IpNet,
}

/// A named pair of rates. Rates are Kubernetes quantities in bit/s as kubelet
/// passes them (`100M` = 100·10^6, `1Gi` = 2^30) or tc-style `100Mbit`.
///
/// ```toml
/// [tiers.gold]
/// egress = "1Gbit"
/// ingress = "1Gbit"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Egress (pod → network) rate. Unset: this tier does not limit egress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Rate>,
    /// Ingress (network → pod) rate. Unset: this tier does not limit ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Rate>,
    /// Bits a pod may send at once above its rate (as the CNI bandwidth
    /// plugin's burst). Unset: one 64 KiB packet (the largest the stack
    /// hands a device at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<Bits>,
    /// EDT: a packet that would wait longer than this is dropped. Unset:
    /// `[shaping] horizon`, else the time four 64 KiB packets take at the
    /// rate, from 250 ms to 2 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizon: Option<Horizon>,
    /// EDT: an ECN-capable packet that would wait longer than this behind
    /// the pod's earlier packets is CE-marked, so its sender slows down
    /// before anything is dropped; `"off"`: never marked. Unset:
    /// `[shaping] ce_threshold`, else 5 ms or two full frames at the rate,
    /// whichever is longer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_threshold: Option<Delay>,
}

/// Node-wide shaping policy.
///
/// ```toml
/// [shaping]
/// default_tier = "silver"
/// backend = "auto"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Shaping {
    /// Tier of a pod that asks for none. Unset: such pods are not shaped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_tier: Option<String>,
    /// edt (eBPF + fq), htb (a class per endpoint address, u32 filters), or
    /// auto (edt where the kernel has sch_fq, else htb). Unset: auto.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<ShapingBackend>,
    /// What to do with explicit rates a pod asks for
    /// (`kubernetes.io/egress-bandwidth` and `ingress-bandwidth`):
    /// `cap` honours them up to `max_rate`, `tier` gives the pod the
    /// slowest tier at least as fast, `ignore` uses its tier only. Unset: cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<AnnotationPolicy>,
    /// The fastest explicit rate a pod may ask for on this node. Unset: no
    /// cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rate: Option<Rate>,
    /// Packets that would wait longer than this are dropped (EDT's drop
    /// horizon): `"2s"`, `"500ms"`. A tier's own `horizon` wins. Unset:
    /// the time four 64 KiB packets take at the pod's rate, from 250 ms to 2 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizon: Option<Horizon>,
    /// ECN-capable packets that would wait longer than this are CE-marked:
    /// `"1ms"`, `"500us"`, `"off"`. A tier's own `ce_threshold` wins. Unset:
    /// 5 ms or two full frames at the pod's rate, whichever is longer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_threshold: Option<Delay>,
}

/// Shaping backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ShapingBackend {
    Auto,
    Edt,
    Htb,
}

/// How explicit per-pod rates are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AnnotationPolicy {
    #[default]
    Cap,
    Tier,
    Ignore,
}
