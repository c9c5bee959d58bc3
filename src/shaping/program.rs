//! Loading `bpf/edt.c` with aya and attaching it to tc egress.
//!
//! Two ways to attach, one program:
//! - **TCX** (Linux >= 6.6): a bpf_link, pinned at
//!   `<pin dir>/tcx-egress-if<ifindex>`. It stays attached with no process
//!   holding it, and an upgrade is `BPF_LINK_UPDATE` on the pinned link: the
//!   kernel swaps the program in the link's slot in one step.
//! - **clsact** (older kernels, e.g. Debian 12's 6.1): a direct-action
//!   cls_bpf filter at a fixed priority and handle on clsact egress. It is a
//!   kernel object that outlives podnet by itself, and an upgrade is
//!   RTM_NEWTFILTER on the same priority/handle without NLM_F_CREATE, which
//!   cls_bpf turns into an in-place swap of the program.
//!
//! Either way the device is never without the program nor runs two copies
//! of it during an upgrade: there is no detach-then-attach and no
//! attach-then-detach.

use std::io;
use std::mem::size_of;
use std::path::{Path, PathBuf};

use aya::maps::{HashMap as BpfHashMap, Map, MapData, MapError, MapType};
use aya::programs::links::{FdLink, LinkError, PinnedLink};
use aya::programs::tc::{NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle};
use aya::programs::{Link as _, LinkOrder, ProgramError, SchedClassifier, TcAttachType};
use aya::sys::SyscallError;
use aya::{Ebpf, EbpfLoader};

use super::abi::{EdtInfo, EdtKey, EdtSlot, EdtTag, EDT_MAP_MAX_ENTRIES};
use crate::error::{Error, ErrorKind, Result};

/// The compiled `bpf/edt.c`.
static EDT_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/edt.o"));

/// The egress program's name in the object (and in `bpftool prog`).
pub const PROGRAM: &str = "edt_egress";
/// The endpoint map's name, and its pin's file name.
pub const MAP: &str = "podnet_edt_v1";
/// The map naming podnet's ingress ifb (one u32 ifindex), and its pin's
/// file name.
pub const INGRESS_MAP: &str = "podnet_ingress_v1";

/// Veth pods' tags, keyed by the pod's egress key (edt_classify reads it),
/// and the slot -> key map edt_egress reads; their pins' file names.
pub const TAG_MAP: &str = "podnet_tag_v1";
pub const SLOT_MAP: &str = "podnet_slot_v1";

/// podnet's programs in `bpf/edt.c`, each on one hook.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Prog {
    /// `edt_egress` on a master's egress: schedules by source address.
    #[default]
    Egress,
    /// `edt_ingress` on the ingress ifb's egress: by destination address.
    Ingress,
    /// `edt_redirect` on a master's ingress: hands the packets of
    /// addresses with an ingress entry to the ifb.
    Redirect,
    /// `edt_pod_ingress` on a veth pod's host-side veth egress: by
    /// destination address, for what the pod receives.
    PodIngress,
    /// `edt_classify` on a veth pod's host-side veth ingress (what the pod
    /// sends): tags the packets its egress entry shapes at the master.
    Classify,
    /// `edt_redirect_ahead`: the redirect where the ifb shapes with EDT;
    /// a small packet whose lane ahead is idle is charged there and goes
    /// straight on.
    RedirectAhead,
}

impl Prog {
    pub const ALL: [Prog; 6] = [
        Prog::Egress,
        Prog::Ingress,
        Prog::Redirect,
        Prog::PodIngress,
        Prog::Classify,
        Prog::RedirectAhead,
    ];

