//! File formats behind one writer: Parquet, Arrow IPC file and stream, CSV; each writes to any
//! `Write` (a file or stdout), with no seeking, and nothing time-dependent in its bytes.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, Schema, SchemaRef};
use parquet::basic::{Compression as ParquetCompression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use thiserror::Error;

use super::parquet_writer::ParquetEncoder;
use crate::writer::{CREATED_BY, WRITE_CHUNK_ROWS, ZSTD_LEVEL};

/// An output file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Apache Parquet; row groups are encoded in memory, one at a time.
    Parquet,
    /// Arrow IPC file (random access, `.arrow`; also what Feather v2 is).
    ArrowFile,
    /// Arrow IPC stream (`.arrows`), for pipes.
    ArrowStream,
    /// Comma-separated values with a header row; booleans as `true`/`false`.
    Csv,
}

impl Format {
    /// The format a file name's extension says, if it says one.
    pub fn from_path(path: &Path) -> Option<Format> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "parquet" | "pq" => Some(Format::Parquet),
            "arrow" | "feather" | "ipc" => Some(Format::ArrowFile),
            "arrows" => Some(Format::ArrowStream),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }

    /// The extension of part files in this format.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::ArrowFile => "arrow",
            Format::ArrowStream => "arrows",
            Format::Csv => "csv",
        }
    }

    /// The name `--format` takes.
    pub fn name(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::ArrowFile => "arrow",
            Format::ArrowStream => "arrow-stream",
            Format::Csv => "csv",
        }
    }

    /// Whether the format stores key-value metadata (CSV does not).
    pub fn keeps_metadata(self) -> bool {
        self != Format::Csv
    }
}

/// Parquet column compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// zstd at a level from 1 to 22.
    Zstd(i32),
    Snappy,
    None,
}

impl Default for Compression {
    fn default() -> Compression {
        Compression::Zstd(ZSTD_LEVEL)
    }
}

impl FromStr for Compression {
    type Err = String;

    fn from_str(text: &str) -> Result<Compression, String> {
        let refuse = || {
            format!(
                "`{text}` is not a compression: expected zstd, zstd:LEVEL (1-22), snappy or none"
            )
        };
        match text.split_once(':') {
            None if text == "zstd" => Ok(Compression::Zstd(ZSTD_LEVEL)),
            None if text == "snappy" => Ok(Compression::Snappy),
            None if text == "none" || text == "uncompressed" => Ok(Compression::None),
            Some(("zstd", level)) => match level.parse::<i32>() {
                Ok(level) if (1..=22).contains(&level) => Ok(Compression::Zstd(level)),
                _ => Err(refuse()),
            },
            _ => Err(refuse()),
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Compression::Zstd(level) => write!(f, "zstd:{level}"),
            Compression::Snappy => f.write_str("snappy"),
            Compression::None => f.write_str("none"),
        }
    }
}

