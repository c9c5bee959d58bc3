//! SR-IOV in the plan: each PF's VF count, then each VF's settings, planned
//! like links are (the five steps of `shaping.rs`):
//! 1. **observe**: `Observed::sriov`, the count from sysfs, the settings
//!    from the PF's `IFLA_VFINFO_LIST`; a VF whose netdev left the host's
//!    namespace is in use (a pod's), and its settings are its user's.
//! 2. **desired**: `[sriov.<pf>]`, each VF's table over the PF's `vf`
//!    defaults; a field left unset is not podnet's to manage.
//! 3. **diff**: the count first (through 0: the kernel takes no N -> M),
//!    then every managed setting that differs; after a count change every
//!    managed setting of every VF, as the new VFs start from the driver's
//!    defaults. A setting the driver refused before (EOPNOTSUPP) is an
//!    `unmet` line, not a step that would fail again.
//! 4. **actions**: `SetNumVfs` (vf-reset when VFs exist: all are destroyed)
//!    carries the old VFs' settings for its undo; `SetVf` carries what it
//!    replaces.
//! 5. the sriov backend (`crate::apply::sriov`) executes them; verify plans
//!    again.

use serde::{Deserialize, Serialize};

use super::{Action, Change, Role};
use crate::config::{NodeConfig, SriovPf, VfDriver, VfLinkState, VlanProto};
use crate::state::{Observed, Pf, VfConfig, VfRate, VfVlan};

/// A VF setting a PF's driver does not implement (it answered EOPNOTSUPP),
/// as podnet's ledger remembers it so no pass asks again.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Refusal {
    pub pf: String,
    /// The PF's driver when it refused: another driver is asked afresh.
    pub driver: String,
    /// The setting's key (`link_state`, `trust`...).
    pub setting: String,
    /// The kernel's answer.
    pub error: String,
}

#[derive(Default)]
pub(super) struct Steps {
    pub counts: Vec<Action>,
    pub settings: Vec<Action>,
    pub drivers: Vec<Action>,
    pub problems: Vec<String>,
    pub unmet: Vec<String>,
}

/// The settings the node files give VF `index` of `pf`, as the kernel
/// takes them; `have` (the VF as it is, None for a VF not made yet) fills
/// what one request sets together but the files leave unset (the other
/// tx rate).
pub fn desired_vf(c: &NodeConfig, pf: &SriovPf, index: u32, have: Option<&VfConfig>) -> VfConfig {
    let defaults = pf.vf.clone().unwrap_or_default();
    let s = pf
        .vfs
        .get(&index.to_string())
        .map_or(defaults.clone(), |own| own.over(&defaults));
    let max = s
        .max_tx_rate
        .map(|r| r.0)
        .or_else(|| {
            let tier = c.tiers.get(s.tier.as_deref()?)?;
            tier.egress.map(|r| r.0)
        })
        .map(mbps);
    let min = s.min_tx_rate.map(|r| mbps(r.0));
    let had = have.and_then(|h| h.rate).unwrap_or_default();
    VfConfig {
        mac: s.mac.as_ref().map(|m| m.to_ascii_lowercase()),
        vlan: s.vlan.map(|id| VfVlan {
            id,
            qos: s.qos.unwrap_or(0),
            proto: s.vlan_proto.unwrap_or(VlanProto::Dot1q),
        }),
        spoofchk: s.spoofchk,
        trust: s.trust,
        link_state: s.link_state,
        rate: (max.is_some() || min.is_some()).then(|| VfRate {
            min_mbps: min.unwrap_or(had.min_mbps),
            max_mbps: max.unwrap_or(had.max_mbps),
        }),
    }
}

/// Bit/s to the whole Mbit/s a VF's rate is set in (rounded down; the
/// files' checks keep it at least 1).
fn mbps(bits: u64) -> u32 {
    u32::try_from(bits / 1_000_000).unwrap_or(u32::MAX)
}

/// The fields of `want` that `have` does not hold, and what `have` holds
/// there. An untagged VLAN is untagged whatever its priority says.
fn differ(want: &VfConfig, have: &VfConfig) -> (VfConfig, VfConfig) {
    let mut set = VfConfig::default();
    let mut was = VfConfig::default();
    macro_rules! field {
        ($f:ident, $same:expr) => {
            if let Some(w) = &want.$f {
                let same: fn(&_, &_) -> bool = $same;
                if !have.$f.as_ref().is_some_and(|h| same(w, h)) {
                    set.$f = Some(w.clone());
                    was.$f = have.$f.clone();
                }
            }
        };
    }
    field!(mac, |w: &String, h: &String| w.eq_ignore_ascii_case(h));
    field!(vlan, |w: &VfVlan, h: &VfVlan| w == h
        || (w.id == 0 && h.id == 0));
    field!(spoofchk, |w: &bool, h: &bool| w == h);
    field!(trust, |w: &bool, h: &bool| w == h);
    field!(link_state, |w: &VfLinkState, h: &VfLinkState| w == h);
    field!(rate, |w: &VfRate, h: &VfRate| w == h);
    (set, was)
}

