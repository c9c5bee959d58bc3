//! One reconcile pass at a time: load (when the files may have changed),
//! observe, plan, apply, verify, and the bookkeeping around it: the config
//! generation, the rejected edit, fights with other agents, the status the
//! socket serves.

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::{error, info, warn};

use super::events::Watch;
use super::registry::Registry;
use crate::api::types::{Fight, Node, Reconcile, Rejection, Reverted, Status, Trial};
use crate::api::Refusal;
use crate::config::{load_dir, Loaded};
use crate::kernel::Kernel;
use crate::observe::observe;
use crate::plan::{default_route_hazards, plan, Plan};
use crate::state::Observed;
use crate::status::{node_info, object_states};

/// How many repairs of one object within [`FIGHT_WINDOW`] make a fight.
const FIGHT_REPAIRS: usize = 3;
const FIGHT_WINDOW: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What the socket reads, updated after every pass.
pub struct Shared {
    pub status: Status,
    pub node: Node,
    /// The node files in force (for the endpoints' limits).
    pub config: Option<crate::config::NodeConfig>,
    pub registry: Registry,
    /// What the request path knows about shaping.
    pub shaping: super::shaping::ShapingView,
}

/// An object something else keeps changing back.
struct FightState {
    repairs: Vec<Instant>,
    backoff: Duration,
    until: Option<Instant>,
}

pub struct Engine {
    kernel: Kernel,
    /// The EDT shaper, loaded the first time a device shapes.
    shaper: Option<crate::shaping::Shaper>,
    shaping_paths: crate::shaping::ShaperPaths,
    config_dir: PathBuf,
    shared: Arc<Mutex<Shared>>,
    watch: Arc<RwLock<Watch>>,
    loaded: Option<Loaded>,
    digest: Option<u64>,
    generation: u64,
    converged_generation: Option<u64>,
    rejected: Option<Rejection>,
    fights: BTreeMap<String, FightState>,
    /// The first backoff of a fight (then doubled up to [`MAX_BACKOFF`]).
    first_backoff: Duration,
    /// The generation the last pass applied: fights are against another
    /// agent, never against the operator's next edit.
    last_in_force: Option<u64>,
    passes: u64,
    /// The files in force before the current generation, for `try`.
    previous: Option<(Loaded, u64)>,
    /// A generation put back in force by a trial that timed out; it holds
    /// until the files change again.
    pinned: Option<(Loaded, u64)>,
    trial: Option<(Trial, Instant)>,
    reverted: Option<Reverted>,
}

/// Makes the shaper's map hold exactly the egress entries the registered
/// endpoints on `devices` need. Registry and map are read and written under
/// the one lock the request path holds to register an endpoint and write
/// its entry, so a PUT lands wholly before or wholly after, never between
/// the read of the registry and the removal of entries it does not list.
/// A poisoned lock still holds a consistent registry (every change is
/// undone in memory when it cannot be persisted): it is used, never read as
/// empty.
pub(super) fn sync_map(
    shared: &Mutex<Shared>,
    map: &mut crate::shaping::Endpoints,
    devices: &std::collections::BTreeSet<String>,
    horizon: Duration,
) -> crate::error::Result<MapSync> {
    let mut done = MapSync::default();
    let shared = shared.lock().unwrap_or_else(|p| p.into_inner());
    let wanted = super::shaping::wanted(&shared.registry.list(), devices, horizon);
    let have: BTreeMap<_, _> = map
        .stats()?
        .into_iter()
        .filter(|s| s.direction == "egress")
        .map(|s| (s.ip, s))
        .collect();
    for ip in have.keys().filter(|ip| !wanted.contains_key(ip)) {
        map.remove(*ip)?;
        done.removed += 1;
        info!("{ip}: no longer shaped");
    }
    for (ip, limit) in &wanted {
        if !have.get(ip).is_some_and(|s| limit.matches(s)) {
            map.set(*ip, limit)?;
            done.written += 1;
            info!(
                "{ip}: egress limited to {}",
                crate::config::Rate(limit.rate_bps)
            );
        }
    }
    Ok(done)
}

/// What [`sync_map`] changed.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(super) struct MapSync {
    pub removed: usize,
    pub written: usize,
}

pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Engine {
    pub fn new(
        kernel: Kernel,
        config_dir: PathBuf,
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
            shared,
            watch,
            loaded: None,
            digest: None,
            generation: 0,
            converged_generation: None,
            rejected: None,
            fights: BTreeMap::new(),
            first_backoff: first_backoff.min(MAX_BACKOFF),
            last_in_force: None,
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
        backoff.into_iter().chain(trial).min()
    }

    /// The files in force and their generation.
    fn in_force(&self) -> Option<(Loaded, u64)> {
        self.pinned
            .clone()
            .or_else(|| self.loaded.clone().map(|l| (l, self.generation)))
    }

    /// Puts the current files on trial: the previous generation comes back
    /// at the deadline unless [`Engine::confirm`] comes first.
    pub fn arm_trial(&mut self, timeout: Duration) -> Result<Trial, Refusal> {
        if let Some((t, _)) = &self.trial {
            return Err(Refusal::new(
                409,
                format!("generation {} is already on trial", t.generation),
            ));
        }
        self.reload();
        if let Some(r) = &self.rejected {
            return Err(Refusal::new(
                422,
                format!("the node files are invalid: {}", r.errors.join("; ")),
            ));
        }
        if let Some((_, g)) = &self.pinned {
            return Err(Refusal::new(
                409,
                format!("these files were tried and rolled back to generation {g}; edit them to try again"),
            ));
        }
        let Some((_, previous)) = &self.previous else {
            return Err(Refusal::new(409, "no earlier generation to go back to"));
        };
        let trial = Trial {
            generation: self.generation,
            previous_generation: *previous,
            deadline: unix_millis() + timeout.as_millis() as u64,
        };
        info!(
            generation = trial.generation,
            "on trial for {}s: confirm, or generation {previous} comes back",
            timeout.as_secs()
        );
        self.trial = Some((trial.clone(), Instant::now() + timeout));
        Ok(trial)
    }

    /// Keeps the generation on trial.
    pub fn confirm(&mut self) -> Result<Trial, Refusal> {
        let (trial, _) = self
            .trial
            .take()
            .ok_or_else(|| Refusal::new(409, "no trial is pending"))?;
        info!(generation = trial.generation, "trial confirmed");
        Ok(trial)
    }

    /// Rolls a trial back once its deadline passed; true when it did.
    pub fn revert_if_due(&mut self) -> bool {
        let due = self
            .trial
            .as_ref()
            .is_some_and(|(_, d)| *d <= Instant::now());
        if !due {
            return false;
        }
        let Some((trial, _)) = self.trial.take() else {
            return false;
        };
        warn!(
            generation = trial.generation,
            "trial not confirmed in time: rolling back to generation {}", trial.previous_generation
        );
        self.pinned = self.previous.clone();
        self.reverted = Some(Reverted {
            generation: trial.generation,
            to_generation: trial.previous_generation,
            at: unix_millis(),
        });
        true
    }

    /// Reads the node files. A valid set with new content is a new
    /// generation; an invalid one is rejected whole and the last good set
    /// stays in force.
    fn reload(&mut self) {
        match load_dir(&self.config_dir) {
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
                }
                self.rejected = Some(Rejection {
                    at: unix_millis(),
                    errors,
                });
            }
        }
    }

    /// One pass of the pipeline.
    pub async fn pass(&mut self, trigger: &str, reload: bool, force: bool) -> Reconcile {
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
            self.last_in_force = Some(in_force);
        }
        let observed = match observe(&self.kernel).await {
            Ok(o) => o,
            Err(e) => {
                error!("observe: {e}");
                report.outcome = "failed".into();
                report.error = Some(e.to_string());
                self.publish(&report, Some(desired), None, &[]);
                return report;
            }
        };
        let mut plan = plan(desired, &observed);
        if !force {
            let hazards = default_route_hazards(&plan, &observed);
            plan.problems.extend(hazards);
        }
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
            .partition(|a| held.contains(&a.object()));
        plan.actions = actions;

        let mut remaining = Plan {
            actions: held_actions.clone(),
            ..plan.clone()
        };
        if !plan.problems.is_empty() {
            report.outcome = "blocked".into();
            report.error = Some(plan.problems.join("; "));
            remaining.actions.extend(plan.actions.iter().cloned());
            warn!("cannot apply: {}", plan.problems.join("; "));
        } else if !plan.actions.is_empty() {
            for a in &plan.actions {
                info!(trigger, "{}: {}", a.object(), a);
            }
            match crate::apply::apply(&self.kernel, desired, &observed, &plan).await {
                Ok(applied) => {
                    report.outcome = "applied".into();
                    report.steps = applied.actions;
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
                    error!("apply failed: {e}");
                    report.outcome = "failed".into();
                    report.error = Some(e.to_string());
                    remaining.actions.extend(plan.actions.iter().cloned());
                }
            }
        }
        if let Err(e) = self.converge_shaping(desired, &observed).await {
            error!("shaping: {e}");
            remaining.problems.push(format!("shaping: {e}"));
            if report.outcome == "converged" || report.outcome == "applied" {
                report.outcome = "failed".into();
                report.error = Some(format!("shaping: {e}"));
            }
        }
        self.forget_quiet_fights(&remaining);
        let converged = remaining.actions.is_empty() && remaining.problems.is_empty();
        if converged {
            self.converged_generation = Some(in_force);
        }
        report.took_ms = start.elapsed().as_secs_f64() * 1e3;
        self.update_watch(desired, &observed);
        self.publish(
            &report,
            Some(desired),
            Some((&observed, &remaining)),
            &held_actions,
        );
        report
    }

    /// The EDT shaper on every shaping master, the endpoint map matching
    /// the registry, and shaping taken off the devices that no longer shape
    /// (their previous root qdisc put back). Does nothing, and loads
    /// nothing, on a node that never shaped. The request path's view of
    /// shaping is refreshed with what this pass left, error or not.
    async fn converge_shaping(
        &mut self,
        desired: &crate::config::NodeConfig,
        observed: &Observed,
    ) -> crate::error::Result<()> {
        let configured = crate::policy::shaping_masters(desired);
        let horizon = super::shaping::horizon(desired);
        let mut shaped = BTreeMap::new();
        let result = self
            .converge_shaping_devices(&configured, horizon, observed, &mut shaped)
            .await;
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let view = &mut shared.shaping;
        view.configured = configured;
        view.horizon = horizon;
        view.shaped = shaped;
        if self.shaper.is_none() {
            view.map = None;
        } else if view.map.is_none() {
            match crate::shaping::Endpoints::open(&self.shaping_paths.pin_dir) {
                Ok(m) => view.map = Some(m),
                Err(e) => warn!("opening the endpoint map for requests: {e}"),
            }
        }
        result
    }

    async fn converge_shaping_devices(
        &mut self,
        configured: &std::collections::BTreeSet<String>,
        horizon: Duration,
        observed: &Observed,
        shaped: &mut BTreeMap<String, u32>,
    ) -> crate::error::Result<()> {
        use crate::shaping::{map_pin, recorded_devices, AttachMode, Shaper};
        let devices: std::collections::BTreeSet<String> = configured
            .iter()
            .filter(|name| observed.link(name).is_some())
            .cloned()
            .collect();
        let recorded = recorded_devices(&self.shaping_paths.state_dir);
        let stale: Vec<&str> = observed
            .links
            .iter()
            .filter(|l| !devices.contains(&l.name) && recorded.contains(&l.index))
            .map(|l| l.name.as_str())
            .collect();
        if devices.is_empty() && stale.is_empty() && self.shaper.is_none() {
            return Ok(());
        }
        // The map's pin gone (removed by hand, or the BPF filesystem
        // remounted): the entries went with it. Load again: a new map,
        // filled below before the program that reads it is swapped in.
        if self.shaper.is_some() && !map_pin(&self.shaping_paths.pin_dir).exists() {
            warn!("the endpoint map's pin is gone: loading the shaper again with a new map");
            self.shaper = None;
            self.shared
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .shaping
                .map = None;
        }
        if self.shaper.is_none() {
            self.shaper = Some(Shaper::load(&self.kernel, self.shaping_paths.clone())?);
            info!(
                "EDT shaper loaded; map pinned under {}",
                self.shaping_paths.pin_dir.display()
            );
        }
        let Some(shaper) = self.shaper.as_mut() else {
            return Ok(());
        };
        for dev in &stale {
            shaper.detach(dev).await?;
            info!("{dev}: shaping off; its previous root qdisc is back");
        }
        // The map first: a program swapped in (an upgrade, a new map) must
        // find every entry already there, or its pods would go unshaped.
        sync_map(&self.shared, shaper.endpoints(), &devices, horizon)?;
        // Then this daemon's program on every shaping device: attached
        // where missing, swapped in place where another one runs (the
        // previous podnetd's, or one reading a lost map).
        let ours = shaper.program_id()?;
        for dev in &devices {
            let st = shaper.status(dev).await?;
            if !st.shaped() || st.program() != Some(ours) {
                let a = shaper.attach(dev, AttachMode::auto()).await?;
                match st.program().filter(|_| a.replaced) {
                    Some(old) => info!(
                        "{dev}: EDT program {old} replaced in place by {ours} ({})",
                        a.mode
                    ),
                    None => info!("{dev}: shaping with EDT ({}, fq at the root)", a.mode),
                }
            }
            shaped.insert(dev.clone(), ours);
        }
        Ok(())
    }

    fn record_repairs(&mut self, plan: &Plan) {
        let now = Instant::now();
        let objects: HashSet<String> = plan.actions.iter().map(|a| a.object()).collect();
        for object in objects {
            let f = self.fights.entry(object.clone()).or_insert(FightState {
                repairs: Vec::new(),
                backoff: Duration::ZERO,
                until: None,
            });
            f.repairs.retain(|t| now.duration_since(*t) < FIGHT_WINDOW);
            f.repairs.push(now);
            if f.repairs.len() >= FIGHT_REPAIRS {
                f.backoff = if f.backoff.is_zero() {
                    self.first_backoff
                } else {
                    (f.backoff * 2).min(MAX_BACKOFF)
                };
                f.until = Some(now + f.backoff);
                warn!(
                    "{object}: changed back {} times within {}s by something else; leaving it alone for {}s",
                    f.repairs.len(),
                    FIGHT_WINDOW.as_secs(),
                    f.backoff.as_secs()
                );
            }
        }
    }

    /// A fight ends once its object stayed converged through a whole window.
    fn forget_quiet_fights(&mut self, remaining: &Plan) {
        let now = Instant::now();
        let pending: HashSet<String> = remaining.actions.iter().map(|a| a.object()).collect();
        self.fights.retain(|object, f| {
            let backing_off = f.until.is_some_and(|u| u > now);
            let recent = f
                .repairs
                .iter()
                .any(|t| now.duration_since(*t) < FIGHT_WINDOW);
            backing_off || recent || pending.contains(object)
        });
    }

    /// The names and ifindexes whose kernel events should wake the daemon.
    fn update_watch(&self, desired: &crate::config::NodeConfig, observed: &Observed) {
        let mut names = HashSet::new();
        for (name, m) in &desired.masters {
            names.insert(name.clone());
            if let Some(s) = &m.shim {
                names.insert(s.name.clone());
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
    /// gone are removed.
    fn registry_follows(&self, desired: &crate::config::NodeConfig) {
        let mut s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        if s.config.as_ref() != Some(desired) {
            s.config = Some(desired.clone());
            let relimited = s
                .registry
                .relimit(|e| super::backend::endpoint_limits(desired, e).ok());
            match relimited {
                Ok(0) => {}
                Ok(n) => info!("limits of {n} endpoint(s) follow the new node files"),
                Err(e) => error!("endpoint registry: {e}"),
            }
        }
        match s.registry.prune(|e| {
            e.endpoint
                .netns
                .as_deref()
                .is_some_and(|p| !std::path::Path::new(p).exists())
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
            status.converged =
                remaining.actions.is_empty() && remaining.problems.is_empty() && held.is_empty();
        }
        let node = desired.map(|d| node_info(d, in_force, self.converged_generation));
        {
            let mut s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
            status.shaping = s
                .shaping
                .shaped
                .iter()
                .map(|(device, id)| crate::api::types::ShapedDevice {
                    device: device.clone(),
                    program_id: *id,
                })
                .collect();
            s.status = status;
            if let Some(n) = node {
                s.node = n;
            }
        }
    }
}
