//! Where an evaluation's time goes, per part and candidate; kept out of `report.json` so that
//! the report stays byte-for-byte reproducible (the CLI writes it to `timings.json`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::EvalError;

/// File name inside the report folder.
pub const TIMINGS_JSON: &str = "timings.json";

/// Wall-clock seconds of each part, keyed `candidate/metric` (`model/privacy`) or
/// `shared/part` for work done once for all candidates.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Timings {
    pub total_seconds: f64,
    pub seconds: BTreeMap<String, f64>,
}

impl Timings {
    /// Runs `work`, adding its wall-clock time to `key`.
    pub fn time<T>(&mut self, key: &str, work: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = work();
        *self.seconds.entry(key.to_string()).or_default() += started.elapsed().as_secs_f64();
        out
    }

    /// Seconds per metric, summed over the candidates (`shared/...` parts kept as they are).
    pub fn per_metric(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (key, &s) in &self.seconds {
            let metric = match key.split_once('/') {
                Some(("shared", _)) | None => key.as_str(),
                Some((_, metric)) => metric,
            };
            *out.entry(metric.to_string()).or_default() += s;
        }
        out
    }

    /// Writes `timings.json` into `dir` (which must exist).
    pub fn write(&self, dir: &Path) -> Result<(), EvalError> {
        let path = dir.join(TIMINGS_JSON);
        let json = serde_json::to_string_pretty(self).expect("timings always serialise");
        std::fs::write(&path, json + "\n").map_err(|source| EvalError::Io { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_add_up_per_metric() {
        let mut t = Timings::default();
        assert_eq!(t.time("model/privacy", || 7), 7);
        t.time("independent/privacy", || ());
        t.time("shared/baselines", || ());
        t.seconds.insert("model/privacy".into(), 1.0);
        t.seconds.insert("independent/privacy".into(), 2.0);
        let per = t.per_metric();
        assert_eq!(per["privacy"], 3.0);
        assert!(per.contains_key("shared/baselines"));
        assert_eq!(per.len(), 2);
        let dir = tempfile::tempdir().unwrap();
        t.write(dir.path()).unwrap();
        let back: Timings =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join(TIMINGS_JSON)).unwrap())
                .unwrap();
        assert_eq!(back.seconds.len(), 3);
    }
}
