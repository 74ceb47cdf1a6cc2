//! The `evaluate` subcommand's options and runner: read the three inputs, evaluate, write.

use std::path::PathBuf;

use anyhow::Context;
use medgan_sample::DataType;

use super::{EvalError, EvalOptions, align, evaluate_timed, read_synthetic_parquet, write_report};
use crate::data::{EmptyPatients, InputArgs, load_input};

/// Compare synthetic records with real ones: fidelity, privacy and their standing between two
/// baselines (independent per-code draws, and real training rows themselves). Writes
/// REPORT_DIR/report.json, report.md and plots (PNG and SVG).
#[derive(clap::Args, Debug, Clone)]
pub struct EvaluateArgs {
    /// Real training data: a matrix written by training (run_dir/train.medgan.safetensors) or
    /// any input `prepare` reads (with its default options)
    #[arg(long, value_name = "TRAIN")]
    pub real: PathBuf,

    /// Real held-out data the model never saw (run_dir/holdout.medgan.safetensors); its codes
    /// are matched to the training vocabulary by name
    #[arg(long, value_name = "HOLDOUT")]
    pub holdout: PathBuf,

    /// The sampler's Parquet output, wide (`patient_id`, then one Boolean or integer column per
    /// code, matched by name; codes missing on either side are reported) or long (`patient_id`,
    /// `code`[, `count`])
    #[arg(long, value_name = "SYNTH")]
    pub synthetic: PathBuf,

    /// Folder to write the report into (created if needed)
    #[arg(short = 'o', long = "output", value_name = "REPORT_DIR")]
    pub output: PathBuf,

    /// Drop all-zero real patients before comparing (keep: they count as records)
    #[arg(long, value_enum, default_value_t, value_name = "WHAT")]
    pub empty_patients: EmptyPatients,

    /// Seed of every sample and random draw; the same seed gives the same report
    #[arg(long, default_value_t = super::DEFAULT_SEED)]
    pub seed: u64,

    /// Synthetic and held-out rows sampled for the privacy metrics (all training rows are
    /// searched)
    #[arg(long, value_name = "N", default_value_t = super::DEFAULT_PRIVACY_ROWS)]
    pub privacy_rows: usize,

    /// Training rows per dimension-wise prediction model, and held-out rows it is tested on
    #[arg(long, value_name = "N", default_value_t = super::DEFAULT_PREDICTION_ROWS)]
    pub prediction_rows: usize,

    /// Held-out rows, and as many synthetic rows, the detection classifiers tell apart
    #[arg(long, value_name = "N", default_value_t = super::DEFAULT_DETECTION_ROWS)]
    pub detection_rows: usize,

    /// Code the augmentation experiment predicts from the other codes (default: the most
    /// frequent real code); it is removed from the features
    #[arg(long, value_name = "CODE")]
    pub utility_target: Option<String>,

    /// Real training rows (n) the augmentation classifier trains on, alone and with 0.5n, n,
    /// 2n and 4n candidate rows added
    #[arg(long, value_name = "N", default_value_t = super::DEFAULT_UTILITY_TRAIN_ROWS)]
    pub utility_train_rows: usize,

    /// Seeds (real subsets and candidate samples) the augmentation figures are averaged over
    #[arg(long, value_name = "K", default_value_t = super::DEFAULT_UTILITY_SEEDS)]
    pub utility_seeds: usize,
}

impl EvaluateArgs {
    fn options(&self) -> EvalOptions {
        EvalOptions {
            seed: self.seed,
            privacy_rows: self.privacy_rows,
            prediction_rows: self.prediction_rows,
            detection_rows: self.detection_rows,
            utility_target: self.utility_target.clone(),
            utility_train_rows: self.utility_train_rows,
            utility_seeds: self.utility_seeds,
            ..EvalOptions::default()
        }
    }
}

