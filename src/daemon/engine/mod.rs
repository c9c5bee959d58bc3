//! One reconcile pass at a time: load (when the files may have changed),
//! observe, plan, apply, verify, and the bookkeeping around it: the config
//! generation, the rejected edit, fights with other agents, the status the
//! socket serves. Trials (`try`/`confirm`), fights with other agents and
//! shaping live in their own files: `trial.rs`, `fights.rs`, `shaping.rs`.

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use super::events::Watch;
use super::shared::{unix_millis, Shared};
use crate::api::types::{Fight, Reconcile, Rejection, Reverted, Status, Trial};
use crate::config::{load_dir_for, Loaded};
use crate::kernel::Kernel;
use crate::plan::{hazards, plan, Plan};
use crate::state::Observed;
use crate::status::{node_info, object_states};

mod fights;
mod shaping;
mod trial;

use fights::FightState;
pub(super) use shaping::SharedRegistry;

/// A failed apply, tried again after a backoff rather than on the kernel
/// events its own steps and rollback caused.
struct ApplyFailure {
    error: String,
    backoff: Duration,
    until: Instant,
}

/// The longest backoff, for fights and for shaping failures.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

pub struct Engine {
    kernel: Kernel,
    /// The EDT shaper, loaded the first time a device shapes.
    shaper: Option<crate::shaping::Shaper>,
    shaping_paths: crate::shaping::ShaperPaths,
    config_dir: PathBuf,
    /// The node's name, for the files' `[match]` tables.
    node: Option<String>,
    shared: Arc<Mutex<Shared>>,
    watch: Arc<RwLock<Watch>>,
    loaded: Option<Loaded>,
    digest: Option<u64>,
    generation: u64,
    converged_generation: Option<u64>,
    rejected: Option<Rejection>,
    /// "No node files yet" was logged (once, not every timer pass).
    said_empty: bool,
    fights: BTreeMap<String, FightState>,
    /// The first backoff of a fight (then doubled up to [`MAX_BACKOFF`]).
    first_backoff: Duration,
    /// The generation the last pass applied: fights are against another
    /// agent, never against the operator's next edit.
    last_in_force: Option<u64>,
    apply_failure: Option<ApplyFailure>,
    passes: u64,
    /// The files in force before the current generation, for `try`.
    previous: Option<(Loaded, u64)>,
    /// A generation put back in force by a trial that timed out; it holds
    /// until the files change again.
    pinned: Option<(Loaded, u64)>,
    trial: Option<(Trial, Instant)>,
    reverted: Option<Reverted>,
}

impl Engine {
    pub fn new(
        kernel: Kernel,
        config_dir: PathBuf,
        node: Option<String>,
        shared: Arc<Mutex<Shared>>,
        watch: Arc<RwLock<Watch>>,
        shaping_paths: crate::shaping::ShaperPaths,
        first_backoff: Duration,
    ) -> Self {
        Engine {
            kernel,
            shaper: None,
            shaping_paths,
            config_dir,
            node,
            shared,
            watch,
            loaded: None,
            digest: None,
            generation: 0,
            converged_generation: None,
            rejected: None,
            said_empty: false,
            fights: BTreeMap::new(),
            first_backoff: first_backoff.min(MAX_BACKOFF),
            last_in_force: None,
            apply_failure: None,
            passes: 0,
            previous: None,
            pinned: None,
            trial: None,
            reverted: None,
        }
    }

    /// When the loop must wake on its own: the earliest end of a backoff
    /// or the deadline of a trial.
    pub fn next_deadline(&self) -> Option<Instant> {
        let backoff = self.fights.values().filter_map(|f| f.until).min();
        let trial = self.trial.as_ref().map(|(_, d)| *d);
        let shaping = self.apply_failure.as_ref().map(|f| f.until);
        backoff.into_iter().chain(trial).chain(shaping).min()
    }

    /// The files in force and their generation.
    fn in_force(&self) -> Option<(Loaded, u64)> {
        self.pinned
            .clone()
            .or_else(|| self.loaded.clone().map(|l| (l, self.generation)))
    }

