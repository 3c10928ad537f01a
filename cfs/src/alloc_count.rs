//! Heap allocations of this process, counted only when asked (`CFS_COUNT_ALLOCS=1`): issue 47
//! measures a change's cost per node, and allocations are one of its parts (`conformance
//! metabench` reads `cfs_process_allocations_total` before and after each phase).
//!
//! Off by default: the allocator then adds one relaxed load of a flag that never changes after
//! start, and no shared write. On, every allocation is one atomic add on a shared cache line;
//! at ~130 allocations per create (metabench run 14) that is an estimated 1–2 µs against
//! ~55 µs of CPU, not measured, which is why it is not always on.
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The system allocator, counting `alloc`, `alloc_zeroed` and `realloc` calls while on.
pub struct Counting;

static ON: AtomicBool = AtomicBool::new(false);
static CALLS: AtomicU64 = AtomicU64::new(0);

fn bump() {
    if ON.load(Ordering::Relaxed) {
        CALLS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds
// `GlobalAlloc`'s contract; the counter is a static the allocator never hands out, and
// `bump` allocates nothing, so it cannot recurse.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: the caller's guarantees for `alloc` are `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, which is `System`'s.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        // SAFETY: as `dealloc`; the size rules are the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Starts counting if the environment asks (`CFS_COUNT_ALLOCS=1`); called once at start.
pub fn init_from_env() {
    if std::env::var_os("CFS_COUNT_ALLOCS").is_some_and(|v| v == "1") {
        ON.store(true, Ordering::Relaxed);
    }
}

/// Allocations since counting began, or None when it is off.
pub fn allocations() -> Option<u64> {
    ON.load(Ordering::Relaxed)
        .then(|| CALLS.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_while_on() {
        // Tests share the process: only this test turns counting on, and it checks growth.
        assert_eq!(allocations(), None);
        ON.store(true, Ordering::Relaxed);
        let before = allocations().unwrap_or(0);
        let v: Vec<Box<u64>> = (0..100).map(Box::new).collect();
        let after = allocations().unwrap_or(0);
        drop(v);
        assert!(after >= before + 100, "{before} -> {after}");
    }
}
