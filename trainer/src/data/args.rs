//! The command-line options naming an input, shared by `prepare`, `train` and `evaluate`.

use std::path::{Path, PathBuf};

use clap::builder::{PossibleValuesParser, TypedValueParser};
use medgan_sample::DataType;

use super::builder::{BuildOptions, EmptyPatients};
use super::long::{LongOptions, read_long};
use super::mimic::{MimicOptions, read_mimic};
use super::wide::{WideHeader, WideOptions, read_wide};
use super::{CodeMapping, DataError, DataResult, PatientMatrix, ReadSummary, SkipReason};

/// File name ending of a matrix written by `prepare`.
pub const PREPARED_SUFFIX: &str = ".medgan.safetensors";
/// Long-format patient column when `--patient-col` is not given.
pub const DEFAULT_PATIENT_COL: &str = "patient";
/// Long-format code column when `--code-col` is not given.
pub const DEFAULT_CODE_COL: &str = "code";

/// How `--input` is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum InputFormat {
    /// A folder is MIMIC-III, a `*.medgan.safetensors` file is prepared, any other file long.
    #[default]
    Auto,
    /// One row per (patient, code[, count]): CSV (plain or gzip) or Parquet.
    Long,
    /// One row per patient, one column per code (CSV, plain or gzip).
    Wide,
    /// A MIMIC-III folder: ADMISSIONS and DIAGNOSES_ICD (.csv or .csv.gz).
    Mimic,
    /// A matrix written by `prepare`.
    Prepared,
}

/// Where the patient data is and how to turn it into a patient x code matrix.
///
/// Rules for every format: codes are strings kept exactly (unless an --icd9 option rewrites
/// them); duplicates of a (patient, code) pair are aggregated, to 1 for binary data and summed
/// for count data; columns are the codes sorted by string; rows keep the order in which
/// patients first appear.
#[derive(clap::Args, Debug, Clone)]
pub struct InputArgs {
    /// Patient data: a long or wide CSV (plain or .gz), a long Parquet file, a MIMIC-III
    /// folder, or a matrix written by `prepare` (*.medgan.safetensors)
    #[arg(long, value_name = "PATH")]
    pub input: PathBuf,

    /// How to read --input; auto: a folder is MIMIC-III, *.medgan.safetensors is prepared,
    /// any other file is long format
    #[arg(long, value_enum, default_value_t, value_name = "FORMAT")]
    pub format: InputFormat,

    /// binary: 1 where a patient has a code, however often; count: how many times (duplicate
    /// rows summed) [default: binary; a prepared matrix keeps its own]
    #[arg(long, value_name = "TYPE", value_parser = data_type_parser())]
    pub data_type: Option<DataType>,

    /// Long format: the patient id column (exact name, else the one matching in any case)
    /// [default: patient]
    #[arg(long, value_name = "NAME")]
    pub patient_col: Option<String>,

    /// Long format: the code column, or several comma-separated, each giving one code per row
    /// (e.g. diag_1,diag_2,diag_3) [default: code]
    #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
    pub code_col: Vec<String>,

    /// Long format: a column of counts (non-negative integers); without it every row counts 1
    #[arg(long, value_name = "NAME")]
    pub count_col: Option<String>,

    /// Values meaning "absent", comma-separated (e.g. '?'); the empty string always does.
    /// Long format: such ids and codes are skipped; wide format: such cells read as 0
    #[arg(long, value_name = "VALUE,...", value_delimiter = ',')]
    pub missing: Vec<String>,

    /// Field separator of CSV input: one ASCII character, or `tab`
    #[arg(long, value_name = "CHAR", default_value = ",", value_parser = parse_delimiter)]
    pub delimiter: u8,

    /// Wide format: whether the first line names the columns; auto: yes if some field of it is
    /// not a number (say yes for all-numeric code names)
    #[arg(long, value_enum, default_value_t, value_name = "WHEN")]
    pub header: WideHeader,

