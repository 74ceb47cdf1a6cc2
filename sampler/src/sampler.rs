//! The sampler: a bundle's graph in ONNX Runtime plus the row streams, handing out Arrow record
//! batches for any range of rows.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use arrow_schema::{ArrowError, DataType as ArrowType, Field, Schema, SchemaRef};
use thiserror::Error;

use crate::DataType;
use crate::bundle::manifest::{NOISE_INPUT, RECORDS_OUTPUT};
use crate::bundle::{Bundle, PATIENT_ID_COLUMN};
use crate::draw::{self, Draw, Outputs};
use crate::runtime::locate::OrtSearch;
use crate::runtime::{Device, Model, Records, RuntimeError};
use crate::streams::RowStreams;
use rand_chacha::ChaCha8Rng;

/// Rows per model run unless told otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 4096;

/// How count models turn expected counts into integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CountDraw {
    /// Round to the nearest integer (halves away from zero); negative outputs count as 0.
    #[default]
    Round,
    /// A Poisson draw with the expected count as mean, from the row's stream.
    Poisson,
}

/// Everything a [`Sampler`] needs besides the bundle.
#[derive(Debug, Clone)]
pub struct SamplerOptions {
    /// Keys every row's random stream.
    pub seed: u64,
    /// Rows per model run (and per record batch from [`Sampler::record_batches`]).
    pub batch_size: usize,
    /// Binary models only: `true` when the probability is at least this, instead of a
    /// Bernoulli draw.
    pub threshold: Option<f32>,
    /// Count models only: rounding or Poisson draws.
    pub counts: CountDraw,
    /// ONNX Runtime intra-op threads; `None` leaves ONNX Runtime's default (one per core).
    pub threads: Option<usize>,
    /// The ONNX Runtime library (file or folder); `None` searches as
    /// [`OrtSearch::from_environment`] says.
    pub ort_library: Option<PathBuf>,
    /// Where ONNX Runtime runs the graph. The rows do not depend on it beyond floating-point
    /// rounding: a GPU may round the model's outputs differently.
    pub device: Device,
}

impl Default for SamplerOptions {
    fn default() -> SamplerOptions {
        SamplerOptions {
            seed: 0,
            batch_size: DEFAULT_BATCH_SIZE,
            threshold: None,
            counts: CountDraw::Round,
            threads: None,
            ort_library: None,
            device: Device::Cpu,
        }
    }
}

/// Sampling failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SampleError {
    #[error("invalid sampler options: {0}")]
    Options(String),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("row {row}, code `{code}`: the model produced {value}, not a finite number")]
    NonFinite { row: u64, code: String, value: f32 },
    #[error("row {row}, code `{code}`: the count {value} does not fit a 32-bit column")]
    CountTooLarge { row: u64, code: String, value: f64 },
    #[error("rows {start}..{end} run past the largest patient_id, {}", i64::MAX)]
    RowRange { start: u64, end: u64 },
    #[error("noise has {len} values, not a whole number of rows of {noise_dim}")]
    NoiseShape { len: usize, noise_dim: usize },
    #[error("cannot assemble a record batch")]
    Arrow(#[source] ArrowError),
}

/// The model outputs of a row range, waiting for their draws ([`Sampler::infer`]).
pub struct Inferred {
    rows: Range<u64>,
    /// `rows x features`, row-major, as ONNX Runtime returned them.
    records: Records,
    /// Each row's stream where its noise ended.
    streams: Vec<ChaCha8Rng>,
}

impl std::fmt::Debug for Inferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inferred")
            .field("rows", &self.rows)
            .field("records", &self.records.values().len())
            .finish_non_exhaustive()
    }
}

impl Inferred {
    pub fn rows(&self) -> Range<u64> {
        self.rows.clone()
    }
}

