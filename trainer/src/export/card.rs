//! The bundle's `MODEL_CARD.md`: where the model came from and how close it comes to its data.

use std::fmt::Write;
use std::time::Duration;

use candle_core::DType;
use medgan_sample::DataType;

use super::onnx::{GraphKind, OPSET};
use super::verify::seeded_noise;
use super::{ExportError, ExportInput, PRODUCER_NAME, PRODUCER_VERSION, ReferenceForward};
use crate::evaluate::stats::pearson;

/// Noise rows the card's synthetic prevalences are averaged over.
pub const CARD_SAMPLE_ROWS: usize = 10_000;
/// Seed of the card's noise, so the same model always gets the same card.
pub const CARD_SEED: u64 = 2017;
/// Codes shown in the card's real-versus-synthetic table, the most frequent first.
pub const CARD_TOP_CODES: usize = 20;
/// Rows per forward pass while averaging, to bound memory on wide models.
const CARD_BATCH: usize = 1000;

/// Per code, the mean of the reference's records over [`CARD_SAMPLE_ROWS`] seeded noise rows:
/// the expected prevalence (binary) or the expected count (count data).
pub(crate) fn synthetic_means(
    reference: &dyn ReferenceForward,
    noise_dim: usize,
    features: usize,
) -> Result<Vec<f64>, ExportError> {
    let run = || -> candle_core::Result<Vec<f64>> {
        let mut sums = vec![0.0f64; features];
        let mut done = 0;
        for round in 0.. {
            if done >= CARD_SAMPLE_ROWS {
                break;
            }
            let rows = CARD_BATCH.min(CARD_SAMPLE_ROWS - done);
            let noise = seeded_noise(CARD_SEED.wrapping_add(round), rows, noise_dim)?;
            let records = reference.decoder(&reference.generator(&noise)?)?;
            let column_sums = records.to_dtype(DType::F64)?.sum(0)?.to_vec1::<f64>()?;
            if column_sums.len() != features {
                return Err(candle_core::Error::Msg(format!(
                    "the reference gives {} columns for {features} features",
                    column_sums.len()
                )));
            }
            sums.iter_mut()
                .zip(&column_sums)
                .for_each(|(sum, col)| *sum += col);
            done += rows;
        }
        Ok(sums
            .into_iter()
            .map(|sum| sum / CARD_SAMPLE_ROWS as f64)
            .collect())
    };
    run().map_err(ExportError::candle("cannot sample the model for its card"))
}

fn rmse(xs: &[f64], ys: &[f64]) -> f64 {
    let squares: f64 = xs.iter().zip(ys).map(|(x, y)| (x - y).powi(2)).sum();
    (squares / xs.len().max(1) as f64).sqrt()
}

/// `1 h 2 min 5 s`, dropping leading zero units.
fn human_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (h, min, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, min) {
        (0, 0) => format!("{:.1} s", duration.as_secs_f64()),
        (0, _) => format!("{min} min {s} s"),
        _ => format!("{h} h {min} min {s} s"),
    }
}

