//! The report: its JSON schema (see `docs/REPORT.md`), the standing of the model between the
//! baselines, and the files `write_report` puts in the report folder.

use std::fmt::Write as _;
use std::path::Path;

use medgan_sample::DataType;
use serde::{Deserialize, Serialize};

use super::detection::Detection;
use super::fidelity::{CoOccurrence, DimensionWise, RecordShape};
use super::plots;
use super::prediction::Prediction;
use super::privacy::Privacy;
use super::stats::Stat;
use super::synthetic::ColumnMatch;
use super::utility::{AugmentationPoint, Spread, Utility};
use super::{EvalError, EvalOptions};
use crate::data::PatientMatrix;

/// Version of the `report.json` layout; bump when a field changes meaning or goes away.
pub const REPORT_SCHEMA_VERSION: u32 = 1;

/// Every metric for one candidate set of records (the model's or a baseline's).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct CandidateReport {
    pub rows: usize,
    pub dimension_wise: DimensionWise,
    pub record_shape: RecordShape,
    pub co_occurrence: CoOccurrence,
    pub prediction: Prediction,
    pub detection: Detection,
    pub privacy: Privacy,
    pub utility: Utility,
}

/// One headline metric for the model and both baselines.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Standing {
    pub metric: String,
    /// `fidelity` (real-sample end is best) or `privacy` (real-sample end is worst).
    pub kind: String,
    pub model: Stat,
    pub independent: Stat,
    pub real_sample: Stat,
    /// `(model - independent) / (real_sample - independent)`: 0 where independent draws are,
    /// 1 where real rows are; outside [0, 1] beyond either. Undefined when the baselines are
    /// less than `min_baseline_gap` apart.
    pub position: Stat,
    /// The smallest `|real_sample - independent|` that places the model: [`MIN_GAP_ABSOLUTE`]
    /// for figures on a fixed 0-1 scale, [`MIN_GAP_RELATIVE`] times the larger baseline's
    /// magnitude for figures whose scale depends on the data (RMSE, differences, distances).
    pub min_baseline_gap: Stat,
}

/// Smallest baseline gap for figures on a fixed 0-1 scale (correlations, AUCs, shares).
pub const MIN_GAP_ABSOLUTE: f64 = 0.01;
/// Smallest baseline gap, relative to the larger baseline, for data-scaled figures: on UCI
/// Diabetes two independent draws of 10,000 rows differ by 10-20% in dimension-wise RMSE from
/// sampling noise alone.
pub const MIN_GAP_RELATIVE: f64 = 0.25;

/// How far apart the baselines must be for a headline metric's position to mean anything.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    /// A figure on a fixed 0-1 scale: gap at least [`MIN_GAP_ABSOLUTE`].
    Unit,
    /// A figure whose size depends on the data: gap at least [`MIN_GAP_RELATIVE`] of the
    /// larger baseline's magnitude.
    Data,
}

/// The whole `report.json`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Report {
    pub schema_version: u32,
    pub data_type: DataType,
    pub codes: usize,
    pub train_rows: usize,
    pub holdout_rows: usize,
    /// How the synthetic file's columns matched the vocabulary (absent for in-memory input).
    pub synthetic_columns: Option<ColumnMatch>,
    /// How the held-out file's codes matched the vocabulary, when it had to be aligned.
    pub holdout_columns: Option<ColumnMatch>,
    pub options: EvalOptions,
    pub model: CandidateReport,
    /// Independent per-code draws at the real marginals, as many rows as the model's.
    pub independent: CandidateReport,
    /// Training rows drawn without replacement (with, if too few), as many as the model's.
    pub real_sample: CandidateReport,
    pub standing: Vec<Standing>,
}

type Pick = fn(&CandidateReport) -> Stat;

