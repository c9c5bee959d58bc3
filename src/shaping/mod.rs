//! EDT egress shaping: per-endpoint rate limits enforced by an eBPF program
//! on tc egress of the device pods' traffic leaves through (an ipvlan or
//! macvlan master), with fq as that device's root qdisc.
//!
//! The pieces, one file each:
//! - [`abi`]: the map key/value, mirrored from `bpf/include/edt_abi.h`;
//! - `program`: loading `bpf/edt.c` with aya, attaching it (TCX or
//!   clsact), replacing it atomically on upgrade;
//! - [`tc`]: fq / mq+fq at the root, and putting the previous root back;
//! - `record`: what must survive podnetd restarts about each device.
//!
//! State lives in the kernel, not in podnet: the map is pinned at
//! `/sys/fs/bpf/podnet/podnet_edt_v1` and TCX links beside it, so a
//! restart of podnetd (or a crash) leaves shaping running, and the next
//! start picks the same map and links up.
//!
//! ```no_run
//! # async fn demo(kernel: &podnet::kernel::Kernel) -> podnet::error::Result<()> {
//! use podnet::shaping::{AttachMode, EgressLimit, Shaper, ShaperPaths};
//! let mut shaper = Shaper::load(kernel, ShaperPaths::default())?;
//! shaper.attach("ens192", AttachMode::auto()).await?;
//! shaper.set_endpoint("172.51.0.10".parse().unwrap(), &EgressLimit::new(100_000_000))?;
//! for e in shaper.stats()? {
//!     println!("{} {} bytes, {} dropped", e.ip, e.bytes, e.drops);
//! }
//! # Ok(()) }
//! ```

pub mod abi;
pub mod cost;
pub mod observe;
mod program;
mod record;
pub mod tc;
pub mod testrun;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aya::maps::MapError;
use aya::sys::SyscallError;
use aya::Ebpf;
use futures::TryStreamExt;
use netlink_packet_route::link::LinkAttribute;
use serde::{Deserialize, Serialize};

use self::abi::{EdtInfo, EdtKey, EDT_DIR_EGRESS, EDT_DIR_INGRESS, EDT_DIR_POD_INGRESS};
use self::program::EndpointMap;
use self::tc::PreviousRoot;
use crate::error::{Error, ErrorKind, Result};
use crate::kernel::{errno, refused, Errno, Kernel};
use crate::state::{Direction, MapEntry};

pub use self::program::{
    hold as hold_program, map_pin, pinned_ingress_device, pinned_tags, Attached, Prog,
    CLSACT_HANDLE, CLSACT_PRIORITY, MAP, PROGRAM,
};

/// podnet's ingress ifb: one per node, made while any endpoint has an
/// ingress limit (see `bpf/edt.c`, edt_redirect).
pub const INGRESS_DEVICE: &str = "podnet-ifb";
/// Its ifalias: podnet's mark, as on every link it creates.
pub const INGRESS_ALIAS: &str = "podnet:ingress ifb";
/// The ifb's own FIFO (per queue) between its root and the receive path it
/// hands packets back to, in packets (the kernel's default is 32). What
/// the root lets go waits there in order while the ifb's softirq delivers
/// the packets before it, each up to a 64 KiB GRO aggregate: a short FIFO
/// keeps the waiting in fq, where a pod's small packets go first.
pub const INGRESS_TXQUEUELEN: u32 = 4;

/// Where the map and TCX links are pinned.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/podnet";
/// Where the per-device records live (see `record`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/podnet/shaping";

/// The drop horizon when none is given: a packet that would wait longer
/// than this in fq is dropped instead (Cilium uses the same 2 s).
pub const DEFAULT_HORIZON: Duration = Duration::from_secs(2);
/// The burst when a tier sets none: one packet of the largest size the
/// stack hands a device at once (a 64 KiB GSO packet). With no burst at
/// all every packet would wait out its own transmission time at the rate,
/// so even a pod far below its limit would have each packet held in fq by
/// a timer; with one packet of credit, a pod under its rate goes straight
/// through, and the first 100 ms of a new pod stay within rate x 0.1 s +
/// this.
pub const DEFAULT_BURST_BYTES: u64 = 64 * 1024;
/// The largest horizon an endpoint may have: fq's own horizon.
pub const MAX_HORIZON: Duration = Duration::from_micros(tc::FQ_HORIZON_US as u64);

const NSEC_PER_SEC: u128 = 1_000_000_000;

/// Paths the shaper keeps its state under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShaperPaths {
    /// On bpffs: the endpoint map and the TCX links.
    pub pin_dir: PathBuf,
    /// Per-device records (the root qdisc to restore).
    pub state_dir: PathBuf,
    /// Where podnet's boot-time module options go (modprobe.d: the RDMA
    /// netns mode ib_core loads with).
    pub modprobe_dir: PathBuf,
}

/// modprobe's configuration directory.
pub const DEFAULT_MODPROBE_DIR: &str = "/etc/modprobe.d";

impl Default for ShaperPaths {
    fn default() -> Self {
        ShaperPaths {
            pin_dir: DEFAULT_PIN_DIR.into(),
            state_dir: DEFAULT_STATE_DIR.into(),
            modprobe_dir: DEFAULT_MODPROBE_DIR.into(),
        }
    }
}

/// How the program hangs on tc egress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// A pinned TCX link (Linux >= 6.6).
    Tcx,
    /// A clsact direct-action filter (any kernel with clsact).
    Clsact,
}

impl AttachMode {
    /// TCX where the kernel has it, clsact before 6.6.
    pub fn auto() -> AttachMode {
        match aya::util::KernelVersion::current() {
            Ok(v) if v >= aya::util::KernelVersion::new(6, 6, 0) => AttachMode::Tcx,
            _ => AttachMode::Clsact,
        }
    }
}

