//! Fidelity metrics: per-code marginals, the shape of records, and co-occurrence of codes.

use serde::{Deserialize, Serialize};

use super::stats::{self, Stat};
use crate::data::PatientMatrix;

/// Per-code mean (the probability of the code, for binary data) in real and synthetic data.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct DimensionWise {
    /// Pearson correlation over codes of the real and synthetic means.
    pub pearson_r: Stat,
    /// `1 - sum (real - synthetic)^2 / sum (real - mean real)^2` over codes.
    pub r_squared: Stat,
    pub rmse: Stat,
    /// Codes present in some real record but in no synthetic record.
    pub never_generated: Vec<String>,
    /// Mean per code, in vocabulary order: real (training data).
    pub real_means: Vec<f64>,
    /// Mean per code, in vocabulary order: synthetic (empty when there are no synthetic rows).
    pub synthetic_means: Vec<f64>,
}

/// Mean of every column; `None` for a matrix without rows.
pub fn column_means(matrix: &PatientMatrix) -> Option<Vec<f64>> {
    if matrix.n_patients() == 0 {
        return None;
    }
    let mut sums = vec![0.0; matrix.n_codes()];
    for p in 0..matrix.n_patients() {
        let (cols, vals) = matrix.row(p);
        for (&c, &v) in cols.iter().zip(vals) {
            sums[c as usize] += v as f64;
        }
    }
    let n = matrix.n_patients() as f64;
    Some(sums.into_iter().map(|s| s / n).collect())
}

pub fn dimension_wise(real: &PatientMatrix, synthetic: &PatientMatrix) -> DimensionWise {
    let real_means = column_means(real).unwrap_or_default();
    let Some(synthetic_means) = column_means(synthetic) else {
        let none = || Stat::undefined("the synthetic data has no rows");
        return DimensionWise {
            pearson_r: none(),
            r_squared: none(),
            rmse: none(),
            never_generated: Vec::new(),
            real_means,
            synthetic_means: Vec::new(),
        };
    };
    let never_generated = real
        .patients_per_code()
        .iter()
        .zip(synthetic.patients_per_code())
        .enumerate()
        .filter(|(_, (r, s))| **r > 0 && *s == 0)
        .map(|(j, _)| real.codes()[j].clone())
        .collect();
    let (pearson_r, r_squared, rmse) = if real_means.is_empty() {
        let none = || Stat::undefined("the real data has no rows or no codes");
        (none(), none(), none())
    } else {
        (
            stats::pearson(&real_means, &synthetic_means),
            stats::r_squared(&real_means, &synthetic_means),
            stats::rmse(&real_means, &synthetic_means),
        )
    };
    DimensionWise {
        pearson_r,
        r_squared,
        rmse,
        never_generated,
        real_means,
        synthetic_means,
    }
}

/// How many distinct codes records hold.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct RecordShape {
    /// `real_histogram[k]`: real records with exactly `k` non-zero codes.
    pub real_histogram: Vec<u64>,
    pub synthetic_histogram: Vec<u64>,
    /// Total-variation distance between the two histograms as distributions (0 same, 1 disjoint).
    pub total_variation: Stat,
    pub real_mean_codes: Stat,
    pub synthetic_mean_codes: Stat,
    /// Share of records without any code.
    pub real_all_zero_share: Stat,
    pub synthetic_all_zero_share: Stat,
}

/// Histogram of the number of non-zero codes per record.
pub fn codes_per_record(matrix: &PatientMatrix) -> Vec<u64> {
    let mut histogram = Vec::new();
    for p in 0..matrix.n_patients() {
        let k = matrix.row(p).0.len();
        if histogram.len() <= k {
            histogram.resize(k + 1, 0);
        }
        histogram[k] += 1;
    }
    histogram
}

fn histogram_mean(h: &[u64]) -> Stat {
    let n: u64 = h.iter().sum();
    let total: u64 = h.iter().enumerate().map(|(k, c)| k as u64 * c).sum();
    stats::ratio(total as f64, n as f64, "records")
}

fn zero_share(h: &[u64]) -> Stat {
    let n: u64 = h.iter().sum();
    stats::ratio(h.first().copied().unwrap_or(0) as f64, n as f64, "records")
}

pub fn record_shape(real: &PatientMatrix, synthetic: &PatientMatrix) -> RecordShape {
    let real_histogram = codes_per_record(real);
    let synthetic_histogram = codes_per_record(synthetic);
    RecordShape {
        total_variation: stats::total_variation(&real_histogram, &synthetic_histogram),
        real_mean_codes: histogram_mean(&real_histogram),
        synthetic_mean_codes: histogram_mean(&synthetic_histogram),
        real_all_zero_share: zero_share(&real_histogram),
        synthetic_all_zero_share: zero_share(&synthetic_histogram),
        real_histogram,
        synthetic_histogram,
    }
}

