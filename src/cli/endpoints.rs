//! `podnetctl endpoints`: the pod endpoints registered with podnetd.

use std::process::ExitCode;

use super::{Cli, Format};
use crate::error::Result;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: Format,
}

pub fn run(cli: &Cli, args: &Args) -> Result<ExitCode> {
    let client = super::require_daemon(cli, ": endpoints live in the daemon")?;
    let endpoints = client.endpoints().map_err(super::api_error)?;
    match args.output {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&endpoints).unwrap_or_default()
        ),
        Format::Text => {
            println!(
                "{:<20} {:<8} {:<24} {:<10} {:<10} {:>12} {:>12}",
                "CONTAINER", "IFNAME", "IPS", "MASTER", "TIER", "EGRESS", "INGRESS"
            );
            let rate =
                |r: Option<u64>| r.map_or("-".to_string(), |b| crate::config::Rate(b).to_string());
            for e in &endpoints {
                let ep = &e.endpoint;
                let id: String = e.container_id.chars().take(20).collect();
                let ips: Vec<String> = ep.ips.iter().map(|i| i.to_string()).collect();
                println!(
                    "{:<20} {:<8} {:<24} {:<10} {:<10} {:>12} {:>12}",
                    id,
                    e.ifname,
                    ips.join(","),
                    ep.master.as_deref().unwrap_or("-"),
                    ep.tier.as_deref().unwrap_or("-"),
                    rate(ep.egress),
                    rate(ep.ingress)
                );
            }
            println!("{} endpoint(s)", endpoints.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}
