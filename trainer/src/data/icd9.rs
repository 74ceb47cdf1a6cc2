//! ICD-9 code rewriting applied while reading: zero-padding and medGAN's 3-digit grouping.

use std::borrow::Cow;

/// How each code read is rewritten before it enters the vocabulary.
///
/// Padding runs first, then grouping, so `--icd9-zero-pad --icd9-3digit` turns UCI Diabetes'
/// "38" into "038" (septicaemia) instead of leaving a two-character category.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CodeMapping {
    /// Group codes into ICD-9 categories (see [`icd9_3digit`]).
    pub icd9_3digit: bool,
    /// Left-pad short numeric codes with zeros (see [`icd9_zero_pad`]).
    pub icd9_zero_pad: bool,
}

impl CodeMapping {
    /// True when codes are kept exactly as read.
    pub fn is_identity(&self) -> bool {
        !self.icd9_3digit && !self.icd9_zero_pad
    }

    pub fn apply<'a>(&self, code: &'a str) -> Cow<'a, str> {
        let padded = if self.icd9_zero_pad {
            icd9_zero_pad(code)
        } else {
            Cow::Borrowed(code)
        };
        if !self.icd9_3digit {
            return padded;
        }
        match padded {
            Cow::Borrowed(code) => Cow::Borrowed(icd9_3digit(code)),
            Cow::Owned(code) => Cow::Owned(icd9_3digit(&code).to_owned()),
        }
    }
}

/// The ICD-9 category of a code, following medGAN's `convert_to_3digit_icd9`.
///
/// A dotted code is cut at the dot first ("250.83" -> "250"). Then E codes keep 4 characters
/// ("E8497" -> "E849") and all others 3 ("0389" -> "038", "V3000" -> "V30"). A code already that
/// short is kept as it is: "389" stays "389". (The issue claimed "389" -> "038"; that contradicts
/// both medGAN and ICD-9, where 389 is hearing loss and 038 septicaemia, so we follow medGAN.)
pub fn icd9_3digit(code: &str) -> &str {
    let stem = code.split_once('.').map_or(code, |(before, _)| before);
    let keep = if stem.starts_with('E') { 4 } else { 3 };
    match stem.char_indices().nth(keep) {
        Some((cut, _)) => &stem[..cut],
        None => stem,
    }
}

/// Restores the leading zeros some publishers drop from numeric ICD-9 codes.
///
/// When the part before the dot is all digits and shorter than 3, it is left-padded with
/// zeros: "38" -> "038", "8" -> "008", "8.1" -> "008.1". Other codes ("250.83", "V30", "E849")
/// are unchanged.
pub fn icd9_zero_pad(code: &str) -> Cow<'_, str> {
    let stem = code.split_once('.').map_or(code, |(before, _)| before);
    if stem.is_empty() || stem.len() >= 3 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return Cow::Borrowed(code);
    }
    Cow::Owned(format!("{}{code}", "0".repeat(3 - stem.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_digit_grouping_follows_medgan() {
        let table = [
            ("0389", "038"),
            ("V3000", "V30"),
            ("E8497", "E849"),
            // medGAN keeps a 3-character code as it is; the "389" -> "038" was wrong.
            ("389", "389"),
            ("250.83", "250"),
            ("250", "250"),
            ("E849.7", "E849"),
            ("E84", "E84"),
            ("V30.01", "V30"),
            ("38", "38"),
            ("4019", "401"),
            ("99591", "995"),
        ];
        for (code, group) in table {
            assert_eq!(icd9_3digit(code), group, "grouping {code}");
        }
    }

    #[test]
    fn zero_padding_touches_short_numeric_codes_only() {
        let table = [
            ("38", "038"),
            ("8", "008"),
            ("8.1", "008.1"),
            ("250.83", "250.83"),
            ("250", "250"),
            ("V30", "V30"),
            ("E849", "E849"),
            ("", ""),
            ("1a", "1a"),
        ];
        for (code, padded) in table {
            assert_eq!(icd9_zero_pad(code), padded, "padding {code}");
        }
    }

    #[test]
    fn padding_runs_before_grouping() {
        let both = CodeMapping {
            icd9_3digit: true,
            icd9_zero_pad: true,
        };
        assert_eq!(both.apply("38"), "038");
        assert_eq!(both.apply("8.1"), "008");
        assert_eq!(both.apply("250.83"), "250");
        assert_eq!(both.apply("E8497"), "E849");
        let grouping_only = CodeMapping {
            icd9_3digit: true,
            icd9_zero_pad: false,
        };
        assert_eq!(grouping_only.apply("38"), "38");
        let none = CodeMapping::default();
        assert!(none.is_identity());
        for code in ["0389", "389", "V3000", "E8497", "001", "01", "1"] {
            assert_eq!(none.apply(code), code);
        }
    }
}
