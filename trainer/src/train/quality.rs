//! The quality curve during GAN training: does the generator cover the codes it should?
//!
//! Every few epochs a fixed sample of noise goes through the current generator and decoder, is
//! drawn into records, and compared with the training prevalences: the dimension-wise Pearson r
//! and the number of codes the sample contains at all. Mode collapse shows as a falling count.

use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use medgan_sample::DataType;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::TrainError;
use crate::data::PatientMatrix;
use crate::evaluate::stats::pearson;
use crate::model::MedganModel;
use crate::model::layers::normal_tensor;

/// File of the run folder holding the curve, one CSV row per probe.
pub const QUALITY_FILE: &str = "quality.csv";
/// ChaCha8 stream of the probe's noise and draws: apart from training's, so probing never
/// changes what training does.
const QUALITY_STREAM: u64 = 3;

/// One point of the curve.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityPoint {
    pub epoch: usize,
    /// Pearson r of per-code synthetic and real prevalence; `None` when either side is constant.
    pub dimension_wise_r: Option<f64>,
    /// Codes present in at least one synthetic record of the sample.
    pub codes_generated: usize,
    /// Codes present in at least one training record.
    pub codes_in_real: usize,
}

/// Measures the curve for one run.
pub(crate) struct QualityProbe {
    real_prevalence: Vec<f64>,
    codes_in_real: usize,
    data_type: DataType,
    noise: Tensor,
    uniforms: Vec<f32>,
    path: PathBuf,
}

impl QualityProbe {
    /// Prepares the fixed noise (`rows` records) and the file, started anew when `fresh` (a
    /// resumed run appends to the curve it continues).
    pub(crate) fn new(
        train: &PatientMatrix,
        model: &MedganModel,
        rows: usize,
        seed: u64,
        run_dir: &Path,
        fresh: bool,
    ) -> Result<Self, TrainError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(QUALITY_STREAM);
        let noise = normal_tensor(
            &mut rng,
            rows,
            model.architecture().noise_dim,
            model.device(),
        )?;
        let uniforms = (0..rows * train.n_codes())
            .map(|_| rng.random::<f32>())
            .collect();
        let per_code = train.patients_per_code();
        let patients = train.n_patients().max(1) as f64;
        let path = run_dir.join(QUALITY_FILE);
        let header = "epoch,dimension_wise_r,codes_generated,codes_in_real\n";
        if fresh || !path.exists() {
            std::fs::write(&path, header).map_err(|source| TrainError::Io {
                path: path.clone(),
                source,
            })?;
        }
        Ok(Self {
            real_prevalence: per_code.iter().map(|&n| n as f64 / patients).collect(),
            codes_in_real: per_code.iter().filter(|&&n| n > 0).count(),
            data_type: train.data_type(),
            noise,
            uniforms,
            path,
        })
    }

    /// Samples the current model, appends the point to the file and returns it.
    pub(crate) fn measure(
        &self,
        model: &MedganModel,
        epoch: usize,
    ) -> Result<QualityPoint, TrainError> {
        let output = model.sample(&self.noise)?.to_device(&Device::Cpu)?;
        let values = output.flatten_all()?.to_vec1::<f32>()?;
        let width = self.real_prevalence.len();
        let rows = values.len() / width.max(1);
        let mut present = vec![0usize; width];
        for (cell, (&value, &uniform)) in values.iter().zip(&self.uniforms).enumerate() {
            // Binary: the sampler's Bernoulli draw; counts: the sampler's rounding.
            let drawn = match self.data_type {
                DataType::Binary => uniform < value,
                DataType::Count => value.round() >= 1.0,
            };
            if drawn {
                present[cell % width] += 1;
            }
        }
        let synthetic: Vec<f64> = present
            .iter()
            .map(|&n| n as f64 / rows.max(1) as f64)
            .collect();
        let point = QualityPoint {
            epoch,
            dimension_wise_r: pearson(&self.real_prevalence, &synthetic).get(),
            codes_generated: present.iter().filter(|&&n| n > 0).count(),
            codes_in_real: self.codes_in_real,
        };
        let r = point
            .dimension_wise_r
            .map_or(String::new(), |r| format!("{r:.6}"));
        let line = format!(
            "{epoch},{r},{},{}\n",
            point.codes_generated, point.codes_in_real
        );
        let io = |source| TrainError::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        file.write_all(line.as_bytes()).map_err(io)?;
        Ok(point)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pearson_is_undefined_for_constant_input() {
        assert_eq!(pearson(&[1.0, 2.0, 3.0], &[0.5, 0.5, 0.5]).get(), None);
        let r = pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 7.0]).get().unwrap();
        assert!((r - 0.9933992677987828).abs() < 1e-12, "{r}");
    }
}