    /// Wide format: the patient id column, a header name or 1-based number [default: ids are
    /// row numbers]
    #[arg(long, value_name = "COLUMN")]
    pub id_col: Option<String>,

    /// Wide format: columns to ignore (e.g. a label), comma-separated header names or 1-based
    /// numbers
    #[arg(long, value_name = "COLUMN,...", value_delimiter = ',')]
    pub exclude_cols: Vec<String>,

    /// MIMIC-III: one row per admission (hadm_id) instead of per patient (subject_id)
    #[arg(long)]
    pub per_admission: bool,

    /// MIMIC-III: also read PROCEDURES_ICD; procedure codes get the prefix P_ so they never
    /// collide with diagnosis codes
    #[arg(long)]
    pub procedures: bool,

    /// Group ICD-9 codes into categories as medGAN does: cut at the dot, then keep 4
    /// characters of E codes and 3 of others (0389 -> 038, V3000 -> V30, E8497 -> E849)
    #[arg(long)]
    pub icd9_3digit: bool,

    /// Left-pad numeric ICD-9 codes shorter than 3 digits before the dot with zeros (38 ->
    /// 038, 8 -> 008), for sources that dropped them (UCI Diabetes); runs before grouping
    #[arg(long)]
    pub icd9_zero_pad: bool,

    /// Drop codes seen in fewer than K patients (0 keeps all, even a wide column of zeros)
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub min_patients: usize,

    /// A patient without any code: keep as an all-zero row, or drop
    #[arg(long, value_enum, default_value_t, value_name = "WHAT")]
    pub empty_patients: EmptyPatients,
}

fn data_type_parser() -> impl TypedValueParser<Value = DataType> {
    PossibleValuesParser::new(["binary", "count"]).map(|s| match s.as_str() {
        "count" => DataType::Count,
        _ => DataType::Binary,
    })
}

fn parse_delimiter(text: &str) -> Result<u8, String> {
    match text {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        _ if text.len() == 1 && text.is_ascii() => Ok(text.as_bytes()[0]),
        _ => Err(format!("`{text}` is not one ASCII character or `tab`")),
    }
}

impl InputArgs {
    /// Arguments for reading `input` with every other option at its default.
    pub fn for_input(input: impl Into<PathBuf>) -> Self {
        Self {
            input: input.into(),
            format: InputFormat::Auto,
            data_type: None,
            patient_col: None,
            code_col: Vec::new(),
            count_col: None,
            missing: Vec::new(),
            delimiter: b',',
            header: WideHeader::Auto,
            id_col: None,
            exclude_cols: Vec::new(),
            per_admission: false,
            procedures: false,
            icd9_3digit: false,
            icd9_zero_pad: false,
            min_patients: 0,
            empty_patients: EmptyPatients::Keep,
        }
    }

    /// The format `--input` will be read as, `auto` resolved.
    pub fn resolved_format(&self) -> DataResult<InputFormat> {
        let meta = std::fs::metadata(&self.input).map_err(|source| DataError::Io {
            path: self.input.clone(),
            source,
        })?;
        let name = self
            .input
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        Ok(match self.format {
            InputFormat::Auto if meta.is_dir() => InputFormat::Mimic,
            InputFormat::Auto if name.ends_with(PREPARED_SUFFIX) => InputFormat::Prepared,
            InputFormat::Auto => InputFormat::Long,
            other => other,
        })
    }