    /// Its name in the object.
    pub fn name(self) -> &'static str {
        match self {
            Prog::Egress => PROGRAM,
            Prog::Ingress => "edt_ingress",
            Prog::Redirect => "edt_redirect",
            Prog::PodIngress => "edt_pod_ingress",
            Prog::Classify => "edt_classify",
            Prog::RedirectAhead => "edt_redirect_ahead",
        }
    }

    /// The tc hook it runs on.
    pub fn hook(self) -> TcAttachType {
        match self {
            Prog::Redirect | Prog::Classify | Prog::RedirectAhead => TcAttachType::Ingress,
            Prog::Egress | Prog::Ingress | Prog::PodIngress => TcAttachType::Egress,
        }
    }

    /// The hook's name, as in pins and messages.
    pub fn hook_name(self) -> &'static str {
        match self.hook() {
            TcAttachType::Ingress => "ingress",
            _ => "egress",
        }
    }

    pub fn is_default(&self) -> bool {
        *self == Prog::Egress
    }
}

impl std::fmt::Display for Prog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// podnet's clsact filter: priority 1 (first), handle 0x706e ("pn").
pub const CLSACT_PRIORITY: u16 = 1;
pub const CLSACT_HANDLE: u16 = 0x706e;

use nix::errno::Errno;

pub type EndpointMap = BpfHashMap<MapData, EdtKey, EdtInfo>;

/// The pin of podnet's TCX link on `ifindex`'s hook for `prog`:
/// `tcx-egress-if<N>` or `tcx-ingress-if<N>`.
pub fn tcx_pin(pin_dir: &Path, prog: Prog, ifindex: u32) -> PathBuf {
    tcx_pin_at(pin_dir, prog.hook_name(), ifindex)
}

/// The pin of podnet's TCX link on `ifindex`'s `hook` (`ingress`, `egress`).
pub fn tcx_pin_at(pin_dir: &Path, hook: &str, ifindex: u32) -> PathBuf {
    pin_dir.join(format!("tcx-{hook}-if{ifindex}"))
}

/// The (hook, ifindex) pairs with a TCX link pinned under `pin_dir`, the
/// hook as [`Prog::hook_name`]: one directory read (none when the
/// directory is missing or unreadable).
pub fn tcx_pinned(pin_dir: &Path) -> std::collections::BTreeSet<(String, u32)> {
    let Ok(entries) = std::fs::read_dir(pin_dir) else {
        return Default::default();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let (hook, index) = name.to_str()?.strip_prefix("tcx-")?.split_once("-if")?;
            Some((hook.to_string(), index.parse().ok()?))
        })
        .collect()
}

pub fn map_pin(pin_dir: &Path) -> PathBuf {
    pin_dir.join(MAP)
}

pub fn ingress_map_pin(pin_dir: &Path) -> PathBuf {
    pin_dir.join(INGRESS_MAP)
}

/// `PinnedLink::from_pin` is `BPF_OBJ_GET`; ENOENT means no pin.
fn is_not_found(e: &LinkError) -> bool {
    matches!(e, LinkError::SyscallError(SyscallError { io_error, .. }) if io_error.kind() == io::ErrorKind::NotFound)
}

fn os_error(e: &ProgramError) -> Option<Errno> {
    match e {
        ProgramError::SyscallError(SyscallError { io_error, .. }) => io_error.raw_os_error(),
        ProgramError::TcError(aya::programs::tc::TcError::NetlinkError(n)) => n.raw_os_error(),
        _ => None,
    }
    .map(Errno::from_raw)
}

pub(super) fn bpf_error(what: impl std::fmt::Display, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::KernelRefused, format!("{what}: {e}"))
}

fn program_error(what: impl std::fmt::Display, e: ProgramError) -> Error {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => Error::new(
            ErrorKind::NotSupported,
            format!(
                "{what}: the kernel refused the program: {io_error}\nverifier log:\n{verifier_log}"
            ),
        ),
        e => bpf_error(what, e),
    }
}

