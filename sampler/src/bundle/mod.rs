//! Model bundles: open a bundle folder (or the embedded default), check it, hand out its graph.
//!
//! Everything a bundle lists is checked (size, then sha256) before any ONNX Runtime session is
//! created, and the fused sampling graph is kept as the very bytes that were checked.

mod check;
mod embedded;
mod error;
pub mod manifest;

use std::borrow::Cow;
use std::path::{Path, PathBuf};

pub(crate) use check::PATIENT_ID_COLUMN;
pub use error::{BundleError, BundleProblem};

use manifest::{DataType, MANIFEST_FILE, Manifest};

/// A checked model bundle, ready for a [`Sampler`](crate::Sampler).
#[derive(Debug, Clone)]
pub struct Bundle {
    location: String,
    dir: Option<PathBuf>,
    manifest: Manifest,
    manifest_sha256: String,
    sampler_graph: Cow<'static, [u8]>,
}

impl Bundle {
    /// Opens the bundle folder `dir`: reads `manifest.json`, refuses a newer format version,
    /// checks the manifest's contents and the size and sha256 of every file it lists.
    pub fn open(dir: impl AsRef<Path>) -> Result<Bundle, BundleError> {
        let dir = dir.as_ref();
        let location = dir.display().to_string();
        if !dir.is_dir() {
            return Err(BundleProblem::NoFolder.at(&location));
        }
        let manifest_bytes = std::fs::read(dir.join(MANIFEST_FILE)).map_err(|source| {
            BundleProblem::Io {
                file: MANIFEST_FILE.to_owned(),
                source,
            }
            .at(&location)
        })?;
        let manifest = check::parse_manifest(&manifest_bytes).map_err(|p| p.at(&location))?;
        let sampler_file = manifest.graphs.sampler.file.clone();
        let mut sampler_graph = None;
        for entry in &manifest.files {
            let keep = entry.path == sampler_file;
            let kept = check::verify_file(dir, &entry.path, entry.bytes, &entry.sha256, keep)
                .map_err(|p| p.at(&location))?;
            if keep {
                sampler_graph = kept;
            }
        }
        let sampler_graph = sampler_graph.ok_or_else(|| {
            BundleProblem::Invalid(format!(
                "graphs.sampler.file `{sampler_file}` is not listed"
            ))
            .at(&location)
        })?;
        Ok(Bundle {
            location,
            dir: Some(dir.to_path_buf()),
            manifest_sha256: check::sha256_hex(&manifest_bytes),
            manifest,
            sampler_graph: Cow::Owned(sampler_graph),
        })
    }

    /// The bundle compiled into this build (see `build.rs`), checked like a folder.
    pub fn embedded_default() -> Result<Bundle, BundleError> {
        let embedded = embedded::bundle().ok_or(BundleError::NoEmbeddedDefault)?;
        let label = format!("<embedded default, built from {}>", embedded.source_dir);
        Bundle::from_static(&label, embedded.manifest, embedded.files)
    }

    /// The folder the embedded default bundle was built from, or `None` without one.
    pub fn embedded_default_source() -> Option<&'static str> {
        embedded::bundle().map(|embedded| embedded.source_dir)
    }

    /// A bundle held in memory: the manifest bytes and some of its files, by manifest path.
    /// Every file given is checked against the manifest; files not given (weights, model card)
    /// are taken as absent, but the fused sampling graph must be given.
    pub fn from_static(
        label: &str,
        manifest_json: &'static [u8],
        files: &[(&str, &'static [u8])],
    ) -> Result<Bundle, BundleError> {
        let manifest = check::parse_manifest(manifest_json).map_err(|p| p.at(label))?;
        let mut sampler_graph = None;
        for (path, bytes) in files {
            let entry = manifest.file(path).ok_or_else(|| {
                BundleProblem::Invalid(format!("files does not list the embedded file `{path}`"))
                    .at(label)
            })?;
            check::verify_bytes(path, bytes, entry.bytes, &entry.sha256)
                .map_err(|p| p.at(label))?;
            if *path == manifest.graphs.sampler.file {
                sampler_graph = Some(*bytes);
            }
        }
        let sampler_graph = sampler_graph.ok_or_else(|| {
            BundleProblem::Invalid(format!(
                "the sampling graph `{}` is not among the embedded files",
                manifest.graphs.sampler.file
            ))
            .at(label)
        })?;
        Ok(Bundle {
            location: label.to_owned(),
            dir: None,
            manifest_sha256: check::sha256_hex(manifest_json),
            manifest,
            sampler_graph: Cow::Borrowed(sampler_graph),
        })
    }

    /// The checked manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Whether records are presence flags or counts.
    pub fn data_type(&self) -> DataType {
        self.manifest.data_type
    }

    /// Lower-case hex sha256 of the `manifest.json` bytes: names the model exactly, because the
    /// manifest lists every other file's checksum.
    pub fn manifest_sha256(&self) -> &str {
        &self.manifest_sha256
    }

    /// Where the bundle came from, as error messages name it: the folder, or the embedded label.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The bundle folder, or `None` for a bundle held in memory.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The checked bytes of the fused sampling graph.
    pub(crate) fn sampler_graph(&self) -> &[u8] {
        &self.sampler_graph
    }
}
