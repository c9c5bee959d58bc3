//! ADD: register the pod's interface with podnetd, then hand `prevResult`
//! on unchanged.

use crate::api::types::Endpoint;

use super::types::{pass_through, CniError, NetConf, PrevResult};
use super::{daemon_error, Attachment, Outcome, Podnetd};

/// Registers the attachment and answers `prevResult` (in the config's
/// `cniVersion`). Everything is checked before podnetd is asked, and nothing
/// is registered when a check fails.
pub fn add(conf: &NetConf, at: &Attachment) -> Outcome {
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        CniError::config(
            "podnet-cni is a chained plugin: no prevResult",
            "put it after the plugin that makes the pod's interface (ipvlan or macvlan) in the conflist's `plugins`",
        )
    })?;
    let mut endpoint = endpoint(conf, at, prev)?;
    let podnetd = Podnetd::new(&conf.socket);
    let handed = match conf.rdma {
        Some(_) => {
            let node = podnetd
                .call(|c| c.node())
                .map_err(|e| daemon_error(e, "read the node's RDMA devices"))?;
            super::rdma::hand_over(conf, at, &node, || super::rdma::registered(&podnetd, at))?
        }
        None => None,
    };
    endpoint.rdma = handed.as_ref().map(|h| h.name.clone());
    if let Err(e) = podnetd.call(|c| c.put_endpoint(&at.container_id, &at.ifname, &endpoint)) {
        // Nothing half-applied: the device goes back to the host.
        if let (Some(h), Some(netns)) = (handed.filter(|h| h.moved), &at.netns) {
            if let Err(back) = super::rdma::give_back(netns, &h.name) {
                eprintln!("podnet-cni: ADD {}/{}: {back}", at.container_id, at.ifname);
            }
        }
        return Err(daemon_error(
            e,
            &format!("register {}/{}", at.container_id, at.ifname),
        ));
    }
    Ok(Some(pass_through(prev, conf.version)))
}

