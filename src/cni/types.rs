//! What podnet-cni reads and writes: the spec versions it speaks, the CNI
//! error object, the network configuration the runtime derives from one
//! conflist entry, and the previous plugin's result in each spec version.
//!
//! The configuration is read from a parsed [`Value`] field by field rather
//! than through a derived `Deserialize`, so every error names the key it is
//! about (`runtimeConfig.bandwidth.egressRate must be ...`), and keys this
//! plugin does not know (the runtime passes other plugins' conventions
//! through to every plugin of a chain) are ignored.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde_json::{json, Map, Value};

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

/// `runtimeConfig.bandwidth`, the CNI `bandwidth` capability as libcni fills
/// it when the conflist entry declares `capabilities: {"bandwidth": true}`.
///
/// Units are the convention's (CONVENTIONS.md of the CNI repository, and the
/// `bandwidth` plugin that defined it): rates in **bits per second**, bursts
/// in **bits**. kubelet and containerd put the pod's
/// `kubernetes.io/{ingress,egress}-bandwidth` quantity in the rate as is
/// (`100M` → 100000000) and a burst meaning "no limit" (2^31-1 from
/// kubelet's dockershim, 2^32-1 from containerd and CRI-O), so the burst a
/// pod gets comes from the node's tiers, not from here. A rate of 0 or no
/// rate means no explicit limit.
///
/// ```json
/// "runtimeConfig": {"bandwidth": {"egressRate": 100000000, "egressBurst": 4294967295}}
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bandwidth {
    /// bit/s into the pod.
    pub ingress_rate: Option<u64>,
    /// bits.
    pub ingress_burst: Option<u64>,
    /// bit/s out of the pod.
    pub egress_rate: Option<u64>,
    /// bits.
    pub egress_burst: Option<u64>,
}

impl Bandwidth {
    /// The explicit ingress limit, `None` for "no limit" (absent or 0).
    pub fn ingress(&self) -> Option<u64> {
        self.ingress_rate.filter(|r| *r > 0)
    }

    /// The explicit egress limit, `None` for "no limit" (absent or 0).
    pub fn egress(&self) -> Option<u64> {
        self.egress_rate.filter(|r| *r > 0)
    }
}

/// One still-valid attachment of a GC request.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
}

/// The request configuration: one conflist entry as the runtime derives it
/// (with `cniVersion`, `name`, `runtimeConfig`, `prevResult`, `args` and, for
/// GC, `cni.dev/valid-attachments` filled in).
///
/// The keys podnet-cni reads from the conflist entry:
///
/// ```json
/// {
///   "type": "podnet-cni",
///   "socket": "/run/podnet/podnet.sock",
///   "master": "ens192",
///   "tier": "silver",
///   "capabilities": {"bandwidth": true}
/// }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub version: SpecVersion,
    /// The network's name (`name`).
    pub name: String,
    /// podnetd's socket (`socket`), [`crate::api::DEFAULT_SOCKET`] unless set.
    pub socket: PathBuf,
    /// The network's default tier (`tier`).
    pub tier: Option<String>,
    /// The master this network's pods hang off (`master`), passed on to
    /// podnetd.
    pub master: Option<String>,
    /// A tier for this attachment from `args.cni.tier`.
    pub args_tier: Option<String>,
    /// `runtimeConfig.bandwidth`.
    pub bandwidth: Bandwidth,
    /// `prevResult`, as given.
    pub prev_result: Option<Value>,
    /// `cni.dev/valid-attachments` (GC only).
    pub valid_attachments: Option<Vec<Attachment>>,
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

