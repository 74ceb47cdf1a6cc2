//! Small statistics every metric is built from, each undefined (with a reason) instead of NaN.

use serde::{Deserialize, Serialize};

/// One figure of the report: a finite value, or no value and the reason it is undefined.
///
/// Serialised as `{"value": 0.93, "undefined": null}` or `{"value": null, "undefined": "..."}`
/// so that a reader never meets NaN or infinity.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Stat {
    pub value: Option<f64>,
    pub undefined: Option<String>,
}

impl Stat {
    /// `value` if finite, else undefined with a reason naming the non-finite value.
    pub fn of(value: f64) -> Self {
        if value.is_finite() {
            Self {
                value: Some(value),
                undefined: None,
            }
        } else {
            Self::undefined(format!("the computation gave {value}"))
        }
    }

    pub fn undefined(reason: impl Into<String>) -> Self {
        Self {
            value: None,
            undefined: Some(reason.into()),
        }
    }

    pub fn get(&self) -> Option<f64> {
        self.value
    }

    /// `value` rendered with `decimals` digits, or `undefined` for tables.
    pub fn show(&self, decimals: usize) -> String {
        match self.value {
            Some(v) => format!("{v:.decimals$}"),
            None => "undefined".to_string(),
        }
    }
}

/// Mean of the defined values only; undefined if none is.
pub fn mean_defined<'a>(stats: impl IntoIterator<Item = &'a Stat>) -> Stat {
    let values: Vec<f64> = stats.into_iter().filter_map(Stat::get).collect();
    if values.is_empty() {
        Stat::undefined("no defined value to average")
    } else {
        Stat::of(values.iter().sum::<f64>() / values.len() as f64)
    }
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// Pearson correlation of paired values.
pub fn pearson(x: &[f64], y: &[f64]) -> Stat {
    if x.len() != y.len() {
        return Stat::undefined(format!("{} values paired with {}", x.len(), y.len()));
    }
    if x.len() < 2 {
        return Stat::undefined("fewer than 2 pairs");
    }
    let (mx, my) = (mean(x), mean(y));
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sxx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    let syy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
    if sxx == 0.0 {
        return Stat::undefined("the real values are all equal");
    }
    if syy == 0.0 {
        return Stat::undefined("the synthetic values are all equal");
    }
    Stat::of(sxy / (sxx * syy).sqrt())
}

/// Coefficient of determination of `predicted` as an estimate of `real` along the identity line:
/// `1 - sum (real - predicted)^2 / sum (real - mean real)^2` (can be negative).
pub fn r_squared(real: &[f64], predicted: &[f64]) -> Stat {
    if real.len() != predicted.len() {
        return Stat::undefined(format!(
            "{} values paired with {}",
            real.len(),
            predicted.len()
        ));
    }
    if real.is_empty() {
        return Stat::undefined("no pairs");
    }
    let m = mean(real);
    let total: f64 = real.iter().map(|a| (a - m).powi(2)).sum();
    if total == 0.0 {
        return Stat::undefined("the real values are all equal");
    }
    let residual: f64 = real
        .iter()
        .zip(predicted)
        .map(|(a, b)| (a - b).powi(2))
        .sum();
    Stat::of(1.0 - residual / total)
}

/// Root mean squared difference of paired values.
pub fn rmse(x: &[f64], y: &[f64]) -> Stat {
    if x.len() != y.len() || x.is_empty() {
        return Stat::undefined("no pairs");
    }
    let sum: f64 = x.iter().zip(y).map(|(a, b)| (a - b).powi(2)).sum();
    Stat::of((sum / x.len() as f64).sqrt())
}

/// Total-variation distance between two histograms given as counts (normalised here).
pub fn total_variation(p: &[u64], q: &[u64]) -> Stat {
    let (np, nq) = (p.iter().sum::<u64>(), q.iter().sum::<u64>());
    if np == 0 || nq == 0 {
        return Stat::undefined("a histogram is empty");
    }
    let len = p.len().max(q.len());
    let at = |h: &[u64], i: usize| h.get(i).copied().unwrap_or(0) as f64;
    let sum: f64 = (0..len)
        .map(|i| (at(p, i) / np as f64 - at(q, i) / nq as f64).abs())
        .sum();
    Stat::of(sum / 2.0)
}

/// The `q`-quantile (0..=1) with linear interpolation between order statistics.
pub fn quantile(sorted: &[f64], q: f64) -> Stat {
    if sorted.is_empty() {
        return Stat::undefined("no values");
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Stat::of(sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64))
}

/// `numerator / denominator`, undefined when the denominator is 0 (`what` names it).
pub fn ratio(numerator: f64, denominator: f64, what: &str) -> Stat {
    if denominator == 0.0 {
        Stat::undefined(format!("no {what}"))
    } else {
        Stat::of(numerator / denominator)
    }
}

/// Area under the ROC curve of `scores` for `labels` (Mann-Whitney, ties counted half).
pub fn auc(scores: &[f64], labels: &[bool]) -> Stat {
    let positives = labels.iter().filter(|&&l| l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return Stat::undefined("the test labels are all of one class");
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start;
        while end + 1 < order.len() && scores[order[end + 1]] == scores[order[start]] {
            end += 1;
        }
        // Tied scores share the mean of the ranks they span (1-based).
        let mid_rank = (start + end) as f64 / 2.0 + 1.0;
        let tied_positives = order[start..=end].iter().filter(|&&i| labels[i]).count();
        rank_sum += mid_rank * tied_positives as f64;
        start = end + 1;
    }
    let p = positives as f64;
    Stat::of((rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

/// F1 score of the predictions `scores >= threshold`.
pub fn f1(scores: &[f64], labels: &[bool], threshold: f64) -> Stat {
    let (mut tp, mut fp, mut fneg) = (0u64, 0u64, 0u64);
    for (&s, &l) in scores.iter().zip(labels) {
        match (s >= threshold, l) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fneg += 1,
            (false, false) => {}
        }
    }
    let denominator = 2 * tp + fp + fneg;
    if denominator == 0 {
        return Stat::undefined("no positive label and no positive prediction");
    }
    Stat::of(2.0 * tp as f64 / denominator as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(stat: &Stat, expected: f64) {
        let v = stat
            .get()
            .unwrap_or_else(|| panic!("undefined: {:?}", stat.undefined));
        assert!((v - expected).abs() < 1e-12, "{v} != {expected}");
    }

    #[test]
    fn known_values() {
        close(&pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]), 1.0);
        close(&pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), -1.0);
        close(&r_squared(&[1.0, 2.0, 3.0], &[1.0, 2.0, 4.0]), 0.5);
        close(&rmse(&[0.0, 0.0], &[3.0, 4.0]), (12.5f64).sqrt());
        close(&total_variation(&[1, 1], &[0, 2]), 0.5);
        close(&total_variation(&[2], &[0, 0, 5]), 1.0);
        close(&quantile(&[0.0, 10.0], 0.25), 2.5);
        close(
            &auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]),
            0.75,
        );
        close(&auc(&[0.5, 0.5], &[false, true]), 0.5);
        close(&f1(&[0.9, 0.9, 0.1], &[true, false, true], 0.5), 0.5);
        close(
            &mean_defined(&[Stat::of(1.0), Stat::undefined("x"), Stat::of(3.0)]),
            2.0,
        );
    }

    #[test]
    fn degenerate_inputs_are_undefined_not_nan() {
        for stat in [
            pearson(&[1.0, 1.0], &[0.0, 1.0]),
            pearson(&[0.0, 1.0], &[2.0, 2.0]),
            pearson(&[], &[]),
            r_squared(&[5.0, 5.0], &[1.0, 2.0]),
            rmse(&[], &[]),
            total_variation(&[], &[1]),
            quantile(&[], 0.5),
            auc(&[0.1, 0.2], &[true, true]),
            f1(&[0.1], &[false], 0.5),
            ratio(1.0, 0.0, "rows"),
            mean_defined(&[Stat::undefined("x")]),
            Stat::of(f64::NAN),
        ] {
            assert!(stat.value.is_none() && stat.undefined.is_some(), "{stat:?}");
        }
        let json = serde_json::to_string(&Stat::undefined("why")).unwrap();
        assert_eq!(json, r#"{"value":null,"undefined":"why"}"#);
    }
}
