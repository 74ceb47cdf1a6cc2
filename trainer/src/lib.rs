//! medGAN training: read patient data, train with candle, export and evaluate model bundles.

pub mod allocator;
pub mod atomic_file;
pub mod config;
pub mod data;
pub mod evaluate;
pub mod export;
pub mod model;
pub mod publish;
pub mod train;
