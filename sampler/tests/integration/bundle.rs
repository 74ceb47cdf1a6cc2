//! Opening bundles: the fixtures, tampered and broken bundles, and the embedded default.

use std::path::Path;

use medgan_sample::bundle::manifest::FORMAT_VERSION;
use medgan_sample::{Bundle, BundleError, BundleProblem, DataType, Sampler};
use sha2::{Digest, Sha256};

use crate::common::{chain, collect, copy_fixture, fixture, open, options, rows_of};

#[test]
fn fixture_bundles_open_with_their_manifests() {
    for (name, data_type, codes) in [
        ("binary", DataType::Binary, 12),
        ("count", DataType::Count, 10),
    ] {
        let bundle = open(name);
        assert_eq!(bundle.data_type(), data_type);
        assert_eq!(bundle.manifest().features.len(), codes);
        assert_eq!(bundle.manifest().noise_dim, 8);
        let manifest_bytes = std::fs::read(fixture(name).join("manifest.json")).unwrap();
        assert_eq!(
            bundle.manifest_sha256(),
            hex::encode(Sha256::digest(&manifest_bytes))
        );
        assert_eq!(bundle.dir(), Some(fixture(name).as_path()));
    }
}

fn open_error(dir: &Path) -> (BundleError, String) {
    let error = Bundle::open(dir).expect_err("the bundle should be refused");
    let text = chain(&error);
    (error, text)
}

#[test]
fn a_tampered_graph_is_refused_naming_the_bundle_and_file() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture("binary", dir.path());
    let graph = dir.path().join("sampler.onnx");
    let mut bytes = std::fs::read(&graph).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&graph, &bytes).unwrap();
    let (error, text) = open_error(dir.path());
    assert!(
        matches!(&error, BundleError::Open { problem: BundleProblem::Checksum { file, .. }, .. }
            if file == "sampler.onnx"),
        "{text}"
    );
    let expected = format!(
        "cannot open model bundle {}: sampler.onnx: sha256 is",
        dir.path().display()
    );
    assert!(text.starts_with(&expected), "{text}");
}

#[test]
fn every_listed_file_is_checked_not_only_the_graph() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture("count", dir.path());
    std::fs::write(dir.path().join("MODEL_CARD.md"), "# edited\n").unwrap();
    let (error, text) = open_error(dir.path());
    assert!(
        matches!(&error, BundleError::Open { problem: BundleProblem::Size { file, .. }, .. }
            if file == "MODEL_CARD.md"),
        "{text}"
    );
    assert!(
        text.contains("MODEL_CARD.md: the file has 9 bytes but the manifest lists"),
        "{text}"
    );
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    std::fs::copy(
        fixture("count/MODEL_CARD.md"),
        dir.path().join("MODEL_CARD.md"),
    )
    .unwrap();
    let (_, text) = open_error(dir.path());
    assert!(text.contains("model.safetensors: No such file"), "{text}");
}

fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut manifest);
    std::fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
}

#[test]
fn a_manifest_without_features_reads_as_one_sentence() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture("binary", dir.path());
    edit_manifest(dir.path(), |m| {
        m.as_object_mut().unwrap().remove("features");
    });
    let (_, text) = open_error(dir.path());
    let expected = format!(
        "cannot open model bundle {}: manifest.json: missing field `features`",
        dir.path().display()
    );
    assert!(text.starts_with(&expected), "{text}");
}

#[test]
fn a_newer_format_is_refused_naming_the_known_versions() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture("binary", dir.path());
    let newer = FORMAT_VERSION + 1;
    edit_manifest(dir.path(), |m| {
        m["format_version"] = newer.into();
        m["a_field_from_the_future"] = true.into();
    });
    let (error, text) = open_error(dir.path());
    assert!(
        matches!(error, BundleError::Open { problem: BundleProblem::NewerFormat { found, .. }, .. }
            if found == newer),
        "{text}"
    );
    assert!(
        text.contains(&format!("format version {newer} is newer")),
        "{text}"
    );
    assert!(text.contains("it knows versions 1"), "{text}");
}

