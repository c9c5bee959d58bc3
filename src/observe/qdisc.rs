//! Qdiscs: `RTM_NEWQDISC` messages → (ifindex, [`Qdisc`]).

use netlink_packet_route::tc::TcMessage;

use crate::state::Qdisc;

pub(super) fn parse(msg: &TcMessage) -> (i32, Qdisc) {
    let kind = crate::shaping::tc::kind(msg);
    (
        msg.header.index,
        Qdisc {
            link: String::new(),
            kind,
            handle: u32::from(msg.header.handle),
            parent: u32::from(msg.header.parent),
        },
    )
}
