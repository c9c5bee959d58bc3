//! The plan: a pure function from (desired, observed) to ordered actions.
//!
//! No I/O happens here, so every case is a unit test (see `tests/golden`).
//! Order follows the kernel's constraints:
//! 0. remove what podnet owns and no longer wants (frees names and addresses),
//!    Soft-RoCE links included (see `rdma.rs`); then SR-IOV (see `sriov.rs`): VF counts, then VF settings, before
//!    any master (a VF's netdev may be one);
//! 1. masters: raise MTU (children may not exceed it), bring up;
//! 2. shims: create, MTU, new addresses, up, new routes (a route needs its
//!    device up), then old routes and old addresses: make before break;
//! 3. masters: lower MTU, once their shims are lower; then the RDMA
//!    modules and Soft-RoCE links (on netdevs that are there by now);
//! 4. shaping (see `shaping.rs`, which also says how a new kind of state
//!    joins the plan): programs off and roots back where shaping goes, map
//!    entries, then per device podnet's root (fq, or htb for the HTB
//!    backend) and the program on the hook, the HTB classes before the
//!    filters that point at them, then filters and classes nobody needs
//!    (filter first), and last the entries nobody needs.

mod action;
mod rdma;
mod render;
mod shaping;
mod sriov;

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use serde::Serialize;

pub use action::{Action, Change, ClassSpec, Disruption, LinkSnapshot, NewLink, Role};
pub use rdma::{
    BootSetting as RdmaBootSetting, BOOT_FILE as RDMA_BOOT_FILE,
    MODULES_OBJECT as RDMA_MODULES_OBJECT, NETNS_OBJECT as RDMA_NETNS_OBJECT, RXE,
};
pub use shaping::{class_for, root_kind, Inputs};
pub use sriov::{desired_vf, in_use_hazards, HostProblem, Refusal, VFIO_PCI};

/// The [`HostProblem`]s of `desired` on `observed`, located by the caller
/// in the node files: a VF count over the PF's total, a Soft-RoCE link on
/// a netdev the host lacks.
pub fn host_problems(desired: &NodeConfig, observed: &Observed) -> Vec<HostProblem> {
    let mut out = sriov::host_problems(desired, observed);
    out.extend(rdma::host_problems(desired, observed));
    out
}

use crate::config::{ChildKind, Master, NodeConfig};
use crate::state::{Link, Observed, OWNER_ALIAS_PREFIX, RT_TABLE_MAIN};

/// The outcome of planning.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    /// Steps to run, in order.
    pub actions: Vec<Action>,
    /// Reasons the plan cannot run at all (a missing master...). When any
    /// exists, nothing is applied.
    pub problems: Vec<String>,
    /// What the files ask that this host cannot do (a kernel without
    /// sch_fq...): the rest of the plan runs, but the node is not converged.
    pub unmet: Vec<String>,
    /// The devices egress-shaped once this plan has run.
    pub shaped: BTreeSet<String>,
    /// Of those, the ones the HTB backend shapes (the rest: EDT).
    pub htb: BTreeSet<String>,
    /// podnet's ingress ifb's root once this plan has run, when podnet
    /// shapes ingress (an endpoint on a shaped master has an ingress limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress: Option<crate::shaping::tc::RootKind>,
    /// The veth pods' host-side veths shaping what the pods receive once
    /// this plan has run.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub veths: BTreeSet<String>,
    /// The veth pods' addresses whose egress is tagged at their host-side
    /// veth (for EDT at their master, past masquerade) once this plan has
    /// run, with that veth.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tagged: BTreeMap<std::net::IpAddr, String>,
    /// What the files ask that holds only from the next boot on (a step
    /// wrote the boot setting, or one did before): not drift, and not yet
    /// converged.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending_reboot: Vec<String>,
    /// Sections a direct apply validates but does not apply: podnetd's
    /// (shaping of registered pods) or not yet supported.
    pub unsupported: Vec<Unsupported>,
}

/// A declared section podnet validates but does not apply yet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unsupported {
    pub key: String,
    pub what: String,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// The host is as the files ask: no step to run, no problem, nothing
    /// the host cannot do, nothing waiting for a reboot.
    pub fn converged(&self) -> bool {
        self.actions.is_empty()
            && self.problems.is_empty()
            && self.unmet.is_empty()
            && self.pending_reboot.is_empty()
    }

    /// Converged but for what waits for a reboot: podnet's part is done.
    pub fn waits_for_reboot(&self) -> bool {
        !self.pending_reboot.is_empty()
            && self.actions.is_empty()
            && self.problems.is_empty()
            && self.unmet.is_empty()
    }

    /// The worst disruption any step causes.
    pub fn max_disruption(&self) -> Disruption {
        self.actions
            .iter()
            .map(Action::disruption)
            .max()
            .unwrap_or(Disruption::Hitless)
    }
}

