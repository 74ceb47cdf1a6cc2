//! Parquet column chunks of required Boolean columns written straight from Arrow bitmaps.
//!
//! A required Boolean column's PLAIN data page is its values bit-packed least significant bit
//! first, which is exactly an Arrow bitmap: the page is a copy of the bits, then compressed. The
//! parquet crate's own path reads every value through `BooleanArray::value`, computes min/max
//! value by value and packs the bits again, which costs more than sampling the flags did.
//! Pages are cut, headed, counted and indexed as `parquet`'s `GenericColumnWriter` does
//! (checked byte for byte against `ArrowWriter` in the tests), so files do not change.

use arrow_buffer::{BooleanBuffer, BooleanBufferBuilder};
use bytes::Bytes;
use parquet::basic::{BoundaryOrder, Compression, Encoding, EncodingMask, PageType};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::metadata::{
    ColumnChunkMetaData, ColumnIndexBuilder, OffsetIndexBuilder, PageEncodingStats,
};
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::properties::WriterProperties;
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

/// Compresses pages as the codec `parquet` would pick for the same `Compression`, so that the
/// bytes match; one per thread, reused across pages.
pub(crate) enum PageCodec {
    Uncompressed,
    Snappy(Box<snap::raw::Encoder>),
    Zstd(Box<zstd::bulk::Compressor<'static>>),
}

impl PageCodec {
    pub(crate) fn new(compression: Compression) -> Result<PageCodec, ParquetError> {
        Ok(match compression {
            Compression::UNCOMPRESSED => PageCodec::Uncompressed,
            Compression::SNAPPY => PageCodec::Snappy(Box::new(snap::raw::Encoder::new())),
            Compression::ZSTD(level) => PageCodec::Zstd(Box::new(
                zstd::bulk::Compressor::new(level.compression_level())
                    .map_err(|error| ParquetError::External(Box::new(error)))?,
            )),
            other => {
                return Err(ParquetError::NYI(format!(
                    "flag pages compressed with {other}"
                )));
            }
        })
    }

    fn compress(&mut self, page: Vec<u8>) -> Result<Vec<u8>, ParquetError> {
        let external =
            |error: Box<dyn std::error::Error + Send + Sync>| ParquetError::External(error);
        match self {
            PageCodec::Uncompressed => Ok(page),
            PageCodec::Snappy(encoder) => encoder
                .compress_vec(&page)
                .map_err(|e| external(Box::new(e))),
            PageCodec::Zstd(compressor) => compressor
                .compress(&page)
                .map_err(|e| external(Box::new(e))),
        }
    }
}

/// One row group's values of one required Boolean column, with its page boundaries.
pub(crate) struct FlagColumn {
    descr: ColumnDescPtr,
    bits: BooleanBufferBuilder,
    /// Row (within the row group) where each completed page ends.
    page_ends: Vec<usize>,
    page_start: usize,
    /// `parquet`'s mini-batch: the page limits are checked after each of this many values.
    write_batch_size: usize,
    page_row_limit: usize,
    page_byte_limit: usize,
}

impl FlagColumn {
    pub(crate) fn new(descr: ColumnDescPtr, properties: &WriterProperties) -> FlagColumn {
        let path = descr.path();
        FlagColumn {
            bits: BooleanBufferBuilder::new(0),
            page_ends: Vec::new(),
            page_start: 0,
            write_batch_size: properties.write_batch_size().max(1),
            page_row_limit: properties.column_data_page_row_count_limit(path),
            page_byte_limit: properties.column_data_page_size_limit(path),
            descr,
        }
    }

    /// Appends one write's values, cutting pages where the column writer would.
    pub(crate) fn append(&mut self, values: &BooleanBuffer) {
        let mut offset = 0;
        while offset < values.len() {
            let take = self.write_batch_size.min(values.len() - offset);
            self.bits.append_buffer(&values.slice(offset, take));
            offset += take;
            let rows = self.bits.len() - self.page_start;
            if rows >= self.page_row_limit || rows.div_ceil(8) >= self.page_byte_limit {
                self.page_ends.push(self.bits.len());
                self.page_start = self.bits.len();
            }
        }
    }

