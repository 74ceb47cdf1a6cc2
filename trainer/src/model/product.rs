//! Matrix products of the dense layers on the CPU: `x W^T` with a backward pass that computes
//! only the gradients the graph needs, spread over a fixed number of threads.
//!
//! candle's own product computes the gradient of both sides in its backward pass, even of a
//! detached tensor that can never use it. Two of medGAN's largest products have one side fixed:
//! the discriminator update reads generated records that are constants there, and the
//! generator update runs the discriminator with frozen weights. [`linear`] skips the gradient
//! of a side that does not track one, and splits each product's output rows into blocks that
//! the threads of [`super::parallel`] take in turn.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use super::parallel::{block_len, for_each_block, threads_for};

/// Below this many multiply-adds per thread a product stays on one thread: handing a block to
/// a helper thread and packing the weight again for it costs more than the second core saves.
const MIN_WORK_PER_THREAD: usize = 1 << 22;
/// Row blocks per thread in a split product, so that threads can even out their shares.
const BLOCKS_PER_THREAD: usize = 2;
/// Fewest rows in a block: gemm works on tiles of several rows.
const MIN_BLOCK_ROWS: usize = 32;

/// `x W^T (+ b)` for `x` `[rows, in]`, `weight` `[out, in]` (views are fine) and an optional
/// `bias` `[out]`, differentiable in whichever of them tracks a gradient.
pub fn linear(xs: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    if !xs.device().is_cpu() {
        let ys = xs.matmul(&weight.t()?)?;
        return match bias {
            Some(bias) => ys.broadcast_add(bias),
            None => Ok(ys),
        };
    }
    match bias {
        Some(bias) => xs.apply_op3(weight, bias, LinearWithBias),
        None => xs.apply_op2(weight, Linear),
    }
}

/// `op(a) op(b)` without a backward pass, `op` transposing where asked.
pub(super) fn product(
    a: &Tensor,
    b: &Tensor,
    transpose_a: bool,
    transpose_b: bool,
) -> Result<Tensor> {
    a.apply_op2_no_bwd(
        b,
        &Product {
            transpose_a,
            transpose_b,
        },
    )
}

/// `x W^T`, with the gradients of the sides that track one.
struct Linear;

impl CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        "medgan-linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xs_layout: &Layout,
        weight: &CpuStorage,
        weight_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        multiply(
            Operand::new(xs, xs_layout, false)?,
            Operand::new(weight, weight_layout, true)?,
        )
    }

    /// `d/dx = g W` and `d/dW = g^T x`, each only when that side can use it.
    fn bwd(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        linear_gradients(xs, weight, grad)
    }
}

/// `x W^T + b`, the bias added as the product is written out.
pub(super) struct LinearWithBias;

impl CustomOp3 for LinearWithBias {
    fn name(&self) -> &'static str {
        "medgan-linear-bias"
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
        let bias = contiguous_f32(bias, bias_layout, "a bias")?;
        linear_then(xs, xs_layout, weight, weight_layout, bias, |_| {})
    }

    /// As [`Linear`], and `d/db` the column sums of `g`.
    fn bwd(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (grad_xs, grad_weight) = linear_gradients(xs, weight, grad)?;
        let grad_bias = if bias.track_op() {
            Some(row_sum(grad)?.reshape(bias.shape())?)
        } else {
            None
        };
        Ok((grad_xs, grad_weight, grad_bias))
    }
}

/// `x W^T + b`, then `finish` on each row of the result (while it is in cache).
pub(super) fn linear_then(
    xs: &CpuStorage,
    xs_layout: &Layout,
    weight: &CpuStorage,
    weight_layout: &Layout,
    bias: &[f32],
    finish: impl Fn(&mut [f32]) + Sync,
) -> Result<(CpuStorage, Shape)> {
    let xs = Operand::new(xs, xs_layout, false)?;
    let weight = Operand::new(weight, weight_layout, true)?;
    if bias.len() != weight.cols {
        candle_core::bail!(
            "a bias of {} values cannot shift {} outputs",
            bias.len(),
            weight.cols
        );
    }
    multiply_then(xs, weight, |_, block| {
        for row in block.chunks_exact_mut(bias.len().max(1)) {
            row.iter_mut().zip(bias).for_each(|(y, b)| *y += b);
            finish(row);
        }
    })
}

/// The `f32` values of a contiguous operand of a custom operation; `what` names it in the
/// error ("a bias").
pub(super) fn contiguous_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    what: &str,
) -> Result<&'a [f32]> {
    let values = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&values[start..end]),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}