    /// Reads the node files. A valid set with new content is a new
    /// generation; an invalid one is rejected whole and the last good set
    /// stays in force.
    fn reload(&mut self) {
        // A fresh install: no node file yet is no error, only nothing to do.
        if self.loaded.is_none()
            && crate::config::node_files(&self.config_dir).is_ok_and(|f| f.is_empty())
        {
            if !std::mem::replace(&mut self.said_empty, true) {
                info!(
                    "no node files in {} yet: podnetd manages nothing until one is written",
                    self.config_dir.display()
                );
            }
            return;
        }
        match load_dir_for(&self.config_dir, self.node.as_deref()) {
            Ok(loaded) => {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                for i in 0..loaded.sources.len() {
                    loaded.sources.path(i).hash(&mut h);
                    loaded.sources.text(i).hash(&mut h);
                }
                let digest = h.finish();
                if self.rejected.take().is_some() {
                    info!("node files valid again");
                }
                if self.digest != Some(digest) {
                    if let Some(current) = self.loaded.take() {
                        self.previous = Some((current, self.generation));
                    }
                    self.generation += 1;
                    self.digest = Some(digest);
                    // New files supersede a rolled-back trial.
                    self.pinned = None;
                    info!(
                        generation = self.generation,
                        "loaded node files from {}",
                        self.config_dir.display()
                    );
                    for s in &loaded.skipped {
                        info!("skipped {s}");
                    }
                }
                self.loaded = Some(loaded);
            }
            Err(d) => {
                let errors: Vec<String> = d.items.iter().map(|i| i.to_string()).collect();
                if self.rejected.as_ref().map(|r| &r.errors) != Some(&errors) {
                    for e in &errors {
                        error!("{e}");
                    }
                    error!(
                        "node files rejected ({} error(s)); generation {} stays in force",
                        errors.len(),
                        self.generation
                    );
                    let s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
                    s.metrics.error("files");
                }
                self.rejected = Some(Rejection {
                    at: unix_millis(),
                    errors,
                });
            }
        }
    }

