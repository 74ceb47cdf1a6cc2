//! Checks a bundle before anything reaches ONNX Runtime: manifest version and contents, and the
//! size and sha256 of every listed file.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Component, Path};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::error::BundleProblem;
use super::manifest::{
    BATCH_DIM, Dim, EMBEDDING_TENSOR, FORMAT_VERSION, MANIFEST_FILE, Manifest, NOISE_INPUT,
    OnnxGraph, RECORDS_OUTPUT,
};

/// Name of the row index column every record batch starts with; no code may take it.
pub(crate) const PATIENT_ID_COLUMN: &str = "patient_id";

/// Only the version, read first so that a newer manifest is refused for its version rather
/// than for a field this build does not know.
#[derive(Deserialize)]
struct VersionOnly {
    format_version: u32,
}

/// Parses and validates `manifest.json` bytes.
pub(crate) fn parse_manifest(bytes: &[u8]) -> Result<Manifest, BundleProblem> {
    let json_error = |source| BundleProblem::Json {
        file: MANIFEST_FILE.to_owned(),
        source,
    };
    let version: VersionOnly = serde_json::from_slice(bytes).map_err(json_error)?;
    if version.format_version > FORMAT_VERSION {
        return Err(BundleProblem::NewerFormat {
            found: version.format_version,
            known: known_versions(),
        });
    }
    if version.format_version == 0 {
        return Err(invalid(
            "format version 0 does not exist; versions start at 1",
        ));
    }
    let manifest: Manifest = serde_json::from_slice(bytes).map_err(json_error)?;
    validate(&manifest)?;
    Ok(manifest)
}

fn known_versions() -> String {
    if FORMAT_VERSION == 1 {
        "1".to_owned()
    } else {
        format!("1 to {FORMAT_VERSION}")
    }
}

fn invalid(message: impl Into<String>) -> BundleProblem {
    BundleProblem::Invalid(message.into())
}

/// The manifest's own consistency and the graph contract the sampler relies on.
fn validate(manifest: &Manifest) -> Result<(), BundleProblem> {
    if manifest.noise_dim == 0 {
        return Err(invalid("noise_dim is 0"));
    }
    if manifest.features.is_empty() {
        return Err(invalid("features is empty"));
    }
    let mut seen = HashSet::new();
    for (index, code) in manifest.features.iter().enumerate() {
        if code.is_empty() {
            return Err(invalid(format!("features[{index}] is an empty name")));
        }
        if code == PATIENT_ID_COLUMN {
            return Err(invalid(format!(
                "features[{index}] is `{PATIENT_ID_COLUMN}`, the name of the row index column"
            )));
        }
        if !seen.insert(code.as_str()) {
            return Err(invalid(format!("features[{index}] `{code}` appears twice")));
        }
    }

    let mut listed = HashSet::new();
    for entry in &manifest.files {
        check_relative_path(&entry.path)?;
        if entry.path == MANIFEST_FILE {
            return Err(invalid("files lists manifest.json itself"));
        }
        if !listed.insert(entry.path.as_str()) {
            return Err(invalid(format!("files lists `{}` twice", entry.path)));
        }
        let hex_ok = entry.sha256.len() == 64
            && entry
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex_ok {
            return Err(invalid(format!(
                "files entry `{}` has sha256 `{}`, not 64 lower-case hex digits",
                entry.path, entry.sha256
            )));
        }
    }

    let features = Some(manifest.features.len());
    let noise = Some(manifest.noise_dim);
    let graphs = &manifest.graphs;
    check_graph(
        "sampler",
        &graphs.sampler,
        NOISE_INPUT,
        noise,
        RECORDS_OUTPUT,
        features,
    )?;
    check_graph(
        "generator",
        &graphs.generator,
        NOISE_INPUT,
        noise,
        EMBEDDING_TENSOR,
        None,
    )?;
    let embedding = match graphs.generator.output.shape.as_slice() {
        [_, Dim::Fixed(width)] => Some(*width),
        _ => None,
    };
    check_graph(
        "decoder",
        &graphs.decoder,
        EMBEDDING_TENSOR,
        embedding,
        RECORDS_OUTPUT,
        features,
    )?;
    for (role, graph) in [
        ("sampler", &graphs.sampler),
        ("generator", &graphs.generator),
        ("decoder", &graphs.decoder),
    ] {
        if !listed.contains(graph.file.as_str()) {
            return Err(invalid(format!(
                "graphs.{role}.file `{}` is not listed in files",
                graph.file
            )));
        }
    }
    Ok(())
}

