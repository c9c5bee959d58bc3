//! Shaping in the plan: the root qdisc, the EDT program on the egress hook
//! and the endpoint map's entries, planned like links are.
//!
//! # How a kind of state joins the plan
//! Shaping is the second kind (after links) and the model for the next
//! ones (SR-IOV VFs, RDMA devices, IPIP tunnels). Each takes the same five
//! steps, and no kind gets a side path around them:
//! 1. **observe**: read it from the kernel into [`Observed`] (here
//!    `Observed::shaping`, `Observed::endpoint_map`, the root qdiscs in
//!    `Observed::qdiscs`); where the kernel cannot say what podnet replaced,
//!    podnet's own ledger says it, as one named field (`previous_root`).
//! 2. **desired**: what the node files (and, for shaping, the endpoint
//!    registry: [`Inputs`]) call for, computed here, never stored.
//! 3. **diff**: a pure function from the two to [`Action`]s, in the order
//!    the kernel needs (here: entries before the program that reads them,
//!    fq before the program that stamps packets, the program off before the
//!    qdisc that honours its stamps goes). What the host cannot do at all
//!    is an `unmet` line, not a failed step.
//! 4. **actions**: each [`Change`] says what it costs ([`Action::disruption`]),
//!    how `--dry-run` prints it, and the steps that undo it
//!    ([`Action::undo`]), carrying what the undo needs (the old entry, the
//!    program id to put back).
//! 5. **undo and verify**: one backend per kind executes the changes
//!    (`crate::apply`); a failed step undoes every step before it, of every
//!    kind, in reverse; verify observes again and plans: nothing may be left.
//!
//! The gates need nothing per kind: `--max-disruption` reads the class, the
//! default-route guard reads the class and the device, fights back off by
//! object (`shaping ens192`, `endpoint 10.0.0.5`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::{Action, Change, ClassSpec, Role};
use crate::api::types::EndpointRecord;
use crate::config::{NodeConfig, ShapingBackend};
use crate::shaping::tc::{Qdiscs, RootKind, RootState, PSCHED_TICK_NS};
use crate::shaping::{AttachMode, EgressLimit, Prog, INGRESS_DEVICE};
use crate::state::{BpfProgram, Direction, HtbClass, HtbTree, MapEntry, Observed};

/// What the plan reads besides the files and the host (a golden case's
/// `inputs.json`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct Inputs {
    /// The endpoint registry: whose entries the map must hold.
    pub endpoints: Vec<EndpointRecord>,
    /// The program this podnet attaches: its tag and the one map it reads.
    /// None when it could not be loaded to ask (a dry run without BPF
    /// access): a podnet program found on a hook then counts as current.
    pub program: Option<BpfProgram>,
    /// The attach mode, when not the kernel's best (TCX from 6.6, else
    /// clsact): `PODNET_ATTACH_MODE`, for tests of a mode switch.
    pub mode: Option<AttachMode>,
    /// The ingress program on the ifb, as `program` (None: unknown).
    #[serde(default)]
    pub ingress_program: Option<BpfProgram>,
    /// The redirect program on the masters' ingress hooks, as `program`.
    #[serde(default)]
    pub redirect_program: Option<BpfProgram>,
    /// The pod-ingress program on veth pods' host-side veths, as `program`.
    #[serde(default)]
    pub pod_ingress_program: Option<BpfProgram>,
    /// The tag program on veth pods' host-side veths' ingress, as `program`.
    #[serde(default)]
    pub classify_program: Option<BpfProgram>,
    /// The redirect where the ifb shapes with EDT, as `program`.
    #[serde(default)]
    pub redirect_ahead_program: Option<BpfProgram>,
    /// The VF settings PF drivers refused before (podnet's ledger).
    #[serde(default)]
    pub sriov_refused: Vec<super::Refusal>,
    /// The Soft-RoCE links podnet made (its ledger: an RDMA device carries
    /// no mark of its own).
    #[serde(default)]
    pub rdma_owned: std::collections::BTreeSet<String>,
    /// podnet's modprobe.d file for the RDMA netns mode.
    #[serde(default)]
    pub rdma_boot: super::RdmaBootSetting,
}

impl Inputs {
    /// This podnet's program `prog`, when it was loaded to ask.
    pub fn program_of(&self, prog: Prog) -> Option<&BpfProgram> {
        match prog {
            Prog::Egress => self.program.as_ref(),
            Prog::Ingress => self.ingress_program.as_ref(),
            Prog::Redirect => self.redirect_program.as_ref(),
            Prog::PodIngress => self.pod_ingress_program.as_ref(),
            Prog::Classify => self.classify_program.as_ref(),
            Prog::RedirectAhead => self.redirect_ahead_program.as_ref(),
        }
    }