/// Checks that `pin_dir` lies on a BPF filesystem and exists.
pub fn prepare_pin_dir(pin_dir: &Path) -> Result<()> {
    const BPF_FS_MAGIC: u64 = 0xcafe_4a11;
    let parent = pin_dir.parent().unwrap_or(pin_dir);
    let on_bpffs = |p: &Path| {
        nix::sys::statfs::statfs(p)
            .map(|s| s.filesystem_type().0 as u64 == BPF_FS_MAGIC)
            .unwrap_or(false)
    };
    if !on_bpffs(parent) && !on_bpffs(pin_dir) {
        return Err(Error::new(
            ErrorKind::Host,
            format!(
                "{} is not on a BPF filesystem, so the shaper's map and links cannot be pinned \
                 there: mount it (mount -t bpf bpf {})",
                pin_dir.display(),
                parent.display()
            ),
        ));
    }
    std::fs::create_dir_all(pin_dir).map_err(|e| {
        Error::new(
            ErrorKind::Host,
            format!("creating {}: {e}", pin_dir.display()),
        )
    })
}

/// A map pinned by another version of podnet with another layout would be
/// reused silently by the loader (aya does not compare), and the program
/// would read garbage: refuse instead.
fn check_pinned_map(path: &Path) -> Result<()> {
    let data = match MapData::from_pin(path) {
        Ok(d) => d,
        Err(MapError::SyscallError(SyscallError { io_error, .. }))
            if io_error.kind() == io::ErrorKind::NotFound =>
        {
            return Ok(())
        }
        Err(e) => return Err(bpf_error(format!("opening {}", path.display()), e)),
    };
    let info = data
        .info()
        .map_err(|e| bpf_error(format!("reading {}", path.display()), e))?;
    let is_hash = matches!(info.map_type(), Ok(MapType::Hash));
    if !is_hash
        || info.key_size() as usize != size_of::<EdtKey>()
        || info.value_size() as usize != size_of::<EdtInfo>()
        || info.max_entries() != EDT_MAP_MAX_ENTRIES
    {
        return Err(Error::new(
            ErrorKind::Host,
            format!(
                "{} is not the map this podnet uses (key {} / value {} bytes, {} entries; \
                 expected {} / {} / {}): another version made it; remove the pin to start over",
                path.display(),
                info.key_size(),
                info.value_size(),
                info.max_entries(),
                size_of::<EdtKey>(),
                size_of::<EdtInfo>(),
                EDT_MAP_MAX_ENTRIES
            ),
        ));
    }
    Ok(())
}

/// Loads the program into the kernel and opens the endpoint map, creating
/// and pinning it under `pin_dir` unless it is already pinned there.
pub fn load(pin_dir: &Path) -> Result<Ebpf> {
    prepare_pin_dir(pin_dir)?;
    check_pinned_map(&map_pin(pin_dir))?;
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(pin_dir)
        .load(EDT_OBJECT)
        .map_err(|e| bpf_error("loading bpf/edt.c", e))?;
    for prog in Prog::ALL {
        classifier(&mut ebpf, prog)?
            .load()
            .map_err(|e| program_error(format!("loading bpf/edt.c's {prog}"), e))?;
    }
    Ok(ebpf)
}

pub fn classifier(ebpf: &mut Ebpf, prog: Prog) -> Result<&mut SchedClassifier> {
    let name = prog.name();
    let found = ebpf
        .program_mut(name)
        .ok_or_else(|| Error::new(ErrorKind::Bug, format!("no program {name} in edt.o")))?;
    found
        .try_into()
        .map_err(|e| bpf_error(format!("{name} is not a tc program"), e))
}

pub fn take_map(ebpf: &mut Ebpf) -> Result<EndpointMap> {
    let map = ebpf
        .take_map(MAP)
        .ok_or_else(|| Error::new(ErrorKind::Bug, format!("no map {MAP} in edt.o")))?;
    EndpointMap::try_from(map).map_err(|e| bpf_error(format!("map {MAP}"), e))
}

/// The ingress map: index 0 holds the ingress ifb's ifindex.
pub type IngressMap = aya::maps::Array<MapData, u32>;

