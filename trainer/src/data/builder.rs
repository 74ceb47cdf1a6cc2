//! Assembles (patient, code, count) cells into a [`PatientMatrix`], applying the shared rules.
//!
//! Rules, the same for every input format:
//! - duplicates of a (patient, code) pair are aggregated: binary data keeps 1, count data sums;
//! - codes seen in fewer than `min_patients` patients are dropped;
//! - the vocabulary is sorted by code string (byte order), so column order is deterministic;
//! - patients keep the order in which they were first seen; one without any code is kept as
//!   an all-zero row or dropped, as `empty_patients` says.
//!
//! Cells are compacted (sorted, duplicates merged) whenever their buffer doubles, so memory
//! grows with the number of distinct non-zero cells rather than with the rows read.

use std::collections::HashMap;

use medgan_sample::DataType;

use super::{DataError, DataResult, PatientMatrix, ReadSummary, SkipReason};

/// Compaction never runs on fewer buffered cells than this.
const MIN_COMPACTION_CELLS: usize = 1 << 20;

/// What to do with a patient who has no codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum EmptyPatients {
    /// Keep them as all-zero rows (healthy records are records too).
    #[default]
    Keep,
    /// Leave them out of the matrix.
    Drop,
}

/// The rules a build applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildOptions {
    pub data_type: DataType,
    /// Codes in fewer patients than this are dropped; 0 keeps every code, even one declared
    /// but seen in no patient (a wide column of zeros), 1 drops those.
    pub min_patients: usize,
    pub empty_patients: EmptyPatients,
}

impl BuildOptions {
    pub fn new(data_type: DataType) -> Self {
        Self {
            data_type,
            min_patients: 0,
            empty_patients: EmptyPatients::Keep,
        }
    }
}

/// One non-zero cell: patient number, code number (in first-seen order), count.
type Cell = (u32, u32, u32);

/// Collects cells as a reader finds them, then builds the matrix.
#[derive(Debug)]
pub struct MatrixBuilder {
    options: BuildOptions,
    patient_ids: Vec<String>,
    patient_index: HashMap<String, u32>,
    codes: Vec<String>,
    code_index: HashMap<String, u32>,
    cells: Vec<Cell>,
    compacted_len: usize,
}

impl MatrixBuilder {
    pub fn new(options: BuildOptions) -> Self {
        Self {
            options,
            patient_ids: Vec::new(),
            patient_index: HashMap::new(),
            codes: Vec::new(),
            code_index: HashMap::new(),
            cells: Vec::new(),
            compacted_len: 0,
        }
    }

    /// Number of distinct patients seen so far.
    pub fn n_patients(&self) -> usize {
        self.patient_ids.len()
    }

    /// Registers a patient (a row even if no code follows) and returns its number.
    pub fn add_patient(&mut self, id: &str) -> DataResult<u32> {
        intern(
            &mut self.patient_ids,
            &mut self.patient_index,
            id,
            "patients",
        )
    }

    /// Puts `code` in the vocabulary even if no patient has it (see `min_patients`).
    pub fn declare_code(&mut self, code: &str) -> DataResult<()> {
        intern(&mut self.codes, &mut self.code_index, code, "codes").map(|_| ())
    }

    /// Adds `count` of `code` to a patient returned by [`MatrixBuilder::add_patient`].
    ///
    /// A count of 0 adds nothing (not even the code to the vocabulary).
    pub fn add_code(&mut self, patient: u32, code: &str, count: u32) -> DataResult<()> {
        if count == 0 {
            return Ok(());
        }
        let code = intern(&mut self.codes, &mut self.code_index, code, "codes")?;
        self.cells.push((patient, code, count));
        if self.cells.len() >= MIN_COMPACTION_CELLS.max(2 * self.compacted_len) {
            self.compact()?;
        }
        Ok(())
    }