/// The settings of a VF that a new VF would not have (most drivers start
/// one with no MAC, untagged, spoof checking on, untrusted, link-state
/// auto, no rate): what the undo of a count change puts back.
fn snapshot(have: &VfConfig) -> VfConfig {
    VfConfig {
        mac: have
            .mac
            .clone()
            .filter(|m| m.as_str() != "00:00:00:00:00:00"),
        vlan: have.vlan.filter(|v| v.id != 0),
        spoofchk: have.spoofchk.filter(|s| !s),
        trust: have.trust.filter(|t| *t),
        link_state: have.link_state.filter(|l| *l != VfLinkState::Auto),
        rate: have.rate.filter(|r| *r != VfRate::default()),
    }
}

/// Drops the fields of `set` that `pf`'s driver refused before, each an
/// `unmet` line.
fn without_refused(
    pf: &Pf,
    index: u32,
    (set, was): (&mut VfConfig, &mut VfConfig),
    refused: &[Refusal],
    unmet: &mut Vec<String>,
) {
    for r in refused
        .iter()
        .filter(|r| r.pf == pf.name && pf.driver.as_deref() == Some(r.driver.as_str()))
    {
        // The field goes from both: a refused setting replaces nothing.
        let dropped = match r.setting.as_str() {
            "mac" => {
                was.mac = None;
                set.mac.take()
            }
            "vlan" => {
                was.vlan = None;
                set.vlan.take().map(|v| describe_vlan(&v))
            }
            "spoofchk" => {
                was.spoofchk = None;
                set.spoofchk.take().map(on_off)
            }
            "trust" => {
                was.trust = None;
                set.trust.take().map(on_off)
            }
            "link_state" => {
                was.link_state = None;
                set.link_state.take().map(|l| link_state(l).to_string())
            }
            "rate" => {
                was.rate = None;
                set.rate.take().map(|r| describe_rate(&r))
            }
            _ => None,
        };
        if let Some(value) = dropped {
            unmet.push(format!(
                "sriov {}: VF {index} {} {value}: the {} driver refuses it ({})",
                pf.name, r.setting, r.driver, r.error
            ));
        }
    }
}