/// Parses stdin as JSON; not JSON (or not an object) is a decoding failure.
pub fn decode(stdin: &[u8]) -> Result<Value, CniError> {
    if stdin.iter().all(u8::is_ascii_whitespace) {
        return Err(CniError::new(
            code::DECODE,
            "no network configuration on stdin",
            "the runtime passes the network configuration as JSON on stdin",
        ));
    }
    let value: Value = serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(
            code::DECODE,
            "the network configuration on stdin is not JSON",
            e.to_string(),
        )
    })?;
    if !value.is_object() {
        return Err(CniError::new(
            code::DECODE,
            "the network configuration on stdin is not a JSON object",
            format!("got {}", kind(&value)),
        ));
    }
    Ok(value)
}

impl NetConf {
    /// Reads the request configuration. Checks what every command needs:
    /// `cniVersion` one podnet-cni speaks, a valid `name`, and podnet's own
    /// keys well typed; what only some commands need (`prevResult`,
    /// `cni.dev/valid-attachments`) is checked by them.
    pub fn parse(conf: &Value) -> Result<NetConf, CniError> {
        let version = match conf.get("cniVersion") {
            None | Some(Value::Null) => {
                return Err(CniError::new(
                    code::INCOMPATIBLE_VERSION,
                    "the network configuration has no cniVersion",
                    format!(
                        "a configuration without cniVersion is spec 0.1.0; podnet-cni speaks {}",
                        SUPPORTED_VERSIONS.join(", ")
                    ),
                ))
            }
            Some(Value::String(s)) => SpecVersion::parse(s).ok_or_else(|| {
                CniError::new(
                    code::INCOMPATIBLE_VERSION,
                    format!("incompatible CNI version {s}"),
                    format!("podnet-cni speaks {}", SUPPORTED_VERSIONS.join(", ")),
                )
            })?,
            Some(other) => {
                return Err(CniError::new(
                    code::DECODE,
                    "cniVersion must be a string",
                    format!("got {}", kind(other)),
                ))
            }
        };
        let name = match conf.get("name") {
            None | Some(Value::Null) => {
                return Err(CniError::config(
                    "missing network name",
                    "`name` is not set",
                ))
            }
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(CniError::config(
                    "`name` must be a string",
                    format!("got {}", kind(other)),
                ))
            }
        };
        if !valid_cni_name(&name) {
            return Err(CniError::config(
                format!("invalid network name {name:?}"),
                "a network name starts with a letter or digit, followed by letters, digits, `_`, `.` or `-`",
            ));
        }

        let socket = match opt_string(conf, "socket")? {
            None => PathBuf::from(crate::api::DEFAULT_SOCKET),
            Some(s) if s.starts_with('/') => PathBuf::from(s),
            Some(s) => {
                return Err(CniError::config(
                    format!("`socket` must be an absolute path, got {s:?}"),
                    "the runtime may run the plugin in any directory",
                ))
            }
        };
        let tier = opt_string(conf, "tier")?
            .map(|t| check_tier(&t, "tier"))
            .transpose()?;
        let master = opt_string(conf, "master")?;
        if let Some(m) = &master {
            if !crate::config::schema::valid_ifname(m) {
                return Err(CniError::config(
                    format!("`master` is not an interface name: {m:?}"),
                    "at most 15 bytes, without `/`, `:` or whitespace",
                ));
            }
        }
        let args_tier = args_tier(conf)?;
        let bandwidth = bandwidth(conf)?;
        let prev_result = match conf.get("prevResult") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => Some(v.clone()),
            Some(other) => {
                return Err(CniError::config(
                    "`prevResult` must be an object",
                    format!("got {}", kind(other)),
                ))
            }
        };
        let valid_attachments = valid_attachments(conf)?;
        Ok(NetConf {
            version,
            name,
            socket,
            tier,
            master,
            args_tier,
            bandwidth,
            prev_result,
            valid_attachments,
        })
    }
}

