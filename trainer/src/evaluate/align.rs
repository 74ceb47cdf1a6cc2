//! Re-indexes a real matrix read on its own (e.g. a raw held-out CSV) to another vocabulary.

use super::EvalError;
use super::synthetic::ColumnMatch;
use crate::data::PatientMatrix;

/// `matrix` with columns in `vocabulary`'s order: codes it lacks are all-zero columns, codes
/// outside `vocabulary` are dropped; both are listed in the returned match.
pub fn align_to(
    matrix: &PatientMatrix,
    vocabulary: &[String],
) -> Result<(PatientMatrix, ColumnMatch), EvalError> {
    let position: std::collections::HashMap<&str, u32> = vocabulary
        .iter()
        .enumerate()
        .map(|(j, c)| (c.as_str(), j as u32))
        .collect();
    let target: Vec<Option<u32>> = matrix
        .codes()
        .iter()
        .map(|c| position.get(c.as_str()).copied())
        .collect();
    let mut found = vec![false; vocabulary.len()];
    target
        .iter()
        .flatten()
        .for_each(|&j| found[j as usize] = true);
    let (mut indptr, mut indices, mut values) = (vec![0u64], Vec::new(), Vec::new());
    let mut cells: Vec<(u32, u32)> = Vec::new();
    for p in 0..matrix.n_patients() {
        let (cols, vals) = matrix.row(p);
        cells.clear();
        cells.extend(
            cols.iter()
                .zip(vals)
                .filter_map(|(&c, &v)| Some((target[c as usize]?, v))),
        );
        cells.sort_unstable();
        for &(c, v) in &cells {
            indices.push(c);
            values.push(v);
        }
        indptr.push(indices.len() as u64);
    }
    let aligned = PatientMatrix::from_csr(
        matrix.data_type(),
        vocabulary.to_vec(),
        matrix.patient_ids().to_vec(),
        indptr,
        indices,
        values,
    )
    .map_err(|e| EvalError::Vocabulary(e.to_string()))?;
    let column_match = ColumnMatch {
        matched: found.iter().filter(|&&f| f).count(),
        missing: vocabulary
            .iter()
            .zip(&found)
            .filter(|(_, f)| !**f)
            .map(|(c, _)| c.clone())
            .collect(),
        extra: matrix
            .codes()
            .iter()
            .zip(&target)
            .filter(|(_, t)| t.is_none())
            .map(|(c, _)| c.clone())
            .collect(),
    };
    Ok((aligned, column_match))
}

#[cfg(test)]
mod tests {
    use super::super::fidelity::tests::binary;
    use super::*;

    #[test]
    fn columns_move_to_the_new_order() {
        // Codes c0, c1, c2 onto vocabulary [c2, x, c0].
        let m = binary(3, &[&[0, 2], &[1]]);
        let vocabulary: Vec<String> = ["c2", "x", "c0"].iter().map(|s| s.to_string()).collect();
        let (aligned, matched) = align_to(&m, &vocabulary).unwrap();
        assert_eq!(aligned.row(0).0, [0, 2]);
        assert!(aligned.row(1).0.is_empty());
        assert_eq!(matched.matched, 2);
        assert_eq!(matched.missing, ["x"]);
        assert_eq!(matched.extra, ["c1"]);
    }
}
