//! Turning a device name from the command line into a candle device.

use candle_core::Device;

/// Why a device name could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("unknown device `{0}`: expected `cpu`, `cuda` or `cuda:N`")]
    Unknown(String),
    #[error("device `{name}`: this build has no CUDA support; rebuild with `--features cuda`")]
    CudaNotBuilt { name: String },
    #[error("device `{name}`: cannot open CUDA device {ordinal}: {why}")]
    Cuda {
        name: String,
        ordinal: usize,
        why: String,
    },
}

/// `cpu`, `cuda` (device 0) or `cuda:N`.
pub fn parse_device(name: &str) -> Result<Device, DeviceError> {
    let ordinal = match name {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        _ => name
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| DeviceError::Unknown(name.to_string()))?,
    };
    if !candle_core::utils::cuda_is_available() {
        return Err(DeviceError::CudaNotBuilt {
            name: name.to_string(),
        });
    }
    Device::new_cuda(ordinal).map_err(|e| DeviceError::Cuda {
        name: name.to_string(),
        ordinal,
        why: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_parsed() {
        assert!(matches!(parse_device("cpu"), Ok(Device::Cpu)));
        assert!(matches!(parse_device("gpu"), Err(DeviceError::Unknown(_))));
        assert!(matches!(
            parse_device("cuda:x"),
            Err(DeviceError::Unknown(_))
        ));
        if !candle_core::utils::cuda_is_available() {
            let err = parse_device("cuda:1").unwrap_err().to_string();
            assert!(err.contains("--features cuda"), "{err}");
        }
    }
}