/// A CNI name (container id, network name): a letter or digit, then letters,
/// digits, `_`, `.` or `-`.
pub fn valid_cni_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A tier name as the node files spell them; whether the node defines it is
/// podnetd's to say.
pub fn check_tier(tier: &str, key: &str) -> Result<String, CniError> {
    if !tier.is_empty() && !tier.chars().any(char::is_control) {
        Ok(tier.to_string())
    } else {
        Err(CniError::config(
            format!("`{key}` is not a tier name: {tier:?}"),
            "a tier is named by a key of [tiers.*] in the node files",
        ))
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn opt_string(obj: &Value, key: &str) -> Result<Option<String>, CniError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(CniError::config(
            format!("`{key}` must be a string"),
            format!("got {}: {other}", kind(other)),
        )),
    }
}

/// `args.cni.tier`. Other `args` belong to other plugins and are ignored,
/// as the conventions ask.
fn args_tier(conf: &Value) -> Result<Option<String>, CniError> {
    match conf.pointer("/args/cni/tier") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => check_tier(s, "args.cni.tier").map(Some),
        Some(other) => Err(CniError::config(
            "`args.cni.tier` must be a string",
            format!("got {}", kind(other)),
        )),
    }
}

fn bandwidth(conf: &Value) -> Result<Bandwidth, CniError> {
    let bw = match conf.pointer("/runtimeConfig/bandwidth") {
        None | Some(Value::Null) => return Ok(Bandwidth::default()),
        Some(v @ Value::Object(_)) => v,
        Some(other) => {
            return Err(CniError::config(
                "`runtimeConfig.bandwidth` must be an object",
                format!("got {}", kind(other)),
            ))
        }
    };
    let field = |key: &str| -> Result<Option<u64>, CniError> {
        match bw.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
            Some(other) => Err(CniError::config(
                format!("`runtimeConfig.bandwidth.{key}` must be a whole number of bits (per second for rates)"),
                format!("got {other}"),
            )),
        }
    };
    Ok(Bandwidth {
        ingress_rate: field("ingressRate")?,
        ingress_burst: field("ingressBurst")?,
        egress_rate: field("egressRate")?,
        egress_burst: field("egressBurst")?,
    })
}