/// The `ifalias` podnet writes on a shim it creates.
pub fn shim_alias(master: &str) -> String {
    format!("{OWNER_ALIAS_PREFIX}shim master={master}")
}

/// Plans the changes that take `observed` to `desired`, for the endpoints
/// and the program `inputs` name.
pub fn plan(desired: &NodeConfig, observed: &Observed, inputs: &Inputs) -> Plan {
    let mut phases: [Vec<Action>; 4] = Default::default();
    let mut problems = Vec::new();
    let links: BTreeMap<&str, &Link> = observed
        .links
        .iter()
        .map(|l| (l.name.as_str(), l))
        .collect();

    // The shims the files declare, by name.
    let shims: BTreeMap<&str, (&str, &Master)> = desired
        .masters
        .iter()
        .filter_map(|(name, m)| {
            m.shim
                .as_ref()
                .map(|s| (s.name.as_str(), (name.as_str(), m)))
        })
        .collect();

    for (name, master) in &desired.masters {
        let Some(link) = links.get(name.as_str()) else {
            problems.push(format!(
                "master {name} does not exist on this host (podnet never creates a master; check the interface name)"
            ));
            continue;
        };
        if matches!(link.kind.as_deref(), Some("macvlan" | "ipvlan" | "macvtap")) {
            problems.push(format!(
                "master {name} is itself a {} interface and cannot be a parent of pod interfaces",
                link.kind.as_deref().unwrap_or_default()
            ));
            continue;
        }
        if let Some(mtu) = master.mtu.filter(|m| *m != link.mtu) {
            let phase = if mtu > link.mtu { 1 } else { 3 };
            phases[phase].push(Action::new(
                Role::Master,
                name,
                Change::SetMtu {
                    from: link.mtu,
                    to: mtu,
                },
            ));
        }
        if !link.up {
            phases[1].push(Action::new(Role::Master, name, Change::SetUp { up: true }));
        }
        if master.kind == ChildKind::Ipvlan {
            // ipvlan keeps one mode per master (the kernel's "port"): making
            // or re-making a child in another mode switches every child,
            // pods included. Refuse rather than change links podnet does not own.
            let want = master.effective_mode();
            let others: Vec<String> = observed
                .children_of(name)
                .filter(|c| {
                    !c.is_owned() && c.kind.as_deref() == Some("ipvlan") && c.mode != Some(want)
                })
                .map(|c| {
                    format!(
                        "{} ({})",
                        c.name,
                        c.mode.map(|m| m.to_string()).unwrap_or_default()
                    )
                })
                .collect();
            if !others.is_empty() && master.shim.is_some() {
                problems.push(format!(
                    "master {name}: an ipvlan master has one mode for all its children, and {} use another than {want}; the shim would switch them. Declare their mode or remove them first",
                    others.join(", ")
                ));
                continue;
            }
        }
        if let Some(shim) = &master.shim {
            let want = NewLink {
                kind: master.kind,
                mode: master.effective_mode(),
                parent: name.clone(),
                mtu: Some(master.mtu.unwrap_or(link.mtu)),
                alias: shim_alias(name),
            };
            plan_shim(
                &shim.name,
                &want,
                &shim.addresses,
                &shim.routes,
                links.get(shim.name.as_str()).copied(),
                observed,
                &mut phases,
                &mut problems,
            );
        }
    }

    // Owned links nobody declares any more (the ingress ifb is shaping's:
    // see `shaping.rs`).
    for link in observed
        .links
        .iter()
        .filter(|l| l.is_owned() || l.is_half_created())
        .filter(|l| l.name != crate::shaping::INGRESS_DEVICE)
    {
        if !shims.contains_key(link.name.as_str()) {
            phases[0].push(Action::new(
                Role::Stale,
                &link.name,
                Change::DeleteLink {
                    was: Box::new(snapshot(link, observed)),
                    reason: "podnet's, no longer declared".into(),
                },
            ));
        }
    }
    // Routes podnet added through links that are not (or no longer) shims;
    // a stale owned link takes its routes with it.
    for route in observed
        .routes
        .iter()
        .filter(|r| r.is_owned() && r.table == RT_TABLE_MAIN)
    {
        let Some(dev) = route.link.as_deref() else {
            continue;
        };
        let owned_link = links.get(dev).is_some_and(|l| l.is_owned());
        if !shims.contains_key(dev) && !owned_link {
            phases[0].push(Action::new(
                Role::Stale,
                dev,
                Change::DelRoute { dst: route.dst },
            ));
        }
    }

    let sriov = sriov::plan(desired, observed, &inputs.sriov_refused);
    problems.extend(sriov.problems);
    let rdma = rdma::plan(desired, observed, &inputs.rdma_owned, &inputs.rdma_boot);
    problems.extend(rdma.problems);
    let shaping = shaping::plan(desired, observed, inputs);
    let [removals, rest @ ..] = phases;
    Plan {
        actions: removals
            .into_iter()
            .chain(rdma.removals)
            .chain(sriov.counts)
            .chain(sriov.settings)
            .chain(sriov.drivers)
            .chain(rest.into_iter().flatten())
            .chain(rdma.modules)
            .chain(rdma.links)
            .chain(shaping.off)
            .chain(shaping.entries)
            .chain(shaping.devices)
            .chain(shaping.classes)
            .chain(shaping.filters)
            .chain(shaping.unfilter)
            .chain(shaping.unclass)
            .chain(shaping.gone)
            .collect(),
        problems,
        unmet: sriov.unmet.into_iter().chain(shaping.unmet).collect(),
        pending_reboot: rdma.pending_reboot,
        shaped: shaping.shaped,
        htb: shaping.htb,
        ingress: shaping.ingress,
        veths: shaping.veths,
        tagged: shaping.tagged,
        unsupported: unsupported(desired),
    }
}

