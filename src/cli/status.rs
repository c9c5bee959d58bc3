//! `podnetctl status`: the node files against the host, object by object.
//! Exit status 0 when converged, 1 when anything differs.

use std::process::ExitCode;

use super::{Cli, Format};
use crate::error::Result;
use crate::plan::Role;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: Format,
}

pub fn run(cli: &Cli, args: &Args) -> Result<ExitCode> {
    if let Some(client) = super::daemon(cli)? {
        let status = client.status().map_err(super::api_error)?;
        print_daemon_status(&status, args.output);
        if args.output == Format::Text {
            let node = client.node().map_err(super::api_error)?;
            print_vfs(&node.sriov);
            print_hcas(node.rdma.as_ref());
        }
        return Ok(if status.converged {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let loaded = super::load(cli)?;
    let desired = &loaded.config;
    let (observed, plan) = super::with_kernel(cli, async |k| {
        super::planned(cli, k, desired, false, async |o, p, _| Ok((o.clone(), p))).await
    })?;
    let (_, foreign) = super::show::host_as_config(&observed);

    let objects = crate::status::object_states(desired, &observed, &plan);
    let sriov = crate::status::sriov_info(desired, &observed);
    let rdma = crate::status::rdma_info(desired, &observed);
    let stale: Vec<String> = plan
        .actions
        .iter()
        .filter(|a| a.role == Role::Stale)
        .map(|a| format!("{}: {a}", a.object()))
        .collect();
    let converged = plan.converged();

    match args.output {
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "converged": converged,
                "objects": objects,
                "stale": stale,
                "problems": plan.problems,
                "unmet": plan.unmet,
                "pending_reboot": plan.pending_reboot,
                "unsupported": plan.unsupported,
                "foreign": foreign,
                "sriov": sriov,
                "rdma": rdma,
            })
        ),
        Format::Text => {
            for o in &objects {
                println!("{:<28} {}", o.object, o.state);
                for p in &o.pending {
                    println!("    {p}");
                }
            }
            print_vfs(&sriov);
            print_hcas(rdma.as_ref());
            for s in &stale {
                println!("{s}");
            }
            for p in &plan.problems {
                println!("problem: {p}");
            }
            for p in &plan.pending_reboot {
                println!("pending reboot: {p}");
            }
            for u in &plan.unsupported {
                println!("not applied here: {}: {}", u.key, u.what);
            }
            for f in &foreign {
                println!("foreign: {f}");
            }
            println!(
                "{}",
                if converged {
                    "converged"
                } else if plan.waits_for_reboot() {
                    "not converged: pending reboot (podnet's part is done)"
                } else {
                    "not converged: run `podnetctl apply`"
                }
            );
        }
    }
    Ok(if converged {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The daemon's view: generation, last pass, rejected edit, fights.
fn print_daemon_status(s: &crate::api::types::Status, format: Format) {
    if format == Format::Json {
        println!("{}", serde_json::to_string(s).unwrap_or_default());
        return;
    }
    println!(
        "podnetd: generation {}, converged generation {}",
        s.generation,
        s.converged_generation
            .map_or("none".into(), |g| g.to_string())
    );
    if let Some(r) = &s.last_reconcile {
        println!(
            "last reconcile: {} ({} trigger, {} step(s), {:.1} ms){}",
            r.outcome,
            r.trigger,
            r.steps,
            r.took_ms,
            r.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    for o in &s.objects {
        println!("{:<28} {}", o.object, o.state);
        for p in &o.pending {
            println!("    {p}");
        }
    }
    for d in &s.shaping {
        if d.backend == "htb" {
            println!(
                "{:<28} shaped (HTB: a class per endpoint address under htb 706e:)",
                format!("shaping {}", d.device)
            );
        } else {
            println!(
                "{:<28} shaped (EDT program {})",
                format!("shaping {}", d.device),
                d.program_id
            );
        }
    }
    for p in &s.problems {
        println!("problem: {p}");
    }
    for f in &s.fights {
        println!(
            "fight: {} changed back {} times by something else; podnet leaves it alone for now",
            f.object, f.repairs
        );
    }
    if let Some(r) = &s.rejected {
        println!(
            "rejected edit ({} error(s)); the previous generation stays in force:",
            r.errors.len()
        );
        for e in &r.errors {
            println!("    {e}");
        }
    }
    for u in &s.unsupported {
        println!("not applied here: {u}");
    }
    for p in &s.pending_reboot {
        println!("pending reboot: {p}");
    }
    println!(
        "{}",
        if s.converged {
            "converged"
        } else if !s.pending_reboot.is_empty() && s.problems.is_empty() {
            "not converged: pending reboot"
        } else {
            "not converged"
        }
    );
}

/// Each HCA: where it is, who holds it, its ports and char devices.
fn print_hcas(rdma: Option<&crate::api::types::RdmaInfo>) {
    let Some(r) = rdma else {
        return;
    };
    println!(
        "rdma: netns mode {}{}",
        r.netns_mode
            .map_or("unknown (no RDMA core)", |m| m.as_str()),
        r.rdma_cm
            .as_deref()
            .map(|c| format!(", {c}"))
            .unwrap_or_default()
    );
    for h in &r.hcas {
        let mut line = format!("rdma {}: {}", h.name, h.netns);
        for (label, v) in [("driver", &h.driver), ("pci", &h.pci)] {
            if let Some(v) = v {
                line.push_str(&format!(", {label} {v}"));
            }
        }
        line.push_str(if h.offered {
            ", offered"
        } else {
            ", not offered"
        });
        if let Some(e) = &h.endpoint {
            line.push_str(&format!(" -- in use by endpoint {e}"));
        }
        println!("{line}");
        for p in &h.ports {
            println!(
                "    port {} {} {} {} on {}",
                p.index,
                p.state,
                p.phys_state,
                p.link_layer.as_deref().unwrap_or("-"),
                p.netdev.as_deref().unwrap_or("-")
            );
        }
        if !h.char_devices.is_empty() {
            println!("    {}", h.char_devices.join(" "));
        }
    }
}

/// Each declared PF's VFs, one line each: where it is, its settings, and
/// who uses it.
fn print_vfs(pfs: &[crate::api::types::PfInfo]) {
    for pf in pfs {
        println!(
            "sriov {}: {} of {} VFs ({}, {})",
            pf.name,
            pf.num_vfs,
            pf.total_vfs,
            pf.pci,
            pf.driver.as_deref().unwrap_or("no driver")
        );
        for v in &pf.vfs {
            let mut line = format!(
                "    VF {} {} {}",
                v.index,
                v.pci.as_deref().unwrap_or("-"),
                v.netdev.as_deref().unwrap_or("-")
            );
            if let Some(d) = &v.driver {
                line.push_str(&format!(" ({d})"));
            }
            if let Some(m) = &v.mac {
                line.push_str(&format!(" mac {m}"));
            }
            if v.vlan != 0 {
                line.push_str(&format!(" vlan {} qos {}", v.vlan, v.qos));
            }
            let flag = |b: Option<bool>| match b {
                Some(true) => "on",
                Some(false) => "off",
                None => "?",
            };
            line.push_str(&format!(
                " trust {} spoofchk {}",
                flag(v.trust),
                flag(v.spoofchk)
            ));
            if v.max_tx_rate_mbps != 0 {
                line.push_str(&format!(" max_tx_rate {}Mbit", v.max_tx_rate_mbps));
            }
            if let Some(why) = &v.in_use {
                line.push_str(&format!(" -- in use: {why}"));
            }
            println!("{line}");
        }
    }
}
