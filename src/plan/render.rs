//! How a plan reads: grouped by object, one step per line, like a terraform
//! plan. `apply --dry-run` prints exactly this.

use std::fmt;

use super::{Action, Plan};

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.problems.is_empty() {
            writeln!(f, "cannot plan: the host does not fit the node files")?;
            for p in &self.problems {
                writeln!(f, "  x {p}")?;
            }
            writeln!(f)?;
        }
        let mut last: Option<String> = None;
        for a in &self.actions {
            let object = a.object();
            if last.as_ref() != Some(&object) {
                writeln!(f, "{object}")?;
                last = Some(object);
            }
            writeln!(f, "  {a}")?;
        }
        if !self.actions.is_empty() {
            writeln!(f)?;
        }
        if !self.unmet.is_empty() {
            writeln!(f, "cannot be done on this host (the rest is applied):")?;
            for u in &self.unmet {
                writeln!(f, "  ! {u}")?;
            }
            writeln!(f)?;
        }
        if !self.pending_reboot.is_empty() {
            writeln!(f, "pending reboot:")?;
            for p in &self.pending_reboot {
                writeln!(f, "  ! {p}")?;
            }
            writeln!(f)?;
        }
        if !self.unsupported.is_empty() {
            writeln!(f, "not applied (validated only):")?;
            for u in &self.unsupported {
                writeln!(f, "  ! {}: {}", u.key, u.what)?;
            }
            writeln!(f)?;
        }
        if !self.problems.is_empty() {
            writeln!(
                f,
                "Nothing will be applied until the problems above are fixed."
            )
        } else if self.actions.is_empty() && !self.unmet.is_empty() {
            writeln!(
                f,
                "No changes can be made; the host cannot do all the node files ask (above)."
            )
        } else if self.actions.is_empty() && !self.pending_reboot.is_empty() {
            writeln!(
                f,
                "No changes: the host matches the node files but for what waits for a reboot (above)."
            )
        } else if self.actions.is_empty() {
            writeln!(f, "No changes: the host matches the node files.")
        } else {
            let (add, change, destroy) = counts(&self.actions);
            writeln!(
                f,
                "Plan: {add} to add, {change} to change, {destroy} to destroy; worst disruption: {}.",
                self.max_disruption()
            )
        }
    }
}

fn counts(actions: &[Action]) -> (usize, usize, usize) {
    let mut c = (0, 0, 0);
    for a in actions {
        match a.sign() {
            '+' => c.0 += 1,
            '-' => c.2 += 1,
            _ => c.1 += 1,
        }
    }
    c
}