/// The sum of the rows of a matrix, `[1, cols]`: a bias's gradient from its output's, as one
/// product with a row of ones (faster than candle's sum over the batch on the CPU).
pub(super) fn row_sum(xs: &Tensor) -> Result<Tensor> {
    let ones = Tensor::ones((1, xs.dim(0)?), xs.dtype(), xs.device())?;
    product(&ones, xs, false, false)
}

/// The gradients of `x W^T` that `xs` and `weight` track: `g W` and `g^T x`.
fn linear_gradients(
    xs: &Tensor,
    weight: &Tensor,
    grad: &Tensor,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let grad_xs = xs
        .track_op()
        .then(|| product(grad, weight, false, false))
        .transpose()?;
    let grad_weight = weight
        .track_op()
        .then(|| product(grad, xs, true, false))
        .transpose()?;
    Ok((grad_xs, grad_weight))
}

/// `op(a) op(b)`, the plain product behind [`Linear`] and its gradients.
struct Product {
    transpose_a: bool,
    transpose_b: bool,
}

impl CustomOp2 for Product {
    fn name(&self) -> &'static str {
        "medgan-product"
    }

    fn cpu_fwd(
        &self,
        a: &CpuStorage,
        a_layout: &Layout,
        b: &CpuStorage,
        b_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        multiply(
            Operand::new(a, a_layout, self.transpose_a)?,
            Operand::new(b, b_layout, self.transpose_b)?,
        )
    }
}

