//! One step of a plan: what changes, on which object, and what it costs.

use std::collections::BTreeMap;
use std::fmt;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config::{ChildKind, ChildMode, RdmaNetnsMode, VfDriver};
use crate::shaping::tc::RootKind;
use crate::shaping::{AttachMode, Prog};
use crate::state::{MapEntry, Tag, VfConfig};

/// What a step costs the node's traffic, so an operator can gate on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Disruption {
    /// No traffic is interrupted.
    Hitless,
    /// A device's root qdisc is replaced: the packets queued in the old one
    /// are dropped once (TCP sends them again); the link stays up.
    QueueReset,
    /// The link goes down or is re-created: its traffic stops briefly.
    LinkFlap,
    /// Every VF of a PF is destroyed and re-created.
    VfReset,
    /// Takes effect only after a reboot.
    NeedsReboot,
}

impl fmt::Display for Disruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Disruption::Hitless => "hitless",
            Disruption::QueueReset => "queue-reset",
            Disruption::LinkFlap => "link-flap",
            Disruption::VfReset => "vf-reset",
            Disruption::NeedsReboot => "needs-reboot",
        })
    }
}

impl std::str::FromStr for Disruption {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "hitless" => Ok(Disruption::Hitless),
            "queue-reset" => Ok(Disruption::QueueReset),
            "link-flap" => Ok(Disruption::LinkFlap),
            "vf-reset" => Ok(Disruption::VfReset),
            "needs-reboot" => Ok(Disruption::NeedsReboot),
            _ => Err("expected hitless, queue-reset, link-flap, vf-reset or needs-reboot".into()),
        }
    }
}

/// The role of the object a step acts on; plans group steps by object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Master,
    Shim,
    /// A link podnet created that no node file declares any more, or a
    /// foreign link holding a route podnet added.
    Stale,
    /// A device's egress shaping: its root qdisc and the EDT program on its
    /// hook (`name` is the device).
    Shaping,
    /// One endpoint's entry in the shaper's map (`name` is its address).
    Endpoint,
    /// An SR-IOV PF: its VF count and its VFs' settings (`name` is the PF).
    Sriov,
    /// An RDMA device podnet makes (a Soft-RoCE link: `name` is the
    /// device), or the RDMA modules (`name` is `modules`).
    Rdma,
}

impl Role {
    /// How objects of this role are named: `master`, `sriov`...
    pub fn noun(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Shim => "shim",
            Role::Stale => "link",
            Role::Shaping => "shaping",
            Role::Endpoint => "endpoint",
            Role::Sriov => "sriov",
            Role::Rdma => "rdma",
        }
    }
}

/// A link podnet creates, with everything needed to create it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewLink {
    pub kind: ChildKind,
    pub mode: ChildMode,
    pub parent: String,
    pub mtu: Option<u32>,
    /// The ownership mark (`podnet:...`).
    pub alias: String,
}

/// An owned link as it was before podnet deleted it, so undo can restore it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkSnapshot {
    pub link: NewLink,
    pub up: bool,
    pub addresses: Vec<IpNet>,
    pub routes: Vec<IpNet>,
}

/// One endpoint address's HTB class on a device: `706e:<minor>` with
/// rate = ceil, its burst, and the byte limit of its bfifo leaf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassSpec {
    pub device: String,
    pub minor: u16,
    pub rate_bps: u64,
    /// HTB's buffer as time at the rate (ns, a multiple of the 64 ns tick).
    pub burst_ns: u64,
    /// bfifo's limit: the rate times the horizon, at least four 64 KiB
    /// packets, so a packet waits at most about the horizon.
    pub limit_bytes: u32,
}

