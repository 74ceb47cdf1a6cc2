//! Dimension-wise prediction: for each frequent code, a logistic regression predicts it from
//! the other codes, trained once on real and once on synthetic rows, tested on held-out rows.

use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::fidelity::most_frequent_codes;
use super::logistic::{self, SparseRow};
use super::stats::{self, Stat};
use super::{EvalOptions, sample_rows};
use crate::data::PatientMatrix;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct CodePrediction {
    pub code: String,
    /// Trained on real training rows, tested on held-out rows.
    pub real_auc: Stat,
    pub real_f1: Stat,
    /// Trained on synthetic rows, tested on the same held-out rows.
    pub synthetic_auc: Stat,
    pub synthetic_f1: Stat,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Rows each model trains on (seeded samples) and the held-out rows all are tested on.
    pub real_train_rows: usize,
    pub synthetic_train_rows: usize,
    pub test_rows: usize,
    pub per_code: Vec<CodePrediction>,
    pub real_mean_auc: Stat,
    pub synthetic_mean_auc: Stat,
    /// Mean over codes where both are defined of `real_auc - synthetic_auc`.
    pub auc_gap: Stat,
    pub real_mean_f1: Stat,
    pub synthetic_mean_f1: Stat,
    /// Correlation over codes of the real-trained and synthetic-trained AUC.
    pub auc_pearson_r: Stat,
}

/// The codes to predict, the test rows, and the real-trained results, shared by candidates.
pub struct RealSide {
    codes: Vec<u32>,
    test: Vec<usize>,
    train_rows: usize,
    results: Vec<(Stat, Stat)>,
}

/// `row` without `target`, as presence features.
fn features_without(row: &[u32], target: u32) -> SparseRow {
    row.iter()
        .filter(|&&c| c != target)
        .map(|&c| (c, 1.0))
        .collect()
}

/// Trains on `train_rows` of `train` to predict `code`, tests on `test` rows of `holdout`.
fn train_and_test(
    train: &PatientMatrix,
    train_rows: &[usize],
    holdout: &PatientMatrix,
    test: &[usize],
    code: u32,
    l2: f64,
) -> (Stat, Stat) {
    let (rows, labels): (Vec<SparseRow>, Vec<bool>) = train_rows
        .iter()
        .map(|&p| {
            let row = train.row(p).0;
            (
                features_without(row, code),
                row.binary_search(&code).is_ok(),
            )
        })
        .unzip();
    let model = match logistic::fit(&rows, &labels, train.n_codes(), l2) {
        Ok(model) => model,
        Err(why) => {
            let why = format!("no model: {why}");
            return (Stat::undefined(why.clone()), Stat::undefined(why));
        }
    };
    let (scores, truth): (Vec<f64>, Vec<bool>) = test
        .iter()
        .map(|&p| {
            let row = holdout.row(p).0;
            (
                model.predict(&features_without(row, code)),
                row.binary_search(&code).is_ok(),
            )
        })
        .unzip();
    (stats::auc(&scores, &truth), stats::f1(&scores, &truth, 0.5))
}

pub fn real_side(
    train: &PatientMatrix,
    holdout: &PatientMatrix,
    options: &EvalOptions,
    rng: &mut ChaCha8Rng,
) -> RealSide {
    let codes = most_frequent_codes(train, options.prediction_codes);
    let test = sample_rows(holdout.n_patients(), options.prediction_rows, rng);
    let train_rows = sample_rows(train.n_patients(), options.prediction_rows, rng);
    let results = codes
        .iter()
        .map(|&c| train_and_test(train, &train_rows, holdout, &test, c, options.l2))
        .collect();
    RealSide {
        codes,
        test,
        train_rows: train_rows.len(),
        results,
    }
}

pub fn prediction(
    real: &RealSide,
    synthetic: &PatientMatrix,
    holdout: &PatientMatrix,
    options: &EvalOptions,
    rng: &mut ChaCha8Rng,
) -> Prediction {
    let train_rows = sample_rows(synthetic.n_patients(), options.prediction_rows, rng);
    let per_code: Vec<CodePrediction> = real
        .codes
        .iter()
        .zip(&real.results)
        .map(|(&c, (real_auc, real_f1))| {
            let (synthetic_auc, synthetic_f1) =
                train_and_test(synthetic, &train_rows, holdout, &real.test, c, options.l2);
            CodePrediction {
                code: synthetic.codes()[c as usize].clone(),
                real_auc: real_auc.clone(),
                real_f1: real_f1.clone(),
                synthetic_auc,
                synthetic_f1,
            }
        })
        .collect();
    let (mut real_aucs, mut synthetic_aucs) = (Vec::new(), Vec::new());
    for p in &per_code {
        if let (Some(a), Some(b)) = (p.real_auc.get(), p.synthetic_auc.get()) {
            real_aucs.push(a);
            synthetic_aucs.push(b);
        }
    }
    let gaps: Vec<Stat> = real_aucs
        .iter()
        .zip(&synthetic_aucs)
        .map(|(a, b)| Stat::of(a - b))
        .collect();
    Prediction {
        real_train_rows: real.train_rows,
        synthetic_train_rows: train_rows.len(),
        test_rows: real.test.len(),
        real_mean_auc: stats::mean_defined(per_code.iter().map(|p| &p.real_auc)),
        synthetic_mean_auc: stats::mean_defined(per_code.iter().map(|p| &p.synthetic_auc)),
        auc_gap: stats::mean_defined(&gaps),
        real_mean_f1: stats::mean_defined(per_code.iter().map(|p| &p.real_f1)),
        synthetic_mean_f1: stats::mean_defined(per_code.iter().map(|p| &p.synthetic_f1)),
        auc_pearson_r: stats::pearson(&real_aucs, &synthetic_aucs),
        per_code,
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::super::fidelity::tests::binary;
    use super::*;

    #[test]
    fn a_code_implied_by_another_is_predicted_and_gaps_are_zero_on_real_data() {
        // c1 occurs exactly when c0 does; c2 is noise. Real and "synthetic" are the same rows.
        let mut rows: Vec<&[u32]> = Vec::new();
        for i in 0..40 {
            rows.push(match i % 4 {
                0 => &[0, 1],
                1 => &[0, 1, 2],
                2 => &[2],
                _ => &[],
            });
        }
        let m = binary(3, &rows);
        let options = EvalOptions::default();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let real = real_side(&m, &m, &options, &mut rng);
        let p = prediction(&real, &m, &m, &options, &mut rng);
        let c1 = p.per_code.iter().find(|c| c.code == "c1").unwrap();
        assert_eq!(c1.real_auc.get(), Some(1.0));
        assert_eq!(c1.real_f1.get(), Some(1.0));
        assert_eq!(p.auc_gap.get(), Some(0.0));
        // Synthetic rows without any c1: that model cannot be fitted, and says why.
        let no_c1 = binary(3, &[&[0], &[2], &[]]);
        let p = prediction(&real, &no_c1, &m, &options, &mut rng);
        let c1 = p.per_code.iter().find(|c| c.code == "c1").unwrap();
        assert!(
            c1.synthetic_auc
                .undefined
                .as_deref()
                .unwrap()
                .contains("one class")
        );
        assert!(p.synthetic_mean_auc.get().is_some());
    }
}
