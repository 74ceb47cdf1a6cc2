//! The default bundle that `build.rs` compiled into this build, if it found one.

/// Static bytes of the embedded bundle: its manifest and the files the sampler needs.
pub(crate) struct EmbeddedBundle {
    pub(crate) source_dir: &'static str,
    pub(crate) manifest: &'static [u8],
    pub(crate) files: &'static [(&'static str, &'static [u8])],
}

#[cfg(medgan_embedded_bundle)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/embedded_bundle.rs"));
}

#[cfg(medgan_embedded_bundle)]
pub(crate) fn bundle() -> Option<EmbeddedBundle> {
    Some(EmbeddedBundle {
        source_dir: generated::SOURCE_DIR,
        manifest: generated::MANIFEST,
        files: generated::FILES,
    })
}

#[cfg(not(medgan_embedded_bundle))]
pub(crate) fn bundle() -> Option<EmbeddedBundle> {
    None
}
