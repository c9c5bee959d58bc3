//! Running a tc program in the kernel with `BPF_PROG_TEST_RUN`: the frames
//! it is fed, the `__sk_buff` context around them, and what comes back.
//! The in-kernel tests (`tests.rs`) check the EDT program's verdicts and
//! departure times with it, and [`super::cost`] times it against an empty
//! program. No qdisc and no device take part.

use std::net::IpAddr;
use std::time::Duration;

use aya::programs::{SchedClassifier, TestRun as _, TestRunOptions};

use super::program::bpf_error;
use crate::error::Result;

/// sizeof(struct __sk_buff) since Linux 5.16.
const SKB_CTX: usize = 192;
const CTX_TSTAMP: usize = 152;
const CTX_WIRE_LEN: usize = 160;

pub const TC_ACT_UNSPEC: u32 = u32::MAX;
pub const TC_ACT_SHOT: u32 = 2;

/// An Ethernet frame of `len` bytes from `src` (IPv4 or IPv6, TCP to a
/// documentation address), or an ARP frame for `None`.
pub fn frame(src: Option<IpAddr>, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    match src {
        Some(IpAddr::V4(a)) => {
            f[12..14].copy_from_slice(&[0x08, 0x00]);
            f[14] = 0x45;
            f[16..18].copy_from_slice(&((len - 14) as u16).to_be_bytes());
            f[22] = 64;
            f[23] = 6;
            f[26..30].copy_from_slice(&a.octets());
            f[30..34].copy_from_slice(&[192, 0, 2, 1]);
        }
        Some(IpAddr::V6(a)) => {
            f[12..14].copy_from_slice(&[0x86, 0xdd]);
            f[14] = 0x60;
            f[18..20].copy_from_slice(&((len - 54) as u16).to_be_bytes());
            f[20] = 6;
            f[21] = 64;
            f[22..38].copy_from_slice(&a.octets());
            f[38..54]
                .copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        }
        None => f[12..14].copy_from_slice(&[0x08, 0x06]),
    }
    f
}

/// What a test run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The program's return value of the last run.
    pub action: u32,
    /// `skb->tstamp` after the last run.
    pub tstamp: u64,
    /// The kernel's average time per run.
    pub per_run: Duration,
    /// The packet as the program left it.
    pub data: Vec<u8>,
}

/// Runs `prog` `repeat` times on `data`, with `skb->tstamp` and
/// `skb->wire_len` set as given (0: none).
pub fn run(
    prog: &SchedClassifier,
    data: &[u8],
    tstamp: u64,
    wire_len: u32,
    repeat: u32,
) -> Result<Outcome> {
    let mut ctx_in = [0u8; SKB_CTX];
    ctx_in[CTX_TSTAMP..CTX_TSTAMP + 8].copy_from_slice(&tstamp.to_ne_bytes());
    ctx_in[CTX_WIRE_LEN..CTX_WIRE_LEN + 4].copy_from_slice(&wire_len.to_ne_bytes());
    let mut ctx_out = [0u8; SKB_CTX];
    let mut data_out = vec![0u8; data.len() + 256];
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(data),
            data_out: Some(&mut data_out),
            ctx_in: Some(&ctx_in),
            ctx_out: Some(&mut ctx_out),
            repeat,
            ..TestRunOptions::default()
        })
        .map_err(|e| bpf_error("BPF_PROG_TEST_RUN", e))?;
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&ctx_out[CTX_TSTAMP..CTX_TSTAMP + 8]);
    data_out.truncate(r.data_size_out as usize);
    Ok(Outcome {
        action: r.return_value,
        tstamp: u64::from_ne_bytes(ts),
        per_run: r.duration,
        data: data_out,
    })
}
