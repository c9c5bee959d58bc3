//! What the host holds, as plain data: filled by [`crate::observe`] from the
//! kernel, read by [`crate::plan`]. Never read from podnet's own files, so
//! drift is always visible.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config::ChildMode;

/// Prefix of the `ifalias` podnet writes on every link it creates. A link
/// without it is never changed or removed by podnet.
pub const OWNER_ALIAS_PREFIX: &str = "podnet:";

/// Route protocol (`proto 157` in `ip route`) marking routes podnet added.
/// Not among iproute2's registered protocols (/etc/iproute2/rt_protos).
pub const RTPROT_PODNET: u8 = 157;
/// The link group (`IFLA_GROUP`) podnet puts on a link in the very request
/// that creates it, as the kernel takes no ifalias there: a podnet crash
/// between the create and the ifalias mark leaves a link that is still
/// recognisably podnet's. The mark step puts the group back to 0.
pub const PODNET_LINK_GROUP: u32 = 0x706e;

/// The kernel's main routing table.
pub const RT_TABLE_MAIN: u32 = 254;

/// A snapshot of the host's network state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    pub links: Vec<Link>,
    #[serde(default)]
    pub addresses: Vec<Address>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub qdiscs: Vec<Qdisc>,
    /// What podnet's shaper holds on each link that has any of it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shaping: Vec<LinkShaping>,
    /// The shaper's pinned endpoint map; None when it is not pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_map: Option<EndpointMap>,
    /// podnet's HTB tree on each device whose root is podnet's `htb 706e:`:
    /// its classes (with their bfifo leaves and counters) and u32 filters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub htb: Vec<HtbTree>,
    /// The SR-IOV capable devices (PFs) and their VFs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sriov: Vec<Pf>,
    /// vfio, for VFs bound to vfio-pci.
    #[serde(default, skip_serializing_if = "Vfio::is_default")]
    pub vfio: Vfio,
    /// The RDMA subsystem (None: the kernel has no RDMA core loaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdma: Option<RdmaState>,
    /// What this kernel can do, as far as the plan must know.
    #[serde(default)]
    pub kernel: KernelFeatures,
}

/// An SR-IOV physical function: its count from sysfs, its VFs' settings
/// from its netlink VF attributes (`IFLA_VFINFO_LIST`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pf {
    /// The PF's netdev.
    pub name: String,
    /// Its PCI address (`0000:01:00.0`).
    #[serde(default)]
    pub pci: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// The PF's IOMMU group (None: no IOMMU for it, nor for its VFs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iommu_group: Option<String>,
    /// `sriov_totalvfs`: the most VFs the device offers.
    pub total_vfs: u32,
    /// `sriov_numvfs`.
    pub num_vfs: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vfs: Vec<Vf>,
}

/// The RDMA subsystem as the RDMA netlink of this network namespace shows
/// it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RdmaState {
    /// `shared` or `exclusive` (None: the RDMA core is not loaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns_mode: Option<crate::config::RdmaNetnsMode>,
    /// The devices (HCAs) this namespace sees.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<RdmaDevice>,
    /// `/dev/infiniband/rdma_cm` exists (rdma_ucm is loaded).
    #[serde(default)]
    pub rdma_cm: bool,
    /// Which of the modules podnet loads are loaded (`rdma_rxe`,
    /// `ib_uverbs`, `rdma_ucm`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<String>,
    /// The network namespaces other than the initial one that the kernel
    /// would count against a netns mode switch (it refuses one while any
    /// exists), each as where it was found (`/run/netns/NAME`, `pid N
    /// (COMM)`); looked for only when the files want another mode than
    /// the kernel's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_netns: Vec<String>,
    /// The devices registered endpoints hold (see
    /// [`Observed::mark_rdma_users`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<HeldRdma>,
    /// Why the devices could not be read, when they could not: the plan
    /// refuses to touch RDMA then, and nothing else is held up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An RDMA device (HCA).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RdmaDevice {
    /// The kernel's device index (a device made again gets a new one).
    pub index: u32,
    pub name: String,
    /// `ca`, `rnic`...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_type: Option<String>,
    /// `ib`, `roce`, `iw`...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fw: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_guid: Option<String>,
    /// Its driver where the kernel says (`rxe`, `siw`: a software link on a
    /// netdev); known once ib_uverbs is loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Its user verbs char device (`/dev/infiniband/uverbs0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uverbs: Option<String>,
    /// The PCI function it sits on (a VF's or a PF's); None for a
    /// software device (a Soft-RoCE link sits on a netdev).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci: Option<String>,
    /// Every char device of it under /dev/infiniband that the kernel
    /// names: uverbs, and each port's umad and issm (ib_umad loaded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub char_devices: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<RdmaPort>,
}