/// A change to one attribute of one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Change {
    CreateLink(NewLink),
    /// Only ever for a link podnet owns.
    DeleteLink {
        was: Box<LinkSnapshot>,
        reason: String,
    },
    SetMtu {
        from: u32,
        to: u32,
    },
    SetUp {
        up: bool,
    },
    AddAddress {
        prefix: IpNet,
    },
    DelAddress {
        prefix: IpNet,
    },
    /// A `scope link` route through the object, marked `proto podnet`.
    AddRoute {
        dst: IpNet,
    },
    DelRoute {
        dst: IpNet,
    },
    /// Puts podnet's ifalias mark on a link it created but could not mark
    /// (podnet stopped between the two requests; see [`PODNET_LINK_GROUP`]).
    ///
    /// [`PODNET_LINK_GROUP`]: crate::state::PODNET_LINK_GROUP
    MarkLink {
        alias: String,
    },
    /// podnet's root on a shaping device: fq (mq with an fq per queue when
    /// `queues` > 1) for EDT, or htb for the HTB backend; the root it
    /// replaces (`was`) is recorded first.
    ReplaceRoot {
        #[serde(default)]
        kind: RootKind,
        /// podnet's own root of another kind, switched (EDT <-> HTB): its
        /// undo puts that kind back, not the root from before podnet.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<RootKind>,
        was: String,
        queues: u32,
        /// The old root may hold packets (anything but noqueue): they are
        /// dropped when it goes.
        drops_queue: bool,
        /// The master's own `shaping = true`, not `[shaping]`'s default:
        /// the operator asked for this device by name.
        opted_in: bool,
    },
    /// The root podnet replaced put back (its record says what it was).
    RestoreRoot {
        to: String,
        /// podnet's root that goes (for the undo).
        #[serde(default)]
        kind: RootKind,
    },
    /// An endpoint address's HTB class with its bfifo leaf (`name` is the
    /// address).
    AddClass {
        class: ClassSpec,
    },
    /// The class's rate, burst or leaf limit changed in place (the class
    /// and its queue stay).
    ChangeClass {
        class: ClassSpec,
        was: ClassSpec,
    },
    /// The class and its leaf removed (its filter is removed before).
    RemoveClass {
        was: ClassSpec,
    },
    /// The u32 filter sending the address's packets (from it; `dst`: to
    /// it, on a device shaping ingress) to class `minor`.
    AddFilter {
        device: String,
        minor: u16,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        dst: bool,
    },
    /// Every u32 filter on podnet's root matching the address.
    RemoveFilter {
        device: String,
        minor: u16,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        dst: bool,
    },
    /// podnet's program `prog` (the EDT egress program unless named) onto
    /// its hook. It fails open: a packet with no entry passes as before.
    AttachProgram {
        mode: AttachMode,
        #[serde(default, skip_serializing_if = "Prog::is_default")]
        prog: Prog,
    },
    /// podnet's program swapped in place for the one on the hook (another
    /// version, or one reading a map that is gone); the hook is never empty.
    SwapProgram {
        mode: AttachMode,
        from: u32,
        #[serde(default, skip_serializing_if = "Prog::is_default")]
        prog: Prog,
    },
    /// podnet's program `program` taken off the hook `prog` runs on.
    DetachProgram {
        mode: AttachMode,
        program: u32,
        #[serde(default, skip_serializing_if = "Prog::is_default")]
        prog: Prog,
    },
    /// Only an undo: program `program`, held by the apply that swapped or
    /// detached it, put back on the hook.
    PutBackProgram {
        mode: AttachMode,
        program: u32,
        #[serde(default, skip_serializing_if = "Prog::is_default")]
        prog: Prog,
    },
    /// podnet's ingress ifb (`podnet-ifb`, one per node) created and up:
    /// the masters' ingress hooks hand it the packets of addresses with an
    /// ingress limit, and it hands them back once its root let them go.
    CreateIngressDevice,
    /// The ifb removed (only a bare one: its programs, classes and root
    /// go as steps before).
    DeleteIngressDevice,
    /// The ingress map pointed at the ifb's ifindex (`to` None: the ifb's
    /// as it is when the step runs; Some(0): at none).
    SetIngressDevice {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<u32>,
        was: u32,
    },
    /// An endpoint's entry written (added, or its limit changed: its clock
    /// and counters stay).
    SetEntry {
        entry: MapEntry,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        was: Option<MapEntry>,
    },
    RemoveEntry {
        was: MapEntry,
    },
    /// A veth pod's egress tag written: its packets routed out through
    /// `device` (the tag's ifindex) carry its slot there, where its egress
    /// entry shapes them after masquerade.
    SetTag {
        tag: Tag,
        device: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        was: Option<Tag>,
    },
    RemoveTag {
        was: Tag,
    },
    /// The PF's `sriov_numvfs`, through 0 when both are above it (the
    /// kernel takes no N -> M); `was`: the old VFs' settings a new VF
    /// would not have, by index, for the undo.
    SetNumVfs {
        from: u32,
        to: u32,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        was: BTreeMap<u32, VfConfig>,
    },
    /// VF `vf` bound to driver `to` (through its `driver_override`);
    /// `from`: the driver it had (None: none); `noiommu`: vfio's no-IOMMU
    /// mode is turned on first (the files asked for it).
    SetVfDriver {
        vf: u32,
        to: VfDriver,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        noiommu: bool,
    },
    /// A kernel module loaded (never unloaded: others may use it).
    LoadModule {
        module: String,
    },
    /// A software RDMA link (`rxe`) named `name` on `netdev`.
    CreateRdmaLink {
        link_type: String,
        netdev: String,
    },
    /// Only ever for a link podnet made; `link_type` and `netdev` are
    /// what undo makes again.
    DeleteRdmaLink {
        link_type: String,
        netdev: String,
        reason: String,
    },
    /// The RDMA subsystem's netns mode switched now (the kernel allows it
    /// while no network namespace but the initial one exists).
    SetRdmaNetnsMode {
        from: RdmaNetnsMode,
        to: RdmaNetnsMode,
    },
    /// podnet's modprobe.d file `file` set to load ib_core in mode `to`
    /// (None: the file removed); `from`: what it said (None: absent or
    /// without the option). `busy`: the mode cannot change before a reboot
    /// (these network namespaces exist), so this is how it changes.
    SetRdmaBootMode {
        file: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<RdmaNetnsMode>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<RdmaNetnsMode>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        busy: Vec<String>,
    },
    /// Settings of VF `vf`, through the PF: only the fields in `set`;
    /// `was` holds what they replace (empty on a VF just made).
    SetVf {
        vf: u32,
        set: VfConfig,
        #[serde(default, skip_serializing_if = "VfConfig::is_empty")]
        was: VfConfig,
    },
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub role: Role,
    /// Interface name of the object.
    pub name: String,
    #[serde(flatten)]
    pub change: Change,
}

