//! Long-format Parquet input: string or integer columns, integers read as decimal strings.

use std::borrow::Cow;
use std::fs::File;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, LargeStringArray, StringArray, StringViewArray};
use arrow_schema::DataType as ArrowType;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::builder::MatrixBuilder;
use super::long::{LongOptions, LongTally};
use super::table::parse_count;
use super::{DataError, DataResult};

/// One column of a record batch, readable as text row by row.
enum TextColumn<'a> {
    Utf8(&'a StringArray),
    LargeUtf8(&'a LargeStringArray),
    Utf8View(&'a StringViewArray),
    /// Any integer type, widened.
    Integer(Vec<Option<i128>>),
    Dictionary {
        array: &'a dyn Array,
        keys: Vec<usize>,
        values: Box<TextColumn<'a>>,
    },
    /// A dictionary with no values: every row is null.
    Null,
}

fn widen<'a, T>(values: impl Iterator<Item = Option<T>> + 'a) -> Vec<Option<i128>>
where
    i128: From<T>,
{
    values.map(|v| v.map(i128::from)).collect()
}

impl<'a> TextColumn<'a> {
    fn new(array: &'a dyn Array) -> Option<Self> {
        Some(match array.data_type() {
            ArrowType::Utf8 => TextColumn::Utf8(array.as_string::<i32>()),
            ArrowType::LargeUtf8 => TextColumn::LargeUtf8(array.as_string::<i64>()),
            ArrowType::Utf8View => TextColumn::Utf8View(array.as_string_view()),
            ArrowType::Int8 => TextColumn::Integer(widen(array.as_primitive::<Int8Type>().iter())),
            ArrowType::Int16 => {
                TextColumn::Integer(widen(array.as_primitive::<Int16Type>().iter()))
            }
            ArrowType::Int32 => {
                TextColumn::Integer(widen(array.as_primitive::<Int32Type>().iter()))
            }
            ArrowType::Int64 => {
                TextColumn::Integer(widen(array.as_primitive::<Int64Type>().iter()))
            }
            ArrowType::UInt8 => {
                TextColumn::Integer(widen(array.as_primitive::<UInt8Type>().iter()))
            }
            ArrowType::UInt16 => {
                TextColumn::Integer(widen(array.as_primitive::<UInt16Type>().iter()))
            }
            ArrowType::UInt32 => {
                TextColumn::Integer(widen(array.as_primitive::<UInt32Type>().iter()))
            }
            ArrowType::UInt64 => {
                TextColumn::Integer(widen(array.as_primitive::<UInt64Type>().iter()))
            }
            ArrowType::Dictionary(_, _) => {
                let dict = array.as_any_dictionary_opt()?;
                if dict.values().is_empty() {
                    return Some(TextColumn::Null);
                }
                TextColumn::Dictionary {
                    array,
                    keys: dict.normalized_keys(),
                    values: Box::new(TextColumn::new(dict.values().as_ref())?),
                }
            }
            _ => return None,
        })
    }

    /// The text at `row`; `None` for null.
    fn text(&self, row: usize) -> Option<Cow<'a, str>> {
        match self {
            TextColumn::Utf8(a) => a.is_valid(row).then(|| Cow::Borrowed(a.value(row))),
            TextColumn::LargeUtf8(a) => a.is_valid(row).then(|| Cow::Borrowed(a.value(row))),
            TextColumn::Utf8View(a) => a.is_valid(row).then(|| Cow::Borrowed(a.value(row))),
            TextColumn::Integer(v) => v[row].map(|n| Cow::Owned(n.to_string())),
            TextColumn::Dictionary {
                array,
                keys,
                values,
            } => array
                .is_valid(row)
                .then(|| values.text(keys[row]))
                .flatten(),
            TextColumn::Null => None,
        }
    }
}

