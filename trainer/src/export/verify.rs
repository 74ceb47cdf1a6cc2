//! Self-check of written graphs: candle-onnx must reproduce the reference forward pass.
//!
//! Every graph is evaluated on seeded noise at several batch sizes and compared with the
//! trainer's own networks; a handful of rows must also come out bit-identical alone and inside a
//! large batch, because the sampler's determinism relies on rows not depending on their batch.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use candle_onnx::onnx::ModelProto;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::onnx::GraphKind;
use super::{ExportError, ReferenceForward};

/// Largest allowed difference between a graph and the reference, per unit of magnitude of the
/// reference value (so absolute for values in `[-1, 1]`, relative past that).
pub const TOLERANCE: f32 = 1e-5;
/// Batch sizes every graph is checked at.
pub const CHECK_BATCHES: [usize; 3] = [1, 7, 1000];
/// Seed of the check noise; each batch size and the batch-independence probe derive their own.
pub const CHECK_SEED: u64 = 0x6d65_6467_616e;
/// Rows of the batch-independence probe, and where they sit inside the large batch.
const PROBE_ROWS: usize = 5;
const PROBE_BATCH: usize = 1000;
const PROBE_OFFSET: usize = 500;

/// What one graph's check found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GraphCheck {
    pub kind: GraphKind,
    /// Largest absolute difference from the reference over all checked batches.
    pub max_abs_diff: f32,
}

/// `[rows, cols]` standard-normal f32 noise from a ChaCha8 stream keyed by `seed`.
pub fn seeded_noise(seed: u64, rows: usize, cols: usize) -> candle_core::Result<Tensor> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let values: Vec<f32> = (0..rows * cols)
        .map(|_| rng.sample(StandardNormal))
        .collect();
    Tensor::from_vec(values, (rows, cols), &Device::Cpu)
}

/// Evaluates the graph of `kind` on one input batch with candle-onnx.
pub fn run_graph(
    model: &ModelProto,
    kind: GraphKind,
    input: &Tensor,
) -> candle_core::Result<Tensor> {
    let inputs = HashMap::from([(kind.input_name().to_string(), input.clone())]);
    let mut outputs = candle_onnx::simple_eval(model, inputs)?;
    outputs.remove(kind.output_name()).ok_or_else(|| {
        candle_core::Error::Msg(format!("the graph has no output `{}`", kind.output_name()))
    })
}

/// Checks the graph of `kind` against `reference` at every [`CHECK_BATCHES`] size, then checks
/// that rows do not depend on the batch around them.
pub fn check_graph(
    model: &ModelProto,
    kind: GraphKind,
    noise_dim: usize,
    reference: &dyn ReferenceForward,
) -> Result<GraphCheck, ExportError> {
    let graph = kind.file_name();
    let mut worst = 0.0f32;
    for (round, &batch) in CHECK_BATCHES.iter().enumerate() {
        let context = || format!("cannot check {graph} at batch {batch}");
        let noise = seeded_noise(CHECK_SEED + round as u64, batch, noise_dim)
            .map_err(ExportError::candle(context()))?;
        let (input, expected) =
            reference_pair(kind, &noise, reference).map_err(ExportError::candle(context()))?;
        let actual = run_graph(model, kind, &input).map_err(ExportError::candle(context()))?;
        let (max_abs_diff, within) =
            compare(&actual, &expected).map_err(ExportError::candle(context()))?;
        if !within {
            return Err(ExportError::GraphMismatch {
                graph: graph.to_string(),
                batch,
                max_abs_diff,
                tolerance: TOLERANCE,
            });
        }
        worst = worst.max(max_abs_diff);
    }
    check_batch_independence(model, kind, noise_dim, reference)?;
    Ok(GraphCheck {
        kind,
        max_abs_diff: worst,
    })
}

/// The same [`PROBE_ROWS`] rows, alone and at [`PROBE_OFFSET`] in a batch of [`PROBE_BATCH`],
/// must give bit-identical outputs.
fn check_batch_independence(
    model: &ModelProto,
    kind: GraphKind,
    noise_dim: usize,
    reference: &dyn ReferenceForward,
) -> Result<(), ExportError> {
    let graph = kind.file_name();
    let context = || format!("cannot check that {graph} treats rows independently");
    let probe_seed = CHECK_SEED + CHECK_BATCHES.len() as u64;
    let run = || -> candle_core::Result<f32> {
        let probe = seeded_noise(probe_seed, PROBE_ROWS, noise_dim)?;
        let filler = seeded_noise(probe_seed + 1, PROBE_BATCH - PROBE_ROWS, noise_dim)?;
        let before = filler.narrow(0, 0, PROBE_OFFSET)?;
        let after = filler.narrow(0, PROBE_OFFSET, PROBE_BATCH - PROBE_ROWS - PROBE_OFFSET)?;
        let batch = Tensor::cat(&[&before, &probe, &after], 0)?;
        let (batch_input, _) = reference_pair(kind, &batch, reference)?;
        // Cut the probe out of the batch input, so both runs see the very same input bits.
        let probe_input = batch_input.narrow(0, PROBE_OFFSET, PROBE_ROWS)?;
        let alone = run_graph(model, kind, &probe_input)?;
        let inside = run_graph(model, kind, &batch_input)?.narrow(0, PROBE_OFFSET, PROBE_ROWS)?;
        let alone = alone.flatten_all()?.to_vec1::<f32>()?;
        let inside = inside.flatten_all()?.to_vec1::<f32>()?;
        // Bit equality, not closeness: NaN or -0.0 against 0.0 counts as a difference.
        Ok(alone
            .iter()
            .zip(&inside)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .map(|(a, b)| {
                if (a - b).is_nan() {
                    f32::INFINITY
                } else {
                    (a - b).abs()
                }
            })
            .fold(0.0, f32::max)
            .max(if alone.len() == inside.len() {
                0.0
            } else {
                f32::INFINITY
            }))
    };
    let max_abs_diff = run().map_err(ExportError::candle(context()))?;
    if max_abs_diff != 0.0 {
        return Err(ExportError::BatchDependence {
            graph: graph.to_string(),
            batch: PROBE_BATCH,
            max_abs_diff,
        });
    }
    Ok(())
}

