//! The types the socket API speaks, shared by podnetd, podnetctl and
//! podnet-cni. The OpenAPI document in `schemas/` is generated from them.

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch.
pub type UnixMillis = u64;

/// `GET /v1/status`: where the node stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Status {
    /// Generation of the node files in force: it grows each time a changed,
    /// valid set of files is loaded.
    pub generation: u64,
    /// The newest generation the host was verified to match, if any.
    pub converged_generation: Option<u64>,
    /// The host matches the node files in force right now.
    pub converged: bool,
    /// Reconcile passes run since the daemon started.
    pub passes: u64,
    /// The last reconcile, if one ran.
    pub last_reconcile: Option<Reconcile>,
    /// The last edit of the node files that was rejected (still in the files).
    pub rejected: Option<Rejection>,
    /// Every declared object and how it stands.
    pub objects: Vec<ObjectState>,
    /// Reasons the plan cannot run (a missing master...).
    pub problems: Vec<String>,
    /// Objects another agent keeps changing back, and how long podnet waits.
    pub fights: Vec<Fight>,
    /// Declared sections this version validates but does not apply.
    pub unsupported: Vec<String>,
    /// What holds only from the next boot on (the RDMA netns mode while
    /// other network namespaces exist): podnet wrote the boot setting;
    /// not converged until the kernel runs it.
    #[serde(default)]
    pub pending_reboot: Vec<String>,
    /// A `podnetctl try` waiting for confirmation.
    pub trial: Option<Trial>,
    /// The last trial that was not confirmed in time and was rolled back.
    pub reverted: Option<Reverted>,
    /// The devices shaped by EDT, as the last pass left them.
    #[serde(default)]
    pub shaping: Vec<ShapedDevice>,
}

/// A generation on trial: rolled back to `previous_generation` at
/// `deadline` unless confirmed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Trial {
    pub generation: u64,
    pub previous_generation: u64,
    pub deadline: UnixMillis,
}

/// A trial that timed out: its generation is not in force until the files
/// change again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Reverted {
    pub generation: u64,
    pub to_generation: u64,
    pub at: UnixMillis,
}

/// `POST /v1/try`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TryAnswer {
    pub trial: Trial,
    pub reconcile: Reconcile,
}

/// One reconcile: what started it, how it went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Reconcile {
    pub at: UnixMillis,
    pub took_ms: f64,
    /// What started it: `start`, `files`, `kernel`, `timer`, `request`.
    pub trigger: String,
    /// `converged` (nothing to do), `applied`, `failed` or `blocked`.
    pub outcome: String,
    /// Steps applied.
    pub steps: usize,
    pub error: Option<String>,
}

/// An edit of the node files that was refused as a whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Rejection {
    pub at: UnixMillis,
    /// Every error, `file:line:col: key: message`.
    pub errors: Vec<String>,
}

/// How one declared object stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ObjectState {
    /// `master ens192`, `shim pn-shim0`.
    pub object: String,
    /// `converged`, `drifted` or `failed`.
    pub state: String,
    /// Steps still to run on it.
    pub pending: Vec<String>,
}

/// An object another agent keeps changing back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Fight {
    pub object: String,
    /// Repairs in the current window.
    pub repairs: u32,
    /// Until when podnet leaves it alone.
    pub backoff_until: UnixMillis,
}

/// `GET /v1/node`: what the CNI plugin needs to know about this node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Node {
    pub generation: u64,
    pub converged_generation: Option<u64>,
    pub masters: Vec<MasterInfo>,
    pub tiers: Vec<TierInfo>,
    pub default_tier: Option<String>,
    /// The declared SR-IOV PFs and their VFs, as the host holds them.
    #[serde(default)]
    pub sriov: Vec<PfInfo>,
    /// The RDMA subsystem and its HCAs, where the node files have `[rdma]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdma: Option<RdmaInfo>,
}

/// The RDMA subsystem as podnet's namespace sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RdmaInfo {
    /// The kernel's netns mode, `shared` or `exclusive` (None: no RDMA
    /// core loaded).
    pub netns_mode: Option<crate::config::RdmaNetnsMode>,
    /// `/dev/infiniband/rdma_cm`, where rdma_ucm is loaded: every pod
    /// that uses the RDMA connection manager needs it.
    pub rdma_cm: Option<String>,
    /// Every HCA the host sees, and those registered endpoints hold in
    /// their namespaces.
    pub hcas: Vec<HcaInfo>,
}

