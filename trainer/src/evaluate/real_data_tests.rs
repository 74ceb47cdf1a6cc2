//! The evaluation on real data (UCI Diabetes): the baselines behave as described and a full
//! report is written and read back. Fails, naming the path, when the data is missing.

use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::{EvalOptions, Report, evaluate, write_report};
use crate::data::{EmptyPatients, InputArgs, PatientMatrix, data_path, load_input};

fn uci_diabetes() -> PatientMatrix {
    let path = data_path("uci-diabetes-130-us/diabetic_data.csv").unwrap_or_else(|e| panic!("{e}"));
    let mut args = InputArgs::for_input(path);
    args.patient_col = Some("patient_nbr".into());
    args.code_col = vec!["diag_1".into(), "diag_2".into(), "diag_3".into()];
    args.missing = vec!["?".into()];
    args.empty_patients = EmptyPatients::Drop;
    load_input(&args).unwrap().0
}

/// A seeded 90/10 split into training and held-out rows.
fn split(matrix: &PatientMatrix) -> (PatientMatrix, PatientMatrix) {
    let mut rows: Vec<usize> = (0..matrix.n_patients()).collect();
    rows.shuffle(&mut ChaCha8Rng::seed_from_u64(7));
    let cut = rows.len() * 9 / 10;
    (
        matrix.select_rows(&rows[..cut]),
        matrix.select_rows(&rows[cut..]),
    )
}

#[test]
fn baselines_on_uci_diabetes_behave_as_described() {
    let (train, holdout) = split(&uci_diabetes());
    // The held-out rows stand in for a perfect model: fresh patients from the same source.
    let started = Instant::now();
    let report = evaluate(&train, &holdout, &holdout, &EvalOptions::default()).unwrap();
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "UCI Diabetes: {} train x {} codes, {} held-out; evaluation {seconds:.1} s",
        train.n_patients(),
        train.n_codes(),
        holdout.n_patients()
    );
    let (ind, real) = (&report.independent, &report.real_sample);
    let v = |s: &super::Stat| {
        s.get()
            .unwrap_or_else(|| panic!("undefined: {:?}", s.undefined))
    };
    for s in &report.standing {
        eprintln!(
            "{:45} model {:>9} independent {:>9} real sample {:>9} position {:>6}",
            s.metric,
            s.model.show(4),
            s.independent.show(4),
            s.real_sample.show(4),
            s.position.show(2)
        );
    }
    // Independent draws: marginals right, structure wrong.
    assert!(v(&ind.dimension_wise.pearson_r) > 0.99);
    assert!(v(&real.dimension_wise.pearson_r) > 0.99);
    let (ind_tv, real_tv) = (
        v(&ind.record_shape.total_variation),
        v(&real.record_shape.total_variation),
    );
    assert!(ind_tv > 0.3 && real_tv < 0.02, "{ind_tv} {real_tv}");
    let ind_corr = v(&ind.co_occurrence.correlation_mean_abs_diff);
    let real_corr = v(&real.co_occurrence.correlation_mean_abs_diff);
    assert!(ind_corr > 1.5 * real_corr, "{ind_corr} {real_corr}");
    let ind_joint = v(&ind.co_occurrence.joint_pearson_r);
    assert!(
        v(&real.co_occurrence.joint_pearson_r) > ind_joint,
        "{ind_joint}"
    );
    assert!(v(&ind.detection.trees_auc) > v(&real.detection.trees_auc) + 0.1);
    assert!(v(&real.detection.logistic_auc) < 0.6);
    assert!(v(&ind.prediction.auc_gap) > v(&real.prediction.auc_gap));
    // Real sample: every non-empty row is a copy, far more than for fresh patients.
    assert_eq!(v(&real.privacy.synthetic_copies.rate), 1.0);
    let holdout_copies = v(&real.privacy.holdout_copies.rate);
    assert!(holdout_copies < 0.9, "{holdout_copies}");
    assert!(v(&ind.privacy.synthetic_copies.rate) < holdout_copies);
    // The attacker's training records are drawn from all training rows, of which the real
    // sample holds only a share: that share bounds its sensitivity at distance 0.
    let (real_hit, ind_hit) = (&real.privacy.presence[0], &ind.privacy.presence[0]);
    assert!(
        v(&real_hit.sensitivity) > 2.0 * v(&ind_hit.sensitivity),
        "{real_hit:?} {ind_hit:?}"
    );
    assert!(v(&real.privacy.attribute[0].recall) > v(&ind.privacy.attribute[0].recall));
    // The stand-in model (fresh real patients) sits near the real end for fidelity.
    let tv_standing = &report.standing[2];
    assert!(v(&tv_standing.position) > 0.9, "{tv_standing:?}");
    // Both baselines have the real marginals: dimension-wise r cannot place the model.
    let r_standing = &report.standing[0];
    assert!(r_standing.position.get().is_none(), "{r_standing:?}");
    // Augmentation (n = 1000, 100 features): more real rows help, unstructured rows do not.
    let curve = |c: &super::CandidateReport| -> Vec<f64> {
        eprintln!(
            "utility {:?}",
            c.utility
                .points
                .iter()
                .map(|p| p.auc.show(4))
                .collect::<Vec<_>>()
        );
        c.utility.points.iter().map(|p| v(&p.auc.mean)).collect()
    };
    let (model_auc, ind_auc, real_auc) = (curve(&report.model), curve(ind), curve(real));
    assert_eq!(report.model.utility.feature_codes, 100);
    assert_eq!(report.model.utility.real_train_rows, 1000);
    assert_eq!(
        model_auc[0], ind_auc[0],
        "m = 0 is the same real rows for all"
    );
    assert!(real_auc[4] > real_auc[0] + 0.02, "{real_auc:?}");
    assert!(model_auc[4] > model_auc[0] + 0.02, "{model_auc:?}");
    assert!(ind_auc[4] < real_auc[4] - 0.03, "{ind_auc:?} {real_auc:?}");

    let dir = tempfile::tempdir().unwrap();
    write_report(&report, dir.path()).unwrap();
    let json = std::fs::read_to_string(dir.path().join("report.json")).unwrap();
    let back: Report = serde_json::from_str(&json).unwrap();
    // serde_json may round the last bit of a float; compare within that.
    assert_eq!(back.standing.len(), report.standing.len());
    for (a, b) in back.standing.iter().zip(&report.standing) {
        assert_eq!(a.metric, b.metric);
        let near = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) => (x - y).abs() <= 1e-12 * x.abs().max(1.0),
            (x, y) => x == y,
        };
        assert!(near(a.model.value, b.model.value) && near(a.position.value, b.position.value));
    }
    assert_eq!(back.model.rows, report.model.rows);
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    for plot in [
        "dimension_wise",
        "record_shape",
        "co_occurrence",
        "prediction_auc",
        "utility_auc",
    ] {
        assert!(md.contains(&format!("]({plot}.png)")), "{plot}");
        assert!(dir.path().join(format!("{plot}.svg")).exists(), "{plot}");
    }
    if let Ok(keep) = std::env::var("MEDGAN_EVAL_REPORT_DIR") {
        write_report(&report, std::path::Path::new(&keep)).unwrap();
    }
}
