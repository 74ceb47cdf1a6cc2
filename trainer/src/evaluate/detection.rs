//! Detection: how well classifiers tell held-out real rows from synthetic rows, as the
//! cross-validated AUC of a logistic regression and of bagged decision trees (0.5: cannot).

use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::tree::decision_tree_classifier::{
    DecisionTreeClassifier, DecisionTreeClassifierParameters,
};

use super::logistic::{self, SparseRow};
use super::stats::{self, Stat};
use super::{EvalOptions, sample_rows};
use crate::data::PatientMatrix;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Detection {
    /// Held-out rows and as many synthetic rows (seeded samples).
    pub rows_each: usize,
    pub folds: usize,
    /// Features: presence of every code plus the number of codes in the row.
    pub logistic_auc: Stat,
    /// Bagged trees over the most frequent codes of each training fold plus the code count.
    pub trees_auc: Stat,
    pub trees: usize,
    pub tree_depth: u16,
    pub tree_codes: usize,
}

/// Presence features plus the number of codes, as feature `n_codes`.
fn features(row: &[u32], n_codes: usize) -> SparseRow {
    let mut f: SparseRow = row.iter().map(|&c| (c, 1.0)).collect();
    if !row.is_empty() {
        f.push((n_codes as u32, row.len() as f64));
    }
    f
}

pub fn detection(
    holdout: &PatientMatrix,
    synthetic: &PatientMatrix,
    options: &EvalOptions,
    rng: &mut ChaCha8Rng,
) -> Detection {
    let each = options
        .detection_rows
        .min(holdout.n_patients())
        .min(synthetic.n_patients());
    let mut rows: Vec<(&[u32], bool)> = sample_rows(holdout.n_patients(), each, rng)
        .into_iter()
        .map(|p| (holdout.row(p).0, false))
        .collect();
    rows.extend(
        sample_rows(synthetic.n_patients(), each, rng)
            .into_iter()
            .map(|p| (synthetic.row(p).0, true)),
    );
    rows.shuffle(rng);
    let folds = options.detection_folds.max(2);
    let tree_seed: u64 = rng.random();
    let result = |stat: Stat| Detection {
        rows_each: each,
        folds,
        logistic_auc: stat.clone(),
        trees_auc: stat,
        trees: options.detection_trees,
        tree_depth: options.detection_tree_depth,
        tree_codes: options.detection_tree_codes,
    };
    if each < folds {
        return result(Stat::undefined(format!(
            "{each} rows of each kind, fewer than the {folds} folds"
        )));
    }
    let n_codes = holdout.n_codes();
    let labels: Vec<bool> = rows.iter().map(|r| r.1).collect();
    let mut logistic_scores = vec![0.0; rows.len()];
    let mut tree_scores = vec![0.0; rows.len()];
    let mut logistic_failed = None;
    for fold in 0..folds {
        let (test, train): (Vec<usize>, Vec<usize>) =
            (0..rows.len()).partition(|&i| i % folds == fold);
        let train_labels: Vec<bool> = train.iter().map(|&i| labels[i]).collect();
        let train_x: Vec<SparseRow> = train
            .iter()
            .map(|&i| features(rows[i].0, n_codes))
            .collect();
        match logistic::fit(&train_x, &train_labels, n_codes + 1, options.l2) {
            Ok(model) => {
                for &i in &test {
                    logistic_scores[i] = model.predict(&features(rows[i].0, n_codes));
                }
            }
            Err(why) => logistic_failed = Some(why.to_string()),
        }
        let rows_of = |idx: &[usize]| idx.iter().map(|&i| rows[i].0).collect::<Vec<_>>();
        let votes = bagged_trees(
            &rows_of(&train),
            &train_labels,
            &rows_of(&test),
            n_codes,
            options,
            tree_seed.wrapping_add(fold as u64),
        );
        for (&i, v) in test.iter().zip(votes) {
            tree_scores[i] = v;
        }
    }
    Detection {
        logistic_auc: match logistic_failed {
            Some(why) => Stat::undefined(format!("no model: {why}")),
            None => stats::auc(&logistic_scores, &labels),
        },
        trees_auc: stats::auc(&tree_scores, &labels),
        ..result(Stat::undefined(""))
    }
}