    /// The attach mode for `observed`'s kernel: the forced one, else the
    /// kernel's best (TCX from 6.6, clsact before).
    pub fn mode(&self, observed: &Observed) -> AttachMode {
        self.mode.unwrap_or(if observed.kernel.tcx {
            AttachMode::Tcx
        } else {
            AttachMode::Clsact
        })
    }
}

/// The shaping steps, by phase: `off` (programs off, classes and filters
/// out, then roots back, for devices that no longer shape), `entries`
/// (written before any program reads them), `devices` (root, then program,
/// then the other mode's program off; with HTB: any EDT program off, then
/// the root), `classes` (HTB classes added or changed, before the filters
/// that point at them), `filters` (added), `unfilter` and `unclass` (the
/// filters of addresses gone, then their classes), `gone` (entries nobody
/// needs).
#[derive(Default)]
pub(super) struct Steps {
    pub off: Vec<Action>,
    pub entries: Vec<Action>,
    pub devices: Vec<Action>,
    pub classes: Vec<Action>,
    pub filters: Vec<Action>,
    pub unfilter: Vec<Action>,
    pub unclass: Vec<Action>,
    pub gone: Vec<Action>,
    pub unmet: Vec<String>,
    /// The devices shaped once these steps have run (either backend).
    pub shaped: BTreeSet<String>,
    /// Of those, the ones shaped by HTB.
    pub htb: BTreeSet<String>,
    /// The ingress ifb's root, when podnet shapes ingress.
    pub ingress: Option<RootKind>,
    /// The veth pods' host-side veths that shape what the pods receive.
    pub veths: BTreeSet<String>,
    /// The veth pods' addresses whose egress is tagged, with their veth.
    pub tagged: BTreeMap<IpAddr, String>,
}

/// The root the node files' backend calls for on this kernel: `auto` is EDT
/// where the kernel has sch_fq, else HTB (which needs neither fq nor BPF:
/// its classifier is u32); `edt` without fq is nothing, with the reason.
pub fn root_kind(desired: &NodeConfig, observed: &Observed) -> Result<RootKind, String> {
    match crate::policy::backend(desired) {
        ShapingBackend::Htb => Ok(RootKind::Htb),
        ShapingBackend::Auto if observed.kernel.sch_fq => Ok(RootKind::Fq),
        ShapingBackend::Auto => Ok(RootKind::Htb),
        ShapingBackend::Edt if observed.kernel.sch_fq => Ok(RootKind::Fq),
        ShapingBackend::Edt => Err(
            "[shaping] backend = \"edt\" needs the fq qdisc (CONFIG_NET_SCH_FQ, module sch_fq), which this kernel does not have; set backend = \"auto\" or \"htb\" to shape with HTB classes instead".into(),
        ),
    }
}

