//! A partitioned dataset: `part-00000.<ext>`, ... of a fixed number of patients each, then
//! `_manifest.json` (rows, and each part's rows, bytes and sha256), then an empty `_SUCCESS`.
//!
//! Spark, Hive, DuckDB and pyarrow read such a folder as one table and skip names starting with
//! `_` or `.`. Each part is written under a hidden temporary name and renamed when complete, and
//! `_SUCCESS` comes last, so a reader never sees a half-written part and an orchestrator can
//! wait for `_SUCCESS`. A run that fails removes the parts it wrote; one that is killed leaves
//! whole parts but no `_SUCCESS`.

use std::ops::Range;
use std::path::Path;

use serde::Serialize;

use super::{Encoded, ExportError, ExportOptions, ExportSummary, write_file};
use crate::layout::Shaper;
use crate::sampler::Sampler;

/// Patients per part file unless told otherwise.
pub const DEFAULT_PART_ROWS: u64 = 1_000_000;
/// Written last, empty: the dataset is complete.
pub const SUCCESS_FILE: &str = "_SUCCESS";
/// The dataset's own summary.
pub const DATASET_MANIFEST: &str = "_manifest.json";

/// One part file as `_manifest.json` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartSummary {
    pub file: String,
    /// Global patient rows `row_start..row_end` of this part.
    pub row_start: u64,
    pub row_end: u64,
    /// Rows of the output table in this part.
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Serialize)]
struct DatasetManifest<'a> {
    sampler_version: &'a str,
    manifest_sha256: &'a str,
    seed: u64,
    format: &'a str,
    layout: &'a str,
    row_start: u64,
    row_end: u64,
    patients: u64,
    rows: u64,
    parts: &'a [PartSummary],
}

/// The part files' patient ranges: `part_rows` each, the last shorter; one empty part for an
/// empty range, so that the dataset still has a schema.
fn part_ranges(rows: &Range<u64>, part_rows: u64) -> Vec<Range<u64>> {
    let mut ranges = Vec::new();
    let mut start = rows.start;
    while start < rows.end {
        let end = rows.end.min(start.saturating_add(part_rows));
        ranges.push(start..end);
        start = end;
    }
    if ranges.is_empty() {
        ranges.push(rows.clone());
    }
    ranges
}

