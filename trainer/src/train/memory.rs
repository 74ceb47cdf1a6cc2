//! How much memory a training run will need, checked before anything is allocated.
//!
//! Training memory grows with the non-zero cells, not with patients x codes: the data stays
//! sparse (CSR) and only batches are dense. The estimate adds the data (the caller's matrix and
//! the train/holdout copies), the model (weights and each optimiser's two Adam moments), a fixed
//! overhead and the largest transient of a run: a dense batch with its activations and
//! gradients, a validation chunk, the quality probe, or a file being written. The per-cell
//! multipliers were measured on the CPU (peak resident set, `VmHWM`) with
//! `examples/bench_scale.rs`; other devices hold the batches in their own memory instead.

use std::fmt;

use medgan_sample::DataType;

use super::autoencoder::VALIDATION_CHUNK;
use super::quality::QUALITY_CHUNK_ROWS;
use crate::config::TrainConfig;
use crate::data::PatientMatrix;
use crate::model::Architecture;

/// Bytes of one f32 cell.
const CELL: u64 = 4;
/// Resident memory of the trainer before any data: code, candle and the allocator's arenas
/// (measured: 13 MiB before the split, 27 MiB after it on a small matrix).
const FIXED_OVERHEAD: u64 = 32 << 20;
/// Heap bytes of a `String` beside its text: the pointer, length and capacity.
const STRING_HEADER: u64 = 24;
/// Resident bytes per `batch x codes` f32 cell at the peak of an autoencoder step, in cells:
/// the dense batch, the decoder's output, a dozen loss terms and their gradients, and what
/// the allocator keeps of them (measured: 1,353 MiB at 1000 x 10,000).
const AUTOENCODER_STEP_CELLS: f64 = 35.0;
/// As [`AUTOENCODER_STEP_CELLS`] for a validation chunk, whose forward graph lives until its
/// loss is read (measured: 14.5 at 500 x 10,000).
const AUTOENCODER_VALIDATION_CELLS: f64 = 15.0;
/// As [`AUTOENCODER_STEP_CELLS`] for a GAN step: the generated records, the decoder's and the
/// discriminator's activations and the generator update's gradients (measured: the peak grows
/// by 16.7 cells per extra row from 500 to 1000 rows x 10,000 codes, of which
/// [`GAN_ROW_BYTES`] do not depend on the codes).
const GAN_STEP_CELLS: f64 = 16.0;
/// Resident bytes per GAN batch row besides its code cells: the noise, the generator's blocks
/// and the discriminator's hidden layers (measured: 51 KiB at 1000 x 915 codes).
const GAN_ROW_BYTES: f64 = 64.0 * 1024.0;
/// As [`GAN_STEP_CELLS`] for scoring a held-out chunk against generated records.
const GAN_VALIDATION_CELLS: f64 = 6.0;
/// As [`GAN_STEP_CELLS`] for a chunk of the quality probe: the sample and its host copy.
const QUALITY_CELLS: f64 = 6.0;
/// Copies of one phase's trained tensors alive during its update: the gradients, the
/// discriminator's first weight read as two halves and transposed for the sparse gather
/// (measured: about 5, the GAN peak less its dense cells, the data and the model).
const GRADIENT_COPIES: f64 = 5.0;
/// Copies of the model and moments while a checkpoint is written: the tensors and the file.
const CHECKPOINT_COPIES: f64 = 2.0;

/// What of the data the estimate needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataShape {
    pub patients: usize,
    pub codes: usize,
    pub nnz: usize,
    /// Total length of the patient ids.
    pub id_bytes: usize,
    /// Total length of the code names.
    pub code_bytes: usize,
}

impl DataShape {
    pub fn of(matrix: &PatientMatrix) -> Self {
        Self {
            patients: matrix.n_patients(),
            codes: matrix.n_codes(),
            nnz: matrix.nnz(),
            id_bytes: matrix.patient_ids().iter().map(String::len).sum(),
            code_bytes: matrix.codes().iter().map(String::len).sum(),
        }
    }

    /// One copy of the matrix in memory: CSR arrays, ids and vocabulary.
    fn matrix_bytes(&self) -> u64 {
        let (patients, codes) = (self.patients as u64, self.codes as u64);
        8 * (patients + 1)
            + 8 * self.nnz as u64
            + STRING_HEADER * (patients + codes)
            + (self.id_bytes + self.code_bytes) as u64
    }
}