/// The headline metrics, in report order.
fn headline() -> Vec<(&'static str, &'static str, Scale, Pick)> {
    use Scale::{Data, Unit};
    vec![
        ("dimension-wise Pearson r", "fidelity", Unit, |c| {
            c.dimension_wise.pearson_r.clone()
        }),
        ("dimension-wise RMSE", "fidelity", Data, |c| {
            c.dimension_wise.rmse.clone()
        }),
        ("codes per record, total variation", "fidelity", Unit, |c| {
            c.record_shape.total_variation.clone()
        }),
        ("all-zero record share", "fidelity", Unit, |c| {
            c.record_shape.synthetic_all_zero_share.clone()
        }),
        ("co-occurrence joint Pearson r", "fidelity", Unit, |c| {
            c.co_occurrence.joint_pearson_r.clone()
        }),
        ("correlation mean abs difference", "fidelity", Data, |c| {
            c.co_occurrence.correlation_mean_abs_diff.clone()
        }),
        (
            "prediction mean AUC (synthetic-trained)",
            "fidelity",
            Unit,
            |c| c.prediction.synthetic_mean_auc.clone(),
        ),
        ("prediction AUC gap", "fidelity", Unit, |c| {
            c.prediction.auc_gap.clone()
        }),
        (
            "augmentation AUC, n real + n candidate rows",
            "fidelity",
            Unit,
            |c| {
                c.utility
                    .at_multiple(1.0)
                    .map_or(Stat::undefined("no point with m = n"), |p| {
                        p.auc.mean.clone()
                    })
            },
        ),
        ("detection AUC, logistic", "fidelity", Unit, |c| {
            c.detection.logistic_auc.clone()
        }),
        ("detection AUC, trees", "fidelity", Unit, |c| {
            c.detection.trees_auc.clone()
        }),
        (
            "median distance to closest training row",
            "privacy",
            Data,
            |c| c.privacy.synthetic_to_train.quantiles[5].value.clone(),
        ),
        ("exact copy rate (non-empty rows)", "privacy", Unit, |c| {
            c.privacy.synthetic_copies.rate.clone()
        }),
        ("presence attack precision, d = 0", "privacy", Unit, |c| {
            c.privacy
                .presence
                .first()
                .map_or(Stat::undefined("no threshold"), |p| p.precision.clone())
        }),
        ("attribute attack recall, first k", "privacy", Unit, |c| {
            c.privacy
                .attribute
                .first()
                .map_or(Stat::undefined("no k"), |a| a.recall.clone())
        }),
    ]
}

/// The model's position between the baselines and the smallest gap that allows one.
pub fn position(
    model: &Stat,
    independent: &Stat,
    real_sample: &Stat,
    scale: Scale,
) -> (Stat, Stat) {
    let (Some(i), Some(r)) = (independent.get(), real_sample.get()) else {
        let why = "a baseline's value is undefined";
        return (Stat::undefined(why), Stat::undefined(why));
    };
    let min_gap = match scale {
        Scale::Unit => MIN_GAP_ABSOLUTE,
        Scale::Data => MIN_GAP_RELATIVE * i.abs().max(r.abs()),
    };
    let gap = (r - i).abs();
    let position = match model.get() {
        // Both baselines 0 on a data-scaled figure: no gap is big enough.
        _ if gap < min_gap || gap == 0.0 => Stat::undefined(format!(
            "the baselines differ by only {gap:.3e} (less than {min_gap:.3e}): too close to \
             place the model between them"
        )),
        Some(m) => Stat::of((m - i) / (r - i)),
        None => Stat::undefined("the model's value is undefined"),
    };
    (position, Stat::of(min_gap))
}

impl Report {
    pub fn new(
        real: &PatientMatrix,
        holdout: &PatientMatrix,
        options: EvalOptions,
        model: CandidateReport,
        independent: CandidateReport,
        real_sample: CandidateReport,
    ) -> Self {
        let standing = headline()
            .into_iter()
            .map(|(metric, kind, scale, pick)| {
                let (m, i, r) = (pick(&model), pick(&independent), pick(&real_sample));
                let (position, min_baseline_gap) = position(&m, &i, &r, scale);
                Standing {
                    metric: metric.to_string(),
                    kind: kind.to_string(),
                    position,
                    min_baseline_gap,
                    model: m,
                    independent: i,
                    real_sample: r,
                }
            })
            .collect();
        Self {
            schema_version: REPORT_SCHEMA_VERSION,
            data_type: real.data_type(),
            codes: real.n_codes(),
            train_rows: real.n_patients(),
            holdout_rows: holdout.n_patients(),
            synthetic_columns: None,
            holdout_columns: None,
            options,
            model,
            independent,
            real_sample,
            standing,
        }
    }
}

/// File names inside the report folder.
pub const REPORT_JSON: &str = "report.json";
pub const REPORT_MD: &str = "report.md";

/// Writes `report.json`, `report.md` and the plots (PNG and SVG) into `dir`, creating it.
pub fn write_report(report: &Report, dir: &Path) -> Result<(), EvalError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EvalError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let json = serde_json::to_string_pretty(report).expect("a report always serialises");
    let json_path = dir.join(REPORT_JSON);
    std::fs::write(&json_path, json + "\n").map_err(io(&json_path))?;
    let plotted = plots::draw_all(report, dir)?;
    let md_path = dir.join(REPORT_MD);
    std::fs::write(&md_path, markdown(report, &plotted)).map_err(io(&md_path))?;
    Ok(())
}

