//! sysfs, through one type that holds its root (`/sys` on a host), so a
//! test can point it at another tree: what netlink does not carry about
//! SR-IOV (the VF count, the most VFs a device offers, each VF's PCI
//! address, driver and netdev) and the one write that changes the count.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};

/// Drivers that take a VF from the kernel's network stack: a VF bound to
/// one has no netdev, and that is not a sign it moved to a pod.
const USERSPACE_DRIVERS: [&str; 4] = ["vfio-pci", "uio_pci_generic", "igb_uio", "pci-stub"];

/// The sysfs tree podnet reads and writes.
#[derive(Debug, Clone)]
pub struct Sysfs {
    root: PathBuf,
}

impl Default for Sysfs {
    fn default() -> Self {
        Sysfs::new("/sys")
    }
}

/// A PF as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PfSys {
    pub pci: String,
    pub driver: Option<String>,
    pub iommu_group: Option<String>,
    pub total_vfs: u32,
    pub num_vfs: u32,
    pub vfs: Vec<VfSys>,
}

/// A VF as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfSys {
    pub index: u32,
    pub pci: Option<String>,
    pub driver: Option<String>,
    /// Its netdev, as this mount of sysfs (this network namespace's) sees it.
    pub netdev: Option<String>,
    /// Its IOMMU group, when the host has an IOMMU.
    pub iommu_group: Option<String>,
    /// Its VFIO character device (`vfio-dev/vfioN`), while bound to
    /// vfio-pci on a kernel with VFIO's device files.
    pub vfio_dev: Option<String>,
    /// The PCI device is enabled (`enable`): vfio-pci enables a VF when a
    /// process opens it, and disables it again when the last one closes.
    pub enabled: bool,
}

impl VfSys {
    /// The files through which a process uses this VF while it is bound to
    /// vfio-pci: its group's (`/dev/vfio/<group>`, or `noiommu-<group>` in
    /// no-IOMMU mode) and its own device file (`/dev/vfio/devices/vfioN`).
    /// Empty when it is not bound to vfio-pci.
    pub fn vfio_files(&self) -> Vec<PathBuf> {
        if self.driver.as_deref() != Some("vfio-pci") {
            return Vec::new();
        }
        let mut files = Vec::new();
        if let Some(g) = &self.iommu_group {
            files.push(PathBuf::from(format!("/dev/vfio/{g}")));
            files.push(PathBuf::from(format!("/dev/vfio/noiommu-{g}")));
        }
        if let Some(d) = &self.vfio_dev {
            files.push(Path::new("/dev/vfio/devices").join(d));
        }
        files
    }

    /// Bound to a network driver, yet without a netdev here: the netdev was
    /// moved into another network namespace (what sriov-cni does for a pod).
    pub fn moved_away(&self) -> bool {
        self.netdev.is_none()
            && self
                .driver
                .as_deref()
                .is_some_and(|d| !USERSPACE_DRIVERS.contains(&d))
    }
}

