//! How well the discriminator tells held-out real records from generated ones.

/// medGAN's `calculateDiscAccuracy`: a real record counts as right above 0.5, a generated one
/// below 0.5 (exactly 0.5 is wrong for both). `NaN` when there is nothing to score.
pub fn discriminator_accuracy(real: &[f32], fake: &[f32]) -> f64 {
    let total = real.len() + fake.len();
    if total == 0 {
        return f64::NAN;
    }
    let hits =
        real.iter().filter(|&&p| p > 0.5).count() + fake.iter().filter(|&&p| p < 0.5).count();
    hits as f64 / total as f64
}

/// Area under the ROC curve with real records as positives: the chance that a random real
/// record scores above a random generated one, ties counting one half.
///
/// Computed by ranking (Mann-Whitney U) with tied scores sharing their mean rank, in
/// `O(n log n)`. `NaN` when either side is empty.
pub fn discriminator_auc(real: &[f32], fake: &[f32]) -> f64 {
    if real.is_empty() || fake.is_empty() {
        return f64::NAN;
    }
    let mut scored: Vec<(f32, bool)> = real
        .iter()
        .map(|&p| (p, true))
        .chain(fake.iter().map(|&p| (p, false)))
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut positive_rank_sum = 0.0f64;
    let mut start = 0;
    while start < scored.len() {
        let mut end = start + 1;
        while end < scored.len() && scored[end].0 == scored[start].0 {
            end += 1;
        }
        // Ranks start..end (0-based) share the mean 1-based rank.
        let mean_rank = (start + end + 1) as f64 / 2.0;
        let positives = scored[start..end].iter().filter(|s| s.1).count();
        positive_rank_sum += mean_rank * positives as f64;
        start = end;
    }
    let n_pos = real.len() as f64;
    let n_neg = fake.len() as f64;
    (positive_rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct definition over all pairs, to check the ranking version against.
    fn pairwise_auc(real: &[f32], fake: &[f32]) -> f64 {
        let mut wins = 0.0;
        for &r in real {
            for &f in fake {
                wins += if r > f {
                    1.0
                } else if r == f {
                    0.5
                } else {
                    0.0
                };
            }
        }
        wins / (real.len() * fake.len()) as f64
    }

    #[test]
    fn auc_known_values() {
        // scikit-learn's documented example: y = [0, 0, 1, 1], scores [0.1, 0.4, 0.35, 0.8].
        assert!((discriminator_auc(&[0.35, 0.8], &[0.1, 0.4]) - 0.75).abs() < 1e-12);
        assert_eq!(discriminator_auc(&[0.9, 0.8], &[0.1, 0.2]), 1.0);
        assert_eq!(discriminator_auc(&[0.1], &[0.9, 0.8]), 0.0);
        assert_eq!(discriminator_auc(&[0.5, 0.5], &[0.5]), 0.5);
        // A tie between one real and one fake counts a half: (1 + 1 + 1 + 0.5) / 4.
        assert!((discriminator_auc(&[0.9, 0.8], &[0.1, 0.8]) - 0.875).abs() < 1e-12);
        assert!(discriminator_auc(&[], &[0.1]).is_nan());
    }

    #[test]
    fn auc_matches_pairwise_count_with_many_ties() {
        let real: Vec<f32> = (0..40).map(|i| ((i * 7) % 11) as f32 / 10.0).collect();
        let fake: Vec<f32> = (0..30).map(|i| ((i * 5) % 9) as f32 / 10.0).collect();
        let ranked = discriminator_auc(&real, &fake);
        assert!(
            (ranked - pairwise_auc(&real, &fake)).abs() < 1e-12,
            "{ranked}"
        );
    }

    #[test]
    fn accuracy_counts_half_as_wrong() {
        assert_eq!(
            discriminator_accuracy(&[0.9, 0.5, 0.2], &[0.1, 0.5, 0.7]),
            2.0 / 6.0
        );
        assert_eq!(discriminator_accuracy(&[0.6], &[0.4]), 1.0);
        assert!(discriminator_accuracy(&[], &[]).is_nan());
    }
}
