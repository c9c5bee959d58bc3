//! `podnetctl apply [--dry-run]`: plan, then converge and verify.

use std::process::ExitCode;

use super::{Cli, Format};
use crate::apply::apply;
use crate::error::{Error, ErrorKind, Result};
use crate::plan::{hazards, Disruption};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the plan (exactly the steps apply would run) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: Format,
    /// Refuse a plan with a step more disruptive than this
    /// (hitless, link-flap, vf-reset, needs-reboot). podnetd applies edits
    /// as they land: to gate an edit, check its files first with
    /// `podnetctl -c STAGING apply --dry-run --max-disruption LEVEL`.
    #[arg(long, value_name = "LEVEL")]
    pub max_disruption: Option<Disruption>,
    /// Apply even steps that interrupt the interface carrying the node's
    /// default route.
    #[arg(long)]
    pub force: bool,
}

pub fn run(cli: &Cli, args: &Args) -> Result<ExitCode> {
    let loaded = super::load(cli)?;
    let desired = &loaded.config;
    // A running daemon applies, --force and --max-disruption included: one
    // applier at a time. A dry run only reads.
    if !args.dry_run {
        if let Some(client) = super::daemon(cli)? {
            return through_daemon(&client, args);
        }
    }
    super::with_kernel(cli, async |kernel| {
        super::planned(cli, kernel, desired, !args.dry_run, async |observed, mut plan, shaping| {
            super::host_problems(&loaded, observed)?;
            if !args.force {
                let hazards = hazards(&plan, observed);
                plan.problems.extend(hazards);
            }
            print_plan(&plan, args.output);
            if !plan.problems.is_empty() {
                return Err(Error::new(
                    ErrorKind::Host,
                    "the plan cannot run; nothing was changed",
                ));
            }
            if let Some(max) = args.max_disruption {
                if plan.max_disruption() > max {
                    return Err(Error::new(
                        ErrorKind::Host,
                        format!(
                            "the plan is {} but --max-disruption is {max}; nothing was changed",
                            plan.max_disruption()
                        ),
                    ));
                }
            }
            if !args.dry_run && !plan.is_empty() {
                let applied = apply(kernel, desired, observed, &plan, shaping).await?;
                if args.output == Format::Text {
                    println!(
                        "Applied {} step(s) in {:.1} ms; verified: the host matches the node files{}.",
                        applied.actions,
                        applied.took.as_secs_f64() * 1e3,
                        if applied.unmet.is_empty() { "" } else { " but for what it cannot do" }
                    );
                }
                return unmet(&applied.unmet);
            }
            unmet(&plan.unmet)
        })
        .await
    })
}

/// What the host cannot do fails the command (after the rest is applied).
fn unmet(unmet: &[String]) -> Result<ExitCode> {
    if unmet.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    Err(Error::new(
        ErrorKind::NotSupported,
        format!(
            "not everything the node files ask can be done here: {}",
            unmet.join("; ")
        ),
    ))
}

fn print_plan(plan: &crate::plan::Plan, format: Format) {
    match format {
        Format::Text => print!("{plan}"),
        Format::Json => println!("{}", plan_json(plan)),
    }
}

/// The plan as JSON: each step with its object, sign, text and disruption.
pub(crate) fn plan_json(plan: &crate::plan::Plan) -> serde_json::Value {
    let actions: Vec<serde_json::Value> = plan
        .actions
        .iter()
        .map(|a| {
            let mut v = serde_json::to_value(a).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("object".into(), a.object().into());
                o.insert("text".into(), a.to_string().into());
                o.insert("disruption".into(), a.disruption().to_string().into());
            }
            v
        })
        .collect();
    serde_json::json!({
        "actions": actions,
        "problems": plan.problems,
        "unmet": plan.unmet,
        "pending_reboot": plan.pending_reboot,
        "unsupported": plan.unsupported,
        "max_disruption": plan.max_disruption(),
    })
}

fn through_daemon(client: &crate::api::client::BlockingClient, args: &Args) -> Result<ExitCode> {
    let answer = client
        .reconcile_with(crate::api::types::ReconcileOptions {
            force: args.force,
            max_disruption: args.max_disruption,
        })
        .map_err(super::api_error)?;
    let r = &answer.reconcile;
    match args.output {
        Format::Json => println!("{}", serde_json::to_string(&answer).unwrap_or_default()),
        Format::Text => {
            println!(
                "podnetd (generation {}): {}, {} step(s) in {:.1} ms",
                answer.generation, r.outcome, r.steps, r.took_ms
            );
            let status = client.status().map_err(super::api_error)?;
            if let Some(rej) = &status.rejected {
                println!(
                    "note: podnetd still rejects the files it read ({} error(s))",
                    rej.errors.len()
                );
            }
        }
    }
    match r.outcome.as_str() {
        "converged" | "applied" => Ok(ExitCode::SUCCESS),
        _ => Err(Error::new(
            ErrorKind::Host,
            format!("podnetd: {}", r.error.as_deref().unwrap_or(&r.outcome)),
        )),
    }
}
