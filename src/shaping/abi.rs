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
/// `EDT_DIR_INGRESS`: reserved for the ingress shaper.
pub const EDT_DIR_INGRESS: u8 = 1;
/// `EDT_DEFAULT_HORIZON_NS`: what the datapath uses for `horizon_ns == 0`.
pub const EDT_DEFAULT_HORIZON_NS: u64 = 2_000_000_000;
/// `EDT_MAP_MAX_ENTRIES`
pub const EDT_MAP_MAX_ENTRIES: u32 = 65536;

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
    pub reserved: [u64; 4],
}

// SAFETY: both are #[repr(C)] with only integer fields and no implicit
// padding (the layout test proves the sizes add up), so any byte pattern is
// a valid value and every byte is initialised.
unsafe impl aya::Pod for EdtKey {}
unsafe impl aya::Pod for EdtInfo {}

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
        m.insert("edt_info.size", size_of::<EdtInfo>() as u64);
        field!("edt_info", EdtInfo, rate_bytes);
        field!("edt_info", EdtInfo, horizon_ns);
        field!("edt_info", EdtInfo, burst_ns);
        field!("edt_info", EdtInfo, t_last);
        field!("edt_info", EdtInfo, bytes);
        field!("edt_info", EdtInfo, packets);
        field!("edt_info", EdtInfo, drops);
        field!("edt_info", EdtInfo, drop_bytes);
        field!("edt_info", EdtInfo, reserved);
        m.insert("const.EDT_FAMILY_IPV4", EDT_FAMILY_IPV4.into());
        m.insert("const.EDT_FAMILY_IPV6", EDT_FAMILY_IPV6.into());
        m.insert("const.EDT_DIR_EGRESS", EDT_DIR_EGRESS.into());
        m.insert("const.EDT_DIR_INGRESS", EDT_DIR_INGRESS.into());
        m.insert("const.EDT_DEFAULT_HORIZON_NS", EDT_DEFAULT_HORIZON_NS);
        m.insert("const.EDT_MAP_MAX_ENTRIES", EDT_MAP_MAX_ENTRIES.into());
        m
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
        assert_eq!(size_of::<EdtInfo>(), 8 * 8 + 4 * 8);
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