impl Action {
    pub fn new(role: Role, name: &str, change: Change) -> Self {
        Action {
            role,
            name: name.to_string(),
            change,
        }
    }

    pub fn disruption(&self) -> Disruption {
        match (&self.change, self.role) {
            // The ifb's root goes back only once no master redirects to
            // it any more (the redirects come off first): nothing is queued.
            (Change::RestoreRoot { .. }, _) if self.name == crate::shaping::INGRESS_DEVICE => {
                Disruption::Hitless
            }
            // Many NIC drivers reset the device to change its MTU.
            (Change::SetMtu { .. }, Role::Master) => Disruption::LinkFlap,
            (Change::SetUp { up: false }, _) | (Change::DeleteLink { .. }, _) => {
                Disruption::LinkFlap
            }
            (
                Change::ReplaceRoot {
                    drops_queue: true, ..
                },
                _,
            )
            | (Change::RestoreRoot { .. }, _) => Disruption::QueueReset,
            // Every VF there is goes; with none yet, the driver may still
            // re-initialise the PF to enable SR-IOV (igb does: its link
            // goes down and up).
            (Change::SetNumVfs { from: 0, .. }, _) => Disruption::LinkFlap,
            (Change::SetNumVfs { .. }, _) => Disruption::VfReset,
            // The device's queue pairs and their users' connections go.
            (Change::DeleteRdmaLink { .. }, _) => Disruption::LinkFlap,
            (Change::SetRdmaBootMode { busy, .. }, _) if !busy.is_empty() => {
                Disruption::NeedsReboot
            }
            _ => Disruption::Hitless,
        }
    }

