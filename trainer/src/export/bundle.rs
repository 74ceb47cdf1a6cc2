//! The bundle writer: every file into a staging folder, checked, then moved into place at once.
//!
//! A failed export leaves no half bundle and leaves an existing bundle as it was: the staging
//! folder is a sibling of the destination (same file system, so the final move is a rename) and
//! is deleted on any error.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use candle_core::Device;
use medgan_sample::bundle::manifest::{
    FORMAT_VERSION, FileEntry, Graphs, MANIFEST_FILE, Manifest, OnnxGraph, Producer,
};
use sha2::{Digest, Sha256};

use super::fold::{FoldedNetworks, fold_networks};
use super::onnx::{GraphKind, OPSET, build_model, encode, tensor_specs};
use super::verify::check_graph;
use super::{CARD_FILE, CONFIG_FILE, ExportError, ExportInput, ReferenceForward, WEIGHTS_FILE};
use super::{PRODUCER_NAME, PRODUCER_VERSION, card};

/// Writes the bundle of `input` to `out_dir` and returns its manifest.
///
/// Every ONNX graph is read back and checked against `reference` before the bundle is moved
/// into place. An existing `out_dir` is refused unless `overwrite`; with it, a previous bundle
/// is replaced only once the new one is complete, and a folder that is neither empty nor a
/// bundle never is.
pub fn write_bundle(
    input: &ExportInput,
    reference: &dyn ReferenceForward,
    out_dir: &Path,
    overwrite: bool,
) -> Result<Manifest, ExportError> {
    check_input(input)?;
    check_destination(out_dir, overwrite)?;
    let nets = fold_networks(input.architecture, input.weights)?;
    let bundle_name = out_dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .ok_or_else(|| {
            ExportError::Input(format!(
                "output path {} has no folder name",
                out_dir.display()
            ))
        })?;
    let parent = match out_dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(ExportError::io(&parent))?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{bundle_name}.partial-"))
        .tempdir_in(&parent)
        .map_err(ExportError::io(&parent))?;

    let manifest = write_files(input, reference, &nets, staging.path(), &bundle_name)?;
    publish(staging, out_dir)?;
    tracing::info!(bundle = %out_dir.display(), "model bundle written");
    Ok(manifest)
}

/// Writes and checks every file of the bundle inside `dir`.
fn write_files(
    input: &ExportInput,
    reference: &dyn ReferenceForward,
    nets: &FoldedNetworks,
    dir: &Path,
    bundle_name: &str,
) -> Result<Manifest, ExportError> {
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        fs::write(&path, bytes).map_err(ExportError::io(path))
    };
    for kind in GraphKind::ALL {
        write(kind.file_name(), &encode(&build_model(kind, nets)?))?;
    }
    let cpu_weights = input
        .weights
        .iter()
        .map(|(name, tensor)| {
            let cpu = tensor.to_device(&Device::Cpu).and_then(|t| t.contiguous());
            cpu.map(|t| (name.clone(), t))
        })
        .collect::<candle_core::Result<HashMap<_, _>>>()
        .map_err(ExportError::candle("cannot copy the weights to the cpu"))?;
    // Serialised in memory rather than with `candle_core::safetensors::save`, whose file comes
    // out readable by its owner only.
    let metadata = HashMap::from([(
        "producer".to_string(),
        format!("{PRODUCER_NAME} {PRODUCER_VERSION}"),
    )]);
    let bytes = safetensors::serialize(&cpu_weights, Some(metadata)).map_err(|e| {
        ExportError::Input(format!(
            "cannot serialise the weights to {WEIGHTS_FILE}: {e}"
        ))
    })?;
    write(WEIGHTS_FILE, &bytes)?;
    write(CONFIG_FILE, input.config_toml.as_bytes())?;
    let arch = input.architecture;
    let synthetic = card::synthetic_means(reference, arch.noise_dim, arch.n_features)?;
    write(
        CARD_FILE,
        card::render(bundle_name, input, &synthetic).as_bytes(),
    )?;

    for kind in GraphKind::ALL {
        let path = dir.join(kind.file_name());
        let model = candle_onnx::read_file(&path).map_err(ExportError::candle(format!(
            "cannot read back {}",
            path.display()
        )))?;
        let check = check_graph(&model, kind, arch.noise_dim, reference)?;
        tracing::info!(
            graph = kind.file_name(),
            max_abs_diff = check.max_abs_diff,
            "graph matches the reference forward"
        );
    }

    let mut files = Vec::new();
    let listed = GraphKind::ALL.map(|kind| kind.file_name());
    for name in listed
        .into_iter()
        .chain([WEIGHTS_FILE, CONFIG_FILE, CARD_FILE])
    {
        files.push(file_entry(dir, name)?);
    }
    let graph = |kind: GraphKind| {
        let (input, output) = tensor_specs(kind, nets);
        OnnxGraph {
            file: kind.file_name().to_string(),
            opset: OPSET,
            input,
            output,
        }
    };
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        producer: Producer {
            name: PRODUCER_NAME.into(),
            version: PRODUCER_VERSION.into(),
        },
        data_type: arch.data_type,
        noise_dim: arch.noise_dim,
        features: input.features.to_vec(),
        graphs: Graphs {
            sampler: graph(GraphKind::Sampler),
            generator: graph(GraphKind::Generator),
            decoder: graph(GraphKind::Decoder),
        },
        files,
        training_data: input.training_data.clone(),
        training_run: input.training_run.clone(),
    };
    let manifest_path = dir.join(MANIFEST_FILE);
    let mut json = serde_json::to_string_pretty(&manifest).map_err(|source| ExportError::Json {
        path: manifest_path.clone(),
        source,
    })?;
    json.push('\n');
    write(MANIFEST_FILE, json.as_bytes())?;
    Ok(manifest)
}

