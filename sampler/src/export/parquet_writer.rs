//! The export's Parquet encoder: `ArrowWriter`'s row groups, pages and footer, byte for byte,
//! with required Boolean columns encoded from their bitmaps ([`super::flags`]) and compressed
//! on several threads when a row group is complete.

use std::io::Write;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType as ArrowType, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::arrow_writer::{ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use parquet::basic::Compression;
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{ColumnDescPtr, ColumnPath};

use super::flags::{FlagColumn, PageCodec};

/// Threads compressing the flag columns of a finished row group, at most.
const MAX_THREADS: usize = 8;

/// How one top-level field is encoded.
enum Plan {
    /// A required Boolean column: from its bitmap.
    Flags(ColumnDescPtr),
    /// Through `parquet`'s column writers, one per leaf.
    Leaves(usize),
}

/// A field's share of the row group being filled.
enum Sink {
    Flags(FlagColumn),
    Leaves(Vec<ArrowColumnWriter>),
}

struct RowGroup {
    rows: usize,
    sinks: Vec<Sink>,
}

/// Writes record batches of one schema as one Parquet file.
pub(crate) struct ParquetEncoder<W: Write + Send> {
    file: SerializedFileWriter<W>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    properties: Arc<WriterProperties>,
    compression: Compression,
    max_rows: usize,
    plan: Vec<Plan>,
    threads: usize,
    group: Option<RowGroup>,
}

impl<W: Write + Send> ParquetEncoder<W> {
    /// The file `ArrowWriter::try_new(out, schema, properties)` would write: the same
    /// conversion of the schema and the same footer metadata.
    pub(crate) fn new(
        out: W,
        schema: SchemaRef,
        properties: WriterProperties,
    ) -> Result<Self, ParquetError> {
        let max_rows = properties
            .max_row_group_row_count()
            .unwrap_or(usize::MAX)
            .max(1);
        let (file, _) = ArrowWriter::try_new(out, schema.clone(), Some(properties))?
            .into_serialized_writer()?;
        let properties = file.properties().clone();
        let descriptor = file.schema_descr();
        let plan = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(index, field)| {
                let leaves: Vec<usize> = (0..descriptor.num_columns())
                    .filter(|&leaf| descriptor.get_column_root_idx(leaf) == index)
                    .collect();
                match (field.data_type(), field.is_nullable(), leaves.as_slice()) {
                    (ArrowType::Boolean, false, &[leaf]) => Plan::Flags(descriptor.column(leaf)),
                    _ => Plan::Leaves(leaves.len()),
                }
            })
            .collect::<Vec<_>>();
        // Column writers for the other fields only: one for each of hundreds of flag columns
        // per row group would set up a compressor apiece for nothing. Their column
        // descriptors equal those of the whole file's schema, which `append_column` checks.
        let others: Vec<_> = (schema.fields().iter().zip(&plan))
            .filter(|(_, plan)| matches!(plan, Plan::Leaves(_)))
            .map(|(field, _)| field.clone())
            .collect();
        let others = Arc::new(Schema::new(others));
        let converted = ArrowSchemaConverter::new()
            .with_coerce_types(properties.coerce_types())
            .convert(&others)?;
        let scratch = SerializedFileWriter::new(
            std::io::sink(),
            converted.root_schema_ptr(),
            properties.clone(),
        )?;
        let factory = ArrowRowGroupWriterFactory::new(&scratch, others);
        // Compressing a row group takes tens of milliseconds; more than a few threads would
        // only add start-up costs and a compressor apiece.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS));
        Ok(ParquetEncoder {
            // One compression for every column: the exports set no per-column codec.
            compression: properties.compression(&ColumnPath::new(Vec::new())),
            file,
            factory,
            schema,
            properties,
            max_rows,
            plan,
            threads,
            group: None,
        })
    }

    /// Buffers `batch`, splitting it where a row group fills as `ArrowWriter::write` does.
    pub(crate) fn write(&mut self, batch: &RecordBatch) -> Result<(), ParquetError> {
        let mut remaining = batch.clone();
        while remaining.num_rows() > 0 {
            let buffered = match &self.group {
                Some(group) => group.rows,
                None => {
                    let group = self.new_group()?;
                    self.group.insert(group).rows
                }
            };
            let fits = self.max_rows - buffered;
            let rest = (remaining.num_rows() > fits).then(|| {
                let rest = remaining.slice(fits, remaining.num_rows() - fits);
                remaining = remaining.slice(0, fits);
                rest
            });
            if let Some(group) = self.group.as_mut() {
                group.write(&self.schema, &remaining)?;
                if group.rows >= self.max_rows {
                    self.flush()?;
                }
            }
            remaining = match rest {
                Some(rest) => rest,
                None => break,
            };
        }
        Ok(())
    }

    fn new_group(&self) -> Result<RowGroup, ParquetError> {
        let index = self.file.flushed_row_groups().len();
        let mut writers = self.factory.create_column_writers(index)?.into_iter();
        let sinks = self
            .plan
            .iter()
            .map(|plan| match plan {
                Plan::Flags(descr) => Sink::Flags(FlagColumn::new(descr.clone(), &self.properties)),
                Plan::Leaves(count) => Sink::Leaves(writers.by_ref().take(*count).collect()),
            })
            .collect();
        Ok(RowGroup { rows: 0, sinks })
    }

    /// Encodes the buffered rows as one row group.
    fn flush(&mut self) -> Result<(), ParquetError> {
        let Some(group) = self.group.take() else {
            return Ok(());
        };
        let mut flags = Vec::new();
        let mut order = Vec::new();
        for sink in group.sinks {
            match sink {
                Sink::Flags(column) => {
                    flags.push(column);
                    order.push(None);
                }
                Sink::Leaves(writers) => order.push(Some(writers)),
            }
        }
        let mut encoded = encode_in_parallel(flags, self.compression, self.threads)?.into_iter();
        let mut row_group = self.file.next_row_group()?;
        for slot in order {
            match slot {
                Some(writers) => {
                    for writer in writers {
                        writer.close()?.append_to_row_group(&mut row_group)?;
                    }
                }
                None => {
                    let (bytes, close) = encoded.next().ok_or_else(|| {
                        ParquetError::General("a flag column was not encoded".to_owned())
                    })?;
                    row_group.append_column(&bytes, close)?;
                }
            }
        }
        row_group.close()?;
        Ok(())
    }

    /// Writes the last row group and the footer; hands back the output and the row groups.
    pub(crate) fn finish(mut self) -> Result<(W, usize), ParquetError> {
        self.flush()?;
        let row_groups = self.file.flushed_row_groups().len();
        Ok((self.file.into_inner()?, row_groups))
    }
}

