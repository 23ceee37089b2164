//! Per-thread slots: where counters and copies that every request writes live, so that the
//! worker threads do not write the same memory.
//!
//! A write to memory another core wrote last takes its cache line from that core first; on the
//! request path that cost showed up in `perf` as the busiest lines of the metrics and the health
//! cache. Each thread is given a slot index once (round robin), and a structure that wants
//! per-thread data keeps [`SLOTS`] of them, each on cache lines of its own
//! (`#[repr(align(128))]`). More threads than slots share slots, so a slot still needs its own
//! lock or atomics; the lock is then one that no other thread normally takes.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Slots per structure: more than the worker threads of any machine we run on.
pub(crate) const SLOTS: usize = 16;

/// The calling thread's slot, in `0..SLOTS`.
pub(crate) fn slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<Option<usize>> = const { Cell::new(None) };
    }
    INDEX.with(|index| {
        index.get().unwrap_or_else(|| {
            let assigned = NEXT.fetch_add(1, Ordering::Relaxed) % SLOTS;
            index.set(Some(assigned));
            assigned
        })
    })
}
