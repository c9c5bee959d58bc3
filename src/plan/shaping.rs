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

use super::{Action, Change, Role};
use crate::api::types::EndpointRecord;
use crate::config::NodeConfig;
use crate::shaping::tc::{Qdiscs, RootState};
use crate::shaping::AttachMode;
use crate::state::{BpfProgram, MapEntry, Observed};

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
}

impl Inputs {
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

/// The shaping steps, by phase: `off` (programs off, then roots back, for
/// devices that no longer shape), `entries` (written before any program
/// reads them), `devices` (root, then program, then the other mode's
/// program off), `gone` (entries nobody needs).
#[derive(Default)]
pub(super) struct Steps {
    pub off: Vec<Action>,
    pub entries: Vec<Action>,
    pub devices: Vec<Action>,
    pub gone: Vec<Action>,
    pub unmet: Vec<String>,
    /// The devices shaped once these steps have run.
    pub shaped: BTreeSet<String>,
}

pub(super) fn plan(desired: &NodeConfig, observed: &Observed, inputs: &Inputs) -> Steps {
    let mut steps = Steps::default();
    let configured = crate::policy::shaping_masters(desired);
    let mut devices: BTreeSet<String> = configured
        .iter()
        .filter(|d| observed.link(d).is_some())
        .cloned()
        .collect();
    if !devices.is_empty() && !observed.kernel.sch_fq {
        steps.unmet.push(format!(
            "egress shaping of {}: this kernel has no fq qdisc (CONFIG_NET_SCH_FQ, module sch_fq), which EDT shaping needs; those devices are not shaped",
            devices.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
        devices.clear();
    }
    let mode = inputs.mode(observed);
    let mut shaped = BTreeSet::new();
    for dev in &devices {
        if plan_device(desired, observed, inputs, dev, mode, &mut steps) {
            shaped.insert(dev.clone());
        }
    }
    // Devices podnet shaped that no longer shape: the program off first (a
    // stamped packet must never meet a qdisc that ignores the stamp), then
    // the root podnet replaced back.
    for link in &observed.links {
        if configured.contains(&link.name) {
            continue;
        }
        let sh = observed.shaping_of(&link.name);
        let root = Qdiscs::observed(observed, &link.name).root_state();
        let step = |change| Action::new(Role::Shaping, &link.name, change);
        for (mode, program) in sh
            .into_iter()
            .flat_map(|s| [(AttachMode::Tcx, &s.tcx), (AttachMode::Clsact, &s.clsact)])
        {
            if let Some(p) = program {
                steps.off.push(step(Change::DetachProgram {
                    mode,
                    program: p.id,
                }));
            }
        }
        if root.is_podnets() {
            steps.off.push(step(Change::RestoreRoot {
                to: sh
                    .and_then(|s| s.previous_root.clone())
                    .unwrap_or_else(|| "the kernel's default root".into()),
            }));
        }
    }
    plan_entries(desired, observed, inputs, &shaped, &mut steps);
    steps.shaped = shaped;
    steps
}

/// Root and program of one shaping device; false when the device cannot be
/// shaped (an `unmet` line says why).
fn plan_device(
    desired: &NodeConfig,
    observed: &Observed,
    inputs: &Inputs,
    dev: &str,
    mode: AttachMode,
    steps: &mut Steps,
) -> bool {
    let step = |change| Action::new(Role::Shaping, dev, change);
    let qdiscs = Qdiscs::observed(observed, dev);
    let sh = observed.shaping_of(dev);
    let queues = observed.link(dev).map_or(1, |l| l.tx_queues);
    let opted_in = desired.masters.get(dev).and_then(|m| m.shaping) == Some(true);
    let replace = |was: String, drops_queue: bool| Change::ReplaceRoot {
        was,
        queues,
        drops_queue,
        opted_in,
    };
    match qdiscs.root_state() {
        RootState::Shaping => {}
        RootState::PodnetsNotFq { kind } => steps.devices.push(step(replace(
            sh.and_then(|s| s.previous_root.clone())
                .unwrap_or_else(|| format!("{kind} 706e: (podnet's, not fq)")),
            true,
        ))),
        // No root in an observation means the kernel's default (a golden
        // case written without qdiscs; a live link always has one).
        RootState::Missing => steps
            .devices
            .push(step(replace("default noqueue".into(), false))),
        RootState::Other { kind, .. } => match qdiscs.previous_root(dev) {
            Ok(previous) => steps
                .devices
                .push(step(replace(previous.describe(), kind != "noqueue"))),
            Err(e) => {
                steps.unmet.push(format!("masters.{dev}.shaping: {e}"));
                return false;
            }
        },
    }
    let current = |p: &BpfProgram| {
        inputs.program.as_ref().is_none_or(|ours| {
            p.tag == ours.tag && ours.map_ids.iter().all(|m| p.map_ids.contains(m))
        })
    };
    let (here, other, other_mode) = match mode {
        AttachMode::Tcx => (
            sh.and_then(|s| s.tcx.as_ref()),
            sh.and_then(|s| s.clsact.as_ref()),
            AttachMode::Clsact,
        ),
        AttachMode::Clsact => (
            sh.and_then(|s| s.clsact.as_ref()),
            sh.and_then(|s| s.tcx.as_ref()),
            AttachMode::Tcx,
        ),
    };
    match here {
        None => steps.devices.push(step(Change::AttachProgram { mode })),
        Some(p) if !current(p) => steps
            .devices
            .push(step(Change::SwapProgram { mode, from: p.id })),
        Some(_) => {}
    }
    // A mode switch (a kernel upgrade): the old attachment goes only once
    // the new one runs, so packets are charged twice for a moment, never
    // not at all.
    if let Some(p) = other {
        steps.devices.push(step(Change::DetachProgram {
            mode: other_mode,
            program: p.id,
        }));
    }
    true
}

/// The map holds exactly the entries the registered endpoints on the
/// shaped devices need.
fn plan_entries(
    desired: &NodeConfig,
    observed: &Observed,
    inputs: &Inputs,
    shaped: &BTreeSet<String>,
    steps: &mut Steps,
) {
    let queueing = crate::policy::Queueing::of(desired);
    let wanted: BTreeMap<IpAddr, MapEntry> =
        crate::policy::wanted(&inputs.endpoints, shaped, &queueing)
            .into_iter()
            .map(|(ip, limit)| (ip, limit.entry(ip)))
            .collect();
    let have: BTreeMap<IpAddr, MapEntry> = observed
        .endpoint_map
        .iter()
        .flat_map(|m| m.entries.iter().map(|e| (e.ip, *e)))
        .collect();
    let step = |ip: &IpAddr, change| Action::new(Role::Endpoint, &ip.to_string(), change);
    for (ip, entry) in &wanted {
        let was = have.get(ip).copied();
        if was != Some(*entry) {
            steps
                .entries
                .push(step(ip, Change::SetEntry { entry: *entry, was }));
        }
    }
    for (ip, was) in have.iter().filter(|(ip, _)| !wanted.contains_key(ip)) {
        steps.gone.push(step(ip, Change::RemoveEntry { was: *was }));
    }
}
