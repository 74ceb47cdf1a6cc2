//! Where training time goes: wall time summed per phase and per part of a step.
//!
//! candle runs CPU operations eagerly, so the time spent inside a closure is the time of the
//! operations it issues; on a GPU, work queued asynchronously is charged to whichever part
//! waits for it (reading a loss back does).

use std::time::{Duration, Instant};

/// Accumulated time and call count of each labelled part, in first-seen order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    parts: Vec<ProfilePart>,
}

/// One labelled part of a training step.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfilePart {
    /// `phase: part`, such as `gan: discriminator backward`.
    pub label: &'static str,
    pub total: Duration,
    pub calls: u64,
}

impl Profile {
    /// Runs `work`, charging its wall time to `label`.
    pub(crate) fn time<T>(&mut self, label: &'static str, work: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let value = work();
        self.add(label, started.elapsed());
        value
    }

    pub(crate) fn add(&mut self, label: &'static str, elapsed: Duration) {
        match self.parts.iter_mut().find(|part| part.label == label) {
            Some(part) => {
                part.total += elapsed;
                part.calls += 1;
            }
            None => self.parts.push(ProfilePart {
                label,
                total: elapsed,
                calls: 1,
            }),
        }
    }

    pub fn parts(&self) -> &[ProfilePart] {
        &self.parts
    }

    /// Time of every part whose label starts with `phase` (`"gan"`, `"autoencoder"`).
    pub fn phase_total(&self, phase: &str) -> Duration {
        self.parts
            .iter()
            .filter(|part| part.label.split(':').next() == Some(phase))
            .map(|part| part.total)
            .sum()
    }

    /// A plain-text table: each part's share of its phase, total seconds and mean milliseconds
    /// per call, grouped by phase.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<44} {:>7} {:>9} {:>9} {:>8}\n",
            "part", "share", "total s", "ms/call", "calls"
        );
        for part in &self.parts {
            let phase = part.label.split(':').next().unwrap_or(part.label);
            let phase_total = self.phase_total(phase).as_secs_f64();
            let total = part.total.as_secs_f64();
            let share = if phase_total > 0.0 {
                100.0 * total / phase_total
            } else {
                0.0
            };
            out.push_str(&format!(
                "{:<44} {:>6.1}% {:>9.3} {:>9.3} {:>8}\n",
                part.label,
                share,
                total,
                1000.0 * total / part.calls.max(1) as f64,
                part.calls
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_accumulate_in_first_seen_order_and_phases_sum() {
        let mut profile = Profile::default();
        profile.add("gan: b", Duration::from_millis(30));
        profile.add("gan: a", Duration::from_millis(10));
        profile.add("gan: b", Duration::from_millis(20));
        profile.add("autoencoder: x", Duration::from_millis(5));
        let labels: Vec<_> = profile.parts().iter().map(|p| (p.label, p.calls)).collect();
        assert_eq!(
            labels,
            vec![("gan: b", 2), ("gan: a", 1), ("autoencoder: x", 1)]
        );
        assert_eq!(profile.phase_total("gan"), Duration::from_millis(60));
        assert_eq!(profile.phase_total("autoencoder"), Duration::from_millis(5));
        let table = profile.table();
        assert!(table.contains("gan: b"), "{table}");
        assert!(table.contains("83.3%"), "{table}");
        assert!(table.contains("25.000"), "{table}");
        let value = profile.time("gan: a", || 7);
        assert_eq!(value, 7);
        assert_eq!(profile.parts()[1].calls, 2);
    }
}
