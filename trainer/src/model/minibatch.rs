//! The discriminator's first layer, `[x, mean(x)] W^T + b`, and sparse first layers, each as
//! one operation on the CPU.
//!
//! medGAN's minibatch averaging shows the discriminator every record beside its batch mean:
//! `2F` inputs for `F` codes. With `W = [W_x W_m]` the layer is `x W_x^T + (mean(x) W_m^T + b)`,
//! the bracket one row shared by the whole batch. Written with tensor views, candle's backward
//! pass pads the gradient of each half of `W` to the full width and sums the padded copies,
//! and every intermediate (the two halves, the repeated row, their sum) costs a zeroed tensor
//! and an addition more. As one operation the backward pass writes the `[H, 2F]` weight
//! gradient into one buffer, `[g^T x, colsum(g) mean(x)]`, and the records' gradient in one
//! product, `g W_x + mean_rows(g) W_m` (each record's mean input is the batch mean).
//!
//! The sparse forms read a batch as its non-zero cells: a row of `x W_x^T` is the sum of the
//! weight columns of the row's codes, and the gradient adds each row of `g` into the columns of
//! its codes.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use super::parallel::{block_len, for_each_block, threads_for};
use super::product::{
    LinearWithBias, Operand, contiguous_f32, multiply, multiply_rows_into, multiply_then, product,
    row_sum,
};

/// Fewest values per thread for the loops here (gathers, scatters, transposes): below this a
/// second thread costs more than it saves.
const MIN_VALUES_PER_THREAD: usize = 1 << 14;

/// `[x, mean(x)] W^T + b` for records `[B, F]`, a weight `[H, 2F]` and a bias `[H]`,
/// differentiable in whichever of them tracks a gradient. CPU only.
pub(crate) fn minibatch_linear(xs: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    xs.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &bias.contiguous()?,
        MinibatchLinear {
            mean: Mutex::new(None),
        },
    )
}

/// The non-zero cells of a batch in compressed rows, for the sparse layers.
pub(crate) struct Cells {
    pub(crate) rows: usize,
    pub(crate) width: usize,
    /// Row `r`'s cells are `row_start[r]..row_start[r + 1]`.
    pub(crate) row_start: Vec<usize>,
    pub(crate) cols: Vec<u32>,
    /// The cells' values; `None` when every value is 1.
    pub(crate) values: Option<Vec<f32>>,
    /// Mean of each column over the batch.
    pub(crate) mean: Vec<f32>,
}

impl Cells {
    fn value(&self, cell: usize) -> f32 {
        self.values.as_ref().map_or(1.0, |values| values[cell])
    }
}

/// `x W^T + b` for the sparse batch `cells` and a weight `[H, F]`, or with `with_mean`
/// `[x, mean(x)] W^T + b` for a weight `[H, 2F]`; differentiable in the weight and the bias.
/// CPU only.
pub(crate) fn sparse_linear(
    cells: &Arc<Cells>,
    weight: &Tensor,
    bias: &Tensor,
    with_mean: bool,
) -> Result<Tensor> {
    weight.contiguous()?.apply_op2(
        &bias.contiguous()?,
        SparseLinear {
            cells: Arc::clone(cells),
            with_mean,
        },
    )
}

struct MinibatchLinear {
    /// The batch mean of the forward pass, which the weight gradient needs again.
    mean: Mutex<Option<Vec<f32>>>,
}

/// The parts of `W [H, 2F]` and `b [H]` checked against `F` codes: `(values, H)`.
fn weight_and_bias<'a>(
    weight: &'a CpuStorage,
    weight_layout: &Layout,
    bias: &'a CpuStorage,
    bias_layout: &Layout,
    inputs: usize,
) -> Result<(&'a [f32], &'a [f32], usize)> {
    let weight = contiguous_f32(weight, weight_layout, "a first layer's weight")?;
    let bias = contiguous_f32(bias, bias_layout, "a first layer's bias")?;
    let &[hidden, width] = weight_layout.dims() else {
        candle_core::bail!("a first-layer weight must be a matrix");
    };
    if width != inputs || bias.len() != hidden {
        candle_core::bail!(
            "a first layer of weight {hidden}x{width} and bias {} cannot read {inputs} inputs",
            bias.len()
        );
    }
    Ok((weight, bias, hidden))
}