fn row(out: &mut String, name: &str, stats: [&Stat; 3]) {
    let _ = writeln!(
        out,
        "| {name} | {} | {} | {} |",
        stats[0].show(4),
        stats[1].show(4),
        stats[2].show(4)
    );
}

fn table(out: &mut String, r: &Report, rows: &[(&str, Pick)]) {
    out.push_str("| metric | model | independent draws | real sample |\n|---|---|---|---|\n");
    for (name, pick) in rows {
        row(
            out,
            name,
            [
                &pick(&r.model),
                &pick(&r.independent),
                &pick(&r.real_sample),
            ],
        );
    }
    out.push('\n');
}

fn markdown(r: &Report, plots: &[plots::Plotted]) -> String {
    let mut out = String::new();
    let m = &r.model;
    let _ = writeln!(out, "# Synthetic data evaluation\n");
    let _ = writeln!(
        out,
        "{} data, {} codes; {} training rows, {} held-out rows, {} synthetic rows; seed {}.\n",
        r.data_type, r.codes, r.train_rows, r.holdout_rows, m.rows, r.options.seed
    );
    let _ = writeln!(
        out,
        "Baselines, as many rows as the model's: *independent draws* (each code drawn on its \
         own at its real prevalence) and *real sample* (training rows themselves). A fidelity \
         figure near the real sample is good; a privacy figure near it is bad.\n"
    );
    for (what, columns) in [
        ("synthetic", &r.synthetic_columns),
        ("held-out", &r.holdout_columns),
    ] {
        if let Some(c) = columns {
            let _ = writeln!(
                out,
                "Columns of the {what} file: {} matched; {} real codes missing (read as zero){}; \
                 {} extra columns ignored{}.\n",
                c.matched,
                c.missing.len(),
                list_some(&c.missing),
                c.extra.len(),
                list_some(&c.extra)
            );
        }
    }
    out.push_str("## Standing between the baselines\n\nPosition 0: like independent draws; 1: ");
    let _ = write!(
        out,
        "like real rows. Undefined where the baselines are too close to tell apart: less than \
         {MIN_GAP_ABSOLUTE} apart on a 0-1 scale, or less than {:.0}% of the larger for \
         data-scaled figures (RMSE, differences, distances).\n\n",
        MIN_GAP_RELATIVE * 100.0
    );
    out.push_str("| metric | kind | model | independent | real sample | ");
    out.push_str("position |\n|---|---|---|---|---|---|\n");
    for s in &r.standing {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            s.metric,
            s.kind,
            s.model.show(4),
            s.independent.show(4),
            s.real_sample.show(4),
            s.position.show(2)
        );
    }
    out.push_str("\n## Dimension-wise statistics\n\n");
    table(
        &mut out,
        r,
        &[
            ("Pearson r", |c| c.dimension_wise.pearson_r.clone()),
            ("R² (identity line)", |c| {
                c.dimension_wise.r_squared.clone()
            }),
            ("RMSE", |c| c.dimension_wise.rmse.clone()),
        ],
    );
    let never = &m.dimension_wise.never_generated;
    let _ = writeln!(
        out,
        "Codes in the real data the model never generated: {}{}.\n",
        never.len(),
        list_some(never)
    );
    out.push_str("## Record shape\n\n");
    table(
        &mut out,
        r,
        &[
            ("total variation of codes per record", |c| {
                c.record_shape.total_variation.clone()
            }),
            ("mean codes per record", |c| {
                c.record_shape.synthetic_mean_codes.clone()
            }),
            ("all-zero share", |c| {
                c.record_shape.synthetic_all_zero_share.clone()
            }),
        ],
    );
    let _ = writeln!(
        out,
        "Real: mean {} codes per record, all-zero share {}.\n",
        m.record_shape.real_mean_codes.show(3),
        m.record_shape.real_all_zero_share.show(4)
    );
    out.push_str("## Co-occurrence of the most frequent codes\n\n");
    table(
        &mut out,
        r,
        &[
            ("joint probability Pearson r", |c| {
                c.co_occurrence.joint_pearson_r.clone()
            }),
            ("joint probability R²", |c| {
                c.co_occurrence.joint_r_squared.clone()
            }),
            ("correlation mean abs difference", |c| {
                c.co_occurrence.correlation_mean_abs_diff.clone()
            }),
        ],
    );
    let _ = writeln!(
        out,
        "Dimension-wise prediction ({} codes; {} real and {} synthetic training rows, {} \
         held-out test rows):\n",
        m.prediction.per_code.len(),
        m.prediction.real_train_rows,
        m.prediction.synthetic_train_rows,
        m.prediction.test_rows
    );
    table(
        &mut out,
        r,
        &[
            ("mean AUC, trained on real", |c| {
                c.prediction.real_mean_auc.clone()
            }),
            ("mean AUC, trained on candidate", |c| {
                c.prediction.synthetic_mean_auc.clone()
            }),
            ("AUC gap (real - candidate)", |c| {
                c.prediction.auc_gap.clone()
            }),
            ("mean F1, trained on real", |c| {
                c.prediction.real_mean_f1.clone()
            }),
            ("mean F1, trained on candidate", |c| {
                c.prediction.synthetic_mean_f1.clone()
            }),
        ],
    );
    utility_section(&mut out, r);
    let _ = writeln!(
        out,
        "## Detection\n\n{}-fold cross-validated AUC telling {} held-out rows from as many \
         candidate rows (0.5: indistinguishable).\n",
        m.detection.folds, m.detection.rows_each
    );
    table(
        &mut out,
        r,
        &[
            ("logistic regression", |c| c.detection.logistic_auc.clone()),
            ("bagged decision trees", |c| c.detection.trees_auc.clone()),
        ],
    );
    privacy_section(&mut out, r);
    out.push_str("## Plots\n\n");
    for p in plots {
        let _ = writeln!(
            out,
            "### {}\n\n{} ([SVG]({}))\n\n![{}]({})\n",
            p.title, p.caption, p.svg, p.title, p.png
        );
    }
    out
}

