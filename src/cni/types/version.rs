//! The CNI spec versions podnet-cni speaks, and what each one changes
//! for it (`ips[].version`, CHECK, STATUS and GC).

use std::fmt;

use serde_json::Value;

/// The spec versions podnet-cni implements, oldest first.
pub const SUPPORTED_VERSIONS: [&str; 4] = ["0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The newest supported version: what VERSION answers without an input
/// version, and what an error says when the config names none we know.
pub const LATEST: SpecVersion = SpecVersion::V1_1_0;

/// A CNI spec version podnet-cni implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SpecVersion {
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

impl SpecVersion {
    pub fn parse(s: &str) -> Option<SpecVersion> {
        match s {
            "0.3.1" => Some(SpecVersion::V0_3_1),
            "0.4.0" => Some(SpecVersion::V0_4_0),
            "1.0.0" => Some(SpecVersion::V1_0_0),
            "1.1.0" => Some(SpecVersion::V1_1_0),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SpecVersion::V0_3_1 => "0.3.1",
            SpecVersion::V0_4_0 => "0.4.0",
            SpecVersion::V1_0_0 => "1.0.0",
            SpecVersion::V1_1_0 => "1.1.0",
        }
    }

    /// Results before 1.0.0 carry `ips[].version` ("4" or "6"); 1.x
    /// results do not.
    pub fn has_ip_version_field(self) -> bool {
        self < SpecVersion::V1_0_0
    }

    /// CHECK exists since 0.4.0.
    pub fn has_check(self) -> bool {
        self >= SpecVersion::V0_4_0
    }

    /// STATUS and GC exist since 1.1.0.
    pub fn has_status_and_gc(self) -> bool {
        self >= SpecVersion::V1_1_0
    }
}

impl fmt::Display for SpecVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `cniVersion` to put in an answer to `stdin`: the config's when it is
/// one podnet-cni speaks, the latest otherwise.
pub fn reply_version(stdin: &Value) -> SpecVersion {
    stdin
        .get("cniVersion")
        .and_then(Value::as_str)
        .and_then(SpecVersion::parse)
        .unwrap_or(LATEST)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn versions_parse_and_order() {
        for v in SUPPORTED_VERSIONS {
            assert_eq!(SpecVersion::parse(v).unwrap().as_str(), v);
        }
        assert_eq!(SpecVersion::parse("0.3.0"), None);
        assert_eq!(SpecVersion::parse("1.2.0"), None);
        assert!(!SpecVersion::V0_3_1.has_check());
        assert!(SpecVersion::V0_4_0.has_check());
        assert!(!SpecVersion::V1_0_0.has_status_and_gc());
        assert!(SpecVersion::V1_1_0.has_status_and_gc());
        assert!(SpecVersion::V0_4_0.has_ip_version_field());
        assert!(!SpecVersion::V1_0_0.has_ip_version_field());
    }

    #[test]
    fn reply_version_is_the_configs_when_known() {
        assert_eq!(
            reply_version(&json!({"cniVersion": "0.4.0"})),
            SpecVersion::V0_4_0
        );
        assert_eq!(reply_version(&json!({"cniVersion": "9.9.9"})), LATEST);
        assert_eq!(reply_version(&json!({})), LATEST);
    }
}