/// A port of an RDMA device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RdmaPort {
    /// From 1.
    pub index: u32,
    /// `ACTIVE`, `DOWN`...
    pub state: String,
    /// `LINK_UP`, `DISABLED`...
    pub phys_state: String,
    /// The netdev the port sits on (RoCE, iWARP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netdev: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netdev_index: Option<u32>,
    /// `Ethernet` (RoCE) or `InfiniBand`, as sysfs says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_layer: Option<String>,
}

/// An RDMA device a registered endpoint holds (`rdma` in its record):
/// in exclusive mode it sits in the pod's namespace, where the host no
/// longer sees it; in use, not drift.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldRdma {
    pub name: String,
    /// `CONTAINER/IFNAME`.
    pub endpoint: String,
    /// The pod's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
}

impl RdmaState {
    pub fn device(&self, name: &str) -> Option<&RdmaDevice> {
        self.devices.iter().find(|d| d.name == name)
    }

    pub fn has_module(&self, name: &str) -> bool {
        self.modules.iter().any(|m| m == name)
    }

    /// The endpoint holding device `name`, if one does.
    pub fn holder(&self, name: &str) -> Option<&HeldRdma> {
        self.held.iter().find(|h| h.name == name)
    }
}

impl RdmaDevice {
    /// The netdev of its first port.
    pub fn netdev(&self) -> Option<&str> {
        self.ports.first().and_then(|p| p.netdev.as_deref())
    }
}

/// vfio as the kernel has it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vfio {
    /// The vfio-pci driver is there.
    #[serde(default)]
    pub pci_driver: bool,
    /// vfio's unsafe no-IOMMU mode is on.
    #[serde(default)]
    pub noiommu: bool,
    /// This kernel has that mode (CONFIG_VFIO_NOIOMMU).
    #[serde(default)]
    pub noiommu_available: bool,
}

impl Vfio {
    fn is_default(&self) -> bool {
        *self == Vfio::default()
    }
}

/// One VF as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vf {
    pub index: u32,
    /// Its PCI address (the PF's `virtfn<index>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci: Option<String>,
    /// The driver bound to it (`igbvf`, `vfio-pci`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Its netdev in this network namespace, if it has one here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netdev: Option<String>,
    /// Its IOMMU group (None: the host has no IOMMU for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iommu_group: Option<String>,
    /// Why it is in use, when it is (its netdev left this namespace: a
    /// pod's, as sriov-cni moves it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_use: Option<String>,
    #[serde(flatten)]
    pub config: VfConfig,
}

/// A VF's settings as the PF holds them: every field as observed, or, in a
/// plan step, only the fields it sets (None: left as it is).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VfConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// VLAN id, 802.1p priority and protocol (id 0: untagged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<VfVlan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spoofchk: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_state: Option<crate::config::VfLinkState>,
    /// min and max tx rate, in Mbit/s (0: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<VfRate>,
}

impl VfConfig {
    pub fn is_empty(&self) -> bool {
        *self == VfConfig::default()
    }

    /// The settings this holds (their keys, as the API names them).
    pub fn keys(&self) -> Vec<String> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(o)) => o.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VfVlan {
    pub id: u16,
    #[serde(default)]
    pub qos: u8,
    #[serde(default = "dot1q")]
    pub proto: crate::config::VlanProto,
}

fn dot1q() -> crate::config::VlanProto {
    crate::config::VlanProto::Dot1q
}

/// A VF's tx rates in Mbit/s, as the kernel takes them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VfRate {
    #[serde(default)]
    pub min_mbps: u32,
    #[serde(default)]
    pub max_mbps: u32,
}

/// podnet's HTB tree on one device (the root qdisc itself is in
/// [`Observed::qdiscs`]): every class under `706e:` and every filter on it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HtbTree {
    pub link: String,
    #[serde(default)]
    pub classes: Vec<HtbClass>,
    #[serde(default)]
    pub filters: Vec<HtbFilter>,
}