pub(super) fn plan(desired: &NodeConfig, observed: &Observed, refused: &[Refusal]) -> Steps {
    let mut steps = Steps::default();
    for (name, spec) in &desired.sriov {
        if observed.link(name).is_none() {
            steps.problems.push(format!(
                "sriov PF {name} does not exist on this host (check the interface name)"
            ));
            continue;
        }
        let Some(pf) = observed.pf(name) else {
            steps.problems.push(format!(
                "sriov {name}: not an SR-IOV PF (sysfs shows no sriov_totalvfs: the device or its driver offers no VFs)"
            ));
            continue;
        };
        if spec.num_vfs > pf.total_vfs {
            steps
                .problems
                .push(over_total(name, spec.num_vfs, pf.total_vfs));
            continue;
        }
        let step = |change| Action::new(Role::Sriov, name, change);
        let reset = spec.num_vfs != pf.num_vfs;
        if reset {
            steps.counts.push(step(Change::SetNumVfs {
                from: pf.num_vfs,
                to: spec.num_vfs,
                was: pf
                    .vfs
                    .iter()
                    .map(|v| (v.index, snapshot(&v.config)))
                    .filter(|(_, c)| !c.is_empty())
                    .collect(),
            }));
        }
        for index in 0..spec.num_vfs {
            let have = pf.vfs.iter().find(|v| v.index == index);
            let (mut set, mut was) = match have {
                // A pod's VF is its user's to set (sriov-cni sets its MAC
                // and VLAN): podnet does not fight for it.
                Some(v) if !reset && v.in_use.is_some() => continue,
                Some(v) if !reset => differ(
                    &desired_vf(desired, spec, index, Some(&v.config)),
                    &v.config,
                ),
                _ => (desired_vf(desired, spec, index, None), VfConfig::default()),
            };
            without_refused(pf, index, (&mut set, &mut was), refused, &mut steps.unmet);
            if !set.is_empty() {
                steps.settings.push(step(Change::SetVf {
                    vf: index,
                    set,
                    was,
                }));
            }
        }
        // Drivers last: the settings go through the PF whatever drives the VF.
        for index in 0..spec.num_vfs {
            let Some(want) = desired_driver(spec, index) else {
                continue;
            };
            let have = pf.vfs.iter().find(|v| v.index == index);
            // A VF made by the count change is bound to the kernel's driver.
            let from = if reset {
                Some(String::new())
            } else {
                have.and_then(|v| v.driver.clone())
            };
            let vfio = |d: &Option<String>| d.as_deref() == Some(VFIO_PCI);
            let already = match want {
                VfDriver::Kernel => from.is_some() && !vfio(&from),
                VfDriver::VfioPci => vfio(&from),
            };
            if already {
                continue;
            }
            let mut noiommu = false;
            if want == VfDriver::VfioPci {
                if !observed.vfio.pci_driver {
                    steps.problems.push(format!(
                        "sriov {name}: VF {index} driver = \"vfio-pci\": the vfio-pci driver is not loaded (modprobe vfio-pci; list it in /etc/modules-load.d to have it at boot)"
                    ));
                    continue;
                }
                let group = have
                    .and_then(|v| v.iommu_group.as_deref())
                    .or(pf.iommu_group.as_deref());
                if group.is_none() {
                    if spec.vfio_noiommu != Some(true) {
                        steps.problems.push(format!(
                            "sriov {name}: VF {index} driver = \"vfio-pci\" needs an IOMMU, and {name} has no IOMMU group (enable VT-d/AMD-Vi and boot with intel_iommu=on or amd_iommu=on), or set sriov.{name}.vfio_noiommu = true for vfio's unsafe no-IOMMU mode"
                        ));
                        continue;
                    }
                    if !observed.vfio.noiommu_available && !observed.vfio.noiommu {
                        steps.problems.push(format!(
                            "sriov {name}: VF {index} driver = \"vfio-pci\" with vfio_noiommu = true: this kernel has no vfio no-IOMMU mode (CONFIG_VFIO_NOIOMMU; Debian's kernels have none): it needs an IOMMU"
                        ));
                        continue;
                    }
                    noiommu = !observed.vfio.noiommu;
                }
            }
            steps.drivers.push(step(Change::SetVfDriver {
                vf: index,
                to: want,
                from: from.filter(|d| !d.is_empty()),
                noiommu,
            }));
        }
    }
    steps
}

/// The driver the node files give VF `index` of `pf`, if any.
fn desired_driver(pf: &SriovPf, index: u32) -> Option<VfDriver> {
    pf.vfs
        .get(&index.to_string())
        .and_then(|v| v.driver)
        .or(pf.vf.as_ref().and_then(|v| v.driver))
}

/// The name of the vfio-pci driver in sysfs.
pub const VFIO_PCI: &str = "vfio-pci";

fn over_total(pf: &str, asked: u32, total: u32) -> String {
    format!("sriov.{pf}.num_vfs = {asked}: {pf} offers at most {total} VFs (its sriov_totalvfs)")
}

/// Something the node files ask that this host's devices can never take,
/// at the key it is at (a JSON pointer), so the caller can name the file
/// and line; `plain` is the plan's own line for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostProblem {
    pub pointer: String,
    pub message: String,
    pub plain: String,
}

/// The [`HostProblem`]s of `desired` on `observed`: a VF count over the
/// PF's total.
pub fn host_problems(desired: &NodeConfig, observed: &Observed) -> Vec<HostProblem> {
    desired
        .sriov
        .iter()
        .filter_map(|(name, spec)| {
            let pf = observed.pf(name)?;
            (spec.num_vfs > pf.total_vfs).then(|| HostProblem {
                pointer: format!("/sriov/{name}/num_vfs"),
                message: format!(
                    "num_vfs = {}: {name} offers at most {} VFs (its sriov_totalvfs)",
                    spec.num_vfs, pf.total_vfs
                ),
                plain: over_total(name, spec.num_vfs, pf.total_vfs),
            })
        })
        .collect()
}

