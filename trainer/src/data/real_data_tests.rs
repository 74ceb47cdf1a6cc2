//! The figures each shared real data set must give (see each folder's SOURCE.md).

use std::time::Instant;

use medgan_sample::DataType;

use super::{EmptyPatients, InputArgs, InputFormat, PatientMatrix, ReadSummary, SkipReason};
use super::{data_path, load_input};

fn input(relative: &str) -> InputArgs {
    InputArgs::for_input(data_path(relative).unwrap_or_else(|why| panic!("{why}")))
}

fn load(args: &InputArgs) -> (PatientMatrix, ReadSummary) {
    load_input(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Shape, density and largest value. Density is given to 3 significant digits as in SOURCE.md
/// and may be one off in the last (Synthea's 0.08255 is written 0.0826).
fn assert_figures(m: &PatientMatrix, patients: usize, codes: usize, density: f64, max: u32) {
    assert_eq!((m.n_patients(), m.n_codes()), (patients, codes));
    let last_digit = 10f64.powf(density.log10().floor() - 2.0);
    let off = (m.density() - density).abs();
    assert!(
        off <= last_digit,
        "density {} is not {density}",
        m.density()
    );
    assert_eq!(m.max_value(), max);
}

#[test]
fn mimic_demo_figures() {
    let mut args = input("mimic-iii-demo");
    args.data_type = Some(DataType::Count);
    let (m, s) = load(&args);
    assert_eq!(s.format, "MIMIC-III folder");
    assert_figures(&m, 100, 581, 0.0256, 13);
    let top = m
        .codes()
        .iter()
        .position(|c| c == "4019")
        .expect("4019 is a code");
    assert_eq!(m.patients_per_code()[top], 36);

    args.icd9_3digit = true;
    let (m, _) = load(&args);
    assert_figures(&m, 100, 275, 0.0484, 23);
    assert!(m.codes().iter().any(|c| c.starts_with('E') && c.len() == 4));

    args.icd9_3digit = false;
    args.per_admission = true;
    let (m, _) = load(&args);
    assert_figures(&m, 129, 581, 0.0235, 1);
}

#[test]
fn mimic_demo_procedures_are_prefixed() {
    let mut args = input("mimic-iii-demo");
    args.procedures = true;
    let (m, _) = load(&args);
    let procedures = m.codes().iter().filter(|c| c.starts_with("P_")).count();
    assert!(procedures > 0);
    assert_eq!(m.n_codes() - procedures, 581);
}

fn uci_diabetes() -> InputArgs {
    let mut args = input("uci-diabetes-130-us/diabetic_data.csv");
    args.patient_col = Some("patient_nbr".into());
    args.code_col = vec!["diag_1".into(), "diag_2".into(), "diag_3".into()];
    args.missing = vec!["?".into()];
    args.data_type = Some(DataType::Count);
    args
}

#[test]
fn uci_diabetes_figures() {
    let mut args = uci_diabetes();
    let started = Instant::now();
    let (m, s) = load(&args);
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("{s}\nread in {seconds:.2} s");
    assert!(seconds < 10.0, "reading UCI Diabetes took {seconds:.1} s");
    // 71,518 patient ids; one of them (6734736, one encounter whose three diagnoses are all
    // "?") has no code at all and stays as an all-zero row by default.
    assert_eq!(m.n_patients(), 71_518);
    assert_eq!(s.empty_patients_kept, 1);
    let empty = m
        .patient_ids()
        .iter()
        .position(|p| p == "6734736")
        .expect("patient 6734736");
    assert!(m.row(empty).0.is_empty());
    assert_eq!(s.rows_read, 101_766);
    assert_eq!(s.skipped(SkipReason::MissingPatientId), 0);
    assert!(s.skipped(SkipReason::MissingCode) > 0);

    args.empty_patients = EmptyPatients::Drop;
    let (m, s) = load(&args);
    assert_figures(&m, 71_517, 915, 0.00408, 26);
    assert_eq!(s.skipped(SkipReason::EmptyPatientDropped), 1);
    let code_250 = m.codes().iter().position(|c| c == "250").expect("code 250");
    assert_eq!(m.patients_per_code()[code_250], 16_501);

    args.icd9_3digit = true;
    args.icd9_zero_pad = true;
    let (m, _) = load(&args);
    assert_figures(&m, 71_517, 881, 0.00417, 40);
    assert!(m.codes().iter().any(|c| c == "038"));
    assert!(!m.codes().iter().any(|c| c == "38"));
}

#[test]
fn uci_diabetes_per_encounter() {
    let mut args = uci_diabetes();
    args.patient_col = Some("encounter_id".into());
    args.empty_patients = EmptyPatients::Drop;
    let (m, _) = load(&args);
    assert_figures(&m, 101_765, 915, 0.00320, 3);
}

#[test]
fn synthea_conditions_figures() {
    let mut args = input("synthea-1000/conditions.csv");
    args.patient_col = Some("PATIENT".into());
    args.code_col = vec!["CODE".into()];
    args.data_type = Some(DataType::Count);
    let (m, _) = load(&args);
    assert_figures(&m, 986, 136, 0.0826, 18);
    // The default columns `patient` and `code` match PATIENT and CODE in any case.
    let mut defaults = input("synthea-1000/conditions.csv");
    defaults.data_type = Some(DataType::Count);
    assert_eq!(load(&defaults).0, m);
}

#[test]
fn spect_train_is_wide_binary_without_header() {
    let mut args = input("uci-spect-heart/SPECT.train");
    args.format = InputFormat::Wide;
    args.exclude_cols = vec!["1".into()];
    let (m, s) = load(&args);
    assert_eq!((m.n_patients(), m.n_codes()), (80, 22));
    assert_eq!(m.data_type(), DataType::Binary);
    assert_eq!(m.nnz(), 387);
    assert_eq!(s.empty_patients_kept, 14);
    assert_eq!(m.codes()[0], "col_02");
    assert_eq!(m.codes()[21], "col_23");
}