/// A moment of a run that holds memory only for a while; the largest one sets the peak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transient {
    AutoencoderBatch { rows: usize, codes: usize },
    AutoencoderValidation { rows: usize, codes: usize },
    GanBatch { rows: usize, codes: usize },
    GanValidation { rows: usize, codes: usize },
    QualityProbe { rows: usize, codes: usize },
    Checkpoint,
}

impl Transient {
    /// What to change to shrink it.
    fn remedy(&self) -> &'static str {
        match self {
            Transient::AutoencoderBatch { .. } => "lower autoencoder.batch_size (--ae-batch-size)",
            Transient::GanBatch { .. } | Transient::GanValidation { .. } => {
                "lower training.batch_size (--batch-size)"
            }
            Transient::QualityProbe { .. } => {
                "lower training.quality_rows or turn the probe off (--quality-every 0)"
            }
            Transient::Checkpoint => {
                "use narrower networks (autoencoder.embedding_dims, discriminator.dims)"
            }
            Transient::AutoencoderValidation { .. } => "train on fewer patients or codes",
        }
    }
}

impl fmt::Display for Transient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transient::AutoencoderBatch { rows, codes } => {
                write!(f, "autoencoder batch of {rows} x {codes} codes")
            }
            Transient::AutoencoderValidation { rows, codes } => {
                write!(f, "autoencoder validation chunk of {rows} x {codes} codes")
            }
            Transient::GanBatch { rows, codes } => {
                write!(f, "GAN batch of {rows} x {codes} codes")
            }
            Transient::GanValidation { rows, codes } => {
                write!(f, "GAN validation chunk of {rows} x {codes} codes")
            }
            Transient::QualityProbe { rows, codes } => {
                write!(f, "quality probe chunk of {rows} x {codes} codes")
            }
            Transient::Checkpoint => f.write_str("writing a checkpoint"),
        }
    }
}

/// Estimated peak bytes of a run, by part.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryEstimate {
    /// The caller's matrix, its train/holdout copies, per-patient index lists and the buffers
    /// of the split's files (freed, but kept resident by the allocator).
    pub data: u64,
    /// Weights and every optimiser's two moments.
    pub model: u64,
    pub overhead: u64,
    /// Every transient with its bytes; the largest counts towards the peak.
    pub transients: Vec<(Transient, u64)>,
}

impl MemoryEstimate {
    /// The estimate for training on data of `shape` as `config` says.
    pub fn new(shape: &DataShape, config: &TrainConfig) -> Self {
        let arch = config.architecture(shape.codes, DataType::Binary);
        let sizes = ParameterCounts::of(&arch);
        let matrix = shape.matrix_bytes();
        // The caller's matrix, train and holdout together as large again, the index lists
        // (split order, epoch shuffle) of a usize per patient, and writing train and holdout:
        // their bytes, then the file holding them again. The allocator keeps those pages
        // resident after they are freed (measured: the autoencoder's peak grows by them), so
        // they count for the whole run.
        let data = 4 * matrix + 2 * 8 * shape.patients as u64;
        let weights = sizes.total() * CELL;
        let moments = 2 * CELL * (sizes.autoencoder + sizes.discriminator + sizes.generator_update);
        let model = weights + moments;

        let codes = shape.codes;
        // The split's sizes: batches never exceed the training patients, validation chunks
        // never the held-out ones.
        let wanted = (shape.patients as f64 * config.validation_split).round() as usize;
        let holdout = wanted.max(2).min(shape.patients).max(1);
        let train = shape.patients.saturating_sub(holdout).max(1);
        let cells = |rows: usize, per_cell: f64| (rows * codes) as f64 * CELL as f64 * per_cell;
        let gradients = |params: u64| params as f64 * CELL as f64 * GRADIENT_COPIES;
        let bytes = |value: f64| value.ceil() as u64;
        let ae_rows = config.autoencoder.batch_size.min(train);
        let gan_rows = config.training.batch_size.min(train);
        let validation_rows = VALIDATION_CHUNK.min(holdout);
        let gan_validation_rows = gan_rows.min(holdout);
        let gan_update = sizes.discriminator.max(sizes.generator_update);
        let mut transients = vec![
            (
                Transient::AutoencoderBatch {
                    rows: ae_rows,
                    codes,
                },
                bytes(cells(ae_rows, AUTOENCODER_STEP_CELLS) + gradients(sizes.autoencoder)),
            ),
            (
                Transient::AutoencoderValidation {
                    rows: validation_rows,
                    codes,
                },
                bytes(cells(validation_rows, AUTOENCODER_VALIDATION_CELLS)),
            ),
            (
                Transient::GanBatch {
                    rows: gan_rows,
                    codes,
                },
                bytes(
                    cells(gan_rows, GAN_STEP_CELLS)
                        + gan_rows as f64 * GAN_ROW_BYTES
                        + gradients(gan_update),
                ),
            ),
            (
                Transient::GanValidation {
                    rows: gan_validation_rows,
                    codes,
                },
                bytes(cells(gan_validation_rows, GAN_VALIDATION_CELLS)),
            ),
            (
                Transient::Checkpoint,
                bytes(model as f64 * CHECKPOINT_COPIES),
            ),
        ];
        if config.training.quality_every > 0 {
            let rows = config.training.quality_rows.min(QUALITY_CHUNK_ROWS);
            transients.push((
                Transient::QualityProbe { rows, codes },
                bytes(cells(rows, QUALITY_CELLS)),
            ));
        }
        Self {
            data,
            model,
            overhead: FIXED_OVERHEAD,
            transients,
        }
    }

