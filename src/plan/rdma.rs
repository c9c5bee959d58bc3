//! RDMA in the plan: the modules user verbs need, and Soft-RoCE links,
//! planned like links are (the five steps of `shaping.rs`):
//! 1. **observe**: `Observed::rdma`, from the RDMA netlink (devices, their
//!    ports' netdevs, their drivers once ib_uverbs says) and /sys/module;
//! 2. **desired**: `[rdma]`: `soft_roce` (RDMA device name = netdev), and
//!    with any `[rdma]` the modules `ib_uverbs` and `rdma_ucm` (their char
//!    devices are what a pod opens), `rdma_rxe` where links are declared;
//! 3. **diff**: a missing module is loaded; a declared link that is not
//!    there is created, one on another netdev re-created if podnet made it
//!    (its ledger says so: an RDMA device carries no mark of its own) and
//!    refused if not; a link podnet made that no file declares goes;
//! 4. **actions**: `LoadModule` (never unloaded: other users may hold
//!    it), `CreateRdmaLink`, `DeleteRdmaLink` (which carries what undo
//!    needs to make it again);
//! 5. the rdma backend (`crate::apply::rdma`) runs them; verify plans
//!    again.
//!
//! Steps on modules come first, then removals (free the names), then
//! creations.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{Action, Change, Role};
use crate::config::{NodeConfig, RdmaNetnsMode};
use crate::state::Observed;

/// The object name module steps are listed under (`rdma modules`).
pub const MODULES_OBJECT: &str = "modules";

/// The object name of the netns mode's steps (`rdma netns`).
pub const NETNS_OBJECT: &str = "netns";

/// podnet's modprobe.d file, in the modprobe directory.
pub const BOOT_FILE: &str = "podnet-rdma.conf";

/// podnet's modprobe.d file and the netns mode it loads ib_core with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootSetting {
    /// Its path.
    pub file: String,
    /// It exists.
    #[serde(default)]
    pub present: bool,
    /// The mode it sets (None: absent, or no `netns_mode` option in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<RdmaNetnsMode>,
}

impl Default for BootSetting {
    fn default() -> Self {
        BootSetting {
            file: format!("{}/{BOOT_FILE}", crate::shaping::DEFAULT_MODPROBE_DIR),
            present: false,
            mode: None,
        }
    }
}

/// The Soft-RoCE driver's link type.
pub const RXE: &str = "rxe";

#[derive(Default)]
pub(super) struct Steps {
    /// The boot setting, then the modules (ib_core loads with the boot
    /// setting's mode), then the live mode switch.
    pub modules: Vec<Action>,
    pub removals: Vec<Action>,
    pub links: Vec<Action>,
    pub problems: Vec<String>,
    /// What holds only from the next boot on.
    pub pending_reboot: Vec<String>,
}

