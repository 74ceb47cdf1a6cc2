//! Sample synthetic patient records from a medGAN model bundle.

pub mod bundle;

pub use bundle::manifest::{DataType, Manifest};
