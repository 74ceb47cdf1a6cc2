//! Which rows a run writes: all of a request, an explicit `START..END`, or shard `K/N` of it.
//!
//! Rows are numbered globally (`patient_id` is the row index) and row `i` depends only on the
//! seed and `i`, so any split of a request into ranges, written anywhere, concatenates to
//! exactly the rows of the whole request.

use std::ops::Range;
use std::str::FromStr;

use thiserror::Error;

/// A shard `index` of `count` (zero-based): `index < count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

/// A row range or shard given on the command line could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RowsError {
    #[error("`{0}` is not a row range START..END (e.g. 0..1000000)")]
    RangeSyntax(String),
    #[error("row range {start}..{end} ends before it starts")]
    Backwards { start: u64, end: u64 },
    #[error("`{0}` is not a shard K/N (e.g. 3/8, K counted from 0)")]
    ShardSyntax(String),
    #[error("shard {index}/{count}: K must be below N (shards are numbered 0 to N-1)")]
    ShardIndex { index: u64, count: u64 },
    #[error("row {0} is past the largest patient_id, {max}", max = i64::MAX)]
    TooLarge(u64),
}

/// Parses `START..END` (end exclusive), refusing rows past the largest `patient_id`.
pub fn parse_row_range(text: &str) -> Result<Range<u64>, RowsError> {
    let syntax = || RowsError::RangeSyntax(text.to_owned());
    let (start, end) = text.split_once("..").ok_or_else(syntax)?;
    let start: u64 = start.trim().parse().map_err(|_| syntax())?;
    let end: u64 = end.trim().parse().map_err(|_| syntax())?;
    if end < start {
        return Err(RowsError::Backwards { start, end });
    }
    check_patient_ids(start..end)?;
    Ok(start..end)
}

impl FromStr for Shard {
    type Err = RowsError;

    fn from_str(text: &str) -> Result<Shard, RowsError> {
        let syntax = || RowsError::ShardSyntax(text.to_owned());
        let (index, count) = text.split_once('/').ok_or_else(syntax)?;
        let index: u64 = index.trim().parse().map_err(|_| syntax())?;
        let count: u64 = count.trim().parse().map_err(|_| syntax())?;
        if count == 0 {
            return Err(syntax());
        }
        if index >= count {
            return Err(RowsError::ShardIndex { index, count });
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// The rows of this shard of `0..total`: contiguous, in order, sizes differing by at most
    /// one, and together exactly `0..total` (shard `k` starts at `floor(total * k / N)`).
    pub fn rows(self, total: u64) -> Range<u64> {
        let boundary = |k: u64| (u128::from(total) * u128::from(k) / u128::from(self.count)) as u64;
        boundary(self.index)..boundary(self.index + 1)
    }
}

/// Refuses rows whose index would not fit `patient_id` (an `i64`).
pub fn check_patient_ids(rows: Range<u64>) -> Result<(), RowsError> {
    if rows.end > rows.start && i64::try_from(rows.end - 1).is_err() {
        return Err(RowsError::TooLarge(rows.end - 1));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_tile_the_request_exactly() {
        for total in [0u64, 1, 7, 10, 1000, 1_000_003] {
            for count in [1u64, 2, 3, 8, 13] {
                let mut next = 0;
                for index in 0..count {
                    let rows = Shard { index, count }.rows(total);
                    assert_eq!(rows.start, next, "{total} rows, shard {index}/{count}");
                    let size = rows.end - rows.start;
                    assert!(size == total / count || size == total / count + 1);
                    next = rows.end;
                }
                assert_eq!(next, total);
            }
        }
        let huge = i64::MAX as u64;
        assert_eq!(Shard { index: 2, count: 3 }.rows(huge).end, huge);
    }

    #[test]
    fn ranges_and_shards_parse_or_say_why_not() {
        assert_eq!(parse_row_range("10..250"), Ok(10..250));
        assert_eq!(parse_row_range("5..5"), Ok(5..5));
        assert_eq!(
            parse_row_range("9..3"),
            Err(RowsError::Backwards { start: 9, end: 3 })
        );
        assert!(matches!(
            parse_row_range("10-20"),
            Err(RowsError::RangeSyntax(_))
        ));
        assert!(matches!(
            parse_row_range("0..18446744073709551615"),
            Err(RowsError::TooLarge(_))
        ));
        assert_eq!("3/8".parse(), Ok(Shard { index: 3, count: 8 }));
        assert_eq!(
            "8/8".parse::<Shard>(),
            Err(RowsError::ShardIndex { index: 8, count: 8 })
        );
        assert!(matches!(
            "1/0".parse::<Shard>(),
            Err(RowsError::ShardSyntax(_))
        ));
        assert!(
            "x/2"
                .parse::<Shard>()
                .unwrap_err()
                .to_string()
                .contains("`x/2`")
        );
    }
}