#[allow(clippy::too_many_arguments)]
fn plan_shim(
    name: &str,
    want: &NewLink,
    addresses: &[IpNet],
    routes: &[IpNet],
    current: Option<&Link>,
    observed: &Observed,
    phases: &mut [Vec<Action>; 4],
    problems: &mut Vec<String>,
) {
    let step = |change| Action::new(Role::Shim, name, change);
    let out = &mut phases[2];
    let create = |out: &mut Vec<Action>| {
        out.push(step(Change::CreateLink(want.clone())));
        out.extend(
            addresses
                .iter()
                .map(|p| step(Change::AddAddress { prefix: *p })),
        );
        out.push(step(Change::SetUp { up: true }));
        out.extend(routes.iter().map(|d| step(Change::AddRoute { dst: *d })));
    };
    let Some(link) = current else {
        create(out);
        return;
    };
    if link.is_half_created() {
        // podnet made it and stopped before marking it: the same link, same
        // ifindex, is taken up where the create left off.
        out.push(step(Change::MarkLink {
            alias: want.alias.clone(),
        }));
    } else if !link.is_owned() {
        problems.push(format!(
            "shim {name}: an interface of that name exists and is not podnet's (its alias has no \"{OWNER_ALIAS_PREFIX}\" mark); podnet will not take it over: rename the shim or remove the interface"
        ));
        return;
    }
    let kind_matches = match want.kind {
        ChildKind::Ipvlan => link.kind.as_deref() == Some("ipvlan"),
        ChildKind::Macvlan => link.kind.as_deref() == Some("macvlan"),
    };
    if !kind_matches || link.mode != Some(want.mode) || link.parent.as_deref() != Some(&want.parent)
    {
        out.push(step(Change::DeleteLink {
            was: Box::new(snapshot(link, observed)),
            reason: format!(
                "re-created as {} {} on {}{}",
                want.kind,
                want.mode,
                want.parent,
                if want.kind == ChildKind::Ipvlan && link.mode != Some(want.mode) {
                    "; ipvlan's mode is per master: its pods switch too"
                } else {
                    ""
                }
            ),
        }));
        create(out);
        return;
    }
    if let Some(mtu) = want.mtu.filter(|m| *m != link.mtu) {
        out.push(step(Change::SetMtu {
            from: link.mtu,
            to: mtu,
        }));
    }
    let have: BTreeSet<IpNet> = observed
        .addresses_of(name)
        .filter(|a| !a.is_kernel_link_local())
        .map(|a| a.prefix)
        .collect();
    let wanted: BTreeSet<IpNet> = addresses.iter().copied().collect();
    // Make before break: the new address first. Removing a link's last
    // IPv4 address flushes its routes, and pods would lose the host route.
    out.extend(
        wanted
            .difference(&have)
            .map(|p| step(Change::AddAddress { prefix: *p })),
    );
    let old_addresses: Vec<Action> = have
        .difference(&wanted)
        .map(|p| step(Change::DelAddress { prefix: *p }))
        .collect();
    if !link.up {
        out.push(step(Change::SetUp { up: true }));
    }
    let have: BTreeSet<IpNet> = owned_routes(observed, name).collect();
    let wanted: BTreeSet<IpNet> = routes.iter().copied().collect();
    // New routes before old ones go, and old addresses last, once the
    // routes that may use them as source are replaced.
    out.extend(
        wanted
            .difference(&have)
            .map(|d| step(Change::AddRoute { dst: *d })),
    );
    out.extend(
        have.difference(&wanted)
            .map(|d| step(Change::DelRoute { dst: *d })),
    );
    out.extend(old_addresses);
}