/// One HTB class `706e:<minor>` as the kernel holds it: the limit part
/// (compared by the plan) and its counters (shown, never compared).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HtbClass {
    pub minor: u16,
    /// The rate in bit/s (the kernel keeps bytes/s: a multiple of 8).
    pub rate_bps: u64,
    pub ceil_bps: u64,
    /// The burst (HTB's buffer) as time at the rate, in ns: the kernel
    /// keeps psched ticks of 64 ns.
    pub burst_ns: u64,
    /// The leaf qdisc under the class: its kind and byte limit (bfifo's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf: Option<HtbLeaf>,
    #[serde(default, skip_serializing_if = "ClassStats::is_zero")]
    pub stats: ClassStats,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HtbLeaf {
    pub kind: String,
    /// bfifo's limit in bytes (0 for another kind).
    #[serde(default)]
    pub limit_bytes: u32,
}

/// A class's counters as the kernel dumps them: bytes and packets sent
/// (bytes on the wire, as tc counts them), packets its leaf dropped, and
/// how often the class was over its limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassStats {
    pub bytes: u64,
    pub packets: u64,
    pub drops: u64,
    pub overlimits: u64,
}

impl ClassStats {
    fn is_zero(&self) -> bool {
        *self == ClassStats::default()
    }
}

/// A u32 filter on podnet's HTB root. `ip` is the source address it
/// matches when it is one of podnet's (`match ip src A/32` or `ip6 src
/// A/128`, nothing else); None for any other match, which podnet removes
/// from its own root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HtbFilter {
    pub priority: u16,
    /// The kernel's u32 handle (`800::801`), to delete it by.
    pub handle: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// `ip` is the destination it matches (`ip dst`), not the source: on
    /// podnet's ifb and on a veth pod's host-side veth, which shape ingress.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dst: bool,
    /// The class it sends to (its minor under `706e:`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<u16>,
}

/// Kernel features the plan decides by. The defaults are a full kernel
/// (Linux >= 6.6 with sch_fq), so an observation written by hand (a golden
/// case's) needs to say only what is missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelFeatures {
    /// The fq qdisc is built in, loaded or loadable as a module.
    #[serde(default = "yes")]
    pub sch_fq: bool,
    /// tc programs attach as TCX links (Linux >= 6.6).
    #[serde(default = "yes")]
    pub tcx: bool,
}

impl Default for KernelFeatures {
    fn default() -> Self {
        KernelFeatures {
            sch_fq: true,
            tcx: true,
        }
    }
}

fn yes() -> bool {
    true
}

/// A BPF program the kernel runs, as the plan tells one from another: the
/// id changes with every load, the tag (a hash of the instructions) only
/// with the program, and the maps say which entries it reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BpfProgram {
    pub id: u32,
    /// The kernel's tag, in hex as `bpftool` prints it.
    pub tag: String,
    #[serde(default)]
    pub map_ids: Vec<u32>,
}

/// podnet's shaper on one link: the programs on its egress and ingress
/// hooks (each way they can hang there) and the ledger entry of the root
/// qdisc podnet replaced. The root qdisc itself is in [`Observed::qdiscs`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkShaping {
    pub link: String,
    /// The program of podnet's pinned TCX egress link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcx: Option<BpfProgram>,
    /// The program of podnet's clsact egress filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clsact: Option<BpfProgram>,
    /// The program of podnet's pinned TCX ingress link (the redirect to
    /// the ingress ifb).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_tcx: Option<BpfProgram>,
    /// The program of podnet's clsact ingress filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_clsact: Option<BpfProgram>,
    /// What podnet will put back at the root (its record from this boot);
    /// the kernel cannot tell what a replaced qdisc was, so this one fact
    /// comes from podnet's own ledger under /var/lib/podnet/shaping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_root: Option<String>,
}

/// The endpoint map as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointMap {
    pub id: u32,
    /// Entries, sorted by address, then direction.
    #[serde(default)]
    pub entries: Vec<MapEntry>,
    /// The ifindex the ingress map names as podnet's ingress ifb (0:
    /// none), when that map is pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_device: Option<u32>,
    /// Veth pods' egress tags, by address: the tag map's entries, each
    /// with what the slot map says of its slot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
}

/// A veth pod's egress tag (see `bpf/edt.c`, edt_classify): its address,
/// its slot, the device (ifindex) its shaped egress leaves through and,
/// where HTB shapes that device, the id of the pod's class there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Tag {
    pub ip: IpAddr,
    pub slot: u16,
    pub ifindex: u32,
    /// HTB: 706e:<minor> as tc's 32-bit classid; 0 with EDT.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub classid: u32,
    /// The slot map names this address at this slot (false: the tag is
    /// half written, or the slot is another's, or only the slot map has
    /// it: `ifindex` 0).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub whole: bool,
}

