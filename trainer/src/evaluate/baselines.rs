//! The two reference points every report is measured against: independent per-code draws at
//! the real marginals (right marginals, no structure) and real training rows themselves
//! (perfect fidelity, no privacy).

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use super::sample_rows;
use crate::data::PatientMatrix;

/// `rows` records drawing each code independently: present with its real probability and, for
/// count data, with a value drawn from that code's real non-zero values.
pub fn independent_draws(real: &PatientMatrix, rows: usize, rng: &mut ChaCha8Rng) -> PatientMatrix {
    let n_codes = real.n_codes();
    let mut nonzero: Vec<Vec<u32>> = vec![Vec::new(); n_codes];
    for p in 0..real.n_patients() {
        let (cols, vals) = real.row(p);
        for (&c, &v) in cols.iter().zip(vals) {
            nonzero[c as usize].push(v);
        }
    }
    let n = real.n_patients().max(1) as f64;
    let probability: Vec<f64> = nonzero.iter().map(|v| v.len() as f64 / n).collect();
    let (mut indptr, mut indices, mut values) = (vec![0u64], Vec::new(), Vec::new());
    for _ in 0..rows {
        for (c, &p) in probability.iter().enumerate() {
            if p > 0.0 && rng.random::<f64>() < p {
                let seen = &nonzero[c];
                indices.push(c as u32);
                values.push(seen[rng.random_range(0..seen.len())]);
            }
        }
        indptr.push(indices.len() as u64);
    }
    let ids = (0..rows).map(|i| format!("independent-{i}")).collect();
    PatientMatrix::from_csr(
        real.data_type(),
        real.codes().to_vec(),
        ids,
        indptr,
        indices,
        values,
    )
    .expect("rows built column by column in order are valid")
}

/// `rows` real training rows: without replacement while there are enough, else with.
pub fn real_sample(real: &PatientMatrix, rows: usize, rng: &mut ChaCha8Rng) -> PatientMatrix {
    let picks = if rows <= real.n_patients() {
        sample_rows(real.n_patients(), rows, rng)
    } else if real.n_patients() == 0 {
        Vec::new()
    } else {
        (0..rows)
            .map(|_| rng.random_range(0..real.n_patients()))
            .collect()
    };
    real.select_rows(&picks)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::super::fidelity::tests::binary;
    use super::*;

    #[test]
    fn independent_draws_keep_marginals_and_real_sample_keeps_rows() {
        let real = binary(3, &[&[0, 1], &[0], &[0, 1], &[]]);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let drawn = independent_draws(&real, 4000, &mut rng);
        let counts = drawn.patients_per_code();
        assert!(
            (counts[0] as f64 / 4000.0 - 0.75).abs() < 0.03,
            "{counts:?}"
        );
        assert!((counts[1] as f64 / 4000.0 - 0.5).abs() < 0.03, "{counts:?}");
        assert_eq!(counts[2], 0);
        let sample = real_sample(&real, 3, &mut rng);
        assert_eq!(sample.n_patients(), 3);
        assert!((0..3).all(|p| (0..4).any(|q| real.row(q) == sample.row(p))));
        assert_eq!(real_sample(&real, 9, &mut rng).n_patients(), 9);
        assert_eq!(real_sample(&binary(3, &[]), 9, &mut rng).n_patients(), 0);
        assert_eq!(independent_draws(&binary(3, &[]), 5, &mut rng).nnz(), 0);
    }
}
