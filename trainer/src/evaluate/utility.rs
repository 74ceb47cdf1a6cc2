//! Utility by augmentation: does adding candidate rows to a small real training set help a
//! classifier of one target code, tested on held-out real patients?
//!
//! For each seed, `n` real training rows are drawn; a logistic regression of the target on the
//! most frequent other codes is trained on them alone and with `m` candidate rows added (each
//! labelled by its own target column), for `m = multiple * n`. The candidate rows of one seed
//! are nested (the rows for `2n` include those for `n`), so the curve moves only with `m`.
//! Every candidate shares the real subsets and the test rows, so `m = 0` is the same for all.

use rand::seq::index;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::fidelity::most_frequent_codes;
use super::logistic::{self, SparseRow};
use super::stats::{self, Stat};
use super::{EvalError, EvalOptions, sample_rows};
use crate::data::PatientMatrix;

/// Mean and spread of one figure over the seeds; undefined seeds are left out.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Spread {
    pub mean: Stat,
    /// Sample standard deviation (n - 1); undefined with fewer than 2 defined seeds.
    pub sd: Stat,
    pub min: Stat,
    pub max: Stat,
    /// Seeds with a defined value.
    pub defined: usize,
    pub per_seed: Vec<Stat>,
}

impl Spread {
    pub fn of(per_seed: Vec<Stat>) -> Self {
        let values: Vec<f64> = per_seed.iter().filter_map(Stat::get).collect();
        let none = || Stat::undefined("no seed gave a defined value");
        let (mean, min, max) = if values.is_empty() {
            (none(), none(), none())
        } else {
            let fold =
                |f: fn(f64, f64) -> f64, start| Stat::of(values.iter().copied().fold(start, f));
            (
                stats::mean_defined(&per_seed),
                fold(f64::min, f64::INFINITY),
                fold(f64::max, f64::NEG_INFINITY),
            )
        };
        let sd = match (values.len(), mean.get()) {
            (k, Some(m)) if k >= 2 => {
                let ss: f64 = values.iter().map(|v| (v - m).powi(2)).sum();
                Stat::of((ss / (k - 1) as f64).sqrt())
            }
            _ => Stat::undefined("fewer than 2 seeds gave a defined value"),
        };
        Self {
            mean,
            sd,
            min,
            max,
            defined: values.len(),
            per_seed,
        }
    }

    /// `mean ± sd` for tables.
    pub fn show(&self, decimals: usize) -> String {
        match (self.mean.get(), self.sd.get()) {
            (Some(_), Some(_)) => {
                format!("{} ± {}", self.mean.show(decimals), self.sd.show(decimals))
            }
            (Some(_), None) => self.mean.show(decimals),
            _ => "undefined".to_string(),
        }
    }
}

/// One point of the augmentation curve.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct AugmentationPoint {
    /// `m / n` as asked for.
    pub multiple: f64,
    /// Candidate rows added: `round(multiple * n)`, at most the candidate's rows (figures are
    /// undefined where a positive multiple adds none).
    pub added_rows: usize,
    pub auc: Spread,
    /// F1 at probability 0.5.
    pub f1: Spread,
    /// Per seed, AUC with the added rows minus AUC of the real rows alone (paired).
    pub auc_gain: Spread,
}

/// The augmentation experiment for one candidate.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Utility {
    /// The target code; `None` when there is none to predict (see `undefined`).
    pub target: Option<String>,
    pub undefined: Option<String>,
    /// Features: presence of the most frequent real codes other than the target.
    pub feature_codes: usize,
    /// Real training rows per seed (`n`) and held-out test rows shared by all.
    pub real_train_rows: usize,
    pub test_rows: usize,
    pub seeds: usize,
    /// Share of rows with the target: real training data, test rows, candidate rows.
    pub real_target_share: Stat,
    pub test_target_share: Stat,
    pub candidate_target_share: Stat,
    pub points: Vec<AugmentationPoint>,
}

impl Utility {
    /// The point with `m = n`, if one was asked for.
    pub fn at_multiple(&self, multiple: f64) -> Option<&AugmentationPoint> {
        self.points.iter().find(|p| p.multiple == multiple)
    }
}

/// A labelled training or test row.
type Example = (SparseRow, bool);