fn utility_section(out: &mut String, r: &Report) {
    let u = &r.model.utility;
    out.push_str("## Utility by augmentation\n\n");
    let Some(target) = &u.target else {
        let why = u.undefined.as_deref().unwrap_or("no target");
        let _ = writeln!(out, "Not measured: {why}.\n");
        return;
    };
    let _ = writeln!(
        out,
        "A logistic regression predicts `{target}` (in {} of the real training rows, {} of \
         the {} held-out test rows) from the {} most frequent other codes. Per seed ({}), it \
         trains on n = {} real training rows alone (m = 0) and with m candidate rows added, \
         each labelled by its own `{target}`; mean ± standard deviation over the seeds. The \
         model was trained on all real training rows, so this is an upper bound on what it \
         adds to a data set of n patients.\n",
        u.real_target_share.show(4),
        u.test_target_share.show(4),
        u.test_rows,
        u.feature_codes,
        u.seeds,
        u.real_train_rows
    );
    let _ = writeln!(
        out,
        "Share of candidate rows with `{target}`: model {}, independent {}, real sample {}.\n",
        u.candidate_target_share.show(4),
        r.independent.utility.candidate_target_share.show(4),
        r.real_sample.utility.candidate_target_share.show(4)
    );
    for (what, pick) in [
        ("AUC", (|p| &p.auc) as fn(&AugmentationPoint) -> &Spread),
        ("F1", |p| &p.f1),
    ] {
        let _ = writeln!(
            out,
            "| m (added rows) | {what}, model | {what}, independent | {what}, real sample |"
        );
        out.push_str("|---|---|---|---|\n");
        for (k, p) in u.points.iter().enumerate() {
            let cell = |c: &CandidateReport| {
                c.utility
                    .points
                    .get(k)
                    .map_or("undefined".to_string(), |q| pick(q).show(4))
            };
            let _ = writeln!(
                out,
                "| {}n ({}) | {} | {} | {} |",
                p.multiple,
                p.added_rows,
                cell(&r.model),
                cell(&r.independent),
                cell(&r.real_sample)
            );
        }
        out.push('\n');
    }
}

