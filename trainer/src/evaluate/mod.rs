//! `evaluate`: how close synthetic records are to real ones, how much they reveal about the
//! training patients, and where they stand between two baselines.
//!
//! [`evaluate`] compares a synthetic matrix with the real training and held-out matrices; the
//! same metrics are computed for independent per-code draws and for a sample of training rows
//! ([`baselines`]), so every figure can be read against "no structure" and "a copy".
//! [`utility`] measures what candidate rows add to a small real training set.
//! [`write_report`] writes `report.json` (schema: [`Report`], documented in `docs/REPORT.md`),
//! `report.md` and the plots.

pub mod align;
pub mod baselines;
pub mod cli;
pub mod detection;
pub mod fidelity;
pub mod logistic;
pub mod nearest;
mod plots;
pub mod prediction;
pub mod privacy;
#[cfg(test)]
mod real_data_tests;
pub mod report;
pub mod stats;
pub mod synthetic;
pub mod synthetic_long;
pub mod timings;
pub mod utility;

use std::path::PathBuf;

use medgan_sample::DataType;
use rand::SeedableRng;
use rand::seq::index;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use cli::{EvaluateArgs, run_cli};
pub use report::{CandidateReport, Report, Standing, write_report};
pub use stats::Stat;
pub use synthetic::{ColumnMatch, read_synthetic_parquet};
pub use timings::Timings;
pub use utility::Utility;

use crate::data::PatientMatrix;

/// Seed when none is given.
pub const DEFAULT_SEED: u64 = 20170506;
/// Rows sampled from the synthetic and held-out data for the privacy metrics.
pub const DEFAULT_PRIVACY_ROWS: usize = 5000;
/// Presence attack thresholds (Hamming distances).
pub const DEFAULT_PRESENCE_DISTANCES: [u32; 8] = [0, 1, 2, 3, 4, 6, 8, 10];
/// Share of a patient's codes the attribute attacker knows.
pub const DEFAULT_KNOWN_FRACTION: f64 = 0.5;
/// Nearest synthetic rows that vote in the attribute attack.
pub const DEFAULT_NEIGHBOURS: [usize; 2] = [1, 10];
/// Most frequent codes compared pairwise.
pub const DEFAULT_CO_OCCURRENCE_CODES: usize = 100;
/// Most frequent codes predicted from the others.
pub const DEFAULT_PREDICTION_CODES: usize = 50;
/// Rows each prediction model trains on, and held-out rows it is tested on.
pub const DEFAULT_PREDICTION_ROWS: usize = 10_000;
/// L2 penalty of every logistic regression (per-row loss scale).
pub const DEFAULT_L2: f64 = 1e-4;
/// Held-out rows, and as many synthetic rows, for detection.
pub const DEFAULT_DETECTION_ROWS: usize = 2000;
pub const DEFAULT_DETECTION_FOLDS: usize = 5;
pub const DEFAULT_DETECTION_TREES: usize = 25;
pub const DEFAULT_DETECTION_TREE_DEPTH: u16 = 8;
/// Most frequent codes (of each training fold) the trees may split on.
pub const DEFAULT_DETECTION_TREE_CODES: usize = 100;
/// Augmentation: real training rows per seed (`n`), the seeds, the feature codes (the most
/// frequent other codes), the held-out test rows, and the candidate rows added as multiples of
/// `n` (0 is the real rows alone).
pub const DEFAULT_UTILITY_TRAIN_ROWS: usize = 1000;
pub const DEFAULT_UTILITY_SEEDS: usize = 5;
pub const DEFAULT_UTILITY_FEATURE_CODES: usize = 100;
pub const DEFAULT_UTILITY_TEST_ROWS: usize = 10_000;
pub const DEFAULT_UTILITY_MULTIPLES: [f64; 5] = [0.0, 0.5, 1.0, 2.0, 4.0];

