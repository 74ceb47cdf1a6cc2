//! Turns model outputs into Arrow columns: Bernoulli or threshold flags for binary models,
//! rounded or Poisson counts for count models, written straight into Arrow buffers.

use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Int32Array};
use arrow_buffer::{BooleanBuffer, Buffer, ScalarBuffer};
use rand::RngExt;
use rand_distr::{Distribution, Poisson};

use crate::sampler::SampleError;
use rand_chacha::ChaCha8Rng;

#[cfg(test)]
use crate::streams::RowStreams;

/// How one model output becomes one value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Draw {
    /// `true` with the output as probability: a uniform from the row's stream below it.
    Bernoulli,
    /// `true` when the output is at least the threshold; no randomness.
    Threshold(f32),
    /// The expected count rounded to the nearest integer (halves away from zero), negatives 0.
    Round,
    /// A Poisson draw from the row's stream with the expected count as mean, negatives 0.
    Poisson,
}

impl Draw {
    /// Short words for logs and file metadata.
    pub(crate) fn describe(self) -> String {
        match self {
            Draw::Bernoulli => "bernoulli".to_owned(),
            Draw::Threshold(threshold) => format!("threshold {threshold}"),
            Draw::Round => "round".to_owned(),
            Draw::Poisson => "poisson".to_owned(),
        }
    }
}

/// One batch of model outputs and where its rows' streams stand.
pub(crate) struct Outputs<'a> {
    /// Global index of the first row.
    pub(crate) first_row: u64,
    /// `rows x features`, row-major.
    pub(crate) records: &'a [f32],
    /// Each row's stream where its noise ended.
    pub(crate) streams: &'a [ChaCha8Rng],
    pub(crate) features: &'a [String],
}

impl Outputs<'_> {
    fn rows(&self) -> usize {
        self.streams.len()
    }

    /// The outputs of row `row` (batch-local), checked finite.
    fn row(&self, row: usize) -> Result<&[f32], SampleError> {
        let width = self.features.len();
        let values = &self.records[row * width..(row + 1) * width];
        // A fold without early exit vectorises; the position is looked up only on failure.
        if values
            .iter()
            .fold(true, |finite, value| finite & value.is_finite())
        {
            return Ok(values);
        }
        let code = values
            .iter()
            .position(|value| !value.is_finite())
            .unwrap_or_default();
        Err(SampleError::NonFinite {
            row: self.first_row + row as u64,
            code: self.features[code].clone(),
            value: values[code],
        })
    }
}

/// One column per code, in feature order.
pub(crate) fn columns(draw: Draw, outputs: &Outputs<'_>) -> Result<Vec<ArrayRef>, SampleError> {
    match draw {
        Draw::Bernoulli | Draw::Threshold(_) => flags(draw, outputs),
        Draw::Round | Draw::Poisson => counts(draw, outputs),
    }
}

/// Flags are drawn eight rows at a time into one byte per code, then stored column-major in a
/// single bitmap that every column's array slices: no per-value Arrow calls, and the compare
/// loop over codes is plain arithmetic the compiler vectorises.
fn flags(draw: Draw, outputs: &Outputs<'_>) -> Result<Vec<ArrayRef>, SampleError> {
    let rows = outputs.rows();
    let width = outputs.features.len();
    // Bytes per column; each column starts on a byte so it is a plain slice of the bitmap.
    let stride = rows.div_ceil(8);
    let mut bitmap = vec![0u8; width * stride];
    let mut pending = vec![0u8; width];
    let mut words = vec![0u32; width];
    for row in 0..rows {
        let probabilities = outputs.row(row)?;
        let bit = (row % 8) as u32;
        match draw {
            Draw::Threshold(threshold) => {
                for (byte, &p) in pending.iter_mut().zip(probabilities) {
                    *byte |= u8::from(p >= threshold) << bit;
                }
            }
            _ => {
                let mut rng = outputs.streams[row].clone();
                // One fill per row instead of a call per code: the same words, far faster.
                rng.fill(&mut words[..]);
                for ((byte, &p), &word) in pending.iter_mut().zip(probabilities).zip(&words) {
                    // Uniforms in [0, 1): p = 0 is never drawn, p = 1 always is.
                    *byte |= u8::from(uniform(word) < p) << bit;
                }
            }
        }
        if bit == 7 || row + 1 == rows {
            let at = row / 8;
            for (code, byte) in pending.iter_mut().enumerate() {
                bitmap[code * stride + at] = std::mem::take(byte);
            }
        }
    }
    let bitmap = Buffer::from_vec(bitmap);
    Ok((0..width)
        .map(|code| {
            let column = bitmap.slice_with_length(code * stride, stride);
            Arc::new(BooleanArray::new(BooleanBuffer::new(column, 0, rows), None)) as ArrayRef
        })
        .collect())
}