pub fn take_ingress_map(ebpf: &mut Ebpf) -> Result<IngressMap> {
    let map = ebpf
        .take_map(INGRESS_MAP)
        .ok_or_else(|| Error::new(ErrorKind::Bug, format!("no map {INGRESS_MAP} in edt.o")))?;
    IngressMap::try_from(map).map_err(|e| bpf_error(format!("map {INGRESS_MAP}"), e))
}

/// The ifindex the pinned ingress map names (0: none); None when it is
/// not pinned.
pub fn pinned_ingress_device(pin_dir: &Path) -> Result<Option<u32>> {
    let path = ingress_map_pin(pin_dir);
    let data = match MapData::from_pin(&path) {
        Ok(d) => d,
        Err(MapError::SyscallError(SyscallError { io_error, .. }))
            if io_error.kind() == io::ErrorKind::NotFound =>
        {
            return Ok(None)
        }
        Err(e) => return Err(bpf_error(format!("opening {}", path.display()), e)),
    };
    let map = IngressMap::try_from(Map::Array(data))
        .map_err(|e| bpf_error(format!("map {INGRESS_MAP}"), e))?;
    map.get(&0, 0)
        .map(Some)
        .map_err(|e| bpf_error(format!("reading {}", path.display()), e))
}

/// The veth pods' tag map (a pod's egress key -> its slot and device) and
/// the slot map (slot -> key): see `bpf/edt.c`, edt_classify.
pub type TagMap = BpfHashMap<MapData, EdtKey, EdtTag>;
pub type SlotMap = BpfHashMap<MapData, u32, EdtSlot>;

pub fn take_tag_maps(ebpf: &mut Ebpf) -> Result<(TagMap, SlotMap)> {
    let mut take = |name: &str| {
        ebpf.take_map(name)
            .ok_or_else(|| Error::new(ErrorKind::Bug, format!("no map {name} in edt.o")))
    };
    let tags = take(TAG_MAP)?;
    let slots = take(SLOT_MAP)?;
    Ok((
        TagMap::try_from(tags).map_err(|e| bpf_error(format!("map {TAG_MAP}"), e))?,
        SlotMap::try_from(slots).map_err(|e| bpf_error(format!("map {SLOT_MAP}"), e))?,
    ))
}

/// The pinned map `name` under `pin_dir`, None when it is not pinned.
fn pinned_hash(pin_dir: &Path, name: &str) -> Result<Option<Map>> {
    let path = pin_dir.join(name);
    match MapData::from_pin(&path) {
        Ok(d) => Ok(Some(Map::HashMap(d))),
        Err(MapError::SyscallError(SyscallError { io_error, .. }))
            if io_error.kind() == io::ErrorKind::NotFound =>
        {
            Ok(None)
        }
        Err(e) => Err(bpf_error(format!("opening {}", path.display()), e)),
    }
}

