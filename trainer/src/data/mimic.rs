//! MIMIC-III input: a folder with ADMISSIONS and DIAGNOSES_ICD (and optionally PROCEDURES_ICD).
//!
//! As medGAN's `process_mimic.py` does, each diagnosis row is tied to its patient through its
//! `hadm_id` in ADMISSIONS and a patient's codes are aggregated over all admissions; rows can be
//! admissions instead (`per_admission`). Rows come from ADMISSIONS, in file order, so an
//! admission without diagnoses is still a (possibly dropped) row. Unlike medGAN, diagnosis codes
//! are kept without a `D_` prefix; procedure codes get [`PROCEDURE_PREFIX`] so that a procedure
//! (ICD-9-CM volume 3, e.g. "3893") can never collide with a diagnosis of the same digits.
//! With ICD-9 grouping, procedure codes are cut by the same rule (3 characters: "3893" -> "389",
//! the procedure subcategory 38.9), then prefixed.
//!
//! Each table may be `NAME.csv` or `NAME.csv.gz`, file names and headers in any case (the demo
//! has lower-case headers, the full release upper-case).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::builder::{BuildOptions, MatrixBuilder};
use super::table::CsvTable;
use super::{CodeMapping, DataError, DataResult, PatientMatrix, ReadSummary, SkipReason};

/// Prefix of procedure codes in the vocabulary.
pub const PROCEDURE_PREFIX: &str = "P_";

/// How to read a MIMIC-III folder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MimicOptions {
    /// One row per admission (`hadm_id`) instead of per patient (`subject_id`).
    pub per_admission: bool,
    /// Also read PROCEDURES_ICD.
    pub procedures: bool,
    pub mapping: CodeMapping,
    pub build: BuildOptions,
}

impl MimicOptions {
    pub fn new(build: BuildOptions) -> Self {
        Self {
            per_admission: false,
            procedures: false,
            mapping: CodeMapping::default(),
            build,
        }
    }
}

/// Finds `NAME.csv` or `NAME.csv.gz` in `dir`, ignoring case, the plain file first.
pub fn find_table(dir: &Path, table: &str) -> DataResult<PathBuf> {
    let entries = std::fs::read_dir(dir).map_err(|source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut found: Option<(bool, PathBuf)> = None;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let plain = format!("{table}.csv");
        let gzip = if name.eq_ignore_ascii_case(&plain) {
            false
        } else if name.eq_ignore_ascii_case(&format!("{plain}.gz")) {
            true
        } else {
            continue;
        };
        if found
            .as_ref()
            .is_none_or(|(was_gzip, _)| *was_gzip && !gzip)
        {
            found = Some((gzip, entry.path()));
        }
    }
    found
        .map(|(_, path)| path)
        .ok_or_else(|| DataError::MissingTable {
            dir: dir.to_path_buf(),
            table: table.to_owned(),
        })
}

