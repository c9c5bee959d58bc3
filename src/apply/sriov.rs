//! The SR-IOV backend: VF counts through sysfs, VF settings through the
//! PF's netlink VF attributes (`IFLA_VFINFO_LIST`), one setting per request
//! so a driver that lacks one (QEMU's igb has no link-state) refuses only
//! that one. A refusal (EOPNOTSUPP) goes into podnet's ledger: the step
//! counts as done, and the plan reports the setting as unmet from then on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use netlink_packet_route::link::{
    LinkAttribute, LinkMessage, LinkVfInfo, VfInfo, VfInfoLinkState, VfInfoMac, VfInfoRate,
    VfInfoSpoofCheck, VfInfoTrust, VfInfoVlan, VfLinkState, VfVlan, VfVlanInfo, VlanProtocol,
};

use crate::config::{VfDriver, VlanProto};
use crate::error::{Error, ErrorKind, Result};
use crate::kernel::{errno, refused, Errno, Kernel};
use crate::plan::{Action, Change, Refusal};
use crate::state::VfConfig;
use crate::sysfs::Sysfs;

/// How long VFs may take to appear after a count change (their netdevs
/// come from the VF driver's probe; a TCG guest takes seconds).
const VF_WAIT: Duration = Duration::from_secs(30);

/// Where the ledger of refused settings lives, beside the shaper's records.
pub fn ledger_path(paths: &crate::shaping::ShaperPaths) -> PathBuf {
    paths.state_dir.with_file_name("sriov-refused.json")
}

/// The refusals recorded so far (none when there is no ledger, or it
/// cannot be read: then every setting is simply asked again).
pub fn refusals(path: &Path) -> Vec<Refusal> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn record(path: &Path, refusal: Refusal) -> Result<()> {
    let mut all = refusals(path);
    if all.contains(&refusal) {
        return Ok(());
    }
    all.push(refusal);
    all.sort();
    super::write_ledger(path, &all)
}

pub struct SriovBackend<'k> {
    kernel: &'k Kernel,
    sysfs: Sysfs,
    index: HashMap<String, u32>,
    drivers: HashMap<String, String>,
    /// The PFs whose link was up: a count change waits for it to be up
    /// again (a driver that re-initialises the PF takes it down, and igb
    /// refuses a VF's tx rate while its link is down).
    up: std::collections::HashSet<String>,
    ledger: PathBuf,
}

impl<'k> SriovBackend<'k> {
    pub fn new(kernel: &'k Kernel, observed: &crate::state::Observed, ledger: PathBuf) -> Self {
        SriovBackend {
            kernel,
            sysfs: Sysfs::default(),
            index: observed
                .links
                .iter()
                .map(|l| (l.name.clone(), l.index))
                .collect(),
            drivers: observed
                .sriov
                .iter()
                .filter_map(|p| Some((p.name.clone(), p.driver.clone()?)))
                .collect(),
            up: observed
                .links
                .iter()
                .filter(|l| l.oper == "up")
                .map(|l| l.name.clone())
                .collect(),
            ledger,
        }
    }

    fn ifindex(&self, pf: &str) -> Result<u32> {
        self.index
            .get(pf)
            .copied()
            .ok_or_else(|| Error::new(ErrorKind::NotFoundYet, format!("PF {pf} is gone")))
    }

    pub async fn execute(&mut self, action: &Action) -> Result<()> {
        let pf = action.name.as_str();
        let ifindex = self.ifindex(pf)?;
        match &action.change {
            Change::SetNumVfs { from, to, .. } => {
                let (sysfs, pf, from, to) = (self.sysfs.clone(), pf.to_string(), *from, *to);
                let was_up = self.up.contains(&pf);
                super::blocking("an SR-IOV step", move || {
                    if from > 0 && to > 0 {
                        sysfs.set_num_vfs(&pf, 0)?;
                        sysfs.wait_vfs(&pf, ifindex, 0, VF_WAIT)?;
                    }
                    sysfs.set_num_vfs(&pf, to)?;
                    sysfs.wait_vfs(&pf, ifindex, to, VF_WAIT)?;
                    if was_up {
                        sysfs.wait_up(&pf, VF_WAIT)?;
                    }
                    Ok(())
                })
                .await
            }
            Change::SetVf { vf, set, .. } => {
                let rebind = self.unbind_for_mac(pf, *vf, set).await?;
                let sent = self.send_all(pf, ifindex, *vf, set).await;
                if let Some(pci) = rebind {
                    let sysfs = self.sysfs.clone();
                    super::blocking("an SR-IOV step", move || {
                        sysfs.probe(&pci)?;
                        sysfs.wait_driver(&pci, VfDriver::Kernel, VF_WAIT)
                    })
                    .await
                    .map_err(|e| {
                        e.context(format!("VF {vf}: its driver bound again for its new MAC"))
                    })?;
                }
                sent
            }
            Change::SetVfDriver {
                vf, to, noiommu, ..
            } => {
                let (sysfs, pf, vf, to, noiommu) =
                    (self.sysfs.clone(), pf.to_string(), *vf, *to, *noiommu);
                super::blocking("an SR-IOV step", move || {
                    if noiommu {
                        sysfs.enable_noiommu()?;
                    }
                    let pci = sysfs.vf_pci(&pf, vf)?;
                    let driver = match to {
                        VfDriver::VfioPci => Some(crate::plan::VFIO_PCI),
                        VfDriver::Kernel => None,
                    };
                    sysfs.bind(&pci, driver)?;
                    sysfs.wait_driver(&pci, to, VF_WAIT)
                })
                .await
            }
            other => Err(Error::new(
                ErrorKind::Bug,
                format!("{other:?} is not an SR-IOV step"),
            )),
        }
    }

