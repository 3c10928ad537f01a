//! The data servers this MDS knows, fed by their heartbeats. A DS is up while it heartbeats;
//! silence for `dead_after` (or a failed I/O the MDS sent it) marks it down, and the next
//! heartbeat brings it back.
//!
//! Room: every heartbeat carries the DS's free space. New files are not placed on a DS with
//! less than `full_below` free, nor on one that answered NOSPC lately (a client's report or our
//! own write), until its heartbeats show space freed or `NOSPC_HOLD` has passed. Before this a
//! full DS kept being chosen, and each write to it failed over for ~20 s.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use layout::{DsId, DsInfo, DsMap, DsState};
use proto::cluster::*;
use proto::nfs4::basic::Netaddr4;

struct Live {
    last_seen: Instant,
    instance: u64,
    listen: SocketAddr,
    advertised: Vec<Netaddr4>,
    counters: DsCounters,
    /// Free bytes at the last heartbeat.
    avail: u64,
    /// The file system under its data (shown so shared disks are counted once).
    fs_id: u64,
    /// When the DS last answered NOSPC, and its free space then.
    nospc: Option<(Instant, u64)>,
}

/// How long a NOSPC keeps a DS out of new placements unless its heartbeats show space freed.
const NOSPC_HOLD: Duration = Duration::from_secs(60);

/// Below this much free space a DS takes no new files: 1/64 of its file system, between
/// 1 MiB and 1 GiB (a file placed there would likely fill it; ext4 keeps 5% for root alone).
fn full_below(capacity: u64) -> u64 {
    (capacity / 64).clamp(1 << 20, 1 << 30)
}

impl Live {
    fn has_room(&self, capacity: u64) -> bool {
        // A DS that has not measured its file system yet is given the benefit of the doubt.
        if capacity == 0 {
            return true;
        }
        let floor = full_below(capacity);
        if let Some((at, then)) = self.nospc {
            if at.elapsed() < NOSPC_HOLD && self.avail < then.saturating_add(floor) {
                return false;
            }
        }
        self.avail >= floor
    }
}

#[derive(Default)]
struct Inner {
    map: DsMap,
    live: HashMap<DsId, Live>,
    /// DSs that went down since the last `take_down_events`.
    went_down: Vec<DsId>,
    /// DSs being drained (the namespace's drain marks, see `drain`), with the files still
    /// placed on each at the last count (`None`: not counted yet).
    draining: HashMap<DsId, Option<usize>>,
}

pub struct Registry {
    inner: Mutex<Inner>,
}

/// Why a heartbeat was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Auth,
    Clock,
    Inval,
}

impl Refused {
    pub fn code(self) -> u32 {
        match self {
            Refused::Auth => CLUSTER_ERR_AUTH,
            Refused::Clock => CLUSTER_ERR_CLOCK,
            Refused::Inval => CLUSTER_ERR_INVAL,
        }
    }
}

