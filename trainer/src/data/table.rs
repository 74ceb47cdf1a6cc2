//! Opening input files (plain, gzip or Parquet, told apart by their first bytes) and reading
//! CSV records with errors that name the file, line and column.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use csv::ByteRecord;

use super::{DataError, DataResult};

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const PARQUET_MAGIC: &[u8] = b"PAR1";

/// What a file holds, judged by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    Text,
    Gzip,
    Parquet,
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Looks at a file's first bytes; a 0-byte file is an error.
pub(crate) fn sniff(path: &Path) -> DataResult<FileKind> {
    let mut start = Vec::with_capacity(4);
    File::open(path)
        .and_then(|f| f.take(4).read_to_end(&mut start))
        .map_err(io_error(path))?;
    if start.is_empty() {
        return Err(DataError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    Ok(if start.starts_with(GZIP_MAGIC) {
        FileKind::Gzip
    } else if start.starts_with(PARQUET_MAGIC) {
        FileKind::Parquet
    } else {
        FileKind::Text
    })
}

/// Opens a text file, decompressing it if it is gzip; empty content is an error.
fn open_text(path: &Path) -> DataResult<Box<dyn BufRead>> {
    let kind = sniff(path)?;
    let file = File::open(path).map_err(io_error(path))?;
    let mut reader: Box<dyn BufRead> = match kind {
        FileKind::Gzip => Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file))),
        _ => Box::new(BufReader::with_capacity(1 << 16, file)),
    };
    if reader.fill_buf().map_err(io_error(path))?.is_empty() {
        return Err(DataError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    Ok(reader)
}

/// A CSV file read record by record (RFC 4180 quoting, CRLF or LF, a leading UTF-8 BOM skipped).
pub(crate) struct CsvTable {
    path: PathBuf,
    reader: csv::Reader<Box<dyn BufRead>>,
    header: Option<Vec<String>>,
    record: ByteRecord,
    data_rows: u64,
}

impl CsvTable {
    /// Opens `path`; no record is read yet, see [`CsvTable::read_header`].
    pub fn open(path: &Path, delimiter: u8) -> DataResult<Self> {
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .delimiter(delimiter)
            .from_reader(open_text(path)?);
        Ok(Self {
            path: path.to_path_buf(),
            reader,
            header: None,
            record: ByteRecord::new(),
            data_rows: 0,
        })
    }

    /// Opens `path` and reads its first line as the header.
    pub fn open_with_header(path: &Path, delimiter: u8) -> DataResult<Self> {
        let mut table = Self::open(path, delimiter)?;
        if !table.next()? {
            return Err(DataError::EmptyFile {
                path: path.to_path_buf(),
            });
        }
        table.promote_to_header()?;
        Ok(table)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the record just read as the header instead of data.
    pub fn promote_to_header(&mut self) -> DataResult<()> {
        let names = (0..self.record.len())
            .map(|col| self.field(col).map(str::to_owned))
            .collect::<DataResult<Vec<_>>>()?;
        self.header = Some(names);
        self.data_rows -= 1;
        Ok(())
    }

    pub fn header(&self) -> Option<&[String]> {
        self.header.as_deref()
    }

    /// Number of fields per record (all records have the same, or reading fails).
    pub fn width(&self) -> usize {
        self.header.as_ref().map_or(self.record.len(), Vec::len)
    }

    /// The index of column `name`: an exact match, else the one match ignoring ASCII case.
    pub fn column(&self, name: &str) -> DataResult<usize> {
        let header = self.header.as_deref().unwrap_or(&[]);
        if let Some(col) = header.iter().position(|h| h == name) {
            return Ok(col);
        }
        let mut folded = header
            .iter()
            .enumerate()
            .filter(|(_, h)| h.eq_ignore_ascii_case(name));
        match (folded.next(), folded.next()) {
            (Some((col, _)), None) => Ok(col),
            _ => Err(DataError::MissingColumn {
                path: self.path.clone(),
                column: name.to_owned(),
                present: header.to_vec(),
            }),
        }
    }

    /// Reads the next record; false at the end of the file.
    pub fn next(&mut self) -> DataResult<bool> {
        match self.reader.read_byte_record(&mut self.record) {
            Ok(true) => {
                self.data_rows += 1;
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(err) => Err(self.csv_error(err)),
        }
    }

    fn csv_error(&self, err: csv::Error) -> DataError {
        let line = err.position().map_or(0, csv::Position::line);
        match err.into_kind() {
            csv::ErrorKind::Io(source) => DataError::Io {
                path: self.path.clone(),
                source,
            },
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => DataError::BadRecord {
                path: self.path.clone(),
                line,
                why: format!("{len} fields where the first line has {expected_len}"),
            },
            other => DataError::BadRecord {
                path: self.path.clone(),
                line,
                why: format!("{:?}", other).to_lowercase(),
            },
        }
    }

    /// Line on which the current record starts (1-based).
    pub fn line(&self) -> u64 {
        self.record.position().map_or(0, csv::Position::line)
    }

    /// Field `col` of the current record as text.
    pub fn field(&self, col: usize) -> DataResult<&str> {
        let bytes = self.record.get(col).ok_or_else(|| DataError::BadRecord {
            path: self.path.clone(),
            line: self.line(),
            why: format!("no column {}", col + 1),
        })?;
        std::str::from_utf8(bytes).map_err(|_| DataError::InvalidUtf8 {
            path: self.path.clone(),
            line: self.line(),
            column: self.column_label(col),
        })
    }

    /// "3" or "3 (`name`)" for error messages.
    pub fn column_label(&self, col: usize) -> String {
        match self.header.as_ref().and_then(|h| h.get(col)) {
            Some(name) => format!("{} (`{name}`)", col + 1),
            None => (col + 1).to_string(),
        }
    }

    /// An error about the value in column `col` of the current record.
    pub fn bad_value(&self, col: usize, why: String) -> DataError {
        DataError::BadValue {
            path: self.path.clone(),
            line: self.line(),
            column: self.column_label(col),
            why,
        }
    }

    /// Data rows read so far; an error if the file held none.
    pub fn finish(&self) -> DataResult<u64> {
        if self.data_rows == 0 {
            return Err(DataError::NoDataRows {
                path: self.path.clone(),
            });
        }
        Ok(self.data_rows)
    }
}

/// Parses a count: a non-negative decimal integer that fits 32 bits.
pub(crate) fn parse_count(text: &str) -> Result<u32, String> {
    text.parse::<u32>()
        .map_err(|_| format!("count `{text}` is not a non-negative integer"))
}
