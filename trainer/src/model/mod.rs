//! The medGAN networks, built under fixed weight names, and their safetensors file.

mod activation;
pub mod arch;
pub(crate) mod autoencoder;
mod cross_entropy;
pub(crate) mod discriminator;
pub(crate) mod generator;
pub(crate) mod layers;
mod math;
mod minibatch;
pub(crate) mod parallel;
pub mod product;
pub mod sparse;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use arch::Architecture;
pub use parallel::{on_cpu_threads, set_cpu_threads};
pub use sparse::SparseRecords;

use crate::config::DEFAULT_BATCH_NORM_DECAY;
use autoencoder::Autoencoder;
use discriminator::Discriminator;
use generator::Generator;

/// Value of the `format` metadata key of a saved model.
const MODEL_FORMAT: &str = "medgan-model";
/// ChaCha8 stream of a seed that draws the initial weights (training uses other streams).
const INIT_STREAM: u64 = 0;

/// Why a model could not be built, read or written.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("invalid architecture: {0}")]
    InvalidArchitecture(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {why}", path.display())]
    BadFile { path: PathBuf, why: String },
}

/// Autoencoder, generator and discriminator of one medGAN model.
pub struct MedganModel {
    arch: Architecture,
    device: Device,
    pub(crate) autoencoder: Autoencoder,
    pub(crate) generator: Generator,
    pub(crate) discriminator: Discriminator,
}

