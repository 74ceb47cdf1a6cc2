//! Exact Hamming nearest neighbours among sparse presence rows, through an inverted index.
//!
//! The distance of sorted index lists `q` and `r` is `|q| + |r| - 2 |q & r|`. Only rows sharing
//! a code with `q` are visited through the postings; the best rows sharing none are the
//! shortest, found by walking the rows in length order.

/// The rows to search, with a posting list per code.
pub struct NearestIndex<'a> {
    rows: Vec<&'a [u32]>,
    postings: Vec<Vec<u32>>,
    by_length: Vec<u32>,
    shared: Vec<u32>,
    touched: Vec<u32>,
}

impl<'a> NearestIndex<'a> {
    /// Indexes `rows` (each a strictly increasing list of codes below `n_codes`).
    pub fn new(rows: Vec<&'a [u32]>, n_codes: usize) -> Self {
        let mut postings = vec![Vec::new(); n_codes];
        for (r, row) in rows.iter().enumerate() {
            for &c in row.iter() {
                postings[c as usize].push(r as u32);
            }
        }
        let mut by_length: Vec<u32> = (0..rows.len() as u32).collect();
        by_length.sort_by_key(|&r| (rows[r as usize].len(), r));
        let shared = vec![0; rows.len()];
        Self {
            rows,
            postings,
            by_length,
            shared,
            touched: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn row(&self, r: u32) -> &'a [u32] {
        self.rows[r as usize]
    }

    /// The `k` nearest rows to `query` as (distance, row), nearest first, ties by lower row.
    pub fn k_nearest(&mut self, query: &[u32], k: usize) -> Vec<(u32, u32)> {
        if k == 0 || self.rows.is_empty() {
            return Vec::new();
        }
        for &c in query {
            if let Some(list) = self.postings.get(c as usize) {
                for &r in list {
                    if self.shared[r as usize] == 0 {
                        self.touched.push(r);
                    }
                    self.shared[r as usize] += 1;
                }
            }
        }
        let q = query.len() as u32;
        let mut found: Vec<(u32, u32)> = self
            .touched
            .iter()
            .map(|&r| {
                (
                    q + self.rows[r as usize].len() as u32 - 2 * self.shared[r as usize],
                    r,
                )
            })
            .collect();
        // The k shortest rows sharing nothing are the only such rows that can be among the k
        // nearest.
        found.extend(
            self.by_length
                .iter()
                .filter(|&&r| self.shared[r as usize] == 0)
                .take(k)
                .map(|&r| (q + self.rows[r as usize].len() as u32, r)),
        );
        for &r in &self.touched {
            self.shared[r as usize] = 0;
        }
        self.touched.clear();
        if found.len() > k {
            found.select_nth_unstable(k - 1);
            found.truncate(k);
        }
        found.sort_unstable();
        found
    }

    /// Distance to the nearest row; `None` when there are no rows.
    pub fn nearest_distance(&mut self, query: &[u32]) -> Option<u32> {
        self.k_nearest(query, 1).first().map(|&(d, _)| d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(rows: &[&[u32]], q: &[u32]) -> Vec<(u32, u32)> {
        let mut all: Vec<(u32, u32)> = rows
            .iter()
            .enumerate()
            .map(|(r, row)| {
                let shared = row.iter().filter(|c| q.contains(c)).count() as u32;
                (q.len() as u32 + row.len() as u32 - 2 * shared, r as u32)
            })
            .collect();
        all.sort_unstable();
        all
    }

    #[test]
    fn agrees_with_brute_force() {
        let rows: Vec<&[u32]> = vec![&[0, 1, 2], &[3], &[], &[1, 2], &[0, 4], &[2, 3, 4]];
        let mut index = NearestIndex::new(rows.clone(), 5);
        for q in [&[][..], &[1], &[1, 2], &[0, 1, 2, 3, 4], &[4]] {
            for k in [1, 2, 4, 10] {
                let mut expected = brute(&rows, q);
                expected.truncate(k);
                assert_eq!(index.k_nearest(q, k), expected, "query {q:?}, k {k}");
            }
        }
        assert_eq!(index.nearest_distance(&[0, 1, 2]), Some(0));
        assert_eq!(
            NearestIndex::new(Vec::new(), 3).nearest_distance(&[1]),
            None
        );
    }
}