    /// The steps that undo this one, in order.
    pub fn undo(&self) -> Vec<Action> {
        let back = |change| vec![Action::new(self.role, &self.name, change)];
        match &self.change {
            Change::CreateLink(link) => back(Change::DeleteLink {
                was: Box::new(LinkSnapshot {
                    link: link.clone(),
                    up: false,
                    addresses: Vec::new(),
                    routes: Vec::new(),
                }),
                reason: "undo".into(),
            }),
            Change::DeleteLink { was, .. } => {
                let mut steps = vec![Action::new(
                    self.role,
                    &self.name,
                    Change::CreateLink(was.link.clone()),
                )];
                for prefix in &was.addresses {
                    steps.push(Action::new(
                        self.role,
                        &self.name,
                        Change::AddAddress { prefix: *prefix },
                    ));
                }
                if was.up {
                    steps.push(Action::new(
                        self.role,
                        &self.name,
                        Change::SetUp { up: true },
                    ));
                    for dst in &was.routes {
                        steps.push(Action::new(
                            self.role,
                            &self.name,
                            Change::AddRoute { dst: *dst },
                        ));
                    }
                }
                steps
            }
            Change::SetMtu { from, to } => back(Change::SetMtu {
                from: *to,
                to: *from,
            }),
            Change::SetUp { up } => back(Change::SetUp { up: !up }),
            Change::AddAddress { prefix } => back(Change::DelAddress { prefix: *prefix }),
            Change::DelAddress { prefix } => back(Change::AddAddress { prefix: *prefix }),
            Change::AddRoute { dst } => back(Change::DelRoute { dst: *dst }),
            Change::DelRoute { dst } => back(Change::AddRoute { dst: *dst }),
            // A marked link is one podnet can take back later (a stale one
            // is removed by the next plan): the mark stays.
            Change::MarkLink { .. } => Vec::new(),
            Change::ReplaceRoot {
                from: Some(from),
                kind,
                queues,
                ..
            } => back(Change::ReplaceRoot {
                kind: *from,
                from: Some(*kind),
                was: format!("podnet's {kind} 706e:"),
                queues: *queues,
                drops_queue: true,
                opted_in: true,
            }),
            Change::ReplaceRoot { was, kind, .. } => back(Change::RestoreRoot {
                to: was.clone(),
                kind: *kind,
            }),
            Change::RestoreRoot { to, kind } => back(Change::ReplaceRoot {
                kind: *kind,
                from: None,
                was: to.clone(),
                queues: 1,
                drops_queue: true,
                opted_in: true,
            }),
            Change::AddClass { class } => back(Change::RemoveClass { was: class.clone() }),
            Change::ChangeClass { class, was } => back(Change::ChangeClass {
                class: was.clone(),
                was: class.clone(),
            }),
            Change::RemoveClass { was } => back(Change::AddClass { class: was.clone() }),
            Change::AddFilter { device, minor, dst } => back(Change::RemoveFilter {
                device: device.clone(),
                minor: *minor,
                dst: *dst,
            }),
            Change::RemoveFilter { device, minor, dst } => back(Change::AddFilter {
                device: device.clone(),
                minor: *minor,
                dst: *dst,
            }),
            Change::AttachProgram { mode, prog } => back(Change::DetachProgram {
                mode: *mode,
                program: 0,
                prog: *prog,
            }),
            Change::SwapProgram { mode, from, prog }
            | Change::DetachProgram {
                mode,
                program: from,
                prog,
            } => back(Change::PutBackProgram {
                mode: *mode,
                program: *from,
                prog: *prog,
            }),
            Change::PutBackProgram { mode, prog, .. } => back(Change::DetachProgram {
                mode: *mode,
                program: 0,
                prog: *prog,
            }),
            Change::CreateIngressDevice => back(Change::DeleteIngressDevice),
            Change::DeleteIngressDevice => back(Change::CreateIngressDevice),
            Change::SetIngressDevice { to, was } => back(Change::SetIngressDevice {
                to: Some(*was),
                was: to.unwrap_or(0),
            }),
            Change::SetEntry { entry, was } => back(match was {
                Some(was) => Change::SetEntry {
                    entry: *was,
                    was: Some(*entry),
                },
                None => Change::RemoveEntry { was: *entry },
            }),
            Change::RemoveEntry { was } => back(Change::SetEntry {
                entry: *was,
                was: None,
            }),
            Change::SetTag { tag, device, was } => back(match was {
                Some(was) => Change::SetTag {
                    tag: *was,
                    device: device.clone(),
                    was: Some(*tag),
                },
                None => Change::RemoveTag { was: *tag },
            }),
            Change::RemoveTag { was } => back(Change::SetTag {
                tag: *was,
                device: format!("ifindex {}", was.ifindex),
                was: None,
            }),
            // The old count, then the old VFs' settings on the VFs made again.
            Change::SetNumVfs { from, to, was } => {
                let mut steps = back(Change::SetNumVfs {
                    from: *to,
                    to: *from,
                    was: BTreeMap::new(),
                });
                steps.extend(was.iter().map(|(vf, set)| {
                    Action::new(
                        self.role,
                        &self.name,
                        Change::SetVf {
                            vf: *vf,
                            set: set.clone(),
                            was: VfConfig::default(),
                        },
                    )
                }));
                steps
            }
            // On a VF just made there is nothing to put back: the count's
            // undo makes the VFs again.
            Change::SetVf { was, .. } if was.is_empty() => Vec::new(),
            Change::SetVf { vf, set, was } => back(Change::SetVf {
                vf: *vf,
                set: was.clone(),
                was: set.clone(),
            }),
            // Left loaded: unloading could take it from another user.
            Change::LoadModule { .. } => Vec::new(),
            Change::CreateRdmaLink { link_type, netdev } => back(Change::DeleteRdmaLink {
                link_type: link_type.clone(),
                netdev: netdev.clone(),
                reason: "undo".into(),
            }),
            Change::DeleteRdmaLink {
                link_type, netdev, ..
            } => back(Change::CreateRdmaLink {
                link_type: link_type.clone(),
                netdev: netdev.clone(),
            }),
            Change::SetRdmaNetnsMode { from, to } => back(Change::SetRdmaNetnsMode {
                from: *to,
                to: *from,
            }),
            Change::SetRdmaBootMode { file, from, to, .. } => back(Change::SetRdmaBootMode {
                file: file.clone(),
                from: *to,
                to: *from,
                busy: Vec::new(),
            }),
            // Unbound before: left bound (no driver to go back to).
            Change::SetVfDriver { from: None, .. } => Vec::new(),
            Change::SetVfDriver {
                vf,
                to,
                from: Some(from),
                ..
            } => back(Change::SetVfDriver {
                vf: *vf,
                to: if from == super::VFIO_PCI {
                    VfDriver::VfioPci
                } else {
                    VfDriver::Kernel
                },
                from: Some(match to {
                    VfDriver::VfioPci => super::VFIO_PCI.to_string(),
                    VfDriver::Kernel => "the kernel's VF driver".to_string(),
                }),
                noiommu: false,
            }),
        }
    }