fn is_true(b: &bool) -> bool {
    *b
}

/// Which way an endpoint's traffic goes: egress (from the pod, keyed by
/// its source address) or ingress (to the pod, by destination): through
/// podnet's ifb (a macvlan/ipvlan pod's), or at the pod's own host-side
/// veth (a veth pod's).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    #[default]
    Egress,
    Ingress,
    #[serde(rename = "pod-ingress")]
    PodIngress,
}

impl Direction {
    pub fn is_egress(&self) -> bool {
        *self == Direction::Egress
    }

    /// The way the traffic goes, as the API's rows name it.
    pub fn way(&self) -> &'static str {
        match self {
            Direction::Egress => "egress",
            Direction::Ingress | Direction::PodIngress => "ingress",
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::Egress => "egress",
            Direction::Ingress => "ingress",
            Direction::PodIngress => "veth ingress",
        })
    }
}

/// One entry of the endpoint map: the limit part (its clock and counters
/// are the datapath's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapEntry {
    pub ip: IpAddr,
    #[serde(default, skip_serializing_if = "Direction::is_egress")]
    pub direction: Direction,
    pub rate_bps: u64,
    pub horizon_ns: u64,
    pub burst_ns: u64,
    #[serde(default)]
    pub ns_per_byte_q24: u64,
    /// CE-mark above this wait (ns); 0 = never mark.
    #[serde(default)]
    pub ce_threshold_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `IFLA_INFO_KIND` (`veth`, `macvlan`, `ipvlan`, ...); None for a
    /// physical device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The lower device (`IFLA_LINK`) of a macvlan/ipvlan/vlan, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// ipvlan or macvlan mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ChildMode>,
    pub mtu: u32,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Operational state as the kernel reports it (`up`, `down`, `lowerlayerdown`...).
    #[serde(default)]
    pub oper: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The link group (`IFLA_GROUP`); 0 is the kernel's default.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub group: u32,
    /// Transmit queues (`IFLA_NUM_TX_QUEUES`): more than one gets mq with
    /// an fq per queue when shaped.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub tx_queues: u32,
}

fn one() -> u32 {
    1
}