/// The endpoint ADD registers for this attachment, and CHECK expects.
///
/// The tier is the attachment's own when it names one (`args.cni.tier`,
/// which the CNI conventions prefer over the deprecated `CNI_ARGS`, then
/// `PODNET_TIER` in `CNI_ARGS`), else the network's (`tier` in the conflist
/// entry). The explicit rates are the bandwidth capability's; how rates and
/// tiers combine is the node's policy, applied by podnetd.
pub fn endpoint(
    conf: &NetConf,
    at: &Attachment,
    prev: &serde_json::Value,
) -> Result<Endpoint, CniError> {
    let prev = PrevResult::parse(prev, conf.version)?;
    let ips = prev.pod_ips(&at.ifname);
    if ips.is_empty() {
        return Err(CniError::config(
            format!("prevResult has no address on {}", at.ifname),
            format!(
                "podnet shapes a pod by its addresses: the plugin before podnet-cni must assign {} one (an `ipam` section); prevResult lists {} address(es) on other interfaces",
                at.ifname,
                prev.ips.len()
            ),
        ));
    }
    let tier = conf
        .args_tier
        .clone()
        .or_else(|| at.args_tier.clone())
        .or_else(|| conf.tier.clone());
    Ok(Endpoint {
        netns: at.netns.clone(),
        ips,
        master: conf.master.clone(),
        veth: prev.host_veth(&at.ifname),
        tier,
        egress: conf.bandwidth.egress(),
        ingress: conf.bandwidth.ingress(),
        network: Some(conf.name.clone()),
        vf: conf.device_id.clone(),
        rdma: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(args_tier: Option<&str>) -> Attachment {
        Attachment {
            container_id: "c0ffee".into(),
            ifname: "eth0".into(),
            netns: Some("/var/run/netns/cni-1".into()),
            args_tier: args_tier.map(Into::into),
        }
    }

    fn conf(extra: serde_json::Value) -> NetConf {
        let mut c = json!({
            "cniVersion": "0.4.0", "name": "pods", "type": "podnet-cni", "master": "ens192",
            "prevResult": {
                "cniVersion": "0.4.0",
                "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/cni-1"}],
                "ips": [{"version": "4", "address": "172.51.0.10/24", "interface": 0}]
            }
        });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        NetConf::parse(&c).unwrap()
    }

    fn ep(c: &NetConf, a: &Attachment) -> Result<Endpoint, CniError> {
        endpoint(c, a, c.prev_result.as_ref().unwrap())
    }

    #[test]
    fn the_endpoint_carries_netns_ips_master_rates_and_network() {
        let c = conf(
            json!({"runtimeConfig": {"bandwidth": {"egressRate": 100000000u64, "egressBurst": 2147483647u64}}}),
        );
        let e = ep(&c, &at(None)).unwrap();
        assert_eq!(
            e,
            Endpoint {
                netns: Some("/var/run/netns/cni-1".into()),
                ips: vec!["172.51.0.10/24".parse().unwrap()],
                master: Some("ens192".into()),
                veth: None,
                tier: None,
                egress: Some(100_000_000),
                ingress: None,
                network: Some("pods".into()),
                vf: None,
                rdma: None,
            }
        );
    }

    /// Multus's `deviceID` names the pod's VF: podnetd counts it in use.
    #[test]
    fn the_device_id_names_the_vf_and_must_be_a_pci_address() {
        let c = conf(json!({"deviceID": "0000:01:10.2"}));
        assert_eq!(
            ep(&c, &at(None)).unwrap().vf.as_deref(),
            Some("0000:01:10.2")
        );
        let mut bad = json!({"cniVersion": "1.0.0", "name": "pods", "deviceID": "enp1s0v2"});
        let err = NetConf::parse(&bad).unwrap_err();
        assert!(
            err.to_string().contains("`deviceID` is not a PCI address"),
            "{err}"
        );
        bad["deviceID"] = json!(7);
        assert!(NetConf::parse(&bad).is_err());
    }

    #[test]
    fn the_attachments_tier_wins_over_the_networks() {
        let c = conf(json!({"tier": "silver"}));
        assert_eq!(ep(&c, &at(None)).unwrap().tier.as_deref(), Some("silver"));
        assert_eq!(
            ep(&c, &at(Some("gold"))).unwrap().tier.as_deref(),
            Some("gold")
        );
        let c = conf(json!({"tier": "silver", "args": {"cni": {"tier": "bronze"}}}));
        assert_eq!(
            ep(&c, &at(Some("gold"))).unwrap().tier.as_deref(),
            Some("bronze")
        );
    }

    /// A veth pod's host-side veth is the host interface listed right
    /// before the pod's: ptp lists `[host veth, pod]`, bridge `[bridge,
    /// host veth, pod]`; macvlan/ipvlan list the pod's alone.
    #[test]
    fn a_veth_pods_host_side_is_the_host_interface_before_the_pods() {
        let prev = |interfaces: serde_json::Value| {
            json!({"prevResult": {
                "cniVersion": "0.4.0",
                "interfaces": interfaces,
                "ips": [{"version": "4", "address": "10.61.0.2/24", "interface": interfaces.as_array().unwrap().len() - 1}]
            }})
        };
        let cases = [
            (
                json!([{"name": "veth1a2b"}, {"name": "eth0", "sandbox": "/var/run/netns/cni-1"}]),
                Some("veth1a2b"),
            ),
            (
                json!([{"name": "cni0"}, {"name": "veth3c4d"}, {"name": "eth0", "sandbox": "/var/run/netns/cni-1"}]),
                Some("veth3c4d"),
            ),
            (
                json!([{"name": "eth0", "sandbox": "/var/run/netns/cni-1"}]),
                None,
            ),
        ];
        for (interfaces, want) in cases {
            let c = conf(prev(interfaces.clone()));
            assert_eq!(
                ep(&c, &at(None)).unwrap().veth.as_deref(),
                want,
                "{interfaces}"
            );
        }
    }

    #[test]
    fn no_address_on_the_interface_is_a_config_error() {
        let c = conf(json!({}));
        let mut a = at(None);
        a.ifname = "net1".into();
        let e = ep(&c, &a).unwrap_err();
        assert_eq!(e.code, super::super::types::code::INVALID_CONFIG);
        assert!(e.msg.contains("no address on net1"), "{e}");
    }
}