    /// `+` adds, `-` removes, `~` changes in place (terraform's signs).
    pub fn sign(&self) -> char {
        match &self.change {
            Change::CreateLink(_)
            | Change::AddAddress { .. }
            | Change::AddRoute { .. }
            | Change::AttachProgram { .. }
            | Change::PutBackProgram { .. }
            | Change::CreateIngressDevice
            | Change::AddClass { .. }
            | Change::AddFilter { .. }
            | Change::SetEntry { was: None, .. }
            | Change::SetTag { was: None, .. }
            | Change::LoadModule { .. }
            | Change::CreateRdmaLink { .. }
            | Change::SetRdmaBootMode {
                from: None,
                to: Some(_),
                ..
            } => '+',
            Change::DeleteLink { .. }
            | Change::DelAddress { .. }
            | Change::DelRoute { .. }
            | Change::DetachProgram { .. }
            | Change::DeleteIngressDevice
            | Change::RemoveClass { .. }
            | Change::RemoveFilter { .. }
            | Change::RemoveEntry { .. }
            | Change::RemoveTag { .. }
            | Change::DeleteRdmaLink { .. }
            | Change::SetRdmaBootMode { to: None, .. } => '-',
            Change::SetMtu { .. }
            | Change::SetUp { .. }
            | Change::MarkLink { .. }
            | Change::ReplaceRoot { .. }
            | Change::RestoreRoot { .. }
            | Change::SwapProgram { .. }
            | Change::SetIngressDevice { .. }
            | Change::ChangeClass { .. }
            | Change::SetEntry { was: Some(_), .. }
            | Change::SetTag { was: Some(_), .. }
            | Change::SetNumVfs { .. }
            | Change::SetVf { .. }
            | Change::SetVfDriver { .. }
            | Change::SetRdmaNetnsMode { .. }
            | Change::SetRdmaBootMode { .. } => '~',
        }
    }

    /// The group header this step is listed under: `shim pn-shim0`.
    pub fn object(&self) -> String {
        format!("{} {}", self.role.noun(), self.name)
    }

    /// What a fight with another agent is about: the object, but for a
    /// VF's settings the VF and the settings, and for its driver the VF,
    /// so an agent that keeps changing one VF's VLAN back holds neither
    /// the PF's other VFs nor that VF's other settings.
    pub fn fight_key(&self) -> String {
        match &self.change {
            Change::SetVf { vf, set, .. } => {
                format!("{} vf {vf} {}", self.object(), set.keys().join(","))
            }
            Change::SetVfDriver { vf, .. } => format!("{} vf {vf} driver", self.object()),
            _ => self.object(),
        }
    }
}