fn parse(na: &Netaddr4) -> Option<(String, SocketAddr)> {
    let netid = String::from_utf8(na.na_r_netid.0.clone()).ok()?;
    let uaddr = std::str::from_utf8(&na.na_r_addr.0).ok()?;
    Some((netid, layout::uaddr::from_uaddr(uaddr).ok()?))
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub fn new() -> Self {
        Registry {
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes an authenticated heartbeat (the caller checked MAC and clock). True when this is
    /// the DS's first heartbeat to this MDS instance, or the first since the DS restarted.
    pub fn heartbeat(&self, a: &HeartbeatArgs) -> Result<bool, Refused> {
        let (_, listen) = parse(&a.listen).ok_or(Refused::Inval)?;
        let mut advertised = Vec::new();
        for na in &a.advertised {
            advertised.push(parse(na).ok_or(Refused::Inval)?);
        }
        if a.ds_id == 0 {
            return Err(Refused::Inval);
        }
        let id = DsId(a.ds_id);
        let mut g = self.lock();
        let mut info = DsInfo::new(id, listen);
        info.advertised = advertised;
        info.failure_domain = a.failure_domain.clone();
        info.capacity_bytes = a.capacity_bytes;
        info.used_bytes = a.used_bytes;
        info.state = DsState::Up;
        let was = g.map.get(id).map(|d| d.state);
        g.map.upsert(info);
        match was {
            None => tracing::info!(ds = %id, %listen, "data server registered"),
            Some(DsState::Down) => tracing::info!(ds = %id, %listen, "data server is back"),
            _ => {}
        }
        let restarted = g.live.get(&id).is_some_and(|l| l.instance != a.instance);
        if restarted {
            tracing::info!(ds = %id, "data server restarted");
        }
        let first = restarted || !g.live.contains_key(&id);
        // A NOSPC is remembered across heartbeats of the same instance (a restart starts
        // afresh).
        let nospc = g
            .live
            .get(&id)
            .filter(|l| l.instance == a.instance)
            .and_then(|l| l.nospc);
        let live = Live {
            last_seen: Instant::now(),
            instance: a.instance,
            listen,
            advertised: a.advertised.clone(),
            counters: a.counters,
            avail: a.avail_bytes,
            fs_id: a.fs_id,
            nospc,
        };
        let had_room = g
            .live
            .get(&id)
            .map(|l| l.has_room(a.capacity_bytes))
            .unwrap_or(true);
        match (had_room, live.has_room(a.capacity_bytes)) {
            (true, false) => tracing::warn!(
                ds = %id,
                avail = a.avail_bytes,
                "data server is full: no new files go there"
            ),
            (false, true) => tracing::info!(
                ds = %id,
                avail = a.avail_bytes,
                "data server has room again"
            ),
            _ => {}
        }
        g.live.insert(id, live);
        Ok(first)
    }

    /// Marks DSs silent for longer than `dead_after` down; returns how many changed.
    pub fn sweep(&self, dead_after: Duration) -> usize {
        let mut g = self.lock();
        let silent: Vec<DsId> = g
            .live
            .iter()
            .filter(|(_, l)| l.last_seen.elapsed() > dead_after)
            .map(|(id, _)| *id)
            .collect();
        let mut n = 0;
        for id in silent {
            if matches!(g.map.set_state(id, DsState::Down), Ok(true)) {
                tracing::warn!(ds = %id, "data server missed its heartbeats: down");
                g.went_down.push(id);
                n += 1;
            }
        }
        n
    }

    pub fn mark_down(&self, id: DsId) {
        let mut g = self.lock();
        if matches!(g.map.set_state(id, DsState::Down), Ok(true)) {
            tracing::warn!(
                ds = %id,
                "data server failed an I/O: down until it heartbeats"
            );
            g.went_down.push(id);
        }
    }

    /// A DS answered NOSPC (to a client, who reported it, or to us): no new files go there
    /// until its heartbeats show space freed, or `NOSPC_HOLD` passes.
    pub fn out_of_space(&self, id: DsId) {
        let mut g = self.lock();
        if let Some(l) = g.live.get_mut(&id) {
            if l.nospc.is_none_or(|(at, _)| at.elapsed() >= NOSPC_HOLD) {
                tracing::warn!(
                    ds = %id,
                    avail = l.avail,
                    "data server answered NOSPC: no new files go there"
                );
            }
            l.nospc = Some((Instant::now(), l.avail));
        }
    }

    /// Lifts every NOSPC mark: the object-store tier's store answers again after failing, so
    /// uploads and eviction make room on data servers that refused while it was down.
    pub fn lift_nospc(&self) {
        let mut g = self.lock();
        let mut n = 0;
        for l in g.live.values_mut() {
            n += usize::from(l.nospc.take().is_some());
        }
        if n > 0 {
            tracing::info!(
                data_servers = n,
                "the store is back: full data servers take files again"
            );
        }
    }

    /// Whether new files may be placed on `id`.
    pub fn has_room(&self, id: DsId) -> bool {
        let g = self.lock();
        let capacity = g.map.get(id).map(|d| d.capacity_bytes).unwrap_or(0);
        g.live.get(&id).is_none_or(|l| l.has_room(capacity))
    }

    /// The DS map new files are placed with: DSs without room, and DSs being drained, count as
    /// draining (they serve what they hold and take nothing new).
    pub fn placement_map(&self) -> DsMap {
        let g = self.lock();
        let mut map = g.map.clone();
        for d in g.map.iter() {
            let full = g
                .live
                .get(&d.id)
                .is_some_and(|l| !l.has_room(d.capacity_bytes));
            if (full || g.draining.contains_key(&d.id)) && d.state == DsState::Up {
                let _ = map.set_state(d.id, DsState::Draining);
            }
        }
        map
    }

    /// Makes `marks` the DSs being drained (the namespace holds the marks; this is their
    /// cache), keeping the counts of those that stay.
    pub fn set_draining(&self, marks: &[DsId]) {
        let mut g = self.lock();
        g.draining.retain(|d, _| marks.contains(d));
        for d in marks {
            g.draining.entry(*d).or_insert(None);
        }
    }

    /// Records how many files are still placed on a DS being drained.
    pub fn set_files_left(&self, id: DsId, n: usize) {
        if let Some(left) = self.lock().draining.get_mut(&id) {
            *left = Some(n);
        }
    }

    pub fn is_draining(&self, id: DsId) -> bool {
        self.lock().draining.contains_key(&id)
    }

    /// The DSs being drained and the files left on each (`None`: not counted yet), by id.
    pub fn draining(&self) -> Vec<(DsId, Option<usize>)> {
        let mut v: Vec<_> = self.lock().draining.iter().map(|(d, n)| (*d, *n)).collect();
        v.sort();
        v
    }

    /// DSs down and silent for longer than `d` (their last heartbeat to this MDS instance).
    pub fn down_longer_than(&self, d: Duration) -> Vec<DsId> {
        let g = self.lock();
        g.live
            .iter()
            .filter(|(id, l)| {
                l.last_seen.elapsed() > d
                    && g.map.get(**id).is_some_and(|m| m.state == DsState::Down)
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// The DSs that went down since the last call (their layouts get recalled).
    pub fn take_down_events(&self) -> Vec<DsId> {
        std::mem::take(&mut self.lock().went_down)
    }

    /// The DS map as of now (placement works on a copy).
    pub fn map(&self) -> DsMap {
        self.lock().map.clone()
    }

    pub fn is_up(&self, id: DsId) -> bool {
        self.lock()
            .map
            .get(id)
            .is_some_and(|d| d.state == DsState::Up)
    }

    /// How long since the DS's last heartbeat to this MDS instance (`None`: it never sent
    /// one). A DS marked down for a failed I/O that still heartbeats has been silent briefly.
    pub fn silent_for(&self, id: DsId) -> Option<Duration> {
        self.lock().live.get(&id).map(|l| l.last_seen.elapsed())
    }

    /// Whether the DS has registered since this MDS started.
    pub fn knows(&self, id: DsId) -> bool {
        self.lock().map.get(id).is_some()
    }

    pub fn info(&self, id: DsId) -> Option<DsInfo> {
        self.lock().map.get(id).cloned()
    }

    pub fn listen_addr(&self, id: DsId) -> Option<SocketAddr> {
        self.lock().live.get(&id).map(|l| l.listen)
    }

    /// Every DS as `cfs admin status` shows it.
    pub fn status(&self) -> Vec<DsStatus> {
        let g = self.lock();
        let mut out: Vec<DsStatus> = g
            .map
            .iter()
            .filter_map(|d| {
                let l = g.live.get(&d.id)?;
                Some(DsStatus {
                    ds_id: d.id.0,
                    state: match d.state {
                        DsState::Up if g.draining.contains_key(&d.id) => DS_STATE_DRAINING,
                        DsState::Up => DS_STATE_UP,
                        DsState::Down => DS_STATE_DOWN,
                        DsState::Draining => DS_STATE_DRAINING,
                    },
                    listen: Netaddr4 {
                        na_r_netid: layout::uaddr::netid_for(&l.listen)
                            .as_bytes()
                            .to_vec()
                            .into(),
                        na_r_addr: layout::uaddr::to_uaddr(&l.listen)
                            .as_bytes()
                            .to_vec()
                            .into(),
                    },
                    advertised: l.advertised.clone(),
                    failure_domain: d.failure_domain.clone(),
                    silent_ms: l.last_seen.elapsed().as_millis() as u64,
                    capacity_bytes: d.capacity_bytes,
                    used_bytes: d.used_bytes,
                    avail_bytes: l.avail,
                    has_room: l.has_room(d.capacity_bytes),
                    fs_id: l.fs_id,
                    counters: l.counters,
                })
            })
            .collect();
        out.sort_by_key(|d| d.ds_id);
        out
    }
}
