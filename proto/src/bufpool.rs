//! Recycled bulk buffers for READ and WRITE payloads.
//!
//! A 1 MiB buffer is typically filled on one thread and freed on another (the connection's
//! writer, after `writev`). glibc then trims the freeing thread's arena with `madvise` and the
//! next allocation faults every page back in, zeroed: that cost as much CPU as the copy from the
//! page cache. Handing buffers back here keeps their pages mapped.
use std::sync::Mutex;

/// Buffers smaller than this are cheap to allocate; larger ones are rare enough not to keep.
const MIN_KEEP: usize = 64 << 10;
const MAX_KEEP: usize = 8 << 20;
/// Bound on the memory held idle.
const MAX_IDLE_BYTES: usize = 64 << 20;

static FREE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

fn idle() -> std::sync::MutexGuard<'static, Vec<Vec<u8>>> {
    // The list holds only empty buffers; a panic elsewhere cannot leave it inconsistent.
    FREE.lock().unwrap_or_else(|p| p.into_inner())
}

/// An empty buffer with room for at least `cap` bytes.
pub fn take(cap: usize) -> Vec<u8> {
    if (MIN_KEEP..=MAX_KEEP).contains(&cap) {
        let mut free = idle();
        // Not much bigger than asked for: the caller may keep it a long time.
        if let Some(i) = free
            .iter()
            .rposition(|b| b.capacity() >= cap && b.capacity() / 2 <= cap)
        {
            return free.swap_remove(i);
        }
    }
    Vec::with_capacity(cap)
}

/// Returns a buffer for reuse (or frees it, if it is not worth keeping).
pub fn give(mut buf: Vec<u8>) {
    if !(MIN_KEEP..=MAX_KEEP).contains(&buf.capacity()) {
        return;
    }
    buf.clear();
    let mut free = idle();
    let held: usize = free.iter().map(Vec::capacity).sum();
    if held + buf.capacity() <= MAX_IDLE_BYTES {
        free.push(buf);
    }
}

struct Recycled(Vec<u8>);

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.0));
    }
}

/// `buf` as `Bytes` that hand the buffer back to the pool when the last reference goes.
pub fn shared(buf: Vec<u8>) -> bytes::Bytes {
    if buf.capacity() < MIN_KEEP {
        return bytes::Bytes::from(buf);
    }
    bytes::Bytes::from_owner(Recycled(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_and_small_ones_are_not_kept() {
        let mut b = take(1 << 20);
        assert!(b.capacity() >= 1 << 20 && b.is_empty());
        b.extend_from_slice(&[1, 2, 3]);
        let ptr = b.as_ptr();
        let s = shared(b);
        assert_eq!(&s[..], &[1, 2, 3]);
        let s2 = s.slice(1..);
        drop(s);
        drop(s2);
        // Other tests share the pool, so look for our buffer rather than expect it first.
        let mut got = Vec::new();
        let mut found = false;
        for _ in 0..64 {
            let b = take(1 << 20);
            found |= b.as_ptr() == ptr;
            assert!(b.is_empty());
            got.push(b);
            if found {
                break;
            }
        }
        assert!(found);
        give(Vec::with_capacity(16));
        assert!(idle().iter().all(|b| b.capacity() >= MIN_KEEP));
    }
}
