//! CHECK: the attachment must be registered with podnetd as ADD would
//! register it now (the spec has the runtime pass the same parameters and
//! ADD's result as `prevResult`), and its egress limit must be in force:
//! podnetd reads its master's program and the shaper's map to say so.

use crate::api::types::Endpoint;

use super::types::{code, CniError, NetConf};
use super::{add, daemon_error, Attachment, Outcome, Podnetd};

pub fn check(conf: &NetConf, at: &Attachment) -> Outcome {
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        CniError::config(
            "CHECK needs prevResult",
            "the runtime passes the result of the attachment's ADD as prevResult",
        )
    })?;
    let want = add::endpoint(conf, at, prev)?;
    let podnetd = Podnetd::new(&conf.socket);
    let got = podnetd
        .call(|c| c.endpoint(&at.container_id, &at.ifname))
        .map_err(|e| daemon_error(e, "check the pod's registration"))?;
    let Some(got) = got else {
        return Err(CniError::new(
            code::NOT_AS_REGISTERED,
            format!("{}/{} is not registered with podnetd", at.container_id, at.ifname),
            format!(
                "ADD registered it, so it was removed since (a GC, `podnetctl`, or podnetd found its netns gone); its traffic is not shaped. Registry: podnetd on {}",
                podnetd.socket().display()
            ),
        ));
    };
    let mut differences = differences(&want, &got.endpoint);
    if conf.rdma.is_some() && got.endpoint.rdma.is_none() {
        differences.push("rdma: the entry asks for an RDMA device, podnetd records none".into());
    }
    if !differences.is_empty() {
        return Err(CniError::new(
            code::NOT_AS_REGISTERED,
            format!(
                "{}/{} is registered differently from what ADD registers",
                at.container_id, at.ifname
            ),
            differences.join("; "),
        ));
    }
    if let Some(e) = got.enforcement.filter(|e| !e.enforced) {
        return Err(CniError::new(
            code::NOT_ENFORCED,
            format!(
                "{}/{}: its egress limit is not in force",
                at.container_id, at.ifname
            ),
            e.problems.join("; "),
        ));
    }
    Ok(None)
}

/// What differs between the endpoint ADD would register and the one
/// registered, one line per field. Addresses compare as sets.
pub fn differences(want: &Endpoint, got: &Endpoint) -> Vec<String> {
    fn show<T: std::fmt::Debug>(v: &Option<T>) -> String {
        v.as_ref().map_or("none".into(), |v| format!("{v:?}"))
    }
    let mut out = Vec::new();
    let mut a = want.ips.clone();
    let mut b = got.ips.clone();
    a.sort();
    b.sort();
    if a != b {
        let list = |v: &[ipnet::IpNet]| {
            v.iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push(format!(
            "ips: prevResult has [{}], podnetd has [{}]",
            list(&a),
            list(&b)
        ));
    }
    let mut field = |name: &str, w: String, g: String| {
        if w != g {
            out.push(format!("{name}: expected {w}, podnetd has {g}"));
        }
    };
    field("netns", show(&want.netns), show(&got.netns));
    field("master", show(&want.master), show(&got.master));
    field("veth", show(&want.veth), show(&got.veth));
    field("tier", show(&want.tier), show(&got.tier));
    field("egress", show(&want.egress), show(&got.egress));
    field("ingress", show(&want.ingress), show(&got.ingress));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(ips: &[&str]) -> Endpoint {
        Endpoint {
            netns: Some("/var/run/netns/p".into()),
            ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
            master: Some("ens192".into()),
            veth: None,
            tier: Some("gold".into()),
            egress: None,
            ingress: Some(1000),
            network: None,
            vf: None,
            rdma: None,
        }
    }

    #[test]
    fn addresses_compare_as_sets() {
        assert!(differences(
            &ep(&["10.0.0.1/24", "fd00::1/64"]),
            &ep(&["fd00::1/64", "10.0.0.1/24"])
        )
        .is_empty());
        let d = differences(&ep(&["10.0.0.1/24"]), &ep(&["10.0.0.2/24"]));
        assert_eq!(
            d,
            ["ips: prevResult has [10.0.0.1/24], podnetd has [10.0.0.2/24]"]
        );
    }

    #[test]
    fn every_field_is_compared() {
        let mut other = ep(&["10.0.0.1/24"]);
        other.tier = None;
        other.egress = Some(5);
        let d = differences(&ep(&["10.0.0.1/24"]), &other);
        assert_eq!(
            d,
            [
                "tier: expected \"gold\", podnetd has none",
                "egress: expected none, podnetd has 5"
            ]
        );
    }
}
