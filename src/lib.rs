//! podnet: a declarative node network configurator for Kubernetes underlay
//! networks.
//!
//! The pipeline, one module per stage:
//! [`config`] (load + validate) → [`observe`] (host → [`state::Observed`]) →
//! [`plan`] (pure diff → actions) → [`apply`] (execute, undo on failure, verify).

/// What `--version` prints: the version and the commit it was built from
/// (`PODNET_COMMIT` at build time, else `git rev-parse`; "unknown" from a
/// tree without git).
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("PODNET_COMMIT"),
    ")"
);

pub mod api;
pub mod apply;
pub mod cli;
pub mod cni;
pub mod config;
pub mod daemon;
pub mod deviceplugin;
pub mod error;
pub mod failpoint;
pub mod holders;
pub mod kernel;
pub mod netns;
pub mod observe;
pub mod plan;
pub mod policy;
pub mod rdma;
pub mod shaping;
pub mod state;
pub mod status;
pub mod sysfs;