impl AttachMode {
    /// `PODNET_ATTACH_MODE=tcx|clsact`: another mode than the kernel's
    /// best, for tests of a mode switch (as a kernel upgrade makes one).
    pub fn from_env() -> Option<AttachMode> {
        match std::env::var("PODNET_ATTACH_MODE").ok()?.as_str() {
            "tcx" => Some(AttachMode::Tcx),
            "clsact" => Some(AttachMode::Clsact),
            _ => None,
        }
    }
}

impl std::fmt::Display for AttachMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AttachMode::Tcx => "tcx",
            AttachMode::Clsact => "clsact",
        })
    }
}

/// An endpoint's egress limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EgressLimit {
    /// bit/s on the wire (Ethernet frames as tc counts them); 0 counts the
    /// endpoint's traffic without limiting it.
    pub rate_bps: u64,
    /// A packet that would leave later than this from now is dropped.
    pub horizon: Duration,
    /// Bytes an endpoint may send at once after being idle.
    pub burst_bytes: u64,
    /// An ECN-capable packet that waits longer than this behind the
    /// endpoint's earlier packets is CE-marked; zero: never marked.
    pub ce_threshold: Duration,
}

impl EgressLimit {
    /// `rate_bps` with the default horizon, no burst and no marking.
    pub fn new(rate_bps: u64) -> EgressLimit {
        EgressLimit {
            rate_bps,
            horizon: DEFAULT_HORIZON,
            burst_bytes: 0,
            ce_threshold: Duration::ZERO,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.horizon.is_zero() || self.horizon > MAX_HORIZON {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "horizon {:?} is outside (0, {MAX_HORIZON:?}]: fq's own horizon",
                    self.horizon
                ),
            ));
        }
        Ok(())
    }

    /// The burst as the datapath holds it: how far the departure clock may
    /// lag behind now, in ns at the rate.
    fn burst_ns(&self) -> u64 {
        match self.rate_bytes() {
            0 => 0,
            r => u64::try_from(u128::from(self.burst_bytes) * NSEC_PER_SEC / u128::from(r))
                .unwrap_or(u64::MAX),
        }
    }

    fn horizon_ns(&self) -> u64 {
        u64::try_from(self.horizon.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether a map entry holds this limit (its clock and counters are
    /// the datapath's and not compared).
    pub fn matches(&self, entry: &EndpointStats) -> bool {
        self.entry(entry.ip) == entry.entry()
    }

    /// The map entry that holds this limit for `ip`. An entry an older
    /// podnet wrote has no multiplier, so it differs: rewritten, it costs
    /// the datapath a division less a packet.
    pub fn entry(&self, ip: IpAddr) -> MapEntry {
        self.entry_in(ip, Direction::Egress)
    }

    /// The map entry that holds this limit for `ip` in `direction`.
    pub fn entry_in(&self, ip: IpAddr, direction: Direction) -> MapEntry {
        MapEntry {
            ip,
            direction,
            rate_bps: self.rate_bytes().saturating_mul(8),
            horizon_ns: self.horizon_ns(),
            burst_ns: self.burst_ns(),
            ns_per_byte_q24: abi::ns_per_byte_q24(self.rate_bytes()),
            ce_threshold_ns: u64::try_from(self.ce_threshold.as_nanos()).unwrap_or(u64::MAX),
        }
    }

    /// Bytes per second, as the datapath divides by it.
    fn rate_bytes(&self) -> u64 {
        match self.rate_bps {
            0 => 0,
            bps => (bps / 8).max(1),
        }
    }
}

/// What the map holds for one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointStats {
    pub ip: IpAddr,
    /// Egress, ingress through the ifb, or a veth pod's ingress (JSON:
    /// `egress`, `ingress`, `pod-ingress`).
    pub direction: Direction,
    pub rate_bps: u64,
    pub horizon_ns: u64,
    pub burst_ns: u64,
    /// The datapath's multiplier for the rate (0: it divides).
    #[serde(skip)]
    pub ns_per_byte_q24: u64,
    /// Bytes and packets let through (bytes on the wire).
    pub bytes: u64,
    pub packets: u64,
    /// Packets dropped at the horizon, and their bytes.
    pub drops: u64,
    pub drop_bytes: u64,
    /// CE-mark above this wait (0: never), and the packets marked.
    pub ce_threshold_ns: u64,
    pub marks: u64,
    /// The departure clock (CLOCK_MONOTONIC ns): when the endpoint's last
    /// scheduled byte may leave. Ahead of now by its backlog (see
    /// [`EndpointStats::queue_delay_ns`]); behind now after idle.
    pub t_last: u64,
}

/// The pinned endpoint map, opened directly: for readers and writers that
/// do not load the program.
pub struct Endpoints {
    map: EndpointMap,
}

impl Endpoints {
    /// Opens the map pinned under `pin_dir`.
    pub fn open(pin_dir: &Path) -> Result<Endpoints> {
        Ok(Endpoints {
            map: program::open_map(pin_dir)?,
        })
    }

    /// Sets `ip`'s egress limit. The departure clock and the counters of an
    /// existing entry are kept, so changing a rate neither drops what is
    /// already scheduled nor resets the statistics. (The map write replaces
    /// the element; a packet being accounted on another CPU at that instant
    /// may lose its count.)
    pub fn set(&mut self, ip: IpAddr, limit: &EgressLimit) -> Result<()> {
        self.set_in(ip, limit, Direction::Egress)
    }

    /// [`Endpoints::set`] in `direction`.
    pub fn set_in(&mut self, ip: IpAddr, limit: &EgressLimit, direction: Direction) -> Result<()> {
        limit.validate()?;
        self.set_entry(&limit.entry_in(ip, direction))
    }

    /// Writes the limit part of an entry as it is (a plan's step, or the
    /// undo of one), keeping the clock and counters as [`Endpoints::set`].
    pub fn set_entry(&mut self, entry: &MapEntry) -> Result<()> {
        let ip = entry.ip;
        let key = EdtKey::new(ip, dir_code(entry.direction));
        let mut info = match self.map.get(&key, 0) {
            Ok(old) => old,
            Err(MapError::KeyNotFound) => EdtInfo::default(),
            Err(e) => return Err(program::bpf_error(format!("reading the entry of {ip}"), e)),
        };
        info.rate_bytes = entry.rate_bps / 8;
        info.ns_per_byte_q24 = entry.ns_per_byte_q24;
        info.horizon_ns = entry.horizon_ns;
        info.burst_ns = entry.burst_ns;
        info.ce_threshold_ns = entry.ce_threshold_ns;
        self.map
            .insert(key, info, 0)
            .map_err(|e| program::bpf_error(format!("setting the limit of {ip}"), e))
    }

    /// The map's kernel id.
    pub fn id(&self) -> Result<u32> {
        program::map_id(&self.map)
    }

    /// The map's kernel id and its entries: what the plan observes (the
    /// ingress device is the ingress map's, read beside it).
    pub fn observed(&self) -> Result<crate::state::EndpointMap> {
        Ok(crate::state::EndpointMap {
            id: program::map_id(&self.map)?,
            entries: self.stats()?.iter().map(EndpointStats::entry).collect(),
            ingress_device: None,
            tags: Vec::new(),
        })
    }

    /// Removes `ip`'s egress entry; false when it had none.
    pub fn remove(&mut self, ip: IpAddr) -> Result<bool> {
        self.remove_in(ip, Direction::Egress)
    }

    /// Removes `ip`'s entry in `direction`; false when it had none.
    pub fn remove_in(&mut self, ip: IpAddr, direction: Direction) -> Result<bool> {
        match self.map.remove(&EdtKey::new(ip, dir_code(direction))) {
            Ok(()) => Ok(true),
            Err(MapError::SyscallError(SyscallError { io_error, .. }))
                if io_error.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(false)
            }
            Err(e) => Err(program::bpf_error(format!("removing {ip}"), e)),
        }
    }

    /// Every entry with its counters, sorted by address.
    pub fn stats(&self) -> Result<Vec<EndpointStats>> {
        let mut out = Vec::new();
        for item in self.map.iter() {
            let (key, info) = match item {
                Ok(kv) => kv,
                // Removed between the key walk and the lookup.
                Err(MapError::KeyNotFound) => continue,
                Err(e) => return Err(program::bpf_error("reading the endpoint map", e)),
            };
            let Some(ip) = key.ip() else { continue };
            out.push(EndpointStats::of(ip, key.direction, &info));
        }
        out.sort_by_key(|s| (s.ip, s.direction));
        Ok(out)
    }

    /// `ip`'s egress entry, if any: one lookup, whatever the map holds.
    pub fn get(&self, ip: IpAddr) -> Result<Option<EndpointStats>> {
        self.get_in(ip, Direction::Egress)
    }

    /// `ip`'s entry in `direction`, if any: one lookup.
    pub fn get_in(&self, ip: IpAddr, direction: Direction) -> Result<Option<EndpointStats>> {
        let dir = dir_code(direction);
        match self.map.get(&EdtKey::new(ip, dir), 0) {
            Ok(info) => Ok(Some(EndpointStats::of(ip, dir, &info))),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(program::bpf_error(format!("reading the entry of {ip}"), e)),
        }
    }
}

