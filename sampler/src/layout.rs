//! Table layouts: the sampler's wide batches reshaped into the long table most EHR systems keep
//! (one row per patient and code) or one list of codes per patient, with optional code labels.
//!
//! Codes stay the exact vocabulary strings. Long and list rows come in patient order, and within
//! a patient in vocabulary order, so a layout never changes what a row range holds.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{Array, ArrayRef, Int32Array, ListArray, RecordBatch, StringArray};
use arrow_buffer::{OffsetBuffer, ScalarBuffer};
use arrow_schema::{ArrowError, DataType as ArrowType, Field, Schema, SchemaRef};
use thiserror::Error;

use crate::DataType;
use crate::names::spark_safe_names;

/// Column names of the long and list layouts.
pub const CODE_COLUMN: &str = "code";
pub const COUNT_COLUMN: &str = "count";
pub const LABEL_COLUMN: &str = "label";
pub const CODES_COLUMN: &str = "codes";

/// How the records are laid out in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// `patient_id`, then one column per code (Boolean or Int32).
    #[default]
    Wide,
    /// `patient_id`, `code` (and `count` for count models, `label` with labels): one row per
    /// code present; patients without codes have no row.
    Long,
    /// `patient_id`, `codes` (a list of the codes present, empty for a patient without codes).
    List,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Wide => "wide",
            Layout::Long => "long",
            Layout::List => "list",
        }
    }
}

/// A labels file could not be used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LabelsError {
    #[error("cannot read labels file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    #[error("{}, line {line}: expected 2 fields (code,label), found {found}", path.display())]
    Fields {
        path: PathBuf,
        line: u64,
        found: usize,
    },
    #[error("{}, line {line}: code `{code}` is labelled twice", path.display())]
    Duplicate {
        path: PathBuf,
        line: u64,
        code: String,
    },
}

/// Human-readable labels of codes, e.g. ICD-9 descriptions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels {
    by_code: HashMap<String, String>,
}

impl Labels {
    /// Reads a CSV file of `code,label` rows (an optional header `code,label` is skipped).
    /// Codes are taken exactly as written; codes outside the model are ignored.
    pub fn read(path: &Path) -> Result<Labels, LabelsError> {
        let read_error = |source| LabelsError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_path(path)
            .map_err(read_error)?;
        let mut by_code = HashMap::new();
        for (index, record) in reader.records().enumerate() {
            let record = record.map_err(read_error)?;
            let line = record.position().map_or(index as u64 + 1, |p| p.line());
            if record.len() != 2 {
                return Err(LabelsError::Fields {
                    path: path.to_path_buf(),
                    line,
                    found: record.len(),
                });
            }
            let (code, label) = (&record[0], &record[1]);
            let header = index == 0
                && code.eq_ignore_ascii_case(CODE_COLUMN)
                && label.eq_ignore_ascii_case(LABEL_COLUMN);
            if header {
                continue;
            }
            if by_code.insert(code.to_owned(), label.to_owned()).is_some() {
                return Err(LabelsError::Duplicate {
                    path: path.to_path_buf(),
                    line,
                    code: code.to_owned(),
                });
            }
        }
        Ok(Labels { by_code })
    }

    /// Labels from pairs already in memory.
    pub fn from_pairs<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Labels {
        Labels {
            by_code: pairs.into_iter().collect(),
        }
    }

    pub fn get(&self, code: &str) -> Option<&str> {
        self.by_code.get(code).map(String::as_str)
    }
}

/// Turns the sampler's wide batches into batches of one layout.
#[derive(Debug, Clone)]
pub struct Shaper {
    layout: Layout,
    data_type: DataType,
    schema: SchemaRef,
    /// The vocabulary as an array, for `take`.
    codes: ArrayRef,
    /// One label per code (null where the labels file has none), when labels were given.
    labels: Option<ArrayRef>,
    /// Output name -> code, when the wide columns were renamed.
    renamed: Option<Vec<(String, String)>>,
}