/// Reads a MIMIC-III folder into a matrix.
pub fn read_mimic(dir: &Path, options: &MimicOptions) -> DataResult<(PatientMatrix, ReadSummary)> {
    let admissions_path = find_table(dir, "ADMISSIONS")?;
    let diagnoses_path = find_table(dir, "DIAGNOSES_ICD")?;
    let procedures_path = options
        .procedures
        .then(|| find_table(dir, "PROCEDURES_ICD"))
        .transpose()?;
    let mut summary = ReadSummary::new(
        dir.to_path_buf(),
        "MIMIC-III folder",
        options.build.data_type,
    );
    let mut builder = MatrixBuilder::new(options.build);

    let mut row_of_admission: HashMap<String, u32> = HashMap::new();
    let mut admissions = CsvTable::open_with_header(&admissions_path, b',')?;
    let subject_col = admissions.column("subject_id")?;
    let hadm_col = admissions.column("hadm_id")?;
    let mut missing_id = 0;
    while admissions.next()? {
        let subject = admissions.field(subject_col)?;
        let hadm = admissions.field(hadm_col)?;
        let row_id = if options.per_admission { hadm } else { subject };
        if row_id.is_empty() {
            missing_id += 1;
            continue;
        }
        let row = builder.add_patient(row_id)?;
        if !hadm.is_empty() {
            row_of_admission.entry(hadm.to_owned()).or_insert(row);
        }
    }
    summary.rows_read += admissions.finish()?;
    summary.skip(SkipReason::MissingPatientId, missing_id);

    let code_tables = [(diagnoses_path, "")]
        .into_iter()
        .chain(procedures_path.map(|p| (p, PROCEDURE_PREFIX)));
    for (path, prefix) in code_tables {
        let mut table = CsvTable::open_with_header(&path, b',')?;
        let hadm_col = table.column("hadm_id")?;
        let code_col = table.column("icd9_code")?;
        let (mut unknown, mut missing_code) = (0, 0);
        let mut prefixed = String::new();
        while table.next()? {
            let Some(&row) = row_of_admission.get(table.field(hadm_col)?) else {
                unknown += 1;
                continue;
            };
            let code = table.field(code_col)?;
            if code.is_empty() {
                missing_code += 1;
                continue;
            }
            prefixed.clear();
            prefixed.push_str(prefix);
            prefixed.push_str(&options.mapping.apply(code));
            builder.add_code(row, &prefixed, 1)?;
        }
        summary.rows_read += table.finish()?;
        summary.skip(SkipReason::UnknownAdmission, unknown);
        summary.skip(SkipReason::MissingCode, missing_code);
    }
    let matrix = builder.build(&mut summary)?;
    Ok((matrix, summary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use medgan_sample::DataType;

    fn fixture(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    const ADMISSIONS: &str = "ROW_ID,SUBJECT_ID,HADM_ID\n1,10,100\n2,10,101\n3,11,110\n4,12,120\n";
    const DIAGNOSES: &str = "ROW_ID,SUBJECT_ID,HADM_ID,SEQ_NUM,ICD9_CODE\n\
         1,10,100,1,\"4019\"\n2,10,101,1,4019\n\
         3,10,101,2,E8497\n4,11,110,1,\n5,99,999,1,4019\n";

    #[test]
    fn aggregates_per_patient_or_per_admission() {
        let dir = fixture(&[
            ("admissions.csv", ADMISSIONS),
            ("Diagnoses_Icd.CSV", DIAGNOSES),
        ]);
        let (m, s) = read_mimic(
            dir.path(),
            &MimicOptions::new(BuildOptions::new(DataType::Count)),
        )
        .unwrap();
        assert_eq!(m.patient_ids(), ["10", "11", "12"]);
        assert_eq!(m.codes(), ["4019", "E8497"]);
        assert_eq!(m.row(0), (&[0u32, 1][..], &[2u32, 1][..]));
        assert_eq!(s.skipped(SkipReason::UnknownAdmission), 1);
        assert_eq!(s.skipped(SkipReason::MissingCode), 1);
        assert_eq!(s.rows_read, 4 + 5);

        let mut options = MimicOptions::new(BuildOptions::new(DataType::Count));
        options.per_admission = true;
        let (m, _) = read_mimic(dir.path(), &options).unwrap();
        assert_eq!(m.patient_ids(), ["100", "101", "110", "120"]);
        assert_eq!(m.max_value(), 1);
    }

    #[test]
    fn procedures_are_prefixed_and_gzip_tables_read() {
        use std::io::Write;
        let dir = fixture(&[
            ("ADMISSIONS.csv", ADMISSIONS),
            ("DIAGNOSES_ICD.csv", DIAGNOSES),
        ]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"row_id,subject_id,hadm_id,seq_num,icd9_code\n1,12,120,1,4019\n")
            .unwrap();
        std::fs::write(
            dir.path().join("PROCEDURES_ICD.csv.gz"),
            gz.finish().unwrap(),
        )
        .unwrap();
        let mut options = MimicOptions::new(BuildOptions::new(DataType::Binary));
        options.procedures = true;
        let (m, _) = read_mimic(dir.path(), &options).unwrap();
        assert_eq!(m.codes(), ["4019", "E8497", "P_4019"]);
        assert_eq!(m.row(2).0, [2]);
    }

    #[test]
    fn a_missing_table_is_named() {
        let dir = fixture(&[("ADMISSIONS.csv", ADMISSIONS)]);
        let err = read_mimic(
            dir.path(),
            &MimicOptions::new(BuildOptions::new(DataType::Binary)),
        )
        .unwrap_err();
        assert!(err.to_string().contains("no DIAGNOSES_ICD table"), "{err}");
    }
}