    /// The transient that sets the peak.
    pub fn largest(&self) -> (Transient, u64) {
        self.transients
            .iter()
            .copied()
            .max_by_key(|&(_, bytes)| bytes)
            .unwrap_or((Transient::Checkpoint, 0))
    }

    /// Estimated peak resident bytes.
    pub fn total(&self) -> u64 {
        self.overhead + self.data + self.model + self.largest().1
    }

    /// What to change first: the part that weighs most.
    fn remedy(&self) -> &'static str {
        let (transient, bytes) = self.largest();
        if self.data >= self.model.max(bytes).max(self.overhead) {
            "train on fewer patients or codes"
        } else if self.model >= bytes.max(self.overhead) {
            Transient::Checkpoint.remedy()
        } else if self.overhead >= bytes {
            "the trainer itself needs this much"
        } else {
            transient.remedy()
        }
    }

    /// Refuses a run whose estimate exceeds `limit`.
    pub fn check(&self, limit: MemoryLimit) -> Result<(), MemoryError> {
        if self.total() <= limit.bytes() {
            return Ok(());
        }
        Err(MemoryError {
            estimate: self.clone(),
            limit,
        })
    }
}

impl fmt::Display for MemoryEstimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (largest, bytes) = self.largest();
        write!(
            f,
            "about {} (data {}, model {}, {largest} {}, runtime {})",
            Size(self.total()),
            Size(self.data),
            Size(self.model),
            Size(bytes),
            Size(self.overhead)
        )
    }
}

/// Parameters per optimiser; the decoder is trained by two (autoencoder, generator).
struct ParameterCounts {
    autoencoder: u64,
    generator: u64,
    discriminator: u64,
    /// The generator optimiser's tensors: the generator and the decoder.
    generator_update: u64,
}

impl ParameterCounts {
    fn of(arch: &Architecture) -> Self {
        let dense = |inputs: usize, outputs: usize| (inputs * outputs + outputs) as u64;
        let chain =
            |widths: &[usize]| -> u64 { widths.windows(2).map(|w| dense(w[0], w[1])).sum() };
        let mut encoder = vec![arch.n_features];
        encoder.extend(&arch.embedding_dims);
        let decoder_widths: Vec<usize> = encoder.iter().rev().copied().collect();
        let decoder = chain(&decoder_widths);
        let autoencoder = chain(&encoder) + decoder;
        // Each residual block: a linear layer without bias and batch norm (scale, shift and two
        // running statistics).
        let generator = arch
            .generator_dims
            .iter()
            .scan(arch.noise_dim, |width, &dim| {
                let block = (*width * dim + 4 * dim) as u64;
                *width = dim;
                Some(block)
            })
            .sum();
        let mut discriminator_widths = vec![2 * arch.n_features];
        discriminator_widths.extend(&arch.discriminator_dims);
        discriminator_widths.push(1);
        let discriminator = chain(&discriminator_widths);
        Self {
            autoencoder,
            generator,
            discriminator,
            generator_update: generator + decoder,
        }
    }

    /// Every tensor of the model once.
    fn total(&self) -> u64 {
        self.autoencoder + self.generator + self.discriminator
    }
}

/// The memory a run may use, and where that figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryLimit {
    /// `--max-memory`.
    Given(u64),
    /// The machine's available memory (`MemAvailable` in /proc/meminfo).
    Available(u64),
}

