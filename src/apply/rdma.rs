//! The rdma backend: kernel modules through `modprobe`, Soft-RoCE links
//! and the netns mode through the RDMA netlink, the mode at boot in
//! podnet's modprobe.d file. An RDMA device has no alias to carry
//! podnet's mark, so the links podnet makes are listed in a ledger,
//! written before the link is made (a crash in between leaves a name
//! without a device, which the plan ignores) and after it is removed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::config::RdmaNetnsMode;
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

/// podnet's modprobe.d file in `dir` and the mode it sets.
pub fn boot_setting(dir: &Path) -> crate::plan::RdmaBootSetting {
    let file = dir.join(crate::plan::RDMA_BOOT_FILE);
    let text = std::fs::read_to_string(&file).ok();
    crate::plan::RdmaBootSetting {
        file: file.display().to_string(),
        present: text.is_some() || file.exists(),
        mode: text.as_deref().and_then(boot_mode),
    }
}

/// The netns mode an `options ib_core ... netns_mode=V` line sets.
fn boot_mode(text: &str) -> Option<RdmaNetnsMode> {
    text.lines()
        .map(|l| {
            l.split('#')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect::<Vec<_>>()
        })
        .filter(|words| words.len() > 2 && words[0] == "options" && words[1] == "ib_core")
        .flat_map(|words| {
            words[2..]
                .iter()
                .filter_map(|kv| kv.strip_prefix("netns_mode="))
                .filter_map(|v| match v {
                    "0" | "N" | "n" => Some(RdmaNetnsMode::Exclusive),
                    "1" | "Y" | "y" => Some(RdmaNetnsMode::Shared),
                    _ => None,
                })
                .collect::<Vec<_>>()
        })
        .next_back()
}

/// What podnet writes for `mode`.
fn boot_text(mode: RdmaNetnsMode) -> String {
    let v = match mode {
        RdmaNetnsMode::Exclusive => 0,
        RdmaNetnsMode::Shared => 1,
    };
    format!(
        "# Written by podnet (rdma.netns_mode = \"{}\" in the node files): the RDMA\n\
         # subsystem's network namespace mode from boot on. podnet rewrites or\n\
         # removes this file; edit the node files instead. If ib_core loads from\n\
         # the initramfs, run `update-initramfs -u` for it to hold there too.\n\
         options ib_core netns_mode={v}\n",
        mode.as_str()
    )
}

/// Writes (or with None removes) podnet's boot setting, atomically.
fn set_boot_mode(file: &Path, mode: Option<RdmaNetnsMode>) -> Result<()> {
    let failed = |e: std::io::Error| {
        Error::new(
            ErrorKind::Host,
            format!("writing the RDMA boot setting {}: {e}", file.display()),
        )
    };
    let Some(mode) = mode else {
        return match std::fs::remove_file(file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(failed(e)),
            _ => Ok(()),
        };
    };
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    let tmp = file.with_extension("conf.podnet-new");
    std::fs::write(&tmp, boot_text(mode)).map_err(failed)?;
    std::fs::rename(&tmp, file).map_err(failed)
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
            Change::SetRdmaBootMode { file, to, .. } => set_boot_mode(Path::new(file), *to),
            Change::SetRdmaNetnsMode { to, .. } => {
                let to = *to;
                super::blocking("an RDMA step", move || match socket()?.set_netns_mode(to) {
                    Err(e) if e.errno == crate::kernel::Errno::EBUSY => Err(Error::new(
                        ErrorKind::KernelRefused,
                        format!(
                            "{e}: the kernel switches it only while no network namespace but the initial one exists, and one appeared or is still being torn down; the next pass plans it again (or for the next boot)"
                        ),
                    )),
                    other => Ok(other?),
                })
                .await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boot_setting_reads_back_what_podnet_writes() {
        for mode in [RdmaNetnsMode::Exclusive, RdmaNetnsMode::Shared] {
            assert_eq!(boot_mode(&boot_text(mode)), Some(mode));
        }
        assert_eq!(
            boot_mode("options ib_core netns_mode=N foo=1\n"),
            Some(RdmaNetnsMode::Exclusive)
        );
        assert_eq!(
            boot_mode("# options ib_core netns_mode=0\noptions ib_uverbs x=1\n"),
            None
        );
        assert_eq!(boot_mode("options ib_core netns_mode=2\n"), None);
        assert_eq!(boot_mode("options ib_corex netns_mode=0\n"), None);
        assert_eq!(
            boot_mode("options ib_core netns_mode=0\noptions ib_core netns_mode=1 # later wins\n"),
            Some(RdmaNetnsMode::Shared)
        );
    }

    #[test]
    fn the_boot_setting_is_written_and_removed() {
        let dir = std::env::temp_dir().join(format!("podnet-boot-{}", std::process::id()));
        let file = dir.join(crate::plan::RDMA_BOOT_FILE);
        assert!(!boot_setting(&dir).present);
        set_boot_mode(&file, Some(RdmaNetnsMode::Exclusive)).unwrap();
        let b = boot_setting(&dir);
        assert!(b.present);
        assert_eq!(b.mode, Some(RdmaNetnsMode::Exclusive));
        set_boot_mode(&file, None).unwrap();
        assert!(!boot_setting(&dir).present);
        set_boot_mode(&file, None).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