    /// Refuses options that do not apply to `format`, naming them.
    fn check_applicable(&self, format: InputFormat) -> DataResult<()> {
        use InputFormat::{Long, Mimic, Wide};
        let given = [
            ("--patient-col", self.patient_col.is_some(), &[Long][..]),
            ("--code-col", !self.code_col.is_empty(), &[Long]),
            ("--count-col", self.count_col.is_some(), &[Long]),
            ("--missing", !self.missing.is_empty(), &[Long, Wide]),
            ("--delimiter", self.delimiter != b',', &[Long, Wide]),
            ("--header", self.header != WideHeader::Auto, &[Wide]),
            ("--id-col", self.id_col.is_some(), &[Wide]),
            ("--exclude-cols", !self.exclude_cols.is_empty(), &[Wide]),
            ("--per-admission", self.per_admission, &[Mimic]),
            ("--procedures", self.procedures, &[Mimic]),
            ("--icd9-3digit", self.icd9_3digit, &[Long, Wide, Mimic]),
            ("--icd9-zero-pad", self.icd9_zero_pad, &[Long, Wide, Mimic]),
            (
                "--min-patients",
                self.min_patients > 0,
                &[Long, Wide, Mimic],
            ),
        ];
        for (flag, is_given, formats) in given {
            if is_given && !formats.contains(&format) {
                return Err(DataError::BadOptions(format!(
                    "{flag} does not apply to {} read as {format:?} input",
                    self.input.display()
                )));
            }
        }
        if format == Mimic && !self.input.is_dir() {
            return Err(DataError::BadOptions(format!(
                "{}: MIMIC-III input must be a folder",
                self.input.display()
            )));
        }
        Ok(())
    }

    fn build_options(&self) -> BuildOptions {
        BuildOptions {
            data_type: self.data_type.unwrap_or(DataType::Binary),
            min_patients: self.min_patients,
            empty_patients: self.empty_patients,
        }
    }

    fn mapping(&self) -> CodeMapping {
        CodeMapping {
            icd9_3digit: self.icd9_3digit,
            icd9_zero_pad: self.icd9_zero_pad,
        }
    }
}

/// Reads the input the arguments name; nothing is written anywhere.
pub fn load_input(args: &InputArgs) -> Result<(PatientMatrix, ReadSummary), DataError> {
    let format = args.resolved_format()?;
    args.check_applicable(format)?;
    let build = args.build_options();
    match format {
        InputFormat::Long => {
            let patient_col = args.patient_col.as_deref().unwrap_or(DEFAULT_PATIENT_COL);
            let code_cols = if args.code_col.is_empty() {
                vec![DEFAULT_CODE_COL.to_owned()]
            } else {
                args.code_col.clone()
            };
            let options = LongOptions {
                patient_col: patient_col.to_owned(),
                code_cols,
                count_col: args.count_col.clone(),
                missing: args.missing.clone(),
                delimiter: args.delimiter,
                mapping: args.mapping(),
                build,
            };
            read_long(&args.input, &options)
        }
        InputFormat::Wide => {
            let options = WideOptions {
                header: args.header,
                id_col: args.id_col.clone(),
                exclude_cols: args.exclude_cols.clone(),
                missing: args.missing.clone(),
                delimiter: args.delimiter,
                mapping: args.mapping(),
                build,
            };
            read_wide(&args.input, &options)
        }
        InputFormat::Mimic => {
            let options = MimicOptions {
                per_admission: args.per_admission,
                procedures: args.procedures,
                mapping: args.mapping(),
                build,
            };
            read_mimic(&args.input, &options)
        }
        InputFormat::Prepared | InputFormat::Auto => load_prepared(&args.input, args),
    }
}

