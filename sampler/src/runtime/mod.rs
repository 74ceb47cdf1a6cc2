//! ONNX Runtime behind a small interface: load the library once per process, then run the
//! sampling graph on row-major `f32` noise. No `ort` type leaves this module.

pub mod locate;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;
use ort::ep::ExecutionProvider;
use ort::session::Session;
use ort::session::builder::SessionBuilder;
use ort::value::{DynValue, TensorRef};
use thiserror::Error;

use locate::{LocateError, OrtSearch};

/// ONNX Runtime could not be found, loaded, or made to run the graph.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RuntimeError {
    #[error(transparent)]
    Locate(#[from] LocateError),
    #[error("cannot load ONNX Runtime from {}: {detail}", path.display())]
    Load { path: PathBuf, detail: String },
    #[error(
        "ONNX Runtime is already loaded from {} in this process and cannot be switched to {}",
        loaded.display(), requested.display()
    )]
    AlreadyLoaded { loaded: PathBuf, requested: PathBuf },
    #[error("cannot create an ONNX Runtime session for {graph}: {detail}")]
    Session { graph: String, detail: String },
    #[error("the sampling graph of {graph} {problem}")]
    Graph { graph: String, problem: String },
    #[error("ONNX Runtime failed on a batch of {rows} rows: {detail}")]
    Run { rows: usize, detail: String },
    #[error(
        "the ONNX Runtime library {} has no CUDA execution provider (a CPU-only build); \
         install a GPU build (e.g. `pip install onnxruntime-gpu`) and name it with --ort-lib, \
         or sample with --device cpu",
        library.display()
    )]
    NoCuda { library: PathBuf },
    #[error("cannot use the CUDA execution provider of {}: {detail}", library.display())]
    Cuda { library: PathBuf, detail: String },
}

/// Where ONNX Runtime runs the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// ONNX Runtime's CPU execution provider.
    #[default]
    Cpu,
    /// ONNX Runtime's CUDA execution provider (GPU 0), for a library built with it; operators
    /// it lacks fall back to the CPU.
    Cuda,
}

impl Device {
    pub fn name(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        }
    }
}

/// The one environment ort allows per process, and the library it was loaded from.
struct Loaded {
    library: PathBuf,
    environment: Environment,
}

static RUNTIME: Mutex<Option<Loaded>> = Mutex::new(None);

/// Finds the library as `search` says, loads it unless this process already has, and returns
/// the path it was loaded from with the environment.
/// Once loaded, a search the user did not steer (no path named) reuses the library without
/// looking again, which saves asking Python for every sampler.
fn environment(search: &OrtSearch) -> Result<(PathBuf, Environment), RuntimeError> {
    let mut runtime = RUNTIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let named = search.named();
    if let (Some(loaded), None) = (runtime.as_ref(), &named) {
        return Ok((loaded.library.clone(), loaded.environment.clone()));
    }
    let requested = match named {
        Some(named) => named?,
        None => search.locate()?,
    };
    let canonical = requested
        .canonicalize()
        .unwrap_or_else(|_| requested.clone());
    if let Some(loaded) = runtime.as_ref() {
        if loaded.library != canonical {
            return Err(RuntimeError::AlreadyLoaded {
                loaded: loaded.library.clone(),
                requested,
            });
        }
        return Ok((loaded.library.clone(), loaded.environment.clone()));
    }
    let load_error = |detail: String| RuntimeError::Load {
        path: requested.clone(),
        detail,
    };
    let builder = ort::init_from(&canonical).map_err(|error| load_error(error.to_string()))?;
    let environment = builder
        .with_name("medgan-sample")
        .build()
        .map_err(|error| load_error(error.to_string()))?;
    tracing::info!(library = %canonical.display(), "loaded ONNX Runtime");
    *runtime = Some(Loaded {
        library: canonical.clone(),
        environment: environment.clone(),
    });
    Ok((canonical, environment))
}

/// Adds the CUDA execution provider to a session, or says plainly that the library has none
/// (the CPU-only `onnxruntime` wheel, for one) instead of falling back to the CPU unasked.
fn register_cuda(builder: &mut SessionBuilder, library: &Path) -> Result<(), RuntimeError> {
    let cuda_error = |detail: String| RuntimeError::Cuda {
        library: library.to_path_buf(),
        detail,
    };
    let available = ort::ep::CUDA::is_available().map_err(|error| cuda_error(error.to_string()))?;
    if !available {
        return Err(RuntimeError::NoCuda {
            library: library.to_path_buf(),
        });
    }
    ort::ep::CUDA::default()
        .register(builder)
        .map_err(|error| cuda_error(error.to_string()))
}

