//! `podnetctl show`: the host's relevant state in the node file format, so
//! an operator can start node files from a running node.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::ValueEnum;

use super::Cli;
use crate::config::{
    ChildKind, Master, NodeConfig, Rate, Shim, SriovPf, VfDriver, VfLinkState, VfSettings,
    VlanProto, VERSION,
};
use crate::error::Result;
use crate::observe::observe;
use crate::state::{Observed, VfConfig, RT_TABLE_MAIN};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShowFormat {
    Toml,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "toml")]
    pub output: ShowFormat,
}

pub fn run(cli: &Cli, args: &Args) -> Result<ExitCode> {
    let observed = super::with_kernel(cli, async |k| observe(k).await)?;
    let (config, foreign) = host_as_config(&observed);
    match args.output {
        ShowFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&config).unwrap_or_default()
        ),
        ShowFormat::Toml => {
            println!("#:schema /usr/share/podnet/podnet.schema.json");
            println!("# podnetctl show: this host's masters, podnet's shims, the SR-IOV PFs with VFs; the RDMA devices as comments.");
            for f in &foreign {
                println!("# {f}");
            }
            print!("{}", toml::to_string(&config).unwrap_or_default());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Every link with ipvlan/macvlan children becomes a master; a child podnet
/// owns becomes its shim. Children of others are listed as comments.
pub(crate) fn host_as_config(observed: &Observed) -> (NodeConfig, Vec<String>) {
    let mut masters = BTreeMap::new();
    let mut foreign = Vec::new();
    for child in &observed.links {
        let kind = match child.kind.as_deref() {
            Some("ipvlan") => ChildKind::Ipvlan,
            Some("macvlan") => ChildKind::Macvlan,
            _ => continue,
        };
        let Some(parent) = child.parent.as_deref().and_then(|p| observed.link(p)) else {
            continue;
        };
        let master = masters
            .entry(parent.name.clone())
            .or_insert_with(|| Master {
                kind,
                mode: child.mode,
                mtu: Some(parent.mtu),
                shaping: None,
                shim: None,
            });
        if child.is_owned() && master.shim.is_none() {
            master.shim = Some(Shim {
                name: child.name.clone(),
                addresses: observed
                    .addresses_of(&child.name)
                    .filter(|a| !a.is_kernel_link_local())
                    .map(|a| a.prefix)
                    .collect(),
                routes: observed
                    .routes
                    .iter()
                    .filter(|r| {
                        r.is_owned()
                            && r.table == RT_TABLE_MAIN
                            && r.link.as_deref() == Some(&child.name)
                    })
                    .map(|r| r.dst)
                    .collect(),
            });
        } else if !child.is_owned() {
            foreign.push(format!(
                "{} {} on {} ({}) is not podnet's: left alone",
                kind,
                child.name,
                parent.name,
                child.mode.map(|m| m.to_string()).unwrap_or_default()
            ));
        }
    }
    let mut sriov = BTreeMap::new();
    for pf in observed.sriov.iter().filter(|p| p.num_vfs > 0) {
        let mut vfs = BTreeMap::new();
        for vf in &pf.vfs {
            if let Some(why) = &vf.in_use {
                foreign.push(format!(
                    "sriov {} VF {} is in use ({why}): its settings are its user's, not shown",
                    pf.name, vf.index
                ));
                continue;
            }
            let mut settings = vf_settings(&vf.config);
            if vf.driver.as_deref() == Some(crate::plan::VFIO_PCI) {
                settings.driver = Some(VfDriver::VfioPci);
            }
            if settings != VfSettings::default() {
                vfs.insert(vf.index.to_string(), settings);
            }
        }
        sriov.insert(
            pf.name.clone(),
            SriovPf {
                num_vfs: pf.num_vfs,
                vf: None,
                // vfio-pci VFs without an IOMMU group: no-IOMMU mode is on.
                vfio_noiommu: pf
                    .vfs
                    .iter()
                    .any(|v| {
                        v.driver.as_deref() == Some(crate::plan::VFIO_PCI)
                            && v.iommu_group.is_none()
                    })
                    .then_some(true),
                vfs,
            },
        );
    }
    // RDMA as comments only: its keys applied would not be a no-op (the
    // netns mode writes podnet's boot setting, `devices` loads the user
    // verbs modules, a Soft-RoCE link podnet did not make is refused).
    if let Some(r) = observed.rdma.as_ref().filter(|r| r.error.is_none()) {
        if let Some(mode) = r.netns_mode {
            foreign.push(format!(
                "rdma: the kernel's netns mode is {} (rdma.netns_mode)",
                mode.as_str()
            ));
        }
        for d in &r.devices {
            let ports: Vec<String> = d
                .ports
                .iter()
                .map(|p| {
                    format!(
                        "port {} {} {} on {}",
                        p.index,
                        p.state,
                        p.link_layer.as_deref().unwrap_or("-"),
                        p.netdev.as_deref().unwrap_or("-")
                    )
                })
                .collect();
            let soft_roce = d.driver.as_deref() == Some(crate::plan::RXE);
            foreign.push(format!(
                "rdma {} ({}{}{}): {}; {} (offer it in rdma.devices)",
                d.name,
                d.driver.as_deref().unwrap_or("driver unknown"),
                d.pci
                    .as_deref()
                    .map(|p| format!(", {p}"))
                    .unwrap_or_default(),
                if soft_roce { ", a Soft-RoCE link" } else { "" },
                ports.join(", "),
                if d.char_devices.is_empty() {
                    "no char devices (ib_uverbs not loaded)".to_string()
                } else {
                    d.char_devices.join(" ")
                }
            ));
        }
    }
    let config = NodeConfig {
        version: VERSION,
        masters,
        sriov,
        ..NodeConfig::default()
    };
    (config, foreign)
}

/// A VF's settings as node file keys; what a new VF has anyway (no MAC,
/// untagged, link-state auto, no rate) is left out.
fn vf_settings(c: &VfConfig) -> VfSettings {
    let vlan = c.vlan.filter(|v| v.id != 0);
    let rate = c.rate.unwrap_or_default();
    let mbit = |m: u32| (m != 0).then(|| Rate(u64::from(m) * 1_000_000));
    VfSettings {
        mac: c.mac.clone().filter(|m| m != "00:00:00:00:00:00"),
        vlan: vlan.map(|v| v.id),
        qos: vlan.map(|v| v.qos).filter(|q| *q != 0),
        vlan_proto: vlan.map(|v| v.proto).filter(|p| *p != VlanProto::Dot1q),
        trust: c.trust,
        spoofchk: c.spoofchk,
        link_state: c.link_state.filter(|l| *l != VfLinkState::Auto),
        max_tx_rate: mbit(rate.max_mbps),
        min_tx_rate: mbit(rate.min_mbps),
        tier: None,
        driver: None,
    }
}