/// Makes a code name safe inside a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The card's Markdown.
pub(crate) fn render(bundle_name: &str, input: &ExportInput, synthetic: &[f64]) -> String {
    let arch = input.architecture;
    let data = &input.training_data;
    let run = &input.training_run;
    let real = &input.card.real_prevalence;
    let (records, real_label, synthetic_label) = match arch.data_type {
        DataType::Binary => (
            "0/1 presence flags",
            "real prevalence",
            "synthetic mean probability",
        ),
        DataType::Count => (
            "non-negative counts",
            "real mean count",
            "synthetic mean count",
        ),
    };
    let mut md = String::new();
    // Writing into a String cannot fail, so the results of writeln! are ignored below.
    let _ = writeln!(md, "# medGAN model `{bundle_name}`\n");
    let _ = writeln!(
        md,
        "A medGAN generator (Choi et al. 2017) of synthetic patient records: {records} for {} \
         codes per patient. Written by {PRODUCER_NAME} {PRODUCER_VERSION}.\n",
        input.features.len()
    );

    let _ = writeln!(md, "## Training data\n");
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| source | {} |", cell(&data.source));
    let _ = writeln!(md, "| patients | {} |", data.patients);
    let _ = writeln!(md, "| codes | {} |", data.codes);
    let _ = writeln!(
        md,
        "| density | {:.4} % of cells non-zero |\n",
        data.density * 100.0
    );
    let _ = writeln!(
        md,
        "### Credit and licence\n\n{}\n",
        input.card.data_credit.trim_end()
    );

    let _ = writeln!(md, "## Model\n");
    let _ = writeln!(md, "- data type: {}", arch.data_type);
    let _ = writeln!(
        md,
        "- noise: {} standard-normal values per record",
        arch.noise_dim
    );
    let _ = writeln!(md, "- generator: residual blocks {:?}", arch.generator_dims);
    let _ = writeln!(
        md,
        "- autoencoder embedding widths: {:?}",
        arch.embedding_dims
    );
    let _ = writeln!(
        md,
        "- discriminator hidden widths: {:?}",
        arch.discriminator_dims
    );
    let graphs: Vec<_> = GraphKind::ALL
        .iter()
        .map(|k| format!("`{}`", k.file_name()))
        .collect();
    let _ = writeln!(
        md,
        "- graphs: {} (ONNX opset {OPSET}, batch norm folded into the linear layers)\n",
        graphs.join(", ")
    );

    let _ = writeln!(md, "## Training run\n");
    let _ = writeln!(md, "```sh\n{}\n```\n", input.card.command.trim());
    let _ = writeln!(
        md,
        "- training time: {}",
        human_duration(input.card.training_time)
    );
    let _ = writeln!(md, "- autoencoder epochs: {}", run.autoencoder_epochs);
    let _ = writeln!(md, "- GAN epochs: {}", run.gan_epochs);
    let _ = writeln!(md, "- seed: {}\n", run.seed);

    let _ = writeln!(md, "## Real versus synthetic\n");
    let _ = writeln!(
        md,
        "Synthetic values are the means of the model's output over {CARD_SAMPLE_ROWS} noise rows \
         (ChaCha8 seed {CARD_SEED}), before any Bernoulli draw. Over all {} codes: {}, \
         RMSE = {:.5}.\n",
        real.len(),
        match pearson(real, synthetic).get() {
            Some(r) => format!("Pearson r = {r:.4}"),
            None => "Pearson r undefined (one side is constant)".to_string(),
        },
        rmse(real, synthetic)
    );
    let mut order: Vec<usize> = (0..real.len()).collect();
    order.sort_by(|&a, &b| real[b].total_cmp(&real[a]).then(a.cmp(&b)));
    let shown = order.len().min(CARD_TOP_CODES);
    let _ = writeln!(
        md,
        "The {shown} most frequent codes in the training data:\n"
    );
    let _ = writeln!(
        md,
        "| rank | code | {real_label} | {synthetic_label} | difference |"
    );
    let _ = writeln!(md, "|---:|---|---:|---:|---:|");
    for (rank, &j) in order.iter().take(shown).enumerate() {
        let _ = writeln!(
            md,
            "| {} | {} | {:.4} | {:.4} | {:+.4} |",
            rank + 1,
            cell(&input.features[j]),
            real[j],
            synthetic[j],
            synthetic[j] - real[j]
        );
    }
    if !input.card.appendix.trim().is_empty() {
        let _ = writeln!(md, "\n{}", input.card.appendix.trim_end());
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::testing::Fixture;

    #[test]
    fn pearson_and_rmse_match_hand_computed_values() {
        let xs = [1.0, 2.0, 3.0, 4.0];
        assert!((pearson(&xs, &[2.0, 4.0, 6.0, 8.0]).get().unwrap() - 1.0).abs() < 1e-12);
        assert!((pearson(&xs, &[4.0, 3.0, 2.0, 1.0]).get().unwrap() + 1.0).abs() < 1e-12);
        assert_eq!(pearson(&xs, &[5.0; 4]).get(), None);
        // Differences 1, 0, -1, 2: mean square 6 / 4.
        assert!((rmse(&xs, &[0.0, 2.0, 4.0, 2.0]) - 1.5f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(Duration::from_secs(3725)), "1 h 2 min 5 s");
        assert_eq!(human_duration(Duration::from_secs(125)), "2 min 5 s");
        assert_eq!(human_duration(Duration::from_millis(4200)), "4.2 s");
    }

    #[test]
    fn appendix_ends_the_card_verbatim() {
        let fixture = Fixture::new(DataType::Binary, 21);
        let mut input = fixture.input();
        let synthetic = synthetic_means(&fixture.reference(), 16, 40).unwrap();
        assert!(!render("m", &input, &synthetic).contains("## Evaluation"));
        input.card.appendix = "## Evaluation\n\n| detection AUC | 0.61 |\n".into();
        let md = render("m", &input, &synthetic);
        assert!(
            md.trim_end()
                .ends_with("## Evaluation\n\n| detection AUC | 0.61 |"),
            "{md}"
        );
    }

    #[test]
    fn card_names_data_command_and_top_codes() {
        let fixture = Fixture::new(DataType::Binary, 21);
        let input = fixture.input();
        let synthetic = synthetic_means(&fixture.reference(), 16, 40).unwrap();
        assert!(synthetic.iter().all(|p| (0.0..=1.0).contains(p)));
        let md = render("test-model", &input, &synthetic);
        assert!(md.contains("# medGAN model `test-model`"));
        assert!(md.contains("| patients | 1234 |"));
        assert!(md.contains("6.2500 %"));
        assert!(md.contains(&input.card.data_credit));
        assert!(md.contains(&input.card.command));
        assert!(md.contains("1 h 2 min 5 s"));
        // The fixture's prevalence falls with the code index: codes 0..20 fill the table.
        let rows: Vec<_> = md
            .lines()
            .filter(|l| l.starts_with("| ") && l.contains("code_"))
            .collect();
        assert_eq!(rows.len(), CARD_TOP_CODES);
        assert!(
            rows[0].starts_with("| 1 | code_000 | 0.9000 |"),
            "{}",
            rows[0]
        );
        assert!(rows[19].starts_with("| 20 | code_019 |"), "{}", rows[19]);
        let expected = format!("{:.4}", synthetic[0]);
        assert!(rows[0].contains(&expected));
        assert!(md.contains("Pearson r = ") && md.contains("RMSE = "));
    }
}