/// The veth pods' tags the pinned tag and slot maps hold, by address
/// (none when they are not pinned): each tag map entry, `whole` when the
/// slot map names its address at its slot, and each slot map entry no tag
/// points at (`ifindex` 0, not whole).
pub fn pinned_tags(pin_dir: &Path) -> Result<Vec<crate::state::Tag>> {
    use crate::state::Tag;
    let (Some(tags), Some(slots)) = (
        pinned_hash(pin_dir, TAG_MAP)?,
        pinned_hash(pin_dir, SLOT_MAP)?,
    ) else {
        return Ok(Vec::new());
    };
    let tags = TagMap::try_from(tags).map_err(|e| bpf_error(format!("map {TAG_MAP}"), e))?;
    let slots = SlotMap::try_from(slots).map_err(|e| bpf_error(format!("map {SLOT_MAP}"), e))?;
    let mut named: std::collections::BTreeMap<u32, EdtSlot> = std::collections::BTreeMap::new();
    for item in slots.iter() {
        match item {
            Ok((slot, key)) => {
                named.insert(slot, key);
            }
            Err(MapError::KeyNotFound) => continue,
            Err(e) => return Err(bpf_error(format!("reading {SLOT_MAP}"), e)),
        }
    }
    let mut out = Vec::new();
    let mut pointed = std::collections::BTreeSet::new();
    for item in tags.iter() {
        let (key, tag) = match item {
            Ok(kv) => kv,
            Err(MapError::KeyNotFound) => continue,
            Err(e) => return Err(bpf_error(format!("reading {TAG_MAP}"), e)),
        };
        let (Some(ip), Ok(slot)) = (key.ip(), u16::try_from(tag.slot)) else {
            continue;
        };
        pointed.insert(tag.slot);
        let at = named.get(&tag.slot).filter(|n| n.key == key);
        out.push(Tag {
            ip,
            slot,
            ifindex: tag.ifindex,
            classid: at.map_or(0, |n| n.classid),
            whole: at.is_some(),
        });
    }
    for (slot, n) in named.iter().filter(|(s, _)| !pointed.contains(s)) {
        if let (Some(ip), Ok(slot)) = (n.key.ip(), u16::try_from(*slot)) {
            out.push(Tag {
                ip,
                slot,
                ifindex: 0,
                classid: n.classid,
                whole: false,
            });
        }
    }
    out.sort();
    Ok(out)
}

/// Opens the pinned map without loading anything (for readers such as a
/// `bandwidth list` command).
pub fn open_map(pin_dir: &Path) -> Result<EndpointMap> {
    let path = map_pin(pin_dir);
    check_pinned_map(&path)?;
    let data = MapData::from_pin(&path).map_err(|e| match &e {
        MapError::SyscallError(SyscallError { io_error, .. })
            if io_error.kind() == io::ErrorKind::NotFound =>
        {
            Error::new(
                ErrorKind::NotFoundYet,
                format!(
                    "{} does not exist: the shaper was never loaded",
                    path.display()
                ),
            )
        }
        _ => bpf_error(format!("opening {}", path.display()), e),
    })?;
    EndpointMap::try_from(Map::HashMap(data)).map_err(|e| bpf_error(format!("map {MAP}"), e))
}

/// How an attach went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attached {
    /// There was no attachment: one was made.
    Created,
    /// The existing attachment now runs this program (an upgrade).
    Replaced,
}

/// Attaches (or atomically re-points) the TCX link of `device`'s hook for
/// `which`.
pub fn attach_tcx(
    prog: &mut SchedClassifier,
    which: Prog,
    device: &str,
    ifindex: u32,
    pin_dir: &Path,
) -> Result<Attached> {
    let pin = tcx_pin(pin_dir, which, ifindex);
    let what = || format!("{device}: attaching {which} as TCX {}", which.hook_name());
    match PinnedLink::from_pin(&pin) {
        Ok(pinned) => {
            let link = SchedClassifierLink::try_from(FdLink::from(pinned)).map_err(|e| {
                bpf_error(
                    format!("{}: {} is not a TCX link", what(), pin.display()),
                    e,
                )
            })?;
            match prog.attach_to_link(link) {
                Ok(id) => {
                    // Dropping our handle closes an fd; the pin keeps the link.
                    drop(prog.take_link(id));
                    return Ok(Attached::Replaced);
                }
                // The device the link was made for is gone (ifindex reused):
                // a stale pin, not ours to update.
                Err(e) if os_error(&e) == Some(Errno::ENOLINK) => {
                    std::fs::remove_file(&pin).map_err(|e| {
                        Error::new(
                            ErrorKind::Host,
                            format!("removing stale {}: {e}", pin.display()),
                        )
                    })?;
                }
                Err(e) => return Err(program_error(what(), e)),
            }
        }
        Err(e) if is_not_found(&e) => {}
        Err(e) => {
            return Err(bpf_error(
                format!("{}: opening {}", what(), pin.display()),
                e,
            ))
        }
    }
    // First in the chain: a program after ours still runs (we return
    // "next"), one before ours could end the chain and bypass shaping.
    let id = prog
        .attach_with_options(
            device,
            which.hook(),
            TcAttachOptions::TcxOrder(LinkOrder::first()),
        )
        .map_err(|e| program_error(what(), e))?;
    let link = prog.take_link(id).map_err(|e| program_error(what(), e))?;
    let fd = FdLink::try_from(link).map_err(|e| bpf_error(what(), e))?;
    fd.pin(&pin)
        .map_err(|e| bpf_error(format!("{}: pinning {}", what(), pin.display()), e))?;
    Ok(Attached::Created)
}