/// Size and sha256 of the written file `name` in `dir`.
fn file_entry(dir: &Path, name: &str) -> Result<FileEntry, ExportError> {
    let path = dir.join(name);
    let bytes = fs::read(&path).map_err(ExportError::io(&path))?;
    Ok(FileEntry {
        path: name.to_string(),
        bytes: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(&bytes)),
    })
}

/// Refuses inputs that would give a bundle whose parts disagree.
fn check_input(input: &ExportInput) -> Result<(), ExportError> {
    let arch = input.architecture;
    let n = input.features.len();
    let bad = |why: String| Err(ExportError::Input(why));
    if n != arch.n_features {
        return bad(format!(
            "{n} feature names for a model of {} codes",
            arch.n_features
        ));
    }
    if input.training_data.codes != n {
        return bad(format!(
            "the data summary counts {} codes, the model has {n}",
            n
        ));
    }
    if input.card.real_prevalence.len() != n {
        return bad(format!(
            "{} real prevalences for {n} codes",
            input.card.real_prevalence.len()
        ));
    }
    if let Some(j) = input
        .card
        .real_prevalence
        .iter()
        .position(|p| !p.is_finite() || *p < 0.0)
    {
        return bad(format!(
            "real prevalence of code `{}` is {}",
            input.features[j], input.card.real_prevalence[j]
        ));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = input
        .features
        .iter()
        .find(|name| !seen.insert(name.as_str()))
    {
        return bad(format!("feature `{dup}` is named twice"));
    }
    if arch.noise_dim == 0 {
        return bad("the noise has no dimensions".into());
    }
    Ok(())
}

/// Fails early when `out_dir` exists and may not, or must not, be replaced.
fn check_destination(out_dir: &Path, overwrite: bool) -> Result<(), ExportError> {
    if fs::symlink_metadata(out_dir).is_err() {
        return Ok(());
    }
    if !overwrite {
        return Err(ExportError::OutputExists {
            path: out_dir.to_path_buf(),
        });
    }
    let empty = fs::read_dir(out_dir).is_ok_and(|mut entries| entries.next().is_none());
    if !empty && !out_dir.join(MANIFEST_FILE).is_file() {
        return Err(ExportError::NotABundle {
            path: out_dir.to_path_buf(),
        });
    }
    Ok(())
}

/// Moves the staged bundle to `out_dir`, replacing a previous bundle there only at the very end.
fn publish(staging: tempfile::TempDir, out_dir: &Path) -> Result<(), ExportError> {
    let exists = fs::symlink_metadata(out_dir).is_ok();
    let staged = staging.keep();
    let discard = |staged: &Path| {
        if let Err(err) = fs::remove_dir_all(staged) {
            tracing::warn!(path = %staged.display(), "cannot remove staging folder: {err}");
        }
    };
    if !exists {
        return fs::rename(&staged, out_dir).map_err(|source| {
            discard(&staged);
            ExportError::Io {
                path: out_dir.to_path_buf(),
                source,
            }
        });
    }
    // The staging name is unique, so the previous bundle's parking place is too.
    let mut previous = staged.clone().into_os_string();
    previous.push(".previous");
    let previous = PathBuf::from(previous);
    if let Err(source) = fs::rename(out_dir, &previous) {
        discard(&staged);
        return Err(ExportError::Io {
            path: out_dir.to_path_buf(),
            source,
        });
    }
    if let Err(source) = fs::rename(&staged, out_dir) {
        // Put the previous bundle back before reporting.
        if let Err(err) = fs::rename(&previous, out_dir) {
            tracing::error!(
                previous = %previous.display(),
                "cannot restore the previous bundle: {err}"
            );
        }
        discard(&staged);
        return Err(ExportError::Io {
            path: out_dir.to_path_buf(),
            source,
        });
    }
    discard(&previous);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::testing::Fixture;
    use medgan_sample::DataType;
    use medgan_sample::bundle::manifest::Dim;

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn bundle_manifest_round_trips_and_lists_every_file() {
        for data_type in [DataType::Binary, DataType::Count] {
            let fixture = Fixture::new(data_type, 31);
            let root = tempfile::tempdir().unwrap();
            let out = root.path().join("models").join("test-model");
            let manifest =
                write_bundle(&fixture.input(), &fixture.reference(), &out, false).unwrap();

            let text = fs::read_to_string(out.join(MANIFEST_FILE)).unwrap();
            let parsed: Manifest = serde_json::from_str(&text).unwrap();
            assert_eq!(parsed, manifest);
            assert_eq!(parsed.data_type, data_type);
            assert_eq!(parsed.features, fixture.features);
            assert_eq!(parsed.producer.name, "medgan-train");
            assert_eq!(parsed.graphs.sampler.output.shape[1], Dim::Fixed(40));

            let mut expected: Vec<String> = parsed.files.iter().map(|f| f.path.clone()).collect();
            expected.push(MANIFEST_FILE.into());
            expected.sort();
            assert_eq!(
                listing(&out),
                expected,
                "bundle holds exactly the listed files"
            );
            assert_eq!(parsed.files.len(), 6);
            for entry in &parsed.files {
                let bytes = fs::read(out.join(&entry.path)).unwrap();
                assert_eq!(entry.bytes, bytes.len() as u64, "{}", entry.path);
                assert_eq!(
                    entry.sha256,
                    hex::encode(Sha256::digest(&bytes)),
                    "{}",
                    entry.path
                );
                assert_eq!(entry.sha256.len(), 64);
            }
            // Nothing but the bundle is left next to it.
            assert_eq!(listing(&root.path().join("models")), ["test-model"]);

            let weights =
                candle_core::safetensors::load(out.join(WEIGHTS_FILE), &Device::Cpu).unwrap();
            assert_eq!(weights.len(), fixture.weights.len());
            assert!(weights.contains_key("generator.blocks.0.bn.running_var"));
            let config = fs::read_to_string(out.join(CONFIG_FILE)).unwrap();
            assert_eq!(config, fixture.input().config_toml);
        }
    }

    #[test]
    fn same_input_gives_the_same_bytes() {
        let fixture = Fixture::new(DataType::Binary, 32);
        let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // Same folder name: the card's title is the bundle's name.
        let (a, b) = (first.path().join("model"), second.path().join("model"));
        write_bundle(&fixture.input(), &fixture.reference(), &a, false).unwrap();
        write_bundle(&fixture.input(), &fixture.reference(), &b, false).unwrap();
        assert_eq!(listing(&a).len(), 7);
        for name in listing(&a) {
            let same = fs::read(a.join(&name)).unwrap() == fs::read(b.join(&name)).unwrap();
            assert!(same, "{name} differs between two exports of the same input");
        }
    }

    #[test]
    fn existing_output_is_refused_or_replaced_only_when_complete() {
        let fixture = Fixture::new(DataType::Count, 33);
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("bundle");
        let first = write_bundle(&fixture.input(), &fixture.reference(), &out, false).unwrap();

        let err = write_bundle(&fixture.input(), &fixture.reference(), &out, false).unwrap_err();
        assert!(matches!(err, ExportError::OutputExists { .. }), "{err}");

        // A reference that disagrees fails the check: the old bundle must survive untouched.
        let before = fs::read(out.join(MANIFEST_FILE)).unwrap();
        let mut wrong = fixture.reference();
        wrong.record_offset = 0.01;
        let err = write_bundle(&fixture.input(), &wrong, &out, true).unwrap_err();
        assert!(err.to_string().contains("sampler.onnx"), "{err}");
        assert_eq!(fs::read(out.join(MANIFEST_FILE)).unwrap(), before);
        assert_eq!(listing(root.path()), ["bundle"]);

        let other = Fixture::new(DataType::Count, 34);
        let second = write_bundle(&other.input(), &other.reference(), &out, true).unwrap();
        assert_ne!(first.files[0].sha256, second.files[0].sha256);
        assert_eq!(listing(root.path()), ["bundle"]);
        let on_disk: Manifest =
            serde_json::from_str(&fs::read_to_string(out.join(MANIFEST_FILE)).unwrap()).unwrap();
        assert_eq!(on_disk, second);
    }

    #[test]
    fn failed_export_leaves_no_folder() {
        let fixture = Fixture::new(DataType::Binary, 35);
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("never");
        let mut wrong = fixture.reference();
        wrong.record_offset = -0.5;
        let err = write_bundle(&fixture.input(), &wrong, &out, false).unwrap_err();
        assert!(matches!(err, ExportError::GraphMismatch { .. }), "{err}");
        assert!(
            listing(root.path()).is_empty(),
            "left behind: {:?}",
            listing(root.path())
        );
    }

    #[test]
    fn a_folder_that_is_not_a_bundle_is_never_replaced() {
        let fixture = Fixture::new(DataType::Binary, 36);
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("precious.txt"), "keep me").unwrap();
        let err =
            write_bundle(&fixture.input(), &fixture.reference(), root.path(), true).unwrap_err();
        assert!(matches!(err, ExportError::NotABundle { .. }), "{err}");
        assert_eq!(listing(root.path()), ["precious.txt"]);

        // An empty folder holds nothing to lose: overwrite may fill it, but only when asked.
        let empty = root.path().join("empty");
        fs::create_dir(&empty).unwrap();
        let err = write_bundle(&fixture.input(), &fixture.reference(), &empty, false).unwrap_err();
        assert!(matches!(err, ExportError::OutputExists { .. }), "{err}");
        write_bundle(&fixture.input(), &fixture.reference(), &empty, true).unwrap();
        assert!(empty.join(MANIFEST_FILE).is_file());
    }

    #[test]
    fn inconsistent_inputs_are_refused_before_writing() {
        let fixture = Fixture::new(DataType::Binary, 37);
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("bundle");
        let mut input = fixture.input();
        input.card.real_prevalence.pop();
        let err = write_bundle(&input, &fixture.reference(), &out, false).unwrap_err();
        assert!(
            err.to_string().contains("39 real prevalences for 40 codes"),
            "{err}"
        );
        let mut features = fixture.features.clone();
        features[3] = features[2].clone();
        let input = ExportInput {
            features: &features,
            ..fixture.input()
        };
        let err = write_bundle(&input, &fixture.reference(), &out, false).unwrap_err();
        assert!(
            err.to_string().contains("`code_002` is named twice"),
            "{err}"
        );
        assert!(listing(root.path()).is_empty());
    }
}
