//! `podnetctl validate`: load and check the node files.

use std::process::ExitCode;

use serde_json::json;

use super::{Cli, Format};
use crate::error::{Error, ErrorKind, Result};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print nothing on success.
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format. With json the errors of invalid files are in the
    /// answer too (`valid: false`), each `file:line:col: key: message`.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: Format,
}

pub fn run(cli: &Cli, args: &Args) -> Result<ExitCode> {
    if args.output == Format::Json {
        return json_report(cli);
    }
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

fn json_report(cli: &Cli) -> Result<ExitCode> {
    let dir = cli.config_dir.display().to_string();
    let node = cli.node();
    let (report, code) = match crate::config::load_dir_for(&cli.config_dir, node.as_deref()) {
        Ok(loaded) => {
            let c = &loaded.config;
            let s = &loaded.sources;
            (
                json!({
                    "config_dir": dir,
                    "valid": true,
                    "node": loaded.node,
                    "files": (0..s.len()).map(|i| s.path(i).display().to_string()).collect::<Vec<_>>(),
                    "skipped": loaded.skipped.iter().map(|k| json!({
                        "file": k.path.display().to_string(),
                        "reason": k.reason,
                    })).collect::<Vec<_>>(),
                    "masters": c.masters.keys().collect::<Vec<_>>(),
                    "sriov_pfs": c.sriov.keys().collect::<Vec<_>>(),
                    "tiers": c.tiers.keys().collect::<Vec<_>>(),
                }),
                ExitCode::SUCCESS,
            )
        }
        Err(d) => (
            json!({
                "config_dir": dir,
                "valid": false,
                "node": node,
                "errors": d.items.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
            }),
            ExitCode::from(Error::new(ErrorKind::InvalidConfig, "").exit_code() as u8),
        ),
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    Ok(code)
}
