//! Routes: `RTM_NEWROUTE` messages → (oif, [`Route`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::AddressFamily;

use crate::state::Route;

fn addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

pub(super) fn parse(msg: &RouteMessage) -> Option<(Option<u32>, Route)> {
    let mut dst = None;
    let mut oif = None;
    let mut gateway = None;
    // RTA_TABLE wins: the header holds only 8 bits (252 for larger ids).
    let mut table = u32::from(msg.header.table);
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(a) => dst = addr(a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Gateway(a) => gateway = addr(a),
            RouteAttribute::Table(t) => table = *t,
            _ => {}
        }
    }
    // The default route carries no RTA_DST.
    let dst = dst.unwrap_or(match msg.header.address_family {
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    });
    let dst = IpNet::new(dst, msg.header.destination_prefix_length).ok()?;
    Some((
        oif,
        Route {
            dst,
            link: None,
            gateway,
            protocol: u8::from(msg.header.protocol),
            table,
        },
    ))
}