impl MemoryLimit {
    /// `max_memory` when given, otherwise the available memory; `None` when neither is known.
    pub fn resolve(max_memory: Option<u64>) -> Option<Self> {
        match max_memory {
            Some(bytes) => Some(MemoryLimit::Given(bytes)),
            None => available_memory().map(MemoryLimit::Available),
        }
    }

    pub fn bytes(&self) -> u64 {
        match *self {
            MemoryLimit::Given(bytes) | MemoryLimit::Available(bytes) => bytes,
        }
    }
}

impl fmt::Display for MemoryLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryLimit::Given(bytes) => write!(f, "the limit is {} (--max-memory)", Size(*bytes)),
            MemoryLimit::Available(bytes) => write!(
                f,
                "only {} is available (MemAvailable in /proc/meminfo)",
                Size(*bytes)
            ),
        }
    }
}

/// A run that would not fit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "training needs {estimate} but {limit}; {}, or raise --max-memory",
    estimate.remedy()
)]
pub struct MemoryError {
    pub estimate: MemoryEstimate,
    pub limit: MemoryLimit,
}

/// Bytes written in GiB, in MiB below a tenth of one, in KiB below one MiB; with one decimal
/// below ten of a unit, so that `--max-memory 10MB` reads back as 9.5 MiB, not a rounded 10.
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0 as f64;
        let (value, unit) = if bytes >= 0.1 * (1u64 << 30) as f64 {
            (bytes / (1u64 << 30) as f64, "GiB")
        } else if bytes >= (1u64 << 20) as f64 {
            (bytes / (1u64 << 20) as f64, "MiB")
        } else {
            (bytes / 1024.0, "KiB")
        };
        if unit == "GiB" || value < 9.95 {
            write!(f, "{value:.1} {unit}")
        } else {
            write!(f, "{value:.0} {unit}")
        }
    }
}

/// Reads a size such as `2GB` (decimal), `512MiB` or `1.5G` (binary) or `1000000` (bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as 2GB, 512MiB or 1.5G"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}` (B, kB, MB, GB, TB or KiB, MiB, GiB, TiB)"
            ));
        }
    };
    let bytes = value * scale as f64;
    if !(bytes.is_finite() && bytes >= 1.0) {
        return Err(format!("`{text}` is not a positive size"));
    }
    Ok(bytes as u64)
}

/// The machine's available memory (`MemAvailable`), when /proc/meminfo can be read.
pub fn available_memory() -> Option<u64> {
    kib_field(
        &std::fs::read_to_string("/proc/meminfo").ok()?,
        "MemAvailable:",
    )
}

/// This process's peak resident set (`VmHWM` in /proc/self/status), when it can be read.
pub fn peak_resident() -> Option<u64> {
    kib_field(
        &std::fs::read_to_string("/proc/self/status").ok()?,
        "VmHWM:",
    )
}

