//! The medGAN networks.

pub mod arch;

pub use arch::Architecture;
