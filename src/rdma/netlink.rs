//! The kernel's RDMA netlink, client `RDMA_NL_NLDEV` of `NETLINK_RDMA`:
//! the protocol iproute2's `rdma` tool speaks (no crate implements it).
//!
//! A message is a netlink header whose type is `(client << 10) + command`
//! (`RDMA_NL_GET_TYPE` in `<rdma/rdma_netlink.h>`) followed directly by
//! attributes: no generic-netlink header. The attribute numbers below are
//! that header's ABI (the kernel never renumbers them). 64-bit values come
//! with a padding attribute (type 0) before them for alignment, which the
//! parser drops.
//!
//! [`RdmaMessage`] plugs into netlink-packet-core's framing, so the header,
//! the error and done messages and the attribute layout are that crate's;
//! this module only knows the RDMA commands and attributes.

use netlink_packet_core::{
    emit_u32, emit_u64, parse_string, parse_u32, parse_u64, parse_u8, DecodeError, DefaultNla,
    Emitable, NetlinkDeserializable, NetlinkHeader, NetlinkPayload, NetlinkSerializable, Nla,
    NlaBuffer, NlasIterator, Parseable,
};

/// `RDMA_NL_NLDEV`: the RDMA device interface client.
pub const CLIENT_NLDEV: u16 = 5;

/// The `RDMA_NLDEV_CMD_*` commands podnet sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Command {
    /// A device (doit with its index) or every device (dump).
    Get = 1,
    /// A device's name, or its network namespace (with `NetnsFd`).
    Set = 2,
    /// A software link (`rxe`, `siw`) on a netdev.
    NewLink = 3,
    /// A software link removed, by device index.
    DelLink = 4,
    /// A device's ports (dump, with the device's index).
    PortGet = 5,
    /// The subsystem's settings (netns mode, copy-on-fork).
    SysGet = 6,
    SysSet = 7,
    /// The char device of a device's ABI (`uverbs`, `umad`, `issm`) or of
    /// a device-less one (`rdma_cm`).
    GetChardev = 15,
}

impl Command {
    fn from_op(op: u16) -> Option<Command> {
        Some(match op {
            1 => Command::Get,
            2 => Command::Set,
            3 => Command::NewLink,
            4 => Command::DelLink,
            5 => Command::PortGet,
            6 => Command::SysGet,
            7 => Command::SysSet,
            15 => Command::GetChardev,
            _ => return None,
        })
    }

    /// The netlink message type of this command.
    pub fn message_type(self) -> u16 {
        (CLIENT_NLDEV << 10) + self as u16
    }
}

/// `RDMA_NLDEV_ATTR_*` numbers.
mod kind {
    pub const PAD: u16 = 0;
    pub const DEV_INDEX: u16 = 1;
    pub const DEV_NAME: u16 = 2;
    pub const PORT_INDEX: u16 = 3;
    pub const FW_VERSION: u16 = 5;
    pub const NODE_GUID: u16 = 6;
    pub const PORT_STATE: u16 = 12;
    pub const PORT_PHYS_STATE: u16 = 13;
    pub const DEV_NODE_TYPE: u16 = 14;
    pub const NDEV_INDEX: u16 = 50;
    pub const NDEV_NAME: u16 = 51;
    pub const LINK_TYPE: u16 = 65;
    pub const NETNS_MODE: u16 = 66;
    pub const DEV_PROTOCOL: u16 = 67;
    pub const NET_NS_FD: u16 = 68;
    pub const CHARDEV_TYPE: u16 = 69;
    pub const CHARDEV_NAME: u16 = 70;
    pub const CHARDEV_ABI: u16 = 71;
    pub const CHARDEV: u16 = 72;
    pub const UVERBS_DRIVER_ID: u16 = 73;
}