impl fmt::Display for Action {
    /// One line, as `apply --dry-run` prints it under the object's header.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = self.sign();
        match &self.change {
            Change::CreateLink(l) => {
                write!(
                    f,
                    "{sign} create {} {} on {} mode {}",
                    l.kind, self.name, l.parent, l.mode
                )?;
                if let Some(mtu) = l.mtu {
                    write!(f, " mtu {mtu}")?;
                }
                write!(f, " alias {:?}", l.alias)
            }
            Change::DeleteLink { reason, .. } => {
                write!(f, "{sign} delete {} ({reason})", self.name)
            }
            Change::SetMtu { from, to } => write!(f, "{sign} mtu {from} -> {to}"),
            Change::SetUp { up: true } => write!(f, "{sign} set up"),
            Change::SetUp { up: false } => write!(f, "{sign} set down"),
            Change::AddAddress { prefix } => write!(f, "{sign} address {prefix}"),
            Change::DelAddress { prefix } => write!(f, "{sign} address {prefix}"),
            Change::MarkLink { alias } => write!(
                f,
                "{sign} mark as podnet's, alias {alias:?} (created by podnet, which stopped before marking it)"
            ),
            Change::AddRoute { dst } | Change::DelRoute { dst } => {
                write!(
                    f,
                    "{sign} route {dst} dev {} scope link proto podnet",
                    self.name
                )
            }
            Change::ReplaceRoot {
                kind: RootKind::Htb,
                was,
                from,
                ..
            } => {
                write!(
                    f,
                    "{sign} root qdisc htb 706e: (default direct: traffic no class matches leaves unshaped), replacing {was}"
                )?;
                if from.is_none() {
                    write!(f, " (recorded, put back when shaping goes)")?;
                }
                Ok(())
            }
            Change::ReplaceRoot {
                was, queues, from, ..
            } => {
                write!(f, "{sign} root qdisc fq 706e:")?;
                // How many queues a device runs (real_num_tx_queues) is not
                // in netlink: the shaper finds out as it installs.
                if *queues > 1 {
                    write!(f, " (mq 706e: with an fq per queue if it runs its {queues})")?;
                }
                write!(f, ", replacing {was}")?;
                if from.is_none() {
                    write!(f, " (recorded, put back when shaping goes)")?;
                }
                Ok(())
            }
            Change::RestoreRoot { to, kind } => {
                write!(f, "{sign} root qdisc: put back {to}")?;
                if *kind == RootKind::Htb {
                    write!(f, " (podnet's htb goes, with its classes and filters)")?;
                }
                Ok(())
            }
            Change::AddClass { class } => {
                write!(f, "{sign} htb class {}", describe_class(class))
            }
            Change::ChangeClass { class, was } => write!(
                f,
                "{sign} htb class {} -> {}",
                describe_class(was),
                describe_class(class)
            ),
            Change::RemoveClass { was } => {
                write!(f, "{sign} htb class {}", describe_class(was))
            }
            Change::AddFilter { device, minor, dst }
            | Change::RemoveFilter { device, minor, dst } => {
                let field = if *dst {
                    "dst"
                } else {
                    "src"
                };
                let m = match self.name.parse::<std::net::IpAddr>() {
                    Ok(std::net::IpAddr::V6(_)) => format!("ip6 {field}"),
                    _ => format!("ip {field}"),
                };
                write!(
                    f,
                    "{sign} u32 filter on {device}: match {m} {} -> class 706e:{minor:x}",
                    self.name
                )
            }
            Change::AttachProgram { mode, prog } => {
                write!(
                    f,
                    "{sign} {} on {} ({mode}; fails open)",
                    program_name(*prog),
                    prog.hook_name()
                )
            }
            Change::SwapProgram { mode, from, prog } => write!(
                f,
                "{sign} {} {from} swapped in place for this podnet's ({mode})",
                program_name(*prog)
            ),
            Change::DetachProgram {
                mode,
                program,
                prog,
            } => {
                write!(
                    f,
                    "{sign} {} {program} off {} ({mode})",
                    program_name(*prog),
                    prog.hook_name()
                )
            }
            Change::PutBackProgram {
                mode,
                program,
                prog,
            } => {
                write!(
                    f,
                    "{sign} {} {program} back on {} ({mode})",
                    program_name(*prog),
                    prog.hook_name()
                )
            }
            Change::CreateIngressDevice => write!(
                f,
                "{sign} create ifb {} (ingress shaping: the masters hand it what their limited pods receive)",
                self.name
            ),
            Change::DeleteIngressDevice => {
                write!(f, "{sign} delete ifb {} (no ingress limit left)", self.name)
            }
            Change::SetIngressDevice { to: Some(0), .. } => {
                write!(f, "{sign} ingress map: no ifb")
            }
            Change::SetIngressDevice { to: Some(i), .. } => {
                write!(f, "{sign} ingress map: ifb at ifindex {i}")
            }
            Change::SetIngressDevice { to: None, .. } => {
                write!(f, "{sign} ingress map: ifb {}", self.name)
            }
            Change::SetEntry { entry, was: None } => {
                write!(f, "{sign} {} {}", entry.direction, describe_entry(entry))
            }
            Change::SetEntry {
                entry,
                was: Some(was),
            } => write!(
                f,
                "{sign} {} {} -> {}",
                entry.direction,
                describe_entry(was),
                describe_entry(entry)
            ),
            Change::RemoveEntry { was } => {
                write!(f, "{sign} {} entry ({})", was.direction, describe_entry(was))
            }
            Change::SetTag { tag, device, was } => {
                write!(
                    f,
                    "{sign} egress tag: slot {} on what its veth routes out through {device}",
                    tag.slot
                )?;
                match tag.classid {
                    0 => write!(f, " (shaped there past masquerade)")?,
                    id => write!(
                        f,
                        " (to its htb class {:x}:{:x} there, past masquerade)",
                        id >> 16,
                        id & 0xffff
                    )?,
                }
                match was {
                    Some(w) if !w.whole => write!(f, ", replacing a half-written tag (slot {})", w.slot),
                    Some(w) if w.slot != tag.slot => write!(f, ", was slot {}", w.slot),
                    Some(w) => write!(f, ", was out through ifindex {}", w.ifindex),
                    None => Ok(()),
                }
            }
            Change::RemoveTag { was } => write!(f, "{sign} egress tag (slot {})", was.slot),
            Change::SetNumVfs { from, to, .. } => {
                write!(f, "{sign} num_vfs {from} -> {to}")?;
                match (from, to) {
                    (0, _) => write!(f, " (VFs made; the driver may re-initialise the PF)"),
                    (_, 0) => write!(f, " (every VF destroyed)"),
                    _ => write!(f, " (through 0: every VF destroyed and made again)"),
                }
            }
            Change::SetVfDriver {
                vf,
                to,
                from,
                noiommu,
            } => {
                let to = match to {
                    VfDriver::VfioPci => super::VFIO_PCI,
                    VfDriver::Kernel => "the kernel's VF driver",
                };
                write!(
                    f,
                    "{sign} VF {vf}: driver {} -> {to}",
                    from.as_deref().unwrap_or("none")
                )?;
                if *noiommu {
                    write!(f, " (vfio's unsafe no-IOMMU mode turned on first)")?;
                }
                Ok(())
            }
            Change::LoadModule { module } => write!(f, "{sign} load kernel module {module}"),
            Change::CreateRdmaLink { link_type, netdev } => {
                write!(f, "{sign} create {link_type} link {} on {netdev}", self.name)
            }
            Change::DeleteRdmaLink {
                link_type,
                netdev,
                reason,
            } => write!(
                f,
                "{sign} delete {link_type} link {} on {netdev} ({reason})",
                self.name
            ),
            Change::SetRdmaNetnsMode { from, to } => write!(
                f,
                "{sign} netns mode {} -> {}",
                from.as_str(),
                to.as_str()
            ),
            Change::SetRdmaBootMode {
                file,
                to: None,
                ..
            } => write!(f, "{sign} remove {file} (podnet's; rdma.netns_mode no longer declared)"),
            Change::SetRdmaBootMode {
                file,
                to: Some(to),
                busy,
                ..
            } => {
                write!(f, "{sign} netns mode at boot: {} ({file})", to.as_str())?;
                if !busy.is_empty() {
                    write!(f, ": the kernel takes it at the next boot")?;
                }
                Ok(())
            }
            Change::SetVf { vf, set, was } => {
                write!(f, "{sign} VF {vf}: {}", super::sriov::describe(set))?;
                if !was.is_empty() {
                    write!(f, " (was {})", super::sriov::describe(was))?;
                }
                Ok(())
            }
        }?;
        let d = self.disruption();
        if d != Disruption::Hitless {
            write!(f, "  [{d}]")?;
        }
        Ok(())
    }
}