/// Every knob of an evaluation; saved in the report.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct EvalOptions {
    pub seed: u64,
    pub privacy_rows: usize,
    pub presence_distances: Vec<u32>,
    pub attribute_known_fraction: f64,
    pub attribute_neighbours: Vec<usize>,
    pub co_occurrence_codes: usize,
    pub prediction_codes: usize,
    pub prediction_rows: usize,
    pub l2: f64,
    pub detection_rows: usize,
    pub detection_folds: usize,
    pub detection_trees: usize,
    pub detection_tree_depth: u16,
    pub detection_tree_codes: usize,
    /// Code predicted in the augmentation experiment; `None`: the most frequent real code.
    pub utility_target: Option<String>,
    pub utility_train_rows: usize,
    pub utility_seeds: usize,
    pub utility_feature_codes: usize,
    pub utility_test_rows: usize,
    pub utility_multiples: Vec<f64>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            seed: DEFAULT_SEED,
            privacy_rows: DEFAULT_PRIVACY_ROWS,
            presence_distances: DEFAULT_PRESENCE_DISTANCES.to_vec(),
            attribute_known_fraction: DEFAULT_KNOWN_FRACTION,
            attribute_neighbours: DEFAULT_NEIGHBOURS.to_vec(),
            co_occurrence_codes: DEFAULT_CO_OCCURRENCE_CODES,
            prediction_codes: DEFAULT_PREDICTION_CODES,
            prediction_rows: DEFAULT_PREDICTION_ROWS,
            l2: DEFAULT_L2,
            detection_rows: DEFAULT_DETECTION_ROWS,
            detection_folds: DEFAULT_DETECTION_FOLDS,
            detection_trees: DEFAULT_DETECTION_TREES,
            detection_tree_depth: DEFAULT_DETECTION_TREE_DEPTH,
            detection_tree_codes: DEFAULT_DETECTION_TREE_CODES,
            utility_target: None,
            utility_train_rows: DEFAULT_UTILITY_TRAIN_ROWS,
            utility_seeds: DEFAULT_UTILITY_SEEDS,
            utility_feature_codes: DEFAULT_UTILITY_FEATURE_CODES,
            utility_test_rows: DEFAULT_UTILITY_TEST_ROWS,
            utility_multiples: DEFAULT_UTILITY_MULTIPLES.to_vec(),
        }
    }
}

/// Why an evaluation could not run or its report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("vocabularies differ: {0}")]
    Vocabulary(String),
    #[error("{} holds {synthetic} data but the real data is {real}", path.display())]
    DataType {
        path: PathBuf,
        real: DataType,
        synthetic: DataType,
    },
    #[error("{}: {why}", path.display())]
    Synthetic { path: PathBuf, why: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: cannot draw plot: {why}", path.display())]
    Plot { path: PathBuf, why: String },
    #[error("bad evaluation options: {0}")]
    Options(String),
}

/// A seeded sample of `min(k, n)` distinct row numbers below `n`, in increasing order.
pub fn sample_rows(n: usize, k: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    if k >= n {
        return (0..n).collect();
    }
    let mut rows = index::sample(rng, n, k).into_vec();
    rows.sort_unstable();
    rows
}

/// The generator for one part of the evaluation: its own stream of the seed, so that adding
/// or resizing one part never changes the draws of another.
fn stream(seed: u64, part: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(part);
    rng
}

/// Parts of one candidate's evaluation, each with its own random stream.
const PART_PRIVACY: u64 = 1;
const PART_PREDICTION: u64 = 2;
const PART_DETECTION: u64 = 3;
const PART_UTILITY: u64 = 4;
/// Streams of the shared parts, past every candidate's.
const STREAM_REAL_PREDICTION: u64 = 1000;
const STREAM_INDEPENDENT: u64 = 1001;
const STREAM_REAL_SAMPLE: u64 = 1002;
const STREAM_REAL_UTILITY: u64 = 1003;
/// Names of the candidates, in report order (keys of [`Timings`]).
pub const CANDIDATES: [&str; 3] = ["model", "independent", "real_sample"];

fn check(
    real: &PatientMatrix,
    holdout: &PatientMatrix,
    synthetic: &PatientMatrix,
    options: &EvalOptions,
) -> Result<(), EvalError> {
    for (what, other) in [("held-out", holdout), ("synthetic", synthetic)] {
        if other.codes() != real.codes() {
            let first = real
                .codes()
                .iter()
                .zip(other.codes())
                .position(|(a, b)| a != b)
                .unwrap_or(real.n_codes().min(other.n_codes()));
            return Err(EvalError::Vocabulary(format!(
                "the {what} data has {} codes, the real data {}; they first differ at column \
                 {first}",
                other.n_codes(),
                real.n_codes()
            )));
        }
    }
    if !(0.0..1.0).contains(&options.attribute_known_fraction) {
        return Err(EvalError::Options(format!(
            "attribute known fraction {} is not in [0, 1)",
            options.attribute_known_fraction
        )));
    }
    if options.utility_seeds == 0 || options.utility_train_rows == 0 {
        return Err(EvalError::Options(format!(
            "utility needs at least 1 seed and 1 training row, not {} and {}",
            options.utility_seeds, options.utility_train_rows
        )));
    }
    if let Some(bad) = options
        .utility_multiples
        .iter()
        .find(|k| !k.is_finite() || **k < 0.0)
    {
        return Err(EvalError::Options(format!(
            "utility multiple {bad} is not a finite non-negative number"
        )));
    }
    utility::resolve_target(real, options)?;
    if options.l2 <= 0.0 || options.l2.is_nan() {
        return Err(EvalError::Options(format!(
            "l2 penalty {} is not positive",
            options.l2
        )));
    }
    Ok(())
}