impl EndpointStats {
    /// The limit part of the entry, as the plan compares it.
    pub fn entry(&self) -> MapEntry {
        MapEntry {
            ip: self.ip,
            direction: self.direction,
            rate_bps: self.rate_bps,
            horizon_ns: self.horizon_ns,
            burst_ns: self.burst_ns,
            ns_per_byte_q24: self.ns_per_byte_q24,
            ce_threshold_ns: self.ce_threshold_ns,
        }
    }

    fn of(ip: IpAddr, direction: u8, info: &EdtInfo) -> EndpointStats {
        EndpointStats {
            ip,
            direction: match direction {
                EDT_DIR_INGRESS => Direction::Ingress,
                EDT_DIR_POD_INGRESS => Direction::PodIngress,
                _ => Direction::Egress,
            },
            rate_bps: info.rate_bytes.saturating_mul(8),
            horizon_ns: info.horizon_ns,
            burst_ns: info.burst_ns,
            ns_per_byte_q24: info.ns_per_byte_q24,
            bytes: info.bytes,
            packets: info.packets,
            drops: info.drops,
            drop_bytes: info.drop_bytes,
            ce_threshold_ns: info.ce_threshold_ns,
            marks: info.marks,
            t_last: info.t_last,
        }
    }

    /// The backlog at `now` (CLOCK_MONOTONIC ns, the datapath's
    /// `bpf_ktime_get_ns()`): how long a packet scheduled now would wait
    /// behind the ones already scheduled; 0 when the clock is not ahead.
    pub fn queue_delay_ns(&self, now: u64) -> u64 {
        self.t_last.saturating_sub(now)
    }
}

/// A map removal that found nothing removed is as good as done.
fn remove_or_gone(r: std::result::Result<(), MapError>, what: impl Fn() -> String) -> Result<()> {
    match r {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(SyscallError { io_error, .. }))
            if io_error.kind() == std::io::ErrorKind::NotFound =>
        {
            Ok(())
        }
        Err(e) => Err(program::bpf_error(format!("removing {}", what()), e)),
    }
}

