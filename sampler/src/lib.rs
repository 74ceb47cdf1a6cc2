//! Sample synthetic patient records from a medGAN model bundle into Arrow and Parquet.
//!
//! ```no_run
//! use medgan_sample::{Bundle, Sampler, SamplerOptions};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let bundle = Bundle::open("models/diabetes")?;
//! let sampler = Sampler::new(&bundle, SamplerOptions { seed: 42, ..Default::default() })?;
//! for batch in sampler.record_batches(0..10_000) {
//!     let batch = batch?; // patient_id, then one column per code
//!     println!("{} rows", batch.num_rows());
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Row `i` depends only on the bundle, the seed and `i` (one ChaCha8 stream per row), so any
//! batch size or split of the rows gives the same records, and [`sample_to_parquet`] writes
//! the same bytes. [`export()`] writes any row range (a shard: [`Shard::rows`]) in the wide,
//! long or list [`Layout`], as Parquet, Arrow IPC or CSV, to a file, stdout or a partitioned
//! folder.
//!
//! A build embeds a default bundle when `models/DEFAULT` names one (see `build.rs`); the
//! environment variable `MEDGAN_DEFAULT_BUNDLE_DIR` names a bundle folder instead at build time.

pub mod bundle;
mod draw;
pub mod export;
pub mod layout;
pub mod names;
pub mod rows;
pub mod runtime;
mod sampler;
mod streams;
pub mod writer;

pub use bundle::manifest::{DataType, Manifest};
pub use bundle::{Bundle, BundleError, BundleProblem};
pub use export::format::{Compression, Format};
pub use export::{ExportError, ExportOptions, ExportSummary, Target, export};
pub use layout::{Labels, Layout};
pub use rows::{Shard, parse_row_range};
pub use runtime::locate::{LocateError, OrtSearch};
pub use runtime::{Device, RuntimeError};
pub use sampler::{
    CountDraw, DEFAULT_BATCH_SIZE, Inferred, SampleError, Sampler, SamplerOptions,
    locate_onnxruntime,
};
pub use writer::{ParquetOptions, WriteError, WriteSummary, sample_to_parquet, write_parquet};