/// Draws synthetic records from one bundle. Row `i` of any request depends only on the bundle,
/// the seed and `i`. `Sampler` is `Send + Sync`; model runs are serialised inside it.
pub struct Sampler {
    model: Mutex<Model>,
    streams: RowStreams,
    schema: SchemaRef,
    features: Vec<String>,
    noise_dim: usize,
    data_type: DataType,
    draw: Draw,
    batch_size: usize,
    seed: u64,
    manifest_sha256: String,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("features", &self.features.len())
            .field("data_type", &self.data_type)
            .field("draw", &self.draw)
            .field("batch_size", &self.batch_size)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

impl Sampler {
    /// Checks the options against the bundle, loads ONNX Runtime and creates the session.
    pub fn new(bundle: &Bundle, options: SamplerOptions) -> Result<Sampler, SampleError> {
        let manifest = bundle.manifest();
        let draw = choose_draw(manifest.data_type, &options)?;
        if options.batch_size == 0 {
            return Err(SampleError::Options("batch size is 0".to_owned()));
        }
        if options.threads == Some(0) {
            return Err(SampleError::Options("threads is 0".to_owned()));
        }
        let search = OrtSearch::from_environment(options.ort_library.clone());
        let features = manifest.features.clone();
        let model = Model::load(
            &search,
            bundle.sampler_graph(),
            bundle.location(),
            (NOISE_INPUT, RECORDS_OUTPUT),
            (manifest.noise_dim, features.len()),
            options.threads,
            options.device,
        )?;
        let value_type = match manifest.data_type {
            DataType::Binary => ArrowType::Boolean,
            DataType::Count => ArrowType::Int32,
        };
        let fields = std::iter::once(Field::new(PATIENT_ID_COLUMN, ArrowType::Int64, false)).chain(
            features
                .iter()
                .map(|code| Field::new(code, value_type.clone(), false)),
        );
        Ok(Sampler {
            model: Mutex::new(model),
            streams: RowStreams::new(options.seed),
            schema: Arc::new(Schema::new(fields.collect::<Vec<_>>())),
            features,
            noise_dim: manifest.noise_dim,
            data_type: manifest.data_type,
            draw,
            batch_size: options.batch_size,
            seed: options.seed,
            manifest_sha256: bundle.manifest_sha256().to_owned(),
        })
    }

    /// `patient_id` (Int64, the global row index), then one column per code named as the
    /// vocabulary: Boolean for binary models, Int32 for count models; none nullable.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Record batches covering `rows` in order, `batch_size` rows each (the last may be short).
    /// The iterator stops after the first error.
    pub fn record_batches(
        &self,
        rows: Range<u64>,
    ) -> impl Iterator<Item = Result<RecordBatch, SampleError>> + '_ {
        let mut next = rows.start;
        std::iter::from_fn(move || {
            if next >= rows.end {
                return None;
            }
            let end = rows.end.min(next.saturating_add(self.batch_size as u64));
            let batch = self.batch(next..end);
            next = if batch.is_ok() { end } else { rows.end };
            Some(batch)
        })
    }

    /// One record batch holding exactly `rows`, however many; the building block for splitting
    /// work across threads or machines.
    pub fn batch(&self, rows: Range<u64>) -> Result<RecordBatch, SampleError> {
        self.draw(self.infer(rows)?)
    }

    /// The first half of [`Sampler::batch`]: noise and the model run for `rows`. With
    /// [`Sampler::draw`] on another thread, inference and draws overlap.
    pub fn infer(&self, rows: Range<u64>) -> Result<Inferred, SampleError> {
        check_rows(&rows)?;
        let (mut noise, mut streams) = (Vec::new(), Vec::new());
        self.streams
            .fill_noise(rows.clone(), self.noise_dim, &mut noise, &mut streams);
        let records = self
            .model
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .run_owned(&noise)?;
        Ok(Inferred {
            rows,
            records,
            streams,
        })
    }

