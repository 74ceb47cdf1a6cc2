//! Sampling: row counts, determinism, batch independence, draws and their statistics.

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_schema::DataType as ArrowType;
use medgan_sample::{CountDraw, SampleError, Sampler, SamplerOptions};

use crate::common::{chain, collect, fixture, open, options, rows_of, sampler};

#[test]
fn the_graph_computes_what_numpy_computes() {
    for name in ["binary", "count"] {
        let text = std::fs::read_to_string(fixture(&format!("{name}.reference.json"))).unwrap();
        let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
        let as_f32 = |key: &str| -> Vec<f32> {
            reference[key]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|row| {
                    row.as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_f64().unwrap() as f32)
                })
                .collect()
        };
        let (noise, expected) = (as_f32("noise"), as_f32("records"));
        let outputs = sampler(name, options(0, 16)).run_model(&noise).unwrap();
        assert_eq!(outputs.len(), expected.len());
        for (got, want) in outputs.iter().zip(&expected) {
            assert!((got - want).abs() < 1e-5, "{name}: {got} vs {want}");
        }
    }
}

#[test]
fn the_schema_is_patient_id_then_the_vocabulary() {
    for (name, value_type) in [("binary", ArrowType::Boolean), ("count", ArrowType::Int32)] {
        let bundle = open(name);
        let schema = Sampler::new(&bundle, options(1, 10)).unwrap().schema();
        let fields = schema.fields();
        assert_eq!(fields.len(), bundle.manifest().features.len() + 1);
        assert_eq!(
            (fields[0].name().as_str(), fields[0].data_type()),
            ("patient_id", &ArrowType::Int64)
        );
        for (field, code) in fields[1..].iter().zip(&bundle.manifest().features) {
            assert_eq!(field.name(), code);
            assert_eq!(field.data_type(), &value_type);
        }
        assert!(fields.iter().all(|field| !field.is_nullable()));
    }
}

#[test]
fn exactly_n_rows_for_any_n() {
    let sampler = sampler("binary", options(3, 1000));
    for n in [0u64, 1, 999, 10_050] {
        let batches = collect(&sampler, 0..n);
        assert_eq!(batches.len() as u64, n.div_ceil(1000), "n = {n}");
        assert!(batches.iter().all(|batch| batch.num_rows() <= 1000));
        let ids: Vec<i64> = batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        assert_eq!(ids, (0..n as i64).collect::<Vec<_>>(), "n = {n}");
    }
}

#[test]
fn batch_size_never_changes_a_row() {
    for name in ["binary", "count"] {
        let reference = rows_of(&collect(&sampler(name, options(11, 1000)), 0..1000));
        for batch_size in [1, 7] {
            let other = rows_of(&collect(&sampler(name, options(11, batch_size)), 0..1000));
            assert!(
                other == reference,
                "{name}: batch size {batch_size} changed rows"
            );
        }
        let alone = rows_of(&collect(&sampler(name, options(11, 1000)), 500..505));
        assert_eq!(alone, reference[500..505], "{name}: rows 500..505 alone");
    }
}

#[test]
fn the_seed_decides_the_rows() {
    let a = rows_of(&collect(&sampler("binary", options(1, 256)), 0..500));
    let again = rows_of(&collect(&sampler("binary", options(1, 256)), 0..500));
    let b = rows_of(&collect(&sampler("binary", options(2, 256)), 0..500));
    assert_eq!(a, again);
    let differing = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    assert!(
        differing > 400,
        "only {differing} of 500 rows differ between seeds"
    );
}

#[test]
fn bernoulli_prevalences_match_the_mean_probabilities() {
    let n = 20_000u64;
    let sampler = sampler("binary", options(17, 4096));
    let probabilities = sampler.model_outputs(0..n).unwrap();
    let batches = collect(&sampler, 0..n);
    let width = sampler.features().len();
    for code in 0..width {
        let mean_p: f64 = (0..n as usize)
            .map(|r| f64::from(probabilities[r * width + code]))
            .sum::<f64>()
            / n as f64;
        let present: usize = batches
            .iter()
            .map(|b| b.column(code + 1).as_boolean().true_count())
            .sum();
        let prevalence = present as f64 / n as f64;
        // Given the probabilities, the count is a sum of independent Bernoullis; its standard
        // deviation is at most sqrt(p (1 - p) / n). Five of them leaves no room for chance.
        let tolerance = 5.0 * (mean_p * (1.0 - mean_p) / n as f64).sqrt() + 1e-3;
        assert!(
            (prevalence - mean_p).abs() < tolerance,
            "code {code}: prevalence {prevalence:.4} vs mean probability {mean_p:.4}"
        );
    }
}

