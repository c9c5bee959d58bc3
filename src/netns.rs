//! Running inside a named network namespace (`ip netns add NAME`), as
//! `--netns NAME` asks.

use std::fs::File;

use nix::sched::{setns, CloneFlags};

use crate::error::{Error, ErrorKind, Result};

/// Where iproute2 keeps named namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Moves the calling thread into the named network namespace. Call it
/// before any other thread or socket exists: a namespace is per thread and
/// a socket stays in the namespace it was made in.
pub fn enter(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(Error::new(
            ErrorKind::InvalidConfig,
            format!("invalid netns name {name:?}"),
        ));
    }
    let path = format!("{NETNS_RUN_DIR}/{name}");
    let file = File::open(&path).map_err(|e| {
        Error::new(
            ErrorKind::Host,
            format!("network namespace {name}: cannot open {path}: {e}"),
        )
    })?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| {
        Error::new(
            ErrorKind::Host,
            format!("network namespace {name}: setns: {e} (podnet needs root)"),
        )
    })
}

/// `NSFS_MAGIC`: the filesystem of namespace files (`/proc/PID/ns/*` and
/// their bind mounts, such as `/run/netns/NAME`).
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Whether `path` is a namespace file now: a pod's network namespace is
/// alive while its runtime keeps it mounted there. A path that is gone, or
/// left behind as the plain file a bind mount sat on, is not.
pub fn is_namespace(path: &std::path::Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == NSFS_MAGIC)
}