/// An RDMA device (HCA).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HcaInfo {
    pub name: String,
    /// `rdma.devices` offers it to pods (by its name, a netdev of its
    /// ports or its PCI address).
    pub offered: bool,
    /// `rxe`, `mlx5`...: known once ib_uverbs is loaded.
    pub driver: Option<String>,
    /// `ca`, `rnic`...
    pub node_type: Option<String>,
    pub node_guid: Option<String>,
    pub fw: Option<String>,
    /// The PCI function it sits on; None for a software device.
    pub pci: Option<String>,
    /// Empty while it sits in a pod's namespace (the host cannot see it).
    pub ports: Vec<HcaPortInfo>,
    /// The char devices a pod that uses it needs mounted: its uverbs,
    /// umad and issm devices (and `rdma_cm`, in [`RdmaInfo`]).
    pub char_devices: Vec<String>,
    /// Where it is: `shared` (every namespace sees it), `host` (podnet's
    /// namespace, in exclusive mode) or the pod's namespace path.
    pub netns: String,
    /// `CONTAINER/IFNAME` of the endpoint that holds it, if one does.
    pub endpoint: Option<String>,
}

/// A port of an HCA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HcaPortInfo {
    /// From 1.
    pub index: u32,
    /// `ACTIVE`, `DOWN`...
    pub state: String,
    /// `LINK_UP`, `DISABLED`...
    pub phys_state: String,
    /// `Ethernet` (RoCE) or `InfiniBand`.
    pub link_layer: Option<String>,
    /// The netdev it sits on (RoCE, iWARP).
    pub netdev: Option<String>,
}

/// An SR-IOV PF the node files declare.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PfInfo {
    /// The PF's netdev.
    pub name: String,
    /// Its PCI address.
    pub pci: String,
    pub driver: Option<String>,
    /// The most VFs it offers (`sriov_totalvfs`).
    pub total_vfs: u32,
    /// VFs it has now (`sriov_numvfs`).
    pub num_vfs: u32,
    pub vfs: Vec<VfInfo>,
}

/// One VF, as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VfInfo {
    pub index: u32,
    /// Its PCI address (for vfio-pci and device plugins).
    pub pci: Option<String>,
    /// Its netdev in the host's network namespace; None when it has none
    /// there (bound to vfio-pci, unbound, or moved into a pod).
    pub netdev: Option<String>,
    /// The driver bound to it (`igbvf`, `vfio-pci`), if any.
    pub driver: Option<String>,
    /// Why it is in use (its netdev left the host namespace: a pod's);
    /// None when free to allocate.
    pub in_use: Option<String>,
    pub mac: Option<String>,
    /// VLAN id the NIC inserts (0: none).
    pub vlan: u16,
    /// 802.1p priority of that tag.
    pub qos: u8,
    pub vlan_proto: crate::config::VlanProto,
    pub spoofchk: Option<bool>,
    pub trust: Option<bool>,
    pub link_state: Option<crate::config::VfLinkState>,
    /// Mbit/s (0: none).
    pub min_tx_rate_mbps: u32,
    /// Mbit/s (0: none).
    pub max_tx_rate_mbps: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MasterInfo {
    pub name: String,
    /// `ipvlan` or `macvlan`.
    pub kind: String,
    pub mode: String,
    pub mtu: Option<u32>,
    pub shim: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TierInfo {
    pub name: String,
    /// bit/s.
    pub egress: Option<u64>,
    /// bit/s.
    pub ingress: Option<u64>,
}

/// A pod interface registered by the CNI plugin:
/// `PUT /v1/endpoints/{container_id}/{ifname}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Path of the pod's network namespace (`CNI_NETNS`).
    #[serde(default)]
    pub netns: Option<String>,
    /// The pod's addresses.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub ips: Vec<IpNet>,
    /// The master the pod's interface hangs off (a veth pod: the shaping
    /// device its traffic leaves through).
    #[serde(default)]
    pub master: Option<String>,
    /// A veth pod's host-side veth (the interface before the pod's in
    /// `prevResult`, on the host): what the pod receives is shaped there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub veth: Option<String>,
    /// A tier name from the node files.
    #[serde(default)]
    pub tier: Option<String>,
    /// Explicit egress rate, bit/s (from the CNI bandwidth capability).
    #[serde(default)]
    pub egress: Option<u64>,
    /// Explicit ingress rate, bit/s.
    #[serde(default)]
    pub ingress: Option<u64>,
    /// The CNI network (the conflist's `name`) that registered it: GC of
    /// one network leaves the endpoints of others alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The SR-IOV VF the pod's interface is, by PCI address (the CNI
    /// config's `deviceID`): the VF is in use while the endpoint is
    /// registered, so podnet refuses to destroy or rebind it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vf: Option<String>,
    /// The RDMA device (HCA) handed to the pod: in exclusive netns mode
    /// podnet-cni moved it into the pod's namespace. Held while the
    /// endpoint is registered: in use, not drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub rdma: Option<String>,
}

