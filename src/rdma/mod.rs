//! RDMA: the kernel's RDMA devices (HCAs), their ports and char devices,
//! the subsystem's network namespace mode, and Soft-RoCE links, read and
//! changed over the RDMA netlink ([`netlink`]) the way iproute2's `rdma`
//! does.
//!
//! Requests are blocking and short (a dump of a node's few devices); a
//! receive timeout bounds a kernel that never answers.

pub mod netlink;

use std::os::fd::AsRawFd;
use std::time::Duration;

use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_sys::{protocols::NETLINK_RDMA, Socket, SocketAddr};

use crate::config::RdmaNetnsMode;
use crate::error::{Error, ErrorKind, Result};
use crate::kernel::Errno;
use crate::state::{RdmaDevice, RdmaPort, RdmaState};
use netlink::{Attr, Command, RdmaMessage};

/// How long a request may wait for the kernel's answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The modules podnet looks for: the Soft-RoCE driver, and the two that
/// give user space its verbs (`/dev/infiniband/uverbsN`) and its
/// connection manager (`/dev/infiniband/rdma_cm`).
pub const MODULES: [&str; 3] = ["rdma_rxe", "ib_uverbs", "rdma_ucm"];

/// A kernel refusal of an RDMA request.
#[derive(Debug)]
pub struct Refused {
    pub errno: Errno,
    what: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.errno.desc())
    }
}

impl From<Refused> for Error {
    fn from(r: Refused) -> Error {
        let kind = match r.errno {
            Errno::EOPNOTSUPP => ErrorKind::NotSupported,
            _ => ErrorKind::KernelRefused,
        };
        Error::new(kind, r.to_string())
    }
}

/// One RDMA netlink socket.
pub struct Rdma {
    socket: Socket,
    seq: u32,
}