/// Evaluates `synthetic` against the real training (`real`) and held-out data, and the two
/// baselines the same way. All three matrices must share one vocabulary, in one order.
pub fn evaluate(
    real: &PatientMatrix,
    holdout: &PatientMatrix,
    synthetic: &PatientMatrix,
    options: &EvalOptions,
) -> Result<Report, EvalError> {
    evaluate_timed(real, holdout, synthetic, options).map(|(report, _)| report)
}

/// [`evaluate`], also saying where the time went.
pub fn evaluate_timed(
    real: &PatientMatrix,
    holdout: &PatientMatrix,
    synthetic: &PatientMatrix,
    options: &EvalOptions,
) -> Result<(Report, Timings), EvalError> {
    check(real, holdout, synthetic, options)?;
    let started = std::time::Instant::now();
    let mut timings = Timings::default();
    let mut rng = stream(options.seed, STREAM_REAL_PREDICTION);
    let real_side = timings.time("shared/prediction_real", || {
        prediction::real_side(real, holdout, options, &mut rng)
    });
    let mut rng = stream(options.seed, STREAM_REAL_UTILITY);
    let utility_side = timings.time("shared/utility_real", || {
        utility::real_side(real, holdout, options, &mut rng)
    })?;
    let rows = synthetic.n_patients();
    let (independent, sample) = timings.time("shared/baselines", || {
        (
            baselines::independent_draws(real, rows, &mut stream(options.seed, STREAM_INDEPENDENT)),
            baselines::real_sample(real, rows, &mut stream(options.seed, STREAM_REAL_SAMPLE)),
        )
    });
    let candidates = [synthetic, &independent, &sample];
    let mut reports = Vec::new();
    for (number, (candidate, name)) in candidates.iter().zip(CANDIDATES).enumerate() {
        let base = 16 * number as u64;
        let part = |p| stream(options.seed, base + p);
        let key = |metric: &str| format!("{name}/{metric}");
        let t = &mut timings;
        reports.push(CandidateReport {
            rows: candidate.n_patients(),
            dimension_wise: t.time(&key("dimension_wise"), || {
                fidelity::dimension_wise(real, candidate)
            }),
            record_shape: t.time(&key("record_shape"), || {
                fidelity::record_shape(real, candidate)
            }),
            co_occurrence: t.time(&key("co_occurrence"), || {
                fidelity::co_occurrence(real, candidate, options.co_occurrence_codes)
            }),
            prediction: t.time(&key("prediction"), || {
                let mut rng = part(PART_PREDICTION);
                prediction::prediction(&real_side, candidate, holdout, options, &mut rng)
            }),
            detection: t.time(&key("detection"), || {
                detection::detection(holdout, candidate, options, &mut part(PART_DETECTION))
            }),
            privacy: t.time(&key("privacy"), || {
                privacy::privacy(real, holdout, candidate, options, &mut part(PART_PRIVACY))
            }),
            utility: t.time(&key("utility"), || {
                utility::utility(&utility_side, candidate, options, &mut part(PART_UTILITY))
            }),
        });
        tracing::debug!(
            candidate = name,
            seconds = started.elapsed().as_secs_f64(),
            "evaluated"
        );
    }
    let [model, independent, real_sample]: [CandidateReport; 3] =
        reports.try_into().expect("three candidates");
    let report = Report::new(
        real,
        holdout,
        options.clone(),
        model,
        independent,
        real_sample,
    );
    timings.total_seconds = started.elapsed().as_secs_f64();
    Ok((report, timings))
}

#[cfg(test)]
mod tests {
    use super::fidelity::tests::binary;
    use super::*;

    #[test]
    fn same_seed_same_report_and_vocabularies_must_agree() {
        let rows: Vec<&[u32]> = (0..90)
            .map(|i| [&[0, 1][..], &[1], &[2, 3], &[]][i % 4])
            .collect();
        let (real, holdout) = (binary(4, &rows), binary(4, &rows[..40]));
        let synthetic = binary(4, &rows[10..70]);
        let options = EvalOptions::default();
        let first = evaluate(&real, &holdout, &synthetic, &options).unwrap();
        let second = evaluate(&real, &holdout, &synthetic, &options).unwrap();
        assert_eq!(first, second);
        let reseeded = EvalOptions {
            seed: 1,
            ..EvalOptions::default()
        };
        assert_ne!(
            evaluate(&real, &holdout, &synthetic, &reseeded).unwrap(),
            first
        );
        let err = evaluate(&real, &holdout, &binary(3, &[]), &options).unwrap_err();
        assert!(
            err.to_string().contains("the synthetic data has 3 codes"),
            "{err}"
        );
        // Empty synthetic data: a report of undefined figures, not an error or NaN.
        let empty = evaluate(&real, &holdout, &binary(4, &[]), &options).unwrap();
        assert!(empty.standing.iter().all(|s| s.model.get().is_none()));
        assert!(!serde_json::to_string(&empty).unwrap().contains("NaN"));
    }
}