/// The target, features, test rows and real subsets, shared by every candidate.
pub struct RealSide {
    target: Option<u32>,
    why_no_target: Option<String>,
    /// Feature number of each code, for the chosen feature codes.
    feature_of: Vec<Option<u32>>,
    n_features: usize,
    real_target_share: Stat,
    test: Vec<Example>,
    subsets: Vec<Vec<Example>>,
    /// Per seed, (AUC, F1) of the real rows alone.
    alone: Vec<(Stat, Stat)>,
    real_train_rows: usize,
}

/// The target named in `options` (checked against the vocabulary), else the most frequent
/// code; `Ok(None)` when no code occurs at all.
pub fn resolve_target(
    real: &PatientMatrix,
    options: &EvalOptions,
) -> Result<Option<u32>, EvalError> {
    match &options.utility_target {
        Some(name) => real
            .codes()
            .iter()
            .position(|c| c == name)
            .map(|j| Some(j as u32))
            .ok_or_else(|| {
                EvalError::Options(format!(
                    "utility target `{name}` is not a code of the real data ({} codes)",
                    real.n_codes()
                ))
            }),
        None => Ok(most_frequent_codes(real, 1).first().copied()),
    }
}

fn share(matrix: &PatientMatrix, rows: impl Iterator<Item = usize>, target: u32) -> Stat {
    let (mut n, mut with) = (0usize, 0usize);
    for p in rows {
        n += 1;
        with += usize::from(matrix.row(p).0.binary_search(&target).is_ok());
    }
    stats::ratio(with as f64, n as f64, "rows")
}

impl RealSide {
    fn example(&self, row: &[u32], target: u32) -> Example {
        let features = row
            .iter()
            .filter_map(|&c| self.feature_of[c as usize].map(|f| (f, 1.0)))
            .collect();
        (features, row.binary_search(&target).is_ok())
    }

    fn examples(&self, matrix: &PatientMatrix, rows: &[usize], target: u32) -> Vec<Example> {
        rows.iter()
            .map(|&p| self.example(matrix.row(p).0, target))
            .collect()
    }

    /// AUC and F1 on the test rows of a model trained on `train`.
    fn train_and_test(&self, train: &[Example], l2: f64) -> (Stat, Stat) {
        let (rows, labels): (Vec<SparseRow>, Vec<bool>) = train.iter().cloned().unzip();
        let model = match logistic::fit(&rows, &labels, self.n_features, l2) {
            Ok(model) => model,
            Err(why) => {
                let why = format!("no model: {why}");
                return (Stat::undefined(why.clone()), Stat::undefined(why));
            }
        };
        let scores: Vec<f64> = self.test.iter().map(|(x, _)| model.predict(x)).collect();
        let truth: Vec<bool> = self.test.iter().map(|(_, y)| *y).collect();
        (stats::auc(&scores, &truth), stats::f1(&scores, &truth, 0.5))
    }
}

/// Draws the test rows and each seed's real subset and trains the real-only models.
pub fn real_side(
    real: &PatientMatrix,
    holdout: &PatientMatrix,
    options: &EvalOptions,
    rng: &mut ChaCha8Rng,
) -> Result<RealSide, EvalError> {
    let target = resolve_target(real, options)?;
    let mut side = RealSide {
        target,
        why_no_target: target
            .is_none()
            .then(|| "no code occurs in the real data".to_string()),
        feature_of: vec![None; real.n_codes()],
        n_features: 0,
        real_target_share: Stat::undefined("no target"),
        test: Vec::new(),
        subsets: Vec::new(),
        alone: Vec::new(),
        real_train_rows: 0,
    };
    let Some(target) = target else {
        return Ok(side);
    };
    // One more than asked, so that dropping the target still leaves as many features.
    let features: Vec<u32> = most_frequent_codes(real, options.utility_feature_codes + 1)
        .into_iter()
        .filter(|&c| c != target)
        .take(options.utility_feature_codes)
        .collect();
    for (f, &c) in features.iter().enumerate() {
        side.feature_of[c as usize] = Some(f as u32);
    }
    side.n_features = features.len();
    side.real_target_share = share(real, 0..real.n_patients(), target);
    let test = sample_rows(holdout.n_patients(), options.utility_test_rows, rng);
    side.test = side.examples(holdout, &test, target);
    for _ in 0..options.utility_seeds {
        let rows = sample_rows(real.n_patients(), options.utility_train_rows, rng);
        side.real_train_rows = rows.len();
        let subset = side.examples(real, &rows, target);
        side.alone.push(side.train_and_test(&subset, options.l2));
        side.subsets.push(subset);
    }
    Ok(side)
}

