//! A batch of sparse records (rows of the patient matrix) as tensors, so that a first layer can
//! gather weight columns instead of multiplying by a mostly-zero dense batch.
//!
//! Patients carry a few codes out of hundreds (UCI Diabetes: 3.7 of 915), so `x W^T` for a
//! sparse `x` is a sum of a few weight columns per row. It is built from candle's
//! `index_select` and `index_add`, both differentiable, so gradients reach the weights as with
//! the dense product.

use std::sync::Arc;

use candle_core::{DType, Device, Result, Tensor};

use super::minibatch::Cells;

/// Row ids, column ids and values of the non-zero cells of a batch, with its column means.
pub struct SparseRecords {
    rows: usize,
    width: usize,
    nnz: usize,
    /// Row of each non-zero cell, `u32 [nnz]`.
    row_ids: Tensor,
    /// Column of each non-zero cell, `u32 [nnz]`.
    cols: Tensor,
    /// Value of each non-zero cell `[nnz, 1]`; `None` when every value is 1 (binary data).
    values: Option<Tensor>,
    /// Mean of each column over the batch, `[1, width]`.
    column_mean: Tensor,
    /// The same cells in compressed rows, for the CPU's fused first layers.
    cells: Arc<Cells>,
}

impl SparseRecords {
    /// A batch from its rows, each as (sorted column ids, values), all columns below `width`.
    pub fn new<'a>(
        rows: impl IntoIterator<Item = (&'a [u32], &'a [u32])>,
        width: usize,
        device: &Device,
    ) -> Result<Self> {
        let (mut row_ids, mut cols, mut values) = (Vec::new(), Vec::new(), Vec::new());
        let mut column_sum = vec![0f64; width];
        let mut n_rows = 0u32;
        let mut row_start = vec![0usize];
        for (indices, counts) in rows {
            for (&col, &count) in indices.iter().zip(counts) {
                let Some(sum) = column_sum.get_mut(col as usize) else {
                    candle_core::bail!("column {col} is outside a record of {width} codes");
                };
                *sum += count as f64;
                row_ids.push(n_rows);
                cols.push(col);
                values.push(count as f32);
            }
            n_rows += 1;
            row_start.push(cols.len());
        }
        let rows = n_rows as usize;
        let nnz = cols.len();
        let column_mean: Vec<f32> = column_sum
            .iter()
            .map(|&s| (s / rows.max(1) as f64) as f32)
            .collect();
        let values = (!values.iter().all(|&v| v == 1.0)).then_some(values);
        let cells = Arc::new(Cells {
            rows,
            width,
            row_start,
            cols: cols.clone(),
            values: values.clone(),
            mean: column_mean.clone(),
        });
        Ok(Self {
            rows,
            width,
            nnz,
            row_ids: Tensor::from_vec(row_ids, nnz, device)?,
            cols: Tensor::from_vec(cols, nnz, device)?,
            values: values
                .map(|values| Tensor::from_vec(values, (nnz, 1), device))
                .transpose()?,
            column_mean: Tensor::from_vec(column_mean, (1, width), device)?,
            cells,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn width(&self) -> usize {
        self.width
    }

    /// Mean of each column over the batch, `[1, width]`.
    pub(crate) fn column_mean(&self) -> &Tensor {
        &self.column_mean
    }

    /// The cells in compressed rows.
    pub(crate) fn cells(&self) -> &Arc<Cells> {
        &self.cells
    }

    /// `x W^T` `[rows, out]` for a weight `[out, width]` (a view is fine): each row sums the
    /// weight columns of its codes, scaled by their values.
    pub(crate) fn matmul_t(&self, weight: &Tensor) -> Result<Tensor> {
        let (outputs, inputs) = weight.dims2()?;
        if inputs != self.width {
            candle_core::bail!(
                "a weight of {inputs} inputs cannot read records of {} codes",
                self.width
            );
        }
        let zeros = Tensor::zeros((self.rows, outputs), DType::F32, weight.device())?;
        if self.nnz == 0 {
            return Ok(zeros);
        }
        let columns = weight.t()?.contiguous()?.index_select(&self.cols, 0)?;
        let columns = match &self.values {
            Some(values) => columns.broadcast_mul(values)?,
            None => columns,
        };
        zeros.index_add(&self.row_ids, &columns, 0)
    }

    /// The dense batch `[rows, width]`, to check the gather against the dense product.
    #[cfg(test)]
    pub(crate) fn to_dense(&self) -> Result<Tensor> {
        let device = self.cols.device();
        let flat = (self.row_ids.to_dtype(DType::F32)? * self.width as f64)?
            .add(&self.cols.to_dtype(DType::F32)?)?
            .to_dtype(DType::U32)?;
        let values = match &self.values {
            Some(values) => values.squeeze(1)?,
            None => Tensor::ones(self.nnz, DType::F32, device)?,
        };
        let zeros = Tensor::zeros(self.rows * self.width, DType::F32, device)?;
        if self.nnz == 0 {
            return zeros.reshape((self.rows, self.width));
        }
        zeros
            .index_add(&flat, &values, 0)?
            .reshape((self.rows, self.width))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn dense_product(records: &Tensor, weight: &Tensor) -> Vec<Vec<f32>> {
        records
            .matmul(&weight.t().unwrap())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()
    }

    fn close(a: &[Vec<f32>], b: &[Vec<f32>]) {
        for (ra, rb) in a.iter().zip(b) {
            for (x, y) in ra.iter().zip(rb) {
                assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn gather_sum_equals_dense_product_and_its_gradient() {
        let device = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let weight = super::super::layers::normal_tensor(&mut rng, 4, 6, &device).unwrap();
        let weight = candle_core::Var::from_tensor(&weight).unwrap();
        // Counts, an empty row and a repeated column across rows.
        let rows: [(&[u32], &[u32]); 3] = [(&[0, 3, 5], &[1, 2, 1]), (&[], &[]), (&[3], &[4])];
        let sparse = SparseRecords::new(rows, 6, &device).unwrap();
        let dense = sparse.to_dense().unwrap();
        assert_eq!(
            dense.to_vec2::<f32>().unwrap(),
            vec![
                vec![1.0, 0.0, 0.0, 2.0, 0.0, 1.0],
                vec![0.0; 6],
                vec![0.0, 0.0, 0.0, 4.0, 0.0, 0.0]
            ]
        );
        let got = sparse.matmul_t(&weight).unwrap();
        close(
            &got.to_vec2::<f32>().unwrap(),
            &dense_product(&dense, &weight),
        );
        let mean = sparse.column_mean().to_vec2::<f32>().unwrap();
        assert!((mean[0][3] - 2.0).abs() < 1e-6 && (mean[0][0] - 1.0 / 3.0).abs() < 1e-6);

        // Same gradient as the dense product, through a non-linear loss.
        let upstream = |ys: &Tensor| ys.tanh().unwrap().sqr().unwrap().sum_all().unwrap();
        let sparse_grad = upstream(&got).backward().unwrap();
        let dense_out = dense.matmul(&weight.t().unwrap()).unwrap();
        let dense_grad = upstream(&dense_out).backward().unwrap();
        let g = |store: &candle_core::backprop::GradStore| {
            store.get(&weight).unwrap().to_vec2::<f32>().unwrap()
        };
        close(&g(&sparse_grad), &g(&dense_grad));

        // Binary rows take the value-free path; a view of a wider weight works too.
        let binary: [(&[u32], &[u32]); 2] = [(&[1, 2], &[1, 1]), (&[0], &[1])];
        let binary = SparseRecords::new(binary, 3, &device).unwrap();
        let view = weight.narrow(1, 3, 3).unwrap();
        close(
            &binary.matmul_t(&view).unwrap().to_vec2::<f32>().unwrap(),
            &dense_product(&binary.to_dense().unwrap(), &view),
        );
        assert!(binary.matmul_t(&weight).is_err());
        let outside: [(&[u32], &[u32]); 1] = [(&[7], &[1])];
        assert!(SparseRecords::new(outside, 3, &device).is_err());
    }
}
