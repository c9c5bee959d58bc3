//! The rdma backend: kernel modules through `modprobe`, Soft-RoCE links
//! through the RDMA netlink. An RDMA device has no alias to carry
//! podnet's mark, so the links podnet makes are listed in a ledger,
//! written before the link is made (a crash in between leaves a name
//! without a device, which the plan ignores) and after it is removed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};
use crate::plan::{Action, Change};
use crate::rdma::Rdma;

/// Where the ledger of podnet's Soft-RoCE links lives, beside the
/// shaper's records.
pub fn ledger_path(paths: &crate::shaping::ShaperPaths) -> PathBuf {
    paths.state_dir.with_file_name("rdma-links.json")
}

/// The links podnet made (none when there is no ledger, or it cannot be
/// read: then podnet removes none, and a declared one it finds on the
/// wrong netdev is reported rather than re-created).
pub fn owned(path: &Path) -> BTreeSet<String> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

pub struct RdmaBackend {
    ledger: PathBuf,
}

impl RdmaBackend {
    pub fn new(ledger: PathBuf) -> Self {
        RdmaBackend { ledger }
    }

    fn own(&self, name: &str, mine: bool) -> Result<()> {
        let mut all = owned(&self.ledger);
        let changed = if mine {
            all.insert(name.to_string())
        } else {
            all.remove(name)
        };
        if changed {
            super::write_ledger(&self.ledger, &all)?;
        }
        Ok(())
    }

    pub async fn execute(&mut self, action: &Action) -> Result<()> {
        let name = action.name.clone();
        match &action.change {
            Change::LoadModule { module } => {
                let module = module.clone();
                super::blocking("loading a module", move || modprobe(&module)).await
            }
            Change::CreateRdmaLink { link_type, netdev } => {
                self.own(&name, true)?;
                let (link_type, netdev) = (link_type.clone(), netdev.clone());
                super::blocking("an RDMA step", move || {
                    Ok(socket()?.new_link(&name, &link_type, &netdev)?)
                })
                .await
            }
            Change::DeleteRdmaLink { .. } => {
                let gone = name.clone();
                super::blocking("an RDMA step", move || {
                    let mut rdma = socket()?;
                    let index = rdma
                        .devices()?
                        .into_iter()
                        .find(|d| d.name == gone)
                        .map(|d| d.index);
                    match index {
                        Some(i) => Ok(rdma.del_link(i, &gone)?),
                        // Gone already (its netdev went, taking it along).
                        None => Ok(()),
                    }
                })
                .await?;
                self.own(&name, false)
            }
            other => Err(Error::new(
                ErrorKind::Bug,
                format!("{}: not an RDMA step: {other:?}", action.object()),
            )),
        }
    }
}

fn socket() -> Result<Rdma> {
    Rdma::open()?.ok_or_else(|| {
        Error::new(
            ErrorKind::NotSupported,
            "this kernel has no RDMA core (ib_core is not loaded)",
        )
    })
}

/// `modprobe MODULE`, whose errors are the kernel's and modprobe's words.
fn modprobe(module: &str) -> Result<()> {
    let out = std::process::Command::new("modprobe")
        .arg(module)
        .output()
        .map_err(|e| {
            Error::new(
                ErrorKind::Host,
                format!("cannot run modprobe {module}: {e} (Debian's kmod package has it)"),
            )
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::KernelRefused,
        format!(
            "modprobe {module}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    ))
}
