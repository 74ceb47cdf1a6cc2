//! The autoencoder's binary reconstruction loss as one pass over the decoder's logits.
//!
//! medGAN's loss is `-sum(x log(p + eps) + (1 - x) log(1 - p + eps))` per record, with
//! `p = sigmoid(z)`. Written with tensor operations it takes a dozen passes over the batch
//! forward and as many backward, each allocating a batch-sized tensor, which costs more than
//! the decoder's matrix product itself. Here the forward pass computes `p` and the loss of each
//! cell in one loop, and the backward pass the exact derivative of the same expression,
//! `(-x / (p + eps) + (1 - x) / (1 - p + eps)) p (1 - p)`, in another.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

use super::autoencoder::LOG_EPS;
use super::math::sigmoid;
use super::parallel::map_blocks;

/// Fewest cells per thread: below this a second thread costs more than it saves.
const MIN_CELLS_PER_THREAD: usize = 1 << 14;

/// Binary cross-entropy of `sigmoid(logits)` against `target` (both `[rows, codes]`), summed
/// over codes: `[rows]`. Differentiable in `logits`; `target` is data.
pub(crate) fn sigmoid_cross_entropy(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    if !logits.device().is_cpu() {
        let p = candle_nn::ops::sigmoid(logits)?;
        let log_p = (&p + LOG_EPS)?.log()?;
        let log_not_p = (p.affine(-1.0, 1.0)? + LOG_EPS)?.log()?;
        let not_target = target.affine(-1.0, 1.0)?;
        return ((target * log_p)? + (not_target * log_not_p)?)?
            .sum(1)?
            .neg();
    }
    let op = SigmoidCrossEntropy {
        probabilities: Mutex::new(None),
    };
    logits.apply_op2(&target.detach(), op)
}

/// The loss, keeping the forward pass's probabilities for the backward pass, which would
/// otherwise compute the same `exp` of every cell again.
struct SigmoidCrossEntropy {
    probabilities: Mutex<Option<Vec<f32>>>,
}

/// `sigmoid` of every logit, split between threads in blocks of whole rows of `codes`.
fn sigmoid_all(zs: &[f32], codes: usize) -> Vec<f32> {
    map_blocks(zs.len(), codes, MIN_CELLS_PER_THREAD, |cells| {
        zs[cells].iter().map(|&z| sigmoid(z))
    })
}

/// `sum(x log(p + eps) + (1 - x) log(1 - p + eps))` over one record's codes.
fn row_log_likelihood(p_row: &[f32], x_row: &[f32]) -> f32 {
    let eps = LOG_EPS as f32;
    p_row
        .iter()
        .zip(x_row)
        .map(|(&p, &x)| {
            // For a 0/1 target one of the two terms is exactly zero: one logarithm.
            if x == 1.0 {
                (p + eps).ln()
            } else if x == 0.0 {
                (1.0 - p + eps).ln()
            } else {
                x * (p + eps).ln() + (1.0 - x) * (1.0 - p + eps).ln()
            }
        })
        .sum()
}

/// The two operands as contiguous slices with their shared `[rows, codes]`.
fn operands<'a>(
    logits: &'a CpuStorage,
    logits_layout: &Layout,
    target: &'a CpuStorage,
    target_layout: &Layout,
) -> Result<(&'a [f32], &'a [f32], usize, usize)> {
    let (Some((zs, ze)), Some((ts, te))) = (
        logits_layout.contiguous_offsets(),
        target_layout.contiguous_offsets(),
    ) else {
        candle_core::bail!("the cross-entropy operands must be contiguous");
    };
    let &[rows, codes] = logits_layout.dims() else {
        candle_core::bail!("the cross-entropy logits must be a matrix");
    };
    if target_layout.dims() != logits_layout.dims() {
        candle_core::bail!(
            "targets {:?} do not match logits {:?}",
            target_layout.dims(),
            logits_layout.dims()
        );
    }
    Ok((
        &logits.as_slice::<f32>()?[zs..ze],
        &target.as_slice::<f32>()?[ts..te],
        rows,
        codes,
    ))
}

impl CustomOp2 for SigmoidCrossEntropy {
    fn name(&self) -> &'static str {
        "medgan-sigmoid-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        logits: &CpuStorage,
        logits_layout: &Layout,
        target: &CpuStorage,
        target_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (zs, xs, rows, codes) = operands(logits, logits_layout, target, target_layout)?;
        let probabilities = sigmoid_all(zs, codes);
        let (p, codes) = (&probabilities, codes.max(1));
        let loss_of_rows = |rows: std::ops::Range<usize>| {
            let cells = rows.start * codes..rows.end * codes;
            p[cells.clone()]
                .chunks(codes)
                .zip(xs[cells].chunks(codes))
                .map(|(p_row, x_row)| -row_log_likelihood(p_row, x_row))
        };
        // Split by rows, each thread getting at least MIN_CELLS_PER_THREAD cells.
        let losses = map_blocks(rows, 1, MIN_CELLS_PER_THREAD.div_ceil(codes), loss_of_rows);
        if let Ok(mut slot) = self.probabilities.lock() {
            *slot = Some(probabilities);
        }
        Ok((CpuStorage::F32(losses), Shape::from(rows)))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        target: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let grad_logits = logits.apply_op2_no_bwd(
            &target.contiguous()?,
            &CrossEntropyGradient {
                upstream: grad.to_vec1::<f32>()?,
                probabilities: self
                    .probabilities
                    .lock()
                    .ok()
                    .and_then(|mut slot| slot.take()),
            },
        )?;
        Ok((Some(grad_logits), None))
    }
}

