//! Writes record batches to a Parquet file: zstd, bounded row groups, deterministic bytes, and
//! all-or-nothing (a temporary file beside the target, renamed into place when complete).

use std::collections::VecDeque;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use thiserror::Error;

use crate::export::parquet_writer::ParquetEncoder;
use crate::sampler::{SampleError, Sampler};

/// Rows per Parquet row group unless told otherwise; bounds the writer's memory.
pub const DEFAULT_ROW_GROUP_SIZE: usize = 100_000;
/// zstd level: the library's default trade of speed for size.
pub const ZSTD_LEVEL: i32 = 3;
/// Rows per batch handed to the Parquet writer (and its write batch size). The writer cuts pages
/// at batch boundaries it is given, so every file is written from batches of exactly this many
/// rows: then the bytes do not depend on the batch size the sampler ran with.
pub const WRITE_CHUNK_ROWS: usize = 1024;
/// `created_by` of every file: fixed, so equal inputs give equal bytes.
pub const CREATED_BY: &str = concat!("medgan-sample ", env!("CARGO_PKG_VERSION"));

/// How to write the file.
#[derive(Debug, Clone)]
pub struct ParquetOptions {
    /// Rows per row group; the writer holds at most one row group in memory.
    pub row_group_size: usize,
    /// Key-value pairs stored in the file footer.
    pub metadata: Vec<(String, String)>,
}

impl Default for ParquetOptions {
    fn default() -> ParquetOptions {
        ParquetOptions {
            row_group_size: DEFAULT_ROW_GROUP_SIZE,
            metadata: Vec::new(),
        }
    }
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteSummary {
    pub rows: u64,
    pub columns: usize,
    pub bytes: u64,
    pub row_groups: usize,
}

/// The file could not be written; the target is left as it was.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WriteError {
    #[error("cannot write {}: the folder {} does not exist", path.display(), folder.display())]
    NoFolder { path: PathBuf, folder: PathBuf },
    #[error("cannot write {}: it is a folder", path.display())]
    IsFolder { path: PathBuf },
    #[error("cannot write {}: the row group size is 0", path.display())]
    RowGroupSize { path: PathBuf },
    #[error("cannot write {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}", path.display())]
    Parquet {
        path: PathBuf,
        #[source]
        source: ParquetError,
    },
    #[error("cannot write {}", path.display())]
    Sample {
        path: PathBuf,
        #[source]
        source: SampleError,
    },
}

