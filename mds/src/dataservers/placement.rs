//! Where a chunk's mirrors live. The first write to a chunk places it (rendezvous hashing over
//! the DSs that are up, two mirrors in different failure domains when possible) and records the
//! choice durably before any layout or write points there: placement is a function of the DS
//! map, and the map changes, so only the record says where the bytes are.
//!
//! The unit of placement is the whole file (its record is kept as chunk 0): Linux clients can
//! only be given whole-file layouts safely (see `layout::SegmentStyle::WholeFile`), so every
//! chunk of a file lives on the same mirrors, and files, not chunks, spread over the DSs.
//!
//! A mirror on a DS that is down is dropped from the record before anything new is written to
//! the chunk: from then on the surviving mirror alone is authoritative, and the returning DS's
//! stale copy is never read (re-mirroring it is repair's job).
//!
//! New files go only to DSs with room (`Registry::placement_map`). A mirror that answers NOSPC
//! is dropped the same way as a failed one (`out_of_space`), so the file goes on on the other
//! and repair copies it to a DS with room.
//!
//! Every change of a mirror record made here is a `Command::ReplaceMirrors` carrying the record it
//! was decided from (`Cluster::replace_mirrors`), which `apply` refuses (`Changed`) if the record
//! is no longer that: `placing` is one node's lock, and every MDS node places files, drops failed
//! mirrors and re-mirrors, so two nodes that place a new file at once, or that each see another
//! mirror's DS down in a partition, cannot both be recorded; the loser reads the record again
//! (`namespace::tests::replicated::two_nodes_placing_a_new_file_at_once_agree_on_one_record`).
use layout::{DsId, FileId};

use super::snap_data::Changing;
use super::Cluster;
use crate::error::{NfsError, NfsResult};
use meta::namespace::{Command, FsError, Namespace};

/// Copies a written chunk should have.
pub const MIRRORS: usize = 2;

/// The record that holds a file's placement.
pub(crate) const FILE_RECORD: u64 = 0;

/// A file whose every mirror is down waits (DELAY) while one of them has heartbeated within
/// this many heartbeat timeouts (32 s at the default 4 s), and fails (IO) after.
pub(crate) const OUTAGE_WAIT: u32 = 8;

/// Times a placement is tried when other nodes keep changing the record under it.
const PLACE_ATTEMPTS: usize = 4;

impl Cluster {
    /// The DSs to write `ino` to (an RW layout's, or the MDS's own write), recording them
    /// first if anything changed. The snapshot gate comes first (`before_change`): a layout
    /// lets a client change the bytes without asking again, so an image the file needs is
    /// made before it is handed out.
    pub async fn mirrors_for_write(&self, ns: &Namespace, ino: u64) -> NfsResult<Vec<DsId>> {
        if self.is_repairing(ino) {
            return Err(NfsError::Delay);
        }
        let leave = self.before_change(ns, ino).await?;
        self.mirrors_for(ns, leave).await
    }

