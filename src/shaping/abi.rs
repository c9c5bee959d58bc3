//! Rust mirrors of the structs in `bpf/include/edt_abi.h`: the key and value
//! of the pinned endpoint map. Same field order, same explicit padding; the
//! unit test below compares every size and offset with the ones build.rs
//! read from `bpf/abi/layout.c` compiled for the BPF target.

use std::net::IpAddr;

/// `EDT_FAMILY_IPV4`
pub const EDT_FAMILY_IPV4: u8 = 4;
/// `EDT_FAMILY_IPV6`
pub const EDT_FAMILY_IPV6: u8 = 6;
/// `EDT_DIR_EGRESS`
pub const EDT_DIR_EGRESS: u8 = 0;
/// `EDT_DIR_INGRESS`: ingress through podnet's ifb.
pub const EDT_DIR_INGRESS: u8 = 1;
/// `EDT_DIR_POD_INGRESS`: ingress at a veth pod's host-side veth.
pub const EDT_DIR_POD_INGRESS: u8 = 2;
/// `EDT_TAG_FLAG`: in `skb->queue_mapping`, a veth pod's tag (with its
/// slot in the bits below).
pub const EDT_TAG_FLAG: u32 = 0x8000;
/// `EDT_TAG_SLOTS`: slots are 1 .. this - 1.
pub const EDT_TAG_SLOTS: u32 = 32768;
/// `EDT_DEFAULT_HORIZON_NS`: what the datapath uses for `horizon_ns == 0`.
pub const EDT_DEFAULT_HORIZON_NS: u64 = 2_000_000_000;
/// `EDT_MAP_MAX_ENTRIES`
pub const EDT_MAP_MAX_ENTRIES: u32 = 65536;
/// `EDT_Q24_SHIFT`: the fixed point of `ns_per_byte_q24`.
pub const EDT_Q24_SHIFT: u32 = 24;
/// `EDT_Q24_MAX_LEN_BITS`: the datapath multiplies only for packets shorter
/// than 2^this bytes.
pub const EDT_Q24_MAX_LEN_BITS: u32 = 20;
/// `EDT_Q24_MIN_RATE_BYTES`: below this rate the datapath divides.
pub const EDT_Q24_MIN_RATE_BYTES: u64 = 954;
/// `EDT_AHEAD_MAX_LEN`: the longest packet (on the wire) that may go ahead
/// of its endpoint's queue.
pub const EDT_AHEAD_MAX_LEN: u64 = 256;
/// `EDT_AHEAD_BACKLOG_NS`: the most the lane ahead may hold.
pub const EDT_AHEAD_BACKLOG_NS: u64 = 1_000_000;

/// `struct edt_key`: one endpoint address in one direction.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EdtKey {
    /// IPv4 in the first 4 bytes (network order), the rest zero; IPv6: all 16.
    pub addr: [u8; 16],
    pub family: u8,
    pub direction: u8,
    /// Always zero: part of the hashed key.
    pub pad: [u8; 2],
}

/// `struct edt_tag`: a veth pod's slot and the device (ifindex) its shaped
/// egress leaves through.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EdtTag {
    pub slot: u32,
    pub ifindex: u32,
}

/// `struct edt_slot`: what a slot names: the veth pod's egress key and
/// (HTB) its class's id on the tag's device, 0 with EDT.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EdtSlot {
    pub key: EdtKey,
    pub classid: u32,
}

/// `struct edt_info`: the configuration podnet writes, the state the
/// datapath keeps.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EdtInfo {
    pub rate_bytes: u64,
    pub horizon_ns: u64,
    pub burst_ns: u64,
    pub t_last: u64,
    pub bytes: u64,
    pub packets: u64,
    pub drops: u64,
    pub drop_bytes: u64,
    /// See [`ns_per_byte_q24`]; 0 = the datapath divides by `rate_bytes`.
    pub ns_per_byte_q24: u64,
    /// CE-mark an ECN-capable packet waiting longer than this; 0 = never.
    pub ce_threshold_ns: u64,
    /// Packets CE-marked.
    pub marks: u64,
    /// The clock of the lane ahead of the queue (the datapath's).
    pub t_ahead: u64,
}