    /// Encodes the column chunk: its bytes (offsets from 0) and what closing a column writer
    /// would have returned, for `SerializedRowGroupWriter::append_column`.
    pub(crate) fn encode(
        mut self,
        compression: Compression,
        codec: &mut PageCodec,
    ) -> Result<(Bytes, ColumnCloseResult), ParquetError> {
        let rows = self.bits.len();
        if self.page_start < rows {
            self.page_ends.push(rows);
        }
        let bits = self.bits.finish();
        let mut sink = TrackedWrite::new(Vec::new());
        let mut column_index = ColumnIndexBuilder::new(self.descr.physical_type());
        let mut offset_index = OffsetIndexBuilder::new();
        let (mut ascending, mut descending) = (true, true);
        let mut last: Option<(bool, bool)> = None;
        let (mut chunk_min, mut chunk_max): (Option<bool>, Option<bool>) = (None, None);
        let (mut compressed_total, mut uncompressed_total) = (0u64, 0u64);
        let mut start = 0;
        {
            let mut pages = SerializedPageWriter::new(&mut sink);
            for &end in &self.page_ends {
                let page_bits = bits.slice(start, end - start);
                let ones = page_bits.count_set_bits();
                let (min, max) = (ones == page_bits.len(), ones > 0);
                let data = packed(&page_bits);
                let uncompressed = data.len();
                let page = Page::DataPage {
                    buf: Bytes::from(codec.compress(data)?),
                    num_values: (end - start) as u32,
                    encoding: Encoding::PLAIN,
                    def_level_encoding: Encoding::RLE,
                    rep_level_encoding: Encoding::RLE,
                    statistics: None,
                };
                let spec = pages.write_page(CompressedPage::new(page, uncompressed))?;
                if let Some((last_min, last_max)) = last {
                    ascending &= !(last_min & !min) && !(last_max & !max);
                    descending &= !(min & !last_min) && !(max & !last_max);
                }
                last = Some((min, max));
                chunk_min = Some(chunk_min.map_or(min, |m| m & min));
                chunk_max = Some(chunk_max.map_or(max, |m| m | max));
                column_index.append(false, vec![u8::from(min)], vec![u8::from(max)], 0, None);
                offset_index.append_row_count((end - start) as i64);
                offset_index
                    .append_offset_and_size(spec.offset as i64, spec.compressed_size as i32);
                compressed_total += spec.compressed_size as u64;
                uncompressed_total += spec.uncompressed_size as u64;
                start = end;
            }
            pages.close()?;
        }
        column_index.set_boundary_order(match (ascending, descending) {
            (true, _) => BoundaryOrder::ASCENDING,
            (false, true) => BoundaryOrder::DESCENDING,
            (false, false) => BoundaryOrder::UNORDERED,
        });
        let column_index: ColumnIndexMetaData = column_index.build()?;
        let statistics = ValueStatistics::new(chunk_min, chunk_max, None, Some(0), false)
            .with_nan_count(None)
            .with_backwards_compatible_min_max(self.descr.sort_order().is_signed());
        let encodings = [Encoding::PLAIN, Encoding::RLE];
        let page_stats = (!self.page_ends.is_empty()).then_some(PageEncodingStats {
            page_type: PageType::DATA_PAGE,
            encoding: Encoding::PLAIN,
            count: self.page_ends.len() as i32,
        });
        let metadata = ColumnChunkMetaData::builder(self.descr.clone())
            .set_compression(compression)
            .set_encodings_mask(EncodingMask::new_from_encodings(encodings.iter()))
            .set_page_encoding_stats(page_stats.into_iter().collect())
            .set_total_compressed_size(compressed_total as i64)
            .set_total_uncompressed_size(uncompressed_total as i64)
            .set_num_values(rows as i64)
            .set_data_page_offset(0)
            .set_dictionary_page_offset(None)
            .set_statistics(Statistics::Boolean(statistics))
            .build()?;
        let bytes_written = sink.bytes_written() as u64;
        let close = ColumnCloseResult {
            bytes_written,
            rows_written: rows as u64,
            metadata,
            bloom_filter: None,
            column_index: Some(column_index),
            offset_index: Some(offset_index.build()),
        };
        Ok((Bytes::from(sink.into_inner()?), close))
    }
}

/// The bits as PLAIN-encoded bytes: least significant bit first, the last byte zero-padded.
fn packed(bits: &BooleanBuffer) -> Vec<u8> {
    let mut bytes = bits.sliced().to_vec();
    bytes.truncate(bits.len().div_ceil(8));
    let tail = bits.len() % 8;
    if let (Some(last), true) = (bytes.last_mut(), tail != 0) {
        *last &= (1u8 << tail) - 1;
    }
    bytes
}