#[test]
fn manifests_that_break_the_graph_contract_are_refused() {
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, Edit); 4] = [
        ("features[1] `D_250` appears twice", |m| {
            m["features"][1] = "D_250".into()
        }),
        ("graphs.sampler.output.shape", |m| {
            m["graphs"]["sampler"]["output"]["shape"][1] = 3.into()
        }),
        ("graphs.sampler.input is named `z`", |m| {
            m["graphs"]["sampler"]["input"]["name"] = "z".into()
        }),
        ("not a plain relative path", |m| {
            m["files"][0]["path"] = "../escape".into()
        }),
    ];
    for (expected, edit) in cases {
        let dir = tempfile::tempdir().unwrap();
        copy_fixture("binary", dir.path());
        edit_manifest(dir.path(), edit);
        let (_, text) = open_error(dir.path());
        assert!(text.contains(expected), "`{expected}` not in: {text}");
    }
}

#[test]
fn a_missing_folder_says_so() {
    let (_, text) = open_error(Path::new("/nonexistent/models/x"));
    assert_eq!(
        text,
        "cannot open model bundle /nonexistent/models/x: no such folder"
    );
}

#[test]
fn a_bundle_in_memory_gives_the_same_rows_as_on_disk() {
    static MANIFEST: &[u8] = include_bytes!("../fixtures/binary/manifest.json");
    static GRAPH: &[u8] = include_bytes!("../fixtures/binary/sampler.onnx");
    let in_memory = Bundle::from_static("fixture in memory", MANIFEST, &[("sampler.onnx", GRAPH)])
        .unwrap_or_else(|error| panic!("{}", chain(&error)));
    assert!(in_memory.dir().is_none());
    let from_memory = Sampler::new(&in_memory, options(5, 64)).unwrap();
    let from_disk = Sampler::new(&open("binary"), options(5, 64)).unwrap();
    assert_eq!(
        rows_of(&collect(&from_memory, 0..300)),
        rows_of(&collect(&from_disk, 0..300))
    );

    let tampered: &'static [u8] = Box::leak(GRAPH[..GRAPH.len() - 1].to_vec().into_boxed_slice());
    let error = Bundle::from_static("short", MANIFEST, &[("sampler.onnx", tampered)]).unwrap_err();
    assert!(
        chain(&error).starts_with("cannot open model bundle short: sampler.onnx: the file has")
    );
}

/// Works with or without an embedded model. To exercise the embedding itself, build the tests
/// with `MEDGAN_DEFAULT_BUNDLE_DIR=$PWD/sampler/tests/fixtures/binary`.
#[test]
fn the_embedded_default_matches_its_source_or_is_reported_absent() {
    match Bundle::embedded_default_source() {
        Some(source) => {
            let embedded = Bundle::embedded_default().unwrap_or_else(|e| panic!("{}", chain(&e)));
            let on_disk = Bundle::open(source).unwrap_or_else(|e| panic!("{}", chain(&e)));
            assert_eq!(embedded.manifest(), on_disk.manifest());
            assert_eq!(embedded.manifest_sha256(), on_disk.manifest_sha256());
            let a = Sampler::new(&embedded, options(9, 100)).unwrap();
            let b = Sampler::new(&on_disk, options(9, 100)).unwrap();
            assert_eq!(rows_of(&collect(&a, 0..200)), rows_of(&collect(&b, 0..200)));
        }
        None => {
            let error = Bundle::embedded_default().unwrap_err();
            assert!(matches!(error, BundleError::NoEmbeddedDefault));
            assert!(error.to_string().contains("no embedded default model"));
            let pointer = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/DEFAULT");
            let overridden =
                option_env!("MEDGAN_DEFAULT_BUNDLE_DIR").is_some_and(|v| !v.is_empty());
            assert!(
                !pointer.exists() && !overridden,
                "a default was named but not embedded"
            );
        }
    }
}