/// Checks that `path` could be written (its folder exists, it is not a folder) before any work.
pub fn check_output_path(path: &Path) -> Result<(), WriteError> {
    let folder = output_folder(path);
    if !folder.is_dir() {
        return Err(WriteError::NoFolder {
            path: path.to_path_buf(),
            folder,
        });
    }
    if path.is_dir() {
        return Err(WriteError::IsFolder {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

pub(crate) fn output_folder(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The footer metadata that says where a file came from: model, seed, rows, draw, version.
pub fn provenance(sampler: &Sampler, rows: u64) -> Vec<(String, String)> {
    [
        (
            "medgan.sampler_version",
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
        (
            "medgan.manifest_sha256",
            sampler.manifest_sha256().to_owned(),
        ),
        ("medgan.seed", sampler.seed().to_string()),
        ("medgan.rows", rows.to_string()),
        ("medgan.data_type", sampler.data_type().to_string()),
        ("medgan.draw", sampler.draw_description()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect()
}

/// Writes `batches` to `path`. `progress` hears the rows written so far after each batch. On
/// any error the temporary file is removed and an existing `path` is untouched.
pub fn write_parquet<I>(
    path: &Path,
    schema: SchemaRef,
    batches: I,
    options: &ParquetOptions,
    mut progress: impl FnMut(u64),
) -> Result<WriteSummary, WriteError>
where
    I: IntoIterator<Item = Result<RecordBatch, SampleError>>,
{
    check_output_path(path)?;
    if options.row_group_size == 0 {
        return Err(WriteError::RowGroupSize {
            path: path.to_path_buf(),
        });
    }
    let io_error = |source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    };
    let parquet_error = |source| WriteError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    // The temporary file is deleted when `temp_path` drops, i.e. on every early return.
    let (file, temp_path) = temporary_file_beside(path).map_err(io_error)?.into_parts();
    // The export's encoder: the bytes `ArrowWriter` would write, flag columns much faster.
    let mut writer = ParquetEncoder::new(BufWriter::new(file), schema.clone(), properties(options))
        .map_err(parquet_error)?;
    let mut rows = 0u64;
    for batch in Regroup::new(batches.into_iter(), schema.clone(), WRITE_CHUNK_ROWS) {
        let batch = batch.map_err(|source| WriteError::Sample {
            path: path.to_path_buf(),
            source,
        })?;
        writer.write(&batch).map_err(parquet_error)?;
        rows += batch.num_rows() as u64;
        progress(rows);
    }
    // `finish` writes the last row group and the footer and hands back the buffered file.
    let (mut buffered, row_groups) = writer.finish().map_err(parquet_error)?;
    buffered.flush().map_err(io_error)?;
    let file = buffered
        .into_inner()
        .map_err(|error| io_error(error.into_error()))?;
    file.sync_all().map_err(io_error)?;
    let bytes = file.metadata().map_err(io_error)?.len();
    drop(file);
    temp_path
        .persist(path)
        .map_err(|error| io_error(error.error))?;
    Ok(WriteSummary {
        rows,
        columns: schema.fields().len(),
        bytes,
        row_groups,
    })
}

fn properties(options: &ParquetOptions) -> WriterProperties {
    let metadata = options
        .metadata
        .iter()
        .map(|(key, value)| KeyValue::new(key.clone(), value.clone()))
        .collect();
    // ZSTD_LEVEL is within zstd's range, so `try_new` cannot fail; fall back to the default.
    let level = ZstdLevel::try_new(ZSTD_LEVEL).unwrap_or_default();
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_created_by(CREATED_BY.to_owned())
        .set_max_row_group_row_count(Some(options.row_group_size))
        .set_write_batch_size(WRITE_CHUNK_ROWS)
        .set_key_value_metadata(Some(metadata))
        .build()
}

/// Re-cuts a stream of batches into batches of exactly `rows` rows (the last may be short):
/// slices where a batch holds enough, concatenation where a chunk spans batches.
pub(crate) struct Regroup<I> {
    inner: I,
    schema: SchemaRef,
    rows: usize,
    pending: VecDeque<RecordBatch>,
    pending_rows: usize,
    failed: bool,
}

impl<I> Regroup<I> {
    pub(crate) fn new(inner: I, schema: SchemaRef, rows: usize) -> Regroup<I> {
        Regroup {
            inner,
            schema,
            rows,
            pending: VecDeque::new(),
            pending_rows: 0,
            failed: false,
        }
    }

    /// Takes up to `rows` rows off the front of the pending batches.
    fn take(&mut self, rows: usize) -> Result<RecordBatch, SampleError> {
        let mut pieces = Vec::new();
        let mut wanted = rows;
        while wanted > 0 {
            let Some(front) = self.pending.pop_front() else {
                break;
            };
            if front.num_rows() > wanted {
                pieces.push(front.slice(0, wanted));
                self.pending
                    .push_front(front.slice(wanted, front.num_rows() - wanted));
                wanted = 0;
            } else {
                wanted -= front.num_rows();
                pieces.push(front);
            }
        }
        let taken = rows - wanted;
        self.pending_rows -= taken;
        match pieces.len() {
            1 => Ok(pieces.remove(0)),
            _ => arrow_select::concat::concat_batches(&self.schema, &pieces)
                .map_err(SampleError::Arrow),
        }
    }
}

impl<I> Iterator for Regroup<I>
where
    I: Iterator<Item = Result<RecordBatch, SampleError>>,
{
    type Item = Result<RecordBatch, SampleError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        while self.pending_rows < self.rows {
            match self.inner.next() {
                Some(Ok(batch)) => {
                    self.pending_rows += batch.num_rows();
                    self.pending.push_back(batch);
                }
                Some(Err(error)) => {
                    self.failed = true;
                    return Some(Err(error));
                }
                None if self.pending_rows == 0 => return None,
                None => break,
            }
        }
        Some(self.take(self.rows))
    }
}

/// A hidden temporary file in `path`'s folder (so the final rename stays on one file system),
/// created with the permissions an ordinary new file would get.
pub(crate) fn temporary_file_beside(path: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned());
    let prefix = format!(".{}.", name.unwrap_or_default());
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".partial");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(output_folder(path))
}

/// Writes `rows` rows of `sampler` (ids `0..rows`) to `path` with provenance metadata.
pub fn sample_to_parquet(
    sampler: &Sampler,
    rows: u64,
    path: &Path,
    row_group_size: usize,
    progress: impl FnMut(u64),
) -> Result<WriteSummary, WriteError> {
    let options = ParquetOptions {
        row_group_size,
        metadata: provenance(sampler, rows),
    };
    write_parquet(
        path,
        sampler.schema(),
        sampler.record_batches(0..rows),
        &options,
        progress,
    )
}