/// The attributes podnet reads or writes; any other is kept as it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attr {
    DevIndex(u32),
    DevName(String),
    /// In a device's message: how many ports it has; else a port (from 1).
    PortIndex(u32),
    FwVersion(String),
    NodeGuid(u64),
    /// `IB_PORT_*`: 1 down, 2 init, 3 armed, 4 active, 5 active-defer.
    PortState(u8),
    /// 1 sleep, 2 polling, 3 disabled, 4 training, 5 link up, 6 error
    /// recovery, 7 phy test.
    PortPhysState(u8),
    /// `RDMA_NODE_*`: 1 CA, 2 switch, 3 router, 4 RNIC, 5 usNIC, 6 usNIC
    /// UDP, 7 unspecified.
    NodeType(u8),
    NetdevIndex(u32),
    NetdevName(String),
    /// The software driver of a link (`rxe`, `siw`).
    LinkType(String),
    /// 0: exclusive, 1: shared (the kernel's `ib_devices_shared_netns`).
    NetnsMode(u8),
    /// `ib`, `roce`, `iw`, `opa`, `usnic`.
    Protocol(String),
    /// A file descriptor of the network namespace a device moves into.
    NetnsFd(u32),
    ChardevType(String),
    ChardevName(String),
    ChardevAbi(u64),
    /// The char device's `dev_t`, in the kernel's encoding.
    Chardev(u64),
    /// `RDMA_DRIVER_*` of a `uverbs` char device's driver (a u32 in the
    /// kernel's policy, unlike the char device's other numbers).
    DriverId(u32),
    Other(DefaultNla),
}