/// The map key's direction byte.
fn dir_code(direction: Direction) -> u8 {
    match direction {
        Direction::Egress => EDT_DIR_EGRESS,
        Direction::Ingress => EDT_DIR_INGRESS,
        Direction::PodIngress => EDT_DIR_POD_INGRESS,
    }
}

/// CLOCK_MONOTONIC now in ns: the clock the EDT program schedules by.
pub fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
    })
}

/// The result of [`Shaper::attach`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub mode: AttachMode,
    /// False: the program was attached anew. True: an existing attachment
    /// was switched to this program in place (an upgrade or a restart).
    pub replaced: bool,
    /// podnet put fq (or mq+fq) at the root in this call.
    pub installed_root: bool,
    /// What will be put back when shaping is turned off.
    pub previous_root: PreviousRoot,
}

/// The state of one device, as [`Shaper::status`] reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceStatus {
    pub device: String,
    pub ifindex: u32,
    /// `kind handle` of the root qdisc.
    pub root: String,
    /// fq (or mq with fq on every queue) at the root, podnet's.
    pub fq: bool,
    /// The program id of the pinned TCX link, if any.
    pub tcx_program: Option<u32>,
    /// podnet's clsact filter is there.
    pub clsact_filter: bool,
    /// The program id of podnet's clsact filter, if the kernel says.
    pub clsact_program: Option<u32>,
    /// What turning shaping off would put back.
    pub previous_root: Option<String>,
}

impl DeviceStatus {
    /// The program on the device's egress hook (TCX first), if any.
    pub fn program(&self) -> Option<u32> {
        self.tcx_program.or(self.clsact_program)
    }

    /// fq at the root and a program on the hook: the device is shaped.
    pub fn shaped(&self) -> bool {
        self.fq && (self.tcx_program.is_some() || self.clsact_filter)
    }
}

/// The node's shaper: the loaded program and the endpoint map, attached to
/// any number of devices.
pub struct Shaper {
    kernel: Kernel,
    paths: ShaperPaths,
    ebpf: Ebpf,
    endpoints: Endpoints,
    ingress: program::IngressMap,
    tags: program::TagMap,
    slots: program::SlotMap,
    /// [`Shaper::identity`] per program, read once: a loaded program and
    /// its maps keep their id, tag and maps for good.
    identity: std::collections::BTreeMap<Prog, crate::state::BpfProgram>,
}

struct DeviceInfo {
    ifindex: u32,
    tx_queues: u32,
}

async fn device_info(kernel: &Kernel, device: &str) -> Result<DeviceInfo> {
    let link = link_named(kernel, device)
        .await?
        .ok_or_else(|| Error::new(ErrorKind::NotFoundYet, format!("no interface {device}")))?;
    Ok(DeviceInfo {
        ifindex: link.index,
        tx_queues: link.tx_queues,
    })
}

/// The link named `device` as the kernel has it now; None when there is
/// none.
async fn link_named(kernel: &Kernel, device: &str) -> Result<Option<crate::state::Link>> {
    let mut found = kernel
        .handle()
        .link()
        .get()
        .match_name(device.to_string())
        .execute();
    match found.try_next().await {
        Ok(m) => Ok(m.as_ref().map(crate::observe::link_of)),
        Err(e) if errno(&e) == Some(Errno::ENODEV) => Ok(None),
        Err(e) => Err(refused(e).context(format!("reading {device}"))),
    }
}

/// The records of the devices podnet shaped during this boot (the root
/// qdisc to restore), by ifindex. One directory read: a node that never
/// shaped pays a single failed `open` per reconcile.
pub(crate) fn records(state_dir: &Path) -> std::collections::BTreeMap<u32, record::DeviceRecord> {
    record_indexes(state_dir)
        .filter_map(|i| Some((i, record::load(state_dir, i).ok()??)))
        .collect()
}

/// Forgets the records and unpins the TCX links of devices `observed` no
/// longer has (a veth pod's host side goes with the pod): a link whose
/// device is gone runs nothing, but its pin would keep it and its program
/// loaded for good. A failed removal is logged. Two directory reads; the
/// records themselves are not read.
pub(crate) fn forget_gone(paths: &ShaperPaths, observed: &crate::state::Observed) {
    let live: std::collections::BTreeSet<u32> = observed.links.iter().map(|l| l.index).collect();
    for ifindex in record_indexes(&paths.state_dir).filter(|i| !live.contains(i)) {
        match record::remove(&paths.state_dir, ifindex) {
            Ok(()) => tracing::debug!("ifindex {ifindex}: gone; its shaping record forgotten"),
            Err(e) => tracing::warn!("forgetting the record of a gone device: {e}"),
        }
    }
    for (hook, ifindex) in program::tcx_pinned(&paths.pin_dir) {
        if live.contains(&ifindex) {
            continue;
        }
        let pin = program::tcx_pin_at(&paths.pin_dir, &hook, ifindex);
        match std::fs::remove_file(&pin) {
            Ok(()) => tracing::debug!("ifindex {ifindex}: gone; its TCX {hook} link unpinned"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("unpinning {}: {e}", pin.display()),
        }
    }
}

/// The ifindexes that have a record under `state_dir` (`if<N>.json`).
fn record_indexes(state_dir: &Path) -> impl Iterator<Item = u32> {
    std::fs::read_dir(state_dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            name.to_str()?
                .strip_prefix("if")?
                .strip_suffix(".json")?
                .parse()
                .ok()
        })
}