    /// Sorts the cells and merges duplicates by the data type's rule.
    fn compact(&mut self) -> DataResult<()> {
        self.cells.sort_unstable();
        let binary = self.options.data_type == DataType::Binary;
        let mut merged: Vec<Cell> = Vec::with_capacity(self.cells.len());
        for &(patient, code, count) in &self.cells {
            match merged.last_mut() {
                Some(last) if last.0 == patient && last.1 == code => {
                    last.2 = if binary {
                        1
                    } else {
                        last.2
                            .checked_add(count)
                            .ok_or_else(|| DataError::CountOverflow {
                                patient: self.patient_ids[patient as usize].clone(),
                                code: self.codes[code as usize].clone(),
                            })?
                    };
                }
                _ => merged.push((patient, code, if binary { 1 } else { count })),
            }
        }
        self.compacted_len = merged.len();
        self.cells = merged;
        Ok(())
    }

    /// Applies the rules and returns the matrix, recording what was dropped in `summary`.
    pub fn build(mut self, summary: &mut ReadSummary) -> DataResult<PatientMatrix> {
        self.compact()?;
        let mut patients_per_code = vec![0usize; self.codes.len()];
        for &(_, code, _) in &self.cells {
            patients_per_code[code as usize] += 1;
        }
        let mut kept: Vec<u32> = (0..self.codes.len() as u32)
            .filter(|&c| patients_per_code[c as usize] >= self.options.min_patients)
            .collect();
        summary.skip(
            SkipReason::CodeBelowMinPatients,
            (self.codes.len() - kept.len()) as u64,
        );
        kept.sort_unstable_by(|&a, &b| self.codes[a as usize].cmp(&self.codes[b as usize]));
        let mut column_of = vec![u32::MAX; self.codes.len()];
        for (column, &code) in kept.iter().enumerate() {
            column_of[code as usize] = column as u32;
        }
        let mut cells: Vec<Cell> = self
            .cells
            .iter()
            .filter_map(|&(p, c, n)| {
                let column = column_of[c as usize];
                (column != u32::MAX).then_some((p, column, n))
            })
            .collect();
        drop(std::mem::take(&mut self.cells));
        cells.sort_unstable();

        let mut row_len = vec![0u64; self.patient_ids.len()];
        for &(patient, _, _) in &cells {
            row_len[patient as usize] += 1;
        }
        let empty = row_len.iter().filter(|&&n| n == 0).count();
        let drop_empty = self.options.empty_patients == EmptyPatients::Drop;
        if drop_empty {
            summary.skip(SkipReason::EmptyPatientDropped, empty as u64);
        } else {
            summary.empty_patients_kept = empty;
        }
        let mut patient_ids = Vec::with_capacity(self.patient_ids.len() - empty);
        let mut indptr = Vec::with_capacity(self.patient_ids.len() + 1);
        indptr.push(0u64);
        for (id, &len) in self.patient_ids.into_iter().zip(&row_len) {
            if len == 0 && drop_empty {
                continue;
            }
            patient_ids.push(id);
            indptr.push(indptr.last().copied().unwrap_or(0) + len);
        }
        let (indices, values) = cells.into_iter().map(|(_, col, n)| (col, n)).unzip();
        let codes = kept
            .iter()
            .map(|&c| std::mem::take(&mut self.codes[c as usize]))
            .collect();
        let matrix = PatientMatrix::from_csr(
            self.options.data_type,
            codes,
            patient_ids,
            indptr,
            indices,
            values,
        )?;
        summary.describe_matrix(&matrix);
        Ok(matrix)
    }
}