impl std::fmt::Debug for MedganModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MedganModel")
            .field("arch", &self.arch)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl MedganModel {
    /// Fresh networks, Glorot-uniform initialised from a ChaCha8 stream keyed by `seed`.
    pub fn new(arch: &Architecture, device: &Device, seed: u64) -> Result<Self, ModelError> {
        check_architecture(arch)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(INIT_STREAM);
        let autoencoder = Autoencoder::new(
            arch.n_features,
            &arch.embedding_dims,
            arch.data_type,
            &mut rng,
            device,
        )?;
        let generator = Generator::new(
            arch.noise_dim,
            &arch.generator_dims,
            arch.data_type,
            arch.batch_norm_eps,
            DEFAULT_BATCH_NORM_DECAY,
            &mut rng,
            device,
        )?;
        let discriminator =
            Discriminator::new(arch.n_features, &arch.discriminator_dims, &mut rng, device)?;
        Ok(Self {
            arch: arch.clone(),
            device: device.clone(),
            autoencoder,
            generator,
            discriminator,
        })
    }

    /// Reads a file written by [`MedganModel::save`] for the given architecture.
    pub fn load(path: &Path, arch: &Architecture, device: &Device) -> Result<Self, ModelError> {
        let bad = |why: String| ModelError::BadFile {
            path: path.to_path_buf(),
            why,
        };
        let (tensors, metadata) = read_safetensors(path, device)?;
        if metadata.get("format").map(String::as_str) != Some(MODEL_FORMAT) {
            return Err(bad(format!(
                "not a medGAN model (no `format` = {MODEL_FORMAT})"
            )));
        }
        if let Some(saved) = metadata.get("architecture") {
            let saved: Architecture = serde_json::from_str(saved)
                .map_err(|e| bad(format!("`architecture` metadata: {e}")))?;
            if &saved != arch {
                return Err(bad(format!(
                    "saved for {saved:?}, asked to load as {arch:?}"
                )));
            }
        }
        let model = Self::new(arch, device, 0)?;
        model.assign(&tensors).map_err(bad)?;
        if let Some(extra) = tensors.keys().find(|name| !model.has_tensor(name)) {
            return Err(bad(format!("unexpected tensor `{extra}`")));
        }
        Ok(model)
    }

    /// Writes every tensor under its stable name, the architecture in the metadata.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let metadata = HashMap::from([
            ("format".to_string(), MODEL_FORMAT.to_string()),
            ("architecture".to_string(), self.architecture_json()),
        ]);
        write_safetensors(path, &self.named_tensors(), metadata)
    }

    pub fn architecture(&self) -> &Architecture {
        &self.arch
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Noise `[batch, noise_dim]` to embeddings `[batch, embedding_dim]`.
    ///
    /// `train_mode` normalises with batch statistics and moves the running statistics (needs at
    /// least 2 rows); otherwise the running statistics are used and nothing changes.
    pub fn generate_embedding(
        &self,
        noise: &Tensor,
        train_mode: bool,
    ) -> candle_core::Result<Tensor> {
        self.generator.forward(noise, train_mode)
    }

    /// Records to embeddings with the encoder.
    pub fn encode(&self, records: &Tensor) -> candle_core::Result<Tensor> {
        self.autoencoder.encode(records)
    }

    /// Embeddings to probabilities (binary) or non-negative expected counts.
    pub fn decode(&self, embedding: &Tensor) -> candle_core::Result<Tensor> {
        self.autoencoder.decode(embedding)
    }

    /// Noise to records in inference mode: generator then decoder.
    pub fn sample(&self, noise: &Tensor) -> candle_core::Result<Tensor> {
        self.decode(&self.generate_embedding(noise, false)?)
    }

    /// The discriminator's probability `[batch]` that each record of a batch (2 rows or more)
    /// is real.
    pub fn discriminate(&self, records: &Tensor) -> candle_core::Result<Tensor> {
        self.discriminator.forward(records)
    }

    /// medGAN's `generateData` burn-in: runs the generator in training mode on `batches` batches
    /// of seeded noise so the running statistics follow the final generator.
    ///
    /// Each batch moves them by `1 - decay` of the way (1% by default), so a few hundred batches
    /// are needed to forget the training-time statistics.
    pub fn refresh_batch_norm(
        &self,
        batches: usize,
        batch_size: usize,
        seed: u64,
    ) -> candle_core::Result<()> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for _ in 0..batches {
            let noise =
                layers::normal_tensor(&mut rng, batch_size, self.arch.noise_dim, &self.device)?;
            self.generator.forward(&noise, true)?;
        }
        Ok(())
    }

    /// Every tensor (weights, biases, batch-norm parameters and running statistics) by name;
    /// copies, so later training does not change them.
    pub fn named_tensors(&self) -> BTreeMap<String, Tensor> {
        self.named_vars()
            .into_iter()
            .map(|(name, var)| {
                let copy = var
                    .as_tensor()
                    .copy()
                    .unwrap_or_else(|_| var.as_detached_tensor());
                (name, copy.detach())
            })
            .collect()
    }

    /// Sets how far each training-mode batch moves the batch-norm running statistics.
    pub(crate) fn set_batch_norm_decay(&mut self, decay: f64) {
        for block in &mut self.generator.blocks {
            block.bn.decay = decay;
        }
    }

    pub(crate) fn architecture_json(&self) -> String {
        serde_json::to_string(&self.arch).expect("an architecture always serialises")
    }

    /// Every variable under its stable name, running statistics included.
    pub(crate) fn named_vars(&self) -> Vec<(String, Var)> {
        let mut vars = self.autoencoder_parameters();
        vars.extend(self.generator_vars(true));
        vars.extend(self.discriminator_parameters());
        vars
    }

    /// The generator's linear weights and batch-norm scale and shift, block by block, with the
    /// running statistics when `with_running_stats`.
    fn generator_vars(&self, with_running_stats: bool) -> Vec<(String, Var)> {
        let mut vars = Vec::new();
        for (i, block) in self.generator.blocks.iter().enumerate() {
            let prefix = format!("generator.blocks.{i}");
            vars.push((
                format!("{prefix}.linear.weight"),
                block.linear.weight.clone(),
            ));
            vars.push((format!("{prefix}.bn.weight"), block.bn.weight.clone()));
            vars.push((format!("{prefix}.bn.bias"), block.bn.bias.clone()));
            if with_running_stats {
                vars.push((
                    format!("{prefix}.bn.running_mean"),
                    block.bn.running_mean.clone(),
                ));
                vars.push((
                    format!("{prefix}.bn.running_var"),
                    block.bn.running_var.clone(),
                ));
            }
        }
        vars
    }

    /// What autoencoder pre-training updates: encoder and decoder weights and biases.
    pub(crate) fn autoencoder_parameters(&self) -> Vec<(String, Var)> {
        let mut vars = dense_vars("encoder", &self.autoencoder.encoder);
        vars.extend(self.decoder_parameters());
        vars
    }

    pub(crate) fn decoder_parameters(&self) -> Vec<(String, Var)> {
        dense_vars("decoder", &self.autoencoder.decoder)
    }

    /// What the generator loss updates: the generator's linear weights and batch-norm scale and
    /// shift (never the running statistics), and the decoder, as medGAN.
    pub(crate) fn generator_parameters(&self) -> Vec<(String, Var)> {
        let mut vars = self.generator_vars(false);
        vars.extend(self.decoder_parameters());
        vars
    }

    pub(crate) fn discriminator_parameters(&self) -> Vec<(String, Var)> {
        dense_vars("discriminator", &self.discriminator.layers)
    }

    fn has_tensor(&self, name: &str) -> bool {
        self.named_vars().iter().any(|(n, _)| n == name)
    }

    /// Copies the named tensors into this model's variables; every variable must be present.
    pub(crate) fn assign(&self, tensors: &HashMap<String, Tensor>) -> Result<(), String> {
        for (name, var) in self.named_vars() {
            let tensor = tensors
                .get(&name)
                .ok_or_else(|| format!("missing tensor `{name}`"))?;
            if tensor.dims() != var.dims() {
                return Err(format!(
                    "tensor `{name}` has shape {:?}, expected {:?}",
                    tensor.dims(),
                    var.dims()
                ));
            }
            let tensor = tensor
                .to_dtype(candle_core::DType::F32)
                .and_then(|t| t.to_device(&self.device))
                .map_err(|e| format!("tensor `{name}`: {e}"))?;
            var.set(&tensor)
                .map_err(|e| format!("tensor `{name}`: {e}"))?;
        }
        Ok(())
    }
}