/// Hangs `prog` (podnet's `which`) on `device`'s hook for it in `mode`
/// (see [`program::attach_tcx`], [`program::attach_clsact`]), adding
/// clsact first where needed and noting that in the record.
#[allow(clippy::too_many_arguments)]
async fn hang(
    kernel: &Kernel,
    paths: &ShaperPaths,
    prog: &mut aya::programs::SchedClassifier,
    which: Prog,
    device: &str,
    ifindex: u32,
    mode: AttachMode,
    rec: &mut record::DeviceRecord,
) -> Result<Attached> {
    match mode {
        AttachMode::Tcx => program::attach_tcx(prog, which, device, ifindex, &paths.pin_dir),
        AttachMode::Clsact => {
            if tc::add_clsact(kernel, device, ifindex).await? {
                rec.clsact_added = true;
                record::save(&paths.state_dir, rec)?;
            }
            let exists = podnet_filter(kernel, ifindex, which).await?.is_some();
            program::attach_clsact(prog, which, device, exists)
        }
    }
}

/// podnet's clsact filter on `ifindex`'s hook for `prog`: None when there
/// is none, Some(program id, if the kernel names it) when there is.
pub(crate) async fn podnet_filter(
    kernel: &Kernel,
    ifindex: u32,
    prog: Prog,
) -> Result<Option<Option<u32>>> {
    tc::clsact_filter(
        kernel,
        ifindex,
        prog.hook() == aya::programs::TcAttachType::Ingress,
        CLSACT_PRIORITY,
        u32::from(CLSACT_HANDLE),
    )
    .await
}

/// The record of `ifindex`, made now if podnet lost it (state dir wiped
/// while shaped): then the kernel's default is what turning shaping off
/// puts back.
fn record_or_default_in(
    paths: &ShaperPaths,
    device: &str,
    ifindex: u32,
) -> Result<record::DeviceRecord> {
    if let Some(r) = record::load(&paths.state_dir, ifindex)? {
        return Ok(r);
    }
    let r = record::DeviceRecord::new(
        device,
        ifindex,
        PreviousRoot::Default {
            kind: "unknown".into(),
        },
    )?;
    record::save(&paths.state_dir, &r)?;
    Ok(r)
}

/// Puts podnet's root of `kind` at the root of `device`: fq (mq with an fq
/// per queue on a multiqueue device) for EDT, htb for the HTB backend;
/// writing first the record of the root it replaces, so a crash in between
/// never loses what to put back (a switch between podnet's own kinds keeps
/// the record it has). True when the root changed; false when podnet's
/// root of that kind was there already. A failed install leaves the device
/// as it was. Needs no BPF: the HTB backend runs where BPF does not.
pub async fn replace_root(
    kernel: &Kernel,
    paths: &ShaperPaths,
    device: &str,
    kind: tc::RootKind,
) -> Result<bool> {
    let dev = device_info(kernel, device).await?;
    let state_dir = paths.state_dir.clone();
    let qdiscs = tc::dump(kernel, dev.ifindex).await?;
    if qdiscs.root_state().is(kind) {
        record_or_default_in(paths, device, dev.ifindex)?;
        return Ok(false);
    }
    let mut rec = record::load(&state_dir, dev.ifindex)?;
    if !qdiscs.root_is_podnets() || rec.is_none() {
        let previous = if qdiscs.root_is_podnets() {
            // Ours, half set up, and the record lost: the kernel's
            // default is the best we can restore.
            PreviousRoot::Default {
                kind: "unknown".into(),
            }
        } else {
            qdiscs.previous_root(device)?
        };
        let r = record::DeviceRecord::new(device, dev.ifindex, previous)?;
        record::save(&state_dir, &r)?;
        rec = Some(r);
    }
    let installed = match kind {
        tc::RootKind::Fq => tc::install(kernel, device, dev.ifindex, dev.tx_queues).await,
        tc::RootKind::Htb => tc::install_htb(kernel, device, dev.ifindex).await,
    };
    if let Err(e) = installed {
        return Err(undo_root(kernel, paths, device, dev.ifindex, rec.as_ref(), e).await);
    }
    Ok(true)
}

/// Puts back the root qdisc podnet replaced on `device` (the kernel's
/// default when it has no record) and forgets the record. With EDT the
/// program must be off the hook first: a stamped packet must never meet a
/// qdisc that does not honour the stamp. podnet's htb goes with its
/// classes and filters.
pub async fn restore_root(kernel: &Kernel, paths: &ShaperPaths, device: &str) -> Result<()> {
    let dev = device_info(kernel, device).await?;
    let rec = record::load(&paths.state_dir, dev.ifindex)?;
    let qdiscs = tc::dump(kernel, dev.ifindex).await?;
    if qdiscs.root_is_podnets() {
        let previous = rec
            .map(|r| r.previous_root)
            .unwrap_or(PreviousRoot::Default {
                kind: "unknown".into(),
            });
        tc::restore(kernel, device, dev.ifindex, &previous).await?;
    }
    record::remove(&paths.state_dir, dev.ifindex)
}

/// After a failed install: puts the previous root back (this call
/// replaced it) and forgets the record, so the device is as it was.
/// Returns the original error, with any undo error appended.
async fn undo_root(
    kernel: &Kernel,
    paths: &ShaperPaths,
    device: &str,
    ifindex: u32,
    rec: Option<&record::DeviceRecord>,
    e: Error,
) -> Error {
    let previous = rec
        .map(|r| r.previous_root.clone())
        .unwrap_or(PreviousRoot::Default {
            kind: "unknown".into(),
        });
    let mut undo = tc::restore(kernel, device, ifindex, &previous).await;
    if let (Ok(()), Some(r)) = (&undo, rec) {
        if r.clsact_added {
            undo = tc::remove_clsact_if_unused(kernel, device, ifindex)
                .await
                .map(drop);
        }
    }
    match undo.and_then(|()| record::remove(&paths.state_dir, ifindex)) {
        Ok(()) => e,
        Err(u) => {
            let kind = e.kind;
            Error::new(kind, format!("{e}; undoing also failed: {u}"))
        }
    }
}

