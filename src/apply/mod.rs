//! Apply: run a plan's steps through their backend, undo the ones already
//! done when a step fails (in reverse, collecting every undo error rather
//! than stopping at the first), then observe again and verify.

mod netlink;
pub mod rdma;
mod shaping;
pub mod sriov;

use std::time::{Duration, Instant};

pub use netlink::NetlinkBackend;
pub use rdma::RdmaBackend;
pub use shaping::{Fixed, Registry, RegistryView, Shaping, ShapingBackend};
pub use sriov::SriovBackend;

use crate::config::NodeConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::kernel::Kernel;
use crate::observe::observe_with_shaping;
use crate::plan::{plan, Action, Plan, Role};
use crate::state::Observed;

/// What an apply did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Applied {
    pub actions: usize,
    #[serde(serialize_with = "millis")]
    pub took: Duration,
    /// What the host could not do, as the verify pass found it (a VF
    /// setting its driver refused during this apply included).
    pub unmet: Vec<String>,
    /// The host as the verify pass found it (with the registry's marks):
    /// what the steps made is in it.
    #[serde(skip)]
    pub observed: Observed,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1e3)
}

/// The backends a plan's steps run through, one per kind of state.
struct Backends<'k, 's, 'a> {
    netlink: NetlinkBackend<'k>,
    shaping: ShapingBackend<'s, 'a>,
    sriov: SriovBackend<'k>,
    rdma: RdmaBackend,
}

impl Backends<'_, '_, '_> {
    async fn execute(&mut self, action: &Action) -> Result<()> {
        match action.role {
            Role::Shaping | Role::Endpoint => self.shaping.execute(action).await,
            Role::Master | Role::Shim | Role::Stale => self.netlink.execute(action).await,
            Role::Sriov => self.sriov.execute(action).await,
            Role::Rdma => self.rdma.execute(action).await,
        }
    }
}

/// Applies `plan` (made from `observed`), then verifies the host against
/// `desired`. A plan with problems changes nothing.
pub async fn apply(
    kernel: &Kernel,
    desired: &NodeConfig,
    observed: &Observed,
    plan: &Plan,
    shaping: &mut Shaping<'_>,
) -> Result<Applied> {
    let start = Instant::now();
    if !plan.problems.is_empty() {
        return Err(Error::new(
            ErrorKind::Host,
            format!("nothing was changed: {}", plan.problems.join("; ")),
        ));
    }
    let index = observed
        .links
        .iter()
        .map(|l| (l.name.clone(), l.index))
        .collect();
    let ledger = sriov::ledger_path(&shaping.paths);
    let mut backend = Backends {
        netlink: NetlinkBackend::new(kernel, index),
        sriov: SriovBackend::new(kernel, observed, ledger),
        rdma: RdmaBackend::new(rdma::ledger_path(&shaping.paths)),
        shaping: ShapingBackend::new(shaping),
    };
    let mut done: Vec<&Action> = Vec::with_capacity(plan.actions.len());
    for action in &plan.actions {
        let result = match crate::failpoint::fail_step(done.len() + 1) {
            Some(e) => Err(e),
            None => backend.execute(action).await,
        };
        if let Err(e) = result {
            let failed = format!(
                "{}: {}: {e}",
                action.object(),
                action.to_string().trim_end()
            );
            let undo_errors = undo(&mut backend, &done).await;
            let mut msg = format!("{failed}\nrolled back {} applied step(s)", done.len());
            if !undo_errors.is_empty() {
                msg.push_str(&format!(
                    "; rollback incomplete, the host may differ from before:\n  {}",
                    undo_errors.join("\n  ")
                ));
            }
            return Err(Error::new(e.kind, msg));
        }
        done.push(action);
        crate::failpoint::after_step(done.len());
    }
    drop(backend);
    let map_only = plan.actions.iter().all(|a| {
        matches!(
            a.change,
            crate::plan::Change::SetEntry { .. } | crate::plan::Change::RemoveEntry { .. }
        )
    });
    let after = if map_only {
        observed.clone()
    } else {
        let mut after = observe_with_shaping(kernel, &shaping.paths).await?;
        look_for_namespaces(desired, &mut after);
        after
    };
    let (unmet, observed) = verify(desired, after, shaping)?;
    Ok(Applied {
        actions: plan.actions.len(),
        took: start.elapsed(),
        unmet,
        observed,
    })
}

