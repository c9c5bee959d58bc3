//! The datapath itself, run by the kernel: `BPF_PROG_TEST_RUN` feeds
//! `edt_egress` crafted frames and returns the verdict and the `__sk_buff`
//! it left behind, so the departure times, the horizon, the burst and the
//! counters are checked exactly, with no qdisc and no device (the dev
//! kernel has no fq; the VM lab checks the rates on the wire).
//!
//! Needs root (bpf() and a bpffs mount of its own): a loud skip otherwise,
//! and a failure under scripts/test.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::program;
use super::testrun::{self, frame, TC_ACT_SHOT, TC_ACT_UNSPEC};
use super::{EgressLimit, Endpoints};

#[path = "../../tests/common/prereq.rs"]
mod prereq;
use prereq::{require, ROOT};

/// A private bpffs, unmounted and removed on drop.
pub(crate) struct BpfFs(PathBuf);

impl BpfFs {
    fn new(test: &str) -> BpfFs {
        let dir = std::env::temp_dir().join(format!("podnet-bpffs-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount -t bpf on {}", dir.display());
        BpfFs(dir)
    }

    pub(crate) fn pin_dir(&self) -> PathBuf {
        self.0.join("podnet")
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

pub(crate) struct Datapath {
    pub(crate) _fs: BpfFs,
    ebpf: aya::Ebpf,
    pub(crate) endpoints: Endpoints,
}

/// The program loaded with its map on a private bpffs, or None (a loud
/// skip, a failure under scripts/test) when not root.
pub(crate) fn datapath(test: &str) -> Option<Datapath> {
    if !require(test, &[ROOT, "mount", "umount"]) {
        return None;
    }
    let fs = BpfFs::new(test);
    let mut ebpf = program::load(&fs.pin_dir()).unwrap_or_else(|e| panic!("{e}"));
    let map = program::take_map(&mut ebpf).unwrap();
    Some(Datapath {
        _fs: fs,
        ebpf,
        endpoints: Endpoints { map },
    })
}

/// The endpoint map alone (the program loaded and dropped), pinned on a
/// private bpffs, for the tests of its users; None as [`datapath`].
pub(crate) fn endpoint_map(test: &str) -> Option<(BpfFs, Endpoints)> {
    let d = datapath(test)?;
    Some((d._fs, d.endpoints))
}

/// What one run of the program did to one packet.
#[derive(Debug)]
pub(crate) struct Verdict {
    pub(crate) action: u32,
    tstamp: u64,
    data: Vec<u8>,
}

impl Datapath {
    pub(crate) fn run(&mut self, data: &[u8], tstamp: u64, wire_len: u32) -> Verdict {
        let prog = program::classifier(&mut self.ebpf, program::Prog::Egress).unwrap();
        let r = testrun::run(prog, data, tstamp, wire_len, 1).unwrap_or_else(|e| panic!("{e}"));
        Verdict {
            action: r.action,
            tstamp: r.tstamp,
            data: r.data,
        }
    }

    pub(crate) fn send(&mut self, src: IpAddr, len: usize) -> Verdict {
        self.run(&frame(Some(src), len), 0, 0)
    }

    fn stats_of(&self, ip: IpAddr) -> super::EndpointStats {
        self.endpoints
            .stats()
            .unwrap()
            .into_iter()
            .find(|s| s.ip == ip)
            .unwrap_or_else(|| panic!("no entry for {ip}"))
    }
}

/// 1 Mbit/s: a 1514-byte frame takes 12.112 ms, far longer than a test
/// run, so consecutive packets queue behind each other deterministically.
const SLOW: u64 = 1_000_000;
const FRAME: usize = 1514;
const FRAME_NS: u64 = 1514 * 1_000_000_000 / (SLOW / 8);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn packets_without_an_entry_pass_untouched() {
    let Some(mut dp) = datapath("fail-open") else {
        return;
    };
    dp.endpoints
        .set(ip("10.0.0.1"), &EgressLimit::new(SLOW))
        .unwrap();
    for data in [
        frame(Some(ip("10.0.0.2")), FRAME),
        frame(Some(ip("fd00::2")), FRAME),
        frame(None, 60),
    ] {
        let v = dp.run(&data, 0, 0);
        assert_eq!(v.action, TC_ACT_UNSPEC, "{v:?}");
        assert_eq!(v.tstamp, 0, "{v:?}");
    }
    assert_eq!(dp.stats_of(ip("10.0.0.1")).packets, 0);
}

#[test]
fn departures_are_spaced_by_length_over_rate() {
    let Some(mut dp) = datapath("spacing") else {
        return;
    };
    for src in [ip("10.0.0.1"), ip("fd00::1")] {
        dp.endpoints.set(src, &EgressLimit::new(SLOW)).unwrap();
        let times: Vec<u64> = (0..4)
            .map(|_| {
                let v = dp.send(src, FRAME);
                assert_eq!(v.action, TC_ACT_UNSPEC, "{v:?}");
                v.tstamp
            })
            .collect();
        assert!(times[0] > 0, "{src}: first packet not stamped");
        for w in times.windows(2) {
            assert_eq!(w[1] - w[0], FRAME_NS, "{src}: {times:?}");
        }
        let s = dp.stats_of(src);
        assert_eq!((s.packets, s.bytes, s.drops), (4, 4 * FRAME as u64, 0));
        assert_eq!(s.rate_bps, SLOW);
    }
}

#[test]
fn wire_length_counts_not_skb_length() {
    let Some(mut dp) = datapath("wire-len") else {
        return;
    };
    let src = ip("10.0.0.1");
    dp.endpoints.set(src, &EgressLimit::new(SLOW)).unwrap();
    let data = frame(Some(src), FRAME);
    // A GSO packet: tc accounts every segment's headers (wire_len).
    let a = dp.run(&data, 0, 3000);
    let b = dp.run(&data, 0, 3000);
    assert_eq!(b.tstamp - a.tstamp, 3000 * 1_000_000_000 / (SLOW / 8));
    assert_eq!(dp.stats_of(src).bytes, 6000);
}

#[test]
fn headers_short_of_the_direct_read_are_found_through_the_helper() {
    let Some(mut dp) = datapath("short") else {
        return;
    };
    // 34 bytes: an IPv4 header and nothing after it, too short for the
    // 16-byte direct read at the source address, so the program falls back
    // to bpf_skb_load_bytes(); 62 bytes is read directly. Both are found.
    // (BPF_PROG_TEST_RUN refuses an IPv6 frame cut inside its header.)
    let src = ip("10.0.0.1");
    dp.endpoints.set(src, &EgressLimit::new(SLOW)).unwrap();
    let a = dp.run(&frame(Some(src), 34), 0, 0);
    let b = dp.run(&frame(Some(src), 62), 0, 0);
    assert_eq!(b.tstamp - a.tstamp, 62 * 1_000_000_000 / (SLOW / 8));
    let s = dp.stats_of(src);
    assert_eq!((s.packets, s.bytes), (2, 34 + 62));
}

#[test]
fn a_packet_beyond_the_horizon_is_dropped_and_gives_its_slot_back() {
    let Some(mut dp) = datapath("horizon") else {
        return;
    };
    let src = ip("10.0.0.1");
    let limit = EgressLimit {
        horizon: Duration::from_millis(30),
        ..EgressLimit::new(SLOW)
    };
    dp.endpoints.set(src, &limit).unwrap();
    let a = dp.send(src, FRAME); // leaves at now + 12 ms
    let b = dp.send(src, FRAME); // now + 24 ms
    let c = dp.send(src, FRAME); // now + 36 ms: beyond 30 ms
    assert_eq!(
        (a.action, b.action, c.action),
        (TC_ACT_UNSPEC, TC_ACT_UNSPEC, TC_ACT_SHOT)
    );
    let s = dp.stats_of(src);
    assert_eq!((s.packets, s.drops, s.drop_bytes), (2, 1, FRAME as u64));
    // The dropped packet's slot was returned: a small packet still fits
    // right behind b.
    let d = dp.send(src, 100);
    assert_eq!(d.action, TC_ACT_UNSPEC, "{d:?}");
    assert_eq!(d.tstamp - b.tstamp, 100 * 1_000_000_000 / (SLOW / 8));
}

#[test]
fn a_departure_time_already_on_the_packet_is_honoured() {
    let Some(mut dp) = datapath("tstamp") else {
        return;
    };
    let src = ip("10.0.0.1");
    dp.endpoints.set(src, &EgressLimit::new(SLOW)).unwrap();
    let data = frame(Some(src), FRAME);
    let a = dp.run(&data, 0, 0);
    // TCP paced this one 500 ms out: it leaves a frame time after that.
    let later = a.tstamp + 500_000_000;
    let b = dp.run(&data, later, 0);
    assert_eq!(b.tstamp, later + FRAME_NS);
    // A stamp past the horizon is not trusted (a stray receive time).
    let c = dp.run(&data, later + 10_000_000_000, 0);
    assert_eq!(c.tstamp, b.tstamp + FRAME_NS);
}

#[test]
fn burst_lets_an_idle_endpoint_send_at_once_then_paces() {
    let Some(mut dp) = datapath("burst") else {
        return;
    };
    let src = ip("10.0.0.1");
    let limit = EgressLimit {
        burst_bytes: 10 * FRAME as u64,
        ..EgressLimit::new(SLOW)
    };
    dp.endpoints.set(src, &limit).unwrap();
    let stamps: Vec<u64> = (0..12).map(|_| dp.send(src, FRAME).tstamp).collect();
    // Ten frames' worth of credit: those leave now (no stamp written)...
    assert!(stamps[..10].iter().all(|t| *t == 0), "{stamps:?}");
    // ...then the rate applies.
    assert!(
        stamps[10] > 0 && stamps[11] - stamps[10] == FRAME_NS,
        "{stamps:?}"
    );
}

#[test]
fn rate_zero_counts_without_delaying() {
    let Some(mut dp) = datapath("count-only") else {
        return;
    };
    let src = ip("fd00::7");
    dp.endpoints.set(src, &EgressLimit::new(0)).unwrap();
    for _ in 0..3 {
        let v = dp.send(src, FRAME);
        assert_eq!((v.action, v.tstamp), (TC_ACT_UNSPEC, 0));
    }
    assert_eq!(dp.stats_of(src).bytes, 3 * FRAME as u64);
}

#[test]
fn changing_a_limit_keeps_the_clock_and_the_counters() {
    let Some(mut dp) = datapath("update") else {
        return;
    };
    let src = ip("10.0.0.1");
    dp.endpoints.set(src, &EgressLimit::new(SLOW)).unwrap();
    let a = dp.send(src, FRAME);
    dp.endpoints.set(src, &EgressLimit::new(2 * SLOW)).unwrap();
    let b = dp.send(src, FRAME);
    // Queued behind a (the clock was kept), at the new rate.
    assert_eq!(b.tstamp - a.tstamp, FRAME_NS / 2);
    let s = dp.stats_of(src);
    assert_eq!((s.packets, s.rate_bps), (2, 2 * SLOW));
    assert!(dp.endpoints.remove(src).unwrap());
    assert!(!dp.endpoints.remove(src).unwrap());
    assert!(dp.endpoints.stats().unwrap().is_empty());
}

#[test]
fn the_map_is_pinned_and_shared_by_a_second_loader() {
    let Some(mut dp) = datapath("pinned") else {
        return;
    };
    let src = ip("10.0.0.1");
    dp.endpoints.set(src, &EgressLimit::new(SLOW)).unwrap();
    dp.send(src, FRAME);
    let pin_dir: &Path = &dp._fs.pin_dir();
    // A reader (e.g. `bandwidth list`) opens the pin without loading.
    let reader = Endpoints::open(pin_dir).unwrap();
    assert_eq!(reader.stats().unwrap()[0].packets, 1);
    // A new loader (a restarted or upgraded podnetd) reuses the map, state
    // and all.
    let mut again = program::load(pin_dir).unwrap();
    let map = program::take_map(&mut again).unwrap();
    let shared = Endpoints { map };
    assert_eq!(shared.stats().unwrap()[0].bytes, FRAME as u64);
}

#[test]
fn limits_outside_the_fq_horizon_are_refused() {
    let Some(mut dp) = datapath("validate") else {
        return;
    };
    let bad = EgressLimit {
        horizon: Duration::from_secs(61),
        ..EgressLimit::new(SLOW)
    };
    let e = dp.endpoints.set(ip("10.0.0.1"), &bad).unwrap_err();
    assert_eq!(e.kind, crate::error::ErrorKind::InvalidConfig);
}

/// A program held by id (as an apply holds one it swaps out or detaches)
/// can be pinned and opened again as an attachable program: the same one,
/// same id, which is how an undo puts it back.
#[test]
fn a_held_program_opens_again_as_the_same_program() {
    let Some(mut d) = datapath("a_held_program_opens_again_as_the_same_program") else {
        return;
    };
    let prog = program::classifier(&mut d.ebpf, program::Prog::Egress).unwrap();
    let id = prog.info().unwrap().id();
    let held = program::hold(id).unwrap_or_else(|e| panic!("{e}"));
    let pin = d._fs.0.join("held");
    program::pin_program(&held, &pin).unwrap_or_else(|e| panic!("{e}"));
    let again = program::classifier_from_pin(&pin).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.info().unwrap().id(), id);
    std::fs::remove_file(&pin).unwrap();
}

/// The ECN field of a frame from `testrun::frame` (IPv4 TOS or IPv6
/// traffic class, low two bits).
fn ecn_of(f: &[u8]) -> u8 {
    match f[12..14] {
        [0x08, 0x00] => f[15] & 3,
        _ => (f[15] >> 4) & 3,
    }
}

/// `frame(src, len)` with its ECN field set to `ecn` (and, for IPv4, a
/// valid header checksum, so the kernel's incremental update can be
/// checked).
pub(crate) fn ecn_frame(src: IpAddr, len: usize, ecn: u8) -> Vec<u8> {
    let mut f = frame(Some(src), len);
    match src {
        IpAddr::V4(_) => {
            f[15] = (f[15] & !3) | ecn;
            f[24..26].copy_from_slice(&[0, 0]);
            let sum = ipv4_checksum(&f[14..34]);
            f[24..26].copy_from_slice(&sum.to_be_bytes());
        }
        IpAddr::V6(_) => f[15] = (f[15] & 0xcf) | (ecn << 4),
    }
    f
}

fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

pub(crate) const ECT0: u8 = 2;
const ECT1: u8 = 1;
const CE: u8 = 3;

#[test]
fn ecn_capable_packets_queued_past_the_threshold_are_marked_and_counted() {
    let Some(mut dp) = datapath("ce-mark") else {
        return;
    };
    let (v4, v6) = (ip("10.0.0.1"), ip("fd00::1"));
    let limit = EgressLimit {
        ce_threshold: Duration::from_millis(20),
        ..EgressLimit::new(SLOW)
    };
    for src in [v4, v6] {
        dp.endpoints.set(src, &limit).unwrap();
        // Each frame takes 12.1 ms at SLOW: the first waits behind
        // nothing, the second ~12 ms, the third ~24 ms (past 20 ms).
        let ect = if src.is_ipv4() { ECT0 } else { ECT1 };
        let out: Vec<Verdict> = (0..3)
            .map(|_| dp.run(&ecn_frame(src, FRAME, ect), 0, 0))
            .collect();
        let ecn: Vec<u8> = out.iter().map(|v| ecn_of(&v.data)).collect();
        assert_eq!(ecn, [ect, ect, CE], "{src}");
        assert!(out.iter().all(|v| v.action == TC_ACT_UNSPEC));
        if src.is_ipv4() {
            // The kernel fixed the header checksum for the new TOS.
            assert_eq!(
                ipv4_checksum(&out[2].data[14..34]),
                0,
                "checksum after marking"
            );
        }
        let s = dp.stats_of(src);
        assert_eq!((s.marks, s.packets, s.drops), (1, 3, 0), "{src}");
        assert_eq!(s.ce_threshold_ns, 20_000_000);
    }
}

#[test]
fn packets_that_are_not_ecn_capable_are_never_marked_and_meet_the_horizon() {
    let Some(mut dp) = datapath("ce-not-ect") else {
        return;
    };
    let src = ip("10.0.0.1");
    let limit = EgressLimit {
        ce_threshold: Duration::from_millis(5),
        horizon: Duration::from_millis(30),
        ..EgressLimit::new(SLOW)
    };
    dp.endpoints.set(src, &limit).unwrap();
    let out: Vec<Verdict> = (0..3)
        .map(|_| dp.run(&ecn_frame(src, FRAME, 0), 0, 0))
        .collect();
    assert!(out.iter().all(|v| ecn_of(&v.data) == 0), "{out:?}");
    assert_eq!(
        out.iter().map(|v| v.action).collect::<Vec<_>>(),
        [TC_ACT_UNSPEC, TC_ACT_UNSPEC, TC_ACT_SHOT]
    );
    let s = dp.stats_of(src);
    assert_eq!((s.marks, s.drops), (0, 1));
}

#[test]
fn without_a_threshold_nothing_is_marked() {
    let Some(mut dp) = datapath("ce-off") else {
        return;
    };
    let src = ip("10.0.0.1");
    dp.endpoints.set(src, &EgressLimit::new(SLOW)).unwrap();
    let out: Vec<Verdict> = (0..5)
        .map(|_| dp.run(&ecn_frame(src, FRAME, ECT0), 0, 0))
        .collect();
    assert!(out.iter().all(|v| ecn_of(&v.data) == ECT0));
    assert_eq!(dp.stats_of(src).marks, 0);
}

#[test]
fn a_large_packet_alone_is_not_a_queue() {
    // A 64 KiB packet takes 524 ms at SLOW; one sent after it waits that
    // long and is marked, but the big one itself waits behind nothing.
    let Some(mut dp) = datapath("ce-own-time") else {
        return;
    };
    let src = ip("10.0.0.1");
    let limit = EgressLimit {
        ce_threshold: Duration::from_millis(1),
        ..EgressLimit::new(SLOW)
    };
    dp.endpoints.set(src, &limit).unwrap();
    // (A test run's packet is at most a page: the wire length says 60 KB.)
    let big = dp.run(&ecn_frame(src, FRAME, ECT0), 0, 60_000);
    let next = dp.run(&ecn_frame(src, 100, ECT0), 0, 0);
    assert_eq!((ecn_of(&big.data), ecn_of(&next.data)), (ECT0, CE));
}

/// A `len`-byte IPv4 frame from `src` of IP protocol `proto`; for TCP a
/// 32-byte header (timestamps on, as Linux sends), so the payload is
/// `len - 66` bytes (66: a pure ACK).
fn proto_frame(src: IpAddr, len: usize, proto: u8) -> Vec<u8> {
    let mut f = frame(Some(src), len);
    f[23] = proto;
    if proto == 6 {
        f[34 + 12] = 8 << 4;
    }
    f
}

const ICMP: u8 = 1;

/// `rate` with marking on (at a threshold no test here reaches), which
/// the lane ahead comes with.
fn marking(rate: u64) -> EgressLimit {
    EgressLimit {
        ce_threshold: Duration::from_secs(1),
        ..EgressLimit::new(rate)
    }
}
const TCP: u8 = 6;

#[test]
fn small_packets_that_are_not_tcp_data_go_ahead_of_the_queue_and_are_charged_to_it() {
    let Some(mut dp) = datapath("ahead") else {
        return;
    };
    let src = ip("10.0.0.1");
    // 10 Mbit/s: a frame takes 1.2 ms, a ping 90 us, so the lane ahead
    // (1 ms of backlog) holds both the ping and the ACK.
    let rate = 10 * SLOW;
    let ns = |bytes: u64| bytes * 1_000_000_000 / (rate / 8);
    dp.endpoints.set(src, &marking(rate)).unwrap();
    // Thirty frames: the queue ends ~36 ms from now.
    let queued: Vec<Verdict> = (0..30).map(|_| dp.send(src, FRAME)).collect();
    let end = queued[29].tstamp;
    // A ping (98 bytes) and a pure TCP ACK leave at once, far before that.
    for (what, f) in [
        ("ping", proto_frame(src, 112, ICMP)),
        ("ack", proto_frame(src, 66, TCP)),
    ] {
        let v = dp.run(&f, 0, 0);
        assert_eq!(v.action, TC_ACT_UNSPEC, "{what}");
        assert!(
            v.tstamp + 30_000_000 < end,
            "{what} waited behind the queue: {v:?}, queue ends {end}"
        );
    }
    // Their time was charged: the next frame leaves after the queue, the
    // ping and the ACK have had their time at the rate.
    let next = dp.send(src, FRAME);
    assert_eq!(next.tstamp - end, ns(112) + ns(66) + ns(FRAME as u64));
    assert_eq!(dp.stats_of(src).packets, 33);
}

#[test]
fn small_tcp_data_keeps_its_place_in_the_queue() {
    let Some(mut dp) = datapath("ahead-tcp-data") else {
        return;
    };
    let src = ip("10.0.0.1");
    dp.endpoints.set(src, &marking(SLOW)).unwrap();
    let a = dp.send(src, FRAME);
    // 100 bytes: 34 bytes of TCP payload must not overtake `a`.
    let v = dp.run(&proto_frame(src, 100, TCP), 0, 0);
    assert_eq!(v.tstamp - a.tstamp, 100 * 1_000_000_000 / (SLOW / 8));
    // And a big non-TCP packet queues too.
    let u = dp.run(&proto_frame(src, 600, 17), 0, 0);
    assert_eq!(u.tstamp - v.tstamp, 600 * 1_000_000_000 / (SLOW / 8));
}

#[test]
fn a_flood_of_small_packets_fills_the_lane_ahead_and_then_queues() {
    let Some(mut dp) = datapath("ahead-flood") else {
        return;
    };
    let src = ip("10.0.0.1");
    dp.endpoints.set(src, &marking(SLOW)).unwrap();
    let a = dp.send(src, FRAME);
    // At SLOW a 112-byte ping takes 0.896 ms: the first fits the lane's
    // 1 ms backlog, the second would not and queues behind `a` and the first.
    let p1 = dp.run(&proto_frame(src, 112, ICMP), 0, 0);
    let p2 = dp.run(&proto_frame(src, 112, ICMP), 0, 0);
    let ping_ns = 112 * 1_000_000_000 / (SLOW / 8);
    assert!(p1.tstamp < a.tstamp, "{p1:?} {a:?}");
    assert_eq!(p2.tstamp - a.tstamp, 2 * ping_ns, "{p2:?} {a:?}");
}

#[test]
fn without_marking_there_is_no_lane_ahead_one_fifo_as_cilium_keeps() {
    let Some(mut dp) = datapath("ahead-off") else {
        return;
    };
    let src = ip("10.0.0.1");
    dp.endpoints.set(src, &EgressLimit::new(SLOW)).unwrap();
    let a = dp.send(src, FRAME);
    let p = dp.run(&proto_frame(src, 112, ICMP), 0, 0);
    assert_eq!(p.tstamp - a.tstamp, 112 * 1_000_000_000 / (SLOW / 8));
}

/// TC_ACT_REDIRECT: what a program returns after bpf_redirect().
const TC_ACT_REDIRECT: u32 = 7;

impl Datapath {
    /// Runs `prog` (not edt_egress) on one frame.
    fn run_prog(&mut self, prog: program::Prog, data: &[u8]) -> u32 {
        let prog = program::classifier(&mut self.ebpf, prog).unwrap();
        testrun::run(prog, data, 0, 0, 1)
            .unwrap_or_else(|e| panic!("{e}"))
            .action
    }

    /// Names an ifb (any nonzero ifindex: a test run redirects nowhere)
    /// to the redirect programs.
    fn name_ifb(&mut self) {
        let mut ingress = program::take_ingress_map(&mut self.ebpf).unwrap();
        ingress.set(0, 1, 0).unwrap();
    }
}

#[test]
fn with_edt_at_the_ifb_an_idle_lanes_small_packets_skip_it_and_are_charged() {
    let Some(mut dp) = datapath("redirect-ahead") else {
        return;
    };
    use crate::state::Direction;
    use program::Prog;
    // frame() sends to 192.0.2.1: the pod, ingress-limited at 10 kbit/s,
    // where a 112-byte ping takes 89.6 ms at the rate: the runs below are
    // far closer together than that, so the lane ahead is busy after one.
    let pod = ip("192.0.2.1");
    let rate = 10_000;
    dp.endpoints
        .set_in(pod, &marking(rate), Direction::Ingress)
        .unwrap();
    dp.name_ifb();
    let ping = proto_frame(ip("10.0.0.1"), 112, ICMP);
    let data = proto_frame(ip("10.0.0.1"), FRAME, TCP);
    let ingress = |dp: &Datapath| {
        dp.endpoints
            .get_in(pod, Direction::Ingress)
            .unwrap()
            .unwrap()
    };
    // The lane idle: the ping goes straight on, charged to the entry.
    assert_eq!(dp.run_prog(Prog::RedirectAhead, &ping), TC_ACT_UNSPEC);
    let after = ingress(&dp);
    assert_eq!((after.packets, after.bytes), (1, 112));
    // The lane busy now: the next ping queues at the ifb, as TCP data
    // always does; neither is charged here (edt_ingress charges them).
    assert_eq!(dp.run_prog(Prog::RedirectAhead, &ping), TC_ACT_REDIRECT);
    assert_eq!(dp.run_prog(Prog::RedirectAhead, &data), TC_ACT_REDIRECT);
    assert_eq!(ingress(&dp).packets, 1);
    // The plain redirect (HTB at the ifb) hands everything over.
    let other = ip("192.0.2.9");
    dp.endpoints
        .set_in(other, &marking(rate), Direction::Ingress)
        .unwrap();
    let mut to_other = ping.clone();
    to_other[30..34].copy_from_slice(&[192, 0, 2, 9]);
    assert_eq!(dp.run_prog(Prog::Redirect, &to_other), TC_ACT_REDIRECT);
    // Without marking there is no lane ahead: one FIFO, at the ifb.
    dp.endpoints
        .set_in(other, &EgressLimit::new(rate), Direction::Ingress)
        .unwrap();
    assert_eq!(dp.run_prog(Prog::RedirectAhead, &to_other), TC_ACT_REDIRECT);
    // Nothing for an address without an ingress entry.
    let mut elsewhere = ping.clone();
    elsewhere[30..34].copy_from_slice(&[192, 0, 2, 77]);
    assert_eq!(dp.run_prog(Prog::RedirectAhead, &elsewhere), TC_ACT_UNSPEC);
}