/// `NSEC_PER_SEC * 2^EDT_Q24_SHIFT / rate_bytes`, rounded up so that the
/// datapath's `len * it >> EDT_Q24_SHIFT` never spaces packets closer than
/// the rate; 0 (divide) for no rate or one too low for `len * it` to fit in
/// 64 bits.
pub fn ns_per_byte_q24(rate_bytes: u64) -> u64 {
    if rate_bytes < EDT_Q24_MIN_RATE_BYTES {
        return 0;
    }
    let q = (1_000_000_000u128 << EDT_Q24_SHIFT).div_ceil(u128::from(rate_bytes));
    u64::try_from(q)
        .ok()
        .filter(|q| q >> (64 - EDT_Q24_MAX_LEN_BITS) == 0)
        .unwrap_or(0)
}

// SAFETY: both are #[repr(C)] with only integer fields and no implicit
// padding (the layout test proves the sizes add up), so any byte pattern is
// a valid value and every byte is initialised.
unsafe impl aya::Pod for EdtKey {}
unsafe impl aya::Pod for EdtInfo {}
unsafe impl aya::Pod for EdtTag {}
unsafe impl aya::Pod for EdtSlot {}

impl EdtKey {
    /// The key of `ip` in `direction`.
    pub fn new(ip: IpAddr, direction: u8) -> EdtKey {
        let mut key = EdtKey {
            direction,
            ..EdtKey::default()
        };
        match ip {
            IpAddr::V4(a) => {
                key.addr[..4].copy_from_slice(&a.octets());
                key.family = EDT_FAMILY_IPV4;
            }
            IpAddr::V6(a) => {
                key.addr = a.octets();
                key.family = EDT_FAMILY_IPV6;
            }
        }
        key
    }

