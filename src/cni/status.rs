//! STATUS: ready to serve ADD when podnetd answers and has converged a
//! generation of the node files (`converged_generation`); otherwise "plugin
//! not available" (50) with the reason.

use crate::api::types::Status;

use super::types::{code, CniError, NetConf};
use super::{Outcome, Podnetd};

pub fn status(conf: &NetConf) -> Outcome {
    let unavailable =
        |msg: String, details: String| CniError::new(code::NOT_AVAILABLE, msg, details);
    let status = Podnetd::new(&conf.socket)
        .call(|c| c.status())
        .map_err(|e| unavailable("podnetd is not available".into(), e.to_string()))?;
    match status.converged_generation {
        Some(_) => Ok(None),
        None => Err(unavailable(
            "podnetd has not converged the node files yet".into(),
            reasons(&status),
        )),
    }
}

/// Why a node has not converged, from podnetd's status.
fn reasons(s: &Status) -> String {
    let mut out = vec![format!(
        "generation {} in force, none converged after {} pass(es)",
        s.generation, s.passes
    )];
    if let Some(r) = &s.last_reconcile {
        let error = r
            .error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        out.push(format!("last reconcile {}{error}", r.outcome));
    }
    out.extend(s.problems.iter().cloned());
    if let Some(r) = &s.rejected {
        out.push(format!("node files rejected: {}", r.errors.join(", ")));
    }
    out.extend(
        s.objects
            .iter()
            .filter(|o| o.state != "converged")
            .map(|o| format!("{} {}", o.object, o.state)),
    );
    out.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::{Reconcile, Rejection};

    #[test]
    fn reasons_name_what_holds_the_node_back() {
        let s = Status {
            generation: 2,
            passes: 3,
            last_reconcile: Some(Reconcile {
                at: 0,
                took_ms: 1.0,
                trigger: "start".into(),
                outcome: "blocked".into(),
                steps: 0,
                error: Some("master ens192 is missing".into()),
            }),
            problems: vec!["master ens192 does not exist".into()],
            rejected: Some(Rejection {
                at: 0,
                errors: vec!["n.toml:3:1: x: unknown key".into()],
            }),
            ..Status::default()
        };
        let r = reasons(&s);
        for needle in [
            "generation 2",
            "blocked: master ens192 is missing",
            "does not exist",
            "unknown key",
        ] {
            assert!(r.contains(needle), "{r}");
        }
    }
}
