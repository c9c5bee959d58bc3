//! The previous plugin's result in each spec version: what ADD and CHECK
//! read from it (the pod's addresses) and what ADD prints (it, passed
//! through in the config's version).

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value};

use super::error::{code, CniError};
use super::version::{SpecVersion, SUPPORTED_VERSIONS};

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
    /// A veth pod's host-side veth: the host interface (no sandbox) listed
    /// right before the pod's `ifname`, as the ptp (`[host veth, pod]`) and
    /// bridge (`[bridge, host veth, pod]`) plugins list them. None when
    /// the pod's interface comes first (macvlan, ipvlan) or is not listed.
    pub fn host_veth(&self, ifname: &str) -> Option<String> {
        let pod = self
            .interfaces
            .iter()
            .position(|i| i.name == ifname && i.sandbox.is_some())?;
        let before = self.interfaces.get(pod.checked_sub(1)?)?;
        before.sandbox.is_none().then(|| before.name.clone())
    }

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
    use serde_json::json;

    use super::*;

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
}
