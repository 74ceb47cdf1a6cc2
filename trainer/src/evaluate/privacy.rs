//! Privacy metrics: distance to the closest training record, exact copies, and the presence
//! and attribute disclosure attacks of the medGAN paper, all on presence (counts ignored).

use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::nearest::NearestIndex;
use super::stats::{self, Stat};
use super::{EvalOptions, sample_rows};
use crate::data::PatientMatrix;

/// Quantiles reported for every distance distribution.
pub const DISTANCE_QUANTILES: [f64; 8] = [0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9];

/// Quantiles (at [`DISTANCE_QUANTILES`]) and mean of Hamming distances.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct DistanceSummary {
    pub rows: usize,
    pub quantiles: Vec<QuantileValue>,
    pub mean: Stat,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct QuantileValue {
    pub q: f64,
    pub value: Stat,
}

fn summarise(distances: &[u32]) -> DistanceSummary {
    let mut sorted: Vec<f64> = distances.iter().map(|&d| d as f64).collect();
    sorted.sort_by(f64::total_cmp);
    DistanceSummary {
        rows: sorted.len(),
        quantiles: DISTANCE_QUANTILES
            .iter()
            .map(|&q| QuantileValue {
                q,
                value: stats::quantile(&sorted, q),
            })
            .collect(),
        mean: stats::ratio(sorted.iter().sum(), sorted.len() as f64, "rows"),
    }
}

/// Exact copies of training rows among non-empty rows; all-zero rows counted apart.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct CopyRate {
    pub non_empty_rows: usize,
    pub copies: usize,
    /// `copies / non_empty_rows`.
    pub rate: Stat,
    pub all_zero_rows: usize,
}

fn copy_rate(rows: &[&[u32]], distances: &[u32]) -> CopyRate {
    let non_empty: Vec<u32> = rows
        .iter()
        .zip(distances)
        .filter(|(r, _)| !r.is_empty())
        .map(|(_, &d)| d)
        .collect();
    let copies = non_empty.iter().filter(|&&d| d == 0).count();
    CopyRate {
        non_empty_rows: non_empty.len(),
        copies,
        rate: stats::ratio(copies as f64, non_empty.len() as f64, "non-empty rows"),
        all_zero_rows: rows.len() - non_empty.len(),
    }
}

/// One threshold of the presence attack.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct PresencePoint {
    /// Membership is claimed when some synthetic row lies within this Hamming distance.
    pub distance: u32,
    /// Share of the attacker's training records claimed.
    pub sensitivity: Stat,
    /// Share of claims that are training records (0.5 is guessing: half the records are).
    pub precision: Stat,
}

/// Attribute attack with `neighbours` nearest synthetic rows voting.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct AttributePoint {
    pub neighbours: usize,
    /// Over all attacked training patients: correct inferred codes / inferred codes.
    pub precision: Stat,
    /// Correct inferred codes / hidden codes.
    pub recall: Stat,
    /// The same attack on held-out patients, who are not in the training data: what the
    /// synthetic data tells about anyone, not about members.
    pub holdout_precision: Stat,
    pub holdout_recall: Stat,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Privacy {
    /// Synthetic rows examined (a seeded sample of at most `privacy_rows`).
    pub synthetic_rows_sampled: usize,
    pub holdout_rows_sampled: usize,
    /// Every training row is searched.
    pub training_rows_searched: usize,
    /// Distance from each sampled synthetic row to its closest training row.
    pub synthetic_to_train: DistanceSummary,
    /// The same for held-out real rows: the distance a fresh real patient has.
    pub holdout_to_train: DistanceSummary,
    pub synthetic_copies: CopyRate,
    pub holdout_copies: CopyRate,
    /// The attacker holds this many training and as many held-out records.
    pub presence_records_each: usize,
    pub presence: Vec<PresencePoint>,
    /// Share of each attacked patient's codes the attacker knows (at least one stays hidden).
    pub attribute_known_fraction: f64,
    pub attribute_patients: usize,
    pub attribute: Vec<AttributePoint>,
}

fn rows_of<'a>(matrix: &'a PatientMatrix, rows: &[usize]) -> Vec<&'a [u32]> {
    rows.iter().map(|&p| matrix.row(p).0).collect()
}

