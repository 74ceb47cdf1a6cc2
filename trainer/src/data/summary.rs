//! What a reader read: the resulting matrix's shape and every row, field or code it left out.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use medgan_sample::DataType;

use super::PatientMatrix;

/// Why something read did not make it into the matrix. Each reason counts its own unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    /// Rows whose patient (or admission) id is missing.
    MissingPatientId,
    /// Code fields that are empty or hold a `--missing` value.
    MissingCode,
    /// Codes given with a count of 0.
    ZeroCount,
    /// MIMIC rows whose `hadm_id` is missing or not in ADMISSIONS.
    UnknownAdmission,
    /// Wide-format cells that are empty or hold a `--missing` value, read as 0.
    MissingCellReadAsZero,
    /// Codes dropped because fewer than `--min-patients` patients have them.
    CodeBelowMinPatients,
    /// Patients dropped for having no codes (`--empty-patients drop`).
    EmptyPatientDropped,
}

impl SkipReason {
    fn describe(self) -> &'static str {
        match self {
            SkipReason::MissingPatientId => "rows without a patient id",
            SkipReason::MissingCode => "code fields empty or missing",
            SkipReason::ZeroCount => "codes with a count of 0",
            SkipReason::UnknownAdmission => "rows whose admission is not in ADMISSIONS",
            SkipReason::MissingCellReadAsZero => "cells empty or missing, read as 0",
            SkipReason::CodeBelowMinPatients => "codes dropped, in fewer than --min-patients",
            SkipReason::EmptyPatientDropped => "patients dropped for having no codes",
        }
    }
}

/// What was read and what came of it; `Display` prints it for the user.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadSummary {
    /// The file or folder read.
    pub source: PathBuf,
    /// How it was read, e.g. "long CSV" or "MIMIC-III folder".
    pub format: String,
    /// Data rows read (all files together), header lines not included.
    pub rows_read: u64,
    /// How many of each were left out.
    pub skipped: BTreeMap<SkipReason, u64>,
    /// Patients with no code at all, kept as all-zero rows.
    pub empty_patients_kept: usize,
    pub data_type: DataType,
    pub patients: usize,
    pub codes: usize,
    /// Non-zero cells.
    pub nnz: usize,
    pub density: f64,
    pub max_count: u32,
}

impl ReadSummary {
    /// An empty summary, to be filled while reading.
    pub fn new(source: PathBuf, format: impl Into<String>, data_type: DataType) -> Self {
        Self {
            source,
            format: format.into(),
            rows_read: 0,
            skipped: BTreeMap::new(),
            empty_patients_kept: 0,
            data_type,
            patients: 0,
            codes: 0,
            nnz: 0,
            density: 0.0,
            max_count: 0,
        }
    }

    /// Counts `n` more left out for `reason`.
    pub fn skip(&mut self, reason: SkipReason, n: u64) {
        if n > 0 {
            *self.skipped.entry(reason).or_insert(0) += n;
        }
    }

    /// How many were left out for `reason`.
    pub fn skipped(&self, reason: SkipReason) -> u64 {
        self.skipped.get(&reason).copied().unwrap_or(0)
    }

    /// Copies the shape of the finished matrix into the summary.
    pub fn describe_matrix(&mut self, matrix: &PatientMatrix) {
        self.data_type = matrix.data_type();
        self.patients = matrix.n_patients();
        self.codes = matrix.n_codes();
        self.nnz = matrix.nnz();
        self.density = matrix.density();
        self.max_count = matrix.max_value();
    }
}

impl fmt::Display for ReadSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "read {} {}: {} data rows",
            self.format,
            self.source.display(),
            thousands(self.rows_read)
        )?;
        write!(
            f,
            "matrix: {} patients x {} codes ({}), {} non-zero cells, density {:.5}, max count {}",
            thousands(self.patients as u64),
            thousands(self.codes as u64),
            self.data_type,
            thousands(self.nnz as u64),
            self.density,
            self.max_count
        )?;
        if self.empty_patients_kept > 0 {
            write!(
                f,
                "\n  patients with no codes, kept as all-zero rows: {}",
                thousands(self.empty_patients_kept as u64)
            )?;
        }
        for (reason, n) in &self.skipped {
            write!(f, "\n  {}: {}", reason.describe(), thousands(*n))?;
        }
        Ok(())
    }
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_lists_each_reason_with_its_count() {
        let mut s = ReadSummary::new("d.csv".into(), "long CSV", DataType::Count);
        s.rows_read = 101_766;
        s.skip(SkipReason::MissingCode, 1_423);
        s.skip(SkipReason::MissingCode, 2);
        s.skip(SkipReason::ZeroCount, 0);
        s.skip(SkipReason::EmptyPatientDropped, 1);
        let text = s.to_string();
        assert!(text.contains("101,766 data rows"), "{text}");
        assert!(
            text.contains("\n  code fields empty or missing: 1,425"),
            "{text}"
        );
        assert!(
            text.contains("\n  patients dropped for having no codes: 1"),
            "{text}"
        );
        assert!(!text.contains("count of 0"), "{text}");
        assert_eq!(s.skipped(SkipReason::MissingCode), 1_425);
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(71_517), "71,517");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