impl Sysfs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Sysfs { root: root.into() }
    }

    fn device(&self, netdev: &str) -> PathBuf {
        self.root.join("class/net").join(netdev).join("device")
    }

    /// The SR-IOV side of netdev `netdev` (ifindex `ifindex`), if it is a PF
    /// (`sriov_totalvfs` above 0). The ifindex is checked, as a process in
    /// another network namespace than its sysfs mount's would otherwise
    /// read a namesake's.
    pub fn pf(&self, netdev: &str, ifindex: u32) -> Option<PfSys> {
        let net = self.root.join("class/net").join(netdev);
        if read_u32(&net.join("ifindex")) != Some(ifindex) {
            return None;
        }
        let dev = net.join("device");
        let total_vfs = read_u32(&dev.join("sriov_totalvfs")).filter(|t| *t > 0)?;
        let num_vfs = read_u32(&dev.join("sriov_numvfs")).unwrap_or(0);
        let vfs = (0..num_vfs)
            .map(|index| {
                let vf = dev.join(format!("virtfn{index}"));
                VfSys {
                    index,
                    pci: link_name(&vf),
                    driver: link_name(&vf.join("driver")),
                    netdev: first_entry(&vf.join("net")),
                    iommu_group: link_name(&vf.join("iommu_group")),
                    vfio_dev: first_entry(&vf.join("vfio-dev")),
                    enabled: read_u32(&vf.join("enable")).is_some_and(|e| e > 0),
                }
            })
            .collect();
        Some(PfSys {
            pci: link_name(&dev).unwrap_or_default(),
            driver: link_name(&dev.join("driver")),
            iommu_group: link_name(&dev.join("iommu_group")),
            total_vfs,
            num_vfs,
            vfs,
        })
    }

    /// vfio: its PCI driver there (loaded or built in), its no-IOMMU mode
    /// on, and whether this kernel has that mode at all.
    pub fn vfio(&self) -> crate::state::Vfio {
        let param = self
            .root
            .join("module/vfio/parameters/enable_unsafe_noiommu_mode");
        crate::state::Vfio {
            pci_driver: self.root.join("bus/pci/drivers/vfio-pci").is_dir(),
            noiommu: std::fs::read_to_string(&param).is_ok_and(|v| v.trim() == "Y"),
            noiommu_available: param.exists(),
        }
    }

    /// Turns on vfio's no-IOMMU mode (the files asked for it by name).
    pub fn enable_noiommu(&self) -> Result<()> {
        write(
            &self
                .root
                .join("module/vfio/parameters/enable_unsafe_noiommu_mode"),
            "1",
        )
    }

    /// Binds PCI device `pci` to `driver` (None: whatever the kernel picks)
    /// through its `driver_override`: unbind from the current driver, then
    /// ask the kernel to probe it again.
    pub fn bind(&self, pci: &str, driver: Option<&str>) -> Result<()> {
        let dev = self.root.join("bus/pci/devices").join(pci);
        // A newline clears the override.
        write(&dev.join("driver_override"), driver.unwrap_or("\n"))?;
        self.reprobe(pci)
    }

    /// Unbinds PCI device `pci` from its driver and has the kernel probe
    /// it again (its `driver_override` as it is).
    pub fn reprobe(&self, pci: &str) -> Result<()> {
        self.unbind(pci)?;
        self.probe(pci)
    }

    /// Unbinds PCI device `pci` from its driver, if it has one.
    pub fn unbind(&self, pci: &str) -> Result<()> {
        let dev = self.root.join("bus/pci/devices").join(pci);
        if dev.join("driver").exists() {
            write(&dev.join("driver/unbind"), pci)?;
        }
        Ok(())
    }

    /// Has the kernel probe PCI device `pci` (bind the driver that fits).
    pub fn probe(&self, pci: &str) -> Result<()> {
        write(&self.root.join("bus/pci/drivers_probe"), pci)
    }

    /// The MAC address of netdev `name`.
    pub fn netdev_mac(&self, name: &str) -> Option<String> {
        Some(
            std::fs::read_to_string(self.root.join("class/net").join(name).join("address"))
                .ok()?
                .trim()
                .to_string(),
        )
    }

    /// The driver bound to PCI device `pci`, if any.
    pub fn driver(&self, pci: &str) -> Option<String> {
        link_name(&self.root.join("bus/pci/devices").join(pci).join("driver"))
    }

    /// The netdev of VF `index` of PF `pf`, as this mount of sysfs sees
    /// it, with its ifindex (which a rename by udev keeps).
    pub fn vf_netdev(&self, pf: &str, index: u32) -> Option<(String, u32)> {
        let net = self.device(pf).join(format!("virtfn{index}/net"));
        let name = first_entry(&net)?;
        let ifindex = read_u32(&net.join(&name).join("ifindex"))?;
        Some((name, ifindex))
    }

    /// Waits until netdev `name` is operationally up again, for at most
    /// `bound`.
    pub fn wait_up(&self, name: &str, bound: Duration) -> Result<()> {
        let path = self.root.join("class/net").join(name).join("operstate");
        poll(bound, || match std::fs::read_to_string(&path) {
            Ok(s) if s.trim() == "up" => None,
            Ok(s) => Some(format!("its operstate reads {}", s.trim())),
            Err(e) => Some(format!("{}: {e}", path.display())),
        })
        .map_err(|(why, secs)| {
            Error::new(
                ErrorKind::NotFoundYet,
                format!(
                    "{name} was up and is not up again {secs} s after its VF count changed ({why}; its driver re-initialised it); see the kernel log (dmesg)"
                ),
            )
        })
    }

    /// The PCI address of VF `index` of PF `pf`.
    pub fn vf_pci(&self, pf: &str, index: u32) -> Result<String> {
        link_name(&self.device(pf).join(format!("virtfn{index}")))
            .ok_or_else(|| Error::new(ErrorKind::NotFoundYet, format!("{pf} has no VF {index}")))
    }

    /// Waits until PCI device `pci` is bound as `want` asks (the kernel's
    /// driver: any but vfio-pci, with its netdev), for at most `bound`.
    pub fn wait_driver(
        &self,
        pci: &str,
        want: crate::config::VfDriver,
        bound: Duration,
    ) -> Result<()> {
        let dev = self.root.join("bus/pci/devices").join(pci);
        poll(bound, || {
            let driver = self.driver(pci);
            let done = match want {
                crate::config::VfDriver::VfioPci => driver.as_deref() == Some("vfio-pci"),
                crate::config::VfDriver::Kernel => {
                    driver.as_deref().is_some_and(|d| d != "vfio-pci")
                        && first_entry(&dev.join("net")).is_some()
                }
            };
            (!done).then(|| format!("bound to {}", driver.as_deref().unwrap_or("no driver")))
        })
        .map_err(|(why, secs)| {
            Error::new(
                ErrorKind::KernelRefused,
                format!("{pci}: {why} after {secs} s, not as asked; see the kernel log (dmesg)"),
            )
        })
    }

    /// Writes `sriov_numvfs`. The kernel takes only 0 -> N and N -> 0
    /// (EBUSY otherwise): the caller goes through 0.
    pub fn set_num_vfs(&self, pf: &str, n: u32) -> Result<()> {
        let path = self.device(pf).join("sriov_numvfs");
        std::fs::write(&path, n.to_string()).map_err(|e| {
            let kind = match e.raw_os_error().map(nix::errno::Errno::from_raw) {
                Some(nix::errno::Errno::EOPNOTSUPP | nix::errno::Errno::ENOENT) => {
                    ErrorKind::NotSupported
                }
                _ => ErrorKind::KernelRefused,
            };
            Error::new(kind, format!("writing {n} to {}: {e}", path.display()))
        })
    }

    /// Waits until PF `pf` has its `n` VFs, each with its netdev once a
    /// network driver took it (the kernel makes them asynchronously), for
    /// at most `bound`.
    pub fn wait_vfs(&self, pf: &str, ifindex: u32, n: u32, bound: Duration) -> Result<()> {
        poll(bound, || {
            let missing: Vec<String> = match self.pf(pf, ifindex) {
                Some(p) if p.num_vfs == n => p
                    .vfs
                    .iter()
                    .filter(|v| v.pci.is_none() || v.moved_away())
                    .map(|v| format!("VF {}", v.index))
                    .collect(),
                Some(p) => vec![format!("sriov_numvfs reads {}", p.num_vfs)],
                None => vec![format!("{pf} is not an SR-IOV PF in sysfs any more")],
            };
            (!missing.is_empty()).then(|| missing.join(", "))
        })
        .map_err(|(missing, secs)| {
            Error::new(
                ErrorKind::NotFoundYet,
                format!(
                    "{pf}: {n} VF(s) asked, not all there after {secs} s ({missing} without a PCI device or netdev yet); see the kernel log (dmesg)"
                ),
            )
        })
    }
}

