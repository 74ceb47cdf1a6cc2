//! Wide-format input: one row per patient, one column per code holding 0/1 or a count.
//!
//! Codes are named by the header, or `col_NN` (the 1-based column number, zero-padded so that
//! sorting keeps file order) when there is none. Patient ids come from `id_col`, else they are
//! the 1-based data row numbers. Every code column is in the vocabulary, even one of zeros,
//! unless `--min-patients 1` or more drops it. Excluded columns (a label, say) are ignored. An
//! empty or `--missing` cell reads as 0 and is counted. Binary data accepts only 0 and 1.
//! Columns whose names collide (after ICD-9 grouping, say) are merged like duplicate codes.
//! Rows with the same id are merged the same way.

use std::path::{Path, PathBuf};

use medgan_sample::DataType;

use super::builder::{BuildOptions, MatrixBuilder};
use super::table::{CsvTable, parse_count};
use super::{CodeMapping, DataError, DataResult, PatientMatrix, ReadSummary, SkipReason};

/// Whether the first line names the columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum WideHeader {
    /// A header if some field of the first line is not a number; all-numeric code names (ICD-9
    /// "250", "401") need `yes`.
    #[default]
    Auto,
    Yes,
    No,
}

/// How to read a wide file.
#[derive(Debug, Clone, PartialEq)]
pub struct WideOptions {
    pub header: WideHeader,
    /// The patient id column: a header name, else a 1-based column number.
    pub id_col: Option<String>,
    /// Columns to ignore: header names, else 1-based column numbers.
    pub exclude_cols: Vec<String>,
    /// Values meaning "absent" (read as 0), besides the empty string.
    pub missing: Vec<String>,
    pub delimiter: u8,
    pub mapping: CodeMapping,
    pub build: BuildOptions,
}

impl WideOptions {
    pub fn new(build: BuildOptions) -> Self {
        Self {
            header: WideHeader::Auto,
            id_col: None,
            exclude_cols: Vec::new(),
            missing: Vec::new(),
            delimiter: b',',
            mapping: CodeMapping::default(),
            build,
        }
    }

    fn is_missing(&self, value: &str) -> bool {
        value.is_empty() || self.missing.iter().any(|m| m == value)
    }
}

/// The column a name or 1-based number refers to: a header name first, then a number.
fn resolve(table: &CsvTable, wanted: &str) -> DataResult<usize> {
    if table.header().is_some()
        && let Ok(col) = table.column(wanted)
    {
        return Ok(col);
    }
    match wanted.parse::<usize>() {
        Ok(n) if (1..=table.width()).contains(&n) => Ok(n - 1),
        _ => Err(DataError::MissingColumn {
            path: table.path().to_path_buf(),
            column: wanted.to_owned(),
            present: match table.header() {
                Some(names) => names.to_vec(),
                None => (1..=table.width()).map(|n| n.to_string()).collect(),
            },
        }),
    }
}

