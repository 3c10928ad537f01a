//! The busiest clients and files: operations and bytes per client id and per file (inode) over
//! a rolling window, in tables of at most `CAP` entries. Past the cap the lower half of the
//! table is dropped (amortised O(log n) per new key), so a key that stays busy stays in and a
//! flood of one-off keys costs a bounded amount of memory. Shown as JSON (`cfs admin top`, the
//! console), never as metric labels: ids are unbounded.
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries kept per table and window.
pub const CAP: usize = 1024;
/// Length of a window: the view covers the last full window and the current one.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Client addresses remembered (for showing who a client id is).
const PEERS_CAP: usize = 8192;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub ops: u64,
    pub bytes: u64,
}

/// Hashes the u64 ids the tables are keyed by with one multiply and shift instead of SipHash:
/// `note` hashes two or three ids per NFS operation, and SipHash made `top` most of a hook's
/// cost (`metrics::cost`). Ids are the server's own (client ids, inode numbers), and a table
/// holds at most `CAP` of them, so ids that collide cost a bounded probe, never unbounded work.
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b) ^ self.0.rotate_left(8));
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        let x = (n ^ self.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = x ^ (x >> 29);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

#[derive(Default)]
struct Window {
    clients: IdMap<Tally>,
    files: IdMap<Tally>,
}

struct Inner {
    started: Option<Instant>,
    current: Window,
    previous: Window,
    /// Client id → the address it last spoke from.
    peers: IdMap<IpAddr>,
}

pub struct Top {
    inner: Mutex<Option<Inner>>,
}

/// One row of a view: the key, its tally, and its rate per second over the view's span.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: u64,
    pub ops: u64,
    pub bytes: u64,
    pub ops_per_sec: f64,
    pub bytes_per_sec: f64,
}

#[derive(Debug, Clone, Default)]
pub struct View {
    pub seconds: f64,
    pub clients: Vec<Row>,
    pub files: Vec<Row>,
}

fn bump(m: &mut IdMap<Tally>, id: u64, bytes: u64) {
    if let Some(t) = m.get_mut(&id) {
        t.ops += 1;
        t.bytes += bytes;
        return;
    }
    if m.len() >= CAP {
        let mut ops: Vec<u64> = m.values().map(|t| t.ops).collect();
        ops.sort_unstable();
        let median = ops[ops.len() / 2];
        m.retain(|_, t| t.ops > median);
        if m.len() >= CAP {
            // All equal: keep none of them rather than grow.
            m.clear();
        }
    }
    m.insert(id, Tally { ops: 1, bytes });
}

impl Default for Top {
    fn default() -> Self {
        Self::new()
    }
}

impl Top {
    pub const fn new() -> Self {
        Top {
            inner: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Inner>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn roll(g: &mut Inner, now: Instant) {
        let started = *g.started.get_or_insert(now);
        let age = now.saturating_duration_since(started);
        if age >= WINDOW * 2 {
            g.previous = Window::default();
            g.current = Window::default();
            g.started = Some(now);
        } else if age >= WINDOW {
            g.previous = std::mem::take(&mut g.current);
            g.started = Some(started + WINDOW);
        }
    }

    /// One operation by `client` (0: none yet, e.g. EXCHANGE_ID) on `file` (0: none), moving
    /// `bytes` of file data.
    pub fn note(&self, client: u64, file: u64, bytes: u64, peer: IpAddr) {
        self.note_at(Instant::now(), client, file, bytes, peer)
    }

    /// `note` of an operation that ended at `now` (the time its latency was taken at).
    pub fn note_at(&self, now: Instant, client: u64, file: u64, bytes: u64, peer: IpAddr) {
        if !crate::enabled() || (client == 0 && file == 0) {
            return;
        }
        // Skipped when another thread holds the table: under contention `top` samples rather
        // than queues every request behind one mutex (which cost ~20% server CPU per create in
        // hostbench). Skips fall on whoever is busy at the moment, so the ranking holds.
        let mut g = match self.inner.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::WouldBlock) => return,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        };
        let g = g.get_or_insert_with(|| Inner {
            started: None,
            current: Window::default(),
            previous: Window::default(),
            peers: IdMap::default(),
        });
        Self::roll(g, now);
        if client != 0 {
            bump(&mut g.current.clients, client, bytes);
            if g.peers.get(&client) != Some(&peer) {
                if g.peers.len() >= PEERS_CAP && !g.peers.contains_key(&client) {
                    g.peers.clear();
                }
                g.peers.insert(client, peer);
            }
        }
        if file != 0 {
            bump(&mut g.current.files, file, bytes);
        }
    }

    /// The address `client` last spoke from, if remembered.
    pub fn peer(&self, client: u64) -> Option<IpAddr> {
        self.lock().as_ref()?.peers.get(&client).copied()
    }

    /// The `n` busiest clients and files (by operations) over the last full window and the
    /// current one.
    pub fn view(&self, n: usize) -> View {
        let now = Instant::now();
        let mut g = self.lock();
        let Some(g) = g.as_mut() else {
            return View::default();
        };
        Self::roll(g, now);
        let started = g.started.unwrap_or(now);
        let had_previous = !g.previous.clients.is_empty() || !g.previous.files.is_empty();
        let secs = now.saturating_duration_since(started).as_secs_f64()
            + if had_previous {
                WINDOW.as_secs_f64()
            } else {
                0.0
            };
        let secs = secs.max(1.0);
        let rows = |a: &IdMap<Tally>, b: &IdMap<Tally>| {
            let mut m: IdMap<Tally> = a.clone();
            for (k, t) in b {
                let e = m.entry(*k).or_default();
                e.ops += t.ops;
                e.bytes += t.bytes;
            }
            let mut v: Vec<Row> = m
                .into_iter()
                .map(|(id, t)| Row {
                    id,
                    ops: t.ops,
                    bytes: t.bytes,
                    ops_per_sec: t.ops as f64 / secs,
                    bytes_per_sec: t.bytes as f64 / secs,
                })
                .collect();
            v.sort_by(|x, y| {
                y.ops
                    .cmp(&x.ops)
                    .then(y.bytes.cmp(&x.bytes))
                    .then(x.id.cmp(&y.id))
            });
            v.truncate(n);
            v
        };
        View {
            seconds: secs,
            clients: rows(&g.current.clients, &g.previous.clients),
            files: rows(&g.current.files, &g.previous.files),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busiest_first_and_bounded() {
        let t = Top::new();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..10 {
            t.note(7, 100, 4096, ip);
        }
        t.note(8, 101, 0, ip);
        // A flood of one-off files does not grow the table past its cap nor push out file 100.
        for f in 1000..(1000 + 5 * CAP as u64) {
            t.note(9, f, 0, ip);
        }
        let v = t.view(3);
        assert_eq!(v.clients[0].id, 9);
        assert_eq!(v.clients[1].id, 7);
        assert_eq!(v.clients[1].bytes, 40960);
        assert_eq!(v.files[0].id, 100);
        assert_eq!(v.files[0].ops, 10);
        assert!(t.lock().as_ref().unwrap().current.files.len() <= CAP);
        assert_eq!(t.peer(7), Some(ip));
    }
}
