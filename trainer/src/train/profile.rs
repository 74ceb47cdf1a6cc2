//! Where training time goes: wall time summed per phase and per part of a step, and how many
//! cores each part kept busy.
//!
//! candle runs CPU operations eagerly, so the time spent inside a closure is the time of the
//! operations it issues; on a GPU, work queued asynchronously is charged to whichever part
//! waits for it (reading a loss back does). The process's CPU time over the same span says
//! how much of a part ran on one thread while the others waited: a part at 1.0 cores on a
//! 2-thread run is serial work.

use std::time::{Duration, Instant};

use cpu_time::ProcessTime;

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
    /// Wall time.
    pub total: Duration,
    /// CPU time of the whole process (every thread) over the same spans.
    pub cpu: Duration,
    pub calls: u64,
}

impl ProfilePart {
    /// Cores kept busy on average: CPU time over wall time.
    pub fn cores(&self) -> f64 {
        let wall = self.total.as_secs_f64();
        if wall > 0.0 {
            self.cpu.as_secs_f64() / wall
        } else {
            0.0
        }
    }
}

/// Wall and process CPU time since a start.
pub(crate) struct Stopwatch {
    wall: Instant,
    cpu: ProcessTime,
}

impl Stopwatch {
    pub(crate) fn start() -> Self {
        Self {
            wall: Instant::now(),
            cpu: ProcessTime::now(),
        }
    }
}

impl Profile {
    /// Runs `work`, charging its wall time to `label`.
    pub(crate) fn time<T>(&mut self, label: &'static str, work: impl FnOnce() -> T) -> T {
        let started = Stopwatch::start();
        let value = work();
        self.add_since(label, &started);
        value
    }

    /// Charges the wall and CPU time since `started` to `label`.
    pub(crate) fn add_since(&mut self, label: &'static str, started: &Stopwatch) {
        self.add(label, started.wall.elapsed(), started.cpu.elapsed());
    }

    fn add(&mut self, label: &'static str, wall: Duration, cpu: Duration) {
        match self.parts.iter_mut().find(|part| part.label == label) {
            Some(part) => {
                part.total += wall;
                part.cpu += cpu;
                part.calls += 1;
            }
            None => self.parts.push(ProfilePart {
                label,
                total: wall,
                cpu,
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

    /// A plain-text table: each part's share of its phase, total seconds, mean milliseconds
    /// per call and cores busy, grouped by phase.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<44} {:>7} {:>9} {:>9} {:>8} {:>6}\n",
            "part", "share", "total s", "ms/call", "calls", "cores"
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
                "{:<44} {:>6.1}% {:>9.3} {:>9.3} {:>8} {:>6.2}\n",
                part.label,
                share,
                total,
                1000.0 * total / part.calls.max(1) as f64,
                part.calls,
                part.cores()
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
        let ms = Duration::from_millis;
        profile.add("gan: b", ms(30), ms(60));
        profile.add("gan: a", ms(10), ms(10));
        profile.add("gan: b", ms(20), ms(40));
        profile.add("autoencoder: x", ms(5), ms(0));
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
        // 100 ms of CPU over 50 ms of wall: two cores busy.
        assert_eq!(profile.parts()[0].cores(), 2.0);
        assert!(table.contains("2.00\n"), "{table}");
        let value = profile.time("gan: a", || 7);
        assert_eq!(value, 7);
        assert_eq!(profile.parts()[1].calls, 2);
    }
}
