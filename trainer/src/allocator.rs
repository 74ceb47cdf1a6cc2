//! How the trainer's binaries tune their allocator (mimalloc, set as the global allocator in
//! each binary).
//!
//! candle allocates a fresh tensor for every operation. By default mimalloc hands memory it no
//! longer uses back to the kernel after a delay, so every training step faults the same pages in
//! again, and the kernel zeroes each one (a tenth of an autoencoder epoch). A training run's
//! working set is the same at every step, so keeping freed pages mapped costs no extra peak.

/// mimalloc 3's `mi_option_purge_delay` (its position in `mi_option_e`); libmimalloc-sys 0.1.49
/// names no constant for it.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory mapped for reuse instead of returning it to the kernel. Call it first in
/// `main`, before other threads start (mimalloc's option setters are not thread-safe).
pub fn keep_freed_pages() {
    // SAFETY: sets an integer option of the linked mimalloc; the caller runs it before any
    // other thread exists, as mimalloc requires for its option setters.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
    }
}

/// The current purge delay in milliseconds (-1: never), to check the option took.
pub fn purge_delay() -> i64 {
    // SAFETY: reads an integer option of the linked mimalloc.
    #[allow(unsafe_code)]
    let value = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
    value as i64
}

#[cfg(test)]
mod tests {
    #[test]
    fn purge_delay_option_is_the_one_set() {
        // The linked mimalloc purges after a positive delay by default (1000 ms); the
        // option then reads back as set. (That it is the purge option shows in a training
        // run's page faults: about 26,000 per epoch pair before, under 300 after.)
        let before = super::purge_delay();
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert!(before > 0, "purge delay {before}: not mimalloc's default");
        }
        super::keep_freed_pages();
        assert_eq!(super::purge_delay(), -1, "was {before}");
    }
}
