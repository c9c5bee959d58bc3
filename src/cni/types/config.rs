//! The network configuration the runtime passes on stdin: one conflist
//! entry with the runtime's additions, read into [`NetConf`].
//!
//! The configuration is read from a parsed [`Value`] field by field rather
//! than through a derived `Deserialize`, so every error names the key it is
//! about (`runtimeConfig.bandwidth.egressRate must be ...`), and keys this
//! plugin does not know (the runtime passes other plugins' conventions
//! through to every plugin of a chain) are ignored.

use std::path::PathBuf;

use serde_json::Value;

use super::error::{code, CniError};
use super::version::{SpecVersion, SUPPORTED_VERSIONS};

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
    /// The SR-IOV VF the pod's interface is (`deviceID`: its PCI address,
    /// which Multus puts into each plugin's config from the device plugin's
    /// allocation, and sriov-cni reads).
    pub device_id: Option<String>,
    /// `rdma`: hand the pod an RDMA device (HCA).
    pub rdma: Option<RdmaWant>,
    /// `prevResult`, as given.
    pub prev_result: Option<Value>,
    /// `cni.dev/valid-attachments` (GC only).
    pub valid_attachments: Option<Vec<Attachment>>,
}

/// Which RDMA device an attachment gets (`rdma` in the entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RdmaWant {
    /// `true`: the one on the pod's VF (`deviceID`), else on `master`.
    OnInterface,
    /// `"mlx5_3"`: this one.
    Named(String),
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
        let device_id = opt_string(conf, "deviceID")?;
        if let Some(d) = &device_id {
            if !crate::sysfs::valid_pci_address(d) {
                return Err(CniError::config(
                    format!("`deviceID` is not a PCI address: {d:?}"),
                    "a VF's PCI address, as 0000:01:10.0",
                ));
            }
        }
        let rdma = match conf.get("rdma") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => None,
            Some(Value::Bool(true)) => Some(RdmaWant::OnInterface),
            Some(Value::String(s)) if !s.is_empty() && s.len() < 64 && !s.contains('/') => {
                Some(RdmaWant::Named(s.clone()))
            }
            Some(other) => {
                return Err(CniError::config(
                    format!("`rdma` is neither true, false nor an RDMA device's name: {other}"),
                    "`\"rdma\": true` hands the pod the RDMA device on its VF (`deviceID`) or on `master`; `\"rdma\": \"mlx5_3\"` names one",
                ))
            }
        };
        if rdma == Some(RdmaWant::OnInterface) && device_id.is_none() && master.is_none() {
            return Err(CniError::config(
                "`rdma: true` needs `master` or `deviceID`",
                "the RDMA device handed to the pod is the one on its VF (`deviceID`) or on `master`; or name it (`\"rdma\": \"mlx5_3\"`)",
            ));
        }
        let valid_attachments = valid_attachments(conf)?;
        Ok(NetConf {
            version,
            name,
            socket,
            tier,
            master,
            args_tier,
            bandwidth,
            device_id,
            rdma,
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn conf(extra: Value) -> Value {
        let mut c = json!({"cniVersion": "1.0.0", "name": "pods", "type": "podnet-cni"});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    #[test]
    fn rdma_is_true_false_or_a_device_name() {
        let parse = |v: Value| NetConf::parse(&conf(v));
        assert_eq!(parse(json!({})).unwrap().rdma, None);
        assert_eq!(parse(json!({"rdma": false})).unwrap().rdma, None);
        assert_eq!(
            parse(json!({"rdma": true, "master": "ens192"}))
                .unwrap()
                .rdma,
            Some(RdmaWant::OnInterface)
        );
        assert_eq!(
            parse(json!({"rdma": true, "deviceID": "0000:01:10.2"}))
                .unwrap()
                .rdma,
            Some(RdmaWant::OnInterface)
        );
        assert_eq!(
            parse(json!({"rdma": "mlx5_3"})).unwrap().rdma,
            Some(RdmaWant::Named("mlx5_3".into()))
        );
        let e = parse(json!({"rdma": true})).unwrap_err();
        assert!(e.msg.contains("needs `master` or `deviceID`"), "{e}");
        for bad in [json!(7), json!(""), json!("a/b"), json!(["mlx5_0"])] {
            let e = parse(json!({ "rdma": bad })).unwrap_err();
            assert_eq!(e.code, code::INVALID_CONFIG);
            assert!(e.msg.contains("`rdma` is neither"), "{e}");
        }
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
}