/// Mean of each column of the row-major `[rows, width]` matrix `xs`.
fn column_means(xs: &[f32], width: usize) -> Vec<f32> {
    let rows = xs.len() / width.max(1);
    let mut sum = vec![0f32; width];
    for row in xs.chunks_exact(width.max(1)) {
        sum.iter_mut().zip(row).for_each(|(s, &x)| *s += x);
    }
    let scale = 1.0 / rows.max(1) as f32;
    sum.iter_mut().for_each(|s| *s *= scale);
    sum
}

/// `mean W_m^T + b`: the row every record of the batch shares (`W` is `[H, 2F]`), as a
/// one-row product (gemm's vector kernels; a loop of dot products cannot reorder its sums).
fn shared_row(mean: &[f32], weight: &[f32], bias: &[f32]) -> Result<Vec<f32>> {
    let (width, hidden) = (mean.len(), bias.len());
    let mean = Operand::rows_of(mean, 0, 1, width, width)?;
    let mean_weight = Operand::rows_of(weight, width, hidden, width, 2 * width)?.t();
    let (CpuStorage::F32(mut row), _) = multiply(mean, mean_weight)? else {
        candle_core::bail!("a product of f32 matrices is f32");
    };
    row.iter_mut().zip(bias).for_each(|(y, &b)| *y += b);
    Ok(row)
}

/// Sum over the rows of the row-major `[rows, width]` matrix `g`.
fn column_sums(g: &[f32], width: usize) -> Vec<f32> {
    let mut sum = vec![0f32; width];
    for row in g.chunks_exact(width.max(1)) {
        sum.iter_mut().zip(row).for_each(|(s, &x)| *s += x);
    }
    sum
}

/// Writes `colsum(g)[h] * mean[f]` into the second half of each row of the `[H, 2F]` `out`.
fn write_mean_half(out: &mut [f32], column_sum: &[f32], mean: &[f32]) {
    let width = mean.len().max(1);
    let threads = threads_for(out.len() / 2, MIN_VALUES_PER_THREAD);
    let block = block_len(out.len(), threads, 2, 2 * width);
    for_each_block(out, block, threads, |start, rows| {
        let first = start / (2 * width);
        for (row, &s) in rows.chunks_exact_mut(2 * width).zip(&column_sum[first..]) {
            row[width..]
                .iter_mut()
                .zip(mean)
                .for_each(|(o, &m)| *o = s * m);
        }
    });
}

/// Rows of the destination written together in a transposition.
const TILE: usize = 16;

/// The first `cols` values of the `rows` rows of `src` (rows `src_stride` apart) written
/// transposed into the first `rows` values of the `cols` rows of `dst` (rows `dst_stride`
/// apart), split between threads by rows of `dst`.
///
/// A few rows of `dst` at a time, so that the rows written stay in cache while `src` is read
/// along its rows (reading it down its columns would take a cache miss per value).
fn transpose_into(
    src: &[f32],
    (rows, cols, src_stride): (usize, usize, usize),
    dst: &mut [f32],
    dst_stride: usize,
) {
    let dst_stride = dst_stride.max(1);
    let dst = &mut dst[..cols * dst_stride];
    let threads = threads_for(rows * cols, MIN_VALUES_PER_THREAD);
    let block = block_len(dst.len(), threads, 2, dst_stride);
    for_each_block(dst, block, threads, |start, block| {
        let first = start / dst_stride;
        for (tile_index, tile) in block.chunks_mut(TILE * dst_stride).enumerate() {
            let first = first + tile_index * TILE;
            for i in 0..rows {
                let src_row = &src[i * src_stride + first..];
                for (dst_row, &value) in tile.chunks_exact_mut(dst_stride).zip(src_row) {
                    dst_row[i] = value;
                }
            }
        }
    });
}

/// `W`'s first `width` columns of its `hidden` rows (`inputs` values apart) as rows of
/// `hidden` values, `[width, hidden]`, so that a code's weights are contiguous.
fn code_columns(weight: &[f32], hidden: usize, width: usize, inputs: usize) -> Vec<f32> {
    let mut columns = vec![0f32; width * hidden];
    transpose_into(weight, (hidden, width, inputs), &mut columns, hidden);
    columns
}

