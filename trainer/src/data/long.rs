//! Long-format input: one row per (patient, code[, count]), as CSV (plain or gzip) or Parquet.
//!
//! Several code columns may be named; each contributes one code per row (UCI Diabetes'
//! `diag_1,diag_2,diag_3`). Codes are strings kept exactly ("0389", "389" and "389.0" differ)
//! unless an ICD-9 [`CodeMapping`] rewrites them. A row without a patient id is skipped; a code
//! field that is empty or a `--missing` value is skipped; both are counted in the summary.
//! Without a count column every row counts 1. A patient whose rows carry no code still gets a
//! (possibly dropped) all-zero row.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use super::builder::{BuildOptions, MatrixBuilder};
use super::table::{CsvTable, FileKind, parse_count, sniff};
use super::{CodeMapping, DataError, DataResult, PatientMatrix, ReadSummary, SkipReason};

/// How to read a long file.
#[derive(Debug, Clone, PartialEq)]
pub struct LongOptions {
    pub patient_col: String,
    /// One or more columns, each holding one code per row.
    pub code_cols: Vec<String>,
    /// Column of counts (non-negative integers); without it each row counts 1.
    pub count_col: Option<String>,
    /// Values meaning "absent", besides the empty string.
    pub missing: Vec<String>,
    /// Field separator of CSV files.
    pub delimiter: u8,
    pub mapping: CodeMapping,
    pub build: BuildOptions,
}

impl LongOptions {
    pub fn new(patient_col: &str, code_cols: &[&str], build: BuildOptions) -> Self {
        Self {
            patient_col: patient_col.to_owned(),
            code_cols: code_cols.iter().map(|&c| c.to_owned()).collect(),
            count_col: None,
            missing: Vec::new(),
            delimiter: b',',
            mapping: CodeMapping::default(),
            build,
        }
    }

    pub(crate) fn is_missing(&self, value: &str) -> bool {
        value.is_empty() || self.missing.iter().any(|m| m == value)
    }
}

/// Reads a long file, CSV or Parquet (judged by its first bytes), into a matrix.
pub fn read_long(path: &Path, options: &LongOptions) -> DataResult<(PatientMatrix, ReadSummary)> {
    if options.code_cols.is_empty() {
        return Err(DataError::BadOptions("no code column named".into()));
    }
    let mut builder = MatrixBuilder::new(options.build);
    let (format, rows) = match sniff(path)? {
        FileKind::Parquet => (
            "long Parquet",
            super::parquet_input::read_long_parquet(path, options, &mut builder)?,
        ),
        _ => ("long CSV", read_long_csv(path, options, &mut builder)?),
    };
    let mut summary = ReadSummary::new(PathBuf::from(path), format, options.build.data_type);
    summary.rows_read = rows.rows;
    summary.skip(SkipReason::MissingPatientId, rows.missing_patient);
    summary.skip(SkipReason::MissingCode, rows.missing_code);
    summary.skip(SkipReason::ZeroCount, rows.zero_count);
    let matrix = builder.build(&mut summary)?;
    Ok((matrix, summary))
}

/// What a long reader counted.
#[derive(Debug, Default)]
pub(crate) struct LongTally {
    pub rows: u64,
    pub missing_patient: u64,
    pub missing_code: u64,
    pub zero_count: u64,
}

impl LongTally {
    /// Adds one row's patient and codes to the builder, counting what is left out.
    pub fn add_row<'a>(
        &mut self,
        builder: &mut MatrixBuilder,
        options: &LongOptions,
        patient: Option<&str>,
        codes: impl Iterator<Item = Option<Cow<'a, str>>>,
        count: u32,
    ) -> DataResult<()> {
        let Some(patient) = patient.filter(|p| !options.is_missing(p)) else {
            self.missing_patient += 1;
            return Ok(());
        };
        let patient = builder.add_patient(patient)?;
        for code in codes {
            match code.filter(|c| !options.is_missing(c)) {
                None => self.missing_code += 1,
                Some(_) if count == 0 => self.zero_count += 1,
                Some(code) => builder.add_code(patient, &options.mapping.apply(&code), count)?,
            }
        }
        Ok(())
    }
}