impl Rdma {
    /// Opens a socket in the calling thread's network namespace; None when
    /// the kernel has no RDMA core loaded (no `ib_core`: the protocol does
    /// not exist until it is).
    pub fn open() -> Result<Option<Rdma>> {
        let socket = match Socket::new(NETLINK_RDMA) {
            Ok(s) => s,
            Err(e) if e.raw_os_error() == Some(libc::EPROTONOSUPPORT) => return Ok(None),
            Err(e) => {
                return Err(Error::new(
                    ErrorKind::Host,
                    format!("cannot open an RDMA netlink socket: {e}"),
                ))
            }
        };
        let timeout = nix::sys::time::TimeVal::new(TIMEOUT.as_secs() as i64, 0);
        // SAFETY: the fd belongs to `socket`, alive for this call.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(socket.as_raw_fd()) };
        nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::ReceiveTimeout, &timeout)
            .map_err(|e| Error::new(ErrorKind::Host, format!("RDMA netlink socket: {e}")))?;
        let mut socket = socket;
        socket
            .bind_auto()
            .map_err(|e| Error::new(ErrorKind::Host, format!("RDMA netlink socket: {e}")))?;
        Ok(Some(Rdma { socket, seq: 0 }))
    }

    /// Sends one request and reads its answer: every message of a dump, or
    /// none for a command the kernel only acknowledges.
    fn request(
        &mut self,
        command: Command,
        attrs: Vec<Attr>,
        dump: bool,
        what: &str,
    ) -> std::result::Result<Vec<RdmaMessage>, Refused> {
        let io = |e: std::io::Error| Refused {
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            what: what.to_string(),
        };
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut msg = NetlinkMessage::from(RdmaMessage::new(command, attrs));
        msg.header.flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { NLM_F_ACK };
        msg.header.sequence_number = seq;
        msg.finalize();
        let mut buf = vec![0; msg.buffer_len()];
        msg.serialize(&mut buf);
        self.socket
            .send_to(&buf, &SocketAddr::new(0, 0), 0)
            .map_err(io)?;
        let mut out = Vec::new();
        loop {
            let (data, _) = self.socket.recv_from_full().map_err(io)?;
            let mut at = 0;
            while at < data.len() {
                let m = NetlinkMessage::<RdmaMessage>::deserialize(&data[at..]).map_err(|e| {
                    Refused {
                        errno: Errno::EBADMSG,
                        what: format!("{what}: {e}"),
                    }
                })?;
                let len = m.header.length as usize;
                at += len.max(16).next_multiple_of(4);
                if m.header.sequence_number != seq {
                    continue;
                }
                match m.payload {
                    NetlinkPayload::InnerMessage(r) => {
                        out.push(r);
                        if !dump {
                            // A doit's reply comes alone, then its ack.
                            continue;
                        }
                    }
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) => match e.code {
                        None => return Ok(out),
                        Some(c) => {
                            return Err(Refused {
                                errno: Errno::from_raw(-c.get()),
                                what: what.to_string(),
                            })
                        }
                    },
                    _ => {}
                }
            }
        }
    }

    /// Every device this namespace sees, with its ports and char devices.
    pub fn devices(&mut self) -> std::result::Result<Vec<RdmaDevice>, Refused> {
        let mut out = Vec::new();
        for m in self.request(Command::Get, Vec::new(), true, "listing RDMA devices")? {
            let Some(index) = m.find(|a| match a {
                Attr::DevIndex(i) => Some(*i),
                _ => None,
            }) else {
                continue;
            };
            let name = m
                .find(|a| match a {
                    Attr::DevName(n) => Some(n.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            let mut ports = self.ports(index, &name)?;
            // The uverbs char device, and with it the driver: only there
            // once ib_uverbs is loaded.
            let uverbs = self.chardev(Some(index), None, "uverbs").ok().flatten();
            let sys = std::path::Path::new(SYS_INFINIBAND).join(&name);
            let mut char_devices: Vec<String> = uverbs.iter().map(|c| dev_path(&c.name)).collect();
            for p in &mut ports {
                p.link_layer =
                    crate::sysfs::read_trimmed(&sys.join(format!("ports/{}/link_layer", p.index)));
                // ib_umad's, one of each per port.
                for kind in ["umad", "issm"] {
                    if let Ok(Some(c)) = self.chardev(Some(index), Some(p.index), kind) {
                        char_devices.push(dev_path(&c.name));
                    }
                }
            }
            out.push(RdmaDevice {
                index,
                name,
                node_type: m.find(|a| match a {
                    Attr::NodeType(t) => Some(node_type(*t).to_string()),
                    _ => None,
                }),
                protocol: m.find(|a| match a {
                    Attr::Protocol(p) => Some(p.clone()),
                    _ => None,
                }),
                fw: m
                    .find(|a| match a {
                        Attr::FwVersion(v) => Some(v.clone()),
                        _ => None,
                    })
                    .filter(|v| !v.is_empty()),
                node_guid: m.find(|a| match a {
                    Attr::NodeGuid(g) => Some(guid(*g)),
                    _ => None,
                }),
                driver: uverbs.as_ref().and_then(|c| c.driver).map(driver_name),
                uverbs: uverbs.map(|c| dev_path(&c.name)),
                pci: crate::sysfs::pci_function(&sys.join("device")),
                char_devices,
                ports,
            });
        }
        out.sort_by_key(|d| d.index);
        Ok(out)
    }

    fn ports(&mut self, index: u32, name: &str) -> std::result::Result<Vec<RdmaPort>, Refused> {
        let what = format!("listing the ports of RDMA device {name}");
        let mut ports: Vec<RdmaPort> = self
            .request(Command::PortGet, vec![Attr::DevIndex(index)], true, &what)?
            .into_iter()
            .filter_map(|m| {
                Some(RdmaPort {
                    index: m.find(|a| match a {
                        Attr::PortIndex(p) => Some(*p),
                        _ => None,
                    })?,
                    state: m
                        .find(|a| match a {
                            Attr::PortState(s) => Some(port_state(*s).to_string()),
                            _ => None,
                        })
                        .unwrap_or_default(),
                    phys_state: m
                        .find(|a| match a {
                            Attr::PortPhysState(s) => Some(phys_state(*s).to_string()),
                            _ => None,
                        })
                        .unwrap_or_default(),
                    netdev: m.find(|a| match a {
                        Attr::NetdevName(n) => Some(n.clone()),
                        _ => None,
                    }),
                    netdev_index: m.find(|a| match a {
                        Attr::NetdevIndex(i) => Some(*i),
                        _ => None,
                    }),
                    link_layer: None,
                })
            })
            .collect();
        ports.sort_by_key(|p| p.index);
        Ok(ports)
    }

    /// The char device of ABI `kind` (`uverbs`, `umad`, `issm`,
    /// `rdma_cm`...) of device `index` (None: a device-less ABI) and, for
    /// the per-port ABIs (umad, issm), of its port `port`; None when the
    /// kernel has no such char device (its module is not loaded).
    pub fn chardev(
        &mut self,
        index: Option<u32>,
        port: Option<u32>,
        kind: &str,
    ) -> std::result::Result<Option<Chardev>, Refused> {
        let mut attrs: Vec<Attr> = index.map(Attr::DevIndex).into_iter().collect();
        attrs.extend(port.map(Attr::PortIndex));
        attrs.push(Attr::ChardevType(kind.to_string()));
        let reply = match self.request(
            Command::GetChardev,
            attrs,
            false,
            &format!("looking up the {kind} char device"),
        ) {
            Ok(r) => r,
            Err(e) if matches!(e.errno, Errno::ENOENT | Errno::EOPNOTSUPP | Errno::EINVAL) => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        Ok(reply.into_iter().find_map(|m| {
            Some(Chardev {
                name: m.find(|a| match a {
                    Attr::ChardevName(n) => Some(n.clone()),
                    _ => None,
                })?,
                driver: m.find(|a| match a {
                    Attr::DriverId(d) => Some(*d),
                    _ => None,
                }),
            })
        }))
    }

    /// The subsystem's network namespace mode.
    pub fn netns_mode(&mut self) -> std::result::Result<Option<RdmaNetnsMode>, Refused> {
        let reply = self.request(
            Command::SysGet,
            Vec::new(),
            false,
            "reading the RDMA netns mode",
        )?;
        Ok(reply.iter().find_map(|m| {
            m.find(|a| match a {
                Attr::NetnsMode(0) => Some(RdmaNetnsMode::Exclusive),
                Attr::NetnsMode(_) => Some(RdmaNetnsMode::Shared),
                _ => None,
            })
        }))
    }

    /// Sets the netns mode; the kernel answers EBUSY while network
    /// namespaces other than the initial one exist.
    pub fn set_netns_mode(&mut self, mode: RdmaNetnsMode) -> std::result::Result<(), Refused> {
        let v = match mode {
            RdmaNetnsMode::Exclusive => 0,
            RdmaNetnsMode::Shared => 1,
        };
        self.request(
            Command::SysSet,
            vec![Attr::NetnsMode(v)],
            false,
            &format!("setting the RDMA netns mode to {}", mode.as_str()),
        )
        .map(drop)
    }

    /// A software RDMA link (`rxe`, `siw`) named `name` on `netdev`.
    pub fn new_link(
        &mut self,
        name: &str,
        link_type: &str,
        netdev: &str,
    ) -> std::result::Result<(), Refused> {
        self.request(
            Command::NewLink,
            vec![
                Attr::DevName(name.to_string()),
                Attr::LinkType(link_type.to_string()),
                Attr::NetdevName(netdev.to_string()),
            ],
            false,
            &format!("creating {link_type} link {name} on {netdev}"),
        )
        .map(drop)
    }

    /// Removes the software RDMA device `index` (named `name`).
    pub fn del_link(&mut self, index: u32, name: &str) -> std::result::Result<(), Refused> {
        self.request(
            Command::DelLink,
            vec![Attr::DevIndex(index)],
            false,
            &format!("removing RDMA link {name}"),
        )
        .map(drop)
    }

    /// Moves device `index` into the network namespace `netns` (a file
    /// descriptor of it), as exclusive mode allows.
    pub fn set_netns(
        &mut self,
        index: u32,
        name: &str,
        netns: &impl AsRawFd,
    ) -> std::result::Result<(), Refused> {
        let fd = u32::try_from(netns.as_raw_fd()).unwrap_or(u32::MAX);
        self.request(
            Command::Set,
            vec![Attr::DevIndex(index), Attr::NetnsFd(fd)],
            false,
            &format!("moving RDMA device {name} to another network namespace"),
        )
        .map(drop)
    }
}

/// Where sysfs lists the RDMA devices of the namespace that mounted it.
const SYS_INFINIBAND: &str = "/sys/class/infiniband";

/// A char device's path, from the name the kernel gives it.
fn dev_path(name: &str) -> String {
    format!("/dev/infiniband/{name}")
}

/// A char device of an RDMA ABI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chardev {
    /// Its name under `/dev/infiniband` (`uverbs0`, `rdma_cm`).
    pub name: String,
    /// The device's driver (`RDMA_DRIVER_*`), for uverbs.
    pub driver: Option<u32>,
}

/// The RDMA subsystem as this namespace sees it, and which of
/// [`MODULES`] are loaded; None when the kernel has no RDMA core and none
/// of them is loaded. A kernel that cannot be read is an `error` in the
/// state, for the plan to refuse RDMA steps on, never a failure of the
/// whole observation: a node that declares no RDMA is not held up by it.
///
/// `other_netns` is left empty: looking for other namespaces reads every
/// process's, and only a wanted mode switch needs it
/// (`crate::apply::observe_for_plan` looks then).
pub fn observe() -> Option<RdmaState> {
    let modules: Vec<String> = MODULES
        .iter()
        .filter(|m| std::path::Path::new("/sys/module").join(m).exists())
        .map(|m| m.to_string())
        .collect();
    let read = || -> Result<Option<RdmaState>> {
        let Some(mut rdma) = Rdma::open()? else {
            return Ok(None);
        };
        Ok(Some(RdmaState {
            netns_mode: rdma.netns_mode()?,
            devices: rdma.devices()?,
            rdma_cm: rdma.chardev(None, None, "rdma_cm")?.is_some(),
            ..RdmaState::default()
        }))
    };
    match read() {
        Ok(Some(state)) => Some(RdmaState { modules, ..state }),
        Ok(None) => (!modules.is_empty()).then(|| RdmaState {
            modules,
            ..RdmaState::default()
        }),
        Err(e) => Some(RdmaState {
            modules,
            error: Some(e.to_string()),
            ..RdmaState::default()
        }),
    }
}

/// The network namespaces other than the initial one (pid 1's) that podnet
/// can see held: by a bind mount (`ip netns`' `/run/netns/NAME`, any nsfs
/// mount in this mount namespace) or by a process (`pid N (COMM)`). The
/// kernel also counts namespaces held only by an open descriptor, a
/// thread or a socket, and ones being torn down, so a switch can still
/// meet EBUSY after this found none.
pub fn other_net_namespaces() -> Vec<String> {
    const PROC_NET_INIT_INO: u64 = 0xEFFF_FFF9;
    let inode =
        |link: &str| -> Option<u64> { link.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok() };
    let of = |path: &str| -> Option<u64> { inode(std::fs::read_link(path).ok()?.to_str()?) };
    // pid 1's, or where it is hidden (a container's sandbox) the fixed
    // number newer kernels give the initial namespace (PROC_NET_INIT_INO;
    // older ones number it as any other, which then counts as another).
    let init = of("/proc/1/ns/net").unwrap_or(PROC_NET_INIT_INO);
    let mut found = std::collections::BTreeMap::new();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in mounts.lines() {
        let Some((fields, fs)) = line.split_once(" - ") else {
            continue;
        };
        if !fs.starts_with("nsfs ") {
            continue;
        }
        let mut f = fields.split(' ').skip(3);
        if let (Some(Some(ino)), Some(at)) = (f.next().map(inode), f.next()) {
            if ino != init {
                found.entry(ino).or_insert_with(|| at.replace("\\040", " "));
            }
        }
    }
    for (pid, name) in crate::holders::processes() {
        let Some(ino) = of(&format!("/proc/{pid}/ns/net")) else {
            continue;
        };
        if ino != init {
            found
                .entry(ino)
                .or_insert_with(|| format!("pid {pid} ({name})"));
        }
    }
    found.into_values().collect()
}

/// A driver by its `RDMA_DRIVER_*` number (`<rdma/ib_user_ioctl_verbs.h>`);
/// `rxe` and `siw` are the software drivers, whose devices are links on a
/// netdev.
fn driver_name(id: u32) -> String {
    let name = match id {
        1 => "mlx5",
        2 => "mlx4",
        4 => "cxgb4",
        6 => "bnxt_re",
        9 => "irdma",
        10 => "vmw_pvrdma",
        11 => "qedr",
        12 => "hns",
        14 => "rxe",
        17 => "efa",
        18 => "siw",
        19 => "erdma",
        other => return format!("driver id {other}"),
    };
    name.to_string()
}

fn node_type(t: u8) -> &'static str {
    match t {
        1 => "ca",
        2 => "switch",
        3 => "router",
        4 => "rnic",
        5 => "usnic",
        6 => "usnic_udp",
        _ => "unspecified",
    }
}

/// As `rdma link` prints them.
fn port_state(s: u8) -> &'static str {
    match s {
        1 => "DOWN",
        2 => "INIT",
        3 => "ARMED",
        4 => "ACTIVE",
        5 => "ACTIVE_DEFER",
        _ => "NOP",
    }
}

fn phys_state(s: u8) -> &'static str {
    match s {
        1 => "SLEEP",
        2 => "POLLING",
        3 => "DISABLED",
        4 => "PORT_CONFIGURATION_TRAINING",
        5 => "LINK_UP",
        6 => "LINK_ERROR_RECOVERY",
        7 => "PHY_TEST",
        _ => "NOP",
    }
}

/// A GUID as `ibv_devinfo` prints it: four groups of four hex digits.
fn guid(g: u64) -> String {
    let b = g.to_be_bytes();
    format!(
        "{:02x}{:02x}:{:02x}{:02x}:{:02x}{:02x}:{:02x}{:02x}",
        b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_print_as_the_rdma_tools_do() {
        assert_eq!(guid(0x5054_00ff_fe12_3456), "5054:00ff:fe12:3456");
    }
}
