//! What podnet-cni reads and writes: the spec versions it speaks, the CNI
//! error object, the network configuration the runtime derives from one
//! conflist entry, and the previous plugin's result in each spec version.
//!
//! One file per part: `version.rs`, `error.rs`, `config.rs` (with the
//! field-by-field reading of the configuration), `result.rs`.

mod config;
mod error;
mod result;
mod version;

pub use config::{check_tier, decode, valid_cni_name, Attachment, Bandwidth, NetConf, RdmaWant};
pub use error::{code, CniError};
pub use result::{pass_through, PrevInterface, PrevIp, PrevResult};
pub use version::{reply_version, SpecVersion, LATEST, SUPPORTED_VERSIONS};