/// `d loss_row / d z` times the upstream gradient of each row's loss.
struct CrossEntropyGradient {
    upstream: Vec<f32>,
    /// `sigmoid(z)` of every cell, from the forward pass; computed again when absent.
    probabilities: Option<Vec<f32>>,
}

impl CustomOp2 for CrossEntropyGradient {
    fn name(&self) -> &'static str {
        "medgan-sigmoid-cross-entropy-gradient"
    }

    fn cpu_fwd(
        &self,
        logits: &CpuStorage,
        logits_layout: &Layout,
        target: &CpuStorage,
        target_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (zs, xs, rows, codes) = operands(logits, logits_layout, target, target_layout)?;
        if self.upstream.len() != rows {
            candle_core::bail!("{} row gradients for {rows} rows", self.upstream.len());
        }
        let eps = LOG_EPS as f32;
        let probabilities = match &self.probabilities {
            Some(cached) if cached.len() == zs.len() => std::borrow::Cow::Borrowed(cached),
            _ => std::borrow::Cow::Owned(sigmoid_all(zs, codes)),
        };
        let (p, upstream, width) = (&probabilities, &self.upstream, codes.max(1));
        let gradient_of_cells = |cells: std::ops::Range<usize>| {
            // Blocks are whole rows, so `cells` starts a row.
            let first_row = cells.start / width;
            p[cells.clone()]
                .chunks(width)
                .zip(xs[cells].chunks(width))
                .zip(&upstream[first_row..])
                .flat_map(move |((p_row, x_row), &g)| {
                    p_row.iter().zip(x_row).map(move |(&p, &x)| {
                        let d_p = if x == 1.0 {
                            -1.0 / (p + eps)
                        } else if x == 0.0 {
                            1.0 / (1.0 - p + eps)
                        } else {
                            -x / (p + eps) + (1.0 - x) / (1.0 - p + eps)
                        };
                        g * d_p * (p * (1.0 - p))
                    })
                })
        };
        let out = map_blocks(rows * codes, width, MIN_CELLS_PER_THREAD, gradient_of_cells);
        Ok((CpuStorage::F32(out), Shape::from((rows, codes))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Loss and gradient equal the tensor formulation, saturated logits included.
    #[test]
    fn fused_loss_matches_the_tensor_formulation() {
        let device = Device::Cpu;
        let logits = Var::new(
            &[[0.3f32, -2.0, 40.0, -40.0], [1.5, 0.0, -0.7, 8.0]],
            &device,
        )
        .unwrap();
        // 0/1 targets take the one-logarithm path, 0.5 the general one.
        let target = Tensor::new(&[[1f32, 0.0, 1.0, 1.0], [0.0, 1.0, 0.5, 0.0]], &device).unwrap();
        let weights = Tensor::new(&[0.25f32, 2.0], &device).unwrap();

        let p = candle_nn::ops::sigmoid(&logits).unwrap();
        let want =
            super::super::autoencoder::per_row_loss(medgan_sample::DataType::Binary, &target, &p)
                .unwrap();
        let got = sigmoid_cross_entropy(&logits, &target).unwrap();
        let (w, g) = (
            want.to_vec1::<f32>().unwrap(),
            got.to_vec1::<f32>().unwrap(),
        );
        for (a, b) in w.iter().zip(&g) {
            assert!((a - b).abs() <= 1e-4 * a.abs().max(1.0), "{w:?} vs {g:?}");
        }
        // A saturated wrong answer costs -ln(eps), finite.
        assert!(g[0] > 27.0 && g[0].is_finite());

        let grad = |loss: &Tensor| {
            let total = (loss * &weights).unwrap().sum_all().unwrap();
            total
                .backward()
                .unwrap()
                .get(&logits)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap()
        };
        let (want, got) = (grad(&want), grad(&got));
        for (a, b) in want.iter().flatten().zip(got.iter().flatten()) {
            assert!(
                (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                "{want:?} vs {got:?}"
            );
        }
    }

    /// The backward pass gives the same bits whether it reuses the forward pass's
    /// probabilities or computes them again.
    #[test]
    fn cached_and_recomputed_probabilities_give_the_same_gradient() {
        let device = Device::Cpu;
        let logits = Tensor::new(&[[0.3f32, -2.0, 9.0], [1.5, 0.0, -0.7]], &device).unwrap();
        let target = Tensor::new(&[[1f32, 0.0, 1.0], [0.0, 1.0, 0.0]], &device).unwrap();
        let values: Vec<f32> = logits.flatten_all().unwrap().to_vec1().unwrap();
        let cached = values.iter().map(|&z| sigmoid(z)).collect();
        let gradient = |probabilities| {
            let op = CrossEntropyGradient {
                upstream: vec![0.5, -2.0],
                probabilities,
            };
            let out = logits.apply_op2_no_bwd(&target, &op).unwrap();
            out.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        assert_eq!(gradient(Some(cached)), gradient(None));
    }
}
