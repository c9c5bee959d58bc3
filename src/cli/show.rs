//! `podnetctl show`: the host's relevant state in the node file format, so
//! an operator can start node files from a running node.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::ValueEnum;

use super::Cli;
use crate::config::{ChildKind, Master, NodeConfig, Shim, VERSION};
use crate::error::Result;
use crate::observe::observe;
use crate::state::{Observed, RT_TABLE_MAIN};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShowFormat {
    Toml,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "toml")]
    pub output: ShowFormat,
}

pub fn run(cli: &Cli, args: &Args) -> Result<ExitCode> {
    let observed = super::with_kernel(cli, async |k| observe(k).await)?;
    let (config, foreign) = host_as_config(&observed);
    match args.output {
        ShowFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&config).unwrap_or_default()
        ),
        ShowFormat::Toml => {
            println!("#:schema /usr/share/podnet/podnet.schema.json");
            println!("# podnetctl show: this host's masters and podnet's shims.");
            for f in &foreign {
                println!("# {f}");
            }
            print!("{}", toml::to_string(&config).unwrap_or_default());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Every link with ipvlan/macvlan children becomes a master; a child podnet
/// owns becomes its shim. Children of others are listed as comments.
pub(crate) fn host_as_config(observed: &Observed) -> (NodeConfig, Vec<String>) {
    let mut masters = BTreeMap::new();
    let mut foreign = Vec::new();
    for child in &observed.links {
        let kind = match child.kind.as_deref() {
            Some("ipvlan") => ChildKind::Ipvlan,
            Some("macvlan") => ChildKind::Macvlan,
            _ => continue,
        };
        let Some(parent) = child.parent.as_deref().and_then(|p| observed.link(p)) else {
            continue;
        };
        let master = masters
            .entry(parent.name.clone())
            .or_insert_with(|| Master {
                kind,
                mode: child.mode,
                mtu: Some(parent.mtu),
                shaping: None,
                shim: None,
            });
        if child.is_owned() && master.shim.is_none() {
            master.shim = Some(Shim {
                name: child.name.clone(),
                addresses: observed
                    .addresses_of(&child.name)
                    .filter(|a| !a.is_kernel_link_local())
                    .map(|a| a.prefix)
                    .collect(),
                routes: observed
                    .routes
                    .iter()
                    .filter(|r| {
                        r.is_owned()
                            && r.table == RT_TABLE_MAIN
                            && r.link.as_deref() == Some(&child.name)
                    })
                    .map(|r| r.dst)
                    .collect(),
            });
        } else if !child.is_owned() {
            foreign.push(format!(
                "{} {} on {} ({}) is not podnet's: left alone",
                kind,
                child.name,
                parent.name,
                child.mode.map(|m| m.to_string()).unwrap_or_default()
            ));
        }
    }
    let config = NodeConfig {
        version: VERSION,
        masters,
        ..NodeConfig::default()
    };
    (config, foreign)
}
