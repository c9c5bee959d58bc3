//! `podnetctl bandwidth list`: every registered endpoint with the rates the
//! node's policy gives it (like `cilium bpf bandwidth list`).

use std::process::ExitCode;

use clap::Subcommand;

use super::{Cli, Format};
use crate::config::Rate;
use crate::error::Result;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: BandwidthCommand,
}

#[derive(Debug, Subcommand)]
pub enum BandwidthCommand {
    /// List endpoints with their tier and egress/ingress limits.
    List {
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: Format,
    },
}

pub fn run(cli: &Cli, args: &Args) -> Result<ExitCode> {
    let BandwidthCommand::List { output } = &args.command;
    let client = super::require_daemon(cli, "")?;
    let endpoints = client.endpoints().map_err(super::api_error)?;
    if *output == Format::Json {
        let rows: Vec<_> = endpoints
            .iter()
            .map(|e| {
                serde_json::json!({
                    "endpoint": format!("{}/{}", e.container_id, e.ifname),
                    "ips": e.endpoint.ips,
                    "device": e.endpoint.master,
                    "tier": e.limits.as_ref().and_then(|l| l.tier.clone()),
                    "egress_bps": e.limits.as_ref().and_then(|l| l.egress),
                    "ingress_bps": e.limits.as_ref().and_then(|l| l.ingress),
                    "burst_bits": e.limits.as_ref().and_then(|l| l.burst),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let rate = |r: Option<u64>| r.map_or("-".to_string(), |b| Rate(b).to_string());
    println!(
        "{:<28} {:<22} {:<10} {:<8} {:>12} {:>12}",
        "ENDPOINT", "IPS", "DEVICE", "TIER", "EGRESS", "INGRESS"
    );
    for e in &endpoints {
        let id: String = e.container_id.chars().take(18).collect();
        let ips: Vec<String> = e.endpoint.ips.iter().map(|i| i.to_string()).collect();
        let limits = e.limits.clone().unwrap_or(crate::api::types::Limits {
            egress: None,
            ingress: None,
            burst: None,
            tier: None,
        });
        println!(
            "{:<28} {:<22} {:<10} {:<8} {:>12} {:>12}",
            format!("{id}/{}", e.ifname),
            ips.join(","),
            e.endpoint.master.as_deref().unwrap_or("-"),
            limits.tier.as_deref().unwrap_or("-"),
            rate(limits.egress),
            rate(limits.ingress)
        );
    }
    Ok(ExitCode::SUCCESS)
}