    /// The second half of [`Sampler::batch`]: the draws from the model outputs, as a record
    /// batch of the sampler's schema.
    pub fn draw(&self, inferred: Inferred) -> Result<RecordBatch, SampleError> {
        let Inferred {
            rows,
            records,
            streams,
        } = inferred;
        let outputs = Outputs {
            first_row: rows.start,
            records: records.values(),
            streams: &streams,
            features: &self.features,
        };
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.features.len() + 1);
        // check_rows made every id fit an i64.
        let ids = rows.clone().map(|row| row as i64);
        columns.push(Arc::new(Int64Array::from_iter_values(ids)));
        columns.extend(draw::columns(self.draw, &outputs)?);
        RecordBatch::try_new(self.schema.clone(), columns).map_err(SampleError::Arrow)
    }

    /// The model outputs (probabilities or expected counts) for `rows`' noise, before any
    /// draw: `rows x features`, row-major.
    pub fn model_outputs(&self, rows: Range<u64>) -> Result<Vec<f32>, SampleError> {
        check_rows(&rows)?;
        let (mut noise, mut streams) = (Vec::new(), Vec::new());
        self.streams
            .fill_noise(rows, self.noise_dim, &mut noise, &mut streams);
        self.run_model(&noise)
    }

    /// Runs the model on given noise (`n x noise_dim`, row-major): `n x features`, row-major.
    pub fn run_model(&self, noise: &[f32]) -> Result<Vec<f32>, SampleError> {
        if !noise.len().is_multiple_of(self.noise_dim) {
            return Err(SampleError::NoiseShape {
                len: noise.len(),
                noise_dim: self.noise_dim,
            });
        }
        let mut records = Vec::with_capacity(noise.len() / self.noise_dim * self.features.len());
        let mut model = self
            .model
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        model.run(noise, &mut records)?;
        Ok(records)
    }

    /// The codes, in column order after `patient_id`.
    pub fn features(&self) -> &[String] {
        &self.features
    }

    pub fn data_type(&self) -> DataType {
        self.data_type
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// sha256 of the bundle's manifest, which names the model exactly.
    pub fn manifest_sha256(&self) -> &str {
        &self.manifest_sha256
    }

    /// How outputs become values: `bernoulli`, `threshold T`, `round` or `poisson`.
    pub fn draw_description(&self) -> String {
        self.draw.describe()
    }

    /// The library ONNX Runtime was loaded from.
    pub fn ort_library(&self) -> PathBuf {
        let model = self
            .model
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        model.library().to_path_buf()
    }
}

fn choose_draw(data_type: DataType, options: &SamplerOptions) -> Result<Draw, SampleError> {
    match (data_type, options.threshold) {
        (DataType::Binary, None) => Ok(Draw::Bernoulli),
        (DataType::Binary, Some(t)) if (0.0..=1.0).contains(&t) => Ok(Draw::Threshold(t)),
        (DataType::Binary, Some(t)) => Err(SampleError::Options(format!(
            "threshold {t} is not a probability between 0 and 1"
        ))),
        (DataType::Count, Some(_)) => Err(SampleError::Options(
            "a threshold applies to binary models only; this bundle holds count data".to_owned(),
        )),
        (DataType::Count, None) => Ok(match options.counts {
            CountDraw::Round => Draw::Round,
            CountDraw::Poisson => Draw::Poisson,
        }),
    }
    .and_then(|draw| {
        if data_type == DataType::Binary && options.counts == CountDraw::Poisson {
            Err(SampleError::Options(
                "Poisson counts apply to count models only; this bundle holds binary data"
                    .to_owned(),
            ))
        } else {
            Ok(draw)
        }
    })
}

/// Refuses rows past `i64::MAX`, the largest `patient_id`.
fn check_rows(rows: &Range<u64>) -> Result<(), SampleError> {
    let fits = |row: u64| i64::try_from(row).is_ok();
    if rows.end > rows.start && !(fits(rows.start) && fits(rows.end - 1)) {
        return Err(SampleError::RowRange {
            start: rows.start,
            end: rows.end,
        });
    }
    Ok(())
}

/// Where the process would look for ONNX Runtime with this explicit path, for diagnostics.
pub fn locate_onnxruntime(explicit: Option<&Path>) -> Result<PathBuf, SampleError> {
    OrtSearch::from_environment(explicit.map(Path::to_path_buf))
        .locate()
        .map_err(|error| SampleError::Runtime(error.into()))
}
