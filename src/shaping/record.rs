//! What podnet must remember about a shaped device across its own restarts:
//! the root qdisc it replaced (to put it back exactly), how the program is
//! attached, and whether podnet added the clsact qdisc. One JSON file per
//! device, written before the device is touched and replaced atomically.
//!
//! A record is only trusted for the boot and the ifindex it was written
//! for: after a reboot or once the device was re-created, the kernel has
//! already reset what it describes.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::tc::PreviousRoot;
use super::AttachMode;
use crate::error::{Error, ErrorKind, Result};

const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub boot_id: String,
    pub ifindex: u32,
    /// For people reading the file; the ifindex is what counts.
    pub device: String,
    pub previous_root: PreviousRoot,
    /// None until the program is attached.
    #[serde(default)]
    pub mode: Option<AttachMode>,
    /// podnet added clsact (and removes it again when no filter is left).
    #[serde(default)]
    pub clsact_added: bool,
}

impl DeviceRecord {
    pub fn new(device: &str, ifindex: u32, previous_root: PreviousRoot) -> Result<Self> {
        Ok(DeviceRecord {
            boot_id: boot_id()?,
            ifindex,
            device: device.to_string(),
            previous_root,
            mode: None,
            clsact_added: false,
        })
    }
}

pub fn path(state_dir: &Path, ifindex: u32) -> PathBuf {
    state_dir.join(format!("if{ifindex}.json"))
}

fn boot_id() -> Result<String> {
    fs::read_to_string(BOOT_ID)
        .map(|s| s.trim().to_string())
        .map_err(|e| Error::new(ErrorKind::Host, format!("reading {BOOT_ID}: {e}")))
}

/// The record for `ifindex`, if there is one from this boot for this device.
pub fn load(state_dir: &Path, ifindex: u32) -> Result<Option<DeviceRecord>> {
    let p = path(state_dir, ifindex);
    let text = match fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::new(
                ErrorKind::Host,
                format!("reading {}: {e}", p.display()),
            ))
        }
    };
    let record: DeviceRecord = serde_json::from_str(&text).map_err(|e| {
        Error::new(
            ErrorKind::Host,
            format!("{}: not a shaping record: {e}", p.display()),
        )
    })?;
    Ok((record.boot_id == boot_id()? && record.ifindex == ifindex).then_some(record))
}

pub fn save(state_dir: &Path, record: &DeviceRecord) -> Result<()> {
    let io = |what: &str, p: &Path, e: std::io::Error| {
        Error::new(ErrorKind::Host, format!("{what} {}: {e}", p.display()))
    };
    fs::create_dir_all(state_dir).map_err(|e| io("creating", state_dir, e))?;
    let p = path(state_dir, record.ifindex);
    let tmp = p.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(record)
        .map_err(|e| Error::new(ErrorKind::Bug, e.to_string()))?;
    let mut f = fs::File::create(&tmp).map_err(|e| io("creating", &tmp, e))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| io("writing", &tmp, e))?;
    fs::rename(&tmp, &p).map_err(|e| io("renaming to", &p, e))
}

pub fn remove(state_dir: &Path, ifindex: u32) -> Result<()> {
    let p = path(state_dir, ifindex);
    match fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::new(
            ErrorKind::Host,
            format!("removing {}: {e}", p.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shaping::tc::SavedQdisc;

    #[test]
    fn records_round_trip_and_are_only_trusted_for_their_device() {
        let dir = std::env::temp_dir().join(format!("podnet-record-{}", std::process::id()));
        let mut r = DeviceRecord::new(
            "eth0",
            7,
            PreviousRoot::Leaf {
                qdisc: SavedQdisc {
                    kind: "fq_codel".into(),
                    handle: 0x0005_0000,
                    parent: 0xffff_ffff,
                    options: vec![8, 0, 1, 0, 0x10, 0x27, 0, 0],
                },
            },
        )
        .unwrap();
        r.mode = Some(AttachMode::Tcx);
        save(&dir, &r).unwrap();
        assert_eq!(load(&dir, 7).unwrap(), Some(r.clone()));
        // Another boot's record says nothing about this boot's qdiscs.
        r.boot_id = "0".into();
        save(&dir, &r).unwrap();
        assert_eq!(load(&dir, 7).unwrap(), None);
        remove(&dir, 7).unwrap();
        remove(&dir, 7).unwrap();
        assert_eq!(load(&dir, 7).unwrap(), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