fn valid_attachments(conf: &Value) -> Result<Option<Vec<Attachment>>, CniError> {
    const KEY: &str = "cni.dev/valid-attachments";
    let list = match conf.get(KEY) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(CniError::config(
                format!("`{KEY}` must be an array"),
                format!("got {}", kind(other)),
            ))
        }
    };
    list.iter()
        .enumerate()
        .map(|(i, a)| {
            let get = |k: &str| match a.get(k) {
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                _ => Err(CniError::config(
                    format!("`{KEY}[{i}].{k}` must be a non-empty string"),
                    format!("got {a}"),
                )),
            };
            Ok(Attachment {
                container_id: get("containerID")?,
                ifname: get("ifname")?,
            })
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

/// What podnet-cni needs of a previous result: its interfaces and addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrevResult {
    pub interfaces: Vec<PrevInterface>,
    pub ips: Vec<PrevIp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrevInterface {
    pub name: String,
    /// The netns path for an interface in the container; `None` (or empty)
    /// on the host.
    pub sandbox: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrevIp {
    pub address: IpNet,
    /// Index into `interfaces`.
    pub interface: Option<usize>,
}

impl PrevResult {
    /// Reads `prevResult` in the format of `version`: 0.3.1 and 0.4.0 give
    /// each IP a `version` ("4"/"6"), checked against the address; 1.x has
    /// none (one left there by an older plugin is ignored).
    pub fn parse(prev: &Value, version: SpecVersion) -> Result<PrevResult, CniError> {
        let bad = |msg: String, got: &Value| CniError::config(msg, format!("got {got}"));
        if prev.get("ip4").is_some() || prev.get("ip6").is_some() {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                "prevResult is in the 0.2.0 format (`ip4`/`ip6`)",
                format!(
                    "the network's cniVersion is {version}; run every plugin of the conflist at one version ({})",
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
        let interfaces = match prev.get("interfaces") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(list)) => list
                .iter()
                .enumerate()
                .map(|(i, iface)| {
                    let name = match iface.get("name") {
                        Some(Value::String(s)) => s.clone(),
                        _ => {
                            return Err(bad(
                                format!("prevResult.interfaces[{i}].name must be a string"),
                                iface,
                            ))
                        }
                    };
                    let sandbox = match iface.get("sandbox") {
                        None | Some(Value::Null) => None,
                        Some(Value::String(s)) if s.is_empty() => None,
                        Some(Value::String(s)) => Some(s.clone()),
                        Some(_) => {
                            return Err(bad(
                                format!("prevResult.interfaces[{i}].sandbox must be a string"),
                                iface,
                            ))
                        }
                    };
                    Ok(PrevInterface { name, sandbox })
                })
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(bad("prevResult.interfaces must be an array".into(), other)),
        };
        let ips = match prev.get("ips") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(list)) => list
                .iter()
                .enumerate()
                .map(|(i, ip)| parse_ip(i, ip, version, interfaces.len()))
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(bad("prevResult.ips must be an array".into(), other)),
        };
        Ok(PrevResult { interfaces, ips })
    }

    /// The addresses of the pod's interface `ifname`: the IPs whose
    /// `interface` is the sandbox interface of that name, and the IPs that
    /// name no interface at all (a result may leave `interface` out).
    pub fn pod_ips(&self, ifname: &str) -> Vec<IpNet> {
        self.ips
            .iter()
            .filter(|ip| match ip.interface {
                None => true,
                Some(i) => self
                    .interfaces
                    .get(i)
                    .is_some_and(|iface| iface.name == ifname && iface.sandbox.is_some()),
            })
            .map(|ip| ip.address)
            .collect()
    }
}

fn parse_ip(
    i: usize,
    ip: &Value,
    version: SpecVersion,
    interfaces: usize,
) -> Result<PrevIp, CniError> {
    let bad = |msg: String| CniError::config(msg, format!("got {ip}"));
    let address: IpNet = match ip.get("address") {
        Some(Value::String(s)) => s.parse().map_err(|_| {
            bad(format!(
                "prevResult.ips[{i}].address is not an address with a prefix length (CIDR): {s:?}"
            ))
        })?,
        _ => return Err(bad(format!("prevResult.ips[{i}].address must be a string"))),
    };
    let interface = match ip.get("interface") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_u64().and_then(|n| usize::try_from(n).ok()) {
            Some(n) if n < interfaces => Some(n),
            _ => {
                return Err(bad(format!(
                    "prevResult.ips[{i}].interface is not an index into prevResult.interfaces ({interfaces} of them)"
                )))
            }
        },
        Some(_) => {
            return Err(bad(format!(
                "prevResult.ips[{i}].interface must be a number"
            )))
        }
    };
    if version.has_ip_version_field() {
        let family = match address.addr() {
            IpAddr::V4(_) => "4",
            IpAddr::V6(_) => "6",
        };
        match ip.get("version") {
            None | Some(Value::Null) => {}
            Some(Value::String(v)) if v == family => {}
            Some(other) => {
                return Err(bad(format!(
                    "prevResult.ips[{i}].version is {other} but {address} is IPv{family}"
                )))
            }
        }
    }
    Ok(PrevIp { address, interface })
}