/// Creates podnet's ingress ifb, up, with a transmit queue per CPU (up to
/// 16: mq with an fq per queue, as on a multiqueue master), marked as
/// podnet's: its group in the create request, then its ifalias (the kernel
/// takes no ifalias in a create). One podnet made and did not mark (it
/// stopped in between) is marked now; one that is not podnet's is refused.
pub async fn create_ingress_device(kernel: &Kernel) -> Result<()> {
    use netlink_packet_route::link::{InfoKind, LinkMessage};
    use rtnetlink::{LinkMessageBuilder, LinkUnspec};
    let h = kernel.handle().clone();
    let queues = std::thread::available_parallelism().map_or(1, |n| n.get().min(16)) as u32;
    // Made down, and up only with IPv6 address generation off: an ifb
    // drops what it sends itself (no redirect), so a link-local address's
    // DAD and router solicitations would only count as its drops.
    let msg: LinkMessage = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Ifb)
        .name(INGRESS_DEVICE)
        .link_group(crate::state::PODNET_LINK_GROUP)
        .append_extra_attribute(LinkAttribute::NumTxQueues(queues))
        .append_extra_attribute(LinkAttribute::NumRxQueues(queues))
        .txqueuelen(INGRESS_TXQUEUELEN)
        .build();
    match h.link().add(msg).execute().await {
        Ok(()) => {}
        Err(e) if errno(&e) == Some(Errno::EEXIST) => {}
        Err(e) if errno(&e) == Some(Errno::EOPNOTSUPP) => {
            return Err(Error::new(
                ErrorKind::NotSupported,
                "this kernel cannot create ifb links (CONFIG_IFB, module ifb), which ingress shaping needs",
            ))
        }
        Err(e) => return Err(refused(e).context(format!("creating {INGRESS_DEVICE}"))),
    }
    let link = link_named(kernel, INGRESS_DEVICE)
        .await?
        .ok_or_else(|| Error::new(ErrorKind::NotFoundYet, format!("{INGRESS_DEVICE} vanished")))?;
    // podnet's mark, or podnet's group with no mark yet (made, not marked).
    if !link.is_owned() && !link.is_half_created() {
        return Err(Error::new(
            ErrorKind::Host,
            format!("{INGRESS_DEVICE} exists and is not podnet's: not taken over"),
        ));
    }
    use netlink_packet_route::link::{AfSpecInet6, AfSpecUnspec, In6AddrGenMode};
    let no_ipv6_addresses =
        LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(
            In6AddrGenMode::None,
        )])]);
    let mark = LinkUnspec::new_with_index(link.index)
        .alias(INGRESS_ALIAS.to_string())
        .append_extra_attribute(LinkAttribute::Group(0))
        .append_extra_attribute(no_ipv6_addresses)
        .up()
        .build();
    h.link()
        .set(mark)
        .execute()
        .await
        .map_err(|e| refused(e).context(format!("marking {INGRESS_DEVICE} as podnet's")))
}

/// Deletes podnet's ingress ifb (only podnet's: by its mark); none there
/// is done already.
pub async fn delete_ingress_device(kernel: &Kernel) -> Result<()> {
    let Some(link) = link_named(kernel, INGRESS_DEVICE).await? else {
        return Ok(());
    };
    if !link.is_owned() && !link.is_half_created() {
        return Err(Error::new(
            ErrorKind::Host,
            format!("{INGRESS_DEVICE} is not podnet's: left alone"),
        ));
    }
    match kernel.handle().link().del(link.index).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(Errno::ENODEV) => Ok(()),
        Err(e) => Err(refused(e).context(format!("deleting {INGRESS_DEVICE}"))),
    }
}

/// The ifindex of `device`, for the HTB backend's steps.
pub async fn ifindex(kernel: &Kernel, device: &str) -> Result<u32> {
    Ok(device_info(kernel, device).await?.ifindex)
}

impl Shaper {
    /// Loads the program into the kernel and opens the endpoint map
    /// (pinning it on first use). Attaches nothing.
    pub fn load(kernel: &Kernel, paths: ShaperPaths) -> Result<Shaper> {
        let mut ebpf = program::load(&paths.pin_dir)?;
        let map = program::take_map(&mut ebpf)?;
        let ingress = program::take_ingress_map(&mut ebpf)?;
        let (tags, slots) = program::take_tag_maps(&mut ebpf)?;
        Ok(Shaper {
            kernel: kernel.clone(),
            paths,
            ebpf,
            endpoints: Endpoints { map },
            ingress,
            tags,
            slots,
            identity: Default::default(),
        })
    }

    /// Names the ingress ifb (its ifindex; 0: none) to the redirect
    /// program.
    pub fn set_ingress_device(&mut self, ifindex: u32) -> Result<()> {
        self.ingress
            .set(0, ifindex, 0)
            .map_err(|e| program::bpf_error("writing the ingress map", e))
    }

