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
        /// Where podnetd pins the shaper's map (for live counters).
        #[arg(long, value_name = "DIR", default_value = "/sys/fs/bpf/podnet")]
        bpf_dir: std::path::PathBuf,
    },
}

pub fn run(cli: &Cli, args: &Args) -> Result<ExitCode> {
    let BandwidthCommand::List { output, bpf_dir } = &args.command;
    let client = super::require_daemon(cli, "")?;
    let endpoints = client.endpoints().map_err(super::api_error)?;
    // Live counters from the shaper's pinned map, when podnetd shapes.
    let live: std::collections::HashMap<std::net::IpAddr, crate::shaping::EndpointStats> =
        crate::shaping::Endpoints::open(bpf_dir)
            .and_then(|m| m.stats())
            .map(|s| {
                s.into_iter()
                    .filter(|e| e.direction == "egress")
                    .map(|e| (e.ip, e))
                    .collect()
            })
            .unwrap_or_default();
    // With HTB, each address's class counters (bytes on the wire, drops
    // of its bfifo leaf), read from the kernel where podnetd shapes by HTB.
    let htb_devices: Vec<String> = client
        .status()
        .map(|s| {
            s.shaping
                .into_iter()
                .filter(|d| d.backend == "htb")
                .map(|d| d.device)
                .collect()
        })
        .unwrap_or_default();
    let classes = if htb_devices.is_empty() {
        Default::default()
    } else {
        htb_counters(cli, &htb_devices).unwrap_or_else(|e| {
            eprintln!("reading the HTB classes' counters: {e}");
            Default::default()
        })
    };
    let counters = |e: &crate::api::types::EndpointRecord| {
        let mut found = e
            .endpoint
            .ips
            .iter()
            .filter_map(|ip| {
                live.get(&ip.addr())
                    .map(|s| (s.bytes, s.drops))
                    .or_else(|| classes.get(&ip.addr()).copied())
            })
            .peekable();
        found.peek()?;
        Some(found.fold((0u64, 0u64), |(b, d), s| (b + s.0, d + s.1)))
    };
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
                    "egress_bytes": counters(e).map(|c| c.0),
                    "egress_drops": counters(e).map(|c| c.1),
                    "enforced": e.enforcement.as_ref().map(|x| x.enforced),
                    "problems": e.enforcement.as_ref().map(|x| x.problems.clone()).unwrap_or_default(),
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
        "{:<28} {:<22} {:<10} {:<8} {:>12} {:>12} {:>14} {:>8}",
        "ENDPOINT", "IPS", "DEVICE", "TIER", "EGRESS", "INGRESS", "BYTES", "DROPS"
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
        let (bytes, drops) = counters(e).map_or(("-".to_string(), "-".to_string()), |(b, d)| {
            (b.to_string(), d.to_string())
        });
        println!(
            "{:<28} {:<22} {:<10} {:<8} {:>12} {:>12} {:>14} {:>8}",
            format!("{id}/{}", e.ifname),
            ips.join(","),
            e.endpoint.master.as_deref().unwrap_or("-"),
            limits.tier.as_deref().unwrap_or("-"),
            rate(limits.egress),
            rate(limits.ingress),
            bytes,
            drops
        );
        for p in e.enforcement.iter().flat_map(|x| &x.problems) {
            println!("    not in force: {p}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Bytes and drops of each address's HTB class on `devices`, from the
/// kernel (the filter names the address, the class holds the counters).
fn htb_counters(
    cli: &Cli,
    devices: &[String],
) -> Result<std::collections::HashMap<std::net::IpAddr, (u64, u64)>> {
    super::with_kernel(cli, async |kernel| {
        let observed = crate::observe::observe(kernel).await?;
        let mut out = std::collections::HashMap::new();
        for tree in crate::shaping::observe::htb(kernel, &observed).await? {
            if !devices.contains(&tree.link) {
                continue;
            }
            for f in &tree.filters {
                let class = tree.classes.iter().find(|c| Some(c.minor) == f.class);
                if let (Some(ip), Some(c)) = (f.ip, class) {
                    out.insert(ip, (c.stats.bytes, c.stats.drops));
                }
            }
        }
        Ok(out)
    })
}