pub fn privacy(
    train: &PatientMatrix,
    holdout: &PatientMatrix,
    synthetic: &PatientMatrix,
    options: &EvalOptions,
    rng: &mut ChaCha8Rng,
) -> Privacy {
    let all_train: Vec<&[u32]> = (0..train.n_patients()).map(|p| train.row(p).0).collect();
    let mut train_index = NearestIndex::new(all_train, train.n_codes());
    let synthetic_rows = rows_of(
        synthetic,
        &sample_rows(synthetic.n_patients(), options.privacy_rows, rng),
    );
    let holdout_rows = rows_of(
        holdout,
        &sample_rows(holdout.n_patients(), options.privacy_rows, rng),
    );
    let mut to_train = |rows: &[&[u32]]| -> Vec<u32> {
        rows.iter()
            .filter_map(|r| train_index.nearest_distance(r))
            .collect()
    };
    let synthetic_distances = to_train(&synthetic_rows);
    let holdout_distances = to_train(&holdout_rows);

    // Presence attack: equal numbers of training and held-out records.
    let each = options
        .privacy_rows
        .min(train.n_patients())
        .min(holdout.n_patients());
    let attack_train = rows_of(train, &sample_rows(train.n_patients(), each, rng));
    let attack_holdout = rows_of(holdout, &sample_rows(holdout.n_patients(), each, rng));
    let mut synthetic_index = NearestIndex::new(synthetic_rows.clone(), synthetic.n_codes());
    let mut to_synthetic = |rows: &[&[u32]]| -> Vec<Option<u32>> {
        rows.iter()
            .map(|r| synthetic_index.nearest_distance(r))
            .collect()
    };
    let member_distances = to_synthetic(&attack_train);
    let outsider_distances = to_synthetic(&attack_holdout);
    let presence = options
        .presence_distances
        .iter()
        .map(|&d| {
            let claimed =
                |ds: &[Option<u32>]| ds.iter().filter(|x| x.is_some_and(|x| x <= d)).count();
            let (tp, fp) = (claimed(&member_distances), claimed(&outsider_distances));
            PresencePoint {
                distance: d,
                sensitivity: stats::ratio(tp as f64, each as f64, "attacker records"),
                precision: stats::ratio(tp as f64, (tp + fp) as f64, "membership claims"),
            }
        })
        .collect();

    let attacked_members: Vec<&[u32]> = attack_train
        .iter()
        .copied()
        .filter(|r| r.len() >= 2)
        .collect();
    let attacked_outsiders: Vec<&[u32]> = attack_holdout
        .iter()
        .copied()
        .filter(|r| r.len() >= 2)
        .collect();
    let member_splits = split_known(&attacked_members, options.attribute_known_fraction, rng);
    let outsider_splits = split_known(&attacked_outsiders, options.attribute_known_fraction, rng);
    let attribute = options
        .attribute_neighbours
        .iter()
        .map(|&k| {
            let (precision, recall) = attribute_attack(&mut synthetic_index, &member_splits, k);
            let (holdout_precision, holdout_recall) =
                attribute_attack(&mut synthetic_index, &outsider_splits, k);
            AttributePoint {
                neighbours: k,
                precision,
                recall,
                holdout_precision,
                holdout_recall,
            }
        })
        .collect();

    Privacy {
        synthetic_rows_sampled: synthetic_rows.len(),
        holdout_rows_sampled: holdout_rows.len(),
        training_rows_searched: train.n_patients(),
        synthetic_to_train: summarise(&synthetic_distances),
        holdout_to_train: summarise(&holdout_distances),
        synthetic_copies: copy_rate(&synthetic_rows, &synthetic_distances),
        holdout_copies: copy_rate(&holdout_rows, &holdout_distances),
        presence_records_each: each,
        presence,
        attribute_known_fraction: options.attribute_known_fraction,
        attribute_patients: attacked_members.len(),
        attribute,
    }
}

/// Splits each row's codes into (known, hidden), both sorted, at least one code in each.
fn split_known(rows: &[&[u32]], fraction: f64, rng: &mut ChaCha8Rng) -> Vec<(Vec<u32>, Vec<u32>)> {
    rows.iter()
        .map(|row| {
            let mut codes = row.to_vec();
            codes.shuffle(rng);
            let known = ((row.len() as f64 * fraction).round() as usize).clamp(1, row.len() - 1);
            let mut hidden = codes.split_off(known);
            codes.sort_unstable();
            hidden.sort_unstable();
            (codes, hidden)
        })
        .collect()
}

