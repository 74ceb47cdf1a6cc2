//! Finds the ONNX Runtime shared library: an explicit path, the environment, beside the
//! executable, then an installed Python `onnxruntime` package.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

/// ort's own variable for the library path, honoured first among the environment variables.
pub const ORT_DYLIB_PATH_VAR: &str = "ORT_DYLIB_PATH";
/// This project's variable for the library path.
pub const MEDGAN_ORT_LIB_VAR: &str = "MEDGAN_ORT_LIB";

/// The Python one-liner that prints where the `onnxruntime` package lives.
const PYTHON_QUERY: &str = "import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))";

/// The ONNX Runtime library could not be found, or a path given for it does not exist.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LocateError {
    #[error("the ONNX Runtime library named by {origin} does not exist: {}", path.display())]
    Missing { origin: String, path: PathBuf },
    #[error(
        "{origin} names the folder {} but it holds no {}",
        path.display(), library_pattern()
    )]
    EmptyFolder { origin: String, path: PathBuf },
    #[error(
        "cannot find the ONNX Runtime library ({}); looked at: {}; install it with \
         `pip install onnxruntime==1.31.*` or name it with --ort-lib PATH or ${ORT_DYLIB_PATH_VAR}",
        library_pattern(), looked.join("; ")
    )]
    NotFound { looked: Vec<String> },
}

/// Where to look for the library, in order. [`OrtSearch::from_environment`] fills it from this
/// process; tests build one by hand.
#[derive(Debug, Clone, Default)]
pub struct OrtSearch {
    /// A path the user gave (`--ort-lib`): a library file or a folder holding one.
    pub explicit: Option<PathBuf>,
    /// Environment variables and their values, checked in order.
    pub env_vars: Vec<(String, Option<OsString>)>,
    /// Folders to scan: beside the executable, its `lib/` folder and the `lib/` beside its own.
    pub exe_dirs: Vec<PathBuf>,
    /// Python interpreter asked where its `onnxruntime` package is.
    pub python: Option<OsString>,
    /// Glob patterns (`*` within a path component) of folders that may hold the library.
    pub site_globs: Vec<String>,
}

impl OrtSearch {
    /// The search this process would run: `explicit`, `$ORT_DYLIB_PATH`, `$MEDGAN_ORT_LIB`, the
    /// executable's folder, `python3`, then common site-packages locations.
    pub fn from_environment(explicit: Option<PathBuf>) -> OrtSearch {
        let env_vars = [ORT_DYLIB_PATH_VAR, MEDGAN_ORT_LIB_VAR]
            .iter()
            .map(|name| (name.to_string(), std::env::var_os(name)))
            .collect();
        let mut exe_dirs = Vec::new();
        if let Some(dir) = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Into::into))
        {
            let dir: PathBuf = dir;
            exe_dirs.push(dir.join("lib"));
            if let Some(parent) = dir.parent() {
                exe_dirs.push(parent.join("lib"));
            }
            exe_dirs.insert(0, dir);
        }
        OrtSearch {
            explicit,
            env_vars,
            exe_dirs,
            python: Some("python3".into()),
            site_globs: default_site_globs(),
        }
    }

    /// The library the user named (explicit path or environment variable), if they named one.
    pub fn named(&self) -> Option<Result<PathBuf, LocateError>> {
        if let Some(path) = &self.explicit {
            return Some(given_path(path, "--ort-lib"));
        }
        self.env_vars.iter().find_map(|(name, value)| {
            let value = value.as_ref().filter(|value| !value.is_empty())?;
            Some(given_path(Path::new(value), &format!("${name}")))
        })
    }

    /// The first library found, or an error listing every place looked at.
    pub fn locate(&self) -> Result<PathBuf, LocateError> {
        if let Some(named) = self.named() {
            return named;
        }
        let mut looked = vec!["--ort-lib (not given)".to_owned()];
        looked.extend(
            self.env_vars
                .iter()
                .map(|(name, _)| format!("${name} (not set)")),
        );
        for dir in &self.exe_dirs {
            if let Some(found) = library_in(dir) {
                return Ok(found);
            }
            looked.push(dir.display().to_string());
        }
        if let Some(python) = &self.python {
            match python_package_dir(python) {
                Ok(package) => {
                    let capi = package.join("capi");
                    if let Some(found) = library_in(&capi) {
                        return Ok(found);
                    }
                    looked.push(capi.display().to_string());
                }
                Err(why) => looked.push(format!(
                    "the onnxruntime package of {} ({why})",
                    python.to_string_lossy()
                )),
            }
        }
        for pattern in &self.site_globs {
            for dir in expand_glob(pattern) {
                if let Some(found) = library_in(&dir) {
                    return Ok(found);
                }
            }
            looked.push(pattern.clone());
        }
        Err(LocateError::NotFound { looked })
    }
}

