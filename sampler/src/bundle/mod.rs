//! Model bundles: the manifest and (later) opening and verifying a bundle folder.

pub mod manifest;
