//! The quality curve during GAN training: does the generator cover the codes it should?
//!
//! Every few epochs a fixed sample of noise goes through the current generator and decoder, is
//! drawn into records, and compared with the training prevalences: the dimension-wise Pearson r
//! and the number of codes the sample contains at all. Mode collapse shows as a falling count.
//!
//! The sample goes through the model a chunk of rows at a time, and its uniform draws are
//! replayed from a saved random stream, so the probe holds `chunk x codes` cells, never
//! `rows x codes`.

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
/// Synthetic records decoded at once; as many as the default sample, so that the default
/// probe is one product (as before chunking) and a larger sample costs no more memory.
pub(crate) const QUALITY_CHUNK_ROWS: usize = 1000;

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
    /// The stream positioned at the first uniform draw, replayed by every probe: the draws
    /// are the same at each epoch without storing `rows x codes` of them.
    draws: ChaCha8Rng,
    chunk_rows: usize,
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
            draws: rng,
            chunk_rows: QUALITY_CHUNK_ROWS,
            path,
        })
    }

    /// Samples the current model, appends the point to the file and returns it.
    pub(crate) fn measure(
        &self,
        model: &MedganModel,
        epoch: usize,
    ) -> Result<QualityPoint, TrainError> {
        let width = self.real_prevalence.len();
        let rows = self.noise.dim(0)?;
        let mut draws = self.draws.clone();
        let mut present = vec![0usize; width];
        for start in (0..rows).step_by(self.chunk_rows.max(1)) {
            let len = self.chunk_rows.min(rows - start);
            let noise = self.noise.narrow(0, start, len)?;
            let output = model.sample(&noise)?.to_device(&Device::Cpu)?;
            let values = output.flatten_all()?.to_vec1::<f32>()?;
            for (cell, &value) in values.iter().enumerate() {
                // Binary: the sampler's Bernoulli draw; counts: the sampler's rounding.
                let drawn = match self.data_type {
                    DataType::Binary => draws.random::<f32>() < value,
                    DataType::Count => value.round() >= 1.0,
                };
                if drawn {
                    present[cell % width] += 1;
                }
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
    use crate::config::TrainConfig;

    /// 7 patients over 5 codes and an untrained tiny model: probabilities near one half, so
    /// that the draws decide what is present.
    fn tiny() -> (PatientMatrix, MedganModel) {
        let data = PatientMatrix::from_csr(
            DataType::Binary,
            (0..5).map(|c| format!("c{c}")).collect(),
            (0..7).map(|p| format!("p{p}")).collect(),
            vec![0, 2, 3, 3, 5, 6, 7, 9],
            vec![0, 3, 1, 2, 4, 0, 3, 1, 4],
            vec![1; 9],
        )
        .unwrap();
        let mut config = TrainConfig::default();
        config.autoencoder.embedding_dims = vec![4];
        config.generator.noise_dim = 4;
        config.generator.dims = vec![4, 4];
        config.discriminator.dims = vec![6];
        let arch = config.architecture(data.n_codes(), data.data_type());
        let model = MedganModel::new(&arch, &Device::Cpu, 9).unwrap();
        (data, model)
    }

    #[test]
    fn chunked_probe_matches_one_pass_over_stored_draws() {
        let (data, model) = tiny();
        let dir = tempfile::tempdir().unwrap();
        let rows = 11;
        let mut probe = QualityProbe::new(&data, &model, rows, 5, dir.path(), true).unwrap();

        // The probe before chunking: every draw stored, the whole sample in one product.
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        rng.set_stream(QUALITY_STREAM);
        let noise = normal_tensor(&mut rng, rows, 4, &Device::Cpu).unwrap();
        let probabilities = model.sample(&noise).unwrap().to_vec2::<f32>().unwrap();
        let mut present = [0usize; 5];
        for row in &probabilities {
            for (code, &p) in row.iter().enumerate() {
                if rng.random::<f32>() < p {
                    present[code] += 1;
                }
            }
        }
        let whole = probe.measure(&model, 1).unwrap();
        assert_eq!(
            whole.codes_generated,
            present.iter().filter(|&&n| n > 0).count()
        );
        let synthetic: Vec<f64> = present.iter().map(|&n| n as f64 / rows as f64).collect();
        let real = [2.0 / 7.0, 2.0 / 7.0, 1.0 / 7.0, 2.0 / 7.0, 2.0 / 7.0];
        assert_eq!(whole.dimension_wise_r, pearson(&real, &synthetic).get());
        assert_eq!(whole.codes_in_real, 5);

        // Chunks of 3 rows (the last of 2) replay the same draws.
        probe.chunk_rows = 3;
        let chunked = probe.measure(&model, 2).unwrap();
        assert_eq!(chunked.codes_generated, whole.codes_generated);
        assert_eq!(chunked.dimension_wise_r, whole.dimension_wise_r);
        let curve = std::fs::read_to_string(dir.path().join(QUALITY_FILE)).unwrap();
        assert_eq!(curve.lines().count(), 3, "{curve}");
    }

    #[test]
    fn pearson_is_undefined_for_constant_input() {
        assert_eq!(pearson(&[1.0, 2.0, 3.0], &[0.5, 0.5, 0.5]).get(), None);
        let r = pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 7.0]).get().unwrap();
        assert!((r - 0.9933992677987828).abs() < 1e-12, "{r}");
    }
}