fn dense_vars(prefix: &str, layers: &[layers::Dense]) -> Vec<(String, Var)> {
    let mut vars = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        vars.push((format!("{prefix}.layers.{i}.weight"), layer.weight.clone()));
        if let Some(bias) = &layer.bias {
            vars.push((format!("{prefix}.layers.{i}.bias"), bias.clone()));
        }
    }
    vars
}

fn check_architecture(arch: &Architecture) -> Result<(), ModelError> {
    let invalid = |why: String| Err(ModelError::InvalidArchitecture(why));
    if arch.n_features == 0 {
        return invalid("no features".into());
    }
    if arch.embedding_dims.is_empty() || arch.embedding_dims.contains(&0) {
        return invalid(format!("embedding widths {:?}", arch.embedding_dims));
    }
    let embedding = arch.embedding_dim();
    if arch.generator_dims.is_empty()
        || arch.noise_dim != embedding
        || arch.generator_dims.iter().any(|&d| d != arch.noise_dim)
    {
        return invalid(format!(
            "generator widths {:?} must all equal the noise width {} and the embedding width \
             {embedding}",
            arch.generator_dims, arch.noise_dim
        ));
    }
    if arch.discriminator_dims.contains(&0) {
        return invalid(format!(
            "discriminator widths {:?}",
            arch.discriminator_dims
        ));
    }
    if !(arch.batch_norm_eps.is_finite() && arch.batch_norm_eps > 0.0) {
        return invalid(format!("batch-norm epsilon {}", arch.batch_norm_eps));
    }
    Ok(())
}

/// Writes f32 tensors and string metadata as one safetensors file, through a temporary file
/// renamed into place so a crash never leaves half a file.
pub(crate) fn write_safetensors(
    path: &Path,
    tensors: &BTreeMap<String, Tensor>,
    metadata: HashMap<String, String>,
) -> Result<(), ModelError> {
    let io = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut buffers = Vec::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        let values = tensor
            .flatten_all()?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1::<f32>()?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        buffers.push((name.clone(), tensor.dims().to_vec(), bytes));
    }
    let views = buffers
        .iter()
        .map(|(name, shape, bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|view| (name.clone(), view))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ModelError::BadFile {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| ModelError::BadFile {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    crate::atomic_file::write_atomically(path, &bytes).map_err(io)?;
    Ok(())
}

/// Tensors of a safetensors file by name.
pub(crate) type NamedTensors = HashMap<String, Tensor>;

/// Reads every tensor of a safetensors file onto `device`, with the file's metadata.
pub(crate) fn read_safetensors(
    path: &Path,
    device: &Device,
) -> Result<(NamedTensors, HashMap<String, String>), ModelError> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |why: String| ModelError::BadFile {
        path: path.to_path_buf(),
        why,
    };
    let (_, header) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let tensors =
        candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| bad(e.to_string()))?;
    Ok((tensors, metadata))
}

#[cfg(test)]
mod tests;
