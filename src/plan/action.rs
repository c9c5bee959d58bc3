//! One step of a plan: what changes, on which object, and what it costs.

use std::fmt;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config::{ChildKind, ChildMode};

/// What a step costs the node's traffic, so an operator can gate on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Disruption {
    /// No traffic is interrupted.
    Hitless,
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
            "link-flap" => Ok(Disruption::LinkFlap),
            "vf-reset" => Ok(Disruption::VfReset),
            "needs-reboot" => Ok(Disruption::NeedsReboot),
            _ => Err("expected hitless, link-flap, vf-reset or needs-reboot".into()),
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
            // Many NIC drivers reset the device to change its MTU.
            (Change::SetMtu { .. }, Role::Master) => Disruption::LinkFlap,
            (Change::SetUp { up: false }, _) | (Change::DeleteLink { .. }, _) => {
                Disruption::LinkFlap
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
        }
    }

    /// `+` adds, `-` removes, `~` changes in place (terraform's signs).
    pub fn sign(&self) -> char {
        match self.change {
            Change::CreateLink(_) | Change::AddAddress { .. } | Change::AddRoute { .. } => '+',
            Change::DeleteLink { .. } | Change::DelAddress { .. } | Change::DelRoute { .. } => '-',
            Change::SetMtu { .. } | Change::SetUp { .. } | Change::MarkLink { .. } => '~',
        }
    }

    /// The group header this step is listed under: `shim pn-shim0`.
    pub fn object(&self) -> String {
        let role = match self.role {
            Role::Master => "master",
            Role::Shim => "shim",
            Role::Stale => "link",
        };
        format!("{role} {}", self.name)
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
        }?;
        let d = self.disruption();
        if d != Disruption::Hitless {
            write!(f, "  [{d}]")?;
        }
        Ok(())
    }
}