impl CustomOp3 for MinibatchLinear {
    fn name(&self) -> &'static str {
        "medgan-minibatch-linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xs_layout: &Layout,
        weight: &CpuStorage,
        weight_layout: &Layout,
        bias: &CpuStorage,
        bias_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let &[rows, width] = xs_layout.dims() else {
            candle_core::bail!("the discriminator's records must be a matrix");
        };
        let records = contiguous_f32(xs, xs_layout, "a first layer's records")?;
        let (weight, bias, hidden) =
            weight_and_bias(weight, weight_layout, bias, bias_layout, 2 * width)?;
        let mean = column_means(records, width);
        let shared = shared_row(&mean, weight, bias)?;
        let own = Operand::rows_of(weight, 0, hidden, width, 2 * width)?.t();
        let records = Operand::rows_of(records, 0, rows, width, width)?;
        let out = multiply_then(records, own, |_, block| {
            for row in block.chunks_exact_mut(hidden.max(1)) {
                row.iter_mut().zip(&shared).for_each(|(y, s)| *y += s);
            }
        })?;
        if let Ok(mut saved) = self.mean.lock() {
            *saved = Some(mean);
        }
        Ok(out)
    }

    fn bwd(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (rows, width) = xs.dims2()?;
        let hidden = weight.dim(0)?;
        let grad_weight = if weight.track_op() {
            let mean = self.mean.lock().ok().and_then(|saved| saved.clone());
            let Some(mean) = mean else {
                candle_core::bail!("the first layer's backward pass ran before its forward pass");
            };
            Some(grad.apply_op2_no_bwd(xs, &MinibatchWeightGradient { mean })?)
        } else {
            None
        };
        let grad_bias = if bias.track_op() {
            Some(row_sum(&grad)?.reshape(hidden)?)
        } else {
            None
        };
        let grad_xs = if xs.track_op() {
            // g W_x, plus the mean row of g through W_m added to every row.
            let row = (product(
                &row_sum(&grad)?,
                &weight.narrow(1, width, width)?,
                false,
                false,
            )? / rows as f64)?
                .reshape(width)?;
            let own = weight.narrow(1, 0, width)?.t()?;
            Some(grad.apply_op3_no_bwd(&own, &row, &LinearWithBias)?)
        } else {
            None
        };
        Ok((grad_xs, grad_weight, grad_bias))
    }
}

/// `[g^T x, colsum(g) mean]` `[H, 2F]` from `g [B, H]` and `x [B, F]`.
struct MinibatchWeightGradient {
    mean: Vec<f32>,
}

impl CustomOp2 for MinibatchWeightGradient {
    fn name(&self) -> &'static str {
        "medgan-minibatch-weight-gradient"
    }

    fn cpu_fwd(
        &self,
        grad: &CpuStorage,
        grad_layout: &Layout,
        xs: &CpuStorage,
        xs_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (&[rows, hidden], &[xs_rows, width]) = (grad_layout.dims(), xs_layout.dims()) else {
            candle_core::bail!("a first layer's gradient and records must be matrices");
        };
        if rows != xs_rows || width != self.mean.len() {
            candle_core::bail!("a first layer's gradient does not match its records");
        }
        let grad = contiguous_f32(grad, grad_layout, "a first layer's gradient")?;
        let records = contiguous_f32(xs, xs_layout, "a first layer's records")?;
        let mut out = vec![0f32; hidden * 2 * width];
        multiply_rows_into(
            Operand::rows_of(grad, 0, rows, hidden, hidden)?.t(),
            Operand::rows_of(records, 0, rows, width, width)?,
            &mut out,
            2 * width,
        )?;
        write_mean_half(&mut out, &column_sums(grad, hidden), &self.mean);
        Ok((CpuStorage::F32(out), Shape::from((hidden, 2 * width))))
    }
}

struct SparseLinear {
    cells: Arc<Cells>,
    with_mean: bool,
}

