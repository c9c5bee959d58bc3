//! `podnetctl validate`: load and check the node files.

use std::process::ExitCode;

use super::Cli;
use crate::error::Result;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print nothing on success.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(cli: &Cli, args: &Args) -> Result<ExitCode> {
    let loaded = super::load(cli)?;
    if !args.quiet {
        let c = &loaded.config;
        println!(
            "{}: {} file(s) valid{}: {} master(s), {} SR-IOV PF(s), {} tier(s)",
            cli.config_dir.display(),
            loaded.sources.len(),
            loaded
                .node
                .as_deref()
                .map(|n| format!(" on node {n}"))
                .unwrap_or_default(),
            c.masters.len(),
            c.sriov.len(),
            c.tiers.len()
        );
        for s in &loaded.skipped {
            println!("skipped {s}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