/// Removes the TCX link of `ifindex`'s hook for `prog`; false when there
/// was none.
pub fn detach_tcx(prog: Prog, ifindex: u32, pin_dir: &Path) -> Result<bool> {
    let pin = tcx_pin(pin_dir, prog, ifindex);
    match PinnedLink::from_pin(&pin) {
        // Unpinning and closing the last fd detaches the link.
        Ok(pinned) => pinned
            .unpin()
            .map(|_fd| true)
            .map_err(|e| Error::new(ErrorKind::Host, format!("unpinning {}: {e}", pin.display()))),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(bpf_error(format!("opening {}", pin.display()), e)),
    }
}

/// The id of the program the TCX link of `ifindex`'s hook for `prog`
/// runs, if it is pinned.
pub fn tcx_program_id(prog: Prog, ifindex: u32, pin_dir: &Path) -> Result<Option<u32>> {
    let pin = tcx_pin(pin_dir, prog, ifindex);
    match PinnedLink::from_pin(&pin) {
        Ok(pinned) => {
            let info = FdLink::from(pinned)
                .info()
                .map_err(|e| bpf_error(format!("reading {}", pin.display()), e))?;
            Ok(Some(info.program_id()))
        }
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(bpf_error(format!("opening {}", pin.display()), e)),
    }
}

fn clsact_link(device: &str, prog: Prog) -> Result<SchedClassifierLink> {
    SchedClassifierLink::attached(
        device,
        prog.hook(),
        CLSACT_PRIORITY,
        TcHandle::new(0, CLSACT_HANDLE),
        None,
    )
    .map_err(|e| Error::new(ErrorKind::NotFoundYet, format!("{device}: {e}")))
}

/// Attaches the program as podnet's clsact filter on the hook for
/// `which`, or swaps the program of the filter already there. `exists`
/// comes from a filter dump.
pub fn attach_clsact(
    prog: &mut SchedClassifier,
    which: Prog,
    device: &str,
    exists: bool,
) -> Result<Attached> {
    let what = || {
        format!(
            "{device}: attaching {which} as clsact {} filter",
            which.hook_name()
        )
    };
    let (id, how) = if exists {
        let id = prog
            .attach_to_link(clsact_link(device, which)?)
            .map_err(|e| program_error(what(), e))?;
        (id, Attached::Replaced)
    } else {
        let id = prog
            .attach_with_options(
                device,
                which.hook(),
                TcAttachOptions::Netlink(NlOptions {
                    priority: CLSACT_PRIORITY,
                    handle: TcHandle::new(0, CLSACT_HANDLE),
                    classid: None,
                }),
            )
            .map_err(|e| program_error(what(), e))?;
        (id, Attached::Created)
    };
    let link = prog.take_link(id).map_err(|e| program_error(what(), e))?;
    // The filter lives in the kernel on its own; dropping aya's handle
    // would delete it, so let the handle go without dropping it.
    std::mem::forget(link);
    Ok(how)
}