impl Nla for Attr {
    fn value_len(&self) -> usize {
        match self {
            Attr::DevIndex(_)
            | Attr::PortIndex(_)
            | Attr::NetdevIndex(_)
            | Attr::NetnsFd(_)
            | Attr::DriverId(_) => 4,
            Attr::NodeGuid(_) | Attr::ChardevAbi(_) | Attr::Chardev(_) => 8,
            Attr::PortState(_)
            | Attr::PortPhysState(_)
            | Attr::NodeType(_)
            | Attr::NetnsMode(_) => 1,
            // NLA_NUL_STRING: the kernel wants the terminating NUL.
            Attr::DevName(s)
            | Attr::FwVersion(s)
            | Attr::NetdevName(s)
            | Attr::LinkType(s)
            | Attr::Protocol(s)
            | Attr::ChardevType(s)
            | Attr::ChardevName(s) => s.len() + 1,
            Attr::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Attr::DevIndex(_) => kind::DEV_INDEX,
            Attr::DevName(_) => kind::DEV_NAME,
            Attr::PortIndex(_) => kind::PORT_INDEX,
            Attr::FwVersion(_) => kind::FW_VERSION,
            Attr::NodeGuid(_) => kind::NODE_GUID,
            Attr::PortState(_) => kind::PORT_STATE,
            Attr::PortPhysState(_) => kind::PORT_PHYS_STATE,
            Attr::NodeType(_) => kind::DEV_NODE_TYPE,
            Attr::NetdevIndex(_) => kind::NDEV_INDEX,
            Attr::NetdevName(_) => kind::NDEV_NAME,
            Attr::LinkType(_) => kind::LINK_TYPE,
            Attr::NetnsMode(_) => kind::NETNS_MODE,
            Attr::Protocol(_) => kind::DEV_PROTOCOL,
            Attr::NetnsFd(_) => kind::NET_NS_FD,
            Attr::ChardevType(_) => kind::CHARDEV_TYPE,
            Attr::ChardevName(_) => kind::CHARDEV_NAME,
            Attr::ChardevAbi(_) => kind::CHARDEV_ABI,
            Attr::Chardev(_) => kind::CHARDEV,
            Attr::DriverId(_) => kind::UVERBS_DRIVER_ID,
            Attr::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        // The buffer is exactly value_len() long (netlink-packet-core's
        // contract), so these writes cannot fail.
        match self {
            Attr::DevIndex(v)
            | Attr::PortIndex(v)
            | Attr::NetdevIndex(v)
            | Attr::NetnsFd(v)
            | Attr::DriverId(v) => {
                let _ = emit_u32(buffer, *v);
            }
            Attr::NodeGuid(v) | Attr::ChardevAbi(v) | Attr::Chardev(v) => {
                let _ = emit_u64(buffer, *v);
            }
            Attr::PortState(v)
            | Attr::PortPhysState(v)
            | Attr::NodeType(v)
            | Attr::NetnsMode(v) => {
                buffer[0] = *v;
            }
            Attr::DevName(s)
            | Attr::FwVersion(s)
            | Attr::NetdevName(s)
            | Attr::LinkType(s)
            | Attr::Protocol(s)
            | Attr::ChardevType(s)
            | Attr::ChardevName(s) => {
                buffer[..s.len()].copy_from_slice(s.as_bytes());
                buffer[s.len()] = 0;
            }
            Attr::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl<'b, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'b T>> for Attr {
    fn parse(buf: &NlaBuffer<&'b T>) -> Result<Self, DecodeError> {
        let v = buf.value();
        Ok(match buf.kind() {
            kind::DEV_INDEX => Attr::DevIndex(parse_u32(v)?),
            kind::DEV_NAME => Attr::DevName(parse_string(v)?),
            kind::PORT_INDEX => Attr::PortIndex(parse_u32(v)?),
            kind::FW_VERSION => Attr::FwVersion(parse_string(v)?),
            kind::NODE_GUID => Attr::NodeGuid(parse_u64(v)?),
            kind::PORT_STATE => Attr::PortState(parse_u8(v)?),
            kind::PORT_PHYS_STATE => Attr::PortPhysState(parse_u8(v)?),
            kind::DEV_NODE_TYPE => Attr::NodeType(parse_u8(v)?),
            kind::NDEV_INDEX => Attr::NetdevIndex(parse_u32(v)?),
            kind::NDEV_NAME => Attr::NetdevName(parse_string(v)?),
            kind::LINK_TYPE => Attr::LinkType(parse_string(v)?),
            kind::NETNS_MODE => Attr::NetnsMode(parse_u8(v)?),
            kind::DEV_PROTOCOL => Attr::Protocol(parse_string(v)?),
            kind::NET_NS_FD => Attr::NetnsFd(parse_u32(v)?),
            kind::CHARDEV_TYPE => Attr::ChardevType(parse_string(v)?),
            kind::CHARDEV_NAME => Attr::ChardevName(parse_string(v)?),
            kind::CHARDEV_ABI => Attr::ChardevAbi(parse_u64(v)?),
            kind::CHARDEV => Attr::Chardev(parse_u64(v)?),
            kind::UVERBS_DRIVER_ID => Attr::DriverId(parse_u32(v)?),
            _ => Attr::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// One RDMA netlink message: a command and its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdmaMessage {
    pub command: Command,
    pub attrs: Vec<Attr>,
}

impl RdmaMessage {
    pub fn new(command: Command, attrs: Vec<Attr>) -> Self {
        RdmaMessage { command, attrs }
    }

    /// The first attribute `pick` accepts.
    pub fn find<T>(&self, pick: impl Fn(&Attr) -> Option<T>) -> Option<T> {
        self.attrs.iter().find_map(pick)
    }
}

impl From<RdmaMessage> for NetlinkPayload<RdmaMessage> {
    fn from(m: RdmaMessage) -> Self {
        NetlinkPayload::InnerMessage(m)
    }
}

impl NetlinkSerializable for RdmaMessage {
    fn message_type(&self) -> u16 {
        self.command.message_type()
    }

    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }

    fn serialize(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer)
    }
}

/// A message of another client, or a command podnet does not know.
#[derive(Debug)]
pub struct UnknownMessage(pub u16);

impl std::fmt::Display for UnknownMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RDMA netlink message of client {} command {}, which podnet does not read",
            self.0 >> 10,
            self.0 & 0x3ff
        )
    }
}

impl std::error::Error for UnknownMessage {}

/// A reply that cannot be read.
#[derive(Debug)]
pub enum ParseError {
    Unknown(UnknownMessage),
    Decode(DecodeError),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Unknown(u) => u.fmt(f),
            ParseError::Decode(d) => write!(f, "malformed RDMA netlink message: {d}"),
        }
    }
}

impl std::error::Error for ParseError {}