    /// `mirrors_for_write` past the gate, for a change that passed it already.
    pub(crate) async fn mirrors_for(
        &self,
        ns: &Namespace,
        leave: Changing,
    ) -> NfsResult<Vec<DsId>> {
        let ino = leave.ino();
        let chunk = FILE_RECORD;
        if self.is_repairing(ino) {
            return Err(NfsError::Delay);
        }
        if let Some(code) = ns.stripes(ino)?.filter(|c| c.is_encoded()) {
            // A client never writes shards: the file goes back to mirrors first.
            return self.unencode(ns, ino, &code).await;
        }
        if let Some(red) = self.reduced(ns, ino)? {
            // Nor segments, which other files share.
            return self.unreduce(ns, ino, red).await;
        }
        if let Some(rec) = ns.chunk(ino, chunk)? {
            let live = self.live(&rec);
            if !live.is_empty() && live.len() == rec.len() {
                return Ok(live);
            }
        }
        let _g = self.placing.lock().await;
        for _ in 0..PLACE_ATTEMPTS {
            // Re-read under the lock: another grant may have recorded it meanwhile.
            let rec = ns.chunk(ino, chunk)?;
            let targets = match &rec {
                Some(rec) => {
                    let live = self.live(rec);
                    if live.is_empty() {
                        // Every copy is on a DS that is down: writing elsewhere would lose
                        // the rest of the file.
                        return Err(self.unavailable(rec));
                    }
                    if live.len() == rec.len() {
                        return Ok(live);
                    }
                    if self.settling() {
                        // The missing mirror may be a DS that has not re-registered since
                        // this node started: dropping it would leave the file one copy short
                        // for good (until repair). Wait for the heartbeats instead.
                        return Err(NfsError::Delay);
                    }
                    tracing::warn!(
                        ino,
                        chunk,
                        ?rec,
                        "chunk loses a mirror on a data server that is down"
                    );
                    live
                }
                None => {
                    let map = self.registry.placement_map();
                    let p = match layout::place(&map, FileId(ino), chunk, MIRRORS) {
                        Ok(p) if !p.targets.is_empty() => p,
                        // DSs are up, but none has room.
                        _ if self.registry.map().up().next().is_some() => {
                            return Err(NfsError::NoSpc)
                        }
                        _ => return Err(NfsError::LayoutUnavailable),
                    };
                    if p.targets.len() < MIRRORS && self.settling() {
                        // Right after a start, DSs that are up may not have heartbeated yet
                        // (they back off up to 5 s while the MDS is away): a new file placed
                        // now would be born one mirror short. It waits for them instead.
                        return Err(NfsError::Delay);
                    }
                    p.targets
                }
            };
            let mirrors = targets.iter().map(|d| d.0).collect();
            match self.replace_mirrors(ns, ino, rec.as_deref(), mirrors).await {
                Ok(()) => {}
                // Another node recorded first, and its record is the file's: read it again
                // (this node's replica has caught up with the refusal's index).
                Err(FsError::Changed) => continue,
                Err(e) => return Err(e.into()),
            }
            if targets.len() < MIRRORS {
                self.mark_degraded(ino);
            }
            return Ok(targets);
        }
        Err(NfsError::Delay)
    }

    /// Records `mirrors` as the file's if its record is still `expect`, what the caller read
    /// (`None`: no record). `FsError::Changed`: another node changed it first, and nothing was
    /// recorded. Every node places and re-places files under its own lock only, so a decision
    /// made from a record goes in only over that record (see `Command::ReplaceMirrors`).
    pub(crate) async fn replace_mirrors(
        &self,
        ns: &Namespace,
        ino: u64,
        expect: Option<&[u64]>,
        mirrors: Vec<u64>,
    ) -> Result<(), FsError> {
        ns.execute(Command::ReplaceMirrors {
            ino,
            chunk: FILE_RECORD,
            expect: expect.map(<[u64]>::to_vec).unwrap_or_default(),
            mirrors,
        })
        .await
        .map(|_| ())
    }

    /// Drops `failed` from the mirrors of `ino` (it failed a write or commit the others took),
    /// keeping at least one.
    pub async fn drop_mirror(&self, ns: &Namespace, ino: u64, failed: DsId) {
        let _g = self.placing.lock().await;
        for _ in 0..PLACE_ATTEMPTS {
            let Ok(Some(rec)) = ns.chunk(ino, FILE_RECORD) else {
                return;
            };
            let rest: Vec<u64> = rec.iter().copied().filter(|d| *d != failed.0).collect();
            if rest.is_empty() || rest.len() == rec.len() {
                return;
            }
            match self.replace_mirrors(ns, ino, Some(&rec), rest).await {
                Ok(()) => return self.mark_degraded(ino),
                // Another node changed the record: drop the mirror from the new one.
                Err(FsError::Changed) => continue,
                Err(e) => return tracing::error!(ino, "cannot drop a failed mirror: {e}"),
            }
        }
        tracing::warn!(ino, ds = %failed, "the file's record kept changing: mirror not dropped");
    }

    /// Cuts the copy of `ino` that a job made on `dst` but could not record, unless the record
    /// names `dst` now: then the copy is a mirror's.
    pub(crate) async fn discard_copy(&self, ns: &Namespace, ino: u64, dst: DsId) {
        match ns.chunk(ino, FILE_RECORD) {
            Ok(Some(rec)) if rec.contains(&dst.0) => {}
            Ok(_) => {
                if let Err(e) = self.set_size_on(ino, dst, 0).await {
                    tracing::debug!(ino, ds = %dst, "an unrecorded copy is left: {e:?}");
                }
            }
            Err(e) => tracing::debug!(ino, "record unreadable, copy left: {e}"),
        }
    }

