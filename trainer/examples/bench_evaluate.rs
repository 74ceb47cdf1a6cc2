//! Times a full evaluation on UCI Diabetes and prints where the time goes, per metric.
//!
//! `cargo run --release -p medgan-train --example bench_evaluate -- [independent|real-sample]
//! [rows]`. No trained model is needed: the "synthetic" input is independent draws at the real
//! marginals or a sample of real training rows (default: independent draws, 10,000 rows).
//! Reads `$MEDGAN_DATA_DIR` (default `../shared/data`).

use std::time::Instant;

use anyhow::{Context, bail};
use medgan_train::data::{EmptyPatients, InputArgs, PatientMatrix, data_path, load_input};
use medgan_train::evaluate::{EvalOptions, baselines, evaluate_timed, write_report};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

fn uci_diabetes() -> anyhow::Result<PatientMatrix> {
    let path = data_path("uci-diabetes-130-us/diabetic_data.csv").map_err(anyhow::Error::msg)?;
    let mut args = InputArgs::for_input(&path);
    args.patient_col = Some("patient_nbr".into());
    args.code_col = vec!["diag_1".into(), "diag_2".into(), "diag_3".into()];
    args.missing = vec!["?".into()];
    args.empty_patients = EmptyPatients::Drop;
    Ok(load_input(&args)
        .with_context(|| format!("cannot read {}", path.display()))?
        .0)
}

fn main() -> anyhow::Result<()> {
    let mut argv = std::env::args().skip(1);
    let kind = argv.next().unwrap_or_else(|| "independent".into());
    let rows: usize = match argv.next() {
        Some(n) => n
            .parse()
            .with_context(|| format!("rows `{n}` is not a number"))?,
        None => 10_000,
    };
    let started = Instant::now();
    let all = uci_diabetes()?;
    let read_seconds = started.elapsed().as_secs_f64();
    // A seeded 90/10 split, as training does.
    let mut order: Vec<usize> = (0..all.n_patients()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(7));
    let cut = order.len() * 9 / 10;
    let (train, holdout) = (
        all.select_rows(&order[..cut]),
        all.select_rows(&order[cut..]),
    );
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let synthetic = match kind.as_str() {
        "independent" => baselines::independent_draws(&train, rows, &mut rng),
        "real-sample" => baselines::real_sample(&train, rows, &mut rng),
        other => bail!("unknown synthetic stand-in `{other}`: use independent or real-sample"),
    };
    println!(
        "UCI Diabetes: {} training x {} codes, {} held-out; stand-in `{kind}`, {} rows; read \
         in {read_seconds:.2} s",
        train.n_patients(),
        train.n_codes(),
        holdout.n_patients(),
        synthetic.n_patients()
    );
    let (report, timings) = evaluate_timed(&train, &holdout, &synthetic, &EvalOptions::default())?;
    let dir = tempfile::tempdir()?;
    let written = Instant::now();
    write_report(&report, dir.path())?;
    let write_seconds = written.elapsed().as_secs_f64();

    println!("\nper metric (summed over model and both baselines):");
    let mut per_metric: Vec<(String, f64)> = timings.per_metric().into_iter().collect();
    per_metric.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (metric, seconds) in &per_metric {
        let share = 100.0 * seconds / timings.total_seconds;
        println!("  {metric:28} {seconds:8.2} s {share:5.1}%");
    }
    println!(
        "  {:28} {:8.2} s",
        "evaluation total", timings.total_seconds
    );
    println!(
        "  {:28} {write_seconds:8.2} s",
        "report.json, report.md, plots"
    );
    println!("\nper part:");
    for (key, seconds) in &timings.seconds {
        println!("  {key:28} {seconds:8.2} s");
    }
    let u = &report.model.utility;
    println!(
        "\naugmentation, target {} ({} features, n = {}, {} seeds, {} test rows): mean AUC",
        u.target.as_deref().unwrap_or("none"),
        u.feature_codes,
        u.real_train_rows,
        u.seeds,
        u.test_rows
    );
    for (k, p) in u.points.iter().enumerate() {
        let show = |c: &medgan_train::evaluate::CandidateReport| c.utility.points[k].auc.show(4);
        println!(
            "  m = {:5}: model {:18} independent {:18} real sample {:18}",
            p.added_rows,
            show(&report.model),
            show(&report.independent),
            show(&report.real_sample)
        );
    }
    println!("\nstanding: model, independent, real sample, position");
    for s in &report.standing {
        let position = match (s.position.get(), &s.position.undefined) {
            (Some(_), _) => s.position.show(2),
            (None, why) => format!("undefined ({})", why.as_deref().unwrap_or("")),
        };
        println!(
            "  {:45} {:>9} {:>9} {:>9}  {position}",
            s.metric,
            s.model.show(6),
            s.independent.show(6),
            s.real_sample.show(6)
        );
    }
    Ok(())
}