fn privacy_section(out: &mut String, r: &Report) {
    let p = &r.model.privacy;
    let _ = writeln!(
        out,
        "## Privacy\n\nHamming distances on code presence; {} synthetic and {} held-out rows \
         sampled (seeded), searched against all {} training rows.\n",
        p.synthetic_rows_sampled, p.holdout_rows_sampled, p.training_rows_searched
    );
    out.push_str("| distance to closest training row | model | independent | real sample | ");
    out.push_str("held-out real |\n|---|---|---|---|---|\n");
    for (k, q) in p.synthetic_to_train.quantiles.iter().enumerate() {
        let pick = |c: &CandidateReport| c.privacy.synthetic_to_train.quantiles[k].value.show(2);
        let _ = writeln!(
            out,
            "| quantile {} | {} | {} | {} | {} |",
            q.q,
            pick(&r.model),
            pick(&r.independent),
            pick(&r.real_sample),
            p.holdout_to_train.quantiles[k].value.show(2)
        );
    }
    let copies = |c: &CandidateReport| {
        let x = &c.privacy.synthetic_copies;
        format!(
            "{} ({} of {}; {} all-zero)",
            x.rate.show(4),
            x.copies,
            x.non_empty_rows,
            x.all_zero_rows
        )
    };
    let h = &p.holdout_copies;
    let _ = writeln!(
        out,
        "| exact copy rate | {} | {} | {} | {} ({} of {}; {} all-zero) |\n",
        copies(&r.model),
        copies(&r.independent),
        copies(&r.real_sample),
        h.rate.show(4),
        h.copies,
        h.non_empty_rows,
        h.all_zero_rows
    );
    let _ = writeln!(
        out,
        "Presence attack: the attacker holds {} training and {} held-out records and claims \
         membership when a synthetic row lies within distance d (precision 0.5 is guessing).\n",
        p.presence_records_each, p.presence_records_each
    );
    out.push_str("| d | sensitivity model | precision model | sensitivity real sample | ");
    out.push_str("precision real sample |\n|---|---|---|---|---|\n");
    for (k, point) in p.presence.iter().enumerate() {
        let s = &r.real_sample.privacy.presence[k];
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            point.distance,
            point.sensitivity.show(4),
            point.precision.show(4),
            s.sensitivity.show(4),
            s.precision.show(4)
        );
    }
    let _ = writeln!(
        out,
        "\nAttribute attack: the attacker knows {:.0}% of the codes of {} training patients and \
         infers the rest by majority vote of the k nearest synthetic rows; the same attack on \
         held-out patients shows what is inferred about anyone.\n",
        p.attribute_known_fraction * 100.0,
        p.attribute_patients
    );
    out.push_str("| k | candidate | precision | recall | held-out precision | held-out recall |\n");
    out.push_str("|---|---|---|---|---|---|\n");
    for (name, c) in [
        ("model", &r.model),
        ("independent", &r.independent),
        ("real sample", &r.real_sample),
    ] {
        for a in &c.privacy.attribute {
            let _ = writeln!(
                out,
                "| {} | {name} | {} | {} | {} | {} |",
                a.neighbours,
                a.precision.show(4),
                a.recall.show(4),
                a.holdout_precision.show(4),
                a.holdout_recall.show(4)
            );
        }
    }
    out.push('\n');
}

/// ": a, b, c" (at most 20, then "..."), or nothing for an empty list.
fn list_some(items: &[String]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let shown: Vec<&str> = items.iter().take(20).map(String::as_str).collect();
    let more = if items.len() > 20 { ", ..." } else { "" };
    format!(" ({}{more})", shown.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_needs_baselines_far_enough_apart() {
        let at = |m, i, r, scale| position(&Stat::of(m), &Stat::of(i), &Stat::of(r), scale);
        let (p, gap) = at(0.5, 0.0, 1.0, Scale::Unit);
        assert_eq!((p.get(), gap.get()), (Some(0.5), Some(MIN_GAP_ABSOLUTE)));
        // Dimension-wise r of both baselines near 1: a model at 0.95 would sit at -546.
        let (p, _) = at(0.95, 0.9989, 0.99899, Scale::Unit);
        let why = p.undefined.as_deref().unwrap();
        assert!(
            why.contains("baselines differ by only") && why.contains("1.000e-2"),
            "{why}"
        );
        assert!(at(0.95, 0.90, 0.95, Scale::Unit).0.get().is_some());
        // Data-scaled: a quarter of the larger baseline.
        let (p, gap) = at(0.0008, 0.0010, 0.0008, Scale::Data);
        assert!(
            p.get().is_none() && (gap.get().unwrap() - 2.5e-4).abs() < 1e-15,
            "{p:?}"
        );
        let (p, _) = at(0.0008, 0.0010, 0.0006, Scale::Data);
        assert!((p.get().unwrap() - 0.5).abs() < 1e-12);
        assert!(at(1.0, 0.0, 0.0, Scale::Data).0.get().is_none());
        let (p, _) = position(
            &Stat::undefined("x"),
            &Stat::of(0.0),
            &Stat::of(1.0),
            Scale::Unit,
        );
        assert!(p.undefined.unwrap().contains("model"));
        let (p, gap) = position(
            &Stat::of(0.0),
            &Stat::undefined("x"),
            &Stat::of(1.0),
            Scale::Unit,
        );
        assert!(p.get().is_none() && gap.get().is_none());
    }
}
