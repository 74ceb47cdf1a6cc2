//! Exports a row range of a sampler: a layout, a format, and a target (one file written
//! all-or-nothing, stdout, or a partitioned folder of part files), with provenance metadata.
//!
//! The wide batches are re-cut into chunks of [`WRITE_CHUNK_ROWS`] patients before they are
//! reshaped and encoded, so the bytes written depend on the model, seed, rows and options only,
//! never on the batch size or thread count. Three stages overlap on their own threads: noise and
//! inference, draws and reshaping, encoding and writing, a few batches apart (Parquet compresses
//! each finished row group's flag columns on more threads, see `parquet_writer`).

mod flags;
pub mod format;
pub(crate) mod parquet_writer;
mod partitioned;

use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use arrow_array::RecordBatch;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::layout::{Labels, Layout, Shaper};
use crate::rows::Shard;
use crate::sampler::{SampleError, Sampler};
use crate::writer::{DEFAULT_ROW_GROUP_SIZE, Regroup, WRITE_CHUNK_ROWS, WriteError};
use format::{Compression, Encoder, Encoding, Format, FormatError};
pub use partitioned::{DATASET_MANIFEST, DEFAULT_PART_ROWS, PartSummary, SUCCESS_FILE};

/// Model outputs waiting for their draws: one is enough to overlap the stages, and each holds a
/// whole batch of `f32` outputs (16 MB for 4096 rows of 1000 codes).
const INFERRED_DEPTH: usize = 1;
/// Reshaped chunks waiting for the encoder. A wide chunk of 1000 flag columns is ~130 KB, and
/// the encoder stops for tens of milliseconds to compress each finished row group; enough
/// chunks to cover that keep sampling going meanwhile.
const CHUNK_DEPTH: usize = 16;

/// Where the rows go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One file, written beside itself under a temporary name and renamed when complete.
    File(PathBuf),
    /// Standard output, as the rows are encoded.
    Stdout,
    /// A folder of `part-NNNNN.<ext>` files of `part_rows` patients each, `_manifest.json` and
    /// `_SUCCESS` last.
    Partitioned { dir: PathBuf, part_rows: u64 },
}

impl Target {
    fn describe(&self) -> String {
        match self {
            Target::File(path) => path.display().to_string(),
            Target::Stdout => "<stdout>".to_owned(),
            Target::Partitioned { dir, .. } => dir.display().to_string(),
        }
    }
}

/// How to lay out and encode the rows.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub format: Format,
    pub layout: Layout,
    /// Labels for a `label` column (long layout only).
    pub labels: Option<Labels>,
    /// Parquet only.
    pub compression: Compression,
    /// Parquet rows (of the output table) per row group.
    pub row_group_size: usize,
    /// Rename wide code columns to safe names, the mapping kept in the metadata.
    pub spark_safe_names: bool,
    /// The whole request and the shard this run is, for the metadata.
    pub request: Option<(u64, Shard)>,
}

