//! An RDMA device (HCA) for a pod (`rdma` in the conflist entry): ADD
//! finds the device ([`RdmaWant`]: named, or the one on the pod's VF or
//! master), checks that the node files offer it (`rdma.devices`, from
//! podnetd's `GET /v1/node`) and, in exclusive netns mode, moves it into
//! the pod's namespace before the endpoint is registered with it; DEL
//! moves it back. In shared mode every namespace sees every device, so
//! nothing moves: the endpoint only records which one the pod uses.
//!
//! Moves run over podnet's RDMA netlink, from podnet-cni's own namespace
//! (the host's) into the pod's, and back from a thread inside the pod's.

use std::fs::File;
use std::path::Path;

use nix::sched::{setns, CloneFlags};

use super::types::{code, CniError, NetConf, RdmaWant};
use super::{Attachment, Podnetd};
use crate::api::types::Node;
use crate::config::RdmaNetnsMode;
use crate::kernel::Errno;
use crate::rdma::Rdma;
use crate::state::RdmaDevice;

/// What ADD did with the pod's device, for the endpoint and for a rollback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handed {
    pub name: String,
    /// Moved into the pod's namespace (exclusive mode).
    pub moved: bool,
}

fn failed(msg: impl Into<String>, details: impl Into<String>) -> CniError {
    CniError::new(code::RDMA, msg, details)
}

/// An RDMA socket in the calling thread's namespace (`whose`: the host's,
/// the pod's).
fn open(whose: &str) -> Result<Rdma, CniError> {
    match Rdma::open() {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(failed(
            format!("no RDMA core in the {whose} namespace: no device to hand the pod"),
            "load the HCA's driver (or declare [rdma] in the node files for podnetd to load the modules)",
        )),
        Err(e) => Err(failed(
            format!("cannot open the RDMA netlink in the {whose} namespace"),
            e.to_string(),
        )),
    }
}

/// The device `want` names among `devices`, as seen from the host.
pub fn pick<'a>(
    want: &RdmaWant,
    conf: &NetConf,
    devices: &'a [RdmaDevice],
) -> Option<&'a RdmaDevice> {
    match want {
        RdmaWant::Named(n) => devices.iter().find(|d| &d.name == n),
        RdmaWant::OnInterface => match (&conf.device_id, &conf.master) {
            (Some(pci), _) => devices.iter().find(|d| d.pci.as_deref() == Some(pci)),
            (None, Some(m)) => devices.iter().find(|d| d.netdev() == Some(m.as_str())),
            (None, None) => None,
        },
    }
}

/// ADD: the pod's device, moved into its namespace where the mode asks.
/// `registered` asks podnetd for the device an earlier ADD of the same
/// attachment recorded, which a repeated ADD finds in the pod already
/// (asked only then: the host no longer shows the device).
pub fn hand_over(
    conf: &NetConf,
    at: &Attachment,
    node: &Node,
    registered: impl FnOnce() -> Option<String>,
) -> Result<Option<Handed>, CniError> {
    let Some(want) = &conf.rdma else {
        return Ok(None);
    };
    let netns = at.netns.as_deref().unwrap_or_default();
    let mut rdma = open("host's")?;
    let mode = rdma
        .netns_mode()
        .map_err(|e| failed("cannot read the RDMA netns mode", e.to_string()))?;
    let devices = rdma
        .devices()
        .map_err(|e| failed("cannot list the RDMA devices", e.to_string()))?;
    let Some(dev) = pick(want, conf, &devices) else {
        // A repeated ADD in exclusive mode: the device left the host for
        // the pod the first time.
        if mode == Some(RdmaNetnsMode::Exclusive) {
            let name = match want {
                RdmaWant::Named(n) => Some(n.clone()),
                RdmaWant::OnInterface => registered(),
            };
            if let Some(name) = name {
                if in_pod(netns, &name)?.is_some() {
                    return Ok(Some(Handed { name, moved: false }));
                }
            }
        }
        return Err(failed(
            format!("no RDMA device for the pod: {}", describe(want, conf)),
            format!(
                "the host's RDMA devices: {}",
                names(&devices).unwrap_or_else(|| "none".into())
            ),
        ));
    };
    let hcas: Vec<_> = node.rdma.iter().flat_map(|r| &r.hcas).collect();
    if !hcas.iter().any(|h| h.name == dev.name && h.offered) {
        let offered: Vec<&str> = hcas
            .iter()
            .filter(|h| h.offered)
            .map(|h| h.name.as_str())
            .collect();
        return Err(failed(
            format!("RDMA device {} is not offered to pods", dev.name),
            format!(
                "add it (its name, a netdev of its ports or its PCI address) to rdma.devices in the node files; offered now: {}",
                if offered.is_empty() { "none".into() } else { offered.join(", ") }
            ),
        ));
    }
    if mode != Some(RdmaNetnsMode::Exclusive) {
        return Ok(Some(Handed {
            name: dev.name.clone(),
            moved: false,
        }));
    }
    let pod = File::open(netns).map_err(|e| {
        failed(
            format!("cannot open the pod's network namespace {netns}"),
            e.to_string(),
        )
    })?;
    rdma.set_netns(dev.index, &dev.name, &pod).map_err(|e| {
        let why = match e.errno {
            Errno::EOPNOTSUPP => format!(
                "the kernel cannot move it: its driver ({}) does not support network namespaces (mlx5 does; Soft-RoCE and siw do not); in shared mode every pod sees it without a move",
                dev.driver.as_deref().unwrap_or("unknown")
            ),
            _ => e.to_string(),
        };
        failed(
            format!("cannot move RDMA device {} into the pod's namespace", dev.name),
            why,
        )
    })?;
    Ok(Some(Handed {
        name: dev.name.clone(),
        moved: true,
    }))
}