/// A matrix read from a strided f32 storage, possibly transposed.
#[derive(Clone, Copy)]
pub(super) struct Operand<'a> {
    values: &'a [f32],
    offset: usize,
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Operand<'a> {
    pub(super) fn new(storage: &'a CpuStorage, layout: &Layout, transpose: bool) -> Result<Self> {
        let values = storage.as_slice::<f32>()?;
        let (&[rows, cols], &[row_stride, col_stride]) = (layout.dims(), layout.stride()) else {
            candle_core::bail!(
                "a product operand must be a matrix, got {:?}",
                layout.dims()
            );
        };
        let operand = Self {
            values,
            offset: layout.start_offset(),
            rows,
            cols,
            row_stride,
            col_stride,
        }
        .checked()?;
        Ok(if transpose { operand.t() } else { operand })
    }

    /// The `[rows, cols]` matrix whose rows start `row_stride` values apart in `values`, the
    /// first at `offset`.
    pub(super) fn rows_of(
        values: &'a [f32],
        offset: usize,
        rows: usize,
        cols: usize,
        row_stride: usize,
    ) -> Result<Self> {
        Self {
            values,
            offset,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
        .checked()
    }

    /// `self` if the last element it reads lies inside its values (a product reads no other).
    fn checked(self) -> Result<Self> {
        if self.rows > 0 && self.cols > 0 {
            let last =
                self.offset + (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride;
            if last >= self.values.len() {
                candle_core::bail!("a product operand's layout reaches past its storage");
            }
        }
        Ok(self)
    }

    /// The transpose, reading the same values.
    pub(super) fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Rows `start..start + count` of this matrix.
    fn rows_from(self, start: usize, count: usize) -> Self {
        Self {
            offset: self.offset + start * self.row_stride,
            rows: count,
            ..self
        }
    }
}

/// `a b` into a new row-major storage, the rows of the result split between threads.
pub(super) fn multiply(a: Operand<'_>, b: Operand<'_>) -> Result<(CpuStorage, Shape)> {
    multiply_then(a, b, |_, _| {})
}

/// [`multiply`], then `finish(first_row, block)` on each block of whole rows of the result as
/// soon as it is written, on the thread that wrote it (while the block is still in its cache):
/// a bias, an activation.
pub(super) fn multiply_then(
    a: Operand<'_>,
    b: Operand<'_>,
    finish: impl Fn(usize, &mut [f32]) + Sync,
) -> Result<(CpuStorage, Shape)> {
    let (m, n) = (a.rows, b.cols);
    // Not zeroed first: gemm writes every value (the zeroing was a twentieth of a GAN step).
    let mut out = Vec::with_capacity(m * n);
    multiply_rows_into_uninit(
        a,
        b,
        &mut out.spare_capacity_mut()[..m * n],
        n,
        Some(&finish),
    )?;
    // SAFETY: with rows `n` apart, `multiply_rows_into_uninit` wrote all `m * n` values.
    #[allow(unsafe_code)]
    unsafe {
        out.set_len(m * n)
    };
    Ok((CpuStorage::F32(out), Shape::from((m, n))))
}

/// `a b` written into the first `b.cols` values of each of the `a.rows` rows of `out`, rows
/// `row_stride` apart (`out` holds exactly `a.rows * row_stride` values), the rows split
/// between threads. Values past `b.cols` in each row are left as they are.
pub(super) fn multiply_rows_into(
    a: Operand<'_>,
    b: Operand<'_>,
    out: &mut [f32],
    row_stride: usize,
) -> Result<()> {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and the product only writes
    // initialised `f32` values through the view, so `out` stays initialised.
    #[allow(unsafe_code)]
    let out = unsafe { &mut *(out as *mut [f32] as *mut [MaybeUninit<f32>]) };
    multiply_rows_into_uninit(a, b, out, row_stride, None)
}

/// What [`multiply_then`] runs on each finished block of rows.
type Finish<'a> = &'a (dyn Fn(usize, &mut [f32]) + Sync);

/// [`multiply_rows_into`] into values that need not be initialised: it writes the first
/// `b.cols` of every row, then, where rows are exactly `b.cols` apart, runs `finish` on each
/// block.
fn multiply_rows_into_uninit(
    a: Operand<'_>,
    b: Operand<'_>,
    out: &mut [MaybeUninit<f32>],
    row_stride: usize,
    finish: Option<Finish<'_>>,
) -> Result<()> {
    if a.cols != b.rows {
        candle_core::bail!(
            "cannot multiply a {}x{} matrix by a {}x{} one",
            a.rows,
            a.cols,
            b.rows,
            b.cols
        );
    }
    let (m, n) = (a.rows, b.cols);
    if row_stride < n || out.len() != m * row_stride {
        candle_core::bail!(
            "a product of {m}x{n} cannot be written into {} values, rows {row_stride} apart",
            out.len()
        );
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if finish.is_some() && row_stride != n {
        candle_core::bail!("a finishing step needs the product's rows written contiguously");
    }
    let threads = threads_for(m * n * a.cols, MIN_WORK_PER_THREAD).min(m);
    let rows_per_block = match threads {
        1 => m,
        _ => block_len(m, threads, BLOCKS_PER_THREAD, 1).max(MIN_BLOCK_ROWS),
    };
    for_each_block(out, rows_per_block * row_stride, threads, |start, block| {
        let first_row = start / row_stride;
        let rows = block.len() / row_stride;
        multiply_into(a.rows_from(first_row, rows), b, block, row_stride);
        if let Some(finish) = finish {
            // SAFETY: rows are exactly `n` apart here (checked above), so `multiply_into`
            // wrote every value of the block.
            #[allow(unsafe_code)]
            let block = unsafe { &mut *(block as *mut [MaybeUninit<f32>] as *mut [f32]) };
            finish(first_row, block);
        }
    });
    Ok(())
}

/// `a b` written into `out` (`a.rows` rows `row_stride` apart, `b.cols` values each), on the
/// calling thread.
#[allow(unsafe_code)]
fn multiply_into(a: Operand<'_>, b: Operand<'_>, out: &mut [MaybeUninit<f32>], row_stride: usize) {
    let (m, n, k) = (a.rows, b.cols, a.cols);
    assert!(
        out.len() == m * row_stride && row_stride >= n && b.rows == k,
        "product shapes checked by the caller"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        out.chunks_mut(row_stride).for_each(|row| {
            row[..n].iter_mut().for_each(|value| {
                value.write(0.0);
            })
        });
        return;
    }
    // SAFETY: `Operand::new` checked that every element `offset + i * row_stride + j *
    // col_stride` for `i < rows, j < cols` lies inside `values` (and `rows_from` only narrows
    // the rows), so gemm reads inside both slices; it writes `m` rows of `n` values, `row_stride`
    // apart, into `out`, which holds `m * row_stride` values (asserted above), borrowed mutably
    // and alone. With `read_dst` false the destination is written, never read.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr().cast::<f32>(),
            1,
            row_stride as isize,
            false,
            a.values.as_ptr().add(a.offset),
            a.col_stride as isize,
            a.row_stride as isize,
            b.values.as_ptr().add(b.offset),
            b.col_stride as isize,
            b.row_stride as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::testing::max_abs_diff;
    use crate::model::parallel::set_cpu_threads;
    use candle_core::{Device, Var};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn close(a: &Tensor, b: &Tensor) {
        let diff = max_abs_diff(a, b);
        assert!(diff < 1e-5, "max difference {diff}");
    }

    /// Values and gradients equal candle's product, on a strided view of a weight, and a side
    /// that tracks nothing gets no gradient.
    #[test]
    fn linear_matches_candle_product_and_its_gradients() {
        let device = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let wide = super::super::layers::normal_tensor(&mut rng, 5, 14, &device).unwrap();
        let wide = Var::from_tensor(&wide).unwrap();
        let xs = super::super::layers::normal_tensor(&mut rng, 6, 7, &device).unwrap();
        let xs = Var::from_tensor(&xs).unwrap();
        let weight = wide.narrow(1, 7, 7).unwrap();
        let loss = |ys: &Tensor| ys.tanh().unwrap().sqr().unwrap().sum_all().unwrap();

        let want = xs.matmul(&weight.t().unwrap()).unwrap();
        let want_grads = loss(&want).backward().unwrap();
        let got = linear(&xs, &weight, None).unwrap();
        close(&got, &want);
        let grads = loss(&got).backward().unwrap();
        close(grads.get(&xs).unwrap(), want_grads.get(&xs).unwrap());
        close(grads.get(&wide).unwrap(), want_grads.get(&wide).unwrap());

        let frozen = loss(&linear(&xs, &weight.detach(), None).unwrap())
            .backward()
            .unwrap();
        close(frozen.get(&xs).unwrap(), want_grads.get(&xs).unwrap());
        assert!(frozen.get(&wide).is_none());
        let constant = loss(&linear(&xs.detach(), &weight, None).unwrap())
            .backward()
            .unwrap();
        close(constant.get(&wide).unwrap(), want_grads.get(&wide).unwrap());
        assert!(constant.get(&xs).is_none());
    }

    /// With a bias: the plain `x W^T + b` and its three gradients.
    #[test]
    fn linear_with_bias_matches_the_plain_formulation() {
        let device = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let normal = |rng: &mut ChaCha8Rng, rows, cols| {
            let t = super::super::layers::normal_tensor(rng, rows, cols, &device).unwrap();
            Var::from_tensor(&t).unwrap()
        };
        let (xs, weight) = (normal(&mut rng, 9, 5), normal(&mut rng, 4, 5));
        let bias = Var::from_tensor(&normal(&mut rng, 1, 4).squeeze(0).unwrap()).unwrap();
        let loss = |ys: &Tensor| ys.tanh().unwrap().sqr().unwrap().sum_all().unwrap();
        let want = xs
            .matmul(&weight.t().unwrap())
            .unwrap()
            .broadcast_add(&bias)
            .unwrap();
        let got = linear(&xs, &weight, Some(&bias)).unwrap();
        close(&got, &want);
        let (want, got) = (
            loss(&want).backward().unwrap(),
            loss(&got).backward().unwrap(),
        );
        for var in [&xs, &weight, &bias] {
            close(got.get(var).unwrap(), want.get(var).unwrap());
        }
        let frozen_bias = linear(&xs, &weight, Some(&bias.as_detached_tensor())).unwrap();
        assert!(loss(&frozen_bias).backward().unwrap().get(&bias).is_none());
    }

    /// Splitting rows between threads gives the same bits as one thread.
    #[test]
    fn thread_count_does_not_change_results() {
        let device = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let xs = super::super::layers::normal_tensor(&mut rng, 1301, 190, &device).unwrap();
        let weight = super::super::layers::normal_tensor(&mut rng, 297, 190, &device).unwrap();
        let single = {
            let (a, b) = (xs.storage_and_layout(), weight.storage_and_layout());
            let (candle_core::Storage::Cpu(sa), candle_core::Storage::Cpu(sb)) = (&*a.0, &*b.0)
            else {
                panic!("cpu tensors")
            };
            let a = Operand::new(sa, a.1, false).unwrap();
            let b = Operand::new(sb, b.1, true).unwrap();
            set_cpu_threads(1);
            let (CpuStorage::F32(out), _) = multiply(a, b).unwrap() else {
                panic!("an f32 product")
            };
            // Written rows 300 apart, split between threads, the same values and nothing past
            // each row's 297.
            set_cpu_threads(2);
            let mut wide = vec![-7f32; 1301 * 300];
            multiply_rows_into(a, b, &mut wide, 300).unwrap();
            for (row, want) in wide.chunks(300).zip(out.chunks(297)) {
                assert_eq!(&row[..297], want);
                assert_eq!(row[297..], [-7.0; 3]);
            }
            assert!(multiply_rows_into(a, b, &mut wide[1..], 300).is_err());
            out
        };
        set_cpu_threads(3);
        // 1301 x 297 x 190 is above the per-thread minimum, so this splits.
        const { assert!(1301 * 297 * 190 / MIN_WORK_PER_THREAD >= 2) };
        let split = linear(&xs, &weight, None).unwrap();
        set_cpu_threads(1);
        let split: Vec<f32> = split.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(split, single);
        close(
            &Tensor::from_vec(split, (1301, 297), &device).unwrap(),
            &xs.matmul(&weight.t().unwrap()).unwrap(),
        );
    }
}
