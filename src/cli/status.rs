//! `podnetctl status`: the node files against the host, object by object.
//! Exit status 0 when converged, 1 when anything differs.

use std::process::ExitCode;

use super::{Cli, Format};
use crate::error::Result;
use crate::observe::observe;
use crate::plan::{plan, Role};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: Format,
}

pub fn run(cli: &Cli, args: &Args) -> Result<ExitCode> {
    let loaded = super::load(cli)?;
    let desired = &loaded.config;
    let observed = super::with_kernel(cli, async |k| observe(k).await)?;
    let plan = plan(desired, &observed);
    let (_, foreign) = super::show::host_as_config(&observed);

    let objects = crate::status::object_states(desired, &observed, &plan);
    let stale: Vec<String> = plan
        .actions
        .iter()
        .filter(|a| a.role == Role::Stale)
        .map(|a| format!("{}: {a}", a.object()))
        .collect();
    let converged = plan.actions.is_empty() && plan.problems.is_empty();

    match args.output {
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "converged": converged,
                "objects": objects,
                "stale": stale,
                "problems": plan.problems,
                "unsupported": plan.unsupported,
                "foreign": foreign,
            })
        ),
        Format::Text => {
            for o in &objects {
                println!("{:<28} {}", o.object, o.state);
                for p in &o.pending {
                    println!("    {p}");
                }
            }
            for s in &stale {
                println!("{s}");
            }
            for p in &plan.problems {
                println!("problem: {p}");
            }
            for u in &plan.unsupported {
                println!("not applied by this version: {}: {}", u.key, u.what);
            }
            for f in &foreign {
                println!("foreign: {f}");
            }
            println!(
                "{}",
                if converged {
                    "converged"
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