/// Pairwise statistics among the most frequent real codes (presence only, counts ignored).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct CoOccurrence {
    /// The codes compared, most frequent in the real data first.
    pub codes: Vec<String>,
    /// Pearson r over code pairs of P(both present), real vs synthetic.
    pub joint_pearson_r: Stat,
    pub joint_r_squared: Stat,
    /// Mean over pairs of |phi_real - phi_synthetic|, phi the correlation of the two presences.
    pub correlation_mean_abs_diff: Stat,
    /// Pairs left out of that mean: a code constant in the real or the synthetic data.
    pub correlation_pairs_undefined: usize,
    /// P(both present) per pair (i < j in `codes` order, row by row): real, then synthetic.
    pub real_joint: Vec<f64>,
    pub synthetic_joint: Vec<f64>,
}

/// The `k` codes present in most real records (ties: lower column first).
pub fn most_frequent_codes(real: &PatientMatrix, k: usize) -> Vec<u32> {
    let counts = real.patients_per_code();
    let mut order: Vec<u32> = (0..counts.len() as u32)
        .filter(|&j| counts[j as usize] > 0)
        .collect();
    order.sort_by_key(|&j| (std::cmp::Reverse(counts[j as usize]), j));
    order.truncate(k);
    order
}

/// Presence probability of each chosen code and of each pair (upper triangle, row-major).
fn presence_tables(matrix: &PatientMatrix, chosen: &[u32]) -> Option<(Vec<f64>, Vec<f64>)> {
    if matrix.n_patients() == 0 {
        return None;
    }
    let k = chosen.len();
    let mut slot = vec![u32::MAX; matrix.n_codes()];
    for (i, &c) in chosen.iter().enumerate() {
        slot[c as usize] = i as u32;
    }
    let mut single = vec![0u64; k];
    let mut pair = vec![0u64; k * k];
    let mut present = Vec::new();
    for p in 0..matrix.n_patients() {
        present.clear();
        present.extend(
            matrix
                .row(p)
                .0
                .iter()
                .map(|&c| slot[c as usize])
                .filter(|&s| s != u32::MAX),
        );
        present.sort_unstable();
        for (a, &i) in present.iter().enumerate() {
            single[i as usize] += 1;
            for &j in &present[a + 1..] {
                pair[i as usize * k + j as usize] += 1;
            }
        }
    }
    let n = matrix.n_patients() as f64;
    let mut joint = Vec::with_capacity(k * k.saturating_sub(1) / 2);
    for i in 0..k {
        for j in i + 1..k {
            joint.push(pair[i * k + j] as f64 / n);
        }
    }
    Some((single.into_iter().map(|s| s as f64 / n).collect(), joint))
}

/// Phi coefficient per pair, `None` where a code of the pair is always or never present.
fn phi(single: &[f64], joint: &[f64]) -> Vec<Option<f64>> {
    let k = single.len();
    let mut out = Vec::with_capacity(joint.len());
    let mut at = 0;
    for i in 0..k {
        for j in i + 1..k {
            let (pi, pj) = (single[i], single[j]);
            let spread = pi * (1.0 - pi) * pj * (1.0 - pj);
            out.push((spread > 0.0).then(|| (joint[at] - pi * pj) / spread.sqrt()));
            at += 1;
        }
    }
    out
}