impl CustomOp2 for SparseLinear {
    fn name(&self) -> &'static str {
        "medgan-sparse-linear"
    }

    fn cpu_fwd(
        &self,
        weight: &CpuStorage,
        weight_layout: &Layout,
        bias: &CpuStorage,
        bias_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let cells = &self.cells;
        let width = cells.width;
        let inputs = if self.with_mean { 2 * width } else { width };
        let (weight, bias, hidden) =
            weight_and_bias(weight, weight_layout, bias, bias_layout, inputs)?;
        let shared = if self.with_mean {
            shared_row(&cells.mean, weight, bias)?
        } else {
            bias.to_vec()
        };
        let mut out = vec![0f32; cells.rows * hidden];
        let hidden = hidden.max(1);
        // Blocks of whole output rows; every output value sums its row's cells in order.
        let threads = threads_for(out.len(), MIN_VALUES_PER_THREAD);
        let block = block_len(out.len(), threads, 2, hidden);
        if cells.cols.len() >= width {
            // Many cells per column: the code columns of W as contiguous rows `[F, H]`, each
            // then added to a record's row in one vector loop.
            let columns = code_columns(weight, hidden, width, inputs);
            for_each_block(&mut out, block, threads, |start, block| {
                let first_row = start / hidden;
                for (i, row) in block.chunks_exact_mut(hidden).enumerate() {
                    let r = first_row + i;
                    row.copy_from_slice(&shared);
                    for cell in cells.row_start[r]..cells.row_start[r + 1] {
                        let f = cells.cols[cell] as usize;
                        let v = cells.value(cell);
                        let column = &columns[f * hidden..(f + 1) * hidden];
                        row.iter_mut().zip(column).for_each(|(y, &w)| *y += v * w);
                    }
                }
            });
        } else {
            // Fewer cells than columns (a small batch): gathering from each row of W costs
            // less than rearranging W. The same sums in the same order as above.
            for_each_block(&mut out, block, threads, |start, block| {
                let first_row = start / hidden;
                for (i, row) in block.chunks_exact_mut(hidden).enumerate() {
                    let r = first_row + i;
                    for ((y, w), &b) in row.iter_mut().zip(weight.chunks_exact(inputs)).zip(&shared)
                    {
                        *y = b;
                        for cell in cells.row_start[r]..cells.row_start[r + 1] {
                            *y += cells.value(cell) * w[cells.cols[cell] as usize];
                        }
                    }
                }
            });
        }
        Ok((CpuStorage::F32(out), Shape::from((cells.rows, hidden))))
    }

    fn bwd(
        &self,
        weight: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let grad_weight = if weight.track_op() {
            let op = SparseWeightGradient {
                cells: Arc::clone(&self.cells),
                with_mean: self.with_mean,
            };
            Some(grad.apply_op1_no_bwd(&op)?)
        } else {
            None
        };
        let grad_bias = if bias.track_op() {
            Some(row_sum(&grad)?.reshape(bias.shape())?)
        } else {
            None
        };
        Ok((grad_weight, grad_bias))
    }
}

/// The weight gradient of [`SparseLinear`] from `g [B, H]`: `g^T x`, and with the mean the
/// second half `colsum(g) mean(x)`.
struct SparseWeightGradient {
    cells: Arc<Cells>,
    with_mean: bool,
}