/// Micro precision and recall of inferring hidden codes by majority vote of the `k` synthetic
/// rows nearest to the known codes.
fn attribute_attack(
    index: &mut NearestIndex,
    splits: &[(Vec<u32>, Vec<u32>)],
    k: usize,
) -> (Stat, Stat) {
    if index.is_empty() {
        let none = || Stat::undefined("the synthetic data has no rows");
        return (none(), none());
    }
    let (mut inferred, mut correct, mut hidden_total) = (0u64, 0u64, 0u64);
    let mut votes: Vec<(u32, usize)> = Vec::new();
    for (known, hidden) in splits {
        votes.clear();
        let neighbours = index.k_nearest(known, k);
        for &(_, r) in &neighbours {
            for &c in index.row(r) {
                match votes.iter_mut().find(|(code, _)| *code == c) {
                    Some(v) => v.1 += 1,
                    None => votes.push((c, 1)),
                }
            }
        }
        for &(c, n) in &votes {
            if 2 * n > neighbours.len() && known.binary_search(&c).is_err() {
                inferred += 1;
                correct += u64::from(hidden.binary_search(&c).is_ok());
            }
        }
        hidden_total += hidden.len() as u64;
    }
    (
        stats::ratio(correct as f64, inferred as f64, "code inferred"),
        stats::ratio(correct as f64, hidden_total as f64, "hidden code"),
    )
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::super::fidelity::tests::binary;
    use super::*;

    #[test]
    fn copies_and_distances_on_known_input() {
        let train = binary(4, &[&[0, 1], &[2], &[]]);
        let holdout = binary(4, &[&[0, 1, 3], &[3]]);
        let synthetic = binary(4, &[&[0, 1], &[], &[2, 3], &[2]]);
        let options = EvalOptions::default();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let p = privacy(&train, &holdout, &synthetic, &options, &mut rng);
        assert_eq!(p.synthetic_to_train.rows, 4);
        // Distances 0, 0, 1, 0: two non-empty exact copies, one all-zero row apart.
        assert_eq!(p.synthetic_copies.copies, 2);
        assert_eq!(p.synthetic_copies.non_empty_rows, 3);
        assert_eq!(p.synthetic_copies.all_zero_rows, 1);
        assert_eq!(p.synthetic_to_train.mean.get(), Some(0.25));
        assert_eq!(p.holdout_copies.rate.get(), Some(0.0));
        assert_eq!(p.holdout_to_train.quantiles[0].value.get(), Some(1.0));
        // Attacker: 2 training and 2 held-out records. At distance 0 only members {0,1}, {2}
        // (and the empty training row, matched by the empty synthetic row) are claimed.
        assert_eq!(p.presence_records_each, 2);
        let at0 = &p.presence[0];
        assert_eq!((at0.distance, at0.sensitivity.get()), (0, Some(1.0)));
        assert_eq!(at0.precision.get(), Some(1.0));
    }

    #[test]
    fn attribute_attack_recovers_copied_patients() {
        let rows: Vec<&[u32]> = vec![&[0, 1], &[2, 3], &[4, 5]];
        let mut index = NearestIndex::new(rows.clone(), 6);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let splits = split_known(&rows, 0.5, &mut rng);
        assert!(splits.iter().all(|(k, h)| k.len() == 1 && h.len() == 1));
        let (precision, recall) = attribute_attack(&mut index, &splits, 1);
        assert_eq!((precision.get(), recall.get()), (Some(1.0), Some(1.0)));
        let mut empty = NearestIndex::new(Vec::new(), 6);
        assert!(attribute_attack(&mut empty, &splits, 1).0.get().is_none());
    }

    #[test]
    fn empty_inputs_are_undefined() {
        let empty = binary(3, &[]);
        let train = binary(3, &[&[0]]);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let p = privacy(&train, &empty, &empty, &EvalOptions::default(), &mut rng);
        assert!(p.synthetic_to_train.mean.get().is_none());
        assert!(p.synthetic_copies.rate.get().is_none());
        assert!(p.presence.iter().all(|x| x.sensitivity.get().is_none()));
    }
}