/// The number of `name` in `names`, adding it if new.
fn intern(
    names: &mut Vec<String>,
    index: &mut HashMap<String, u32>,
    name: &str,
    what: &str,
) -> DataResult<u32> {
    if let Some(&n) = index.get(name) {
        return Ok(n);
    }
    let n = u32::try_from(names.len())
        .map_err(|_| DataError::InvalidMatrix(format!("more than {} {what}", u32::MAX)))?;
    names.push(name.to_owned());
    index.insert(name.to_owned(), n);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(options: BuildOptions, cells: &[(&str, &str, u32)]) -> (PatientMatrix, ReadSummary) {
        let mut builder = MatrixBuilder::new(options);
        for &(patient, code, count) in cells {
            let p = builder.add_patient(patient).unwrap();
            if !code.is_empty() {
                builder.add_code(p, code, count).unwrap();
            }
        }
        let mut summary = ReadSummary::new("t".into(), "test", options.data_type);
        let matrix = builder.build(&mut summary).unwrap();
        (matrix, summary)
    }

    const CELLS: &[(&str, &str, u32)] = &[
        ("p2", "b", 2),
        ("p1", "a", 1),
        ("p2", "b", 3),
        ("p3", "", 0),
        ("p1", "c", 1),
        ("p2", "a", 1),
        ("p4", "z", 0),
    ];

    #[test]
    fn count_data_sums_duplicates_and_sorts_codes() {
        let (m, s) = build(BuildOptions::new(DataType::Count), CELLS);
        assert_eq!(m.codes(), ["a", "b", "c"]);
        assert_eq!(m.patient_ids(), ["p2", "p1", "p3", "p4"]);
        assert_eq!(m.row(0), (&[0u32, 1][..], &[1u32, 5][..]));
        assert_eq!(m.row(1), (&[0u32, 2][..], &[1u32, 1][..]));
        assert_eq!(m.row(2).0.len(), 0);
        assert_eq!(s.empty_patients_kept, 2);
        assert_eq!(s.max_count, 5);
    }

    #[test]
    fn binary_data_keeps_one() {
        let (m, _) = build(BuildOptions::new(DataType::Binary), CELLS);
        assert_eq!(m.max_value(), 1);
        assert_eq!(m.row(0), (&[0u32, 1][..], &[1u32, 1][..]));
    }

    #[test]
    fn min_patients_and_empty_drop() {
        let options = BuildOptions {
            data_type: DataType::Count,
            min_patients: 2,
            empty_patients: EmptyPatients::Drop,
        };
        let (m, s) = build(options, CELLS);
        assert_eq!(m.codes(), ["a"]);
        assert_eq!(m.patient_ids(), ["p2", "p1"]);
        assert_eq!(s.skipped(SkipReason::CodeBelowMinPatients), 2);
        assert_eq!(s.skipped(SkipReason::EmptyPatientDropped), 2);
    }

    #[test]
    fn codes_are_kept_exactly_and_sorted_bytewise() {
        let codes = ["0389", "389", "V3000", "E8497", "001", "01", "1"];
        let cells: Vec<_> = codes.iter().map(|&c| ("p", c, 1)).collect();
        let (m, _) = build(BuildOptions::new(DataType::Binary), &cells);
        let mut sorted: Vec<&str> = codes.to_vec();
        sorted.sort();
        assert_eq!(m.codes(), sorted.as_slice());
        assert_eq!(m.nnz(), 7);
    }

    #[test]
    fn declared_codes_stay_unless_min_patients_is_one() {
        for (min_patients, codes) in [(0, &["a", "b"][..]), (1, &["b"][..])] {
            let mut options = BuildOptions::new(DataType::Binary);
            options.min_patients = min_patients;
            let mut builder = MatrixBuilder::new(options);
            builder.declare_code("a").unwrap();
            let p = builder.add_patient("p").unwrap();
            builder.add_code(p, "b", 1).unwrap();
            let mut summary = ReadSummary::new("t".into(), "test", DataType::Binary);
            assert_eq!(builder.build(&mut summary).unwrap().codes(), codes);
        }
    }

    #[test]
    fn many_cells_compact_to_distinct_ones() {
        let mut builder = MatrixBuilder::new(BuildOptions::new(DataType::Count));
        let p = builder.add_patient("p").unwrap();
        for i in 0..(MIN_COMPACTION_CELLS as u32 + 10) {
            builder
                .add_code(p, if i % 2 == 0 { "x" } else { "y" }, 1)
                .unwrap();
        }
        assert!(builder.cells.len() < 20, "cells were not compacted");
        let mut summary = ReadSummary::new("t".into(), "test", DataType::Count);
        let m = builder.build(&mut summary).unwrap();
        let total: u32 = m.row(0).1.iter().sum();
        assert_eq!(total, MIN_COMPACTION_CELLS as u32 + 10);
    }

    #[test]
    fn overflowing_counts_are_an_error() {
        let mut builder = MatrixBuilder::new(BuildOptions::new(DataType::Count));
        let p = builder.add_patient("p").unwrap();
        builder.add_code(p, "x", u32::MAX).unwrap();
        builder.add_code(p, "x", 1).unwrap();
        let mut summary = ReadSummary::new("t".into(), "test", DataType::Count);
        let err = builder.build(&mut summary).unwrap_err();
        assert!(err.to_string().contains("overflows"), "{err}");
    }
}