/// The value of a `Name:   1234 kB` line, in bytes.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with(name))?;
    let kib: u64 = line[name.len()..]
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The benchmark shape: 1,000,000 patients x 10,000 codes at 0.1% density.
    fn million() -> DataShape {
        DataShape {
            patients: 1_000_000,
            codes: 10_000,
            nnz: 10_000_000,
            id_bytes: 8_000_000,
            code_bytes: 60_000,
        }
    }

    #[test]
    fn parameters_are_counted_layer_by_layer() {
        let config = TrainConfig::default();
        let sizes = ParameterCounts::of(&config.architecture(915, DataType::Binary));
        // Encoder 915 -> 128 and decoder 128 -> 915, each with biases.
        let decoder = 128 * 915 + 915;
        assert_eq!(sizes.autoencoder, 915 * 128 + 128 + decoder);
        // Three residual blocks 128 -> 128: weights, then scale, shift and two statistics.
        assert_eq!(sizes.generator, 3 * (128 * 128 + 4 * 128));
        // 1830 -> 256 -> 128 -> 1.
        assert_eq!(
            sizes.discriminator,
            1830 * 256 + 256 + 256 * 128 + 128 + 128 + 1
        );
        assert_eq!(sizes.generator_update, sizes.generator + decoder);
    }

    #[test]
    fn the_estimate_adds_data_model_overhead_and_the_largest_transient() {
        let shape = million();
        let config = TrainConfig::default();
        let estimate = MemoryEstimate::new(&shape, &config);
        let matrix = 8 * 1_000_001 + 8 * 10_000_000 + 24 * 1_010_000 + 8_060_000;
        assert_eq!(estimate.data, 4 * matrix + 16 * 1_000_000);
        let sizes = ParameterCounts::of(&config.architecture(10_000, DataType::Binary));
        let moments = 8 * (sizes.autoencoder + sizes.discriminator + sizes.generator_update);
        assert_eq!(estimate.model, 4 * sizes.total() + moments);
        let (largest, bytes) = estimate.largest();
        assert!(estimate.transients.iter().all(|&(_, b)| b <= bytes));
        assert_eq!(
            estimate.total(),
            FIXED_OVERHEAD + estimate.data + estimate.model + bytes
        );
        // Twice the GAN batch: its transient grows by exactly the extra dense cells.
        let mut doubled = config.clone();
        doubled.training.batch_size *= 2;
        let gan = |e: &MemoryEstimate| {
            e.transients
                .iter()
                .find(|(t, _)| matches!(t, Transient::GanBatch { .. }))
                .map(|&(_, b)| b)
                .unwrap()
        };
        let extra = gan(&MemoryEstimate::new(&shape, &doubled)) - gan(&estimate);
        let per_row = 10_000.0 * 4.0 * GAN_STEP_CELLS + GAN_ROW_BYTES;
        assert_eq!(extra as f64, 1000.0 * per_row);
        // Nothing is sized patients x codes: ten times the patients at the same density adds
        // data only, never a transient.
        let tenfold = DataShape {
            patients: 10 * shape.patients,
            nnz: 10 * shape.nnz,
            id_bytes: 10 * shape.id_bytes,
            ..shape
        };
        let bigger = MemoryEstimate::new(&tenfold, &config);
        assert_eq!(bigger.model, estimate.model);
        let transient = |e: &MemoryEstimate, t: Transient| {
            e.transients.iter().find(|(x, _)| *x == t).map(|&(_, b)| b)
        };
        assert_eq!(transient(&bigger, largest), transient(&estimate, largest));
        assert!(bigger.total() < 2 * 10 * estimate.data + estimate.total());
    }

    #[test]
    fn a_run_over_the_limit_is_refused_with_the_estimate_and_a_remedy() {
        let estimate = MemoryEstimate::new(&million(), &TrainConfig::default());
        assert!(estimate.check(MemoryLimit::Given(estimate.total())).is_ok());
        let err = estimate
            .check(MemoryLimit::Given(estimate.total() - 1))
            .unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("training needs about "), "{message}");
        assert!(message.contains("(--max-memory)"), "{message}");
        // At the shape the dense batches weigh most, so the remedy names the batch.
        let (largest, _) = estimate.largest();
        assert!(matches!(largest, Transient::GanBatch { .. }), "{largest}");
        assert!(message.contains("lower training.batch_size"), "{message}");
        let small = MemoryLimit::Available(1 << 30);
        let message = estimate.check(small).unwrap_err().to_string();
        assert!(message.contains("only 1.0 GiB is available"), "{message}");

        // A hundredfold more patients: the data weighs most.
        let shape = million();
        let huge = DataShape {
            patients: 100 * shape.patients,
            nnz: 100 * shape.nnz,
            id_bytes: 100 * shape.id_bytes,
            ..shape
        };
        let estimate = MemoryEstimate::new(&huge, &TrainConfig::default());
        let message = estimate.check(small).unwrap_err().to_string();
        assert!(
            message.contains("train on fewer patients or codes"),
            "{message}"
        );
    }

    #[test]
    fn sizes_parse_with_decimal_and_binary_units() {
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size(" 4096 "), Ok(4096));
        assert_eq!(parse_size("64 kb"), Ok(64_000));
        assert!(
            parse_size("2 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_size("GB").is_err());
        assert!(parse_size("0MB").is_err());
        assert_eq!(Size(3 << 29).to_string(), "1.5 GiB");
        assert_eq!(Size(5 << 20).to_string(), "5.0 MiB");
        assert_eq!(Size(10_000_000).to_string(), "9.5 MiB");
        assert_eq!(Size(50 << 20).to_string(), "50 MiB");
        assert_eq!(Size(300 << 20).to_string(), "0.3 GiB");
        assert_eq!(Size(3 << 10).to_string(), "3.0 KiB");
    }

    #[test]
    fn proc_fields_are_read_in_bytes() {
        let status = "Name:\tx\nVmHWM:\t  187288 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(kib_field(status, "VmHWM:"), Some(187_288 * 1024));
        assert_eq!(kib_field(status, "MemAvailable:"), None);
        assert_eq!(kib_field("VmHWM: lots", "VmHWM:"), None);
    }
}
