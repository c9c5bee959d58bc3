//! `podnetd`: converges the host to the node files and keeps it there.
//!
//! This first version re-runs the pipeline (load, observe, plan, apply,
//! verify) at start and on a timer; file, kernel-event and socket triggers
//! come with the daemon issue. An invalid edit changes nothing: the last
//! good state stays applied and the errors are logged.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::config::{load_dir, DEFAULT_CONFIG_DIR};
use crate::kernel::Kernel;
use crate::{apply, observe, plan};

pub mod registry;

/// podnet's node daemon: converges the host to the node files.
#[derive(Debug, Parser)]
#[command(name = "podnetd", version)]
pub struct Args {
    /// Directory of node files.
    #[arg(short = 'c', long, value_name = "DIR", env = "PODNET_CONFIG_DIR", default_value = DEFAULT_CONFIG_DIR)]
    pub config_dir: PathBuf,
    /// Run inside the named network namespace.
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// Seconds between two reconciles.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub interval: u64,
    /// Reconcile once and exit (status 0 converged, 1 failed, 2 invalid files).
    #[arg(long)]
    pub once: bool,
}

/// Parses the command line and runs the daemon.
pub fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(ns) = &args.netns {
        if let Err(e) = crate::netns::enter(ns) {
            eprintln!("podnetd: {e}");
            return ExitCode::FAILURE;
        }
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("podnetd: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    let kernel = match Kernel::connect() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("podnetd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("podnetd: cannot watch SIGTERM: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "podnetd: watching {} every {}s",
        args.config_dir.display(),
        args.interval
    );
    loop {
        let code = reconcile(&kernel, &args).await;
        if args.once {
            return ExitCode::from(code);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(args.interval)) => {}
            // Shutting down leaves the data path in place.
            _ = term.recv() => { eprintln!("podnetd: SIGTERM, exiting; the host stays as applied"); return ExitCode::SUCCESS; }
            _ = tokio::signal::ctrl_c() => { eprintln!("podnetd: interrupted, exiting"); return ExitCode::SUCCESS; }
        }
    }
}

/// One pass of the pipeline; returns the exit status `--once` reports.
async fn reconcile(kernel: &Kernel, args: &Args) -> u8 {
    let loaded = match load_dir(&args.config_dir) {
        Ok(l) => l,
        Err(d) => {
            eprint!("{}", d.render());
            eprintln!("podnetd: node files rejected; the last applied state stays in place");
            return 2;
        }
    };
    let result = async {
        let observed = observe::observe(kernel).await?;
        let plan = plan::plan(&loaded.config, &observed);
        if plan.is_empty() && plan.problems.is_empty() {
            return Ok(None);
        }
        eprint!("{plan}");
        apply::apply(kernel, &loaded.config, &observed, &plan)
            .await
            .map(Some)
    }
    .await;
    match result {
        Ok(None) => 0,
        Ok(Some(a)) => {
            eprintln!(
                "podnetd: applied {} step(s) in {:.1} ms; verified",
                a.actions,
                a.took.as_secs_f64() * 1e3
            );
            0
        }
        Err(e) => {
            eprintln!("podnetd: reconcile failed: {e}");
            1
        }
    }
}
