//! `podnetctl bandwidth list`: every registered endpoint with the rates the
//! node's policy gives it (like `cilium bpf bandwidth list`) and, per
//! direction podnet shapes, what the shaper does now: the rate achieved,
//! the queue delay (EDT) or overlimits (HTB), marks and drops. All of it
//! comes from podnetd's `/v1/endpoints` (its sampler measures the rate),
//! so the command needs no BPF or netlink access and reads both backends.

use std::process::ExitCode;

use clap::Subcommand;

use super::{Cli, Format};
use crate::api::types::{EndpointRecord, Traffic};
use crate::config::Rate;
use crate::error::Result;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: BandwidthCommand,
}

#[derive(Debug, Subcommand)]
pub enum BandwidthCommand {
    /// List endpoints with their limits, the rate each achieves, its queue
    /// delay or overlimits, marks and drops.
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
        let rows: Vec<_> = endpoints.iter().map(json_row).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
    } else {
        print!("{}", text(&endpoints));
    }
    Ok(ExitCode::SUCCESS)
}

fn egress(e: &EndpointRecord) -> Option<&Traffic> {
    e.traffic.iter().find(|t| t.direction == "egress")
}

fn json_row(e: &EndpointRecord) -> serde_json::Value {
    serde_json::json!({
        "endpoint": format!("{}/{}", e.container_id, e.ifname),
        "ips": e.endpoint.ips,
        "device": e.endpoint.master,
        "tier": e.limits.as_ref().and_then(|l| l.tier.clone()),
        "egress_bps": e.limits.as_ref().and_then(|l| l.egress),
        "ingress_bps": e.limits.as_ref().and_then(|l| l.ingress),
        "burst_bits": e.limits.as_ref().and_then(|l| l.burst),
        // The egress row's counters, as this command showed them before
        // `traffic` (scripts read them).
        "egress_bytes": egress(e).map(|t| t.bytes),
        "egress_drops": egress(e).map(|t| t.drops),
        "traffic": e.traffic,
        "enforced": e.enforcement.as_ref().map(|x| x.enforced),
        "problems": e.enforcement.as_ref().map(|x| x.problems.clone()).unwrap_or_default(),
    })
}

/// A measured rate, three significant digits: `9.98Mbit`.
pub fn approx_rate(bps: u64) -> String {
    let (v, unit) = match bps {
        b if b >= 1_000_000_000 => (b as f64 / 1e9, "Gbit"),
        b if b >= 1_000_000 => (b as f64 / 1e6, "Mbit"),
        b if b >= 1_000 => (b as f64 / 1e3, "Kbit"),
        b => return format!("{b}bit"),
    };
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$}{unit}")
}

/// The table: one line per endpoint and direction. An endpoint podnet
/// does not shape has one line with its limits and `-` for the rest; an
/// ingress limit podnet does not apply yet has its own line, backend `-`.
fn text(endpoints: &[EndpointRecord]) -> String {
    use std::fmt::Write;
    let dash = || "-".to_string();
    let mut out = String::new();
    let head = [
        "ENDPOINT", "IPS", "DEVICE", "TIER", "DIR", "BACKEND", "LIMIT", "RATE", "QDELAY",
        "OVERLIM", "MARKS", "DROPS", "BYTES",
    ];
    let mut rows: Vec<[String; 13]> = Vec::new();
    for e in endpoints {
        let id: String = e.container_id.chars().take(18).collect();
        let ips: Vec<String> = e.endpoint.ips.iter().map(|i| i.to_string()).collect();
        let first = [
            format!("{id}/{}", e.ifname),
            ips.join(","),
            e.endpoint.master.clone().unwrap_or_else(dash),
            e.limits
                .as_ref()
                .and_then(|l| l.tier.clone())
                .unwrap_or_else(dash),
        ];
        let mut lines: Vec<[String; 9]> = e
            .traffic
            .iter()
            .map(|t| {
                [
                    t.direction.clone(),
                    t.backend.clone(),
                    Rate(t.limit_bps).to_string(),
                    t.rate_bps.map_or_else(dash, approx_rate),
                    t.queue_delay_us
                        .map_or_else(dash, |d| format!("{:.1}ms", d as f64 / 1000.0)),
                    t.overlimits.map_or_else(dash, |o| o.to_string()),
                    t.marks.map_or_else(dash, |m| m.to_string()),
                    t.drops.to_string(),
                    t.bytes.to_string(),
                ]
            })
            .collect();
        let limits = e.limits.as_ref();
        for (dir, limit) in [
            ("egress", limits.and_then(|l| l.egress)),
            ("ingress", limits.and_then(|l| l.ingress)),
        ] {
            if let Some(limit) = limit.filter(|_| !e.traffic.iter().any(|t| t.direction == dir)) {
                let mut l: [String; 9] = std::array::from_fn(|_| dash());
                l[0] = dir.into();
                l[2] = Rate(limit).to_string();
                lines.push(l);
            }
        }
        if lines.is_empty() {
            lines.push(std::array::from_fn(|_| dash()));
        }
        for (n, l) in lines.into_iter().enumerate() {
            let left = if n == 0 {
                first.clone()
            } else {
                std::array::from_fn(|_| String::new())
            };
            let mut row: [String; 13] = std::array::from_fn(|_| String::new());
            row[..4].clone_from_slice(&left);
            row[4..].clone_from_slice(&l);
            rows.push(row);
        }
        for p in e.enforcement.iter().flat_map(|x| &x.problems) {
            let mut row: [String; 13] = std::array::from_fn(|_| String::new());
            row[0] = format!("    not in force: {p}");
            rows.push(row);
        }
    }
    // Column widths from the cells, the free-text lines excepted.
    let mut width = head.map(str::len);
    for r in rows
        .iter()
        .filter(|r| !r[0].starts_with("    not in force"))
    {
        for (w, c) in width.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(width).enumerate() {
            // Text columns left, numbers right.
            if i < 6 {
                let _ = write!(s, "{c:<w$}  ");
            } else {
                let _ = write!(s, "{c:>w$}  ");
            }
        }
        s.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(&head.map(String::from)));
    for r in &rows {
        if r[0].starts_with("    not in force") {
            let _ = writeln!(out, "{}", r[0]);
        } else {
            let _ = writeln!(out, "{}", line(r));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_rates_read_at_three_digits() {
        assert_eq!(approx_rate(0), "0bit");
        assert_eq!(approx_rate(999), "999bit");
        assert_eq!(approx_rate(9_987_654), "9.99Mbit");
        assert_eq!(approx_rate(99_870_000), "99.9Mbit");
        assert_eq!(approx_rate(1_234_000_000), "1.23Gbit");
        assert_eq!(approx_rate(512_300), "512Kbit");
    }
}