impl RowGroup {
    fn write(&mut self, schema: &SchemaRef, batch: &RecordBatch) -> Result<(), ParquetError> {
        self.rows += batch.num_rows();
        let columns = schema.fields().iter().zip(batch.columns());
        for ((field, column), sink) in columns.zip(&mut self.sinks) {
            match sink {
                Sink::Flags(flags) => {
                    let values = column.as_boolean_opt().filter(|c| c.null_count() == 0);
                    let values = values.ok_or_else(|| {
                        ParquetError::General(format!(
                            "column `{}` is not a Boolean column without nulls",
                            field.name()
                        ))
                    })?;
                    flags.append(values.values());
                }
                Sink::Leaves(writers) => {
                    for (leaf, writer) in compute_leaves(field, column)?.iter().zip(writers) {
                        writer.write(leaf)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Encodes the flag columns of a row group on up to `threads` threads, each with its own codec;
/// the results come back in column order.
fn encode_in_parallel(
    columns: Vec<FlagColumn>,
    compression: Compression,
    threads: usize,
) -> Result<Vec<(Bytes, ColumnCloseResult)>, ParquetError> {
    let per_thread = columns.len().div_ceil(threads.max(1)).max(1);
    let mut shares = Vec::new();
    let mut columns = columns.into_iter();
    loop {
        let share: Vec<FlagColumn> = columns.by_ref().take(per_thread).collect();
        if share.is_empty() {
            break;
        }
        shares.push(share);
    }
    let encode_share = move |share: Vec<FlagColumn>| {
        let mut codec = PageCodec::new(compression)?;
        share
            .into_iter()
            .map(|column| column.encode(compression, &mut codec))
            .collect::<Result<Vec<_>, ParquetError>>()
    };
    if shares.len() <= 1 {
        return Ok(shares
            .into_iter()
            .next()
            .map(encode_share)
            .transpose()?
            .unwrap_or_default());
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|share| scope.spawn(move || encode_share(share)))
            .collect();
        let mut encoded = Vec::new();
        for handle in handles {
            let share = handle.join().map_err(|_| {
                ParquetError::General("a thread encoding flag columns panicked".to_owned())
            })?;
            encoded.extend(share?);
        }
        Ok(encoded)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, BooleanArray, Int64Array, StringArray};
    use arrow_schema::Field;
    use parquet::basic::ZstdLevel;

    /// Batches of `sizes` rows: an id, required flags of several densities, a nullable flag
    /// (left to parquet's own writer) and a string column.
    fn batches(sizes: &[usize]) -> (SchemaRef, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("patient_id", ArrowType::Int64, false),
            Field::new("rare", ArrowType::Boolean, false),
            Field::new("common", ArrowType::Boolean, false),
            Field::new("maybe", ArrowType::Boolean, true),
            Field::new("always", ArrowType::Boolean, false),
            Field::new("note", ArrowType::Utf8, false),
        ]));
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut first = 0i64;
        let batches = sizes
            .iter()
            .map(|&rows| {
                let mut flags = |density: u64| -> ArrayRef {
                    let values = (0..rows).map(|_| next() % 1000 < density);
                    Arc::new(BooleanArray::from_iter(values.map(Some)))
                };
                let (rare, common) = (flags(3), flags(400));
                let maybe: ArrayRef = Arc::new(BooleanArray::from_iter(
                    (0..rows).map(|row| (row % 3 != 0).then_some(row % 2 == 0)),
                ));
                let always: ArrayRef = Arc::new(BooleanArray::from(vec![true; rows]));
                let ids = Int64Array::from_iter_values(first..first + rows as i64);
                let notes =
                    StringArray::from_iter_values((0..rows).map(|row| format!("n{}", row % 5)));
                first += rows as i64;
                let columns: Vec<ArrayRef> =
                    vec![Arc::new(ids), rare, common, maybe, always, Arc::new(notes)];
                RecordBatch::try_new(schema.clone(), columns).unwrap()
            })
            .collect();
        (schema, batches)
    }

    fn properties(
        compression: Compression,
        row_group: usize,
        page_rows: usize,
    ) -> WriterProperties {
        WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_row_count(Some(row_group))
            .set_data_page_row_count_limit(page_rows)
            .set_write_batch_size(64)
            .build()
    }

    #[test]
    fn files_are_the_bytes_arrow_writer_writes() {
        let zstd = Compression::ZSTD(ZstdLevel::try_new(3).unwrap());
        let cases = [
            (zstd, 1000, 20_000, vec![1024; 5]),
            (zstd, 777, 100, vec![300, 1, 1024, 999, 64, 2000]),
            (Compression::SNAPPY, 50, 7, vec![129, 3, 400]),
            (Compression::UNCOMPRESSED, 100_000, 33, vec![10, 5000, 17]),
        ];
        for (compression, row_group, page_rows, sizes) in cases {
            let (schema, batches) = batches(&sizes);
            let expected = {
                let props = properties(compression, row_group, page_rows);
                let mut writer =
                    ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props)).unwrap();
                for batch in &batches {
                    writer.write(batch).unwrap();
                }
                writer.into_inner().unwrap()
            };
            let props = properties(compression, row_group, page_rows);
            let mut encoder = ParquetEncoder::new(Vec::new(), schema.clone(), props).unwrap();
            for batch in &batches {
                encoder.write(batch).unwrap();
            }
            let (bytes, row_groups) = encoder.finish().unwrap();
            let rows: usize = sizes.iter().sum();
            assert_eq!(
                row_groups,
                rows.div_ceil(row_group),
                "{compression} {sizes:?}"
            );
            assert!(
                bytes == expected,
                "{compression}, row groups of {row_group}, {sizes:?}"
            );
        }
    }
}
