//! Reads the sampler's Parquet output (wide, or long through `synthetic_long`) into a sparse
//! matrix in the real vocabulary's order.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_schema::DataType as ArrowType;
use medgan_sample::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

use super::EvalError;
use crate::data::PatientMatrix;

/// Name of the id column the sampler writes first.
pub const PATIENT_ID_COLUMN: &str = "patient_id";

/// How the code columns of a synthetic (or held-out) file lined up with the real vocabulary.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ColumnMatch {
    /// Real codes found as columns of the other file.
    pub matched: usize,
    /// Real codes with no column in the other file: read as all zero, and listed here.
    pub missing: Vec<String>,
    /// Columns of the other file naming no real code: left out of every metric.
    pub extra: Vec<String>,
}

/// The values of an Int32 or Int64 column as i64 (the sampler writes Int32 counts; other
/// writers may use Int64); an error naming the type for any other column.
pub(crate) fn integer_values(column: &dyn Array) -> Result<Vec<Option<i64>>, String> {
    match column.data_type() {
        ArrowType::Int32 => Ok(column
            .as_primitive::<Int32Type>()
            .iter()
            .map(|v| v.map(i64::from))
            .collect()),
        ArrowType::Int64 => Ok(column.as_primitive::<Int64Type>().iter().collect()),
        other => Err(format!(
            "a count column is {other}, expected Int32 or Int64"
        )),
    }
}