/// A program as `--dry-run` names it.
fn program_name(prog: Prog) -> &'static str {
    match prog {
        Prog::Egress => "EDT program",
        Prog::Ingress => "EDT ingress program",
        Prog::Redirect => "ingress redirect program",
        Prog::PodIngress => "EDT pod-ingress program",
        Prog::Classify => "egress tag program",
        Prog::RedirectAhead => "ingress redirect program (small packets ahead)",
    }
}

/// A duration in ns as `--dry-run` shows it: `2s`, `25ms`, `500us`, `5.243ms`.
fn time(ns: u64) -> String {
    match ns {
        _ if ns % 1_000_000_000 == 0 && ns > 0 => format!("{}s", ns / 1_000_000_000),
        _ if ns % 1_000_000 == 0 => format!("{}ms", ns / 1_000_000),
        _ if ns < 1_000_000 && ns % 1_000 == 0 => format!("{}us", ns / 1_000),
        _ => format!("{:.3}ms", ns as f64 / 1e6),
    }
}

/// `706e:1 on ens192: 100Mbit burst 5.243ms, bfifo 25000000 bytes`.
fn describe_class(c: &ClassSpec) -> String {
    format!(
        "706e:{:x} on {}: {} burst {}, bfifo {} bytes",
        c.minor,
        c.device,
        crate::config::Rate(c.rate_bps),
        time(c.burst_ns),
        c.limit_bytes
    )
}

