//! The CNI error object and the error codes podnet-cni answers with.

use std::fmt;

use serde_json::{json, Value};

/// The error codes of the spec's "Error" section that podnet-cni uses, and
/// its own (100 and up are free for plugins).
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Invalid necessary environment variables; the message names them.
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure, e.g. reading the config from stdin, or a socket podnet-cni
    /// may not open.
    pub const IO_FAILURE: u32 = 5;
    /// Failed to decode content: stdin is not JSON.
    pub const DECODE: u32 = 6;
    /// Invalid network config (also: podnetd refused the endpoint as
    /// invalid for this node, e.g. an undefined tier).
    pub const INVALID_CONFIG: u32 = 7;
    /// Try again later: podnetd is not running or did not answer in time.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin cannot service ADD requests.
    pub const NOT_AVAILABLE: u32 = 50;
    /// podnet's own: CHECK found the attachment unregistered, or registered
    /// differently from what ADD would register now.
    pub const NOT_AS_REGISTERED: u32 = 100;
    /// podnet's own: podnetd answered something this plugin does not
    /// understand (podnet-cni and podnetd from different releases).
    pub const PROTOCOL: u32 = 101;
    /// podnet's own: CHECK found the attachment registered, but its egress
    /// limit not in force (its master not shaped, or the shaper's map
    /// without its entry).
    pub const NOT_ENFORCED: u32 = 102;
    /// podnet's own: the pod's RDMA device could not be found, is not
    /// offered by the node files, or the kernel would not move it into
    /// the pod's namespace.
    pub const RDMA: u32 = 103;
}

/// A CNI error: printed on stdout as `{"cniVersion","code","msg","details"}`
/// with a non-zero exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: u32,
    /// A short message characterizing the error.
    pub msg: String,
    /// What exactly went wrong and how to fix it.
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// Invalid network config, naming what is wrong.
    pub fn config(msg: impl Into<String>, details: impl Into<String>) -> CniError {
        CniError::new(code::INVALID_CONFIG, msg, details)
    }

    pub fn to_json(&self, version: &str) -> Value {
        json!({
            "cniVersion": version,
            "code": self.code,
            "msg": self.msg,
            "details": self.details,
        })
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.msg, self.code)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_print_in_the_spec_format() {
        let e = CniError::new(code::TRY_AGAIN_LATER, "podnetd is not running", "start it");
        assert_eq!(
            e.to_json("1.0.0"),
            json!({"cniVersion": "1.0.0", "code": 11, "msg": "podnetd is not running", "details": "start it"})
        );
    }
}
