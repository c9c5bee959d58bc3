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