    /// Sends each setting of `set` on its own, so a driver that lacks one
    /// refuses only that one: the refusal (EOPNOTSUPP) is recorded, reported
    /// as unmet from then on, and the rest is applied.
    async fn send_all(&self, pf: &str, ifindex: u32, vf: u32, set: &VfConfig) -> Result<()> {
        for (setting, attr) in requests(vf, set) {
            match self.send(ifindex, attr).await {
                Ok(()) => {}
                Err(e) if matches!(errno(&e), Some(Errno::EOPNOTSUPP)) => {
                    let error = refused(e).to_string();
                    tracing::warn!(
                        "sriov {pf}: VF {vf} {setting}: the driver refuses it ({error}); reported as unmet from now on"
                    );
                    record(
                        &self.ledger,
                        Refusal {
                            pf: pf.to_string(),
                            driver: self.drivers.get(pf).cloned().unwrap_or_default(),
                            setting: setting.to_string(),
                            error,
                        },
                    )?;
                }
                Err(e) => return Err(refused(e).context(format!("VF {vf} {setting}"))),
            }
        }
        Ok(())
    }

    /// A VF's MAC, set through the PF, reaches the VF's own netdev only
    /// when its driver starts (igb says "Reload the VF driver to make this
    /// change effective"; until then igbvf keeps the MAC it has, and a
    /// trusted VF even pushes that one back over the PF's). So a VF with a
    /// netdev here that shows another MAC than the one to set is unbound
    /// first, and bound again once the MAC is set (the caller): its driver
    /// then starts with the new MAC and never pushes the old one back. A VF
    /// in a pod has no netdev here: its user's business. Returns the PCI
    /// address of the VF it unbound.
    async fn unbind_for_mac(&self, pf: &str, vf: u32, set: &VfConfig) -> Result<Option<String>> {
        let (Some((netdev, _)), Some(mac)) = (self.sysfs.vf_netdev(pf, vf), set.mac.clone()) else {
            return Ok(None);
        };
        if self
            .sysfs
            .netdev_mac(&netdev)
            .is_some_and(|m| m.eq_ignore_ascii_case(&mac))
        {
            return Ok(None);
        }
        let (sysfs, pf) = (self.sysfs.clone(), pf.to_string());
        super::blocking("an SR-IOV step", move || {
            let pci = sysfs.vf_pci(&pf, vf)?;
            tracing::info!("sriov {pf}: VF {vf}: its driver unbound while it takes MAC {mac}, then bound again");
            sysfs.unbind(&pci)?;
            Ok(Some(pci))
        })
        .await
        .map_err(|e| e.context(format!("VF {vf}: its driver unbound for its new MAC")))
    }

    async fn send(&self, ifindex: u32, vf: VfInfo) -> std::result::Result<(), rtnetlink::Error> {
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        msg.attributes
            .push(LinkAttribute::VfInfoList(vec![LinkVfInfo(vec![vf])]));
        self.kernel.handle().link().set(msg).execute().await
    }
}

/// Runs sysfs writes and their bounded waits off the async threads.
/// One netlink VF attribute per setting in `set`, with the setting's key.
fn requests(vf: u32, set: &VfConfig) -> Vec<(&'static str, VfInfo)> {
    let mut out = Vec::new();
    if let Some(mac) = set.mac.as_deref().and_then(parse_mac) {
        out.push(("mac", VfInfo::Mac(VfInfoMac::new(vf, &mac))));
    }
    if let Some(v) = set.vlan {
        // IFLA_VF_VLAN has no protocol: 802.1ad needs the list form, which
        // fewer drivers take, so it is used only then.
        out.push((
            "vlan",
            match v.proto {
                VlanProto::Dot1q => VfInfo::Vlan(VfInfoVlan::new(vf, v.id.into(), v.qos.into())),
                VlanProto::Dot1ad => VfInfo::VlanList(vec![VfVlan::Info(VfVlanInfo::new(
                    vf,
                    v.id.into(),
                    v.qos.into(),
                    VlanProtocol::Ieee8021Ad,
                ))]),
            },
        ));
    }
    if let Some(s) = set.spoofchk {
        out.push(("spoofchk", VfInfo::SpoofCheck(VfInfoSpoofCheck::new(vf, s))));
    }
    if let Some(t) = set.trust {
        out.push(("trust", VfInfo::Trust(VfInfoTrust::new(vf, t))));
    }
    if let Some(l) = set.link_state {
        let state = match l {
            crate::config::VfLinkState::Auto => VfLinkState::Auto,
            crate::config::VfLinkState::Enable => VfLinkState::Enable,
            crate::config::VfLinkState::Disable => VfLinkState::Disable,
        };
        out.push((
            "link_state",
            VfInfo::LinkState(VfInfoLinkState::new(vf, state)),
        ));
    }
    if let Some(r) = set.rate {
        out.push((
            "rate",
            VfInfo::Rate(VfInfoRate::new(vf, r.min_mbps, r.max_mbps)),
        ));
    }
    out
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}
