//! `podnetctl try` and `confirm`: a generation on trial, and the rollback
//! to the previous one when its deadline passes unconfirmed.

use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::Engine;
use crate::api::types::{Reverted, Trial};
use crate::api::Refusal;
use crate::daemon::shared::unix_millis;

impl Engine {
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
}
