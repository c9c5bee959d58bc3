//! Drives `podnet::shaping` by hand: the VM lab's EDT cases use it to
//! shape a master and set endpoint limits before podnetd and the CNI plugin
//! do that for real.
//!
//! ```text
//! edt-demo [--netns NS] [--pin-dir DIR] [--state-dir DIR] attach DEV [--mode auto|tcx|clsact]
//! edt-demo ... detach DEV
//! edt-demo ... status DEV
//! edt-demo ... set IP RATE [--horizon 2s] [--burst BYTES] [--ce-threshold 1ms]
//! edt-demo ... remove IP
//! edt-demo ... stats
//! edt-demo cost [--repeat N] [--rounds N] [--entries N]
//! ```
//!
//! Output is JSON, one object per command, for `jq`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use podnet::config::{Delay, Horizon, Rate};
use podnet::error::Result;
use podnet::kernel::Kernel;
use podnet::shaping::{cost, AttachMode, EgressLimit, Endpoints, Shaper, ShaperPaths};
use serde_json::json;

#[derive(Parser)]
#[command(about = "Attach podnet's EDT egress shaper and set endpoint limits by hand")]
struct Args {
    /// Work in this named network namespace (only the network namespace is
    /// entered, so /sys/fs/bpf stays the host's).
    #[arg(long)]
    netns: Option<String>,
    #[arg(long, default_value = podnet::shaping::DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
    #[arg(long, default_value = podnet::shaping::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Auto,
    Tcx,
    Clsact,
}

#[derive(Subcommand)]
enum Cmd {
    /// fq at the root of DEV and the program on its egress (replaces a
    /// program already there in place).
    Attach {
        device: String,
        #[arg(long, value_enum, default_value = "auto")]
        mode: Mode,
    },
    /// Remove the program from DEV and restore its previous root qdisc.
    Detach { device: String },
    /// Root qdisc, attachment and program id of DEV.
    Status { device: String },
    /// Limit the egress of IP to RATE (e.g. 100M, 1Gbit; 0 = count only).
    Set {
        ip: IpAddr,
        rate: String,
        #[arg(long, default_value = "2s")]
        horizon: String,
        #[arg(long, default_value_t = 0)]
        burst: u64,
        /// CE-mark ECN-capable packets waiting longer than this (e.g.
        /// 1ms, 500us); unset: never mark.
        #[arg(long)]
        ce_threshold: Option<String>,
    },
    /// Remove the entry of IP.
    Remove { ip: IpAddr },
    /// Every entry with its counters.
    Stats,
    /// Time the program per packet in the kernel (BPF_PROG_TEST_RUN) beside
    /// an empty tc program, on a private bpffs: bench/shaping's cost table.
    Cost {
        #[arg(long, default_value_t = 1_000_000)]
        repeat: u32,
        #[arg(long, default_value_t = 11)]
        rounds: u32,
        #[arg(long, default_value_t = 1_000)]
        entries: u32,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(ns) = &args.netns {
        if let Err(e) = podnet::netns::enter(ns) {
            eprintln!("edt-demo: {e}");
            return ExitCode::from(1);
        }
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("edt-demo: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(args)) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("edt-demo: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn invalid(e: impl std::fmt::Display) -> podnet::error::Error {
    podnet::error::Error::new(podnet::error::ErrorKind::InvalidConfig, e.to_string())
}

async fn run(args: Args) -> Result<serde_json::Value> {
    let paths = ShaperPaths {
        pin_dir: args.pin_dir,
        state_dir: args.state_dir,
        ..ShaperPaths::default()
    };
    let shaper = |paths: ShaperPaths| -> Result<Shaper> {
        let kernel = Kernel::connect()?;
        Shaper::load(&kernel, paths)
    };
    Ok(match args.command {
        Cmd::Attach { device, mode } => {
            let mode = match mode {
                Mode::Auto => AttachMode::auto(),
                Mode::Tcx => AttachMode::Tcx,
                Mode::Clsact => AttachMode::Clsact,
            };
            let mut s = shaper(paths)?;
            let a = s.attach(&device, mode).await?;
            json!({
                "device": device,
                "mode": a.mode,
                "replaced": a.replaced,
                "installed_root": a.installed_root,
                "previous_root": a.previous_root.describe(),
                "program_id": s.program_id()?,
            })
        }
        Cmd::Detach { device } => {
            let mut s = shaper(paths)?;
            s.detach(&device).await?;
            json!({ "device": device, "detached": true })
        }
        Cmd::Status { device } => {
            let s = shaper(paths)?;
            serde_json::to_value(s.status(&device).await?).map_err(invalid)?
        }
        Cmd::Set {
            ip,
            rate,
            horizon,
            burst,
            ce_threshold,
        } => {
            let rate = if rate == "0" {
                0
            } else {
                Rate::parse(&rate).map_err(invalid)?.bits_per_second()
            };
            let horizon = Horizon::parse(&horizon).map_err(invalid)?.0;
            let ce_threshold = match ce_threshold {
                Some(d) => Delay::parse(&d).map_err(invalid)?.0,
                None => std::time::Duration::ZERO,
            };
            let limit = EgressLimit {
                rate_bps: rate,
                horizon,
                burst_bytes: burst,
                ce_threshold,
            };
            Endpoints::open(&paths.pin_dir)?.set(ip, &limit)?;
            json!({ "ip": ip, "rate_bps": rate, "horizon_ms": horizon.as_millis(), "burst_bytes": burst, "ce_threshold_us": ce_threshold.as_micros() })
        }
        Cmd::Remove { ip } => {
            let removed = Endpoints::open(&paths.pin_dir)?.remove(ip)?;
            json!({ "ip": ip, "removed": removed })
        }
        Cmd::Stats => {
            serde_json::to_value(Endpoints::open(&paths.pin_dir)?.stats()?).map_err(invalid)?
        }
        Cmd::Cost {
            repeat,
            rounds,
            entries,
        } => {
            let opts = cost::CostOptions {
                repeat,
                rounds,
                entries,
            };
            let fs = PrivateBpfFs::mount()?;
            let rows = cost::measure(&fs.0.join("podnet"), opts);
            drop(fs);
            let rows: Vec<_> = rows?
                .into_iter()
                .map(|r| json!({"what": r.what, "median_ns": r.median_ns, "min_ns": r.min_ns, "max_ns": r.max_ns}))
                .collect();
            json!({
                "repeat": repeat, "rounds": rounds, "entries": entries,
                "kernel": nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default(),
                "budget_10g_ns": cost::budget_10g_ns(),
                "rows": rows,
            })
        }
    })
}

/// A bpffs of its own in a temporary directory, unmounted and removed on
/// drop, so measuring never touches the node's /sys/fs/bpf/podnet.
struct PrivateBpfFs(PathBuf);

impl PrivateBpfFs {
    fn mount() -> Result<PrivateBpfFs> {
        let dir = std::env::temp_dir().join(format!("podnet-cost-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(invalid)?;
        nix::mount::mount(
            Some("bpf"),
            &dir,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| invalid(format!("mount -t bpf {}: {e}", dir.display())))?;
        Ok(PrivateBpfFs(dir))
    }
}

impl Drop for PrivateBpfFs {
    fn drop(&mut self) {
        let _ = nix::mount::umount(&self.0);
        let _ = std::fs::remove_dir(&self.0);
    }
}