/// The graph input for `noise` and the reference's output for it.
fn reference_pair(
    kind: GraphKind,
    noise: &Tensor,
    reference: &dyn ReferenceForward,
) -> candle_core::Result<(Tensor, Tensor)> {
    match kind {
        GraphKind::Sampler => Ok((
            noise.clone(),
            reference.decoder(&reference.generator(noise)?)?,
        )),
        GraphKind::Generator => Ok((noise.clone(), reference.generator(noise)?)),
        GraphKind::Decoder => {
            // The decoder is checked on the embeddings it will really see.
            let embedding = reference.generator(noise)?;
            let records = reference.decoder(&embedding)?;
            Ok((embedding, records))
        }
    }
}

/// Largest absolute difference, and whether every element is within [`TOLERANCE`] scaled by
/// the reference's magnitude. Shapes that differ, and NaN anywhere, are never within.
fn compare(actual: &Tensor, expected: &Tensor) -> candle_core::Result<(f32, bool)> {
    if actual.dims() != expected.dims() {
        return Err(candle_core::Error::Msg(format!(
            "the graph gives shape {:?} where the reference gives {:?}",
            actual.dims(),
            expected.dims()
        )));
    }
    let actual = actual.flatten_all()?.to_vec1::<f32>()?;
    let expected = expected
        .to_device(&Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let mut max_abs_diff = 0.0f32;
    let mut within = true;
    for (a, e) in actual.iter().zip(&expected) {
        let diff = (a - e).abs();
        within &= diff <= TOLERANCE * e.abs().max(1.0);
        max_abs_diff = if diff.is_nan() {
            f32::NAN
        } else {
            max_abs_diff.max(diff)
        };
    }
    Ok((max_abs_diff, within))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::fold::fold_networks;
    use crate::export::onnx::build_model;
    use crate::export::testing::{Fixture, max_abs_diff};
    use medgan_sample::DataType;

    #[test]
    fn every_graph_matches_the_reference_at_batches_1_7_1000() {
        for data_type in [DataType::Binary, DataType::Count] {
            let fixture = Fixture::new(data_type, 11);
            let reference = fixture.reference();
            let nets = fold_networks(&fixture.arch, &fixture.weights).unwrap();
            for kind in GraphKind::ALL {
                let model = build_model(kind, &nets).unwrap();
                let check = check_graph(&model, kind, fixture.arch.noise_dim, &reference).unwrap();
                assert!(
                    check.max_abs_diff < TOLERANCE,
                    "{kind:?}: {}",
                    check.max_abs_diff
                );
            }
        }
    }

    #[test]
    fn fused_graph_output_is_non_trivial_and_in_range() {
        let fixture = Fixture::new(DataType::Binary, 12);
        let nets = fold_networks(&fixture.arch, &fixture.weights).unwrap();
        let model = build_model(GraphKind::Sampler, &nets).unwrap();
        let noise = seeded_noise(5, 7, fixture.arch.noise_dim).unwrap();
        let records = run_graph(&model, GraphKind::Sampler, &noise).unwrap();
        assert_eq!(records.dims(), [7, fixture.arch.n_features]);
        let values = records.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(values.iter().all(|&p| (0.0..=1.0).contains(&p)));
        // Different noise must give different records, or the check proves nothing.
        let other = run_graph(&model, GraphKind::Sampler, &seeded_noise(6, 7, 16).unwrap());
        assert!(max_abs_diff(&records, &other.unwrap()) > 1e-2);
    }

    #[test]
    fn a_disagreeing_reference_is_reported_with_graph_and_difference() {
        let fixture = Fixture::new(DataType::Count, 13);
        let mut reference = fixture.reference();
        reference.record_offset = 1e-3;
        let nets = fold_networks(&fixture.arch, &fixture.weights).unwrap();
        let model = build_model(GraphKind::Sampler, &nets).unwrap();
        let err = check_graph(&model, GraphKind::Sampler, 16, &reference).unwrap_err();
        match &err {
            ExportError::GraphMismatch {
                graph,
                batch,
                max_abs_diff,
                ..
            } => {
                assert_eq!((graph.as_str(), *batch), ("sampler.onnx", 1));
                assert!((max_abs_diff - 1e-3).abs() < 1e-4, "{max_abs_diff}");
            }
            other => panic!("unexpected error {other}"),
        }
        assert!(err.to_string().contains("sampler.onnx"));
    }

    #[test]
    fn noise_is_seeded_and_standard_normal() {
        let a = seeded_noise(9, 2000, 10).unwrap();
        assert_eq!(max_abs_diff(&a, &seeded_noise(9, 2000, 10).unwrap()), 0.0);
        assert!(max_abs_diff(&a, &seeded_noise(10, 2000, 10).unwrap()) > 0.5);
        let values = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mean = values.iter().sum::<f32>() / values.len() as f32;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / values.len() as f32;
        assert!(
            mean.abs() < 0.05 && (var - 1.0).abs() < 0.05,
            "mean {mean} var {var}"
        );
    }
}