/// An encoder failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FormatError {
    #[error(transparent)]
    Parquet(#[from] ParquetError),
    #[error(transparent)]
    Arrow(#[from] ArrowError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// How to encode.
#[derive(Debug, Clone)]
pub(crate) struct Encoding {
    pub(crate) format: Format,
    pub(crate) compression: Compression,
    pub(crate) row_group_size: usize,
    pub(crate) metadata: Vec<(String, String)>,
}

/// One open encoder over `W`.
pub(crate) enum Encoder<W: Write + Send> {
    Parquet(Box<ParquetEncoder<W>>),
    ArrowFile(arrow_ipc::writer::FileWriter<W>, SchemaRef),
    ArrowStream(arrow_ipc::writer::StreamWriter<W>, SchemaRef),
    Csv(arrow_csv::Writer<W>),
}

impl<W: Write + Send> Encoder<W> {
    pub(crate) fn new(
        out: W,
        schema: &SchemaRef,
        encoding: &Encoding,
    ) -> Result<Self, FormatError> {
        // IPC keeps metadata in the schema; Parquet in its footer (the Arrow schema it embeds
        // stays bare, so a file reads back with the very schema the sampler gives).
        let with_metadata = || -> SchemaRef {
            let metadata: HashMap<String, String> = encoding.metadata.iter().cloned().collect();
            Arc::new(Schema::new_with_metadata(schema.fields().clone(), metadata))
        };
        Ok(match encoding.format {
            Format::Parquet => Encoder::Parquet(Box::new(ParquetEncoder::new(
                out,
                schema.clone(),
                parquet_properties(encoding),
            )?)),
            Format::ArrowFile => {
                let schema = with_metadata();
                let writer = arrow_ipc::writer::FileWriter::try_new(out, &schema)?;
                Encoder::ArrowFile(writer, schema)
            }
            Format::ArrowStream => {
                let schema = with_metadata();
                let writer = arrow_ipc::writer::StreamWriter::try_new(out, &schema)?;
                Encoder::ArrowStream(writer, schema)
            }
            Format::Csv => {
                Encoder::Csv(arrow_csv::WriterBuilder::new().with_header(true).build(out))
            }
        })
    }

    pub(crate) fn write(&mut self, batch: &RecordBatch) -> Result<(), FormatError> {
        match self {
            Encoder::Parquet(writer) => writer.write(batch)?,
            Encoder::ArrowFile(writer, schema) => {
                writer.write(&batch.clone().with_schema(schema.clone())?)?
            }
            Encoder::ArrowStream(writer, schema) => {
                writer.write(&batch.clone().with_schema(schema.clone())?)?
            }
            Encoder::Csv(writer) => writer.write(batch)?,
        }
        Ok(())
    }

    /// Writes any footer and hands back the output with the number of Parquet row groups
    /// (0 for other formats).
    pub(crate) fn finish(self) -> Result<(W, usize), FormatError> {
        Ok(match self {
            Encoder::Parquet(encoder) => encoder.finish()?,
            Encoder::ArrowFile(mut writer, _) => {
                writer.finish()?;
                (writer.into_inner()?, 0)
            }
            Encoder::ArrowStream(mut writer, _) => {
                writer.finish()?;
                (writer.into_inner()?, 0)
            }
            Encoder::Csv(writer) => (writer.into_inner(), 0),
        })
    }
}

fn parquet_properties(encoding: &Encoding) -> WriterProperties {
    let metadata = encoding
        .metadata
        .iter()
        .map(|(key, value)| KeyValue::new(key.clone(), value.clone()))
        .collect();
    let compression = match encoding.compression {
        // The level was checked when parsed; fall back to the default rather than panic.
        Compression::Zstd(level) => {
            ParquetCompression::ZSTD(ZstdLevel::try_new(level).unwrap_or_default())
        }
        Compression::Snappy => ParquetCompression::SNAPPY,
        Compression::None => ParquetCompression::UNCOMPRESSED,
    };
    WriterProperties::builder()
        .set_compression(compression)
        .set_created_by(CREATED_BY.to_owned())
        .set_max_row_group_row_count(Some(encoding.row_group_size))
        .set_write_batch_size(WRITE_CHUNK_ROWS)
        .set_key_value_metadata(Some(metadata))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressions_parse_and_print_back() {
        for text in ["zstd:3", "zstd:19", "snappy", "none"] {
            assert_eq!(text.parse::<Compression>().unwrap().to_string(), text);
        }
        assert_eq!("zstd".parse(), Ok(Compression::Zstd(ZSTD_LEVEL)));
        for bad in ["zstd:0", "zstd:23", "gzip", "zstd:x", ""] {
            let error = bad.parse::<Compression>().unwrap_err();
            assert!(error.contains(&format!("`{bad}`")), "{error}");
        }
    }

    #[test]
    fn extensions_name_formats() {
        let of = |name: &str| Format::from_path(Path::new(name));
        assert_eq!(of("a/b.parquet"), Some(Format::Parquet));
        assert_eq!(of("x.ARROW"), Some(Format::ArrowFile));
        assert_eq!(of("x.arrows"), Some(Format::ArrowStream));
        assert_eq!(of("x.csv"), Some(Format::Csv));
        assert_eq!(of("x.txt"), None);
        assert_eq!(of("-"), None);
    }
}