impl NetlinkDeserializable for RdmaMessage {
    type Error = ParseError;

    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<Self, Self::Error> {
        let t = header.message_type;
        let command = (t >> 10 == CLIENT_NLDEV)
            .then(|| Command::from_op(t & 0x3ff))
            .flatten()
            .ok_or(ParseError::Unknown(UnknownMessage(t)))?;
        let mut attrs = Vec::new();
        for nla in NlasIterator::new(payload) {
            let nla = nla.map_err(ParseError::Decode)?;
            if nla.kind() == kind::PAD {
                continue;
            }
            attrs.push(Attr::parse(&nla).map_err(ParseError::Decode)?);
        }
        Ok(RdmaMessage { command, attrs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{NetlinkMessage, NLM_F_ACK, NLM_F_REQUEST};

    fn frame(msg: RdmaMessage, flags: u16, seq: u32) -> Vec<u8> {
        let mut m = NetlinkMessage::from(msg);
        m.header.flags = flags;
        m.header.sequence_number = seq;
        m.finalize();
        let mut buf = vec![0; m.buffer_len()];
        m.serialize(&mut buf);
        buf
    }

    /// `rdma link add NAME type rxe netdev NETDEV`, framed with `seq`.
    fn newlink(name: &str, netdev: &str, seq: u32) -> Vec<u8> {
        frame(
            RdmaMessage::new(
                Command::NewLink,
                vec![
                    Attr::DevName(name.into()),
                    Attr::LinkType("rxe".into()),
                    Attr::NetdevName(netdev.into()),
                ],
            ),
            NLM_F_REQUEST | NLM_F_ACK,
            seq,
        )
    }

    /// `rdma link add rxe0 type rxe netdev eth0`, as iproute2 sends it
    /// (its bytes as strace shows them, sequence and port aside).
    #[test]
    fn newlink_has_the_kernels_layout() {
        let buf = newlink("rxe0", "eth0", 7);
        #[rustfmt::skip]
        let want: Vec<u8> = [
            // nlmsghdr: length 48, type (5 << 10) + 3 = 0x1403, flags REQUEST|ACK, seq 7, port 0
            &[48u8, 0, 0, 0, 0x03, 0x14, 0x05, 0x00, 7, 0, 0, 0, 0, 0, 0, 0][..],
            // DEV_NAME "rxe0\0", padded to 8
            &[9, 0, 2, 0, b'r', b'x', b'e', b'0', 0, 0, 0, 0],
            // LINK_TYPE "rxe\0"
            &[8, 0, 65, 0, b'r', b'x', b'e', 0],
            // NDEV_NAME "eth0\0", padded
            &[9, 0, 51, 0, b'e', b't', b'h', b'0', 0, 0, 0, 0],
        ]
        .concat();
        assert_eq!(buf, want);
    }

    /// The payload iproute2 sent for `rdma link add pn-probe type rxe netdev
    /// r1` on the lab's kernel (the VM case 70-rdma captures it with strace
    /// and compares it with this same file), byte for byte ours.
    #[test]
    fn newlink_matches_iproute2s_capture() {
        let want: Vec<u8> = include_str!("../../tests/data/rdma-newlink-pn-probe.hex")
            .split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect();
        let buf = newlink("pn-probe", "r1", 1);
        assert_eq!(&buf[..8], &[48, 0, 0, 0, 0x03, 0x14, 0x05, 0x00]);
        assert_eq!(buf[16..], want[..]);
    }

    #[test]
    fn a_dump_reply_parses_and_drops_padding() {
        #[rustfmt::skip]
        let payload: Vec<u8> = [
            &[8u8, 0, 1, 0, 3, 0, 0, 0][..],                        // DEV_INDEX 3
            &[9, 0, 2, 0, b'r', b'x', b'e', b'0', 0, 0, 0, 0],      // DEV_NAME
            &[4, 0, 0, 0],                                          // PAD
            &[12, 0, 6, 0, 1, 2, 3, 4, 5, 6, 7, 8],                 // NODE_GUID
            &[5, 0, 14, 0, 1, 0, 0, 0],                             // NODE_TYPE CA
            &[9, 0, 67, 0, b'r', b'o', b'c', b'e', 0, 0, 0, 0],     // PROTOCOL
            &[8, 0, 99, 0, 1, 2, 3, 4],                             // unknown
        ]
        .concat();
        let mut header = NetlinkHeader::default();
        header.message_type = Command::Get.message_type();
        let msg = RdmaMessage::deserialize(&header, &payload).unwrap();
        assert_eq!(msg.command, Command::Get);
        assert_eq!(
            msg.attrs,
            vec![
                Attr::DevIndex(3),
                Attr::DevName("rxe0".into()),
                Attr::NodeGuid(u64::from_ne_bytes([1, 2, 3, 4, 5, 6, 7, 8])),
                Attr::NodeType(1),
                Attr::Protocol("roce".into()),
                Attr::Other(DefaultNla::new(99, vec![1, 2, 3, 4])),
            ]
        );
        assert_eq!(
            msg.find(|a| match a {
                Attr::DevName(n) => Some(n.clone()),
                _ => None,
            }),
            Some("rxe0".into())
        );
    }

    /// GET_CHARDEV's reply for uverbs, as the kernel lays it out: the
    /// driver id is a u32, the ABI and dev_t are u64s.
    #[test]
    fn a_uverbs_chardev_reply_parses() {
        #[rustfmt::skip]
        let payload: Vec<u8> = [
            &[12u8, 0, 72, 0, 192, 0, 0, 0, 231, 0, 0, 0][..],     // CHARDEV dev_t
            &[12, 0, 71, 0, 6, 0, 0, 0, 0, 0, 0, 0],                // CHARDEV_ABI 6
            &[12, 0, 70, 0, b'u', b'v', b'e', b'r', b'b', b's', b'0', 0], // CHARDEV_NAME
            &[8, 0, 73, 0, 14, 0, 0, 0],                            // UVERBS_DRIVER_ID rxe
        ]
        .concat();
        let mut header = NetlinkHeader::default();
        header.message_type = Command::GetChardev.message_type();
        let msg = RdmaMessage::deserialize(&header, &payload).unwrap();
        assert_eq!(
            msg.attrs,
            vec![
                Attr::Chardev(u64::from_ne_bytes([192, 0, 0, 0, 231, 0, 0, 0])),
                Attr::ChardevAbi(6),
                Attr::ChardevName("uverbs0".into()),
                Attr::DriverId(14),
            ]
        );
    }

    #[test]
    fn every_attribute_survives_a_round_trip() {
        let attrs = vec![
            Attr::DevIndex(1),
            Attr::DevName("mlx5_0".into()),
            Attr::PortIndex(2),
            Attr::FwVersion("16.35.2000".into()),
            Attr::NodeGuid(0x0102_0304_0506_0708),
            Attr::PortState(4),
            Attr::PortPhysState(5),
            Attr::NodeType(1),
            Attr::NetdevIndex(9),
            Attr::NetdevName("ens2f0".into()),
            Attr::LinkType("rxe".into()),
            Attr::NetnsMode(0),
            Attr::Protocol("roce".into()),
            Attr::NetnsFd(5),
            Attr::ChardevType("uverbs".into()),
            Attr::ChardevName("uverbs0".into()),
            Attr::ChardevAbi(1),
            Attr::Chardev(0xe7_00c0),
            Attr::DriverId(11),
        ];
        let buf = frame(RdmaMessage::new(Command::Set, attrs.clone()), 0, 1);
        let back = NetlinkMessage::<RdmaMessage>::deserialize(&buf).unwrap();
        match back.payload {
            NetlinkPayload::InnerMessage(m) => {
                assert_eq!(m.command, Command::Set);
                assert_eq!(m.attrs, attrs);
            }
            other => panic!("not an RDMA message: {other:?}"),
        }
    }

    #[test]
    fn another_clients_message_is_named_not_misread() {
        let mut header = NetlinkHeader::default();
        // RDMA_NL_LS (4), op 1
        header.message_type = (4 << 10) + 1;
        let err = RdmaMessage::deserialize(&header, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "RDMA netlink message of client 4 command 1, which podnet does not read"
        );
    }
}
