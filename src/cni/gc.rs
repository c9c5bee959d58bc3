//! GC: unregister this network's endpoints that are not in
//! `cni.dev/valid-attachments`.
//!
//! podnetd's registry is node-wide; each endpoint records the CNI network
//! (the conflist's `name`) that registered it, and GC only looks at its
//! own network's. An endpoint registered before podnet recorded networks
//! has none: it counts as this network's when its `master` is this entry's
//! (both unset counts as equal).
//!
//! Unlike DEL, GC reports failures, podnetd being down included ("try again
//! later", 11), as the spec asks: a failed GC blocks nothing (the runtime
//! logs it and calls GC again later) and the stale endpoints stay in
//! podnetd's registry on disk for the next one.

use std::collections::HashSet;

use super::types::{code, CniError, NetConf};
use super::{daemon_error, Outcome, Podnetd};

pub fn gc(conf: &NetConf) -> Outcome {
    let valid = conf.valid_attachments.as_ref().ok_or_else(|| {
        CniError::config(
            "GC needs cni.dev/valid-attachments",
            "without the list of valid attachments every endpoint would look stale; the runtime fills it in",
        )
    })?;
    let valid: HashSet<(&str, &str)> = valid
        .iter()
        .map(|a| (a.container_id.as_str(), a.ifname.as_str()))
        .collect();
    let podnetd = Podnetd::new(&conf.socket);
    let registered = podnetd
        .call(|c| c.endpoints())
        .map_err(|e| daemon_error(e, "list the registered endpoints for GC"))?;
    let stale: Vec<_> = registered
        .iter()
        .filter(|r| match &r.endpoint.network {
            Some(network) => *network == conf.name,
            None => r.endpoint.master == conf.master,
        })
        .filter(|r| !valid.contains(&(r.container_id.as_str(), r.ifname.as_str())))
        .collect();
    let mut failures = Vec::new();
    for r in &stale {
        let (cid, ifname) = (r.container_id.as_str(), r.ifname.as_str());
        if let Err(e) = podnetd.call(|c| c.delete_endpoint(cid, ifname)) {
            // Go on: the spec wants as much removed as possible.
            failures.push(format!("{cid}/{ifname}: {e}"));
        }
    }
    let removed = stale.len() - failures.len();
    if removed > 0 {
        eprintln!(
            "podnet-cni: GC of network {}: unregistered {removed} stale endpoint(s)",
            conf.name
        );
    }
    if failures.is_empty() {
        return Ok(None);
    }
    Err(CniError::new(
        code::TRY_AGAIN_LATER,
        format!(
            "GC unregistered {removed} of {} stale endpoint(s)",
            stale.len()
        ),
        failures.join("; "),
    ))
}
