//! How each declared object stands, from a plan: shared by `podnetctl
//! status` (run directly) and podnetd's `/v1/status`.

use crate::api::types::{MasterInfo, Node, ObjectState, TierInfo};
use crate::config::NodeConfig;
use crate::plan::{Plan, Role};
use crate::state::Observed;

/// One entry per declared master and shim: converged, drifted (with the
/// steps still to run on it) or failed (its master is missing).
pub fn object_states(desired: &NodeConfig, observed: &Observed, plan: &Plan) -> Vec<ObjectState> {
    let mut out = Vec::new();
    let mut add = |role: Role, name: &str, failed: bool| {
        let pending: Vec<String> = plan
            .actions
            .iter()
            .filter(|a| a.role == role && a.name == name)
            .map(|a| a.to_string())
            .collect();
        let state = if failed {
            "failed"
        } else if pending.is_empty() {
            "converged"
        } else {
            "drifted"
        };
        out.push(ObjectState {
            object: format!(
                "{} {name}",
                if role == Role::Master {
                    "master"
                } else {
                    "shim"
                }
            ),
            state: state.into(),
            pending,
        });
    };
    for (name, master) in &desired.masters {
        let missing = observed.link(name).is_none();
        add(Role::Master, name, missing);
        if let Some(shim) = &master.shim {
            add(Role::Shim, &shim.name, missing);
        }
    }
    out
}

/// What the CNI plugin needs to know about the node, from the node files.
pub fn node_info(desired: &NodeConfig, generation: u64, converged_generation: Option<u64>) -> Node {
    Node {
        generation,
        converged_generation,
        masters: desired
            .masters
            .iter()
            .map(|(name, m)| MasterInfo {
                name: name.clone(),
                kind: m.kind.to_string(),
                mode: m.effective_mode().to_string(),
                mtu: m.mtu,
                shim: m.shim.as_ref().map(|s| s.name.clone()),
            })
            .collect(),
        tiers: desired
            .tiers
            .iter()
            .map(|(name, t)| TierInfo {
                name: name.clone(),
                egress: t.egress.map(|r| r.bits_per_second()),
                ingress: t.ingress.map(|r| r.bits_per_second()),
            })
            .collect(),
        default_tier: desired
            .shaping
            .as_ref()
            .and_then(|s| s.default_tier.clone()),
    }
}