pub(super) fn write(
    sampler: &Sampler,
    rows: Range<u64>,
    dir: &Path,
    part_rows: u64,
    shaper: &Shaper,
    options: &ExportOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<ExportSummary, ExportError> {
    let target = dir.display().to_string();
    let io_error = |source| ExportError::Io {
        target: target.clone(),
        source,
    };
    if part_rows == 0 {
        return Err(ExportError::Options("the rows per part are 0".to_owned()));
    }
    prepare_folder(dir).map_err(|error| match error {
        Prepared::Io(source) => io_error(source),
        Prepared::NotEmpty => ExportError::Options(format!(
            "cannot write the dataset {target}: the folder is not empty (a dataset is written \
             into a new or empty folder)"
        )),
    })?;

    let extension = options.format.extension();
    let mut done = 0u64;
    let parts = write_parts(dir, &rows, part_rows, extension, |range, path| {
        let before = done;
        let encoded = write_file(sampler, range.clone(), path, shaper, options, &mut |n| {
            progress(before + n)
        })?;
        done += range.end - range.start;
        Ok(encoded)
    })?;
    let mut total = Encoded::default();
    for (part, encoded) in &parts {
        total.patients += part.row_end - part.row_start;
        total.rows += part.rows;
        total.bytes += part.bytes;
        total.row_groups += encoded.row_groups;
    }
    let listed: Vec<PartSummary> = parts.into_iter().map(|(part, _)| part).collect();
    let manifest = DatasetManifest {
        sampler_version: env!("CARGO_PKG_VERSION"),
        manifest_sha256: sampler.manifest_sha256(),
        seed: sampler.seed(),
        format: options.format.name(),
        layout: shaper.layout().name(),
        row_start: rows.start,
        row_end: rows.end,
        patients: total.patients,
        rows: total.rows,
        parts: &listed,
    };
    let finish = || -> std::io::Result<()> {
        let mut text = serde_json::to_string_pretty(&manifest).map_err(std::io::Error::other)?;
        text.push('\n');
        write_small_file(&dir.join(DATASET_MANIFEST), text.as_bytes())?;
        write_small_file(&dir.join(SUCCESS_FILE), b"")
    };
    if let Err(error) = finish() {
        for part in &listed {
            let _ = std::fs::remove_file(dir.join(&part.file));
        }
        let _ = std::fs::remove_file(dir.join(DATASET_MANIFEST));
        return Err(io_error(error));
    }
    let mut summary = total.into_summary(shaper);
    summary.parts = listed;
    Ok(summary)
}

/// Writes the part files one after another with `write_part(rows, path)`; on an error removes
/// the parts already written, so that nothing of a failed run looks like data.
fn write_parts(
    dir: &Path,
    rows: &Range<u64>,
    part_rows: u64,
    extension: &str,
    mut write_part: impl FnMut(&Range<u64>, &Path) -> Result<Encoded, ExportError>,
) -> Result<Vec<(PartSummary, Encoded)>, ExportError> {
    let mut parts: Vec<(PartSummary, Encoded)> = Vec::new();
    for (index, range) in part_ranges(rows, part_rows).into_iter().enumerate() {
        let file = format!("part-{index:05}.{extension}");
        let encoded = match write_part(&range, &dir.join(&file)) {
            Ok(encoded) => encoded,
            Err(error) => {
                for (part, _) in &parts {
                    let _ = std::fs::remove_file(dir.join(&part.file));
                }
                return Err(error);
            }
        };
        let part = PartSummary {
            file,
            row_start: range.start,
            row_end: range.end,
            rows: encoded.rows,
            bytes: encoded.bytes,
            sha256: encoded.sha256.clone(),
        };
        parts.push((part, encoded));
    }
    Ok(parts)
}

enum Prepared {
    Io(std::io::Error),
    NotEmpty,
}

/// Creates `dir` (and its parents) or accepts it empty.
fn prepare_folder(dir: &Path) -> Result<(), Prepared> {
    std::fs::create_dir_all(dir).map_err(Prepared::Io)?;
    let mut entries = std::fs::read_dir(dir).map_err(Prepared::Io)?;
    match entries.next() {
        None => Ok(()),
        Some(_) => Err(Prepared::NotEmpty),
    }
}

/// A small file written under a temporary name and renamed, so it appears whole or not at all.
fn write_small_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut temp = crate::writer::temporary_file_beside(path)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|error| error.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_rows_in_order() {
        assert_eq!(part_ranges(&(10..35), 10), [10..20, 20..30, 30..35]);
        assert_eq!(part_ranges(&(0..20), 10), [0..10, 10..20]);
        let empty = part_ranges(&(5..5), 10);
        assert_eq!((empty.len(), &empty[0]), (1, &(5..5)));
    }

    #[test]
    fn a_failing_part_takes_the_finished_parts_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let error = write_parts(dir.path(), &(0..50), 10, "parquet", |range, path| {
            if range.start == 30 {
                return Err(ExportError::Options("injected failure".to_owned()));
            }
            std::fs::write(path, b"part").unwrap();
            Ok(Encoded::default())
        })
        .unwrap_err();
        assert!(error.to_string().contains("injected failure"));
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");

        let parts = write_parts(dir.path(), &(0..25), 10, "csv", |_, path| {
            std::fs::write(path, b"part").unwrap();
            Ok(Encoded::default())
        })
        .unwrap();
        let names: Vec<_> = parts.iter().map(|(part, _)| part.file.as_str()).collect();
        assert_eq!(
            names,
            ["part-00000.csv", "part-00001.csv", "part-00002.csv"]
        );
        assert_eq!((parts[2].0.row_start, parts[2].0.row_end), (20, 25));
    }
}