/// The uniform in [0, 1) that `rng.random::<f32>()` makes of the word: its top 24 bits.
fn uniform(word: u32) -> f32 {
    const SCALE: f32 = 1.0 / (1u32 << 24) as f32;
    (word >> 8) as f32 * SCALE
}

fn counts(draw: Draw, outputs: &Outputs<'_>) -> Result<Vec<ArrayRef>, SampleError> {
    let rows = outputs.rows();
    let mut values: Vec<Vec<i32>> = outputs.features.iter().map(|_| vec![0; rows]).collect();
    for row in 0..rows {
        let expected = outputs.row(row)?;
        let global = outputs.first_row + row as u64;
        let mut rng = (draw == Draw::Poisson).then(|| outputs.streams[row].clone());
        for (code, (column, &mean)) in values.iter_mut().zip(expected).enumerate() {
            let mean = f64::from(mean.max(0.0));
            let count = match rng.as_mut() {
                None => mean.round(),
                Some(_) if mean == 0.0 => 0.0,
                Some(rng) => Poisson::new(mean)
                    .map_err(|_| SampleError::CountTooLarge {
                        row: global,
                        code: outputs.features[code].clone(),
                        value: mean,
                    })?
                    .sample(rng),
            };
            if count > f64::from(i32::MAX) {
                return Err(SampleError::CountTooLarge {
                    row: global,
                    code: outputs.features[code].clone(),
                    value: count,
                });
            }
            column[row] = count as i32;
        }
    }
    Ok(values
        .into_iter()
        .map(|column| Arc::new(Int32Array::new(ScalarBuffer::from(column), None)) as ArrayRef)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;

    fn outputs<'a>(
        records: &'a [f32],
        streams: &'a [ChaCha8Rng],
        names: &'a [String],
    ) -> Outputs<'a> {
        Outputs {
            first_row: 10,
            records,
            streams,
            features: names,
        }
    }

    /// The streams of batch rows from 10 on, as the sampler hands them over.
    fn streams(rows: u64) -> Vec<ChaCha8Rng> {
        let streams = RowStreams::new(1);
        (10..10 + rows).map(|row| streams.row(row)).collect()
    }

    #[test]
    fn bulk_uniforms_are_the_ones_random_f32_draws() {
        let streams = RowStreams::new(5);
        let mut one_by_one = streams.resume(3, 40);
        let mut bulk = streams.resume(3, 40);
        let mut words = vec![0u32; 1000];
        bulk.fill(&mut words[..]);
        for &word in &words {
            assert_eq!(uniform(word), one_by_one.random::<f32>());
        }
        assert_eq!(bulk.random::<u32>(), one_by_one.random::<u32>());
    }

    #[test]
    fn rounding_takes_negatives_as_zero_and_rounds_halves_up() {
        let names = vec!["a".to_owned(), "b".to_owned()];
        let records = [-0.7, 2.5, 0.49, 7.51];
        let streams = streams(2);
        let built = columns(Draw::Round, &outputs(&records, &streams, &names)).unwrap();
        let a = built[0].as_any().downcast_ref::<Int32Array>().unwrap();
        let b = built[1].as_any().downcast_ref::<Int32Array>().unwrap();
        assert_eq!(a.values().as_ref(), &[0, 0]);
        assert_eq!(b.values().as_ref(), &[3, 8]);
    }

    #[test]
    fn threshold_compares_at_least() {
        let names = vec!["a".to_owned()];
        let records = [0.5, 0.49, 0.51];
        let streams = streams(3);
        let built = columns(Draw::Threshold(0.5), &outputs(&records, &streams, &names)).unwrap();
        let flags = built[0].as_any().downcast_ref::<BooleanArray>().unwrap();
        assert_eq!(
            flags.iter().collect::<Vec<_>>(),
            [Some(true), Some(false), Some(true)]
        );
        assert_eq!(flags.null_count(), 0);
    }

    #[test]
    fn a_non_finite_output_names_its_row_and_code() {
        let names = vec!["a".to_owned(), "D_250".to_owned()];
        let records = [0.1, 0.2, 0.3, f32::NAN];
        let streams = streams(2);
        let error = columns(Draw::Bernoulli, &outputs(&records, &streams, &names))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("row 11") && error.contains("`D_250`"),
            "{error}"
        );
    }

    #[test]
    fn counts_past_the_column_range_are_refused() {
        let names = vec!["a".to_owned()];
        let records = [3.0e9];
        let streams = streams(1);
        let error = columns(Draw::Round, &outputs(&records, &streams, &names)).unwrap_err();
        assert!(
            matches!(error, SampleError::CountTooLarge { row: 10, .. }),
            "{error}"
        );
    }
}
