//! Observe: the host's links, addresses, routes and qdiscs, read over
//! rtnetlink into an [`Observed`]. One reader per kind of object, then one
//! pass that resolves ifindexes to names (nispor's shape).

mod address;
mod link;

/// One `RTM_NEWLINK` message as a [`Link`] (its lower device left unset:
/// the message names it by ifindex only).
pub(crate) fn link_of(msg: &netlink_packet_route::link::LinkMessage) -> crate::state::Link {
    link::parse(msg).link
}
mod qdisc;
mod route;

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use rtnetlink::RouteMessageBuilder;

pub(crate) use link::{to_ipvlan_mode, to_macvlan_mode};

use crate::error::Result;
use crate::kernel::{refused, Kernel};
use crate::state::{Address, Observed, Pf, Vf, Vfio, RT_TABLE_MAIN};

/// [`observe`], and the shaper's part: the program on each link's egress
/// hook, the root qdiscs podnet recorded replacing, the kernel's features.
/// The endpoint map's entries are read by the caller, under the lock that
/// also guards the endpoint registry they are planned against.
pub async fn observe_with_shaping(
    kernel: &Kernel,
    paths: &crate::shaping::ShaperPaths,
) -> Result<Observed> {
    let mut observed = observe(kernel).await?;
    observed.shaping = crate::shaping::observe::links(kernel, &observed, paths).await?;
    observed.htb = crate::shaping::observe::htb(kernel, &observed).await?;
    observed.kernel = crate::shaping::observe::features();
    Ok(observed)
}

/// Reads the host's links, addresses, routes and qdiscs, in one pass of four dumps. They
/// run one after another: a netlink socket serves one dump at a time (a
/// second one in flight gets EBUSY).
pub async fn observe(kernel: &Kernel) -> Result<Observed> {
    let h = kernel.handle();
    let links = async {
        // RTEXT_FILTER_VF: a PF's message carries its VFs' settings.
        h.link()
            .get()
            .set_filter_mask(
                netlink_packet_route::AddressFamily::Unspec,
                vec![netlink_packet_route::link::LinkExtentMask::Vf],
            )
            .execute()
            .map_ok(|m| link::parse(&m))
            .try_collect::<Vec<_>>()
            .await
    };
    let addresses = async {
        h.address()
            .get()
            .execute()
            .try_filter_map(|m| async move { Ok(address::parse(&m)) })
            .try_collect::<Vec<_>>()
            .await
    };
    let routes = async {
        let mut out = Vec::new();
        // A plain (non-strict) socket returns every table; keep main's.
        for request in [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ] {
            let mut dump = h.route().get(request).execute();
            while let Some(m) = dump.try_next().await? {
                if let Some(r) = route::parse(&m).filter(|(_, r)| r.table == RT_TABLE_MAIN) {
                    out.push(r);
                }
            }
        }
        Ok(out)
    };
    let qdiscs = async {
        h.qdisc()
            .get()
            .execute()
            .map_ok(|m| qdisc::parse(&m))
            .try_collect::<Vec<_>>()
            .await
    };
    let what = |w: &'static str| move |e| refused(e).context(format!("reading the host's {w}"));
    let links = links.await.map_err(what("links"))?;
    let addresses = addresses.await.map_err(what("addresses"))?;
    let routes = routes.await.map_err(what("routes"))?;
    let qdiscs = qdiscs.await.map_err(what("qdiscs"))?;

    let names: HashMap<u32, String> = links
        .iter()
        .map(|l| (l.link.index, l.link.name.clone()))
        .collect();
    let name = |i: u32| names.get(&i).cloned();
    let sysfs = crate::sysfs::Sysfs::default();
    let sriov = sriov(&sysfs, &links);
    let vfio = if sriov.is_empty() {
        Vfio::default()
    } else {
        sysfs.vfio()
    };
    let mut observed = Observed {
        links: links
            .into_iter()
            .map(|mut raw| {
                raw.link.parent = raw.parent_index.and_then(name);
                raw.link
            })
            .collect(),
        addresses: addresses
            .into_iter()
            .filter_map(|(i, prefix)| {
                Some(Address {
                    link: name(i)?,
                    prefix,
                })
            })
            .collect(),
        routes: routes
            .into_iter()
            .map(|(oif, mut r)| {
                r.link = oif.and_then(name);
                r
            })
            .collect(),
        qdiscs: qdiscs
            .into_iter()
            .filter_map(|(i, mut q)| {
                q.link = name(u32::try_from(i).ok()?)?;
                Some(q)
            })
            .collect(),
        sriov,
        vfio,
        rdma: crate::rdma::observe(),
        ..Observed::default()
    };
    observed.links.sort_by_key(|l| l.index);
    Ok(observed)
}

/// The PFs among `links` (those with a bus parent whose sysfs shows
/// `sriov_totalvfs`), each VF with its settings from the PF's message.
fn sriov(sysfs: &crate::sysfs::Sysfs, links: &[link::RawLink]) -> Vec<Pf> {
    let pfs: Vec<(&link::RawLink, crate::sysfs::PfSys)> = links
        .iter()
        .filter(|raw| raw.num_vf.is_some())
        .filter_map(|raw| Some((raw, sysfs.pf(&raw.link.name, raw.link.index)?)))
        .collect();
    // Who holds the VFIO files of the VFs bound to vfio-pci: one pass over
    // the processes, and none when no VF is bound to it.
    let files: Vec<_> = pfs
        .iter()
        .flat_map(|(_, sys)| sys.vfs.iter().flat_map(|v| v.vfio_files()))
        .collect();
    let holders = crate::holders::holders(&files);
    pfs.into_iter()
        .map(|(raw, sys)| {
            let vfs = sys
                .vfs
                .into_iter()
                .map(|v| Vf {
                    index: v.index,
                    in_use: vf_in_use(&v, &holders),
                    pci: v.pci,
                    driver: v.driver,
                    netdev: v.netdev,
                    iommu_group: v.iommu_group,
                    config: raw
                        .vfs
                        .iter()
                        .find(|(i, _)| *i == v.index)
                        .map(|(_, c)| c.clone())
                        .unwrap_or_default(),
                })
                .collect();
            Pf {
                name: raw.link.name.clone(),
                pci: sys.pci,
                driver: sys.driver,
                iommu_group: sys.iommu_group,
                total_vfs: sys.total_vfs,
                num_vfs: sys.num_vfs,
                vfs,
            }
        })
        .collect()
}

/// Why a VF is in use, as the host shows it (a registered endpoint that
/// names it is the daemon's to add: [`Observed::mark_vf_users`]).
fn vf_in_use(
    v: &crate::sysfs::VfSys,
    holders: &std::collections::BTreeMap<std::path::PathBuf, Vec<String>>,
) -> Option<String> {
    if v.moved_away() {
        return Some(
            "its netdev left this network namespace (a pod's, as sriov-cni moves it)".into(),
        );
    }
    let files = v.vfio_files();
    let held: Vec<String> = files
        .iter()
        .filter_map(|f| {
            Some(format!(
                "{} holds {}",
                holders.get(f)?.join(", "),
                f.display()
            ))
        })
        .collect();
    if !held.is_empty() {
        return Some(format!("bound to vfio-pci and open: {}", held.join("; ")));
    }
    (!files.is_empty() && v.enabled).then(|| {
        "bound to vfio-pci and enabled, which vfio-pci does only while a process has it open (one podnetd cannot look into)".into()
    })
}