/// An endpoint as the registry holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EndpointRecord {
    pub container_id: String,
    pub ifname: String,
    #[serde(flatten)]
    pub endpoint: Endpoint,
    pub registered_at: UnixMillis,
    /// What the node's policy makes of the endpoint's tier and rates
    /// (recomputed when the node files change).
    #[serde(default)]
    pub limits: Option<Limits>,
    /// Whether the egress limit is in force in the kernel now: filled in
    /// by podnetd's answers (never stored); absent when podnet does not
    /// shape this endpoint (no egress limit, or its master does not shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcement: Option<Enforcement>,
    /// What the shaper does with the endpoint's traffic now, one row per
    /// direction podnet shapes it in (today `egress` only): filled in by
    /// podnetd's answers (never stored); empty when podnet shapes none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traffic: Vec<Traffic>,
}

/// One direction of an endpoint's shaped traffic, as the kernel counts it,
/// summed over the endpoint's addresses (the shaper keeps one map entry or
/// one HTB class per address).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Traffic {
    /// `egress` (`ingress` rows join when podnet shapes ingress).
    pub direction: String,
    /// `edt` (the program and fq) or `htb` (a class per address).
    pub backend: String,
    /// The limit, bit/s.
    pub limit_bps: u64,
    /// The rate achieved over podnetd's last sampling interval (about a
    /// second), bit/s on the wire; null until two samples of every address
    /// exist.
    pub rate_bps: Option<u64>,
    /// Bytes let through (on the wire, as the shaper counts them).
    pub bytes: u64,
    /// Packets let through.
    pub packets: u64,
    /// Packets dropped: at the horizon (EDT), by the class's leaf (HTB).
    pub drops: u64,
    /// EDT: packets CE-marked for waiting longer than the marking threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marks: Option<u64>,
    /// EDT: the endpoint's backlog now, µs: how far its departure clock is
    /// ahead of the kernel's (the longest over its addresses; 0 when idle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_delay_us: Option<u64>,
    /// HTB: how often a packet found the class over its rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlimits: Option<u64>,
}

/// What podnetd finds in the kernel for one endpoint's egress limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Enforcement {
    /// The master shaped and the map holding the limit for every address.
    pub enforced: bool,
    /// The device the endpoint's egress is shaped on (its master).
    pub device: Option<String>,
    /// What is missing, one line each (empty when enforced).
    pub problems: Vec<String>,
}

/// A device podnet shapes, as the last pass found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ShapedDevice {
    pub device: String,
    /// The kernel id of the EDT program on its egress hook (0 with HTB).
    pub program_id: u32,
    /// `edt` (the program and fq) or `htb` (a class per endpoint address
    /// under podnet's htb root, selected by u32 filters).
    #[serde(default = "edt")]
    pub backend: String,
}

fn edt() -> String {
    "edt".into()
}

/// The rates an endpoint is held to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Limits {
    /// bit/s; null: not limited.
    pub egress: Option<u64>,
    pub ingress: Option<u64>,
    /// bits.
    pub burst: Option<u64>,
    pub tier: Option<String>,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApiError {
    pub error: String,
}

/// `POST /v1/reconcile`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReconcileAnswer {
    pub generation: u64,
    pub reconcile: Reconcile,
}

/// What `POST /v1/reconcile` may ask of the pass it runs (query
/// `?force=true&max_disruption=hitless`), as `podnetctl apply` does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcileOptions {
    /// Apply even steps that interrupt the interface carrying the node's
    /// default route.
    pub force: bool,
    /// Refuse the pass's plan (nothing applied) when a step is more
    /// disruptive than this.
    pub max_disruption: Option<crate::plan::Disruption>,
}

impl ReconcileOptions {
    /// The query string that carries these options ("" for none).
    pub fn query(&self) -> String {
        let mut parts = Vec::new();
        if self.force {
            parts.push("force=true".to_string());
        }
        if let Some(d) = self.max_disruption {
            parts.push(format!("max_disruption={d}"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    }

    /// Parses [`ReconcileOptions::query`]'s output (without the `?`).
    pub fn parse(query: Option<&str>) -> Result<ReconcileOptions, String> {
        let mut o = ReconcileOptions::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("force", "true")) => o.force = true,
                Some(("force", "false")) => o.force = false,
                Some(("max_disruption", v)) => {
                    o.max_disruption = Some(v.parse().map_err(|e: String| e)?)
                }
                _ => {
                    return Err(format!(
                        "unknown reconcile option {pair:?} (force=true|false, max_disruption=LEVEL)"
                    ))
                }
            }
        }
        Ok(o)
    }
}
