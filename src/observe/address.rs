//! Addresses: `RTM_NEWADDR` messages → (ifindex, prefix).

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};

pub(super) fn parse(msg: &AddressMessage) -> Option<(u32, IpNet)> {
    // IFA_LOCAL is the interface's own IPv4 address (IFA_ADDRESS is the peer
    // on point-to-point links); IPv6 carries only IFA_ADDRESS.
    let mut local: Option<IpAddr> = None;
    let mut address: Option<IpAddr> = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(a) => local = Some(*a),
            AddressAttribute::Address(a) => address = Some(*a),
            _ => {}
        }
    }
    let ip = local.or(address)?;
    let prefix = IpNet::new(ip, msg.header.prefix_len).ok()?;
    Some((msg.header.index, prefix))
}
