//! What the EDT program costs a packet, timed by the kernel itself:
//! `BPF_PROG_TEST_RUN` with a repeat count runs the program on one frame
//! many times and reports the average time per run. The same is done for an
//! empty tc program and for one that only reads the clock
//! (`bpf/baseline.c`), so the harness's own overhead drops out of the
//! difference and the time source's share shows. bench/shaping prints the
//! table, natively on the host's kernel (the VM lab's TCG would time the
//! emulator).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use aya::programs::SchedClassifier;
use aya::Ebpf;

use super::program::{self, bpf_error};
use super::testrun::{self, frame, TC_ACT_UNSPEC};
use super::{EgressLimit, Endpoints, MAX_HORIZON};
use crate::error::{Error, ErrorKind, Result};

/// The compiled `bpf/baseline.c`.
static BASELINE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/baseline.o"));

/// Bytes a full-size frame takes on the wire at MTU 1500: 1500 + the
/// Ethernet header (14) + FCS (4) + preamble and start delimiter (8) + the
/// inter-frame gap (12).
pub const WIRE_BYTES_MTU_1500: u64 = 1538;

/// The nanoseconds a 10 Gbit/s link spends on one full-size frame (1230.4):
/// the per-packet budget the program's cost is compared with.
pub fn budget_10g_ns() -> f64 {
    (WIRE_BYTES_MTU_1500 * 8) as f64 / 10.0
}

/// How much to measure.
#[derive(Debug, Clone, Copy)]
pub struct CostOptions {
    /// Runs per measurement (the kernel averages over them).
    pub repeat: u32,
    /// Measurements per row, interleaved across the rows; the median counts.
    pub rounds: u32,
    /// Other endpoints in the map, as on a busy node.
    pub entries: u32,
}

impl Default for CostOptions {
    fn default() -> Self {
        CostOptions {
            repeat: 1_000_000,
            rounds: 11,
            entries: 1_000,
        }
    }
}

/// One row of the table: the median time per packet over the rounds.
#[derive(Debug, Clone)]
pub struct CostRow {
    pub what: &'static str,
    pub median_ns: f64,
    pub min_ns: f64,
    pub max_ns: f64,
}

/// A 1514-byte frame (1500-byte IPv4 packet) from `src`.
const FRAME: usize = 1514;

/// The rows, in the order they are measured in each round.
pub const ROWS: [&str; 5] = [
    "empty tc program (the baseline)",
    "a tc program that only reads the clock",
    "EDT, source without an entry (fail open)",
    "EDT, endpoint below its limit",
    "EDT, endpoint at its limit (queued)",
];
/// The first row whose packets EDT stamps.
const STAMPED: usize = 3;

fn classifier_named<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut SchedClassifier> {
    ebpf.program_mut(name)
        .ok_or_else(|| Error::new(ErrorKind::Bug, format!("no program {name} in baseline.o")))?
        .try_into()
        .map_err(|e| bpf_error(format!("{name} is not a tc program"), e))
}

fn endpoint(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a80_0000 | i))
}

/// Measures the rows on the kernel this runs on. `pin_dir` must be on a
/// bpffs the caller owns; the endpoint map is pinned there.
pub fn measure(pin_dir: &Path, opts: CostOptions) -> Result<Vec<CostRow>> {
    let mut edt = program::load(pin_dir)?;
    let mut endpoints = Endpoints {
        map: program::take_map(&mut edt)?,
    };
    for i in 0..opts.entries {
        endpoints.set(endpoint(1_000_000 + i), &EgressLimit::new(100_000_000))?;
    }
    let mut baseline =
        Ebpf::load(BASELINE_OBJECT).map_err(|e| bpf_error("loading bpf/baseline.c", e))?;
    for name in ["empty", "clock"] {
        classifier_named(&mut baseline, name)?
            .load()
            .map_err(|e| bpf_error("loading bpf/baseline.c", e))?;
    }

    // Far below its limit (1 Tbit/s: 12 ns a frame, less than a run takes):
    // stamped, never queued. At its limit (10 Gbit/s: 1.2 us a frame, more
    // than a run takes): every packet is stamped into the future, as for a
    // pod that fills its limit; the horizon is set so far out that a round
    // never reaches it, and each round has an endpoint of its own, so none
    // starts with the queue of the round before.
    let below = endpoint(1);
    endpoints.set(below, &EgressLimit::new(1_000_000_000_000))?;
    let at_limit = |round: u32| endpoint(100 + round);
    for r in 0..opts.rounds {
        endpoints.set(
            at_limit(r),
            &EgressLimit {
                rate_bps: 10_000_000_000,
                horizon: MAX_HORIZON,
                burst_bytes: 0,
                ce_threshold: Duration::ZERO,
            },
        )?;
    }
    let queued = Duration::from_nanos(FRAME as u64 * 8 * u64::from(opts.repeat) / 10);
    if queued >= MAX_HORIZON {
        return Err(Error::new(
            ErrorKind::InvalidConfig,
            format!(
                "{} runs at 10 Gbit/s queue {queued:?}, beyond the horizon: fewer runs",
                opts.repeat
            ),
        ));
    }
    let no_entry = frame(Some(endpoint(2)), FRAME);
    let edt = program::classifier(&mut edt, program::Prog::Egress)?;

    let loaded = |name: &str| -> Result<&SchedClassifier> {
        baseline
            .program(name)
            .ok_or_else(|| Error::new(ErrorKind::Bug, format!("no program {name} in baseline.o")))?
            .try_into()
            .map_err(|e| bpf_error(format!("{name} is not a tc program"), e))
    };
    let (empty, clock) = (loaded("empty")?, loaded("clock")?);
    let mut samples: [Vec<f64>; ROWS.len()] = Default::default();
    for r in 0..opts.rounds {
        let runs: [(&SchedClassifier, Vec<u8>); ROWS.len()] = [
            (empty, frame(Some(below), FRAME)),
            (clock, frame(Some(below), FRAME)),
            (&*edt, no_entry.clone()),
            (&*edt, frame(Some(below), FRAME)),
            (&*edt, frame(Some(at_limit(r)), FRAME)),
        ];
        for (row, (prog, data)) in runs.iter().enumerate() {
            let out = testrun::run(prog, data, 0, 0, opts.repeat)?;
            let stamps = row >= STAMPED;
            if !stamps && out.action != TC_ACT_UNSPEC {
                return Err(Error::new(
                    ErrorKind::Bug,
                    format!("{}: returned {}, not TC_ACT_UNSPEC", ROWS[row], out.action),
                ));
            }
            if stamps && out.tstamp == 0 {
                return Err(Error::new(
                    ErrorKind::Bug,
                    format!("{}: the packet was not stamped", ROWS[row]),
                ));
            }
            samples[row].push(out.per_run.as_secs_f64() * 1e9);
        }
    }
    Ok(ROWS
        .iter()
        .zip(samples)
        .map(|(what, mut v)| {
            v.sort_by(f64::total_cmp);
            CostRow {
                what,
                median_ns: v[v.len() / 2],
                min_ns: v[0],
                max_ns: v[v.len() - 1],
            }
        })
        .collect())
}