/// Runs `medgan-train evaluate`.
pub fn run_cli(args: &EvaluateArgs) -> anyhow::Result<()> {
    let read = |path: &PathBuf, what: &str| {
        let mut input = InputArgs::for_input(path);
        input.empty_patients = args.empty_patients;
        load_input(&input)
            .map(|(m, _)| m)
            .with_context(|| format!("cannot read the {what} data {}", path.display()))
    };
    let started = std::time::Instant::now();
    let real = read(&args.real, "real training")?;
    let holdout = read(&args.holdout, "held-out")?;
    let (holdout, holdout_columns) = if holdout.codes() == real.codes() {
        (holdout, None)
    } else {
        let (aligned, matched) = align::align_to(&holdout, real.codes())?;
        (aligned, Some(matched))
    };
    let (synthetic, synthetic_columns) = read_synthetic_parquet(&args.synthetic, real.codes())?;
    // Boolean columns read as binary data: counts of 0/1 are still a fair comparison.
    if synthetic.data_type() != real.data_type()
        && !(real.data_type() == DataType::Count && synthetic.data_type() == DataType::Binary)
    {
        return Err(EvalError::DataType {
            path: args.synthetic.clone(),
            real: real.data_type(),
            synthetic: synthetic.data_type(),
        }
        .into());
    }
    let (mut report, timings) = evaluate_timed(&real, &holdout, &synthetic, &args.options())?;
    report.synthetic_columns = Some(synthetic_columns);
    report.holdout_columns = holdout_columns;
    write_report(&report, &args.output)?;
    timings.write(&args.output)?;
    for (metric, seconds) in timings.per_metric() {
        tracing::debug!(metric, seconds, "time spent");
    }
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        dir = %args.output.display(),
        "report written"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, BooleanArray};
    use clap::{CommandFactory, Parser};

    use super::super::fidelity::tests::binary;
    use super::super::synthetic::tests::write_wide;
    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: EvaluateArgs,
    }

    #[test]
    fn runs_end_to_end_on_files_and_reports_missing_columns() {
        Cli::command().debug_assert();
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<&[u32]> = (0..60).map(|i| [&[0, 1][..], &[1], &[2]][i % 3]).collect();
        binary(3, &rows)
            .save(&dir.path().join("train.medgan.safetensors"))
            .unwrap();
        binary(3, &rows[..30])
            .save(&dir.path().join("holdout.medgan.safetensors"))
            .unwrap();
        let flags: Vec<bool> = (0..30).map(|i| i % 2 == 0).collect();
        let column = |v: &[bool]| Arc::new(BooleanArray::from(v.to_vec())) as ArrayRef;
        let ids: Vec<i64> = (0..30).collect();
        let synthetic = dir.path().join("synthetic.parquet");
        write_wide(
            &synthetic,
            &ids,
            &[("c0", column(&flags)), ("c1", column(&[true; 30]))],
        );
        let out = dir.path().join("report");
        let cli = Cli::try_parse_from([
            "prog".as_ref(),
            "--real".as_ref(),
            dir.path().join("train.medgan.safetensors").as_os_str(),
            "--holdout".as_ref(),
            dir.path().join("holdout.medgan.safetensors").as_os_str(),
            "--synthetic".as_ref(),
            synthetic.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
            "--utility-target".as_ref(),
            "c0".as_ref(),
            "--utility-train-rows".as_ref(),
            "20".as_ref(),
            "--utility-seeds".as_ref(),
            "2".as_ref(),
        ])
        .unwrap();
        run_cli(&cli.args).unwrap();
        let timings: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("timings.json")).unwrap())
                .unwrap();
        assert!(
            timings["seconds"]["model/utility"].as_f64().is_some(),
            "{timings}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap())
                .unwrap();
        assert_eq!(
            json["synthetic_columns"]["missing"],
            serde_json::json!(["c2"])
        );
        assert_eq!(
            json["model"]["dimension_wise"]["never_generated"],
            serde_json::json!(["c2"])
        );
        let utility = &json["model"]["utility"];
        assert_eq!(utility["target"], "c0", "{utility}");
        assert_eq!(utility["seeds"], 2);
        assert_eq!(utility["real_train_rows"], 20);
        assert_eq!(
            utility["points"][0]["auc"]["per_seed"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert!(out.join("utility_auc.svg").exists());
        let md = std::fs::read_to_string(out.join("report.md")).unwrap();
        assert!(
            md.contains("1 real codes missing (read as zero) (c2)"),
            "{md}"
        );
        assert!(md.contains("## Utility by augmentation"), "{md}");
        assert!(md.contains("predicts `c0`"), "{md}");
        assert!(
            !std::fs::read_to_string(out.join("report.json"))
                .unwrap()
                .contains("NaN")
        );
    }
}