/// A graph's tensor names and shapes: `[batch, input_width]` to `[batch, output_width]`;
/// a width of `None` accepts any fixed width (the embedding).
fn check_graph(
    role: &str,
    graph: &OnnxGraph,
    input_name: &str,
    input_width: Option<usize>,
    output_name: &str,
    output_width: Option<usize>,
) -> Result<(), BundleProblem> {
    if graph.input.name != input_name {
        return Err(invalid(format!(
            "graphs.{role}.input is named `{}`, expected `{input_name}`",
            graph.input.name
        )));
    }
    if graph.output.name != output_name {
        return Err(invalid(format!(
            "graphs.{role}.output is named `{}`, expected `{output_name}`",
            graph.output.name
        )));
    }
    let batch_then = |shape: &[Dim], width: Option<usize>| match shape {
        [Dim::Symbolic(batch), Dim::Fixed(found)] => {
            batch == BATCH_DIM && width.is_none_or(|expected| expected == *found)
        }
        _ => false,
    };
    if !batch_then(&graph.input.shape, input_width) {
        return Err(invalid(format!(
            "graphs.{role}.input.shape is {}, expected [\"{BATCH_DIM}\", {}]",
            shape_text(&graph.input.shape),
            input_width.map_or("width".to_owned(), |w| w.to_string())
        )));
    }
    if !batch_then(&graph.output.shape, output_width) {
        return Err(invalid(format!(
            "graphs.{role}.output.shape is {}, expected [\"{BATCH_DIM}\", {}]",
            shape_text(&graph.output.shape),
            output_width.map_or("width".to_owned(), |w| w.to_string())
        )));
    }
    Ok(())
}

/// A shape as the manifest writes it, e.g. `["batch",128]`.
fn shape_text(shape: &[Dim]) -> String {
    serde_json::to_string(shape).unwrap_or_else(|_| format!("{shape:?}"))
}

/// Bundle paths stay inside the bundle: relative, with no `..`, root or prefix.
fn check_relative_path(path: &str) -> Result<(), BundleProblem> {
    let inside = !path.is_empty()
        && Path::new(path)
            .components()
            .all(|component| matches!(component, Component::Normal(_)));
    if inside {
        Ok(())
    } else {
        Err(invalid(format!(
            "files entry `{path}` is not a plain relative path inside the bundle"
        )))
    }
}

/// Checks one file's size and sha256 against its manifest entry; `keep` returns its bytes.
pub(crate) fn verify_file(
    dir: &Path,
    file: &str,
    expected_bytes: u64,
    expected_sha256: &str,
    keep: bool,
) -> Result<Option<Vec<u8>>, BundleProblem> {
    let io_error = |source| BundleProblem::Io {
        file: file.to_owned(),
        source,
    };
    let path = dir.join(file);
    let actual = std::fs::metadata(&path).map_err(io_error)?.len();
    if actual != expected_bytes {
        return Err(BundleProblem::Size {
            file: file.to_owned(),
            expected: expected_bytes,
            actual,
        });
    }
    let mut reader = std::fs::File::open(&path).map_err(io_error)?;
    let mut hasher = Sha256::new();
    let mut kept = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let read = reader.read(&mut chunk).map_err(io_error)?;
        if read == 0 {
            break;
        }
        hasher.update(&chunk[..read]);
        if keep {
            kept.extend_from_slice(&chunk[..read]);
        }
    }
    compare_digest(file, expected_sha256, &hex::encode(hasher.finalize()))?;
    // The size was read before the contents; a file that changed in between fails here.
    if keep && kept.len() as u64 != expected_bytes {
        return Err(BundleProblem::Size {
            file: file.to_owned(),
            expected: expected_bytes,
            actual: kept.len() as u64,
        });
    }
    Ok(keep.then_some(kept))
}

/// Checks bytes already in memory (the embedded bundle) against a manifest entry.
pub(crate) fn verify_bytes(
    file: &str,
    bytes: &[u8],
    expected_bytes: u64,
    expected_sha256: &str,
) -> Result<(), BundleProblem> {
    if bytes.len() as u64 != expected_bytes {
        return Err(BundleProblem::Size {
            file: file.to_owned(),
            expected: expected_bytes,
            actual: bytes.len() as u64,
        });
    }
    compare_digest(file, expected_sha256, &sha256_hex(bytes))
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn compare_digest(file: &str, expected: &str, actual: &str) -> Result<(), BundleProblem> {
    if expected == actual {
        Ok(())
    } else {
        Err(BundleProblem::Checksum {
            file: file.to_owned(),
            expected: expected.to_owned(),
            actual: actual.to_owned(),
        })
    }
}
