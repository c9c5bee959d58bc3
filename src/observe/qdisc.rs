//! Qdiscs: `RTM_NEWQDISC` messages → (ifindex, [`Qdisc`]).

use netlink_packet_route::tc::TcMessage;

use crate::state::Qdisc;

/// `major:minor` as tc prints handles, `root` / `ingress` for the special parents.
fn tc_handle(h: u32) -> String {
    match h {
        0xffff_ffff => "root".into(),
        0xffff_fff1 => "ingress".into(),
        _ => format!("{:x}:{:x}", h >> 16, h & 0xffff),
    }
}

pub(super) fn parse(msg: &TcMessage) -> (i32, Qdisc) {
    let kind = crate::shaping::tc::kind(msg);
    (
        msg.header.index,
        Qdisc {
            link: String::new(),
            kind,
            handle: tc_handle(u32::from(msg.header.handle)),
            parent: tc_handle(u32::from(msg.header.parent)),
        },
    )
}