    /// One pass of the pipeline.
    pub async fn pass(
        &mut self,
        trigger: &str,
        reload: bool,
        options: crate::api::types::ReconcileOptions,
    ) -> Reconcile {
        let start = Instant::now();
        self.passes += 1;
        if reload || self.loaded.is_none() {
            self.reload();
        }
        let mut report = Reconcile {
            at: unix_millis(),
            took_ms: 0.0,
            trigger: trigger.to_string(),
            outcome: "converged".into(),
            steps: 0,
            error: None,
        };
        let Some((loaded, in_force)) = self.in_force() else {
            report.outcome = "failed".into();
            report.error = Some("no valid node files yet".into());
            self.publish(&report, None, None, &[]);
            return report;
        };
        let desired = &loaded.config;
        self.registry_follows(desired);
        // A new generation (an edit, or a trial rolled back) applies at
        // once, whatever podnetd was leaving alone; a fight that goes on
        // is found again after three more repairs.
        if self.last_in_force != Some(in_force) {
            if !self.fights.is_empty() && self.last_in_force.is_some() {
                info!(
                    generation = in_force,
                    "new node files: applying them now, fights with other agents start over"
                );
            }
            self.fights.clear();
            self.apply_failure = None;
            self.last_in_force = Some(in_force);
        }
        // The shaper is lent to this pass's shaping steps.
        let mut shaper = self.shaper.take();
        let registry = SharedRegistry(self.shared.clone());
        let mut shaping = crate::apply::Shaping::new(
            &mut shaper,
            self.kernel.clone(),
            self.shaping_paths.clone(),
            &registry,
        );
        let (observed, inputs) =
            match crate::apply::observe_for_plan(&self.kernel, desired, &mut shaping, true).await {
                Ok(o) => o,
                Err(e) => {
                    error!("observe: {e}");
                    report.outcome = "failed".into();
                    report.error = Some(e.to_string());
                    self.shaper = shaper;
                    self.publish(&report, Some(desired), None, &[]);
                    return report;
                }
            };
        let mut plan = plan(desired, &observed, &inputs);
        let host = crate::plan::host_problems(desired, &observed);
        // Located, as the files' own errors are: these replace the plan's
        // plainer lines for the same keys.
        if !host.is_empty() {
            plan.problems
                .retain(|p| !host.iter().any(|h| &h.plain == p));
            let located = loaded.diagnose(
                host.iter()
                    .map(|h| (h.pointer.as_str(), h.message.as_str())),
            );
            plan.problems
                .extend(located.items.iter().map(|d| d.to_string()));
        }
        if !options.force {
            let hazards = hazards(&plan, &observed);
            plan.problems.extend(hazards);
        }
        if let Some(max) = options.max_disruption {
            if plan.max_disruption() > max {
                plan.problems.push(format!(
                    "the plan is {} but --max-disruption is {max}; nothing was changed",
                    plan.max_disruption()
                ));
            }
        }
        let planned = plan.clone();
        // Leave alone what another agent keeps changing back, for a while.
        let now = Instant::now();
        let held: HashSet<String> = self
            .fights
            .iter()
            .filter(|(_, f)| f.until.is_some_and(|u| u > now))
            .map(|(o, _)| o.clone())
            .collect();
        let (held_actions, actions): (Vec<_>, Vec<_>) = plan
            .actions
            .drain(..)
            .partition(|a| held.contains(&a.fight_key()));
        plan.actions = actions;

        let mut remaining = Plan {
            actions: held_actions.clone(),
            ..plan.clone()
        };
        remaining.problems.extend(plan.unmet.iter().cloned());
        // After a failed apply, the events its own steps and rollback
        // caused (and the timer) wait out a backoff; an edit, a request
        // or the end of the backoff try again.
        let mut after: Option<Observed> = None;
        let backing_off = self
            .apply_failure
            .as_ref()
            .filter(|f| f.until > now && (trigger == "kernel" || trigger == "timer"));
        if !plan.problems.is_empty() {
            report.outcome = "blocked".into();
            report.error = Some(plan.problems.join("; "));
            remaining.actions.extend(plan.actions.iter().cloned());
            warn!("cannot apply: {}", plan.problems.join("; "));
        } else if let (Some(f), false) = (backing_off, plan.actions.is_empty()) {
            report.outcome = "failed".into();
            report.error = Some(format!(
                "{} (next attempt in {}s)",
                f.error,
                f.until.duration_since(now).as_secs() + 1
            ));
            remaining.actions.extend(plan.actions.iter().cloned());
        } else if !plan.actions.is_empty() {
            for a in &plan.actions {
                info!(trigger, "{}: {}", a.object(), a);
            }
            match crate::apply::apply(&self.kernel, desired, &observed, &plan, &mut shaping).await {
                Ok(applied) => {
                    report.outcome = "applied".into();
                    report.steps = applied.actions;
                    // What the steps made (an RDMA device, VFs) is in the
                    // verify's observation: status and the node info say so
                    // now, not a pass later.
                    after = Some(applied.observed);
                    self.apply_failure = None;
                    info!(
                        steps = applied.actions,
                        "applied and verified in {:.1} ms",
                        applied.took.as_secs_f64() * 1e3
                    );
                    if trigger == "kernel" || trigger == "timer" {
                        self.record_repairs(&plan);
                    }
                }
                Err(e) => {
                    let backoff = fights::next_backoff(
                        self.first_backoff,
                        self.apply_failure.as_ref().map(|f| f.backoff),
                    );
                    error!("apply failed: {e}; next attempt in {}s", backoff.as_secs());
                    self.apply_failure = Some(ApplyFailure {
                        error: e.to_string(),
                        backoff,
                        until: Instant::now() + backoff,
                    });
                    report.outcome = "failed".into();
                    report.error = Some(e.to_string());
                    remaining.actions.extend(plan.actions.iter().cloned());
                }
            }
        }
        drop(shaping);
        self.shaper = shaper;
        let observed = after.unwrap_or(observed);
        if !plan.unmet.is_empty() && report.outcome != "blocked" && report.outcome != "failed" {
            report.outcome = "failed".into();
            report.error = Some(plan.unmet.join("; "));
        }
        self.refresh_shaping_view(
            desired,
            &observed,
            inputs.mode(&observed),
            &planned,
            &remaining,
            &inputs.endpoints,
        );
        self.forget_quiet_fights(&remaining);
        let converged = remaining.converged();
        if converged {
            self.converged_generation = Some(in_force);
        }
        report.took_ms = start.elapsed().as_secs_f64() * 1e3;
        self.update_watch(desired, &observed, &remaining.veths);
        self.publish(
            &report,
            Some(desired),
            Some((&observed, &remaining)),
            &held_actions,
        );
        report
    }

    /// The names and ifindexes whose kernel events should wake the daemon.
    fn update_watch(
        &self,
        desired: &crate::config::NodeConfig,
        observed: &Observed,
        veths: &std::collections::BTreeSet<String>,
    ) {
        // The veth pods' veths podnet shapes, with the masters and shims.
        let mut names: HashSet<String> = veths.iter().cloned().collect();
        for (name, m) in &desired.masters {
            names.insert(name.clone());
            if let Some(s) = &m.shim {
                names.insert(s.name.clone());
            }
        }
        // A declared PF (a VF setting changed by hand is an event on it)
        // and its VFs' netdevs (they go when the count is changed by hand).
        for name in desired.sriov.keys() {
            names.insert(name.clone());
            if let Some(pf) = observed.pf(name) {
                names.extend(pf.vfs.iter().filter_map(|v| v.netdev.clone()));
            }
        }
        let indexes = observed
            .links
            .iter()
            .filter(|l| names.contains(&l.name) || l.is_owned())
            .map(|l| l.index)
            .collect();
        *self.watch.write().unwrap_or_else(|p| p.into_inner()) = Watch { names, indexes };
    }