/// The augmentation curve of `candidate`.
pub fn utility(
    real: &RealSide,
    candidate: &PatientMatrix,
    options: &EvalOptions,
    rng: &mut ChaCha8Rng,
) -> Utility {
    let test_target_share = match real.test.len() {
        0 => Stat::undefined("no test rows"),
        n => Stat::of(real.test.iter().filter(|(_, y)| *y).count() as f64 / n as f64),
    };
    let mut report = Utility {
        target: real.target.map(|t| candidate.codes()[t as usize].clone()),
        undefined: real.why_no_target.clone(),
        feature_codes: real.n_features,
        real_train_rows: real.real_train_rows,
        test_rows: real.test.len(),
        seeds: options.utility_seeds,
        real_target_share: real.real_target_share.clone(),
        test_target_share,
        candidate_target_share: Stat::undefined("no target"),
        points: Vec::new(),
    };
    let Some(target) = real.target else {
        return report;
    };
    report.candidate_target_share = share(candidate, 0..candidate.n_patients(), target);
    let added: Vec<usize> = options
        .utility_multiples
        .iter()
        .map(|&k| ((k * real.real_train_rows as f64).round() as usize).min(candidate.n_patients()))
        .collect();
    let most = added.iter().copied().max().unwrap_or(0);
    // results[point][seed] = (AUC, F1, gain)
    let mut results = vec![Vec::new(); added.len()];
    for (subset, (alone_auc, alone_f1)) in real.subsets.iter().zip(&real.alone) {
        // A random order, not sorted: its prefixes are nested random samples.
        let order = index::sample(rng, candidate.n_patients(), most).into_vec();
        for (point, (&m, &multiple)) in added.iter().zip(&options.utility_multiples).enumerate() {
            let (auc, f1) = if m == 0 && multiple > 0.0 {
                let why = "the candidate has no rows to add";
                (Stat::undefined(why), Stat::undefined(why))
            } else if m == 0 {
                (alone_auc.clone(), alone_f1.clone())
            } else {
                let mut train = subset.clone();
                train.extend(real.examples(candidate, &order[..m], target));
                real.train_and_test(&train, options.l2)
            };
            let gain = match (auc.get(), alone_auc.get()) {
                (Some(a), Some(b)) => Stat::of(a - b),
                _ => Stat::undefined("an AUC is undefined"),
            };
            results[point].push((auc, f1, gain));
        }
    }
    report.points = options
        .utility_multiples
        .iter()
        .zip(added)
        .zip(results)
        .map(|((&multiple, added_rows), seeds)| {
            let mut columns = (Vec::new(), Vec::new(), Vec::new());
            for (auc, f1, gain) in seeds {
                columns.0.push(auc);
                columns.1.push(f1);
                columns.2.push(gain);
            }
            AugmentationPoint {
                multiple,
                added_rows,
                auc: Spread::of(columns.0),
                f1: Spread::of(columns.1),
                auc_gain: Spread::of(columns.2),
            }
        })
        .collect();
    report
}

#[cfg(test)]
mod tests {
    use rand::{RngExt, SeedableRng};

    use super::super::fidelity::tests::binary;
    use super::*;

    /// Rows over codes c0..c3: the target c0 follows c1 (90%), c2 is common noise, c3 rare.
    fn learnable(n: usize, rng: &mut ChaCha8Rng) -> Vec<Vec<u32>> {
        (0..n)
            .map(|_| {
                let c1 = rng.random::<f64>() < 0.5;
                let c0 = if rng.random::<f64>() < 0.9 { c1 } else { !c1 };
                let mut row = Vec::new();
                for (code, present) in [
                    (0, c0),
                    (1, c1),
                    (2, rng.random::<f64>() < 0.6),
                    (3, rng.random::<f64>() < 0.1),
                ] {
                    if present {
                        row.push(code);
                    }
                }
                row
            })
            .collect()
    }

    fn matrix(rows: &[Vec<u32>]) -> PatientMatrix {
        let refs: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
        binary(4, &refs)
    }

    fn options() -> EvalOptions {
        EvalOptions {
            utility_train_rows: 40,
            utility_seeds: 5,
            utility_multiples: vec![0.0, 1.0, 4.0, 16.0],
            ..EvalOptions::default()
        }
    }

