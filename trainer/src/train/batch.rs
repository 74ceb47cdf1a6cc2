//! Batches of training records as tensors: dense, or sparse for layers that gather.
//!
//! The sparse form is used on the CPU, where gathering a few weight columns per patient beats a
//! dense product; other devices get the dense batch and candle's generic path.

use candle_core::{Device, Tensor};

use crate::data::PatientMatrix;
use crate::model::SparseRecords;

/// Whether the first layers read sparse batches on this device.
pub(crate) fn use_sparse(device: &Device) -> bool {
    device.is_cpu()
}

/// The rows densified into `[rows, codes]`, through a reused buffer.
pub(crate) fn dense(
    matrix: &PatientMatrix,
    rows: &[usize],
    buffer: &mut Vec<f32>,
    device: &Device,
) -> candle_core::Result<Tensor> {
    matrix.densify_rows(rows, buffer);
    Tensor::from_slice(buffer.as_slice(), (rows.len(), matrix.n_codes()), device)
}

/// The rows as a sparse batch.
pub(crate) fn sparse(
    matrix: &PatientMatrix,
    rows: &[usize],
    device: &Device,
) -> candle_core::Result<SparseRecords> {
    SparseRecords::new(
        rows.iter().map(|&row| matrix.row(row)),
        matrix.n_codes(),
        device,
    )
}