/// Dense rows over `columns` (a code each) plus the code count.
fn dense(rows: &[&[u32]], columns: &[u32]) -> Vec<f64> {
    let width = columns.len() + 1;
    let mut out = vec![0.0; rows.len() * width];
    for (r, row) in rows.iter().enumerate() {
        for (k, c) in columns.iter().enumerate() {
            if row.binary_search(c).is_ok() {
                out[r * width + k] = 1.0;
            }
        }
        out[r * width + columns.len()] = row.len() as f64;
    }
    out
}

/// Share of trees voting "synthetic" for each test row; each tree sees a bootstrap sample.
fn bagged_trees(
    train: &[&[u32]],
    labels: &[bool],
    test: &[&[u32]],
    n_codes: usize,
    options: &EvalOptions,
    seed: u64,
) -> Vec<f64> {
    let mut counts = vec![0usize; n_codes];
    for row in train {
        row.iter().for_each(|&c| counts[c as usize] += 1);
    }
    let mut columns: Vec<u32> = (0..n_codes as u32)
        .filter(|&c| counts[c as usize] > 0)
        .collect();
    columns.sort_by_key(|&c| (std::cmp::Reverse(counts[c as usize]), c));
    columns.truncate(options.detection_tree_codes);
    let width = columns.len() + 1;
    let train_x = dense(train, &columns);
    let test_x = dense(test, &columns);
    let Ok(test_matrix) = DenseMatrix::new(test.len(), width, test_x, false) else {
        return vec![0.5; test.len()];
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut votes = vec![0.0; test.len()];
    let mut fitted = 0usize;
    for t in 0..options.detection_trees {
        let picks: Vec<usize> = (0..train.len())
            .map(|_| rng.random_range(0..train.len()))
            .collect();
        let mut x = Vec::with_capacity(picks.len() * width);
        picks
            .iter()
            .for_each(|&i| x.extend_from_slice(&train_x[i * width..(i + 1) * width]));
        let y: Vec<u32> = picks.iter().map(|&i| u32::from(labels[i])).collect();
        let Ok(matrix) = DenseMatrix::new(picks.len(), width, x, false) else {
            continue;
        };
        let params = DecisionTreeClassifierParameters {
            max_depth: Some(options.detection_tree_depth),
            seed: Some(seed.wrapping_add(t as u64)),
            ..Default::default()
        };
        let Ok(tree) = DecisionTreeClassifier::fit(&matrix, &y, params) else {
            continue;
        };
        let Ok(predicted) = tree.predict(&test_matrix) else {
            continue;
        };
        fitted += 1;
        for (v, p) in votes.iter_mut().zip(predicted) {
            *v += f64::from(p);
        }
    }
    if fitted > 0 {
        votes.iter_mut().for_each(|v| *v /= fitted as f64);
    }
    votes
}

#[cfg(test)]
mod tests {
    use super::super::fidelity::tests::binary;
    use super::*;

    #[test]
    fn identical_data_is_undetectable_and_different_data_is_detected() {
        let pattern: [&[u32]; 4] = [&[0, 1], &[2], &[1, 3], &[0]];
        let rows: Vec<&[u32]> = (0..200).map(|i| pattern[i % 4]).collect();
        let real = binary(6, &rows);
        let options = EvalOptions::default();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let same = detection(&real, &real, &options, &mut rng);
        for auc in [&same.logistic_auc, &same.trees_auc] {
            let v = auc.get().unwrap();
            assert!((v - 0.5).abs() < 0.1, "{v}");
        }
        let other: Vec<&[u32]> = (0..200)
            .map(|i| if i % 2 == 0 { &[4][..] } else { &[5] })
            .collect();
        let fake = binary(6, &other);
        let d = detection(&real, &fake, &options, &mut rng);
        assert!(d.logistic_auc.get().unwrap() > 0.99, "{d:?}");
        assert!(d.trees_auc.get().unwrap() > 0.99, "{d:?}");
        let tiny = detection(&real, &binary(6, &[&[0]]), &options, &mut rng);
        assert!(tiny.logistic_auc.undefined.is_some());
    }
}