/// `lib*onnxruntime*` as this platform names it, for messages.
fn library_pattern() -> String {
    format!(
        "{}onnxruntime{}*",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// A path the user named: used as is if it is a file, searched if it is a folder.
fn given_path(path: &Path, origin: &str) -> Result<PathBuf, LocateError> {
    if path.is_dir() {
        return library_in(path).ok_or_else(|| LocateError::EmptyFolder {
            origin: origin.to_owned(),
            path: path.to_path_buf(),
        });
    }
    if path.exists() {
        Ok(path.to_path_buf())
    } else {
        Err(LocateError::Missing {
            origin: origin.to_owned(),
            path: path.to_path_buf(),
        })
    }
}

/// Whether `name` is the main ONNX Runtime library (`libonnxruntime.so`, `.so.1.31.1`,
/// `libonnxruntime.1.31.1.dylib`, `onnxruntime.dll`), not a provider library beside it.
fn is_library_name(name: &str) -> bool {
    let stem = format!("{}onnxruntime", std::env::consts::DLL_PREFIX);
    let suffix = std::env::consts::DLL_SUFFIX;
    match name.strip_prefix(&stem) {
        Some(rest) => {
            rest == suffix
                || rest
                    .strip_prefix(suffix)
                    .is_some_and(|v| v.starts_with('.'))
                || (rest.starts_with('.') && rest.ends_with(suffix))
        }
        None => false,
    }
}

/// The library in `dir`, preferring the most specific (versioned) name when there are several.
fn library_in(dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| is_library_name(name))
        .collect();
    names.sort();
    let best = names.pop()?;
    let path = dir.join(best);
    path.is_file().then_some(path)
}

/// Asks `python` where its `onnxruntime` package is.
fn python_package_dir(python: &OsString) -> Result<PathBuf, String> {
    let output = Command::new(python)
        .args(["-c", PYTHON_QUERY])
        .output()
        .map_err(|error| format!("cannot run it: {error}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .last()
            .unwrap_or("no message")
            .trim()
            .to_owned();
        return Err(format!("import failed: {last}"));
    }
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if text.is_empty() {
        return Err("it printed no folder".to_owned());
    }
    Ok(PathBuf::from(text))
}

/// Folders where pip, conda, pyenv and distributions put `onnxruntime/capi`.
fn default_site_globs() -> Vec<String> {
    let mut bases = Vec::new();
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(prefix) = std::env::var_os(var).filter(|value| !value.is_empty()) {
            bases.push(format!("{}/lib", PathBuf::from(prefix).display()));
        }
    }
    if let Some(home) = std::env::var_os("HOME").filter(|value| !value.is_empty()) {
        let home = PathBuf::from(home);
        bases.push(format!("{}/.local/lib", home.display()));
        bases.push(format!("{}/.pyenv/versions/*/lib", home.display()));
    }
    bases.extend(["/usr/local/lib", "/usr/lib", "/opt/conda/lib"].map(String::from));
    let mut globs = Vec::new();
    for base in bases {
        for packages in ["site-packages", "dist-packages"] {
            globs.push(format!("{base}/python3*/{packages}/onnxruntime/capi"));
        }
    }
    globs
}

/// The existing folders matching `pattern`, where a `*` matches within one path component.
fn expand_glob(pattern: &str) -> Vec<PathBuf> {
    let mut current = vec![PathBuf::from(if pattern.starts_with('/') {
        "/"
    } else {
        "."
    })];
    for component in pattern.split('/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        for dir in &current {
            match component.split_once('*') {
                None => next.push(dir.join(component)),
                Some((prefix, suffix)) => {
                    let Ok(entries) = std::fs::read_dir(dir) else {
                        continue;
                    };
                    let mut matched: Vec<PathBuf> = entries
                        .filter_map(|entry| {
                            let name = entry.ok()?.file_name().into_string().ok()?;
                            let hit = name.len() >= prefix.len() + suffix.len()
                                && name.starts_with(prefix)
                                && name.ends_with(suffix);
                            hit.then(|| dir.join(name))
                        })
                        .collect();
                    matched.sort();
                    next.extend(matched);
                }
            }
        }
        current = next;
    }
    current.retain(|path| path.is_dir());
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_search(dir: &Path) -> OrtSearch {
        OrtSearch {
            explicit: None,
            env_vars: vec![
                ("ORT_DYLIB_PATH".into(), None),
                ("MEDGAN_ORT_LIB".into(), None),
            ],
            exe_dirs: vec![dir.to_path_buf()],
            python: Some("/nonexistent/python3".into()),
            site_globs: vec![format!(
                "{}/py*/site-packages/onnxruntime/capi",
                dir.display()
            )],
        }
    }

    #[test]
    fn library_names_exclude_provider_libraries() {
        assert!(is_library_name("libonnxruntime.so"));
        assert!(is_library_name("libonnxruntime.so.1.31.1"));
        assert!(!is_library_name("libonnxruntime_providers_shared.so"));
        assert!(!is_library_name("libonnxruntime.sox"));
        assert!(!is_library_name("onnxruntime.so"));
    }

    #[test]
    fn not_found_lists_every_place_looked() {
        let dir = tempfile::tempdir().unwrap();
        let error = empty_search(dir.path()).locate().unwrap_err().to_string();
        for expected in [
            "--ort-lib (not given)",
            "$ORT_DYLIB_PATH (not set)",
            "$MEDGAN_ORT_LIB (not set)",
            &dir.path().display().to_string(),
            "/nonexistent/python3 (cannot run it",
            "/py*/site-packages/onnxruntime/capi",
        ] {
            assert!(
                error.contains(expected),
                "`{expected}` missing from: {error}"
            );
        }
    }

    #[test]
    fn finds_the_versioned_library_in_a_globbed_folder() {
        let dir = tempfile::tempdir().unwrap();
        let capi = dir.path().join("python3.12/site-packages/onnxruntime/capi");
        std::fs::create_dir_all(&capi).unwrap();
        for name in [
            "libonnxruntime.so",
            "libonnxruntime.so.1.31.1",
            "libonnxruntime_x.so",
        ] {
            std::fs::write(capi.join(name), b"").unwrap();
        }
        let found = empty_search(dir.path()).locate().unwrap();
        assert_eq!(found, capi.join("libonnxruntime.so.1.31.1"));
    }

    #[test]
    fn a_named_path_that_is_missing_is_an_error_not_a_fallback() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("libonnxruntime.so.1.31.1"), b"").unwrap();
        let mut search = empty_search(dir.path());
        search.env_vars[1].1 = Some(dir.path().join("gone.so").into_os_string());
        let error = search.locate().unwrap_err().to_string();
        assert!(
            error.contains("$MEDGAN_ORT_LIB") && error.contains("gone.so"),
            "{error}"
        );
        search.explicit = Some(dir.path().to_path_buf());
        assert_eq!(
            search.locate().unwrap(),
            dir.path().join("libonnxruntime.so.1.31.1")
        );
    }
}