    /// The address, if the family is one podnet writes.
    pub fn ip(&self) -> Option<IpAddr> {
        match self.family {
            EDT_FAMILY_IPV4 => {
                let mut a = [0u8; 4];
                a.copy_from_slice(&self.addr[..4]);
                Some(IpAddr::from(a))
            }
            EDT_FAMILY_IPV6 => Some(IpAddr::from(self.addr)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::mem::{offset_of, size_of};

    use super::*;

    include!(concat!(env!("OUT_DIR"), "/bpf_layout.rs"));

    fn rust_layout() -> BTreeMap<&'static str, u64> {
        let mut m = BTreeMap::new();
        macro_rules! field {
            ($c:literal, $t:ty, $f:ident) => {
                m.insert(concat!($c, ".", stringify!($f)), offset_of!($t, $f) as u64);
            };
        }
        m.insert("edt_key.size", size_of::<EdtKey>() as u64);
        field!("edt_key", EdtKey, addr);
        field!("edt_key", EdtKey, family);
        field!("edt_key", EdtKey, direction);
        field!("edt_key", EdtKey, pad);
        m.insert("edt_tag.size", size_of::<EdtTag>() as u64);
        field!("edt_tag", EdtTag, slot);
        field!("edt_tag", EdtTag, ifindex);
        m.insert("edt_slot.size", size_of::<EdtSlot>() as u64);
        field!("edt_slot", EdtSlot, key);
        field!("edt_slot", EdtSlot, classid);
        m.insert("edt_info.size", size_of::<EdtInfo>() as u64);
        field!("edt_info", EdtInfo, rate_bytes);
        field!("edt_info", EdtInfo, horizon_ns);
        field!("edt_info", EdtInfo, burst_ns);
        field!("edt_info", EdtInfo, t_last);
        field!("edt_info", EdtInfo, bytes);
        field!("edt_info", EdtInfo, packets);
        field!("edt_info", EdtInfo, drops);
        field!("edt_info", EdtInfo, drop_bytes);
        field!("edt_info", EdtInfo, ns_per_byte_q24);
        field!("edt_info", EdtInfo, ce_threshold_ns);
        field!("edt_info", EdtInfo, marks);
        field!("edt_info", EdtInfo, t_ahead);
        m.insert("const.EDT_FAMILY_IPV4", EDT_FAMILY_IPV4.into());
        m.insert("const.EDT_FAMILY_IPV6", EDT_FAMILY_IPV6.into());
        m.insert("const.EDT_DIR_EGRESS", EDT_DIR_EGRESS.into());
        m.insert("const.EDT_DIR_INGRESS", EDT_DIR_INGRESS.into());
        m.insert("const.EDT_DIR_POD_INGRESS", EDT_DIR_POD_INGRESS.into());
        m.insert("const.EDT_TAG_FLAG", EDT_TAG_FLAG.into());
        m.insert("const.EDT_TAG_SLOTS", EDT_TAG_SLOTS.into());
        m.insert("const.EDT_DEFAULT_HORIZON_NS", EDT_DEFAULT_HORIZON_NS);
        m.insert("const.EDT_MAP_MAX_ENTRIES", EDT_MAP_MAX_ENTRIES.into());
        m.insert("const.EDT_Q24_SHIFT", EDT_Q24_SHIFT.into());
        m.insert("const.EDT_Q24_MAX_LEN_BITS", EDT_Q24_MAX_LEN_BITS.into());
        m.insert("const.EDT_Q24_MIN_RATE_BYTES", EDT_Q24_MIN_RATE_BYTES);
        m.insert("const.EDT_AHEAD_MAX_LEN", EDT_AHEAD_MAX_LEN);
        m.insert("const.EDT_AHEAD_BACKLOG_NS", EDT_AHEAD_BACKLOG_NS);
        m
    }

    #[test]
    fn the_multiplier_spaces_packets_as_the_division_did() {
        // Every rate the multiplier serves, with the longest packet it
        // serves: no overflow, never closer than the rate, at most 1 ns a
        // packet and 0.001% wider.
        let max_len = (1u64 << EDT_Q24_MAX_LEN_BITS) - 1;
        for rate_bytes in [
            954,
            1_000,
            125_000,
            1_250_000,
            12_500_000,
            125_000_000,
            1_250_000_000,
            12_500_000_000,
            125_000_000_000,
        ] {
            let q = ns_per_byte_q24(rate_bytes);
            assert_ne!(q, 0, "{rate_bytes}");
            for len in [60u64, 1514, 9014, 65_536, max_len] {
                let exact = u128::from(len) * 1_000_000_000 / u128::from(rate_bytes);
                let product = u128::from(len) * u128::from(q);
                assert!(product < 1 << 64, "{rate_bytes} B/s, {len} B: overflow");
                let delay = (product >> EDT_Q24_SHIFT) as u64 as u128;
                assert!(
                    delay >= exact,
                    "{rate_bytes} B/s, {len} B: {delay} < {exact}"
                );
                assert!(
                    delay <= exact + 1 + exact / 100_000,
                    "{rate_bytes} B/s, {len} B: {delay} vs {exact}"
                );
            }
        }
        assert_eq!(ns_per_byte_q24(0), 0);
        assert_eq!(ns_per_byte_q24(953), 0);
        // 1 Mbit/s: exactly 8,000 ns a byte.
        assert_eq!(ns_per_byte_q24(125_000), 8_000 << EDT_Q24_SHIFT);
    }

    #[test]
    fn rust_mirrors_match_the_c_layout() {
        let c: BTreeMap<&str, u64> = BPF_LAYOUT.iter().copied().collect();
        let rust = rust_layout();
        // Every C field and constant has a Rust twin and vice versa, so a
        // field added on one side only fails here.
        assert_eq!(
            c.keys().collect::<Vec<_>>(),
            rust.keys().collect::<Vec<_>>(),
            "fields differ between bpf/include/edt_abi.h and src/shaping/abi.rs"
        );
        for (name, value) in &c {
            assert_eq!(
                rust[name], *value,
                "{name}: Rust {} vs C {value}",
                rust[name]
            );
        }
    }

    #[test]
    fn no_implicit_padding() {
        assert_eq!(size_of::<EdtKey>(), 16 + 1 + 1 + 2);
        assert_eq!(size_of::<EdtInfo>(), 9 * 8 + 3 * 8);
    }

    #[test]
    fn keys_round_trip_both_families() {
        for ip in ["10.1.2.3", "fd00::1:2", "::ffff:10.1.2.3"] {
            let ip: IpAddr = ip.parse().unwrap();
            let key = EdtKey::new(ip, EDT_DIR_EGRESS);
            assert_eq!(key.ip(), Some(ip));
            assert_eq!(key.pad, [0, 0]);
        }
        let v4 = EdtKey::new("10.1.2.3".parse().unwrap(), EDT_DIR_EGRESS);
        assert_eq!(v4.addr, [10, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(v4.family, EDT_FAMILY_IPV4);
        // A v4-mapped IPv6 address is its own key, not the IPv4 one.
        let mapped = EdtKey::new("::ffff:10.1.2.3".parse().unwrap(), EDT_DIR_EGRESS);
        assert_ne!(mapped, v4);
    }
}