pub(super) fn plan(desired: &NodeConfig, observed: &Observed, inputs: &Inputs) -> Steps {
    let mut steps = Steps::default();
    let configured = crate::policy::shaping_masters(desired);
    let devices: BTreeSet<String> = configured
        .iter()
        .filter(|d| observed.link(d).is_some())
        .cloned()
        .collect();
    let kind = match root_kind(desired, observed) {
        Ok(kind) => Some(kind),
        Err(why) => {
            if !devices.is_empty() {
                steps.unmet.push(format!(
                    "egress shaping of {}: {why}; those devices are not shaped",
                    devices.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
            None
        }
    };
    let mode = inputs.mode(observed);
    // The endpoints' horizons and thresholds, resolved once for all.
    let queueing = crate::policy::Queueing::of(desired);
    let (veth_pods, others): (Vec<&EndpointRecord>, Vec<&EndpointRecord>) = inputs
        .endpoints
        .iter()
        .partition(|e| e.endpoint.veth.is_some());
    // Where veth pods' egress leaves: with HTB too, those devices keep the
    // EDT program, which only turns the pods' tags into their classes.
    let tag_devices: BTreeSet<String> = veth_pods
        .iter()
        .filter_map(|e| tag_device(e, &devices, &queueing))
        .collect();
    let mut shaped = BTreeSet::new();
    if let Some(kind) = kind {
        for dev in &devices {
            // The master's own `shaping = true`: the operator asked for it
            // by name (the default-route guard reads it).
            let opted_in = desired.masters.get(dev).and_then(|m| m.shaping) == Some(true);
            let egress = Prog::Egress;
            let keep = tag_devices.contains(dev);
            if plan_device_root(
                observed, inputs, dev, mode, kind, egress, opted_in, keep, &mut steps,
            ) {
                shaped.insert(dev.clone());
                if kind == RootKind::Htb {
                    steps.htb.insert(dev.clone());
                }
            }
        }
    }
    // Ingress: a veth pod's at its own host-side veth, the others' through
    // podnet's ifb.
    let ingress = crate::policy::wanted_in(others, &shaped, &queueing, Direction::Ingress);
    let ifb = plan_ingress(observed, inputs, &ingress, &shaped, mode, kind, &mut steps);
    let veths = match kind {
        Some(kind) => plan_veths(
            observed, inputs, &veth_pods, &queueing, &shaped, mode, kind, &mut steps,
        ),
        None => BTreeMap::new(),
    };
    // Devices podnet shaped that no longer shape: the programs off first (a
    // stamped packet must never meet a qdisc that ignores the stamp), the
    // HTB classes out (so the undo puts them back whole), then the root
    // podnet replaced back; an ifb no longer wanted goes after that.
    let edt: BTreeSet<String> = shaped.difference(&steps.htb).cloned().collect();
    let mut entries: BTreeMap<(IpAddr, Direction), MapEntry> =
        crate::policy::wanted(&inputs.endpoints, &edt, &queueing)
            .into_iter()
            .map(|(ip, limit)| ((ip, Direction::Egress), limit.entry(ip)))
            .collect();
    // The redirect finds the addresses to hand the ifb by their ingress
    // entries, whichever root shapes there.
    if ifb == Ifb::Kept {
        entries.extend(ingress.iter().map(|(ip, limit)| {
            (
                (*ip, Direction::Ingress),
                limit.entry_in(*ip, Direction::Ingress),
            )
        }));
    }
    if kind == Some(RootKind::Fq) {
        for wanted in veths.values() {
            entries.extend(wanted.iter().map(|(ip, limit)| {
                (
                    (*ip, Direction::PodIngress),
                    limit.entry_in(*ip, Direction::PodIngress),
                )
            }));
        }
    }
    plan_entries(observed, &entries, &mut steps);
    let htb = steps.htb.clone();
    // The egress classes' minors per HTB device, for the veth pods' tags.
    let mut minors: BTreeMap<String, BTreeMap<IpAddr, u16>> = BTreeMap::new();
    for dev in &htb {
        let one: BTreeSet<String> = [dev.clone()].into();
        let wanted = crate::policy::wanted(&inputs.endpoints, &one, &queueing);
        minors.insert(
            dev.clone(),
            plan_classes(&wanted, observed, dev, false, &mut steps),
        );
    }
    if kind == Some(RootKind::Htb) {
        if ifb == Ifb::Kept {
            plan_classes(&ingress, observed, INGRESS_DEVICE, true, &mut steps);
        }
        for (veth, wanted) in &veths {
            plan_classes(wanted, observed, veth, true, &mut steps);
        }
    }
    let tagged = plan_tags(
        observed, inputs, &veth_pods, &queueing, &shaped, &minors, mode, &mut steps,
    );
    let tagging: BTreeSet<&String> = tagged.values().collect();
    for link in &observed.links {
        if configured.contains(&link.name) || (link.name == INGRESS_DEVICE && ifb != Ifb::Gone) {
            continue;
        }
        // A veth pod's veth keeps what it still does: its root for what
        // the pod receives, its tag program for what it sends.
        let keeps_root = veths.contains_key(&link.name);
        if !keeps_root {
            detach_programs(observed, &link.name, &[Prog::Egress], &mut steps.off);
        }
        // (Either program on the ingress hook: a veth's tag program, a
        // former master's redirect.)
        if !tagging.contains(&link.name) {
            detach_programs(observed, &link.name, &[Prog::Redirect], &mut steps.off);
        }
        if keeps_root {
            continue;
        }
        let sh = observed.shaping_of(&link.name);
        let root = Qdiscs::observed(observed, &link.name).root_state();
        let step = |change| Action::new(Role::Shaping, &link.name, change);
        if root == RootState::Htb {
            take_out_classes(observed, &link.name, &mut steps.off);
        }
        if root.is_podnets() {
            steps.off.push(step(Change::RestoreRoot {
                to: sh
                    .and_then(|s| s.previous_root.clone())
                    .unwrap_or_else(|| "the kernel's default root".into()),
                kind: if root == RootState::Htb {
                    RootKind::Htb
                } else {
                    RootKind::Fq
                },
            }));
        }
        if link.name == INGRESS_DEVICE && link.is_owned() {
            steps.off.push(step(Change::DeleteIngressDevice));
        }
    }
    steps.shaped = shaped;
    steps.ingress = kind.filter(|_| ifb == Ifb::Kept);
    steps.veths = veths.into_keys().collect();
    steps.tagged = tagged;
    steps
}

/// Veth pods' egress past masquerade: each address of a registered veth
/// pod with an egress limit whose traffic leaves through a shaped device
/// gets a tag (a slot, that device's ifindex and, with HTB, the address's
/// class there: `minors`), and the pod's host-side veth the tag program on
/// its ingress hook (what the pod sends): the device's EDT program then
/// finds the pod's egress entry (or, with HTB, its class) by the slot,
/// whatever source address NAT gave the packet. A slot stays
/// with its address; a new address takes the lowest slot no tag in the
/// maps holds. Tags nobody needs go, with the halves of half-written ones.
/// Returns the tagged addresses with their veths.
#[allow(clippy::too_many_arguments)]
fn plan_tags(
    observed: &Observed,
    inputs: &Inputs,
    pods: &[&EndpointRecord],
    queueing: &crate::policy::Queueing,
    shaped: &BTreeSet<String>,
    minors: &BTreeMap<String, BTreeMap<IpAddr, u16>>,
    mode: AttachMode,
    steps: &mut Steps,
) -> BTreeMap<IpAddr, String> {
    use crate::shaping::abi::EDT_TAG_SLOTS;
    use crate::state::Tag;
    // address -> (veth, device, its ifindex, the HTB classid or 0)
    let mut wanted: BTreeMap<IpAddr, (String, String, u32, u32)> = BTreeMap::new();
    for e in pods {
        let (Some(veth), Some(device)) =
            (e.endpoint.veth.as_deref(), tag_device(e, shaped, queueing))
        else {
            continue;
        };
        let index = observed.link(&device).map(|l| l.index);
        let is_veth = observed
            .link(veth)
            .is_some_and(|l| l.kind.as_deref() == Some("veth"));
        let (Some(index), true) = (index, is_veth) else {
            continue;
        };
        let one: BTreeSet<String> = [device.clone()].into();
        for ip in crate::policy::wanted_in([*e], &one, queueing, Direction::Egress).keys() {
            // HTB: the class the plan gives the address (none: no tag,
            // as a rate of 0 has no class).
            let classid = match minors.get(&device) {
                None => 0,
                Some(m) => match m.get(ip) {
                    Some(minor) => {
                        u32::from(crate::shaping::tc::PODNET_QDISC_MAJOR) << 16 | u32::from(*minor)
                    }
                    None => continue,
                },
            };
            wanted.insert(*ip, (veth.to_string(), device.clone(), index, classid));
        }
    }
    let have: &[Tag] = observed.endpoint_map.as_ref().map_or(&[], |m| &m.tags);
    // An address's own tag is its tag map entry (whole or not); the slot
    // map's entries no tag points at are only halves to remove.
    let own = |ip: &IpAddr| {
        have.iter()
            .find(|t| t.ip == *ip && (t.whole || t.ifindex != 0))
    };
    let mut kept: Vec<&Tag> = Vec::new();
    let mut taken: BTreeSet<u16> = have.iter().map(|t| t.slot).collect();
    let mut next = 1u16;
    let mut out = BTreeMap::new();
    for (ip, (veth, device, index, classid)) in &wanted {
        let mine = own(ip);
        let slot = match mine {
            Some(t) if t.whole && t.ifindex == *index && t.classid == *classid => {
                kept.push(t);
                out.insert(*ip, veth.clone());
                continue;
            }
            Some(t) if t.whole => t.slot,
            _ => {
                while taken.contains(&next) {
                    next += 1;
                }
                if u32::from(next) >= EDT_TAG_SLOTS {
                    steps.unmet.push(format!(
                        "endpoint {ip}: no free egress tag slot left ({} at most)",
                        EDT_TAG_SLOTS - 1
                    ));
                    continue;
                }
                taken.insert(next);
                next
            }
        };
        if let Some(t) = mine {
            kept.push(t);
        }
        steps.entries.push(Action::new(
            Role::Endpoint,
            &ip.to_string(),
            Change::SetTag {
                tag: Tag {
                    ip: *ip,
                    slot,
                    ifindex: *index,
                    classid: *classid,
                    whole: true,
                },
                device: device.clone(),
                was: mine.copied(),
            },
        ));
        out.insert(*ip, veth.clone());
    }
    for t in have.iter().filter(|t| !kept.contains(t)) {
        steps.gone.push(Action::new(
            Role::Endpoint,
            &t.ip.to_string(),
            Change::RemoveTag { was: *t },
        ));
    }
    let veths: BTreeSet<&String> = out.values().collect();
    for veth in veths {
        plan_program(
            observed,
            inputs,
            veth,
            mode,
            Prog::Classify,
            &mut steps.devices,
        );
    }
    out
}

/// The veth pods' ingress: the host-side veth of each registered veth pod
/// with an ingress limit, on a shaped master, gets podnet's root and
/// (EDT) the pod-ingress program on its egress, which is what the pod
/// receives: whatever reaches it (from the network, the node, another
/// pod), with its final addresses. Returns those veths with the limits of
/// their pods' addresses. A veth that is gone (the pod with it) needs
/// nothing; one that is not a veth is left alone.
#[allow(clippy::too_many_arguments)]
fn plan_veths(
    observed: &Observed,
    inputs: &Inputs,
    pods: &[&EndpointRecord],
    queueing: &crate::policy::Queueing,
    shaped: &BTreeSet<String>,
    mode: AttachMode,
    kind: RootKind,
    steps: &mut Steps,
) -> BTreeMap<String, BTreeMap<IpAddr, EgressLimit>> {
    let mut out: BTreeMap<String, BTreeMap<IpAddr, EgressLimit>> = BTreeMap::new();
    for e in pods {
        let Some(veth) = e.endpoint.veth.as_deref() else {
            continue;
        };
        let wanted = crate::policy::wanted_in([*e], shaped, queueing, Direction::Ingress);
        if wanted.is_empty() {
            continue;
        }
        match observed.link(veth) {
            Some(l) if l.kind.as_deref() == Some("veth") => {
                out.entry(veth.to_string()).or_default().extend(wanted)
            }
            Some(_) => steps.unmet.push(format!(
                "endpoint {}/{}: {veth} is not a veth: its ingress limit is not enforced",
                e.container_id, e.ifname
            )),
            None => {}
        }
    }
    for veth in out.keys() {
        plan_device_root(
            observed,
            inputs,
            veth,
            mode,
            kind,
            Prog::PodIngress,
            true,
            false,
            steps,
        );
    }
    out
}

/// The shaped device (of `devices`) a veth pod's egress limit leaves
/// through: its `master`, or the one device when it names none; None
/// without an egress limit.
fn tag_device(
    e: &EndpointRecord,
    devices: &BTreeSet<String>,
    queueing: &crate::policy::Queueing,
) -> Option<String> {
    let device = match (&e.endpoint.master, devices.len()) {
        (Some(m), _) => m.clone(),
        (None, 1) => devices.iter().next()?.clone(),
        (None, _) => return None,
    };
    let one: BTreeSet<String> = [device.clone()].into();
    let limited = !crate::policy::wanted_in([e], &one, queueing, Direction::Egress).is_empty();
    (limited && devices.contains(&device)).then_some(device)
}

/// What becomes of podnet's ingress ifb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ifb {
    /// Wanted: made or kept, with its root and program.
    Kept,
    /// Not wanted: torn down with the devices that no longer shape.
    Gone,
    /// An interface of that name that is not podnet's: left alone.
    Foreign,
}

/// The ingress side, once per node: podnet's ifb (made, its root, its
/// program) where any endpoint on a shaped master has an ingress limit,
/// the ingress map pointed at it, and the redirect program on each shaped
/// master's ingress hook; with no limit left, the redirects off and the
/// map pointed at nothing (the ifb itself goes with the devices that no
/// longer shape).
fn plan_ingress(
    observed: &Observed,
    inputs: &Inputs,
    wanted: &BTreeMap<IpAddr, EgressLimit>,
    shaped: &BTreeSet<String>,
    mode: AttachMode,
    kind: Option<RootKind>,
    steps: &mut Steps,
) -> Ifb {
    let link = observed.link(INGRESS_DEVICE);
    let ifb = match (link, kind) {
        (Some(l), _) if !l.is_owned() && !l.is_half_created() => Ifb::Foreign,
        (_, Some(_)) if !wanted.is_empty() => Ifb::Kept,
        _ => Ifb::Gone,
    };
    let pointed = observed
        .endpoint_map
        .as_ref()
        .and_then(|m| m.ingress_device)
        .unwrap_or(0);
    let step = |change| Action::new(Role::Shaping, INGRESS_DEVICE, change);
    let Some(kind) = kind.filter(|_| ifb == Ifb::Kept) else {
        if ifb == Ifb::Foreign && !wanted.is_empty() {
            steps.unmet.push(format!(
                "ingress shaping: an interface named {INGRESS_DEVICE} exists and is not podnet's (its alias has no \"podnet:\" mark); podnet will not take it over, so no ingress limit is enforced: remove or rename it"
            ));
        }
        for dev in shaped {
            detach_programs(observed, dev, &[Prog::Redirect], &mut steps.off);
        }
        if pointed != 0 {
            steps.off.push(step(Change::SetIngressDevice {
                to: Some(0),
                was: pointed,
            }));
        }
        return ifb;
    };
    match link {
        None => steps.devices.push(step(Change::CreateIngressDevice)),
        // podnet made it and stopped before marking it: made again, which
        // marks the one there.
        Some(l) if l.is_half_created() => steps.devices.push(step(Change::CreateIngressDevice)),
        Some(l) if !l.up => steps.devices.push(step(Change::SetUp { up: true })),
        Some(_) => {}
    }
    plan_device_root(
        observed,
        inputs,
        INGRESS_DEVICE,
        mode,
        kind,
        Prog::Ingress,
        false,
        false,
        steps,
    );
    if link.is_none_or(|l| l.index != pointed) {
        steps.devices.push(step(Change::SetIngressDevice {
            to: None,
            was: pointed,
        }));
    }
    // With fq at the ifb, the redirect that lets idle small packets go
    // straight on; an HTB class would not know of them, so with HTB all go
    // through. A switch swaps one for the other in place.
    let redirect = match kind {
        RootKind::Fq => Prog::RedirectAhead,
        RootKind::Htb => Prog::Redirect,
    };
    for dev in shaped {
        plan_program(observed, inputs, dev, mode, redirect, &mut steps.devices);
    }
    ifb
}

/// Every podnet program on `dev`'s hooks for `progs` (TCX and clsact) off.
fn detach_programs(observed: &Observed, dev: &str, progs: &[Prog], out: &mut Vec<Action>) {
    // Each hook holds one program: on the egress hook the ifb's is the
    // ingress one; on the ingress hook a veth's is the tag program.
    let on_egress = if dev == INGRESS_DEVICE {
        Prog::Ingress
    } else {
        Prog::Egress
    };
    let is_veth = observed
        .link(dev)
        .is_some_and(|l| l.kind.as_deref() == Some("veth"));
    let on_ingress = if is_veth {
        Prog::Classify
    } else {
        Prog::Redirect
    };
    let mut hooks: Vec<Prog> = Vec::new();
    for p in progs {
        let p = if p.hook_name() == "ingress" {
            on_ingress
        } else {
            on_egress
        };
        if !hooks.contains(&p) {
            hooks.push(p);
        }
    }
    for prog in hooks {
        for mode in [AttachMode::Tcx, AttachMode::Clsact] {
            if let Some(p) = observed.program_on(dev, prog, mode) {
                out.push(Action::new(
                    Role::Shaping,
                    dev,
                    Change::DetachProgram {
                        mode,
                        program: p.id,
                        prog,
                    },
                ));
            }
        }
    }
}

/// Every filter, then every class, of podnet's HTB tree on `dev` removed,
/// each a step with its own undo (the tree would go with the root anyway;
/// as steps, an undo puts it back whole).
fn take_out_classes(observed: &Observed, dev: &str, out: &mut Vec<Action>) {
    let Some(tree) = observed.htb_of(dev) else {
        return;
    };
    let mut classes: Vec<Action> = Vec::new();
    for f in &tree.filters {
        if let (Some(ip), Some(minor)) = (f.ip, f.class) {
            out.push(Action::new(
                Role::Endpoint,
                &ip.to_string(),
                Change::RemoveFilter {
                    device: dev.to_string(),
                    minor,
                    dst: f.dst,
                },
            ));
            if let Some(c) = tree.classes.iter().find(|c| c.minor == minor) {
                classes.push(Action::new(
                    Role::Endpoint,
                    &ip.to_string(),
                    Change::RemoveClass {
                        was: spec_of(dev, c),
                    },
                ));
            }
        }
    }
    out.extend(classes);
}

/// An observed class as the plan describes it (a leaf other than bfifo
/// has limit 0: "not podnet's leaf").
fn spec_of(dev: &str, c: &HtbClass) -> ClassSpec {
    ClassSpec {
        device: dev.to_string(),
        minor: c.minor,
        rate_bps: c.rate_bps,
        burst_ns: c.burst_ns,
        limit_bytes: c
            .leaf
            .as_ref()
            .filter(|l| l.kind == "bfifo")
            .map_or(0, |l| l.limit_bytes),
    }
}

/// The class an endpoint address's limit calls for (minor aside): rate =
/// ceil as the kernel keeps it (bytes/s), the burst in whole psched ticks,
/// and a bfifo leaf holding the horizon's worth at the rate, at least four
/// 64 KiB packets, so a packet waits in it about the horizon at most (as
/// EDT drops beyond it).
pub fn class_for(dev: &str, minor: u16, limit: &EgressLimit) -> ClassSpec {
    const MIN_LIMIT: u128 = 4 * 64 * 1024;
    let bytes = (limit.rate_bps / 8).max(1);
    let burst_ns = u64::try_from(u128::from(limit.burst_bytes) * 1_000_000_000 / u128::from(bytes))
        .unwrap_or(u64::MAX);
    let ticks = (burst_ns / PSCHED_TICK_NS).min(u64::from(u32::MAX));
    let horizon_bytes = u128::from(bytes) * limit.horizon.as_nanos() / 1_000_000_000;
    ClassSpec {
        device: dev.to_string(),
        minor,
        rate_bps: bytes * 8,
        burst_ns: ticks * PSCHED_TICK_NS,
        limit_bytes: u32::try_from(horizon_bytes.max(MIN_LIMIT)).unwrap_or(u32::MAX),
    }
}

/// The HTB classes and u32 filters of `dev`: one class per registered
/// endpoint address with an egress rate leaving through it. Minors stay
/// as the kernel holds them (an address keeps the class its filter points
/// at; a class no filter points at is taken first by an address that has
/// none), and a new address gets the lowest free minor.
fn plan_classes(
    wanted: &BTreeMap<IpAddr, EgressLimit>,
    observed: &Observed,
    dev: &str,
    dst: bool,
    steps: &mut Steps,
) -> BTreeMap<IpAddr, u16> {
    let wanted: BTreeMap<IpAddr, EgressLimit> = wanted
        .iter()
        // A rate of 0 counts without limiting: HTB has no such class, so
        // its traffic goes out direct as unclassified traffic does.
        .filter(|(_, l)| l.rate_bps > 0)
        .map(|(ip, l)| (*ip, *l))
        .collect();
    // A root being put in place now holds no classes yet.
    let root_is_htb = Qdiscs::observed(observed, dev).root_state() == RootState::Htb;
    let empty = HtbTree::default();
    let tree = observed
        .htb_of(dev)
        .filter(|_| root_is_htb)
        .unwrap_or(&empty);
    let classes: BTreeMap<u16, &HtbClass> = tree.classes.iter().map(|c| (c.minor, c)).collect();
    let mut filtered: BTreeMap<IpAddr, u16> = BTreeMap::new();
    for f in tree.filters.iter().filter(|f| f.dst == dst) {
        if let (Some(ip), Some(minor)) = (f.ip, f.class) {
            filtered.entry(ip).or_insert(minor);
        }
    }
    let mut orphans = classes
        .keys()
        .copied()
        .filter(|m| !filtered.values().any(|f| f == m))
        .collect::<Vec<_>>()
        .into_iter();
    let mut taken: BTreeSet<u16> = filtered
        .iter()
        .filter(|(ip, _)| wanted.contains_key(ip))
        .map(|(_, m)| *m)
        .collect();
    let mut next_free = 1u16;
    let step = |ip: &IpAddr, change| Action::new(Role::Endpoint, &ip.to_string(), change);
    let mut kept: BTreeSet<u16> = BTreeSet::new();
    let mut minors = BTreeMap::new();
    for (ip, limit) in &wanted {
        let (minor, has_filter) = match filtered.get(ip) {
            Some(m) => (*m, true),
            None => {
                let m = orphans.next().or_else(|| {
                    while taken.contains(&next_free) || classes.contains_key(&next_free) {
                        next_free = next_free.checked_add(1)?;
                    }
                    Some(next_free)
                });
                match m {
                    Some(m) => (m, false),
                    None => {
                        steps.unmet.push(format!(
                            "endpoint {ip}: {dev} has no free htb class left (65535 at most)"
                        ));
                        continue;
                    }
                }
            }
        };
        taken.insert(minor);
        kept.insert(minor);
        minors.insert(*ip, minor);
        let want = class_for(dev, minor, limit);
        match classes.get(&minor) {
            None => steps
                .classes
                .push(step(ip, Change::AddClass { class: want })),
            Some(c) => {
                let was = spec_of(dev, c);
                if was != want || c.ceil_bps != want.rate_bps {
                    steps
                        .classes
                        .push(step(ip, Change::ChangeClass { class: want, was }));
                }
            }
        }
        if !has_filter {
            steps.filters.push(step(
                ip,
                Change::AddFilter {
                    device: dev.to_string(),
                    minor,
                    dst,
                },
            ));
        }
    }
    // Filters of addresses no longer wanted, then classes nobody uses.
    for (ip, minor) in &filtered {
        if !wanted.contains_key(ip) {
            steps.unfilter.push(step(
                ip,
                Change::RemoveFilter {
                    device: dev.to_string(),
                    minor: *minor,
                    dst,
                },
            ));
        }
    }
    for (minor, c) in &classes {
        if kept.contains(minor) {
            continue;
        }
        // Named by the address whose filter pointed at it, if any.
        let name = filtered
            .iter()
            .find(|(_, m)| *m == minor)
            .map_or_else(|| format!("{dev} 706e:{minor:x}"), |(ip, _)| ip.to_string());
        steps.unclass.push(Action::new(
            Role::Endpoint,
            &name,
            Change::RemoveClass {
                was: spec_of(dev, c),
            },
        ));
    }
    minors
}

/// Root and egress program (`prog`) of one shaping device (a master, the
/// ingress ifb, a veth pod's veth); false when it cannot be shaped (an
/// `unmet` line says why).
#[allow(clippy::too_many_arguments)]
fn plan_device_root(
    observed: &Observed,
    inputs: &Inputs,
    dev: &str,
    mode: AttachMode,
    kind: RootKind,
    prog: Prog,
    opted_in: bool,
    keep: bool,
    steps: &mut Steps,
) -> bool {
    let step = |change| Action::new(Role::Shaping, dev, change);
    let qdiscs = Qdiscs::observed(observed, dev);
    let sh = observed.shaping_of(dev);
    let queues = observed.link(dev).map_or(1, |l| l.tx_queues);
    let replace = |was: String, drops_queue: bool, from: Option<RootKind>| Change::ReplaceRoot {
        kind,
        from,
        was,
        queues,
        drops_queue,
        opted_in,
    };
    if kind == RootKind::Htb && !keep {
        // No EDT program stays on a device HTB shapes: it would stamp
        // packets no qdisc honours. Off before fq goes. (The redirect on
        // the ingress hook stays: it feeds the ifb either way. `keep`: veth
        // pods' tags need it, and it stamps nothing there, as no entry
        // names a device HTB shapes.)
        detach_programs(observed, dev, &[prog], &mut steps.devices);
    }
    let state = qdiscs.root_state();
    match &state {
        s if s.is(kind) => {}
        // A switch between podnet's own roots (EDT <-> HTB).
        RootState::Shaping => steps.devices.push(step(replace(
            "podnet's fq 706e:".into(),
            true,
            Some(RootKind::Fq),
        ))),
        RootState::Htb => {
            take_out_classes(observed, dev, &mut steps.devices);
            steps.devices.push(step(replace(
                "podnet's htb 706e:".into(),
                true,
                Some(RootKind::Htb),
            )))
        }
        RootState::PodnetsNotFq { kind: other } => steps.devices.push(step(replace(
            sh.and_then(|s| s.previous_root.clone())
                .unwrap_or_else(|| format!("{other} 706e: (podnet's, not {kind})")),
            true,
            None,
        ))),
        // No root in an observation means the kernel's default (a golden
        // case written without qdiscs; a live link always has one).
        RootState::Missing => {
            steps
                .devices
                .push(step(replace("default noqueue".into(), false, None)))
        }
        RootState::Other { kind: other, .. } => match qdiscs.previous_root(dev) {
            Ok(previous) => {
                steps
                    .devices
                    .push(step(replace(previous.describe(), other != "noqueue", None)))
            }
            Err(e) => {
                steps.unmet.push(format!("masters.{dev}.shaping: {e}"));
                return false;
            }
        },
    }
    if kind == RootKind::Htb && !keep {
        return true;
    }
    plan_program(observed, inputs, dev, mode, prog, &mut steps.devices);
    true
}

/// Program `prog` on `dev`'s hook for it: attached, or swapped in place
/// for an older one, in `mode`; one in the other mode goes after.
fn plan_program(
    observed: &Observed,
    inputs: &Inputs,
    dev: &str,
    mode: AttachMode,
    prog: Prog,
    out: &mut Vec<Action>,
) {
    let step = |change| Action::new(Role::Shaping, dev, change);
    let current = |p: &BpfProgram| {
        inputs.program_of(prog).is_none_or(|ours| {
            p.tag == ours.tag && ours.map_ids.iter().all(|m| p.map_ids.contains(m))
        })
    };
    let other_mode = match mode {
        AttachMode::Tcx => AttachMode::Clsact,
        AttachMode::Clsact => AttachMode::Tcx,
    };
    match observed.program_on(dev, prog, mode) {
        None => out.push(step(Change::AttachProgram { mode, prog })),
        Some(p) if !current(p) => out.push(step(Change::SwapProgram {
            mode,
            from: p.id,
            prog,
        })),
        Some(_) => {}
    }
    // A mode switch (a kernel upgrade): the old attachment goes only once
    // the new one runs, so packets are charged twice for a moment, never
    // not at all.
    if let Some(p) = observed.program_on(dev, prog, other_mode) {
        out.push(step(Change::DetachProgram {
            mode: other_mode,
            program: p.id,
            prog,
        }));
    }
}

/// The map holds exactly the `wanted` entries: those the registered
/// endpoints on the shaped devices need, per address and direction.
fn plan_entries(
    observed: &Observed,
    wanted: &BTreeMap<(IpAddr, Direction), MapEntry>,
    steps: &mut Steps,
) {
    let have: BTreeMap<(IpAddr, Direction), MapEntry> = observed
        .endpoint_map
        .iter()
        .flat_map(|m| m.entries.iter().map(|e| ((e.ip, e.direction), *e)))
        .collect();
    let step = |ip: &IpAddr, change| Action::new(Role::Endpoint, &ip.to_string(), change);
    for ((ip, dir), entry) in wanted {
        let was = have.get(&(*ip, *dir)).copied();
        if was != Some(*entry) {
            steps
                .entries
                .push(step(ip, Change::SetEntry { entry: *entry, was }));
        }
    }
    for ((ip, _), was) in have.iter().filter(|(k, _)| !wanted.contains_key(k)) {
        steps.gone.push(step(ip, Change::RemoveEntry { was: *was }));
    }
}