pub(super) fn plan(
    desired: &NodeConfig,
    observed: &Observed,
    owned: &BTreeSet<String>,
    boot: &BootSetting,
) -> Steps {
    let mut steps = Steps::default();
    let have = observed.rdma.clone().unwrap_or_default();
    if let Some(e) = &have.error {
        if desired.rdma.is_some() || !owned.is_empty() {
            steps.problems.push(format!(
                "rdma: the kernel's RDMA devices cannot be read: {e}"
            ));
        }
        return steps;
    }
    let declared = desired
        .rdma
        .as_ref()
        .map(|r| r.soft_roce.clone())
        .unwrap_or_default();
    let live_switch = netns_mode(desired, &have, boot, &mut steps);
    if let Some(r) = &desired.rdma {
        let mut wanted: Vec<&str> = vec!["ib_uverbs", "rdma_ucm"];
        if !r.soft_roce.is_empty() {
            wanted.insert(0, "rdma_rxe");
        }
        for m in wanted.into_iter().filter(|m| !have.has_module(m)) {
            steps.modules.push(Action::new(
                Role::Rdma,
                MODULES_OBJECT,
                Change::LoadModule { module: m.into() },
            ));
        }
    }
    steps.modules.extend(live_switch);
    let delete = |name: &str, netdev: &str, reason: String| {
        Action::new(
            Role::Rdma,
            name,
            Change::DeleteRdmaLink {
                link_type: RXE.into(),
                netdev: netdev.into(),
                reason,
            },
        )
    };
    for (name, netdev) in &declared {
        let create = Action::new(
            Role::Rdma,
            name,
            Change::CreateRdmaLink {
                link_type: RXE.into(),
                netdev: netdev.clone(),
            },
        );
        if observed.link(netdev).is_none() {
            steps.problems.push(missing_netdev(name, netdev));
            continue;
        }
        let Some(dev) = have.device(name) else {
            // In a pod's namespace (exclusive mode): in use, not drift.
            if have.holder(name).is_none() {
                steps.links.push(create);
            }
            continue;
        };
        if dev.driver.as_deref().is_some_and(|d| d != RXE) {
            steps.problems.push(format!(
                "rdma.soft_roce.{name}: an RDMA device of that name exists and is not a Soft-RoCE link (its driver is {}); podnet will not take it over: name the link otherwise",
                dev.driver.as_deref().unwrap_or_default()
            ));
            continue;
        }
        match dev.netdev() {
            Some(on) if on == netdev => {}
            on => {
                let on = on.unwrap_or("no netdev");
                if !owned.contains(name) {
                    steps.problems.push(format!(
                        "rdma.soft_roce.{name}: a Soft-RoCE link of that name exists on {on}, and podnet did not make it; remove it (`rdma link delete {name}`) or name the link otherwise"
                    ));
                    continue;
                }
                steps
                    .removals
                    .push(delete(name, on, format!("re-created on {netdev}")));
                steps.links.push(create);
            }
        }
    }
    for name in owned.iter().filter(|n| !declared.contains_key(*n)) {
        if let Some(dev) = have.device(name) {
            steps.removals.push(delete(
                name,
                dev.netdev().unwrap_or_default(),
                "podnet's, no longer declared".into(),
            ));
        }
    }
    steps
}

/// The netns mode's steps: podnet's boot setting (pushed to
/// `steps.modules`, ahead of any module: ib_core reads it when it loads)
/// and the live switch, returned to go after the modules. With other
/// network namespaces the kernel cannot switch (EBUSY): then the boot
/// setting is the step, marked needs-reboot, and the mode is pending.
fn netns_mode(
    desired: &NodeConfig,
    have: &crate::state::RdmaState,
    boot: &BootSetting,
    steps: &mut Steps,
) -> Option<Action> {
    let step = |change| Action::new(Role::Rdma, NETNS_OBJECT, change);
    let Some(to) = desired.rdma.as_ref().and_then(|r| r.netns_mode) else {
        if boot.present {
            steps.modules.push(step(Change::SetRdmaBootMode {
                file: boot.file.clone(),
                from: boot.mode,
                to: None,
                busy: Vec::new(),
            }));
        }
        return None;
    };
    // None: no RDMA core yet; it loads with the boot setting's mode.
    let live = have.netns_mode.filter(|&l| l != to);
    let busy = match live {
        Some(_) => have.other_netns.clone(),
        None => Vec::new(),
    };
    if boot.mode != Some(to) {
        steps.modules.push(step(Change::SetRdmaBootMode {
            file: boot.file.clone(),
            from: boot.mode,
            to: Some(to),
            busy: busy.clone(),
        }));
    }
    let from = live?;
    if busy.is_empty() {
        return Some(step(Change::SetRdmaNetnsMode { from, to }));
    }
    steps.pending_reboot.push(format!(
        "rdma.netns_mode: {} from the next boot on ({}); the kernel stays {} until then, as other network namespaces exist ({})",
        to.as_str(),
        boot.file,
        from.as_str(),
        busy.join(", ")
    ));
    None
}

fn missing_netdev(name: &str, netdev: &str) -> String {
    format!(
        "rdma.soft_roce.{name}: its netdev {netdev} does not exist on this host (a Soft-RoCE link sits on an existing interface)"
    )
}

/// The [`super::HostProblem`]s of `[rdma]` on `observed`: a Soft-RoCE
/// link on a netdev the host lacks.
pub fn host_problems(desired: &NodeConfig, observed: &Observed) -> Vec<super::HostProblem> {
    let Some(r) = &desired.rdma else {
        return Vec::new();
    };
    r.soft_roce
        .iter()
        .filter(|(_, netdev)| observed.link(netdev).is_none())
        .map(|(name, netdev)| super::HostProblem {
            pointer: format!("/rdma/soft_roce/{name}"),
            message: format!("{netdev} does not exist on this host (a Soft-RoCE link sits on an existing interface)"),
            plain: missing_netdev(name, netdev),
        })
        .collect()
}