/// Deletes podnet's clsact filter on the hook for `prog`; false when
/// there was none.
pub fn detach_clsact(device: &str, prog: Prog) -> Result<bool> {
    match clsact_link(device, prog)?.detach() {
        Ok(()) => Ok(true),
        Err(e) if os_error(&e) == Some(Errno::ENOENT) => Ok(false),
        Err(e) => Err(program_error(
            format!("{device}: removing the clsact {} filter", prog.hook_name()),
            e,
        )),
    }
}

/// The kernel id of the endpoint map.
pub fn map_id<K: aya::Pod, V: aya::Pod>(map: &impl aya::maps::IterableMap<K, V>) -> Result<u32> {
    map.map()
        .info()
        .map(|i| i.id())
        .map_err(|e| bpf_error("reading a map's info", e))
}

/// What the plan knows of a loaded program: id, tag and maps.
pub fn describe(info: &aya::programs::ProgramInfo) -> crate::state::BpfProgram {
    crate::state::BpfProgram {
        id: info.id(),
        tag: format!("{:016x}", info.tag()),
        map_ids: info.map_ids().ok().flatten().unwrap_or_default(),
    }
}

/// The loaded program with kernel id `id`, if it still exists.
pub fn program_by_id(id: u32) -> Result<Option<aya::programs::ProgramInfo>> {
    for info in aya::programs::loaded_programs() {
        let info = info.map_err(|e| bpf_error("listing loaded BPF programs", e))?;
        if info.id() == id {
            return Ok(Some(info));
        }
    }
    Ok(None)
}

/// A reference that keeps program `id` loaded (and so able to go back on a
/// hook) after it is swapped out or detached: an undo's hold.
pub fn hold(id: u32) -> Result<aya::programs::ProgramFd> {
    let info = program_by_id(id)?.ok_or_else(|| {
        Error::new(
            ErrorKind::NotFoundYet,
            format!("BPF program {id} is no longer loaded"),
        )
    })?;
    info.fd()
        .map_err(|e| bpf_error(format!("opening BPF program {id}"), e))
}

/// Pins a held program at `path`, so aya can open it as a program to attach
/// (aya opens programs by pin, not by descriptor). `BPF_OBJ_PIN` is one
/// syscall aya keeps to itself, hence this one `unsafe` block.
pub fn pin_program(fd: &aya::programs::ProgramFd, path: &Path) -> Result<()> {
    use std::os::fd::{AsFd, AsRawFd};
    use std::os::unix::ffi::OsStrExt;
    /// `union bpf_attr` for BPF_OBJ_PIN (linux/bpf.h): pathname, bpf_fd,
    /// file_flags, path_fd, and the padding to the union's alignment made
    /// explicit: the kernel refuses (EINVAL) any nonzero byte past the
    /// fields it knows, and padding left to the compiler is not zeroed.
    #[repr(C)]
    struct ObjPin {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
        path_fd: i32,
        _pad: u32,
    }
    const BPF_OBJ_PIN: libc::c_long = 6;
    let cpath = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::new(ErrorKind::Bug, format!("{} has a NUL", path.display())))?;
    let attr = ObjPin {
        pathname: cpath.as_ptr() as u64,
        bpf_fd: fd.as_fd().as_raw_fd() as u32,
        file_flags: 0,
        path_fd: 0,
        _pad: 0,
    };
    // SAFETY: `attr` is a valid, initialised bpf_attr prefix of the size
    // passed; the kernel reads it and the NUL-terminated path it points to
    // (alive until the call returns) and writes nothing back.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_PIN,
            &attr as *const ObjPin,
            size_of::<ObjPin>(),
        )
    };
    if rc < 0 {
        return Err(bpf_error(
            format!("pinning a program at {}", path.display()),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Opens a pinned program as one aya can attach.
pub fn classifier_from_pin(path: &Path) -> Result<SchedClassifier> {
    SchedClassifier::from_pin(path).map_err(|e| {
        program_error(
            format!("opening the program pinned at {}", path.display()),
            e,
        )
    })
}