/// Reads a wide CSV file (plain or gzip) into a matrix.
pub fn read_wide(path: &Path, options: &WideOptions) -> DataResult<(PatientMatrix, ReadSummary)> {
    let mut table = CsvTable::open(path, options.delimiter)?;
    if !table.next()? {
        return Err(DataError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    let has_header = match options.header {
        WideHeader::Yes => true,
        WideHeader::No => false,
        WideHeader::Auto => (0..table.width()).any(|col| {
            table
                .field(col)
                .is_ok_and(|v| !options.is_missing(v) && v.parse::<u32>().is_err())
        }),
    };
    let mut pending_row = true;
    if has_header {
        table.promote_to_header()?;
        pending_row = false;
    }
    let id_col = options
        .id_col
        .as_deref()
        .map(|c| resolve(&table, c))
        .transpose()?;
    let mut excluded = vec![false; table.width()];
    for wanted in &options.exclude_cols {
        excluded[resolve(&table, wanted)?] = true;
    }
    if let Some(col) = id_col {
        excluded[col] = true;
    }
    let digits = table.width().to_string().len();
    let mut code_cols = Vec::new();
    for col in (0..table.width()).filter(|&c| !excluded[c]) {
        let name = match table.header() {
            Some(names) if names[col].is_empty() => {
                return Err(DataError::BadOptions(format!(
                    "{}: column {} has an empty name; name it or exclude it",
                    path.display(),
                    col + 1
                )));
            }
            Some(names) => options.mapping.apply(&names[col]).into_owned(),
            None => format!("col_{:0digits$}", col + 1),
        };
        code_cols.push((col, name));
    }

    let mut summary = ReadSummary::new(PathBuf::from(path), "wide CSV", options.build.data_type);
    let mut builder = MatrixBuilder::new(options.build);
    for (_, code) in &code_cols {
        builder.declare_code(code)?;
    }
    let binary = options.build.data_type == DataType::Binary;
    let mut data_rows = 0u64;
    while pending_row || table.next()? {
        pending_row = false;
        data_rows += 1;
        let patient = match id_col {
            Some(col) => {
                let id = table.field(col)?;
                if options.is_missing(id) {
                    summary.skip(SkipReason::MissingPatientId, 1);
                    continue;
                }
                builder.add_patient(id)?
            }
            None => builder.add_patient(&data_rows.to_string())?,
        };
        for (col, code) in &code_cols {
            let text = table.field(*col)?;
            if options.is_missing(text) {
                summary.skip(SkipReason::MissingCellReadAsZero, 1);
                continue;
            }
            let value = match (binary, text) {
                (true, "0") => 0,
                (true, "1") => 1,
                (true, _) => {
                    let why = format!(
                        "value `{text}` is not 0 or 1 (binary data; use --data-type count)"
                    );
                    return Err(table.bad_value(*col, why));
                }
                (false, _) => parse_count(text).map_err(|why| table.bad_value(*col, why))?,
            };
            builder.add_code(patient, code, value)?;
        }
    }
    summary.rows_read = table.finish()?;
    let matrix = builder.build(&mut summary)?;
    Ok((matrix, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, options: &WideOptions) -> DataResult<(PatientMatrix, ReadSummary)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.csv");
        std::fs::write(&path, text).unwrap();
        read_wide(&path, options)
    }

    #[test]
    fn header_id_column_and_exclusions() {
        let mut options = WideOptions::new(BuildOptions::new(DataType::Count));
        options.id_col = Some("id".into());
        options.exclude_cols = vec!["label".into()];
        let (m, s) = read("id,label,b,a\np1,1,2,0\np2,0,,3\n", &options).unwrap();
        assert_eq!(m.codes(), ["a", "b"]);
        assert_eq!(m.patient_ids(), ["p1", "p2"]);
        assert_eq!(m.row(0), (&[1u32][..], &[2u32][..]));
        assert_eq!(m.row(1), (&[0u32][..], &[3u32][..]));
        assert_eq!(s.skipped(SkipReason::MissingCellReadAsZero), 1);
    }

    #[test]
    fn no_header_numbers_columns_and_rows() {
        let mut options = WideOptions::new(BuildOptions::new(DataType::Binary));
        options.exclude_cols = vec!["1".into()];
        let (m, s) = read("1,0,1\n0,0,0\n1,1,1\n", &options).unwrap();
        assert_eq!(m.codes(), ["col_2", "col_3"]);
        assert_eq!(m.patient_ids(), ["1", "2", "3"]);
        assert_eq!(s.empty_patients_kept, 1);
        assert_eq!(m.nnz(), 3);
        options.header = WideHeader::Yes;
        options.exclude_cols = vec!["3".into()];
        let (m, _) = read("250,401,3\n1,0,1\n", &options).unwrap();
        assert_eq!(m.codes(), ["250", "401"]);
        options.build.min_patients = 1;
        let (m, s) = read("250,401,3\n1,0,1\n", &options).unwrap();
        assert_eq!(m.codes(), ["250"]);
        assert_eq!(s.skipped(SkipReason::CodeBelowMinPatients), 1);
    }

    #[test]
    fn three_digit_grouping_merges_columns() {
        let mut options = WideOptions::new(BuildOptions::new(DataType::Count));
        options.header = WideHeader::Yes;
        options.mapping.icd9_3digit = true;
        let (m, _) = read("4019,4011,250\n2,3,1\n", &options).unwrap();
        assert_eq!(m.codes(), ["250", "401"]);
        assert_eq!(m.row(0).1, [1, 5]);
    }

    #[test]
    fn bad_wide_inputs_are_named_errors() {
        let binary = WideOptions::new(BuildOptions::new(DataType::Binary));
        let err = read("a,b\n0,1\n1,2\n", &binary).unwrap_err().to_string();
        let expected = "line 3, column 2 (`b`): value `2` is not 0 or 1 (binary data; use \
                        --data-type count)";
        assert!(err.ends_with(expected), "{err}");
        let count = WideOptions::new(BuildOptions::new(DataType::Count));
        let err = read("a,b\n0,-1\n", &count).unwrap_err().to_string();
        assert!(err.ends_with("line 2, column 2 (`b`): count `-1` is not a non-negative integer"));
        let err = read("a,b\n", &count).unwrap_err().to_string();
        assert!(err.ends_with("w.csv: header only, no data rows"), "{err}");
        let err = read("", &count).unwrap_err().to_string();
        assert!(err.ends_with("w.csv: file is empty (0 bytes)"), "{err}");
        let mut excluding = count.clone();
        excluding.exclude_cols = vec!["label".into()];
        let err = read("a,b\n1,1\n", &excluding).unwrap_err().to_string();
        assert!(
            err.ends_with("no column `label` (columns present: a, b)"),
            "{err}"
        );
    }
}
