//! Test fixtures for the export: random weights and a plain-candle reference forward pass.
//!
//! The reference reads the unfolded weights (linear, then batch norm on running statistics), so
//! it checks folding and the graph writer independently of how they are implemented.

use std::collections::BTreeMap;
use std::time::Duration;

use candle_core::{Device, Tensor};
use medgan_sample::DataType;
use medgan_sample::bundle::manifest::{DataSummary, RunSummary};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{CardInfo, ExportInput, ReferenceForward};
use crate::model::Architecture;

/// An architecture with the given widths and defaults elsewhere.
pub fn test_architecture(
    data_type: DataType,
    n_features: usize,
    noise_dim: usize,
    generator_dims: &[usize],
    embedding_dims: &[usize],
) -> Architecture {
    Architecture {
        data_type,
        n_features,
        noise_dim,
        embedding_dims: embedding_dims.to_vec(),
        generator_dims: generator_dims.to_vec(),
        discriminator_dims: vec![16, 8],
        batch_norm_eps: 1e-3,
    }
}

/// A seeded tensor of uniform values in `[low, high)`.
pub fn uniform(seed: u64, dims: &[usize], low: f32, high: f32) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let count = dims.iter().product();
    let values: Vec<f32> = (0..count).map(|_| rng.random_range(low..high)).collect();
    Tensor::from_vec(values, dims, &Device::Cpu).expect("dims match the value count")
}

/// Largest absolute element-wise difference of two same-shaped tensors.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    let diff = (a - b).and_then(|d| d.abs()).and_then(|d| d.flatten_all());
    diff.and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar::<f32>())
        .expect("same shapes")
}

/// Random weights for every network of `arch`, with batch-norm statistics far from identity.
pub fn random_weights(arch: &Architecture, seed: u64) -> BTreeMap<String, Tensor> {
    let mut weights = BTreeMap::new();
    let mut next_seed = seed * 1000;
    let mut put = |name: String, dims: &[usize], low: f32, high: f32| {
        next_seed += 1;
        weights.insert(name, uniform(next_seed, dims, low, high));
    };
    let mut in_dim = arch.noise_dim;
    for (i, &out) in arch.generator_dims.iter().enumerate() {
        let scale = 1.5 / (in_dim as f32).sqrt();
        put(
            format!("generator.blocks.{i}.linear.weight"),
            &[out, in_dim],
            -scale,
            scale,
        );
        put(format!("generator.blocks.{i}.bn.weight"), &[out], 0.5, 1.5);
        put(format!("generator.blocks.{i}.bn.bias"), &[out], -0.5, 0.5);
        put(
            format!("generator.blocks.{i}.bn.running_mean"),
            &[out],
            -0.5,
            0.5,
        );
        put(
            format!("generator.blocks.{i}.bn.running_var"),
            &[out],
            0.2,
            2.0,
        );
        in_dim = out;
    }
    let mut widths = vec![arch.n_features];
    widths.extend(&arch.embedding_dims);
    for (i, pair) in widths.windows(2).enumerate() {
        let scale = 1.0 / (pair[0] as f32).sqrt();
        put(
            format!("encoder.layers.{i}.weight"),
            &[pair[1], pair[0]],
            -scale,
            scale,
        );
        put(format!("encoder.layers.{i}.bias"), &[pair[1]], -0.1, 0.1);
    }
    widths.reverse();
    for (i, pair) in widths.windows(2).enumerate() {
        let scale = 2.0 / (pair[0] as f32).sqrt();
        put(
            format!("decoder.layers.{i}.weight"),
            &[pair[1], pair[0]],
            -scale,
            scale,
        );
        put(format!("decoder.layers.{i}.bias"), &[pair[1]], -0.5, 0.5);
    }
    weights
}

/// Runs the unfolded networks straight from the weight map.
pub struct PlainReference {
    pub arch: Architecture,
    pub weights: BTreeMap<String, Tensor>,
    /// Added to every record, to make a reference that disagrees with the weights.
    pub record_offset: f64,
}