    /// Writes a veth pod's egress tag: the slot map first (edt_egress then
    /// resolves the slot before edt_classify hands it out), then the tag;
    /// a slot the address held before (`was`) is given up after.
    pub fn set_tag(
        &mut self,
        tag: &crate::state::Tag,
        was: Option<&crate::state::Tag>,
    ) -> Result<()> {
        let key = EdtKey::new(tag.ip, EDT_DIR_EGRESS);
        let slot = u32::from(tag.slot);
        let named = abi::EdtSlot {
            key,
            classid: tag.classid,
        };
        self.slots
            .insert(slot, named, 0)
            .map_err(|e| program::bpf_error(format!("writing slot {slot} of {}", tag.ip), e))?;
        let value = abi::EdtTag {
            slot,
            ifindex: tag.ifindex,
        };
        self.tags
            .insert(key, value, 0)
            .map_err(|e| program::bpf_error(format!("writing the tag of {}", tag.ip), e))?;
        if let Some(w) = was.filter(|w| w.slot != tag.slot) {
            self.remove_slot(w)?;
        }
        Ok(())
    }

    /// Removes a veth pod's egress tag: the tag first (edt_classify stops
    /// handing the slot out), then its slot, each only while it is that
    /// address's.
    pub fn remove_tag(&mut self, was: &crate::state::Tag) -> Result<()> {
        let key = EdtKey::new(was.ip, EDT_DIR_EGRESS);
        match self.tags.get(&key, 0) {
            Ok(t) if t.slot == u32::from(was.slot) => {
                remove_or_gone(self.tags.remove(&key), || format!("the tag of {}", was.ip))?
            }
            Ok(_) | Err(MapError::KeyNotFound) => {}
            Err(e) => {
                return Err(program::bpf_error(
                    format!("reading the tag of {}", was.ip),
                    e,
                ))
            }
        }
        self.remove_slot(was)
    }