/// `100Mbit burst 8ms horizon 25ms mark 1ms`: an entry's limit, as
/// `--dry-run` shows it (`mark off`: no CE marking).
fn describe_entry(e: &MapEntry) -> String {
    let mark = match e.ce_threshold_ns {
        0 => "off".to_string(),
        ns => time(ns),
    };
    format!(
        "{} burst {} horizon {} mark {}",
        crate::config::Rate(e.rate_bps),
        time(e.burst_ns),
        time(e.horizon_ns),
        mark
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(rate_bps: u64) -> MapEntry {
        MapEntry {
            ip: "10.0.0.5".parse().unwrap(),
            direction: Default::default(),
            rate_bps,
            horizon_ns: 2_000_000_000,
            burst_ns: 0,
            ns_per_byte_q24: 0,
            ce_threshold_ns: 0,
        }
    }

    /// Each shaping step's undo is the step that puts back what it found,
    /// carrying what that needs (the old entry, the program to put back).
    #[test]
    fn shaping_steps_undo_to_what_they_found() {
        let a = |change| Action::new(Role::Shaping, "ens192", change);
        let undo = |change| {
            a(change)
                .undo()
                .into_iter()
                .map(|u| u.change)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            undo(Change::ReplaceRoot {
                kind: RootKind::Htb,
                from: None,
                was: "pfifo 1:0".into(),
                queues: 1,
                drops_queue: true,
                opted_in: false
            }),
            [Change::RestoreRoot {
                to: "pfifo 1:0".into(),
                kind: RootKind::Htb,
            }]
        );
        // A switch between podnet's own roots undoes to the other kind,
        // not to the root from before podnet.
        assert_eq!(
            undo(Change::ReplaceRoot {
                kind: RootKind::Htb,
                from: Some(RootKind::Fq),
                was: "podnet's fq 706e:".into(),
                queues: 1,
                drops_queue: true,
                opted_in: false
            }),
            [Change::ReplaceRoot {
                kind: RootKind::Fq,
                from: Some(RootKind::Htb),
                was: "podnet's htb 706e:".into(),
                queues: 1,
                drops_queue: true,
                opted_in: true
            }]
        );
        let class = |rate_bps| ClassSpec {
            device: "ens192".into(),
            minor: 3,
            rate_bps,
            burst_ns: 64,
            limit_bytes: 262_144,
        };
        assert_eq!(
            undo(Change::ChangeClass {
                class: class(2),
                was: class(1)
            }),
            [Change::ChangeClass {
                class: class(1),
                was: class(2)
            }]
        );
        assert_eq!(
            undo(Change::RemoveClass { was: class(1) }),
            [Change::AddClass { class: class(1) }]
        );
        assert_eq!(
            undo(Change::AddFilter {
                dst: false,
                device: "ens192".into(),
                minor: 3
            }),
            [Change::RemoveFilter {
                dst: false,
                device: "ens192".into(),
                minor: 3
            }]
        );
        assert_eq!(
            undo(Change::SwapProgram {
                mode: AttachMode::Tcx,
                from: 30,
                prog: Prog::Egress
            }),
            [Change::PutBackProgram {
                mode: AttachMode::Tcx,
                program: 30,
                prog: Prog::Egress
            }]
        );
        assert_eq!(
            undo(Change::DetachProgram {
                mode: AttachMode::Clsact,
                program: 29,
                prog: Prog::Egress
            }),
            [Change::PutBackProgram {
                mode: AttachMode::Clsact,
                program: 29,
                prog: Prog::Egress
            }]
        );
        assert_eq!(
            undo(Change::AttachProgram {
                mode: AttachMode::Tcx,
                prog: Prog::Egress
            }),
            [Change::DetachProgram {
                mode: AttachMode::Tcx,
                program: 0,
                prog: Prog::Egress
            }]
        );
        assert_eq!(
            undo(Change::SetEntry {
                entry: entry(2),
                was: Some(entry(1))
            }),
            [Change::SetEntry {
                entry: entry(1),
                was: Some(entry(2))
            }]
        );
        assert_eq!(
            undo(Change::SetEntry {
                entry: entry(2),
                was: None
            }),
            [Change::RemoveEntry { was: entry(2) }]
        );
        assert_eq!(
            undo(Change::RemoveEntry { was: entry(1) }),
            [Change::SetEntry {
                entry: entry(1),
                was: None
            }]
        );
    }

    /// Replacing a root that holds packets costs a queue reset; noqueue
    /// holds none; programs and entries never interrupt traffic.
    #[test]
    fn shaping_steps_have_their_disruption_class() {
        let a = |change| Action::new(Role::Shaping, "ens192", change).disruption();
        let replace = |drops_queue| Change::ReplaceRoot {
            kind: RootKind::Fq,
            from: None,
            was: String::new(),
            queues: 1,
            drops_queue,
            opted_in: false,
        };
        assert_eq!(a(replace(true)), Disruption::QueueReset);
        assert_eq!(a(replace(false)), Disruption::Hitless);
        assert_eq!(
            a(Change::RestoreRoot {
                to: String::new(),
                kind: RootKind::Htb
            }),
            Disruption::QueueReset
        );
        assert_eq!(
            a(Change::AttachProgram {
                mode: AttachMode::Tcx,
                prog: Prog::Egress
            }),
            Disruption::Hitless
        );
        assert_eq!(
            a(Change::RemoveEntry { was: entry(1) }),
            Disruption::Hitless
        );
        assert!(Disruption::Hitless < Disruption::QueueReset);
        assert!(Disruption::QueueReset < Disruption::LinkFlap);
        assert_eq!("queue-reset".parse(), Ok(Disruption::QueueReset));
    }

    /// A fight is about one VF's settings (or driver), not the PF.
    #[test]
    fn fights_are_per_vf_and_setting() {
        let vf = |vf: u32, set: crate::state::VfConfig| {
            Action::new(
                Role::Sriov,
                "enp1s0",
                Change::SetVf {
                    vf,
                    set,
                    was: Default::default(),
                },
            )
        };
        let vlan = crate::state::VfConfig {
            vlan: Some(crate::state::VfVlan {
                id: 100,
                qos: 0,
                proto: crate::config::VlanProto::Dot1q,
            }),
            ..Default::default()
        };
        let trust = crate::state::VfConfig {
            trust: Some(true),
            ..Default::default()
        };
        assert_eq!(vf(1, vlan.clone()).fight_key(), "sriov enp1s0 vf 1 vlan");
        let keys: std::collections::HashSet<String> =
            [vf(1, vlan.clone()), vf(2, vlan), vf(1, trust)]
                .iter()
                .map(Action::fight_key)
                .collect();
        assert_eq!(keys.len(), 3, "{keys:?}");
    }
}