fn is_one(v: &u32) -> bool {
    *v == 1
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl Link {
    /// A link podnet created but had no time to mark (it crashed between
    /// the two requests): podnet's group, no ifalias at all.
    pub fn is_half_created(&self) -> bool {
        self.group == PODNET_LINK_GROUP && self.alias.is_none()
    }

    /// Whether podnet created this link (its alias carries podnet's mark).
    pub fn is_owned(&self) -> bool {
        self.alias
            .as_deref()
            .is_some_and(|a| a.starts_with(OWNER_ALIAS_PREFIX))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Address {
    pub link: String,
    pub prefix: IpNet,
}

impl Address {
    /// IPv6 link-local addresses are the kernel's, made for every link.
    pub fn is_kernel_link_local(&self) -> bool {
        matches!(self.prefix.addr(), IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    /// Output interface, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    pub protocol: u8,
    #[serde(default = "main_table")]
    pub table: u32,
}

fn main_table() -> u32 {
    RT_TABLE_MAIN
}

impl Route {
    pub fn is_owned(&self) -> bool {
        self.protocol == RTPROT_PODNET
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Qdisc {
    pub link: String,
    pub kind: String,
    /// Written `major:minor` (hex) as tc prints it, `root`, or `ingress`.
    #[serde(with = "tc_handle_text")]
    pub handle: u32,
    #[serde(with = "tc_handle_text")]
    pub parent: u32,
}

/// A tc handle as text, the way tc prints it, in serialized state.
mod tc_handle_text {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(h: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::shaping::tc::tc_handle(*h))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let text = String::deserialize(d)?;
        crate::shaping::tc::parse_tc_handle(&text)
            .ok_or_else(|| D::Error::custom(format!("not a tc handle: {text:?}")))
    }
}

impl Observed {
    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }

    /// Marks the VFs that registered endpoints name (their `vf`) in use,
    /// unless the host already shows them in use for another reason.
    pub fn mark_vf_users(&mut self, endpoints: &[crate::api::types::EndpointRecord]) {
        for vf in self.sriov.iter_mut().flat_map(|pf| pf.vfs.iter_mut()) {
            if vf.in_use.is_some() {
                continue;
            }
            let Some(pci) = vf.pci.as_deref() else {
                continue;
            };
            if let Some(e) = endpoints
                .iter()
                .find(|e| e.endpoint.vf.as_deref() == Some(pci))
            {
                vf.in_use = Some(format!(
                    "endpoint {}/{} is registered on it",
                    e.container_id, e.ifname
                ));
            }
        }
    }

    /// Records the RDMA devices registered endpoints hold (their `rdma`).
    pub fn mark_rdma_users(&mut self, endpoints: &[crate::api::types::EndpointRecord]) {
        let held: Vec<HeldRdma> = endpoints
            .iter()
            .filter_map(|e| {
                Some(HeldRdma {
                    name: e.endpoint.rdma.clone()?,
                    endpoint: format!("{}/{}", e.container_id, e.ifname),
                    netns: e.endpoint.netns.clone(),
                })
            })
            .collect();
        if let Some(r) = &mut self.rdma {
            r.held = held;
        }
    }

    /// The SR-IOV PF `name`, if it is one.
    pub fn pf(&self, name: &str) -> Option<&Pf> {
        self.sriov.iter().find(|p| p.name == name)
    }

    pub fn addresses_of<'a>(&'a self, link: &'a str) -> impl Iterator<Item = &'a Address> + 'a {
        self.addresses.iter().filter(move |a| a.link == link)
    }

    /// podnet's HTB tree on `link`, if its root is podnet's htb.
    pub fn htb_of(&self, link: &str) -> Option<&HtbTree> {
        self.htb.iter().find(|t| t.link == link)
    }

    /// podnet's shaper on `link`, if it has any of it.
    pub fn shaping_of(&self, link: &str) -> Option<&LinkShaping> {
        self.shaping.iter().find(|s| s.link == link)
    }

    /// The podnet program on `link`'s hook for `prog`, hung in `mode`.
    pub fn program_on(
        &self,
        link: &str,
        prog: crate::shaping::Prog,
        mode: crate::shaping::AttachMode,
    ) -> Option<&BpfProgram> {
        use crate::shaping::AttachMode;
        let s = self.shaping_of(link)?;
        let ingress = prog.hook_name() == "ingress";
        match (ingress, mode) {
            (true, AttachMode::Tcx) => s.ingress_tcx.as_ref(),
            (true, AttachMode::Clsact) => s.ingress_clsact.as_ref(),
            (false, AttachMode::Tcx) => s.tcx.as_ref(),
            (false, AttachMode::Clsact) => s.clsact.as_ref(),
        }
    }

    /// Children (macvlan/ipvlan/vlan...) whose lower device is `parent`.
    pub fn children_of<'a>(&'a self, parent: &'a str) -> impl Iterator<Item = &'a Link> + 'a {
        self.links
            .iter()
            .filter(move |l| l.parent.as_deref() == Some(parent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VF a registered endpoint names is in use; a VF already in use for
    /// a reason of the host's keeps that reason; other VFs stay free.
    #[test]
    fn endpoints_naming_a_vf_mark_it_in_use() {
        let vf = |index: u32, pci: &str, in_use: Option<&str>| Vf {
            index,
            pci: Some(pci.into()),
            driver: Some("igbvf".into()),
            netdev: None,
            iommu_group: None,
            in_use: in_use.map(Into::into),
            config: VfConfig::default(),
        };
        let mut observed = Observed {
            sriov: vec![Pf {
                name: "enp1s0".into(),
                pci: "0000:01:00.0".into(),
                driver: Some("igb".into()),
                iommu_group: None,
                total_vfs: 7,
                num_vfs: 3,
                vfs: vec![
                    vf(0, "0000:01:10.0", None),
                    vf(1, "0000:01:10.2", Some("its netdev left")),
                    vf(2, "0000:01:10.4", None),
                ],
            }],
            ..Observed::default()
        };
        let record = |id: &str, pci: &str| {
            serde_json::from_value::<crate::api::types::EndpointRecord>(serde_json::json!({
                "container_id": id, "ifname": "net1", "ips": [], "vf": pci,
                "registered_at": 1
            }))
            .unwrap()
        };
        observed.mark_vf_users(&[record("a", "0000:01:10.0"), record("b", "0000:01:10.2")]);
        let in_use: Vec<Option<&str>> = observed.sriov[0]
            .vfs
            .iter()
            .map(|v| v.in_use.as_deref())
            .collect();
        assert_eq!(
            in_use,
            [
                Some("endpoint a/net1 is registered on it"),
                Some("its netdev left"),
                None
            ]
        );
    }
}