    fn remove_slot(&mut self, was: &crate::state::Tag) -> Result<()> {
        let slot = u32::from(was.slot);
        match self.slots.get(&slot, 0) {
            Ok(n) if n.key == EdtKey::new(was.ip, EDT_DIR_EGRESS) => {
                remove_or_gone(self.slots.remove(&slot), || format!("slot {slot}"))
            }
            Ok(_) | Err(MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(program::bpf_error(format!("reading slot {slot}"), e)),
        }
    }

    pub fn endpoints(&mut self) -> &mut Endpoints {
        &mut self.endpoints
    }

    /// See [`Endpoints::set`].
    pub fn set_endpoint(&mut self, ip: IpAddr, limit: &EgressLimit) -> Result<()> {
        self.endpoints.set(ip, limit)
    }

    /// See [`Endpoints::remove`].
    pub fn remove_endpoint(&mut self, ip: IpAddr) -> Result<bool> {
        self.endpoints.remove(ip)
    }

    /// See [`Endpoints::stats`].
    pub fn stats(&self) -> Result<Vec<EndpointStats>> {
        self.endpoints.stats()
    }

    /// Shapes `device`: fq at its root (saving the root it replaces), then
    /// this program on its egress, replacing in place a podnet program
    /// already there. Idempotent; run it again after an upgrade or a
    /// restart and the data path never stops being shaped. (podnetd runs
    /// the same steps one by one, as a plan's: [`Shaper::replace_root`],
    /// [`Shaper::attach_program_to`], [`Shaper::detach_program`].)
    pub async fn attach(&mut self, device: &str, mode: AttachMode) -> Result<Attachment> {
        let old_mode = self.record_of(device).await?.and_then(|r| r.mode);
        let installed_root = self.replace_root(device).await?;
        let how = match self.attach_program_to(device, mode, Prog::Egress).await {
            Ok(how) => how,
            Err(e) if installed_root => {
                return Err(match self.restore_root(device).await {
                    Ok(()) => e,
                    Err(u) => Error::new(e.kind, format!("{e}; undoing also failed: {u}")),
                })
            }
            Err(e) => return Err(e),
        };
        // Switching modes (a kernel upgrade): the old attachment goes only
        // now, so for a moment both run and packets are charged twice,
        // rather than not at all.
        if let Some(old) = old_mode.filter(|m| *m != mode) {
            self.detach_program(device, old, Prog::Egress).await?;
        }
        let previous_root = self
            .record_of(device)
            .await?
            .map(|r| r.previous_root)
            .unwrap_or(PreviousRoot::Default {
                kind: "unknown".into(),
            });
        Ok(Attachment {
            mode,
            replaced: how == Attached::Replaced,
            installed_root,
            previous_root,
        })
    }

    async fn record_of(&self, device: &str) -> Result<Option<record::DeviceRecord>> {
        let dev = device_info(&self.kernel, device).await?;
        record::load(&self.paths.state_dir, dev.ifindex)
    }

    fn record_or_default(&self, device: &str, ifindex: u32) -> Result<record::DeviceRecord> {
        record_or_default_in(&self.paths, device, ifindex)
    }

    /// Puts podnet's fq at the root of `device`: see [`replace_root`].
    pub async fn replace_root(&mut self, device: &str) -> Result<bool> {
        replace_root(&self.kernel, &self.paths, device, tc::RootKind::Fq).await
    }

    /// See [`restore_root`].
    pub async fn restore_root(&mut self, device: &str) -> Result<()> {
        restore_root(&self.kernel, &self.paths, device).await
    }

    /// Attaches program `prog` to `device`'s hook for it (`mode`), or
    /// swaps it in place for the podnet program there: the hook is never
    /// empty. The record's mode is the egress hook's.
    pub async fn attach_program_to(
        &mut self,
        device: &str,
        mode: AttachMode,
        prog: Prog,
    ) -> Result<Attached> {
        let dev = device_info(&self.kernel, device).await?;
        let mut rec = self.record_or_default(device, dev.ifindex)?;
        let (kernel, paths) = (self.kernel.clone(), self.paths.clone());
        let loaded = program::classifier(&mut self.ebpf, prog)?;
        let how = hang(
            &kernel,
            &paths,
            loaded,
            prog,
            device,
            dev.ifindex,
            mode,
            &mut rec,
        )
        .await?;
        if prog.hook() == aya::programs::TcAttachType::Egress {
            rec.mode = Some(mode);
        }
        record::save(&self.paths.state_dir, &rec)?;
        Ok(how)
    }

    /// Takes podnet's program off `device`'s hook for `prog` in `mode`
    /// (the clsact qdisc too, if podnet added it and no filter is left).
    pub async fn detach_program(
        &mut self,
        device: &str,
        mode: AttachMode,
        prog: Prog,
    ) -> Result<()> {
        let dev = device_info(&self.kernel, device).await?;
        let mut rec = record::load(&self.paths.state_dir, dev.ifindex)?;
        match mode {
            AttachMode::Tcx => {
                program::detach_tcx(prog, dev.ifindex, &self.paths.pin_dir)?;
            }
            AttachMode::Clsact => {
                let added = rec.as_ref().is_some_and(|r| r.clsact_added);
                if podnet_filter(&self.kernel, dev.ifindex, prog)
                    .await?
                    .is_some()
                {
                    program::detach_clsact(device, prog)?;
                }
                // Kept while the other hook's filter is on it.
                let gone =
                    added && tc::remove_clsact_if_unused(&self.kernel, device, dev.ifindex).await?;
                if let Some(r) = rec.as_mut() {
                    r.clsact_added = added && !gone;
                }
            }
        }
        if let Some(r) = rec.as_mut() {
            if prog.hook() == aya::programs::TcAttachType::Egress && r.mode == Some(mode) {
                r.mode = None;
            }
            record::save(&self.paths.state_dir, r)?;
        }
        Ok(())
    }

    /// Puts a program podnet held (see [`hold_program`]) back on
    /// `device`'s hook for `which` in `mode`: the undo of a swap or a
    /// detach.
    pub async fn put_back(
        &mut self,
        device: &str,
        mode: AttachMode,
        which: Prog,
        held: &aya::programs::ProgramFd,
    ) -> Result<()> {
        let dev = device_info(&self.kernel, device).await?;
        let pin = self.paths.pin_dir.join(format!("undo-if{}", dev.ifindex));
        let _ = std::fs::remove_file(&pin);
        program::pin_program(held, &pin)?;
        let opened = program::classifier_from_pin(&pin);
        // The opened program holds its own descriptor: the pin can go.
        let _ = std::fs::remove_file(&pin);
        let mut prog = opened?;
        let mut rec = self.record_or_default(device, dev.ifindex)?;
        hang(
            &self.kernel,
            &self.paths,
            &mut prog,
            which,
            device,
            dev.ifindex,
            mode,
            &mut rec,
        )
        .await?;
        if which.hook() == aya::programs::TcAttachType::Egress {
            rec.mode = Some(mode);
        }
        record::save(&self.paths.state_dir, &rec)
    }

    /// Program `prog` as the plan tells programs apart: its tag, and the
    /// map it reads as its one map id (the endpoint map: the redirect
    /// program also reads the ingress map, which stays with it).
    pub fn identity(&mut self, prog: Prog) -> Result<crate::state::BpfProgram> {
        if let Some(me) = self.identity.get(&prog) {
            return Ok(me.clone());
        }
        // The pinned map it reads that a reload would replace: the tag
        // program reads only the tags, the others the endpoint map.
        let map_id = match prog {
            Prog::Classify => program::map_id(&self.tags)?,
            _ => program::map_id(&self.endpoints.map)?,
        };
        let loaded = program::classifier(&mut self.ebpf, prog)?;
        let info = loaded
            .info()
            .map_err(|e| program::bpf_error("reading the program's info", e))?;
        let mut me = program::describe(&info);
        me.map_ids = vec![map_id];
        self.identity.insert(prog, me.clone());
        Ok(me)
    }

    /// Stops shaping `device`: removes the program (either attachment),
    /// then puts back the root qdisc it had before. The endpoint map stays
    /// (other devices use it, and the daemon's registry refills it anyway).
    pub async fn detach(&mut self, device: &str) -> Result<()> {
        // The program first: a stamped packet must never meet a qdisc that
        // does not honour the stamp.
        self.detach_program(device, AttachMode::Tcx, Prog::Egress)
            .await?;
        self.detach_program(device, AttachMode::Clsact, Prog::Egress)
            .await?;
        self.restore_root(device).await
    }

    /// What is on `device` now.
    pub async fn status(&self, device: &str) -> Result<DeviceStatus> {
        let dev = device_info(&self.kernel, device).await?;
        let qdiscs = tc::dump(&self.kernel, dev.ifindex).await?;
        let rec = record::load(&self.paths.state_dir, dev.ifindex)?;
        let filter = podnet_filter(&self.kernel, dev.ifindex, Prog::Egress).await?;
        Ok(DeviceStatus {
            device: device.to_string(),
            ifindex: dev.ifindex,
            root: qdiscs
                .root()
                .map(|r| format!("{} {}", r.kind, tc::tc_handle(r.handle)))
                .unwrap_or_default(),
            fq: qdiscs.is_shaping(),
            tcx_program: program::tcx_program_id(Prog::Egress, dev.ifindex, &self.paths.pin_dir)?,
            clsact_filter: filter.is_some(),
            clsact_program: filter.flatten(),
            previous_root: rec.map(|r| r.previous_root.describe()),
        })
    }

    /// The kernel id of the loaded egress program (what an upgraded link
    /// points at).
    pub fn program_id(&mut self) -> Result<u32> {
        let prog = program::classifier(&mut self.ebpf, Prog::Egress)?;
        prog.info()
            .map(|i| i.id())
            .map_err(|e| program::bpf_error("reading the program's info", e))
    }
}

#[cfg(test)]
pub(crate) mod tests;