impl Shaper {
    /// A shaper for records of `features` codes. `spark_safe` renames the wide layout's code
    /// columns (see [`crate::names`]); the other layouts have fixed, already safe names.
    /// `labels` adds a nullable `label` column to the long layout, and only to it.
    pub fn new(
        features: &[String],
        data_type: DataType,
        layout: Layout,
        labels: Option<&Labels>,
        spark_safe: bool,
    ) -> Result<Shaper, String> {
        if labels.is_some() && layout != Layout::Long {
            return Err(format!(
                "labels apply to the long layout only, not to the {} layout",
                layout.name()
            ));
        }
        let id = Field::new(crate::bundle::PATIENT_ID_COLUMN, ArrowType::Int64, false);
        let code = || Field::new(CODE_COLUMN, ArrowType::Utf8, false);
        let mut renamed = None;
        let fields: Vec<Field> = match layout {
            Layout::Wide => {
                let value_type = match data_type {
                    DataType::Binary => ArrowType::Boolean,
                    DataType::Count => ArrowType::Int32,
                };
                let names = if spark_safe {
                    let safe = spark_safe_names(features);
                    renamed = Some(safe.iter().cloned().zip(features.iter().cloned()).collect());
                    safe
                } else {
                    features.to_vec()
                };
                std::iter::once(id)
                    .chain(
                        names
                            .iter()
                            .map(|name| Field::new(name, value_type.clone(), false)),
                    )
                    .collect()
            }
            Layout::Long => {
                let mut fields = vec![id, code()];
                if data_type == DataType::Count {
                    fields.push(Field::new(COUNT_COLUMN, ArrowType::Int32, false));
                }
                if labels.is_some() {
                    fields.push(Field::new(LABEL_COLUMN, ArrowType::Utf8, true));
                }
                fields
            }
            Layout::List => {
                let item = Field::new_list_field(ArrowType::Utf8, false);
                vec![
                    id,
                    Field::new(CODES_COLUMN, ArrowType::List(Arc::new(item)), false),
                ]
            }
        };
        let labels = labels.map(|labels| {
            let each = features.iter().map(|code| labels.get(code));
            Arc::new(StringArray::from_iter(each)) as ArrayRef
        });
        Ok(Shaper {
            layout,
            data_type,
            schema: Arc::new(Schema::new(fields)),
            codes: Arc::new(StringArray::from_iter_values(features)),
            labels,
            renamed,
        })
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The schema of every batch [`Shaper::shape`] returns.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// `(column name, code)` for every renamed wide column, or `None` when names are the codes.
    pub fn renamed_columns(&self) -> Option<&[(String, String)]> {
        self.renamed.as_deref()
    }

    /// Reshapes one wide batch (`patient_id`, then one column per code, as the sampler gives).
    pub fn shape(&self, wide: &RecordBatch) -> Result<RecordBatch, ArrowError> {
        match self.layout {
            Layout::Wide => RecordBatch::try_new(self.schema.clone(), wide.columns().to_vec()),
            Layout::Long | Layout::List => self.sparse(wide),
        }
    }

    fn sparse(&self, wide: &RecordBatch) -> Result<RecordBatch, ArrowError> {
        let rows = wide.num_rows();
        let values = &wide.columns()[1..];
        let present = Present::find(values, self.data_type, rows)?;
        let ids = wide.column(0);
        let code_indices = Int32Array::new(ScalarBuffer::from(present.codes), None);
        let codes = arrow_select::take::take(&self.codes, &code_indices, None)?;
        let mut columns: Vec<ArrayRef> = Vec::new();
        if self.layout == Layout::List {
            let offsets: Vec<i32> = present.offsets.iter().map(|&o| o as i32).collect();
            let item = Arc::new(Field::new_list_field(ArrowType::Utf8, false));
            let list = ListArray::try_new(
                item,
                OffsetBuffer::new(ScalarBuffer::from(offsets)),
                codes,
                None,
            )?;
            columns.push(ids.clone());
            columns.push(Arc::new(list));
            return RecordBatch::try_new(self.schema.clone(), columns);
        }
        let patient_rows = Int32Array::new(ScalarBuffer::from(present.rows), None);
        columns.push(arrow_select::take::take(ids, &patient_rows, None)?);
        columns.push(codes);
        if self.data_type == DataType::Count {
            columns.push(Arc::new(Int32Array::from(present.counts)));
        }
        if let Some(labels) = &self.labels {
            columns.push(arrow_select::take::take(labels, &code_indices, None)?);
        }
        RecordBatch::try_new(self.schema.clone(), columns)
    }
}

/// The non-zero cells of a wide batch in row-major order (row, then code in column order).
struct Present {
    /// Per cell: batch-local row, code index, and the count (1 for binary models).
    rows: Vec<i32>,
    codes: Vec<i32>,
    counts: Vec<i32>,
    /// `rows + 1` offsets of each row's cells.
    offsets: Vec<usize>,
}

impl Present {
    /// A counting sort by row: count each row's cells column by column, then place them, so
    /// each row's codes stay in column order without a comparison sort.
    fn find(values: &[ArrayRef], data_type: DataType, rows: usize) -> Result<Present, ArrowError> {
        let mut per_row = vec![0usize; rows + 1];
        let mut cells: Vec<Vec<(u32, i32)>> = Vec::with_capacity(values.len());
        for column in values {
            let found: Vec<(u32, i32)> = match data_type {
                DataType::Binary => {
                    let flags = column.as_boolean_opt().ok_or_else(|| wrong_type(column))?;
                    flags
                        .values()
                        .set_indices()
                        .map(|row| (row as u32, 1))
                        .collect()
                }
                DataType::Count => {
                    let counts = column
                        .as_primitive_opt::<Int32Type>()
                        .ok_or_else(|| wrong_type(column))?;
                    counts
                        .values()
                        .iter()
                        .enumerate()
                        .filter(|(_, count)| **count != 0)
                        .map(|(row, count)| (row as u32, *count))
                        .collect()
                }
            };
            for &(row, _) in &found {
                per_row[row as usize + 1] += 1;
            }
            cells.push(found);
        }
        for row in 0..rows {
            per_row[row + 1] += per_row[row];
        }
        let total = per_row[rows];
        let mut next = per_row.clone();
        let (mut row_of, mut code_of, mut count_of) =
            (vec![0i32; total], vec![0i32; total], vec![0i32; total]);
        for (code, found) in cells.iter().enumerate() {
            for &(row, count) in found {
                let slot = &mut next[row as usize];
                row_of[*slot] = row as i32;
                code_of[*slot] = code as i32;
                count_of[*slot] = count;
                *slot += 1;
            }
        }
        Ok(Present {
            rows: row_of,
            codes: code_of,
            counts: count_of,
            offsets: per_row,
        })
    }
}

fn wrong_type(column: &ArrayRef) -> ArrowError {
    ArrowError::InvalidArgumentError(format!(
        "a code column is {}, not the sampler's Boolean or Int32",
        column.data_type()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{BooleanArray, Int64Array};

    fn codes() -> Vec<String> {
        ["250.83", "V45", "401"].map(str::to_owned).to_vec()
    }

    fn binary_batch() -> RecordBatch {
        let schema = Shaper::new(&codes(), DataType::Binary, Layout::Wide, None, false)
            .unwrap()
            .schema();
        let flag = |v: [bool; 3]| Arc::new(BooleanArray::from(v.to_vec())) as ArrayRef;
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![10, 11, 12])),
                flag([true, false, true]),
                flag([false, false, true]),
                flag([true, false, false]),
            ],
        )
        .unwrap()
    }

    fn strings(array: &ArrayRef) -> Vec<Option<String>> {
        array
            .as_string::<i32>()
            .iter()
            .map(|s| s.map(str::to_owned))
            .collect()
    }

    #[test]
    fn long_rows_are_patient_then_vocabulary_order_with_labels() {
        let labels = Labels::from_pairs([("401".to_owned(), "hypertension".to_owned())]);
        let shaper = Shaper::new(
            &codes(),
            DataType::Binary,
            Layout::Long,
            Some(&labels),
            false,
        )
        .unwrap();
        let long = shaper.shape(&binary_batch()).unwrap();
        let ids = long
            .column(0)
            .as_primitive::<arrow_array::types::Int64Type>();
        assert_eq!(ids.values().as_ref(), &[10, 10, 12, 12]);
        let code = |s: &str| Some(s.to_owned());
        assert_eq!(
            strings(long.column(1)),
            [code("250.83"), code("401"), code("250.83"), code("V45")]
        );
        assert_eq!(
            strings(long.column(2)),
            [None, code("hypertension"), None, None]
        );
        assert_eq!(long.schema(), shaper.schema());
    }

    #[test]
    fn lists_keep_patients_without_codes_as_empty_lists() {
        let shaper = Shaper::new(&codes(), DataType::Binary, Layout::List, None, false).unwrap();
        let list = shaper.shape(&binary_batch()).unwrap();
        let lists = list.column(1).as_list::<i32>();
        assert_eq!(lists.value_offsets(), &[0, 2, 2, 4]);
        assert_eq!(lists.value(1).len(), 0);
        assert_eq!(
            strings(&lists.value(2)),
            [Some("250.83".to_owned()), Some("V45".to_owned())]
        );
    }

    #[test]
    fn long_counts_skip_zeros_and_keep_values() {
        let features = codes();
        let wide_schema = Shaper::new(&features, DataType::Count, Layout::Wide, None, false)
            .unwrap()
            .schema();
        let count = |v: [i32; 2]| Arc::new(Int32Array::from(v.to_vec())) as ArrayRef;
        let wide = RecordBatch::try_new(
            wide_schema,
            vec![
                Arc::new(Int64Array::from(vec![0, 1])),
                count([0, 3]),
                count([2, 0]),
                count([0, 1]),
            ],
        )
        .unwrap();
        let shaper = Shaper::new(&features, DataType::Count, Layout::Long, None, false).unwrap();
        let long = shaper.shape(&wide).unwrap();
        assert_eq!(long.num_columns(), 3);
        let counts = long.column(2).as_primitive::<Int32Type>();
        assert_eq!(counts.values().as_ref(), &[2, 3, 1]);
        assert_eq!(
            strings(long.column(1)),
            ["V45", "250.83", "401"].map(|s| Some(s.to_owned()))
        );
    }

    #[test]
    fn labels_files_read_exactly_and_name_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels.csv");
        std::fs::write(
            &path,
            "code,label\n0389,\"Septicemia, unspecified\"\n389,x\n",
        )
        .unwrap();
        let labels = Labels::read(&path).unwrap();
        assert_eq!(labels.get("0389"), Some("Septicemia, unspecified"));
        assert_eq!(labels.get("389"), Some("x"));
        assert_eq!(labels.get("code"), None);
        std::fs::write(&path, "a,1\nb,2\na,3\n").unwrap();
        let error = Labels::read(&path).unwrap_err().to_string();
        assert!(
            error.ends_with("line 3: code `a` is labelled twice"),
            "{error}"
        );
        std::fs::write(&path, "a,1\nb\n").unwrap();
        let error = Labels::read(&path).unwrap_err().to_string();
        assert!(error.contains("line 2: expected 2 fields"), "{error}");
    }

    #[test]
    fn labels_outside_the_long_layout_are_refused() {
        let labels = Labels::default();
        let error = Shaper::new(
            &codes(),
            DataType::Binary,
            Layout::Wide,
            Some(&labels),
            false,
        )
        .unwrap_err();
        assert!(error.contains("long layout only"), "{error}");
    }
}