impl PlainReference {
    pub fn new(arch: &Architecture, weights: &BTreeMap<String, Tensor>) -> Self {
        Self {
            arch: arch.clone(),
            weights: weights.clone(),
            record_offset: 0.0,
        }
    }

    fn weight(&self, name: &str) -> candle_core::Result<&Tensor> {
        self.weights
            .get(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("no weight {name}")))
    }
}

impl ReferenceForward for PlainReference {
    fn generator(&self, noise: &Tensor) -> candle_core::Result<Tensor> {
        let mut x = noise.clone();
        let blocks = self.arch.generator_dims.len();
        for i in 0..blocks {
            let w = |part: &str| self.weight(&format!("generator.blocks.{i}.{part}"));
            let linear = x.matmul(&w("linear.weight")?.t()?)?;
            let std = (w("bn.running_var")? + self.arch.batch_norm_eps)?.sqrt()?;
            let normalised = linear
                .broadcast_sub(w("bn.running_mean")?)?
                .broadcast_div(&std)?
                .broadcast_mul(w("bn.weight")?)?
                .broadcast_add(w("bn.bias")?)?;
            let activated = if i + 1 == blocks && self.arch.data_type == DataType::Binary {
                normalised.tanh()?
            } else {
                normalised.relu()?
            };
            x = (activated + x)?;
        }
        Ok(x)
    }

    fn decoder(&self, embedding: &Tensor) -> candle_core::Result<Tensor> {
        let mut x = embedding.clone();
        let layers = self.arch.embedding_dims.len();
        for i in 0..layers {
            let w = |part: &str| self.weight(&format!("decoder.layers.{i}.{part}"));
            let linear = x.matmul(&w("weight")?.t()?)?.broadcast_add(w("bias")?)?;
            let last = i + 1 == layers;
            x = match (self.arch.data_type, last) {
                (DataType::Binary, false) => linear.tanh()?,
                (DataType::Binary, true) => candle_nn::ops::sigmoid(&linear)?,
                (DataType::Count, _) => linear.relu()?,
            };
        }
        x + self.record_offset
    }
}

/// Owns everything an [`ExportInput`] borrows.
pub struct Fixture {
    pub arch: Architecture,
    pub weights: BTreeMap<String, Tensor>,
    pub features: Vec<String>,
}

impl Fixture {
    pub fn new(data_type: DataType, seed: u64) -> Self {
        let arch = test_architecture(data_type, 40, 16, &[16, 16], &[24, 16]);
        let weights = random_weights(&arch, seed);
        let features = (0..arch.n_features)
            .map(|j| format!("code_{j:03}"))
            .collect();
        Self {
            arch,
            weights,
            features,
        }
    }

    pub fn reference(&self) -> PlainReference {
        PlainReference::new(&self.arch, &self.weights)
    }

    pub fn input(&self) -> ExportInput<'_> {
        let n = self.arch.n_features;
        let real_prevalence = match self.arch.data_type {
            DataType::Binary => (0..n).map(|j| 0.9 / (1.0 + j as f64)).collect(),
            DataType::Count => (0..n).map(|j| 3.0 / (1.0 + j as f64)).collect(),
        };
        ExportInput {
            architecture: &self.arch,
            weights: &self.weights,
            features: &self.features,
            training_data: DataSummary {
                patients: 1234,
                codes: n,
                density: 0.0625,
                source: "synthetic fixture".into(),
            },
            training_run: RunSummary {
                autoencoder_epochs: 3,
                gan_epochs: 5,
                seed: 42,
                config: serde_json::json!({ "seed": 42, "batch_size": 100 }),
            },
            config_toml: "seed = 42\nbatch_size = 100\n",
            card: CardInfo {
                command: "medgan-train train --input fixture.csv --out models/test".into(),
                training_time: Duration::from_secs(3725),
                data_credit: "Fixture data, made up for the tests; no licence needed.".into(),
                real_prevalence,
                appendix: String::new(),
            },
        }
    }
}