fn read_long_csv(
    path: &Path,
    options: &LongOptions,
    builder: &mut MatrixBuilder,
) -> DataResult<LongTally> {
    let mut table = CsvTable::open_with_header(path, options.delimiter)?;
    let patient_col = table.column(&options.patient_col)?;
    let code_cols = options
        .code_cols
        .iter()
        .map(|name| table.column(name))
        .collect::<DataResult<Vec<_>>>()?;
    let count_col = options
        .count_col
        .as_deref()
        .map(|name| table.column(name))
        .transpose()?;
    let mut tally = LongTally::default();
    while table.next()? {
        let count = match count_col {
            None => 1,
            Some(col) => {
                let text = table.field(col)?;
                if options.is_missing(text) {
                    return Err(table.bad_value(col, "count is empty or missing".into()));
                }
                parse_count(text).map_err(|why| table.bad_value(col, why))?
            }
        };
        let codes = code_cols
            .iter()
            .map(|&col| table.field(col).map(Cow::Borrowed))
            .collect::<DataResult<Vec<_>>>()?;
        let patient = table.field(patient_col)?;
        tally.add_row(
            builder,
            options,
            Some(patient),
            codes.into_iter().map(Some),
            count,
        )?;
    }
    tally.rows = table.finish()?;
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;
    use medgan_sample::DataType;

    fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn options(code_cols: &[&str], data_type: DataType) -> LongOptions {
        LongOptions::new("pid", code_cols, BuildOptions::new(data_type))
    }

    #[test]
    fn quoting_bom_crlf_and_exact_codes() {
        let dir = tempfile::tempdir().unwrap();
        let text = "\u{feff}pid,code,note\r\n\
                    1,0389,x\r\n\
                    1,389,\"a, \"\"quoted\"\" note\"\r\n\
                    2,\"250.00, type II\",y\r\n\
                    2,001,\r\n2,01,\r\n2,1,\r\n2,1,\r\n";
        let path = write(&dir, "l.csv", text.as_bytes());
        let (m, s) = read_long(&path, &options(&["code"], DataType::Count)).unwrap();
        assert_eq!(
            m.codes(),
            ["001", "01", "0389", "1", "250.00, type II", "389"]
        );
        assert_eq!(m.patient_ids(), ["1", "2"]);
        assert_eq!(m.row(1), (&[0u32, 1, 3, 4][..], &[1u32, 1, 2, 1][..]));
        assert_eq!(s.rows_read, 7);
    }

    #[test]
    fn several_code_columns_missing_values_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let text = "pid,d1,d2,n\nA,250,?,2\nA,250,401,1\n?,9,9,1\nB,?,,3\nC,V30,E849,0\n";
        let path = write(&dir, "l.csv", text.as_bytes());
        let mut opts = options(&["d1", "d2"], DataType::Count);
        opts.missing = vec!["?".into()];
        opts.count_col = Some("n".into());
        let (m, s) = read_long(&path, &opts).unwrap();
        assert_eq!(m.patient_ids(), ["A", "B", "C"]);
        assert_eq!(m.codes(), ["250", "401"]);
        assert_eq!(m.row(0), (&[0u32, 1][..], &[3u32, 1][..]));
        assert_eq!(s.skipped(SkipReason::MissingPatientId), 1);
        assert_eq!(s.skipped(SkipReason::MissingCode), 3);
        assert_eq!(s.skipped(SkipReason::ZeroCount), 2);
        assert_eq!(s.empty_patients_kept, 2);
    }

    #[test]
    fn gzip_input_and_case_insensitive_columns() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"PID,CODE\n1,a\n2,b\n").unwrap();
        let path = write(&dir, "l.csv.gz", &gz.finish().unwrap());
        let (m, _) = read_long(&path, &options(&["code"], DataType::Binary)).unwrap();
        assert_eq!((m.n_patients(), m.n_codes()), (2, 2));
    }

    fn error_of(text: &[u8], opts: &LongOptions) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "bad.csv", text);
        read_long(&path, opts).unwrap_err().to_string()
    }

    #[test]
    fn bad_inputs_are_named_errors() {
        let plain = options(&["code"], DataType::Count);
        let mut counted = plain.clone();
        counted.count_col = Some("n".into());
        let cases: &[(&[u8], &LongOptions, &str)] = &[
            (b"", &plain, "bad.csv: file is empty (0 bytes)"),
            (b"pid,code\n", &plain, "bad.csv: header only, no data rows"),
            (
                b"pid,dx\n1,a\n",
                &plain,
                "bad.csv: no column `code` (columns present: pid, dx)",
            ),
            (
                b"pid,code,n\n1,a,1\n1,b,x\n",
                &counted,
                "bad.csv: line 3, column 3 (`n`): count `x` is not a non-negative integer",
            ),
            (
                b"pid,code,n\n1,a,-2\n",
                &counted,
                "bad.csv: line 2, column 3 (`n`): count `-2` is not a non-negative integer",
            ),
            (
                b"pid,code\n1,a\n2,b\xff\n",
                &plain,
                "bad.csv: line 3, column 2 (`code`): invalid UTF-8",
            ),
            (
                b"pid,code\n1,a\n2,b,c\n",
                &plain,
                "bad.csv: line 3: 3 fields where the first line has 2",
            ),
        ];
        for (text, opts, expected) in cases {
            let err = error_of(text, opts);
            assert!(
                err.ends_with(expected),
                "got `{err}`, expected `{expected}`"
            );
        }
    }
}