fn owned_routes<'a>(observed: &'a Observed, link: &'a str) -> impl Iterator<Item = IpNet> + 'a {
    observed
        .routes
        .iter()
        .filter(move |r| {
            r.is_owned() && r.table == RT_TABLE_MAIN && r.link.as_deref() == Some(link)
        })
        .map(|r| r.dst)
}

/// What undo needs to bring an owned link back.
fn snapshot(link: &Link, observed: &Observed) -> LinkSnapshot {
    let kind = if link.kind.as_deref() == Some("ipvlan") {
        ChildKind::Ipvlan
    } else {
        ChildKind::Macvlan
    };
    LinkSnapshot {
        link: NewLink {
            kind,
            mode: link.mode.unwrap_or(match kind {
                ChildKind::Ipvlan => crate::config::ChildMode::L2,
                ChildKind::Macvlan => crate::config::ChildMode::Bridge,
            }),
            parent: link.parent.clone().unwrap_or_default(),
            mtu: Some(link.mtu),
            alias: link.alias.clone().unwrap_or_default(),
        },
        up: link.up,
        addresses: observed
            .addresses_of(&link.name)
            .filter(|a| !a.is_kernel_link_local())
            .map(|a| a.prefix)
            .collect(),
        routes: owned_routes(observed, &link.name).collect(),
    }
}

/// Sections that validate but that this version does not apply yet, so they
/// are listed instead of silently ignored.
fn unsupported(c: &NodeConfig) -> Vec<Unsupported> {
    let mut out = Vec::new();
    let mut note = |key: String, what: &str| {
        out.push(Unsupported {
            key,
            what: what.into(),
        })
    };
    if let Some(ipip) = &c.ipip {
        note(
            "ipip".into(),
            &format!(
                "IPIP encapsulation, mode {} (not yet supported)",
                serde_json::to_value(ipip.mode)
                    .unwrap_or_default()
                    .as_str()
                    .unwrap_or("?")
            ),
        );
    }
    out
}

/// Every step refused unless forced: those that would cut the node off
/// ([`default_route_hazards`]) and those that would destroy or rebind VFs
/// in use ([`in_use_hazards`]). podnetctl and podnetd add them to the
/// plan's problems without `--force`.
pub fn hazards(plan: &Plan, observed: &Observed) -> Vec<String> {
    let mut out = default_route_hazards(plan, observed);
    out.extend(in_use_hazards(plan, observed));
    out
}

/// Steps that would take down or re-address an interface carrying the
/// node's default route, or replace its root qdisc when shaping reached it
/// only by `[shaping]`'s default: refused unless forced (or, for shaping,
/// the master says `shaping = true`), because a node cut off from its API
/// server cannot be repaired remotely.
pub fn default_route_hazards(plan: &Plan, observed: &Observed) -> Vec<String> {
    let carriers: BTreeSet<&str> = observed
        .routes
        .iter()
        .filter(|r| r.table == RT_TABLE_MAIN && r.dst.prefix_len() == 0)
        .filter_map(|r| r.link.as_deref())
        .collect();
    plan.actions
        .iter()
        .filter(|a| carriers.contains(a.name.as_str()))
        .filter(|a| {
            a.disruption() >= Disruption::LinkFlap
                || matches!(
                    a.change,
                    Change::DelAddress { .. }
                        | Change::ReplaceRoot {
                            opted_in: false,
                            ..
                        }
                )
        })
        .map(|a| {
            let how = if matches!(a.change, Change::ReplaceRoot { .. }) {
                format!(
                    "; [shaping] shapes every master by default: set masters.{}.shaping = true to shape it, or false to leave it alone",
                    a.name
                )
            } else {
                String::new()
            };
            format!(
                "{}: `{}` would interrupt {}, which carries the node's default route (use --force if you are sure){how}",
                a.object(),
                a.to_string().trim_end(),
                a.name
            )
        })
        .collect()
}