    /// The registry follows the files in force before anything reads it:
    /// the request path computes new endpoints' limits with them, and
    /// registered endpoints get the new limits, which this same pass then
    /// writes to the shaper's map. Endpoints whose pod network namespace is
    /// gone (its path no longer a namespace file) are removed.
    fn registry_follows(&self, desired: &crate::config::NodeConfig) {
        let mut s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        if s.config.as_ref() != Some(desired) {
            s.config = Some(desired.clone());
            let relimited = s
                .registry
                .relimit(|e| super::shared::endpoint_limits(desired, e).ok());
            match relimited {
                Ok(0) => {}
                Ok(n) => info!("limits of {n} endpoint(s) follow the new node files"),
                Err(e) => error!("endpoint registry: {e}"),
            }
        }
        // The namespace checks (a statfs each) run without the lock, so a
        // PUT never waits on 2,000 of them; only the namespaces found gone
        // are checked again under it, for an endpoint registered meanwhile.
        let namespaces = s.registry.namespaces();
        drop(s);
        let gone: std::collections::BTreeSet<String> = namespaces
            .into_iter()
            .filter(|p| !crate::netns::is_namespace(std::path::Path::new(p)))
            .collect();
        if gone.is_empty() {
            return;
        }
        let mut s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        match s.registry.prune(|e| {
            e.endpoint.netns.as_deref().is_some_and(|p| {
                gone.contains(p) && !crate::netns::is_namespace(std::path::Path::new(p))
            })
        }) {
            Ok(gone) => {
                for e in gone {
                    info!(
                        "endpoint {}/{} removed: its network namespace is gone",
                        e.container_id, e.ifname
                    );
                }
            }
            Err(e) => error!("endpoint registry: {e}"),
        }
    }

    fn publish(
        &self,
        report: &Reconcile,
        desired: Option<&crate::config::NodeConfig>,
        state: Option<(&Observed, &Plan)>,
        held: &[crate::plan::Action],
    ) {
        let now = Instant::now();
        let wall = unix_millis();
        let in_force = self.pinned.as_ref().map_or(self.generation, |(_, g)| *g);
        let mut status = Status {
            generation: in_force,
            converged_generation: self.converged_generation,
            converged: false,
            passes: self.passes,
            last_reconcile: Some(report.clone()),
            rejected: self.rejected.clone(),
            objects: Vec::new(),
            problems: Vec::new(),
            fights: self
                .fights
                .iter()
                .filter_map(|(object, f)| {
                    let until = f.until.filter(|u| *u > now)?;
                    Some(Fight {
                        object: object.clone(),
                        repairs: f.repairs.len() as u32,
                        backoff_until: wall + until.duration_since(now).as_millis() as u64,
                    })
                })
                .collect(),
            unsupported: Vec::new(),
            pending_reboot: Vec::new(),
            trial: self.trial.as_ref().map(|(t, _)| t.clone()),
            reverted: self.reverted.clone(),
            shaping: Vec::new(),
        };
        if let (Some(desired), Some((observed, remaining))) = (desired, state) {
            status.objects = object_states(desired, observed, remaining);
            status.problems = remaining.problems.clone();
            status.unsupported = remaining
                .unsupported
                .iter()
                .map(|u| format!("{}: {}", u.key, u.what))
                .collect();
            status.pending_reboot = remaining.pending_reboot.clone();
            status.converged = remaining.converged() && held.is_empty();
        }
        let node = desired.map(|d| {
            node_info(
                d,
                state.map(|(o, _)| o),
                in_force,
                self.converged_generation,
            )
        });
        {
            let mut s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
            status.shaping = s
                .shaping
                .shaped
                .iter()
                .map(|(device, id)| {
                    let htb = s.shaping.htb.contains(device);
                    crate::api::types::ShapedDevice {
                        device: device.clone(),
                        program_id: if htb { 0 } else { *id },
                        backend: if htb { "htb" } else { "edt" }.into(),
                    }
                })
                .collect();
            s.metrics.pass(report);
            s.status = status;
            if let Some(n) = node {
                s.node = n;
            }
        }
    }
}