    /// `ds` answered NOSPC writing `ino`: no new files go there for now, and it stops being a
    /// mirror of `ino` (whose bytes it now lacks) if another mirror remains.
    pub async fn out_of_space(&self, ns: &Namespace, ino: u64, ds: DsId) {
        self.registry.out_of_space(ds);
        self.drop_mirror(ns, ino, ds).await;
    }

    /// The DSs to read chunk `chunk` of `ino` from, preferred first. A chunk never written is a
    /// hole: any DS that is up answers it (with nothing, which reads as zeros).
    pub fn mirrors_for_read(&self, ns: &Namespace, ino: u64) -> NfsResult<Vec<DsId>> {
        let chunk = FILE_RECORD;
        match ns.chunk(ino, chunk)? {
            Some(rec) => {
                let live = self.live(&rec);
                if live.is_empty() {
                    tracing::error!(ino, chunk, ?rec, "every mirror of the file is down");
                    return Err(self.unavailable(&rec));
                }
                Ok(live)
            }
            None => {
                let map = self.registry.map();
                let p = layout::place(&map, FileId(ino), chunk, 1)
                    .map_err(|_| NfsError::LayoutUnavailable)?;
                if p.targets.is_empty() {
                    return Err(NfsError::LayoutUnavailable);
                }
                Ok(p.targets)
            }
        }
    }

    /// No mirror of a file is up. While that may be passing, the client should retry
    /// (DELAY): right after the MDS starts, or while a mirror is a DS we have not heard from
    /// yet (the DSs re-registering), and while a mirror has heartbeated within
    /// [`OUTAGE_WAIT`] heartbeat timeouts (a DS restarting, or one marked down for a failed
    /// I/O that still heartbeats, which its next heartbeat brings back). Linux takes
    /// NFS4ERR_IO on a LAYOUTGET as fatal to the write it was for (EIO to the application),
    /// which is not what a hard mount's user expects of a blip. A DS silent for longer is an
    /// outage the client must hear about (NFS4ERR_IO).
    pub(crate) fn unavailable(&self, rec: &[u64]) -> NfsError {
        let settling = self.settling();
        let recent = |d: &u64| {
            self.registry
                .silent_for(DsId(*d))
                .is_none_or(|s| s < self.cfg.dead_after * OUTAGE_WAIT)
        };
        if settling || rec.iter().any(recent) {
            NfsError::Delay
        } else {
            NfsError::Io
        }
    }

    /// Whether this node started so recently that a DS that is up may not have heartbeated
    /// to it yet: three heartbeat timeouts (12 s at the defaults), past the DSs' 5 s
    /// reconnect backoff plus a heartbeat.
    pub(crate) fn settling(&self) -> bool {
        self.started.elapsed() < self.cfg.dead_after * 3
    }