/// The result ADD prints: `prevResult` unchanged but for `cniVersion`, which
/// is the config's. A previous plugin that answered in the other result
/// format (libcni never mixes them; a hand-written chain might) is brought to
/// the config's format: `ips[].version` added for 0.3.1/0.4.0 and dropped for
/// 1.x.
pub fn pass_through(prev: &Value, version: SpecVersion) -> Value {
    let mut out: Map<String, Value> = prev.as_object().cloned().unwrap_or_default();
    let declared = out
        .get("cniVersion")
        .and_then(Value::as_str)
        .map(|v| v.starts_with("0."));
    out.insert("cniVersion".into(), version.as_str().into());
    let wants_field = version.has_ip_version_field();
    if declared.is_some_and(|old| old != wants_field) {
        if let Some(Value::Array(ips)) = out.get_mut("ips") {
            for ip in ips.iter_mut().filter_map(Value::as_object_mut) {
                if !wants_field {
                    ip.remove("version");
                    continue;
                }
                let family = ip
                    .get("address")
                    .and_then(Value::as_str)
                    .and_then(|a| a.parse::<IpNet>().ok())
                    .map(|a| if a.addr().is_ipv4() { "4" } else { "6" });
                if let (Some(f), false) = (family, ip.contains_key("version")) {
                    ip.insert("version".into(), f.into());
                }
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(extra: Value) -> Value {
        let mut c = json!({"cniVersion": "1.0.0", "name": "pods", "type": "podnet-cni"});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

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
    fn a_minimal_conf_takes_the_defaults() {
        let c = NetConf::parse(&conf(json!({}))).unwrap();
        assert_eq!(c.version, SpecVersion::V1_0_0);
        assert_eq!(c.name, "pods");
        assert_eq!(c.socket, PathBuf::from("/run/podnet/podnet.sock"));
        assert_eq!((c.tier, c.master, c.args_tier), (None, None, None));
        assert_eq!(c.bandwidth, Bandwidth::default());
        assert_eq!(c.prev_result, None);
        assert_eq!(c.valid_attachments, None);
    }

    #[test]
    fn podnet_keys_runtime_config_and_args_are_read() {
        let c = NetConf::parse(&conf(json!({
            "socket": "/tmp/x.sock",
            "tier": "silver",
            "master": "ens192",
            "capabilities": {"bandwidth": true},
            "runtimeConfig": {
                "bandwidth": {"ingressRate": 2048, "ingressBurst": 1600, "egressRate": 100000000u64, "egressBurst": 4294967295u64},
                "portMappings": []
            },
            "args": {"cni": {"tier": "gold", "labels": [{"key": "app", "value": "x"}]}},
            "someOtherPluginsKey": {"x": 1}
        })))
        .unwrap();
        assert_eq!(c.socket, PathBuf::from("/tmp/x.sock"));
        assert_eq!(c.tier.as_deref(), Some("silver"));
        assert_eq!(c.master.as_deref(), Some("ens192"));
        assert_eq!(c.args_tier.as_deref(), Some("gold"));
        assert_eq!(c.bandwidth.ingress(), Some(2048));
        assert_eq!(c.bandwidth.egress(), Some(100_000_000));
        assert_eq!(c.bandwidth.egress_burst, Some(4_294_967_295));
    }

    #[test]
    fn a_zero_rate_means_no_limit() {
        let c = NetConf::parse(&conf(json!({
            "runtimeConfig": {"bandwidth": {"ingressRate": 0, "ingressBurst": 0}}
        })))
        .unwrap();
        assert_eq!((c.bandwidth.ingress(), c.bandwidth.egress()), (None, None));
    }

    #[test]
    fn bad_values_are_config_errors_naming_the_key() {
        for (extra, key) in [
            (json!({"tier": 5}), "`tier`"),
            (json!({"tier": ""}), "`tier`"),
            (json!({"master": "a/b"}), "`master`"),
            (json!({"socket": "rel/podnet.sock"}), "`socket`"),
            (
                json!({"runtimeConfig": {"bandwidth": {"egressRate": -1}}}),
                "egressRate",
            ),
            (
                json!({"runtimeConfig": {"bandwidth": {"egressRate": 1.5e8}}}),
                "egressRate",
            ),
            (
                json!({"runtimeConfig": {"bandwidth": {"ingressRate": "100M"}}}),
                "ingressRate",
            ),
            (json!({"runtimeConfig": {"bandwidth": []}}), "bandwidth"),
            (
                json!({"args": {"cni": {"tier": ["gold"]}}}),
                "args.cni.tier",
            ),
            (json!({"prevResult": []}), "prevResult"),
            (
                json!({"cni.dev/valid-attachments": {}}),
                "valid-attachments",
            ),
            (
                json!({"cni.dev/valid-attachments": [{"containerID": "a"}]}),
                "ifname",
            ),
            (json!({"name": "-bad"}), "network name"),
            (json!({"name": 3}), "`name`"),
        ] {
            let e = NetConf::parse(&conf(extra.clone())).unwrap_err();
            assert_eq!(e.code, code::INVALID_CONFIG, "{extra}: {e}");
            assert!(e.msg.contains(key), "{extra}: {e}");
        }
    }

    #[test]
    fn versions_outside_the_supported_set_are_incompatible() {
        for v in [json!("0.2.0"), json!("0.3.0"), json!("2.0.0")] {
            let e = NetConf::parse(&conf(json!({"cniVersion": v}))).unwrap_err();
            assert_eq!(e.code, code::INCOMPATIBLE_VERSION, "{e}");
        }
        let mut c = conf(json!({}));
        c.as_object_mut().unwrap().remove("cniVersion");
        assert_eq!(
            NetConf::parse(&c).unwrap_err().code,
            code::INCOMPATIBLE_VERSION
        );
        let e = NetConf::parse(&conf(json!({"cniVersion": 1}))).unwrap_err();
        assert_eq!(e.code, code::DECODE);
        let mut c = conf(json!({}));
        c.as_object_mut().unwrap().remove("name");
        assert_eq!(NetConf::parse(&c).unwrap_err().code, code::INVALID_CONFIG);
    }

    #[test]
    fn valid_attachments_are_read() {
        let c = NetConf::parse(&conf(json!({
            "cniVersion": "1.1.0",
            "cni.dev/valid-attachments": [
                {"containerID": "abc", "ifname": "eth0"},
                {"containerID": "def", "ifname": "net1"}
            ]
        })))
        .unwrap();
        assert_eq!(
            c.valid_attachments.unwrap(),
            vec![
                Attachment {
                    container_id: "abc".into(),
                    ifname: "eth0".into()
                },
                Attachment {
                    container_id: "def".into(),
                    ifname: "net1".into()
                }
            ]
        );
    }

    #[test]
    fn stdin_must_be_a_json_object() {
        assert_eq!(decode(b"").unwrap_err().code, code::DECODE);
        assert_eq!(decode(b"{nope").unwrap_err().code, code::DECODE);
        assert_eq!(decode(b"[1]").unwrap_err().code, code::DECODE);
        assert!(decode(br#"{"a":1}"#).is_ok());
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

    /// What ipvlan + host-local return, in each result format.
    fn ipvlan_result(version: &str) -> Value {
        let v0 = version.starts_with("0.");
        let mut ip4 = json!({"address": "172.51.0.10/24", "gateway": "172.51.0.1", "interface": 0});
        let mut ip6 = json!({"address": "fd00::10/64", "interface": 0});
        if v0 {
            ip4["version"] = "4".into();
            ip6["version"] = "6".into();
        }
        json!({
            "cniVersion": version,
            "interfaces": [{"name": "eth0", "mac": "02:42:ac:33:00:0a", "sandbox": "/var/run/netns/cni-1"}],
            "ips": [ip4, ip6],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {}
        })
    }

    #[test]
    fn prev_results_of_every_version_give_the_pod_ips() {
        for v in SUPPORTED_VERSIONS {
            let version = SpecVersion::parse(v).unwrap();
            let prev = PrevResult::parse(&ipvlan_result(v), version).unwrap();
            assert_eq!(
                prev.pod_ips("eth0"),
                vec![
                    "172.51.0.10/24".parse::<IpNet>().unwrap(),
                    "fd00::10/64".parse().unwrap()
                ],
                "{v}"
            );
            assert_eq!(prev.pod_ips("net1"), vec![], "{v}");
        }
    }

    #[test]
    fn only_the_sandbox_interface_of_ifname_counts() {
        let prev = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "eth0"},
                {"name": "eth0", "sandbox": "/var/run/netns/p"},
                {"name": "net1", "sandbox": "/var/run/netns/p"}
            ],
            "ips": [
                {"address": "10.0.0.1/32", "interface": 0},
                {"address": "10.0.0.2/24", "interface": 1},
                {"address": "10.0.1.2/24", "interface": 2},
                {"address": "10.0.2.2/24"}
            ]
        });
        let p = PrevResult::parse(&prev, SpecVersion::V1_0_0).unwrap();
        let ips: Vec<String> = p.pod_ips("eth0").iter().map(|i| i.to_string()).collect();
        assert_eq!(ips, ["10.0.0.2/24", "10.0.2.2/24"]);
    }

    #[test]
    fn broken_prev_results_are_refused() {
        for (prev, needle) in [
            (json!({"ips": [{"address": "10.0.0.1"}]}), "CIDR"),
            (json!({"ips": [{"address": 7}]}), "address"),
            (
                json!({"ips": [{"address": "10.0.0.1/24", "interface": 0}]}),
                "index",
            ),
            (
                json!({"interfaces": [{"name": "eth0"}], "ips": [{"address": "10.0.0.1/24", "interface": -1}]}),
                "index",
            ),
            (json!({"ips": {}}), "ips"),
            (json!({"interfaces": [{"mac": "x"}]}), "name"),
            (
                json!({"ips": [{"address": "10.0.0.1/24", "version": "6"}]}),
                "IPv4",
            ),
        ] {
            let e = PrevResult::parse(&prev, SpecVersion::V0_4_0).unwrap_err();
            assert_eq!(e.code, code::INVALID_CONFIG, "{prev}");
            assert!(e.msg.contains(needle), "{prev}: {e}");
        }
        let e = PrevResult::parse(
            &json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.1/24"}}),
            SpecVersion::V0_3_1,
        )
        .unwrap_err();
        assert_eq!(e.code, code::INCOMPATIBLE_VERSION);
        // 1.x has no `version`: one left there is ignored, not checked.
        PrevResult::parse(
            &json!({"ips": [{"address": "10.0.0.1/24", "version": "6"}]}),
            SpecVersion::V1_0_0,
        )
        .unwrap();
    }

    #[test]
    fn pass_through_keeps_the_result_and_sets_the_configs_version() {
        for v in SUPPORTED_VERSIONS {
            let prev = ipvlan_result(v);
            let version = SpecVersion::parse(v).unwrap();
            assert_eq!(pass_through(&prev, version), prev, "{v}");
        }
        // Same format family, other version: only cniVersion changes.
        let out = pass_through(&ipvlan_result("0.3.1"), SpecVersion::V0_4_0);
        let mut want = ipvlan_result("0.3.1");
        want["cniVersion"] = "0.4.0".into();
        assert_eq!(out, want);
        // A result without cniVersion (allowed before 1.0.0) gets the config's.
        let mut bare = ipvlan_result("0.4.0");
        bare.as_object_mut().unwrap().remove("cniVersion");
        assert_eq!(
            pass_through(&bare, SpecVersion::V0_4_0),
            ipvlan_result("0.4.0")
        );
    }

    #[test]
    fn pass_through_converts_between_result_formats() {
        assert_eq!(
            pass_through(&ipvlan_result("1.0.0"), SpecVersion::V0_4_0),
            ipvlan_result("0.4.0")
        );
        assert_eq!(
            pass_through(&ipvlan_result("0.3.1"), SpecVersion::V1_1_0),
            ipvlan_result("1.1.0")
        );
    }

    #[test]
    fn errors_print_in_the_spec_format() {
        let e = CniError::new(code::TRY_AGAIN_LATER, "podnetd is not running", "start it");
        assert_eq!(
            e.to_json("1.0.0"),
            json!({"cniVersion": "1.0.0", "code": 11, "msg": "podnetd is not running", "details": "start it"})
        );
    }
}