/// Checks every 20 ms until `pending` says nothing is left (None), for at
/// most `bound`: then what was still pending, and the bound in seconds.
/// What these waits watch (VFs, drivers, a PF's link) comes without an
/// event podnet could wait on in sysfs.
fn poll(bound: Duration, mut pending: impl FnMut() -> Option<String>) -> Result<(), (String, u64)> {
    let start = Instant::now();
    loop {
        match pending() {
            None => return Ok(()),
            Some(left) if start.elapsed() >= bound => return Err((left, bound.as_secs())),
            Some(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|e| {
        Error::new(
            ErrorKind::KernelRefused,
            format!("writing {:?} to {}: {e}", value.trim_end(), path.display()),
        )
    })
}

fn read_u32(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A PCI address as sysfs names a device: domain, bus, device and
/// function in hex (`0000:01:10.0`).
pub fn valid_pci_address(s: &str) -> bool {
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
    let Some((rest, function)) = s.rsplit_once('.') else {
        return false;
    };
    let parts: Vec<&str> = rest.split(':').collect();
    matches!(parts.as_slice(), [d, b, dev] if hex(d, 4) && hex(b, 2) && hex(dev, 2))
        && function.len() == 1
        && matches!(function.as_bytes()[0], b'0'..=b'7')
}

/// A sysfs attribute's text, trimmed; None when it cannot be read.
pub fn read_trimmed(path: &Path) -> Option<String> {
    Some(std::fs::read_to_string(path).ok()?.trim().to_string()).filter(|t| !t.is_empty())
}

/// The PCI address symlink `device` (a class device's `device`) points
/// to, when it points to a PCI function.
pub fn pci_function(device: &Path) -> Option<String> {
    (link_name(&device.join("subsystem")).as_deref() == Some("pci"))
        .then(|| link_name(device))
        .flatten()
        .filter(|a| valid_pci_address(a))
}

/// The last component of where symlink `path` points (a PCI address, a
/// driver's name).
fn link_name(path: &Path) -> Option<String> {
    let target = std::fs::read_link(path).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

fn first_entry(dir: &Path) -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PF's tree as the kernel lays it out, to read the parsing against
    /// (the VM lab reads a real igb's).
    #[test]
    fn reads_a_pf_and_its_vfs_and_checks_the_ifindex() {
        let root = std::env::temp_dir().join(format!("podnet-sysfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let r = root.as_path();
        let pci = r.join("devices/pci0000:00/0000:01:00.0");
        std::fs::create_dir_all(pci.join("net/ens2f0")).unwrap();
        std::fs::create_dir_all(r.join("class/net")).unwrap();
        std::os::unix::fs::symlink(pci.join("net/ens2f0"), r.join("class/net/ens2f0")).unwrap();
        std::fs::write(pci.join("net/ens2f0/ifindex"), "7\n").unwrap();
        std::os::unix::fs::symlink(&pci, pci.join("net/ens2f0/device")).unwrap();
        std::fs::write(pci.join("sriov_totalvfs"), "7\n").unwrap();
        std::fs::write(pci.join("sriov_numvfs"), "2\n").unwrap();
        std::fs::create_dir_all(r.join("bus/pci/drivers/igb")).unwrap();
        std::fs::create_dir_all(r.join("bus/pci/drivers/igbvf")).unwrap();
        std::os::unix::fs::symlink(r.join("bus/pci/drivers/igb"), pci.join("driver")).unwrap();
        for (i, netdev) in [(0, Some("ens2f0v0")), (1, None)] {
            let vf = r.join(format!("devices/pci0000:00/0000:01:10.{i}"));
            std::fs::create_dir_all(vf.join("net")).unwrap();
            if let Some(n) = netdev {
                std::fs::create_dir_all(vf.join("net").join(n)).unwrap();
            }
            std::os::unix::fs::symlink(r.join("bus/pci/drivers/igbvf"), vf.join("driver")).unwrap();
            std::os::unix::fs::symlink(&vf, pci.join(format!("virtfn{i}"))).unwrap();
        }
        let sys = Sysfs::new(r);
        assert_eq!(sys.pf("ens2f0", 8), None, "another namespace's namesake");
        let pf = sys.pf("ens2f0", 7).unwrap();
        assert_eq!(
            (
                pf.pci.as_str(),
                pf.driver.as_deref(),
                pf.total_vfs,
                pf.num_vfs
            ),
            ("0000:01:00.0", Some("igb"), 7, 2)
        );
        assert_eq!(pf.vfs[0].netdev.as_deref(), Some("ens2f0v0"));
        assert_eq!(pf.vfs[1].pci.as_deref(), Some("0000:01:10.1"));
        assert!(!pf.vfs[0].moved_away());
        assert!(pf.vfs[1].moved_away(), "bound to igbvf, no netdev here");
        let err = sys
            .wait_vfs("ens2f0", 7, 2, Duration::from_millis(50))
            .unwrap_err();
        assert!(err.to_string().contains("VF 1"), "{err}");
        assert!(pf.vfs[0].vfio_files().is_empty(), "not bound to vfio-pci");
        let vfio = VfSys {
            driver: Some("vfio-pci".into()),
            iommu_group: Some("12".into()),
            vfio_dev: Some("vfio3".into()),
            ..pf.vfs[1].clone()
        };
        assert_eq!(
            vfio.vfio_files(),
            [
                "/dev/vfio/12",
                "/dev/vfio/noiommu-12",
                "/dev/vfio/devices/vfio3"
            ]
            .map(PathBuf::from)
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn pci_addresses() {
        for ok in ["0000:01:10.0", "0000:af:00.7", "10de:3B:1f.1"] {
            assert!(valid_pci_address(ok), "{ok}");
        }
        for bad in [
            "",
            "01:10.0",
            "0000:01:10.8",
            "0000:01:10",
            "0000:1:10.0",
            "0000:01:10.0x",
            "eth0",
        ] {
            assert!(!valid_pci_address(bad), "{bad}");
        }
    }
}