impl Default for ExportOptions {
    fn default() -> ExportOptions {
        ExportOptions {
            format: Format::Parquet,
            layout: Layout::Wide,
            labels: None,
            compression: Compression::default(),
            row_group_size: DEFAULT_ROW_GROUP_SIZE,
            spark_safe_names: false,
            request: None,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    /// Patients (sampler rows) written.
    pub patients: u64,
    /// Rows of the output table (equal to `patients` in the wide and list layouts).
    pub rows: u64,
    pub columns: usize,
    pub bytes: u64,
    /// Parquet row groups over all files.
    pub row_groups: usize,
    /// The part files of a partitioned target, empty otherwise.
    pub parts: Vec<PartSummary>,
}

/// The export failed; a file target is left as it was, a partitioned folder without parts.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ExportError {
    #[error("{0}")]
    Options(String),
    #[error(transparent)]
    Target(#[from] WriteError),
    #[error("cannot write {target}")]
    Io {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {target}")]
    Format {
        target: String,
        #[source]
        source: FormatError,
    },
    #[error("cannot write {target}")]
    Sample {
        target: String,
        #[source]
        source: SampleError,
    },
}

/// Checks options that do not fit together, before any sampling.
pub fn check_options(options: &ExportOptions) -> Result<(), ExportError> {
    if options.row_group_size == 0 {
        return Err(ExportError::Options("the row group size is 0".to_owned()));
    }
    if options.format == Format::Csv && options.layout == Layout::List {
        return Err(ExportError::Options(
            "CSV cannot hold the list layout's lists; use --format parquet or arrow, or \
             --layout long"
                .to_owned(),
        ));
    }
    if options.labels.is_some() && options.layout != Layout::Long {
        return Err(ExportError::Options(format!(
            "--labels applies to the long layout only, not to the {} layout",
            options.layout.name()
        )));
    }
    Ok(())
}

/// Writes `rows` of `sampler` to `target`. `progress` hears the patients written so far.
pub fn export(
    sampler: &Sampler,
    rows: Range<u64>,
    target: &Target,
    options: &ExportOptions,
    mut progress: impl FnMut(u64),
) -> Result<ExportSummary, ExportError> {
    check_options(options)?;
    let shaper = shaper(sampler, options)?;
    match target {
        Target::File(path) => {
            let summary = write_file(sampler, rows, path, &shaper, options, &mut |n| progress(n))?;
            Ok(summary.into_summary(&shaper))
        }
        Target::Stdout => {
            let out = BufWriter::with_capacity(1 << 20, std::io::stdout());
            let written = encode(
                sampler,
                rows,
                out,
                &shaper,
                options,
                "<stdout>",
                &mut progress,
            )?;
            let (mut out, summary) = written;
            out.flush().map_err(|source| ExportError::Io {
                target: target.describe(),
                source,
            })?;
            Ok(summary.into_summary(&shaper))
        }
        Target::Partitioned { dir, part_rows } => partitioned::write(
            sampler,
            rows,
            dir,
            *part_rows,
            &shaper,
            options,
            &mut progress,
        ),
    }
}

fn shaper(sampler: &Sampler, options: &ExportOptions) -> Result<Shaper, ExportError> {
    Shaper::new(
        sampler.features(),
        sampler.data_type(),
        options.layout,
        options.labels.as_ref(),
        options.spark_safe_names,
    )
    .map_err(ExportError::Options)
}

/// Footer (Parquet) or schema (Arrow IPC) metadata: where the rows came from, nothing that
/// depends on the time or place of the run.
pub fn provenance(
    sampler: &Sampler,
    rows: &Range<u64>,
    shaper: &Shaper,
    options: &ExportOptions,
) -> Vec<(String, String)> {
    let mut pairs = vec![
        (
            "medgan.sampler_version",
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
        (
            "medgan.manifest_sha256",
            sampler.manifest_sha256().to_owned(),
        ),
        ("medgan.seed", sampler.seed().to_string()),
        ("medgan.row_start", rows.start.to_string()),
        ("medgan.row_end", rows.end.to_string()),
        ("medgan.rows", (rows.end - rows.start).to_string()),
        ("medgan.data_type", sampler.data_type().to_string()),
        ("medgan.draw", sampler.draw_description()),
        ("medgan.layout", shaper.layout().name().to_owned()),
    ];
    if let Some((total, shard)) = options.request {
        pairs.push(("medgan.request_rows", total.to_string()));
        pairs.push(("medgan.shard", shard.to_string()));
    }
    if let Some(renamed) = shaper.renamed_columns() {
        let mapping: serde_json::Map<String, serde_json::Value> = renamed
            .iter()
            .map(|(name, code)| (name.clone(), serde_json::Value::from(code.as_str())))
            .collect();
        pairs.push((
            "medgan.column_codes",
            serde_json::Value::Object(mapping).to_string(),
        ));
    }
    pairs
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect()
}

/// Totals of one encoded output.
#[derive(Debug, Clone, Default)]
pub(crate) struct Encoded {
    pub(crate) patients: u64,
    pub(crate) rows: u64,
    pub(crate) row_groups: usize,
    pub(crate) bytes: u64,
    pub(crate) sha256: String,
}

impl Encoded {
    fn into_summary(self, shaper: &Shaper) -> ExportSummary {
        ExportSummary {
            patients: self.patients,
            rows: self.rows,
            columns: shaper.schema().fields().len(),
            bytes: self.bytes,
            row_groups: self.row_groups,
            parts: Vec::new(),
        }
    }
}

/// Counts and hashes what passes through to `inner`.
pub(crate) struct Hashing<W> {
    inner: W,
    bytes: u64,
    hasher: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.bytes += written as u64;
        self.hasher.update(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Samples `rows`, reshapes and encodes them into `out`; returns `out` (flushed by the encoder,
/// not synced) and the totals.
pub(crate) fn encode<W: Write + Send>(
    sampler: &Sampler,
    rows: Range<u64>,
    out: W,
    shaper: &Shaper,
    options: &ExportOptions,
    target: &str,
    progress: &mut dyn FnMut(u64),
) -> Result<(W, Encoded), ExportError> {
    let format_error = |source| ExportError::Format {
        target: target.to_owned(),
        source,
    };
    let encoding = Encoding {
        format: options.format,
        compression: options.compression,
        row_group_size: options.row_group_size,
        metadata: provenance(sampler, &rows, shaper, options),
    };
    let hashing = Hashing {
        inner: out,
        bytes: 0,
        hasher: Sha256::new(),
    };
    let schema = shaper.schema();
    let mut encoder = Encoder::new(hashing, &schema, &encoding).map_err(format_error)?;
    let mut totals = Encoded::default();
    std::thread::scope(|scope| -> Result<(), ExportError> {
        let (sender, receiver) =
            mpsc::sync_channel::<Result<(u64, RecordBatch), SampleError>>(CHUNK_DEPTH);
        let (inferred_sender, inferred) = mpsc::sync_channel(INFERRED_DEPTH);
        // Stage 1: noise and ONNX Runtime, batch after batch.
        scope.spawn(move || {
            let mut next = rows.start;
            while next < rows.end {
                let end = rows
                    .end
                    .min(next.saturating_add(sampler.batch_size() as u64));
                let result = sampler.infer(next..end);
                let failed = result.is_err();
                // A closed channel means a later stage stopped on an error of its own.
                if inferred_sender.send(result).is_err() || failed {
                    break;
                }
                next = end;
            }
        });
        // Stage 2: draws, re-cut into fixed chunks, reshaped to the layout.
        scope.spawn(move || {
            let drawn = inferred
                .into_iter()
                .map(|result: Result<_, SampleError>| result.and_then(|i| sampler.draw(i)));
            let chunks = Regroup::new(drawn, sampler.schema(), WRITE_CHUNK_ROWS);
            for chunk in chunks {
                let shaped = chunk.and_then(|wide| {
                    let patients = wide.num_rows() as u64;
                    let shaped = shaper.shape(&wide).map_err(SampleError::Arrow)?;
                    Ok((patients, shaped))
                });
                let failed = shaped.is_err();
                if sender.send(shaped).is_err() || failed {
                    break;
                }
            }
        });
        // Stage 3, here: encoding and writing.
        for received in receiver {
            let (patients, batch) = received.map_err(|source| ExportError::Sample {
                target: target.to_owned(),
                source,
            })?;
            encoder.write(&batch).map_err(format_error)?;
            totals.patients += patients;
            totals.rows += batch.num_rows() as u64;
            progress(totals.patients);
        }
        Ok(())
    })?;
    let (hashing, row_groups) = encoder.finish().map_err(format_error)?;
    let Hashing {
        mut inner,
        bytes,
        hasher,
    } = hashing;
    inner.flush().map_err(|source| ExportError::Io {
        target: target.to_owned(),
        source,
    })?;
    totals.row_groups = row_groups;
    totals.bytes = bytes;
    totals.sha256 = hex::encode(hasher.finalize());
    Ok((inner, totals))
}

/// Writes one file under a temporary name beside `path`, synced, then renamed over `path`.
pub(crate) fn write_file(
    sampler: &Sampler,
    rows: Range<u64>,
    path: &Path,
    shaper: &Shaper,
    options: &ExportOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<Encoded, ExportError> {
    crate::writer::check_output_path(path)?;
    let target = path.display().to_string();
    let io_error = |source| ExportError::Io {
        target: target.clone(),
        source,
    };
    // The temporary file is deleted when `temp_path` drops, i.e. on every early return.
    let (file, temp_path) = crate::writer::temporary_file_beside(path)
        .map_err(io_error)?
        .into_parts();
    let out = BufWriter::with_capacity(1 << 20, file);
    let (out, encoded) = encode(sampler, rows, out, shaper, options, &target, progress)?;
    let file = out
        .into_inner()
        .map_err(|error| io_error(error.into_error()))?;
    file.sync_all().map_err(io_error)?;
    drop(file);
    temp_path
        .persist(path)
        .map_err(|error| io_error(error.error))?;
    Ok(encoded)
}