/// The count changes that would destroy VFs in use, refused unless forced:
/// a VF whose netdev is in a pod goes with the pod's network.
pub fn in_use_hazards(plan: &super::Plan, observed: &Observed) -> Vec<String> {
    plan.actions
        .iter()
        .filter_map(|a| match &a.change {
            Change::SetNumVfs { from, to, .. } if *from > 0 => {
                let pf = observed.pf(&a.name)?;
                let used: Vec<String> = pf
                    .vfs
                    .iter()
                    .filter_map(|v| {
                        let why = v.in_use.as_deref()?;
                        Some(format!(
                            "VF {}{} is in use: {why}",
                            v.index,
                            v.pci.as_deref().map(|p| format!(" ({p})")).unwrap_or_default()
                        ))
                    })
                    .collect();
                (!used.is_empty()).then(|| {
                    format!(
                        "{}: num_vfs {from} -> {to} destroys every VF of {}, and {} (use --force if you are sure)",
                        a.object(),
                        a.name,
                        used.join("; ")
                    )
                })
            }
            Change::SetVfDriver { vf, .. } => {
                let v = observed.pf(&a.name)?.vfs.iter().find(|v| v.index == *vf)?;
                let why = v.in_use.as_deref()?;
                Some(format!(
                    "{}: VF {vf} changes driver, and it is in use: {why} (use --force if you are sure)",
                    a.object()
                ))
            }
            _ => None,
        })
        .collect()
}

pub(super) fn on_off(b: bool) -> String {
    if b { "on" } else { "off" }.to_string()
}

pub(super) fn link_state(l: VfLinkState) -> &'static str {
    match l {
        VfLinkState::Auto => "auto",
        VfLinkState::Enable => "enable",
        VfLinkState::Disable => "disable",
    }
}

pub(super) fn describe_vlan(v: &VfVlan) -> String {
    if v.id == 0 {
        return "none".into();
    }
    let mut s = format!("{}", v.id);
    if v.qos != 0 {
        s.push_str(&format!(" qos {}", v.qos));
    }
    if v.proto == VlanProto::Dot1ad {
        s.push_str(" proto 802.1ad");
    }
    s
}

pub(super) fn describe_rate(r: &VfRate) -> String {
    let one = |m: u32| match m {
        0 => "none".to_string(),
        m => crate::config::Rate(u64::from(m) * 1_000_000).to_string(),
    };
    if r.min_mbps == 0 {
        one(r.max_mbps)
    } else {
        format!("{} (min {})", one(r.max_mbps), one(r.min_mbps))
    }
}

/// `mac 02:00:00:00:00:10, vlan 100 qos 3, trust on`: the fields a step sets.
pub(super) fn describe(c: &VfConfig) -> String {
    let mut parts = Vec::new();
    if let Some(m) = &c.mac {
        parts.push(format!("mac {m}"));
    }
    if let Some(v) = &c.vlan {
        parts.push(format!("vlan {}", describe_vlan(v)));
    }
    if let Some(s) = c.spoofchk {
        parts.push(format!("spoofchk {}", on_off(s)));
    }
    if let Some(t) = c.trust {
        parts.push(format!("trust {}", on_off(t)));
    }
    if let Some(l) = c.link_state {
        parts.push(format!("link_state {}", link_state(l)));
    }
    if let Some(r) = &c.rate {
        parts.push(format!("max_tx_rate {}", describe_rate(r)));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vf(mac: &str, vlan: u16) -> VfConfig {
        VfConfig {
            mac: Some(mac.into()),
            vlan: Some(VfVlan {
                id: vlan,
                qos: 0,
                proto: VlanProto::Dot1q,
            }),
            spoofchk: Some(true),
            trust: Some(false),
            link_state: Some(VfLinkState::Auto),
            rate: Some(VfRate::default()),
        }
    }

    /// Only managed fields that differ are set, each with what it replaces;
    /// a MAC compares without case, an untagged VLAN without its priority.
    #[test]
    fn differ_sets_only_what_differs_and_records_it() {
        let have = vf("02:00:00:00:00:aa", 0);
        let want = VfConfig {
            mac: Some("02:00:00:00:00:AA".into()),
            vlan: Some(VfVlan {
                id: 0,
                qos: 3,
                proto: VlanProto::Dot1q,
            }),
            trust: Some(true),
            ..VfConfig::default()
        };
        let (set, was) = differ(&want, &have);
        assert_eq!(
            set,
            VfConfig {
                trust: Some(true),
                ..VfConfig::default()
            }
        );
        assert_eq!(
            was,
            VfConfig {
                trust: Some(false),
                ..VfConfig::default()
            }
        );
    }

    /// A count change's undo puts back only what a new VF lacks.
    #[test]
    fn snapshot_keeps_what_a_new_vf_would_not_have() {
        let mut have = vf("00:00:00:00:00:00", 100);
        have.trust = Some(true);
        assert_eq!(
            snapshot(&have),
            VfConfig {
                vlan: have.vlan,
                trust: Some(true),
                ..VfConfig::default()
            }
        );
    }
}
