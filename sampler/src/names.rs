//! Column names that strict engines (Spark, Hive, some SQL warehouses) accept for any code.
//!
//! Codes such as `250.83`, `V45` or `E 888` are kept exactly in the default output, but Spark
//! refuses `.` and spaces in Parquet column names and compares names without case. The safe
//! name is `c_` then the code with ASCII letters lower-cased and every other character that is
//! not a letter, digit or `_` replaced by `_`: `250.83` becomes `c_250_83`. Two codes that
//! would meet (`V45` and `v45`, `250.8` and `250_8`) keep the first (in vocabulary order) and
//! give the later ones the suffix `_<column number>`, so names are unique and deterministic.

use std::collections::HashSet;

/// Prefix of every safe name: keeps names from starting with a digit and from meeting
/// `patient_id`.
pub const SAFE_PREFIX: &str = "c_";

/// One safe, unique, lower-case name per code, in the codes' order.
pub fn spark_safe_names(codes: &[String]) -> Vec<String> {
    let mut taken: HashSet<String> = HashSet::new();
    codes
        .iter()
        .enumerate()
        .map(|(column, code)| {
            let base: String = SAFE_PREFIX
                .chars()
                .chain(code.chars().map(|c| match c {
                    'a'..='z' | '0'..='9' | '_' => c,
                    'A'..='Z' => c.to_ascii_lowercase(),
                    _ => '_',
                }))
                .collect();
            let mut name = base.clone();
            let mut attempt = 0;
            while !taken.insert(name.clone()) {
                attempt += 1;
                name = if attempt == 1 {
                    format!("{base}_{column}")
                } else {
                    format!("{base}_{column}_{attempt}")
                };
            }
            name
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(codes: &[&str]) -> Vec<String> {
        spark_safe_names(&codes.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn codes_become_lower_case_identifiers() {
        assert_eq!(
            names(&["250.83", "V45", "E 888", "0389", "P_9904", "é1"]),
            ["c_250_83", "c_v45", "c_e_888", "c_0389", "c_p_9904", "c__1"]
        );
    }

    #[test]
    fn codes_that_would_meet_stay_unique() {
        let made = names(&["V45", "v45", "250.8", "250_8", "c_250_8_3", "250-8"]);
        assert_eq!(
            made,
            [
                "c_v45",
                "c_v45_1",
                "c_250_8",
                "c_250_8_3",
                "c_c_250_8_3",
                "c_250_8_5"
            ]
        );
        let unique: HashSet<_> = made.iter().map(|n| n.to_lowercase()).collect();
        assert_eq!(unique.len(), made.len());
        let clash = names(&["a.b", "a_b", "a_b_1", "a-b"]);
        let unique: HashSet<_> = clash.iter().collect();
        assert_eq!(unique.len(), clash.len(), "{clash:?}");
        assert!(clash.iter().all(|n| {
            n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        }));
    }
}