    fn curve(real: &PatientMatrix, holdout: &PatientMatrix, candidate: &PatientMatrix) -> Utility {
        let options = options();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let side = real_side(real, holdout, &options, &mut rng).unwrap();
        utility(&side, candidate, &options, &mut rng)
    }

    fn mean(s: &Spread) -> f64 {
        s.mean.get().unwrap_or_else(|| panic!("undefined: {s:?}"))
    }

    #[test]
    fn real_copies_do_not_hurt_and_noise_rows_do() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let (real, holdout) = (
            matrix(&learnable(2000, &mut rng)),
            matrix(&learnable(1000, &mut rng)),
        );
        let copies = curve(&real, &holdout, &real);
        assert_eq!(
            copies.target.as_deref(),
            Some("c2"),
            "the most frequent code"
        );
        // Make c0 the target so that the problem is learnable (c2 is noise).
        let options = EvalOptions {
            utility_target: Some("c0".into()),
            ..options()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let side = real_side(&real, &holdout, &options, &mut rng).unwrap();
        let copies = utility(&side, &real, &options, &mut rng);
        assert_eq!(copies.feature_codes, 3);
        assert_eq!(copies.real_train_rows, 40);
        let alone = mean(&copies.points[0].auc);
        assert!(alone > 0.8, "{alone}");
        let with_copies = mean(&copies.points[3].auc);
        assert!(with_copies >= alone - 0.005, "{with_copies} < {alone}");
        assert_eq!(copies.points[3].added_rows, 640);
        // Noise: target and features drawn independently, the target in half the rows.
        let noise: Vec<Vec<u32>> = (0..1000)
            .map(|_| (0..4).filter(|_| rng.random::<f64>() < 0.5).collect())
            .collect();
        let noisy = utility(&side, &matrix(&noise), &options, &mut rng);
        assert_eq!(noisy.points[0], copies.points[0], "m = 0 is shared");
        let none = utility(&side, &binary(4, &[]), &options, &mut rng);
        assert_eq!(none.points[0], copies.points[0]);
        let why = none.points[1].auc.per_seed[0].undefined.as_deref().unwrap();
        assert!(
            why.contains("no rows to add") && none.points[1].added_rows == 0,
            "{why}"
        );
        let drowned = mean(&noisy.points[3].auc);
        assert!(drowned < alone - 0.05, "{drowned} vs {alone}");
        assert!(mean(&noisy.points[3].auc_gain) < 0.0);
        assert!(noisy.points[3].auc.sd.get().is_some());
    }

    #[test]
    fn constant_targets_and_unknown_codes_are_undefined_or_refused() {
        // c1 in every row: no real-only model can be fitted; the test labels are one class.
        let rows: Vec<Vec<u32>> = (0..60)
            .map(|i| if i % 3 == 0 { vec![0, 1] } else { vec![1] })
            .collect();
        let m = matrix(&rows);
        let u = curve(&m, &m, &m);
        assert_eq!(u.target.as_deref(), Some("c1"));
        for p in &u.points {
            assert!(p.auc.per_seed.iter().all(|s| s.get().is_none()), "{p:?}");
            let why = p.auc.per_seed[0].undefined.as_deref().unwrap();
            assert!(why.contains("one class"), "{why}");
        }
        assert_eq!(u.points[0].auc.defined, 0);
        let empty = binary(4, &[&[], &[]]);
        let u = curve(&empty, &empty, &empty);
        assert!(u.target.is_none() && u.undefined.is_some() && u.points.is_empty());
        let bad = EvalOptions {
            utility_target: Some("nope".into()),
            ..options()
        };
        let err = resolve_target(&m, &bad).unwrap_err().to_string();
        assert!(err.contains("utility target `nope` is not a code"), "{err}");
    }

    #[test]
    fn spread_of_known_values() {
        let s = Spread::of(vec![Stat::of(1.0), Stat::undefined("x"), Stat::of(3.0)]);
        assert_eq!(
            (s.mean.get(), s.min.get(), s.max.get()),
            (Some(2.0), Some(1.0), Some(3.0))
        );
        assert!((s.sd.get().unwrap() - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(s.defined, 2);
        assert!(Spread::of(vec![Stat::of(1.0)]).sd.get().is_none());
    }
}