fn describe(want: &RdmaWant, conf: &NetConf) -> String {
    match (want, &conf.device_id, &conf.master) {
        (RdmaWant::Named(n), _, _) => format!("no device {n}"),
        (RdmaWant::OnInterface, Some(pci), _) => format!("none on the VF {pci}"),
        (RdmaWant::OnInterface, None, Some(m)) => format!("none on {m}"),
        (RdmaWant::OnInterface, None, None) => "none named".into(),
    }
}

fn names(devices: &[RdmaDevice]) -> Option<String> {
    (!devices.is_empty()).then(|| {
        devices
            .iter()
            .map(|d| match d.netdev() {
                Some(n) => format!("{} (on {n})", d.name),
                None => d.name.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// Runs `f` with an RDMA socket made inside the namespace at `netns`, on a
/// thread of its own (a namespace is per thread).
fn in_netns<T: Send>(
    netns: &str,
    f: impl FnOnce(&mut Rdma) -> Result<T, CniError> + Send,
) -> Result<T, CniError> {
    let ns = File::open(netns).map_err(|e| {
        failed(
            format!("cannot open the pod's network namespace {netns}"),
            e.to_string(),
        )
    })?;
    std::thread::scope(|s| {
        s.spawn(move || {
            setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| {
                failed(
                    format!("cannot enter the pod's network namespace {netns}"),
                    e.to_string(),
                )
            })?;
            f(&mut open("pod's")?)
        })
        .join()
        .unwrap_or_else(|_| Err(failed("the RDMA thread panicked", "")))
    })
}

/// Device `name` as the pod's namespace sees it, if it is there.
fn in_pod(netns: &str, name: &str) -> Result<Option<RdmaDevice>, CniError> {
    in_netns(netns, |r| {
        let devices = r
            .devices()
            .map_err(|e| failed("cannot list the pod's RDMA devices", e.to_string()))?;
        Ok(devices.into_iter().find(|d| d.name == name))
    })
}

/// DEL (and ADD's rollback): moves device `name` from the pod's namespace
/// back to the host's. Ok(false) when it is not the pod's (shared mode),
/// not in the pod (never moved, moved back already) or the namespace is
/// gone (the kernel then returned it to the initial namespace).
pub fn give_back(netns: &str, name: &str) -> Result<bool, CniError> {
    if !crate::netns::is_namespace(Path::new(netns)) {
        return Ok(false);
    }
    let host = File::open("/proc/self/ns/net")
        .map_err(|e| failed("cannot open the host's network namespace", e.to_string()))?;
    in_netns(netns, |r| {
        // In shared mode the pod sees every device, and none is its own.
        let mode = r
            .netns_mode()
            .map_err(|e| failed("cannot read the RDMA netns mode", e.to_string()))?;
        if mode != Some(RdmaNetnsMode::Exclusive) {
            return Ok(false);
        }
        let devices = r
            .devices()
            .map_err(|e| failed("cannot list the pod's RDMA devices", e.to_string()))?;
        let Some(dev) = devices.into_iter().find(|d| d.name == name) else {
            return Ok(false);
        };
        r.set_netns(dev.index, &dev.name, &host).map_err(|e| {
            failed(
                format!("cannot move RDMA device {name} back to the host"),
                e.to_string(),
            )
        })?;
        Ok(true)
    })
}

/// The device the registered endpoint of `at` holds, if podnetd answers.
pub(crate) fn registered(podnetd: &Podnetd, at: &Attachment) -> Option<String> {
    podnetd
        .call(|c| c.endpoint(&at.container_id, &at.ifname))
        .ok()
        .flatten()
        .and_then(|r| r.endpoint.rdma)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::RdmaPort;

    fn dev(name: &str, pci: Option<&str>, netdev: &str) -> RdmaDevice {
        RdmaDevice {
            index: 0,
            name: name.into(),
            node_type: None,
            protocol: None,
            fw: None,
            node_guid: None,
            driver: None,
            uverbs: None,
            pci: pci.map(Into::into),
            char_devices: Vec::new(),
            ports: vec![RdmaPort {
                index: 1,
                state: "ACTIVE".into(),
                phys_state: "LINK_UP".into(),
                netdev: Some(netdev.into()),
                netdev_index: None,
                link_layer: None,
            }],
        }
    }

    fn conf(extra: serde_json::Value) -> NetConf {
        let mut c = serde_json::json!({"cniVersion": "1.0.0", "name": "pods"});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        NetConf::parse(&c).unwrap()
    }

    #[test]
    fn the_pods_device_is_named_or_on_its_vf_or_on_its_master() {
        let devices = [
            dev("mlx5_0", Some("0000:01:00.0"), "ens1f0"),
            dev("mlx5_3", Some("0000:01:10.2"), "ens1f0v2"),
            dev("rxe0", None, "ens192"),
        ];
        let name =
            |c: &NetConf| pick(c.rdma.as_ref().unwrap(), c, &devices).map(|d| d.name.clone());
        let c = conf(serde_json::json!({"rdma": "mlx5_0"}));
        assert_eq!(name(&c).as_deref(), Some("mlx5_0"));
        let c =
            conf(serde_json::json!({"rdma": true, "deviceID": "0000:01:10.2", "master": "ens1f0"}));
        assert_eq!(
            name(&c).as_deref(),
            Some("mlx5_3"),
            "the VF's wins over the master's"
        );
        let c = conf(serde_json::json!({"rdma": true, "master": "ens192"}));
        assert_eq!(name(&c).as_deref(), Some("rxe0"));
        let c = conf(serde_json::json!({"rdma": true, "master": "ens224"}));
        assert_eq!(name(&c), None);
        assert_eq!(describe(c.rdma.as_ref().unwrap(), &c), "none on ens224");
    }
}
