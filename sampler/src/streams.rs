//! Per-row random streams: everything random about row `i` comes from `(seed, i)` alone.
//!
//! Row `i` reads ChaCha8 keyed by `seed_from_u64(seed)` on stream number `i`: first its
//! `noise_dim` standard normals, then its per-code draws (Bernoulli uniforms or Poisson counts).
//! No row shares a stream with another, so batch size, sharding or threads never change a row.

use std::ops::Range;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// The streams of one seed.
#[derive(Debug, Clone)]
pub(crate) struct RowStreams {
    base: ChaCha8Rng,
}

impl RowStreams {
    pub(crate) fn new(seed: u64) -> RowStreams {
        RowStreams {
            base: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Row `row`'s stream from its start.
    pub(crate) fn row(&self, row: u64) -> ChaCha8Rng {
        let mut rng = self.base.clone();
        rng.set_stream(row);
        rng
    }

    /// Row `row`'s stream from word `position`.
    #[cfg(test)]
    pub(crate) fn resume(&self, row: u64, position: u128) -> ChaCha8Rng {
        let mut rng = self.row(row);
        rng.set_word_pos(position);
        rng
    }

    /// Replaces `noise` with the noise of `rows` (row-major, `noise_dim` per row) and `after`
    /// with each row's stream where its noise ends, for the draws that follow the model. The
    /// streams themselves are kept (a few hundred bytes each), not their positions: seeking
    /// back would set up each stream and recompute its current block a second time.
    pub(crate) fn fill_noise(
        &self,
        rows: Range<u64>,
        noise_dim: usize,
        noise: &mut Vec<f32>,
        after: &mut Vec<ChaCha8Rng>,
    ) {
        noise.clear();
        after.clear();
        for row in rows {
            let mut rng = self.row(row);
            noise.extend((0..noise_dim).map(|_| -> f32 { StandardNormal.sample(&mut rng) }));
            after.push(rng);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngExt;

    #[test]
    fn resuming_continues_the_stream_exactly() {
        let streams = RowStreams::new(42);
        let (mut noise, mut after) = (Vec::new(), Vec::new());
        streams.fill_noise(5..8, 13, &mut noise, &mut after);
        for (offset, row) in (5..8u64).enumerate() {
            let mut continuous = streams.row(row);
            let again: Vec<f32> = (0..13)
                .map(|_| StandardNormal.sample(&mut continuous))
                .collect();
            assert_eq!(again, noise[offset * 13..(offset + 1) * 13]);
            let mut resumed = streams.resume(row, after[offset].get_word_pos());
            let kept = &mut after[offset];
            for _ in 0..300 {
                let word = continuous.random::<u32>();
                assert_eq!(word, resumed.random::<u32>());
                assert_eq!(word, kept.random::<u32>());
            }
        }
    }

    #[test]
    fn rows_do_not_depend_on_their_neighbours() {
        let streams = RowStreams::new(7);
        let (mut alone, mut in_batch, mut after) = (Vec::new(), Vec::new(), Vec::new());
        streams.fill_noise(100..101, 4, &mut alone, &mut after);
        streams.fill_noise(90..110, 4, &mut in_batch, &mut after);
        assert_eq!(alone, in_batch[40..44]);
        let other_seed = RowStreams::new(8);
        let mut different = Vec::new();
        other_seed.fill_noise(100..101, 4, &mut different, &mut after);
        assert_ne!(alone, different);
    }
}