async fn undo(backend: &mut Backends<'_, '_, '_>, done: &[&Action]) -> Vec<String> {
    let mut errors = Vec::new();
    for action in done.iter().rev() {
        for step in action.undo() {
            if let Err(e) = backend.execute(&step).await {
                errors.push(format!("{}: {}: {e}", step.object(), step));
            }
        }
    }
    errors
}

/// Verifies the host as observed after the steps (`after`): it must now
/// need no step. A plan that only wrote map entries passes the
/// observation made before it, as nothing else was touched (a full one
/// would cost a tier edit on a busy node a second pass's time): the map
/// is read again with the registry, under its lock. What the host cannot
/// do is returned, with the observation, marked as a plan's is.
fn verify(
    desired: &NodeConfig,
    mut after: Observed,
    shaping: &mut Shaping<'_>,
) -> Result<(Vec<String>, Observed)> {
    let inputs = shaping.inputs(&mut after)?;
    after.mark_vf_users(&inputs.endpoints);
    after.mark_rdma_users(&inputs.endpoints);
    Ok((left_over(plan(desired, &after, &inputs))?, after))
}

/// A plan made after an apply must be empty; its unmet lines are returned.
fn left_over(left: Plan) -> Result<Vec<String>> {
    if left.actions.is_empty() && left.problems.is_empty() {
        return Ok(left.unmet);
    }
    let steps: Vec<String> = left
        .actions
        .iter()
        .map(|a| format!("{}: {a}", a.object()))
        .chain(left.problems.iter().cloned())
        .collect();
    Err(Error::new(
        ErrorKind::KernelRefused,
        format!(
            "verify: the host still differs after apply:\n  {}",
            steps.join("\n  ")
        ),
    ))
}

/// The host and the plan's inputs, as a pass and `podnetctl apply` read
/// them: the kernel's state with the shaper's part, the shaper loaded if
/// shaping is in play (`create`: even if that pins a new map; a dry run
/// passes false), and the registry with the map's entries read under one
/// lock.
pub async fn observe_for_plan(
    kernel: &Kernel,
    desired: &NodeConfig,
    shaping: &mut Shaping<'_>,
    create: bool,
) -> Result<(Observed, crate::plan::Inputs)> {
    let mut observed = observe_with_shaping(kernel, &shaping.paths).await?;
    look_for_namespaces(desired, &mut observed);
    shaping.prepare(desired, &observed, create)?;
    let inputs = shaping.inputs(&mut observed)?;
    observed.mark_vf_users(&inputs.endpoints);
    observed.mark_rdma_users(&inputs.endpoints);
    Ok((observed, inputs))
}

/// The other network namespaces, which hold the RDMA netns mode, looked
/// for only when the files want another mode than the kernel's: the look
/// reads every process's namespace, and a pass on a node that switches
/// nothing should not.
fn look_for_namespaces(desired: &NodeConfig, observed: &mut Observed) {
    let wanted = desired.rdma.as_ref().and_then(|r| r.netns_mode);
    if let Some(r) = observed.rdma.as_mut() {
        if wanted.is_some() && r.netns_mode.is_some() && r.netns_mode != wanted {
            r.other_netns = crate::rdma::other_net_namespaces();
        }
    }
}

/// Runs blocking kernel work (sysfs, modprobe, RDMA netlink) off the
/// runtime's threads; `what` names it in the error a lost thread gives.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::new(ErrorKind::Bug, format!("{what}'s thread: {e}")))?
}

/// Writes one of podnet's ledgers (a JSON file beside the shaper's
/// records) whole or not at all: a new file, then a rename over the old.
fn write_ledger<T: serde::Serialize>(path: &std::path::Path, value: &T) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).ok();
    }
    let tmp = path.with_extension("json.tmp");
    let body =
        serde_json::to_vec_pretty(value).map_err(|e| Error::new(ErrorKind::Bug, e.to_string()))?;
    std::fs::write(&tmp, body)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| Error::new(ErrorKind::Host, format!("writing {}: {e}", path.display())))
}
