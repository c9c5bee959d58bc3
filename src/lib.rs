//! podnet: a declarative node network configurator for Kubernetes underlay
//! networks.
//!
//! The pipeline, one module per stage:
//! [`config`] (load + validate) → [`observe`] (host → [`state::Observed`]) →
//! [`plan`] (pure diff → actions) → [`apply`] (execute, undo on failure, verify).

pub mod config;
pub mod error;