/// Reads `path` (column `patient_id`, then one Boolean, Int32 or Int64 column per code) into a
/// matrix whose column `j` is `vocabulary[j]`.
///
/// The result is count data if any code column is an integer, else binary. Nulls and negative
/// counts are refused, naming the column and row.
pub fn read_synthetic_parquet(
    path: &Path,
    vocabulary: &[String],
) -> Result<(PatientMatrix, ColumnMatch), EvalError> {
    let bad = |why: String| EvalError::Synthetic {
        path: path.to_path_buf(),
        why,
    };
    let file = File::open(path).map_err(|e| bad(e.to_string()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(e.to_string()))?;
    let schema = builder.schema().clone();
    if super::synthetic_long::is_long_layout(&schema) {
        let (matrix, columns, ranged) = super::synthetic_long::read_long(path, vocabulary)?;
        if !ranged {
            tracing::warn!(
                "{}: long layout without medgan.row_start/row_end metadata: patients without \
                 codes are invisible, so all-zero records are undercounted",
                path.display()
            );
        }
        return Ok((matrix, columns));
    }
    let position: HashMap<&str, u32> = vocabulary
        .iter()
        .enumerate()
        .map(|(j, code)| (code.as_str(), j as u32))
        .collect();
    let mut id_field = None;
    // (field index in the file, column in the vocabulary)
    let mut code_fields: Vec<(usize, u32)> = Vec::new();
    let mut extra = Vec::new();
    let mut any_count = false;
    for (i, field) in schema.fields().iter().enumerate() {
        let name = field.name().as_str();
        if name == PATIENT_ID_COLUMN {
            id_field = Some(i);
            continue;
        }
        match field.data_type() {
            ArrowType::Boolean => {}
            ArrowType::Int32 | ArrowType::Int64 => any_count = true,
            other => {
                return Err(bad(format!(
                    "column `{name}` is {other}, expected Boolean, Int32 or Int64"
                )));
            }
        }
        match position.get(name) {
            Some(&j) => code_fields.push((i, j)),
            None => extra.push(name.to_string()),
        }
    }
    let id_field = id_field.ok_or_else(|| bad(format!("no `{PATIENT_ID_COLUMN}` column")))?;
    let found: Vec<bool> = {
        let mut found = vec![false; vocabulary.len()];
        code_fields
            .iter()
            .for_each(|&(_, j)| found[j as usize] = true);
        found
    };
    let missing = vocabulary
        .iter()
        .zip(&found)
        .filter(|(_, f)| !**f)
        .map(|(c, _)| c.clone())
        .collect();
    // Columns visited in vocabulary order, so each row's indices come out sorted.
    code_fields.sort_by_key(|&(_, j)| j);

    let reader = builder.build().map_err(|e| bad(e.to_string()))?;
    let (mut ids, mut indptr, mut indices, mut values) = (Vec::new(), vec![0u64], vec![], vec![]);
    let mut rows_before = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| bad(e.to_string()))?;
        let id_col = batch.column(id_field);
        let id_text: Vec<String> = match id_col.data_type() {
            ArrowType::Int64 => id_col
                .as_primitive::<Int64Type>()
                .iter()
                .enumerate()
                .map(|(r, v)| {
                    v.map(|v| v.to_string()).ok_or_else(|| {
                        bad(format!(
                            "`{PATIENT_ID_COLUMN}` is null in row {}",
                            rows_before + r
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
            other => {
                return Err(bad(format!(
                    "`{PATIENT_ID_COLUMN}` is {other}, expected Int64"
                )));
            }
        };
        let mut row_cells: Vec<Vec<(u32, u32)>> = vec![Vec::new(); batch.num_rows()];
        for &(field, j) in &code_fields {
            let column = batch.column(field);
            let name = &vocabulary[j as usize];
            let null_at = |r: usize| {
                bad(format!(
                    "column `{name}` is null in row {}",
                    rows_before + r
                ))
            };
            if column.data_type() == &ArrowType::Boolean {
                for (r, v) in column.as_boolean().iter().enumerate() {
                    match v {
                        Some(true) => row_cells[r].push((j, 1)),
                        Some(false) => {}
                        None => return Err(null_at(r)),
                    }
                }
            } else {
                let counts = integer_values(column.as_ref()).map_err(&bad)?;
                for (r, v) in counts.into_iter().enumerate() {
                    match v {
                        Some(0) => {}
                        Some(n) if n > 0 && n <= u32::MAX as i64 => {
                            row_cells[r].push((j, n as u32))
                        }
                        Some(n) => {
                            return Err(bad(format!(
                                "column `{name}`, row {}: count {n} is out of range",
                                rows_before + r
                            )));
                        }
                        None => return Err(null_at(r)),
                    }
                }
            }
        }
        for cells in row_cells {
            for (j, v) in cells {
                indices.push(j);
                values.push(v);
            }
            indptr.push(indices.len() as u64);
        }
        rows_before += batch.num_rows();
        ids.extend(id_text);
    }
    let data_type = if any_count {
        DataType::Count
    } else {
        DataType::Binary
    };
    let matrix =
        PatientMatrix::from_csr(data_type, vocabulary.to_vec(), ids, indptr, indices, values)
            .map_err(|e| bad(e.to_string()))?;
    let matched = vocabulary.len() - found.iter().filter(|f| !**f).count();
    Ok((
        matrix,
        ColumnMatch {
            matched,
            missing,
            extra,
        },
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, BooleanArray, Int64Array, RecordBatch};
    use parquet::arrow::ArrowWriter;

    use super::*;

    /// Writes a wide synthetic file with the given code columns (name, values per row).
    pub(crate) fn write_wide(path: &Path, ids: &[i64], columns: &[(&str, ArrayRef)]) {
        let mut all: Vec<(&str, ArrayRef)> =
            vec![(PATIENT_ID_COLUMN, Arc::new(Int64Array::from(ids.to_vec())))];
        all.extend(columns.iter().cloned());
        let batch = RecordBatch::try_from_iter(all).unwrap();
        let mut writer =
            ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }

    fn vocab(codes: &[&str]) -> Vec<String> {
        codes.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn columns_match_by_name_and_gaps_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.parquet");
        let b = |v: &[bool]| Arc::new(BooleanArray::from(v.to_vec())) as ArrayRef;
        write_wide(
            &path,
            &[0, 1],
            &[
                ("c", b(&[true, false])),
                ("zz", b(&[true, true])),
                ("a", b(&[true, true])),
            ],
        );
        let (m, matched) = read_synthetic_parquet(&path, &vocab(&["a", "b", "c"])).unwrap();
        assert_eq!(m.data_type(), DataType::Binary);
        assert_eq!(m.row(0).0, [0, 2]);
        assert_eq!(m.row(1).0, [0]);
        assert_eq!(m.patient_ids(), ["0", "1"]);
        assert_eq!(matched.matched, 2);
        assert_eq!(matched.missing, ["b"]);
        assert_eq!(matched.extra, ["zz"]);
    }

    #[test]
    fn int32_counts_as_the_sampler_writes_them_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.parquet");
        let i32s = |v: &[i32]| Arc::new(arrow_array::Int32Array::from(v.to_vec())) as ArrayRef;
        write_wide(
            &path,
            &[0, 1],
            &[("a", i32s(&[0, 3])), ("b", i32s(&[2, 0]))],
        );
        let (m, _) = read_synthetic_parquet(&path, &vocab(&["a", "b"])).unwrap();
        assert_eq!(m.data_type(), DataType::Count);
        assert_eq!(m.row(0), (&[1u32][..], &[2u32][..]));
        assert_eq!(m.row(1), (&[0u32][..], &[3u32][..]));
    }

    #[test]
    fn counts_are_read_and_bad_values_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.parquet");
        let i = |v: &[i64]| Arc::new(Int64Array::from(v.to_vec())) as ArrayRef;
        write_wide(&path, &[7, 8], &[("a", i(&[3, 0])), ("b", i(&[0, 2]))]);
        let (m, _) = read_synthetic_parquet(&path, &vocab(&["a", "b"])).unwrap();
        assert_eq!(m.data_type(), DataType::Count);
        assert_eq!(m.row(0), (&[0u32][..], &[3u32][..]));
        assert_eq!(m.row(1), (&[1u32][..], &[2u32][..]));

        write_wide(&path, &[7], &[("a", i(&[-1]))]);
        let err = read_synthetic_parquet(&path, &vocab(&["a"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("column `a`, row 0: count -1"), "{err}");
        let nulls = Arc::new(BooleanArray::from(vec![None, Some(true)])) as ArrayRef;
        write_wide(&path, &[1, 2], &[("a", nulls)]);
        let err = read_synthetic_parquet(&path, &vocab(&["a"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("column `a` is null in row 0"), "{err}");
    }
}