/// Reads a long Parquet file into `builder`.
pub(crate) fn read_long_parquet(
    path: &Path,
    options: &LongOptions,
    builder: &mut MatrixBuilder,
) -> DataResult<LongTally> {
    let fail = |why: String| DataError::Parquet {
        path: path.to_path_buf(),
        why,
    };
    let file = File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| fail(e.to_string()))?;
    let names: Vec<String> = reader
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let find = |wanted: &str| -> DataResult<usize> {
        names
            .iter()
            .position(|n| n == wanted)
            .or_else(|| names.iter().position(|n| n.eq_ignore_ascii_case(wanted)))
            .ok_or_else(|| DataError::MissingColumn {
                path: path.to_path_buf(),
                column: wanted.to_owned(),
                present: names.clone(),
            })
    };
    let patient_col = find(&options.patient_col)?;
    let code_cols = (options.code_cols.iter().map(|c| find(c))).collect::<DataResult<Vec<_>>>()?;
    let count_col = options.count_col.as_deref().map(find).transpose()?;
    let mut wanted: Vec<usize> = code_cols.iter().copied().chain([patient_col]).collect();
    wanted.extend(count_col);
    let mask = ProjectionMask::roots(reader.parquet_schema(), wanted.iter().copied());
    let batches = reader
        .with_projection(mask)
        .build()
        .map_err(|e| fail(e.to_string()))?;

    let mut tally = LongTally::default();
    for batch in batches {
        let batch = batch.map_err(|e| fail(e.to_string()))?;
        let column = |col: usize| -> DataResult<TextColumn<'_>> {
            let array = batch
                .column_by_name(&names[col])
                .ok_or_else(|| fail(format!("column `{}` was not read", names[col])))?;
            TextColumn::new(array.as_ref()).ok_or_else(|| {
                fail(format!(
                    "column `{}` has type {}; expected strings or integers",
                    names[col],
                    array.data_type()
                ))
            })
        };
        let patients = column(patient_col)?;
        let codes = code_cols
            .iter()
            .map(|&c| column(c))
            .collect::<DataResult<Vec<_>>>()?;
        let counts = count_col.map(column).transpose()?;
        for row in 0..batch.num_rows() {
            let row_number = tally.rows + 1;
            let count = match &counts {
                None => 1,
                Some(counts) => {
                    let at = |why: String| {
                        fail(format!(
                            "row {row_number}, column `{}`: {why}",
                            names[count_col.unwrap_or_default()]
                        ))
                    };
                    let text = counts.text(row).filter(|t| !options.is_missing(t));
                    let text = text.ok_or_else(|| at("count is null or missing".into()))?;
                    parse_count(&text).map_err(at)?
                }
            };
            let patient = patients.text(row);
            let row_codes = codes.iter().map(|c| c.text(row));
            tally.add_row(builder, options, patient.as_deref(), row_codes, count)?;
            tally.rows += 1;
        }
    }
    if tally.rows == 0 {
        return Err(DataError::NoDataRows {
            path: path.to_path_buf(),
        });
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
    use medgan_sample::DataType;

    use super::*;
    use crate::data::builder::BuildOptions;
    use crate::data::long::read_long;

    fn write_parquet(
        dir: &tempfile::TempDir,
        columns: Vec<(&str, ArrayRef)>,
    ) -> std::path::PathBuf {
        let path = dir.path().join("l.parquet");
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let file = File::create(&path).unwrap();
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        path
    }

    #[test]
    fn integer_and_string_columns_become_codes() {
        let dir = tempfile::tempdir().unwrap();
        let pid: ArrayRef = Arc::new(Int64Array::from(vec![Some(7), Some(7), None, Some(8)]));
        let code: ArrayRef = Arc::new(StringArray::from(vec![
            Some("0389"),
            Some("389"),
            Some("1"),
            None,
        ]));
        let n: ArrayRef = Arc::new(Int64Array::from(vec![2, 3, 1, 1]));
        let path = write_parquet(&dir, vec![("pid", pid), ("code", code), ("n", n)]);
        let mut options = LongOptions::new("pid", &["code"], BuildOptions::new(DataType::Count));
        options.count_col = Some("n".into());
        let (m, s) = read_long(&path, &options).unwrap();
        assert_eq!(s.format, "long Parquet");
        assert_eq!(m.patient_ids(), ["7", "8"]);
        assert_eq!(m.codes(), ["0389", "389"]);
        assert_eq!(m.row(0).1, [2, 3]);
        assert_eq!(s.rows_read, 4);
    }

    #[test]
    fn negative_counts_and_float_codes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pid: ArrayRef = Arc::new(StringArray::from(vec!["a", "b"]));
        let code: ArrayRef = Arc::new(Int64Array::from(vec![250, 401]));
        let n: ArrayRef = Arc::new(Int64Array::from(vec![1, -1]));
        let path = write_parquet(&dir, vec![("pid", pid), ("code", code), ("n", n)]);
        let mut options = LongOptions::new("pid", &["code"], BuildOptions::new(DataType::Count));
        options.count_col = Some("n".into());
        let err = read_long(&path, &options).unwrap_err().to_string();
        assert!(err.ends_with("row 2, column `n`: count `-1` is not a non-negative integer"));

        let pid: ArrayRef = Arc::new(StringArray::from(vec!["a"]));
        let code: ArrayRef = Arc::new(Float64Array::from(vec![2.5]));
        let path = write_parquet(&dir, vec![("pid", pid), ("code", code)]);
        options.count_col = None;
        let err = read_long(&path, &options).unwrap_err().to_string();
        assert!(err.contains("column `code` has type Float64"), "{err}");
        options.patient_col = "patient".into();
        let err = read_long(&path, &options).unwrap_err().to_string();
        assert!(
            err.ends_with("no column `patient` (columns present: pid, code)"),
            "{err}"
        );
    }
}
