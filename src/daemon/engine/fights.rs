//! Fights: an object that something else keeps changing back is left alone
//! for a while (backing off), so podnet and the other agent do not flap it
//! for ever. The operator's edits never wait for a backoff.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tracing::warn;

use super::{Engine, MAX_BACKOFF};
use crate::plan::Plan;

/// How many repairs of one object within [`FIGHT_WINDOW`] make a fight.
const FIGHT_REPAIRS: usize = 3;
const FIGHT_WINDOW: Duration = Duration::from_secs(60);

/// An object something else keeps changing back.
pub(super) struct FightState {
    pub(super) repairs: Vec<Instant>,
    pub(super) backoff: Duration,
    pub(super) until: Option<Instant>,
}

/// The backoff after `previous` (none: `first`), doubling up to
/// [`MAX_BACKOFF`]. Fights and shaping failures both go by it.
pub(super) fn next_backoff(first: Duration, previous: Option<Duration>) -> Duration {
    previous.map_or(first, |b| (b * 2).min(MAX_BACKOFF))
}

impl Engine {
    pub(super) fn record_repairs(&mut self, plan: &Plan) {
        let now = Instant::now();
        {
            let objects: HashSet<String> = plan.actions.iter().map(|a| a.object()).collect();
            let s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
            objects.iter().for_each(|o| s.metrics.repaired(o));
        }
        let keys: HashSet<String> = plan.actions.iter().map(|a| a.fight_key()).collect();
        for object in keys {
            let f = self.fights.entry(object.clone()).or_insert(FightState {
                repairs: Vec::new(),
                backoff: Duration::ZERO,
                until: None,
            });
            f.repairs.retain(|t| now.duration_since(*t) < FIGHT_WINDOW);
            f.repairs.push(now);
            if f.repairs.len() >= FIGHT_REPAIRS {
                f.backoff =
                    next_backoff(self.first_backoff, Some(f.backoff).filter(|b| !b.is_zero()));
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
    pub(super) fn forget_quiet_fights(&mut self, remaining: &Plan) {
        let now = Instant::now();
        let pending: HashSet<String> = remaining.actions.iter().map(|a| a.fight_key()).collect();
        self.fights.retain(|object, f| {
            let backing_off = f.until.is_some_and(|u| u > now);
            let recent = f
                .repairs
                .iter()
                .any(|t| now.duration_since(*t) < FIGHT_WINDOW);
            backing_off || recent || pending.contains(object)
        });
    }
}
