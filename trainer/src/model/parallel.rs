//! The CPU threads behind the trainer's operations: one thread count for the whole run, and
//! jobs that the calling thread and a pool of helper threads take one at a time.
//!
//! Every operation that splits its work here splits it into blocks that write disjoint parts
//! of the output, each computed by one thread in the order one thread alone would use. A run
//! therefore gives the same bits on one thread or many. The threads live for the whole
//! process (rayon's work-stealing pool): starting threads for each operation cost more than
//! the smaller products saved, so those ran on one thread and left the other core idle.

use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rayon::{ThreadPool, ThreadPoolBuilder};

/// Threads each CPU operation may use; see [`set_cpu_threads`].
static CPU_THREADS: AtomicUsize = AtomicUsize::new(1);

/// Worker pools by thread count (tests run with several counts in one process).
static POOLS: Mutex<Vec<(usize, Arc<ThreadPool>)>> = Mutex::new(Vec::new());

/// Sets how many threads each CPU operation uses (at least one). Every operation splits its
/// output between threads, never a sum, so the results do not depend on the count.
pub fn set_cpu_threads(threads: usize) {
    CPU_THREADS.store(threads.max(1), Ordering::Relaxed);
}

/// The thread count set by [`set_cpu_threads`].
pub(crate) fn cpu_threads() -> usize {
    CPU_THREADS.load(Ordering::Relaxed)
}

/// How many threads `units` of work deserve when each thread should get at least
/// `min_units_per_thread` of them: between 1 and [`cpu_threads`].
pub(crate) fn threads_for(units: usize, min_units_per_thread: usize) -> usize {
    threads_within(cpu_threads(), units, min_units_per_thread)
}

fn threads_within(available: usize, units: usize, min_units_per_thread: usize) -> usize {
    available.min(units / min_units_per_thread.max(1)).max(1)
}

/// The pool of `threads` worker threads, built on first use; `None` if it cannot be built, in
/// which case the caller does the work alone.
fn pool(threads: usize) -> Option<Arc<ThreadPool>> {
    let mut pools = POOLS.lock().ok()?;
    if let Some((_, pool)) = pools.iter().find(|(count, _)| *count == threads) {
        return Some(Arc::clone(pool));
    }
    let pool = ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("medgan-cpu-{i}"))
        .build()
        .ok()?;
    let pool = Arc::new(pool);
    pools.push((threads, Arc::clone(&pool)));
    Some(pool)
}

/// Runs `work` on one of the worker threads of the [`cpu_threads`] pool and returns its
/// result; training runs its steps this way.
///
/// An operation issued from a worker splits its blocks without waiting for another thread to
/// wake: blocks no other worker has taken by the time the issuing thread is done with its own
/// are run by that thread itself. Issued from any other thread, each operation first hands
/// itself to a worker, which costs a wake-up (tens of microseconds, more than some
/// operations take).
pub fn on_cpu_threads<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    match pool(cpu_threads()) {
        Some(pool) if cpu_threads() > 1 => pool.install(work),
        _ => work(),
    }
}

/// Runs `work` on every job on up to `threads` threads, the caller among them; a thread takes
/// the next job when it finishes its last, so a thread the scheduler holds back (another
/// process on its core) leaves its share to the others.
pub(crate) fn run_jobs<J, I>(jobs: I, threads: usize, work: impl Fn(J) + Sync)
where
    I: Iterator<Item = J> + Send,
{
    // The run's pool (the one training runs in), whatever share of it this operation takes:
    // a pool of its own would cost a hop to another thread.
    let pool = if threads > 1 {
        pool(cpu_threads().max(threads))
    } else {
        None
    };
    let Some(pool) = pool else {
        jobs.for_each(work);
        return;
    };
    let queue = Mutex::new(jobs);
    let take_jobs = || {
        loop {
            let next = match queue.lock() {
                Ok(mut queue) => queue.next(),
                Err(_) => None,
            };
            let Some(job) = next else { break };
            work(job);
        }
    };
    // Inside the pool the spawned takers wait in this thread's queue: if no other worker
    // steals one before this thread has emptied the jobs, this thread runs it and it returns
    // at once, so no wake-up is ever waited for.
    let split = || {
        rayon::scope(|scope| {
            for _ in 1..threads {
                scope.spawn(|_| take_jobs());
            }
            take_jobs();
        })
    };
    if pool.current_thread_index().is_some() {
        split();
    } else {
        pool.install(split);
    }
}

