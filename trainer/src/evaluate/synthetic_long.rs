//! Reads the sampler's long-layout Parquet (`patient_id`, `code`[, `count`]) into a matrix.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::Path;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_schema::{DataType as ArrowType, Schema};
use medgan_sample::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::EvalError;
use super::synthetic::{ColumnMatch, PATIENT_ID_COLUMN, integer_values};
use crate::data::PatientMatrix;

/// Column of the code strings in the long layout.
pub const CODE_COLUMN: &str = "code";
/// Column of the counts in the long layout of count models.
pub const COUNT_COLUMN: &str = "count";

/// Whether a file's schema is the sampler's long layout rather than its wide one.
pub fn is_long_layout(schema: &Schema) -> bool {
    schema
        .field_with_name(CODE_COLUMN)
        .is_ok_and(|field| field.data_type() == &ArrowType::Utf8)
        && schema.field_with_name(PATIENT_ID_COLUMN).is_ok()
}

/// Reads a long-layout file into a matrix whose column `j` is `vocabulary[j]`.
///
/// Patients without codes have no row in this layout, so the patients are the rows
/// `medgan.row_start..medgan.row_end` the sampler records in the file's metadata; a file
/// without that metadata counts only the patients that appear, which hides all-zero records.
pub fn read_long(
    path: &Path,
    vocabulary: &[String],
) -> Result<(PatientMatrix, ColumnMatch, bool), EvalError> {
    let bad = |why: String| EvalError::Synthetic {
        path: path.to_path_buf(),
        why,
    };
    let file = File::open(path).map_err(|e| bad(e.to_string()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(e.to_string()))?;
    let metadata = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned();
    let meta = |key: &str| {
        metadata
            .as_ref()?
            .iter()
            .find(|kv| kv.key == key)?
            .value
            .as_ref()?
            .parse::<i64>()
            .ok()
    };
    let row_range = meta("medgan.row_start").zip(meta("medgan.row_end"));
    let schema = builder.schema().clone();
    let index = |name: &str| schema.index_of(name).ok();
    let id_field = index(PATIENT_ID_COLUMN).ok_or_else(|| bad("no `patient_id` column".into()))?;
    let code_field = index(CODE_COLUMN).ok_or_else(|| bad("no `code` column".into()))?;
    let count_field = index(COUNT_COLUMN);
    let position: HashMap<&str, u32> = vocabulary
        .iter()
        .enumerate()
        .map(|(j, code)| (code.as_str(), j as u32))
        .collect();

    let mut cells: BTreeMap<i64, BTreeMap<u32, u32>> = BTreeMap::new();
    let mut extra = BTreeSet::new();
    let mut row = 0usize;
    for batch in builder.build().map_err(|e| bad(e.to_string()))? {
        let batch = batch.map_err(|e| bad(e.to_string()))?;
        let ids: Vec<Option<i64>> = match batch.column(id_field).data_type() {
            ArrowType::Int64 => batch
                .column(id_field)
                .as_primitive::<Int64Type>()
                .iter()
                .collect(),
            other => return Err(bad(format!("`patient_id` is {other}, expected Int64"))),
        };
        let codes = arrow_array::cast::as_string_array(batch.column(code_field));
        let counts = count_field
            .map(|f| integer_values(batch.column(f).as_ref()))
            .transpose()
            .map_err(bad)?;
        for r in 0..batch.num_rows() {
            let at = row + r;
            let id = ids[r].ok_or_else(|| bad(format!("`patient_id` is null in row {at}")))?;
            if codes.is_null(r) {
                return Err(bad(format!("`code` is null in row {at}")));
            }
            let count = match &counts {
                Some(counts) => match counts[r] {
                    Some(n) if n >= 0 && n <= u32::MAX as i64 => n as u32,
                    Some(n) => return Err(bad(format!("row {at}: count {n} is out of range"))),
                    None => return Err(bad(format!("`count` is null in row {at}"))),
                },
                None => 1,
            };
            match position.get(codes.value(r)) {
                Some(&j) if count > 0 => {
                    *cells.entry(id).or_default().entry(j).or_insert(0) += count
                }
                Some(_) => {}
                None => {
                    extra.insert(codes.value(r).to_string());
                }
            }
        }
        row += batch.num_rows();
    }

    let patients: Vec<i64> = match row_range {
        Some((start, end)) => (start..end).collect(),
        None => cells.keys().copied().collect(),
    };
    let (mut indptr, mut indices, mut values) = (vec![0u64], Vec::new(), Vec::new());
    for id in &patients {
        for (&j, &v) in cells.get(id).into_iter().flatten() {
            indices.push(j);
            values.push(v);
        }
        indptr.push(indices.len() as u64);
    }
    if let Some((start, end)) = row_range
        && let Some(outside) = cells.keys().find(|&&id| id < start || id >= end)
    {
        return Err(bad(format!(
            "patient_id {outside} lies outside the file's recorded rows {start}..{end}"
        )));
    }
    let data_type = if count_field.is_some() {
        DataType::Count
    } else {
        DataType::Binary
    };
    let ids = patients.iter().map(|id| id.to_string()).collect();
    let matrix =
        PatientMatrix::from_csr(data_type, vocabulary.to_vec(), ids, indptr, indices, values)
            .map_err(|e| bad(e.to_string()))?;
    let columns = ColumnMatch {
        matched: vocabulary.len(),
        missing: Vec::new(),
        extra: extra.into_iter().collect(),
    };
    Ok((matrix, columns, row_range.is_some()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use parquet::arrow::ArrowWriter;
    use parquet::file::metadata::KeyValue;
    use parquet::file::properties::WriterProperties;

    use super::*;

    fn write_long(path: &Path, ids: &[i64], codes: &[&str], range: Option<(i64, i64)>) {
        let batch = RecordBatch::try_from_iter([
            (
                PATIENT_ID_COLUMN,
                Arc::new(Int64Array::from(ids.to_vec())) as ArrayRef,
            ),
            (
                CODE_COLUMN,
                Arc::new(StringArray::from(codes.to_vec())) as ArrayRef,
            ),
        ])
        .unwrap();
        let metadata = range.map(|(start, end)| {
            vec![
                KeyValue::new("medgan.row_start".into(), start.to_string()),
                KeyValue::new("medgan.row_end".into(), end.to_string()),
            ]
        });
        let props = WriterProperties::builder()
            .set_key_value_metadata(metadata)
            .build();
        let mut writer =
            ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }

    #[test]
    fn patients_without_codes_come_back_from_the_row_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long.parquet");
        write_long(&path, &[10, 10, 12], &["b", "a", "zz"], Some((10, 14)));
        let vocab = vec!["a".to_string(), "b".to_string()];
        let (m, columns, ranged) = read_long(&path, &vocab).unwrap();
        assert!(ranged);
        assert_eq!(m.n_patients(), 4, "rows 10..14, two of them without codes");
        assert_eq!(m.row(0), (&[0u32, 1][..], &[1u32, 1][..]));
        assert_eq!(m.row(1).0.len() + m.row(2).0.len() + m.row(3).0.len(), 0);
        assert_eq!(columns.extra, vec!["zz".to_string()]);
    }

    #[test]
    fn without_a_range_only_listed_patients_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long.parquet");
        write_long(&path, &[3, 5], &["a", "a"], None);
        let (m, _, ranged) = read_long(&path, &["a".to_string()]).unwrap();
        assert!(!ranged);
        assert_eq!(m.n_patients(), 2);
        assert_eq!(m.patients_per_code(), vec![2]);
    }
}
