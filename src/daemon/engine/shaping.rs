//! The shaping part of a pass: the EDT shaper on the shaping masters and
//! the endpoint map in step with the registry.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use super::fights::next_backoff;
use super::Engine;
use crate::daemon::shared::Shared;
use crate::state::Observed;

/// A shaping failure, tried again after a backoff rather than on the
/// kernel events its own attempt caused (a qdisc put in and taken out).
pub(super) struct ShapingFailure {
    pub(super) error: String,
    pub(super) backoff: Duration,
    pub(super) until: Instant,
}

/// Makes the shaper's map hold exactly the egress entries the registered
/// endpoints on `devices` need. Registry and map are read and written under
/// the one lock the request path holds to register an endpoint and write
/// its entry, so a PUT lands wholly before or wholly after, never between
/// the read of the registry and the removal of entries it does not list.
/// A poisoned lock still holds a consistent registry (every change is
/// undone in memory when it cannot be persisted): it is used, never read as
/// empty.
pub(in crate::daemon) fn sync_map(
    shared: &Mutex<Shared>,
    map: &mut crate::shaping::Endpoints,
    devices: &std::collections::BTreeSet<String>,
    horizon: Duration,
) -> crate::error::Result<MapSync> {
    let mut done = MapSync::default();
    let shared = shared.lock().unwrap_or_else(|p| p.into_inner());
    let wanted = crate::daemon::shaping::wanted(&shared.registry.list(), devices, horizon);
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
pub(in crate::daemon) struct MapSync {
    pub removed: usize,
    pub written: usize,
}

impl Engine {
    /// [`Engine::converge_shaping`], unless it failed recently: a failure
    /// is tried again after a backoff (the fights' first backoff, doubling
    /// up to 300 s, as [`next_backoff`] says; a new generation tries at once), not on every
    /// event its own attempt caused. The problem to report, if any.
    pub(super) async fn shape(
        &mut self,
        desired: &crate::config::NodeConfig,
        observed: &Observed,
    ) -> Option<String> {
        let now = Instant::now();
        if let Some(f) = self.shaping_failure.as_ref().filter(|f| f.until > now) {
            return Some(format!(
                "shaping: {} (next attempt in {}s)",
                f.error,
                f.until.duration_since(now).as_secs() + 1
            ));
        }
        match self.converge_shaping(desired, observed).await {
            Ok(()) => {
                if self.shaping_failure.take().is_some() {
                    info!("shaping: converged again");
                }
                None
            }
            Err(e) => {
                let backoff = next_backoff(
                    self.first_backoff,
                    self.shaping_failure.as_ref().map(|f| f.backoff),
                );
                error!("shaping: {e}; next attempt in {}s", backoff.as_secs());
                self.shaping_failure = Some(ShapingFailure {
                    error: e.to_string(),
                    backoff,
                    until: Instant::now() + backoff,
                });
                Some(format!("shaping: {e}"))
            }
        }
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
        let horizon = crate::daemon::shaping::horizon(desired);
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
}