pub fn co_occurrence(real: &PatientMatrix, synthetic: &PatientMatrix, k: usize) -> CoOccurrence {
    let chosen = most_frequent_codes(real, k);
    let codes = chosen
        .iter()
        .map(|&c| real.codes()[c as usize].clone())
        .collect();
    let none = |why: &str| CoOccurrence {
        codes: Vec::new(),
        joint_pearson_r: Stat::undefined(why),
        joint_r_squared: Stat::undefined(why),
        correlation_mean_abs_diff: Stat::undefined(why),
        correlation_pairs_undefined: 0,
        real_joint: Vec::new(),
        synthetic_joint: Vec::new(),
    };
    if chosen.len() < 2 {
        return none("fewer than 2 codes occur in the real data");
    }
    let (Some((real_single, real_joint)), Some((syn_single, syn_joint))) = (
        presence_tables(real, &chosen),
        presence_tables(synthetic, &chosen),
    ) else {
        return none("the synthetic data has no rows");
    };
    let (real_phi, syn_phi) = (phi(&real_single, &real_joint), phi(&syn_single, &syn_joint));
    let diffs: Vec<Stat> = real_phi
        .iter()
        .zip(&syn_phi)
        .filter_map(|(a, b)| Some(Stat::of((a.as_ref()? - b.as_ref()?).abs())))
        .collect();
    CoOccurrence {
        codes,
        joint_pearson_r: stats::pearson(&real_joint, &syn_joint),
        joint_r_squared: stats::r_squared(&real_joint, &syn_joint),
        correlation_mean_abs_diff: stats::mean_defined(&diffs),
        correlation_pairs_undefined: real_phi.len() - diffs.len(),
        real_joint,
        synthetic_joint: syn_joint,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use medgan_sample::DataType;

    use super::*;

    /// A binary matrix over codes `c0..c{n_codes}` from index lists.
    pub(crate) fn binary(n_codes: usize, rows: &[&[u32]]) -> PatientMatrix {
        let mut indptr = vec![0u64];
        let mut indices = Vec::new();
        for r in rows {
            indices.extend_from_slice(r);
            indptr.push(indices.len() as u64);
        }
        let values = vec![1; indices.len()];
        PatientMatrix::from_csr(
            DataType::Binary,
            (0..n_codes).map(|j| format!("c{j}")).collect(),
            (0..rows.len()).map(|p| p.to_string()).collect(),
            indptr,
            indices,
            values,
        )
        .unwrap()
    }

    #[test]
    fn dimension_wise_on_known_input() {
        let real = binary(3, &[&[0], &[0, 1], &[], &[1]]);
        let same = dimension_wise(&real, &real);
        assert_eq!(same.real_means, [0.5, 0.5, 0.0]);
        assert_eq!(same.rmse.get(), Some(0.0));
        assert_eq!(same.r_squared.get(), Some(1.0));
        let synthetic = binary(3, &[&[0], &[0, 2]]);
        let d = dimension_wise(&real, &synthetic);
        assert_eq!(d.synthetic_means, [1.0, 0.0, 0.5]);
        assert_eq!(d.never_generated, ["c1"]);
        let expected_rmse = ((0.25 + 0.25 + 0.25) / 3.0f64).sqrt();
        assert!((d.rmse.get().unwrap() - expected_rmse).abs() < 1e-12);
        // Real means 0.5, 0.5, 0: total 1/6, residual 3/4.
        assert!((d.r_squared.get().unwrap() - (1.0 - 0.75 / (1.0 / 6.0))).abs() < 1e-12);
    }

    #[test]
    fn record_shape_on_known_input() {
        let real = binary(3, &[&[0], &[0, 1], &[], &[1]]);
        let synthetic = binary(3, &[&[], &[], &[0, 1, 2]]);
        let s = record_shape(&real, &synthetic);
        assert_eq!(s.real_histogram, [1, 2, 1]);
        assert_eq!(s.synthetic_histogram, [2, 0, 0, 1]);
        // |1/4-2/3| + |1/2-0| + |1/4-0| + |0-1/3|, halved.
        let tv = (5.0 / 12.0 + 0.5 + 0.25 + 1.0 / 3.0) / 2.0;
        assert!((s.total_variation.get().unwrap() - tv).abs() < 1e-12);
        assert_eq!(s.real_all_zero_share.get(), Some(0.25));
        assert!((s.synthetic_all_zero_share.get().unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.real_mean_codes.get(), Some(1.0));
    }

    #[test]
    fn co_occurrence_on_known_input() {
        let real = binary(3, &[&[0, 1], &[0, 1], &[0], &[2]]);
        let c = co_occurrence(&real, &real, 100);
        assert_eq!(c.codes, ["c0", "c1", "c2"]);
        // Pairs (c0,c1), (c0,c2), (c1,c2).
        assert_eq!(c.real_joint, [0.5, 0.0, 0.0]);
        assert_eq!(c.joint_pearson_r.get(), Some(1.0));
        assert_eq!(c.correlation_mean_abs_diff.get(), Some(0.0));
        // c0 present everywhere in the synthetic data: its pairs have no correlation.
        let synthetic = binary(3, &[&[0, 1], &[0, 2]]);
        let c = co_occurrence(&real, &synthetic, 2);
        assert_eq!(c.codes, ["c0", "c1"]);
        assert_eq!(c.correlation_pairs_undefined, 1);
        assert!(c.correlation_mean_abs_diff.get().is_none());
    }

    #[test]
    fn empty_and_constant_inputs_are_undefined() {
        let real = binary(2, &[&[0, 1], &[0, 1]]);
        let empty = binary(2, &[]);
        let d = dimension_wise(&real, &empty);
        assert!(d.pearson_r.get().is_none() && d.rmse.get().is_none());
        // Constant real means (all 1 and all 0) leave r and R^2 undefined, RMSE defined.
        let d = dimension_wise(&real, &binary(2, &[&[1]]));
        assert!(d.pearson_r.undefined.is_some() && d.r_squared.undefined.is_some());
        assert_eq!(d.rmse.get(), Some(0.5f64.sqrt()));
        let s = record_shape(&real, &empty);
        assert!(s.total_variation.get().is_none() && s.synthetic_all_zero_share.get().is_none());
        let c = co_occurrence(&empty, &real, 100);
        assert!(c.joint_pearson_r.get().is_none());
        let json = serde_json::to_string(&dimension_wise(&empty, &empty)).unwrap();
        assert!(
            !json.contains("NaN") && !json.contains("null,\"undefined\":null"),
            "{json}"
        );
    }
}