impl CustomOp1 for SparseWeightGradient {
    fn name(&self) -> &'static str {
        "medgan-sparse-weight-gradient"
    }

    fn cpu_fwd(&self, grad: &CpuStorage, grad_layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let cells = &self.cells;
        let &[rows, hidden] = grad_layout.dims() else {
            candle_core::bail!("a first layer's gradient must be a matrix");
        };
        if rows != cells.rows {
            candle_core::bail!("a first layer's gradient does not match its records");
        }
        let grad = contiguous_f32(grad, grad_layout, "a first layer's gradient")?;
        let width = cells.width;
        let inputs = if self.with_mean { 2 * width } else { width };
        let mut out = vec![0f32; hidden * inputs];
        let hidden = hidden.max(1);
        if cells.cols.len() >= width {
            // Each record's gradient row added into the columns of its codes, as rows `[F, H]`:
            // a thread takes a range of codes and adds, in record order, only the cells of its
            // codes, so every column sums its records in the same order on any thread count.
            let mut columns = vec![0f32; width * hidden];
            let threads = threads_for(cells.cols.len() * hidden, MIN_VALUES_PER_THREAD);
            let block = block_len(columns.len(), threads, 2, hidden);
            for_each_block(&mut columns, block, threads, |start, block| {
                let codes = start / hidden..(start + block.len()) / hidden;
                for (r, g) in grad.chunks_exact(hidden).enumerate() {
                    for cell in cells.row_start[r]..cells.row_start[r + 1] {
                        let f = cells.cols[cell] as usize;
                        if !codes.contains(&f) {
                            continue;
                        }
                        let v = cells.value(cell);
                        let offset = (f - codes.start) * hidden;
                        let column = &mut block[offset..offset + hidden];
                        column.iter_mut().zip(g).for_each(|(c, &g)| *c += v * g);
                    }
                }
            });
            transpose_into(&columns, (width, hidden, hidden), &mut out, inputs);
        } else {
            // As in the forward pass, straight into each row of the weight's gradient.
            let threads = threads_for(cells.cols.len() * hidden, MIN_VALUES_PER_THREAD);
            let block = block_len(out.len(), threads, 2, inputs);
            for_each_block(&mut out, block, threads, |start, block| {
                let first = start / inputs;
                for (i, row) in block.chunks_exact_mut(inputs).enumerate() {
                    let h = first + i;
                    for r in 0..cells.rows {
                        let g = grad[r * hidden + h];
                        for cell in cells.row_start[r]..cells.row_start[r + 1] {
                            row[cells.cols[cell] as usize] += cells.value(cell) * g;
                        }
                    }
                }
            });
        }
        if self.with_mean {
            write_mean_half(&mut out, &column_sums(grad, hidden), &cells.mean);
        }
        Ok((CpuStorage::F32(out), Shape::from((hidden, inputs))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::testing::max_abs_diff;
    use candle_core::backprop::GradStore;
    use candle_core::{Device, Var};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use crate::model::layers::normal_tensor;
    use crate::model::sparse::SparseRecords;

    fn var(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Var {
        Var::from_tensor(&normal_tensor(rng, rows, cols, &Device::Cpu).unwrap()).unwrap()
    }

    /// A loss whose gradient differs for every output.
    fn loss(ys: &Tensor) -> Tensor {
        ys.tanh().unwrap().sqr().unwrap().sum_all().unwrap()
    }

    fn assert_close(a: &Tensor, b: &Tensor, what: &str) {
        assert_eq!(a.dims(), b.dims(), "{what}");
        let diff = max_abs_diff(a, b);
        assert!(diff < 1e-5, "{what}: max difference {diff}");
    }

    fn assert_same_gradients(ours: &GradStore, plain: &GradStore, vars: &[(&Var, &str)]) {
        for (var, what) in vars {
            assert_close(ours.get(var).unwrap(), plain.get(var).unwrap(), what);
        }
    }

    /// The plain formulation: concatenate `[x, mean(x)]` and multiply.
    fn concatenated(xs: &Tensor, weight: &Tensor, bias: &Tensor) -> Tensor {
        let rows = xs.dim(0).unwrap();
        let mean = xs.mean_keepdim(0).unwrap().repeat((rows, 1)).unwrap();
        let input = Tensor::cat(&[xs, &mean], 1).unwrap();
        input
            .matmul(&weight.t().unwrap())
            .unwrap()
            .broadcast_add(bias)
            .unwrap()
    }

    #[test]
    fn minibatch_layer_equals_concatenated_input_with_gradients() {
        let mut rng = ChaCha8Rng::seed_from_u64(21);
        let (xs, weight, bias) = (
            var(&mut rng, 7, 5),
            var(&mut rng, 4, 10),
            var(&mut rng, 1, 4),
        );
        let bias_row = bias.as_tensor().reshape(4).unwrap();
        let bias = Var::from_tensor(&bias_row).unwrap();
        let ours = minibatch_linear(&xs, &weight, &bias).unwrap();
        let plain = concatenated(&xs, &weight, &bias);
        assert_close(&ours, &plain, "values");
        let (ours, plain) = (
            loss(&ours).backward().unwrap(),
            loss(&plain).backward().unwrap(),
        );
        assert_same_gradients(
            &ours,
            &plain,
            &[(&xs, "records"), (&weight, "weight"), (&bias, "bias")],
        );

        // Detached sides get no gradient, and the others the same as before.
        let frozen = minibatch_linear(
            &xs,
            &weight.as_detached_tensor(),
            &bias.as_detached_tensor(),
        );
        let frozen = loss(&frozen.unwrap()).backward().unwrap();
        assert!(frozen.get(&weight).is_none() && frozen.get(&bias).is_none());
        assert_close(
            frozen.get(&xs).unwrap(),
            plain.get(&xs).unwrap(),
            "frozen records",
        );
        let constant = minibatch_linear(&xs.as_detached_tensor(), &weight, &bias).unwrap();
        let constant = loss(&constant).backward().unwrap();
        assert!(constant.get(&xs).is_none());
        assert_close(
            constant.get(&weight).unwrap(),
            plain.get(&weight).unwrap(),
            "weight",
        );

        // A weight of the wrong width is an error, not a panic.
        assert!(minibatch_linear(&xs, &var(&mut rng, 4, 9), &bias).is_err());
    }

    #[test]
    fn sparse_layers_equal_the_dense_product_with_gradients() {
        let mut rng = ChaCha8Rng::seed_from_u64(22);
        // Counts, an empty row and a column shared by two rows: 6 cells over 6 codes, which
        // rearranges the weight, then the same rows over 16 codes, which gathers from it.
        let rows: [(&[u32], &[u32]); 4] = [
            (&[0, 3, 5], &[1, 2, 1]),
            (&[], &[]),
            (&[3], &[4]),
            (&[1, 5], &[1, 1]),
        ];
        for width in [6, 16] {
            let records = SparseRecords::new(rows, width, &Device::Cpu).unwrap();
            let dense = records.to_dense().unwrap();
            let bias = normal_tensor(&mut rng, 1, 3, &Device::Cpu).unwrap();
            let bias = Var::from_tensor(&bias.reshape(3).unwrap()).unwrap();
            for with_mean in [false, true] {
                let inputs = if with_mean { 2 * width } else { width };
                let weight = var(&mut rng, 3, inputs);
                let ours = sparse_linear(records.cells(), &weight, &bias, with_mean).unwrap();
                let plain = if with_mean {
                    concatenated(&dense, &weight, &bias)
                } else {
                    let product = dense.matmul(&weight.t().unwrap()).unwrap();
                    product.broadcast_add(&bias).unwrap()
                };
                assert_close(&ours, &plain, "values");
                let ours = loss(&ours).backward().unwrap();
                let plain = loss(&plain).backward().unwrap();
                assert_same_gradients(&ours, &plain, &[(&weight, "weight"), (&bias, "bias")]);
                let wrong = var(&mut rng, 3, inputs + 1);
                assert!(sparse_linear(records.cells(), &wrong, &bias, with_mean).is_err());
            }
        }
    }

    /// A batch large enough to split between threads and to span several transposition tiles:
    /// the same bits on one thread and two, and the dense product's values and gradients.
    #[test]
    fn sparse_layers_split_between_threads_give_the_same_bits() {
        use crate::model::parallel::set_cpu_threads;
        use rand::RngExt;
        let (rows, width, hidden) = (1000, 600, 64);
        let mut rng = ChaCha8Rng::seed_from_u64(23);
        let records: Vec<(Vec<u32>, Vec<u32>)> = (0..rows)
            .map(|_| {
                let mut codes: Vec<u32> =
                    (0..4).map(|_| rng.random_range(0..width as u32)).collect();
                codes.sort_unstable();
                codes.dedup();
                let counts = codes.iter().map(|_| rng.random_range(1..3u32)).collect();
                (codes, counts)
            })
            .collect();
        let batch = SparseRecords::new(
            records.iter().map(|(c, v)| (c.as_slice(), v.as_slice())),
            width,
            &Device::Cpu,
        )
        .unwrap();
        let dense = batch.to_dense().unwrap();
        let bias = var(&mut rng, 1, hidden);
        let bias = Var::from_tensor(&bias.reshape(hidden).unwrap()).unwrap();
        let weight = var(&mut rng, hidden, 2 * width);
        let run = |threads| {
            set_cpu_threads(threads);
            let ys = sparse_linear(batch.cells(), &weight, &bias, true).unwrap();
            let grads = loss(&ys).backward().unwrap();
            let values = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (values(&ys), values(grads.get(&weight).unwrap()), ys, grads)
        };
        let (one_values, one_gradient, _, _) = run(1);
        let (values, gradient, ys, grads) = run(2);
        set_cpu_threads(1);
        assert_eq!(one_values, values);
        assert_eq!(one_gradient, gradient);
        let plain = concatenated(&dense, &weight, &bias);
        // Sums of 600 products of order 1 here: float rounding reaches 1e-5.
        let difference = max_abs_diff(&ys, &plain);
        assert!(difference < 1e-4, "values: max difference {difference}");
        let plain = loss(&plain).backward().unwrap();
        for (var, what) in [(&weight, "weight"), (&bias, "bias")] {
            let difference = max_abs_diff(grads.get(var).unwrap(), plain.get(var).unwrap());
            assert!(difference < 1e-4, "{what}: max difference {difference}");
        }
    }
}