#[test]
fn threshold_mode_is_the_probability_compared() {
    let options = SamplerOptions {
        threshold: Some(0.4),
        ..options(4, 333)
    };
    let sampler = sampler("binary", options);
    let probabilities = sampler.model_outputs(0..1000).unwrap();
    let rows = rows_of(&collect(&sampler, 0..1000));
    let width = sampler.features().len();
    let mut present = 0;
    for (r, row) in rows.iter().enumerate() {
        for code in 0..width {
            let expected = probabilities[r * width + code] >= 0.4;
            assert_eq!(row[code + 1] == 1, expected, "row {r} code {code}");
            present += usize::from(expected);
        }
    }
    assert!(present > 0 && present < rows.len() * width);
    assert_eq!(sampler.draw_description(), "threshold 0.4");
}

#[test]
fn counts_are_rounded_non_negative_expected_counts() {
    let sampler = sampler("count", options(6, 500));
    let expected = sampler.model_outputs(0..2000).unwrap();
    let rows = rows_of(&collect(&sampler, 0..2000));
    let width = sampler.features().len();
    for (r, row) in rows.iter().enumerate() {
        for code in 0..width {
            let want = f64::from(expected[r * width + code].max(0.0)).round() as i64;
            assert_eq!(row[code + 1], want, "row {r} code {code}");
            assert!(row[code + 1] >= 0);
        }
    }
    assert!(
        rows.iter().any(|row| row[1..].iter().any(|&v| v >= 2)),
        "no count above 1"
    );
}

#[test]
fn poisson_counts_average_the_expected_counts() {
    let n = 20_000u64;
    let options = SamplerOptions {
        counts: CountDraw::Poisson,
        ..options(8, 2048)
    };
    let sampler = sampler("count", options);
    let expected = sampler.model_outputs(0..n).unwrap();
    let batches = collect(&sampler, 0..n);
    let width = sampler.features().len();
    for code in 0..width {
        let mean: f64 = (0..n as usize)
            .map(|r| f64::from(expected[r * width + code].max(0.0)))
            .sum::<f64>()
            / n as f64;
        let column: Vec<i32> = batches
            .iter()
            .flat_map(|b| {
                b.column(code + 1)
                    .as_primitive::<Int32Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        assert!(column.iter().all(|&v| v >= 0));
        let drawn = column.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
        // Var(sum) = sum of the means for independent Poissons: the sd of the average is
        // sqrt(mean / n).
        let tolerance = 5.0 * (mean / n as f64).sqrt() + 1e-3;
        assert!(
            (drawn - mean).abs() < tolerance,
            "code {code}: {drawn:.4} vs {mean:.4}"
        );
    }
}

#[test]
fn options_that_do_not_fit_the_model_are_refused() {
    let cases = [
        (
            "count",
            SamplerOptions {
                threshold: Some(0.5),
                ..options(0, 10)
            },
            "binary models only",
        ),
        (
            "binary",
            SamplerOptions {
                counts: CountDraw::Poisson,
                ..options(0, 10)
            },
            "count models only",
        ),
        (
            "binary",
            SamplerOptions {
                threshold: Some(1.5),
                ..options(0, 10)
            },
            "threshold 1.5",
        ),
        ("binary", options(0, 0), "batch size is 0"),
        (
            "binary",
            SamplerOptions {
                threads: Some(0),
                ..options(0, 10)
            },
            "threads is 0",
        ),
    ];
    for (name, options, expected) in cases {
        let error = Sampler::new(&open(name), options).unwrap_err();
        assert!(matches!(error, SampleError::Options(_)), "{error}");
        assert!(
            chain(&error).contains(expected),
            "`{expected}` not in: {error}"
        );
    }
}

#[test]
fn rows_past_the_largest_patient_id_are_refused() {
    let sampler = sampler("binary", options(0, 10));
    let last = i64::MAX as u64;
    assert_eq!(sampler.batch(last..last + 1).unwrap().num_rows(), 1);
    assert!(matches!(
        sampler.batch(last..last + 2),
        Err(SampleError::RowRange { .. })
    ));
    assert!(matches!(
        sampler.run_model(&[0.0; 5]),
        Err(SampleError::NoiseShape { .. })
    ));
}