/// Runs `work` compiled for AVX2 where the CPU has it (checked once, at run time), as plain
/// x86-64 (SSE2) elsewhere.
///
/// The release build targets every x86-64 CPU, so element-wise loops vectorise four floats
/// wide; inlined into a function compiled with AVX2, the same loops take eight. The
/// operations are the same IEEE ones either way (no fused multiply-add, no reordered sum), so
/// the bits are the same. Only loops bound by arithmetic gain (Adam's square root and
/// division); measured on the activations and losses, it made no difference or slowed them.
#[inline(always)]
pub(crate) fn with_wide_vectors<R>(work: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked on the line above.
        #[allow(unsafe_code)]
        return unsafe { with_avx2(work) };
    }
    work()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn with_avx2<R>(work: impl FnOnce() -> R) -> R {
    work()
}

/// Calls `work(start, block)` on consecutive blocks of `out` of `block_len` values (the last
/// may be shorter), `start` being the block's first index, on up to `threads` threads.
pub(crate) fn for_each_block<T: Send>(
    out: &mut [T],
    block_len: usize,
    threads: usize,
    work: impl Fn(usize, &mut [T]) + Sync,
) {
    let block_len = block_len.max(1);
    run_jobs(
        out.chunks_mut(block_len).enumerate(),
        threads,
        |(i, block)| work(i * block_len, block),
    );
}

/// A new vector of `len` values written block by block on up to `threads` threads:
/// `values(range)` yields the values at the indices of `range`, exactly `range.len()` of them
/// (fewer is a bug and panics). Nothing is zeroed first.
pub(crate) fn collect_blocks<T, I>(
    len: usize,
    block_len: usize,
    threads: usize,
    values: impl Fn(Range<usize>) -> I + Sync,
) -> Vec<T>
where
    T: Send,
    I: Iterator<Item = T>,
{
    let mut out = Vec::with_capacity(len);
    for_each_block(
        &mut out.spare_capacity_mut()[..len],
        block_len,
        threads,
        |start, block: &mut [MaybeUninit<T>]| {
            let (mut written, end) = (0, start + block.len());
            for (slot, value) in block.iter_mut().zip(values(start..end)) {
                slot.write(value);
                written += 1;
            }
            assert_eq!(written, block.len(), "a block yielded too few values");
        },
    );
    // SAFETY: every block of the first `len` slots was written in full (asserted in each
    // block; a panic in any block propagates out of `for_each_block` before this line).
    #[allow(unsafe_code)]
    unsafe {
        out.set_len(len)
    };
    out
}

/// `len` values from `values(range)`, in blocks of whole units of `unit` values (a row, say),
/// split between threads when each gets at least `min_per_thread`.
pub(crate) fn map_blocks<T, I>(
    len: usize,
    unit: usize,
    min_per_thread: usize,
    values: impl Fn(Range<usize>) -> I + Sync,
) -> Vec<T>
where
    T: Send,
    I: Iterator<Item = T>,
{
    let threads = threads_for(len, min_per_thread);
    collect_blocks(len, block_len(len, threads, 2, unit), threads, values)
}

/// The block length that splits `len` values into about `blocks_per_thread` blocks per
/// thread, in whole multiples of `unit` (a row, say).
pub(crate) fn block_len(
    len: usize,
    threads: usize,
    blocks_per_thread: usize,
    unit: usize,
) -> usize {
    let unit = unit.max(1);
    let units = len.div_ceil(unit);
    units
        .div_ceil(threads.max(1) * blocks_per_thread.max(1))
        .max(1)
        * unit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_runs_once_whatever_the_thread_count() {
        for threads in [1, 2, 3] {
            let mut out = vec![0usize; 1000];
            for_each_block(&mut out, 7, threads, |start, block| {
                for (i, value) in block.iter_mut().enumerate() {
                    *value += start + i + 1;
                }
            });
            let want: Vec<usize> = (1..=1000).collect();
            assert_eq!(out, want, "{threads} threads");
        }
    }

    #[test]
    fn collected_blocks_hold_every_value_in_order() {
        for threads in [1, 2, 3] {
            let squares = collect_blocks(1001, 10, threads, |range| range.map(|i| i * i));
            let want: Vec<usize> = (0..1001).map(|i| i * i).collect();
            assert_eq!(squares, want, "{threads} threads");
        }
        let short = std::panic::catch_unwind(|| {
            collect_blocks(100, 10, 2, |range| range.skip(1).map(|i| i as f32))
        });
        assert!(
            short.is_err(),
            "a short block must not leave values unwritten"
        );
    }

    #[test]
    fn thread_counts_and_block_lengths() {
        assert_eq!(threads_within(2, 10, 4), 2);
        assert_eq!(threads_within(2, 7, 4), 1);
        assert_eq!(threads_within(2, 0, 4), 1);
        assert_eq!(threads_within(3, 1 << 20, 4), 3);
        // 10 rows of 3 values in about 4 blocks of whole rows: 3 rows each.
        assert_eq!(block_len(30, 2, 2, 3), 9);
        assert_eq!(block_len(5, 8, 4, 1), 1);
    }
}