    fn live(&self, rec: &[u64]) -> Vec<DsId> {
        rec.iter()
            .map(|d| DsId(*d))
            .filter(|d| self.registry.is_up(*d))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::ClusterConfig;
    use super::*;
    use proto::cluster::{DsCounters, HeartbeatArgs};
    use proto::nfs4::basic::Netaddr4;
    use std::time::Duration;

    fn heartbeat(c: &Cluster, ds_id: u64) {
        let a = HeartbeatArgs {
            ds_id,
            instance: 1,
            timestamp_ms: 0,
            listen: Netaddr4 {
                na_r_netid: "tcp".into(),
                na_r_addr: format!("127.0.0.1.8.{ds_id}").as_str().into(),
            },
            advertised: vec![],
            failure_domain: String::new(),
            capacity_bytes: 0,
            used_bytes: 0,
            avail_bytes: 0,
            fs_id: 0,
            counters: DsCounters::default(),
            fence_seq: 0,
            mac: [0; 32],
        };
        c.registry.heartbeat(&a).expect("heartbeat");
    }

    /// Every mirror down: a wait while one of them may be coming back, an error once they
    /// have all been silent for OUTAGE_WAIT heartbeat timeouts.
    #[test]
    fn mirrors_all_down_wait_while_one_was_heard_lately_then_fail() {
        let secret =
            layout::ClusterSecret::from_passphrase("a test secret of some length").expect("secret");
        let mut cfg = ClusterConfig::new(secret);
        cfg.dead_after = Duration::from_millis(20);
        let c = Cluster::new(cfg, 0, 1).expect("cluster");
        assert_eq!(c.unavailable(&[1, 2]), NfsError::Delay, "settling");
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(c.unavailable(&[1, 2]), NfsError::Delay, "never heard of");
        heartbeat(&c, 1);
        heartbeat(&c, 2);
        // One failed an I/O and the other went silent: both down, one heard just now.
        c.registry.mark_down(DsId(1));
        c.registry.mark_down(DsId(2));
        assert!(c.live(&[1, 2]).is_empty());
        assert_eq!(c.unavailable(&[1, 2]), NfsError::Delay, "a blip");
        std::thread::sleep(Duration::from_millis(20) * OUTAGE_WAIT + Duration::from_millis(40));
        assert_eq!(c.unavailable(&[1, 2]), NfsError::Io, "an outage");
        heartbeat(&c, 2);
        c.registry.mark_down(DsId(2));
        assert_eq!(
            c.unavailable(&[1, 2]),
            NfsError::Delay,
            "one mirror heard again"
        );
        assert_eq!(c.unavailable(&[]), NfsError::Io, "no mirror to wait for");
    }

    /// Right after a start, a new file is not placed on fewer mirrors than it should have
    /// (a DS that is up may not have re-registered yet: its backoff reaches 5 s while the
    /// MDS is away), and an existing file does not lose a mirror that has not heartbeated
    /// yet; past the settling time, both go ahead on the DSs that are up.
    #[test]
    fn a_new_node_waits_for_heartbeats_before_placing_a_file_short_of_mirrors() {
        use meta::namespace::{CreateHow, FileKind, Options, Time, ROOT_INO};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let ns = rt
            .block_on(Namespace::open_with(dir.path(), Options::default()))
            .expect("namespace");
        let create = |name: &str| {
            let cmd = Command::Create {
                parent: ROOT_INO,
                name: name.as_bytes().to_vec(),
                kind: FileKind::Regular,
                mode: 0o644,
                uid: 0,
                gid: 0,
                time: Time::now(),
                how: CreateHow::Guarded,
            };
            let out = rt.block_on(ns.execute(cmd)).expect("create");
            out.inode.expect("inode").ino
        };
        let secret =
            layout::ClusterSecret::from_passphrase("a test secret of some length").expect("secret");
        let mut cfg = ClusterConfig::new(secret);
        cfg.dead_after = Duration::from_millis(100);
        let c = Cluster::new(cfg, 0, 1).expect("cluster");
        heartbeat(&c, 1);
        heartbeat(&c, 2);
        let both = create("both");
        let got = rt.block_on(c.mirrors_for_write(&ns, both)).expect("place");
        assert_eq!(got.len(), MIRRORS, "two DSs up: two mirrors");
        // Another file, with one DS not heard from yet (as after a restart).
        c.registry.mark_down(DsId(2));
        let short = create("short");
        assert_eq!(
            rt.block_on(c.mirrors_for_write(&ns, short)),
            Err(NfsError::Delay),
            "settling: a new file waits for the second DS"
        );
        assert_eq!(
            rt.block_on(c.mirrors_for_write(&ns, both)),
            Err(NfsError::Delay),
            "settling: the mirror is kept"
        );
        assert_eq!(
            ns.chunk(both, FILE_RECORD)
                .expect("record")
                .map(|r| r.len()),
            Some(2)
        );
        std::thread::sleep(Duration::from_millis(350));
        assert!(!c.settling());
        let got = rt.block_on(c.mirrors_for_write(&ns, short)).expect("place");
        assert_eq!(got, vec![DsId(1)], "settled: placed on the DS that is up");
        let got = rt.block_on(c.mirrors_for_write(&ns, both)).expect("drop");
        assert_eq!(got, vec![DsId(1)], "settled: the down mirror is dropped");
    }
}