/// Loads a prepared matrix; only `--empty-patients drop` can still change it.
fn load_prepared(path: &Path, args: &InputArgs) -> DataResult<(PatientMatrix, ReadSummary)> {
    let mut matrix = PatientMatrix::load(path)?;
    if let Some(wanted) = args.data_type
        && wanted != matrix.data_type()
    {
        return Err(DataError::BadOptions(format!(
            "{} holds {} data, not the {wanted} data --data-type asks for",
            path.display(),
            matrix.data_type()
        )));
    }
    let mut summary = ReadSummary::new(path.to_path_buf(), "prepared matrix", matrix.data_type());
    summary.rows_read = matrix.n_patients() as u64;
    let empty: Vec<bool> = (0..matrix.n_patients())
        .map(|p| matrix.row(p).0.is_empty())
        .collect();
    let n_empty = empty.iter().filter(|&&e| e).count();
    if args.empty_patients == EmptyPatients::Drop && n_empty > 0 {
        let keep: Vec<usize> = (0..matrix.n_patients()).filter(|&p| !empty[p]).collect();
        matrix = matrix.select_rows(&keep);
        summary.skip(SkipReason::EmptyPatientDropped, n_empty as u64);
    } else {
        summary.empty_patients_kept = n_empty;
    }
    summary.describe_matrix(&matrix);
    Ok((matrix, summary))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        input: InputArgs,
    }

    fn parse(args: &[&str]) -> InputArgs {
        Cli::try_parse_from([&["prog"], args].concat())
            .unwrap()
            .input
    }

    #[test]
    fn help_documents_the_rules() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let help = Cli::command().render_long_help().to_string();
        for needle in [
            "summed",
            "--empty-patients",
            "P_",
            "E8497 -> E849",
            "sorted by string",
        ] {
            assert!(help.contains(needle), "--help lacks `{needle}`:\n{help}");
        }
    }

    #[test]
    fn flags_parse_into_options() {
        let args = parse(&[
            "--input",
            "d.csv",
            "--code-col",
            "diag_1,diag_2,diag_3",
            "--missing",
            "?",
            "--data-type",
            "count",
            "--empty-patients",
            "drop",
            "--delimiter",
            "tab",
            "--icd9-3digit",
        ]);
        assert_eq!(args.code_col, ["diag_1", "diag_2", "diag_3"]);
        assert_eq!(args.missing, ["?"]);
        assert_eq!(args.data_type, Some(DataType::Count));
        assert_eq!(args.empty_patients, EmptyPatients::Drop);
        assert_eq!(args.delimiter, b'\t');
        assert!(args.icd9_3digit && !args.icd9_zero_pad);
        assert!(Cli::try_parse_from(["prog", "--input", "x", "--data-type", "real"]).is_err());
        assert!(Cli::try_parse_from(["prog", "--input", "x", "--delimiter", ";;"]).is_err());
    }

    #[test]
    fn auto_format_and_prepared_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("l.csv");
        std::fs::write(&csv, "patient,code\n1,a\n1,a\n2,\n").unwrap();
        let mut args = InputArgs::for_input(&csv);
        args.data_type = Some(DataType::Count);
        assert_eq!(args.resolved_format().unwrap(), InputFormat::Long);
        let (m, _) = load_input(&args).unwrap();
        assert_eq!(m.row(0).1, [2]);

        let prepared = dir.path().join("m.medgan.safetensors");
        m.save(&prepared).unwrap();
        let mut again = InputArgs::for_input(&prepared);
        assert_eq!(again.resolved_format().unwrap(), InputFormat::Prepared);
        let (loaded, s) = load_input(&again).unwrap();
        assert_eq!(loaded, m);
        assert_eq!(s.empty_patients_kept, 1);
        again.empty_patients = EmptyPatients::Drop;
        assert_eq!(load_input(&again).unwrap().0.n_patients(), 1);
        again.data_type = Some(DataType::Binary);
        let err = load_input(&again).unwrap_err().to_string();
        assert!(err.contains("holds count data"), "{err}");
        assert_eq!(
            InputArgs::for_input(dir.path()).resolved_format().unwrap(),
            InputFormat::Mimic
        );
    }

    #[test]
    fn options_that_do_not_apply_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("l.csv");
        std::fs::write(&csv, "patient,code\n1,a\n").unwrap();
        let mut args = InputArgs::for_input(&csv);
        args.per_admission = true;
        let err = load_input(&args).unwrap_err().to_string();
        assert!(
            err.starts_with("--per-admission does not apply to"),
            "{err}"
        );
        let mut args = InputArgs::for_input(&csv);
        args.format = InputFormat::Wide;
        args.code_col = vec!["code".into()];
        let err = load_input(&args).unwrap_err().to_string();
        assert!(err.contains("--code-col does not apply"), "{err}");
        let err = load_input(&InputArgs::for_input(dir.path().join("none.csv"))).unwrap_err();
        assert!(err.to_string().contains("none.csv"), "{err}");
    }
}