/// A session of the fused sampling graph, with its tensor names and widths checked.
pub(crate) struct Model {
    session: Session,
    input: String,
    output: String,
    noise_dim: usize,
    features: usize,
    library: PathBuf,
}

impl Model {
    /// Loads ONNX Runtime as `search` says and creates a session from the graph bytes;
    /// `threads` caps the intra-op thread pool (`None`: ONNX Runtime's default).
    pub(crate) fn load(
        search: &OrtSearch,
        graph: &[u8],
        label: &str,
        names: (&str, &str),
        widths: (usize, usize),
        threads: Option<usize>,
        device: Device,
    ) -> Result<Model, RuntimeError> {
        let (library, environment) = environment(search)?;
        let session_error = |detail: String| RuntimeError::Session {
            graph: label.to_owned(),
            detail,
        };
        let mut builder = Session::builder(&environment)
            .map_err(|error| session_error(error.to_string()))?
            .with_inter_threads(1)
            .map_err(|error| session_error(error.to_string()))?
            // The caller draws records between runs; spinning pool threads would only steal
            // those cores.
            .with_intra_op_spinning(false)
            .map_err(|error| session_error(error.to_string()))?;
        if let Some(threads) = threads {
            builder = builder
                .with_intra_threads(threads)
                .map_err(|error| session_error(error.to_string()))?;
        }
        if device == Device::Cuda {
            register_cuda(&mut builder, &library)?;
        }
        let session = builder
            .commit_from_memory(graph)
            .map_err(|error| session_error(error.to_string()))?;
        let (input, output) = names;
        let graph_error = |problem: String| RuntimeError::Graph {
            graph: label.to_owned(),
            problem,
        };
        let inputs: Vec<&str> = session
            .inputs()
            .iter()
            .map(|outlet| outlet.name())
            .collect();
        if inputs != [input] {
            return Err(graph_error(format!(
                "has inputs {inputs:?}, expected [\"{input}\"]"
            )));
        }
        if !session
            .outputs()
            .iter()
            .any(|outlet| outlet.name() == output)
        {
            return Err(graph_error(format!("has no output named `{output}`")));
        }
        Ok(Model {
            session,
            input: input.to_owned(),
            output: output.to_owned(),
            noise_dim: widths.0,
            features: widths.1,
            library,
        })
    }

    /// The library this process loaded ONNX Runtime from.
    pub(crate) fn library(&self) -> &Path {
        &self.library
    }

    /// Runs the graph on `noise` (`rows x noise_dim`, row-major) and writes the records
    /// (`rows x features`, row-major) into `records`.
    pub(crate) fn run(
        &mut self,
        noise: &[f32],
        records: &mut Vec<f32>,
    ) -> Result<(), RuntimeError> {
        records.clear();
        records.extend_from_slice(self.run_owned(noise)?.values());
        Ok(())
    }

    /// Runs the graph on `noise` and keeps ONNX Runtime's output tensor as it is, so the
    /// records are read in place instead of copied (16 MB a batch of 1000 codes).
    pub(crate) fn run_owned(&mut self, noise: &[f32]) -> Result<Records, RuntimeError> {
        let rows = noise.len() / self.noise_dim;
        if rows == 0 {
            return Ok(Records { value: None });
        }
        let run_error = |detail: String| RuntimeError::Run { rows, detail };
        let tensor = TensorRef::from_array_view(([rows, self.noise_dim], noise))
            .map_err(|error| run_error(error.to_string()))?;
        let mut outputs = self
            .session
            .run(ort::inputs![self.input.as_str() => tensor])
            .map_err(|error| run_error(error.to_string()))?;
        let value = outputs
            .remove(self.output.as_str())
            .ok_or_else(|| run_error(format!("no output named `{}`", self.output)))?;
        let (shape, _) = value
            .try_extract_tensor::<f32>()
            .map_err(|error| run_error(error.to_string()))?;
        let expected = [rows as i64, self.features as i64];
        if **shape != expected {
            return Err(run_error(format!(
                "output `{}` has shape {:?}, expected {expected:?}",
                self.output, &**shape
            )));
        }
        Ok(Records { value: Some(value) })
    }
}

/// One model run's output tensor (`rows x features`, `f32`, checked), owned: it can cross
/// threads and is read in place.
pub(crate) struct Records {
    /// `None` for a run of no rows.
    value: Option<DynValue>,
}

impl Records {
    /// The records, row-major.
    pub(crate) fn values(&self) -> &[f32] {
        // The type and shape were checked when the tensor was made, so this cannot fail.
        self.value
            .as_ref()
            .and_then(|value| value.try_extract_tensor::<f32>().ok())
            .map_or(&[], |(_, data)| data)
    }
}
