//! `cfs admin snapshot restore NAME [--to PATH]`: a snapshot's tree put back as live files
//! (`docs/plans/snapshots.md` step 11), as metadata that shares the snapshot's bytes: a file
//! whose bytes are a mirrored image (or can be made one) gets hard links of its chunk files
//! (`dataservers::snap_data::share`); only erasure-coded, reduced or evicted bytes without an
//! image are copied. Modes, owners, times, symlinks, devices, hard links (within the tree) and
//! extended attributes come back as the snapshot has them; ctimes are new, as after any
//! restore.
//!
//! **Where.** With `--to PATH` (PATH must not exist, its parent must) the tree is built in a
//! hidden directory beside PATH and renamed to PATH when whole: PATH appears complete or not
//! at all. In place (no `--to`), the snapshot's root directory keeps its inode, so its
//! `.snapshot` stays where it is: the tree is built in `ROOT/.cfs-restore-ID`, then every
//! entry the root holds is moved into `ROOT/.cfs-replaced-ID` (nothing is deleted: the
//! operator removes it when satisfied, or takes a snapshot and removes it), the built tree is
//! marked ready (renamed `.cfs-restore-ID.ready`), its entries are moved into the root, and
//! the root takes the snapshot's attributes.
//!
//! **Crash and re-run.** Every step is idempotent and reads where it stands from the tree
//! itself: an entry that exists with the right kind is kept (and its attributes set again), a
//! file whose size is already the snapshot's has its bytes, a link made once is found; the
//! ready mark says the move-away is done. So a restore cut short (kill -9 of the node, a
//! dropped connection) is finished by running the same command again, and the tree is its own
//! cursor: no replicated job record is needed. The plan's durable job would resume without
//! the operator; this is simpler and as safe, and says so in its error.
//!
//! **Not done.** Hard links to files outside the snapshot's tree come back as links within it
//! only; a restore while clients change the target tree moves their entries aside (in place),
//! it does not merge.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use meta::namespace::{Command, CreateHow, FileKind, FsError, Inode, SetTime, ShardId, Time};
use meta_core::snap::{SnapId, SnapState};

use super::snapshots::{SnapshotError, SNAPSHOT_DIR};
use super::Admin;
use crate::dataservers::snap_data::Shared;
use crate::error::NfsError;

/// Entries read from a directory at a time.
const PAGE: usize = 256;
/// Bytes copied at a time where bytes cannot be shared.
const COPY_STEP: u64 = 1 << 20;
/// How long a data step waits out `Delay` (a gate's claim, a half-linked image, an election)
/// before the restore stops with an error to run it again.
const DATA_WAIT: Duration = Duration::from_secs(30);

/// Restores running on this node, by (snapshot, destination): a second request for the same
/// one is refused while the first runs, as two would race each other's creates.
static RUNNING: Mutex<BTreeSet<(u64, u64, String)>> = Mutex::new(BTreeSet::new());

/// What a restore did.
#[derive(Debug, Clone, Default)]
pub struct RestoreReport {
    pub snapshot: String,
    /// Where the tree is now.
    pub to: String,
    /// In place: where the entries the root held before went.
    pub replaced: Option<String>,
    pub dirs: u64,
    pub files: u64,
    /// Symlinks, devices, FIFOs, sockets.
    pub others: u64,
    /// Hard links beyond a file's first name.
    pub links: u64,
    /// Bytes of files given their snapshot bytes by shared chunks (no byte copied).
    pub shared_bytes: u64,
    /// Bytes copied (forms that cannot be shared).
    pub copied_bytes: u64,
    // A run that only finishes an earlier run's moves (in place, past the ready mark) counts
    // nothing: the counts are of what this run built.
    pub secs: f64,
}

/// The mark of one running restore, removed when it ends however it ends.
struct Running((u64, u64, String));

impl Running {
    fn start(key: (u64, u64, String)) -> Result<Running, SnapshotError> {
        let mut g = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        if !g.insert(key.clone()) {
            return Err(SnapshotError::RestoreRunning);
        }
        Ok(Running(key))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.0);
    }
}

fn ns_err(e: FsError) -> SnapshotError {
    SnapshotError::Namespace(e)
}

/// A short stable tag of a name, for the hidden directory a `--to` restore builds in (a name
/// of up to 255 bytes does not fit in another name).
fn tag(name: &[u8]) -> String {
    let h = blake3::hash(name);
    h.as_bytes()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Admin {
    /// Restores snapshot `name` in place, or to `to` (an absolute path that does not exist
    /// yet). Module comment: how, and how a restore cut short is finished.
    pub async fn snapshot_restore(
        &self,
        name: &str,
        to: Option<&str>,
    ) -> Result<RestoreReport, SnapshotError> {
        let started = Instant::now();
        let ns = &self.mds.ns;
        let (snap, root) = self.ready_snapshot(name).await?;
        let mut r = RestoreReport {
            snapshot: name.to_string(),
            ..RestoreReport::default()
        };
        let _running = Running::start((ns.node_id(), snap, to.unwrap_or("").to_string()))?;
        match to {
            Some(path) => {
                let (parent, base) = split(path)?;
                let dir = match ns.resolve(parent.as_bytes()) {
                    Ok(d) if d.kind.is_dir() => d.ino,
                    Ok(_) => return Err(SnapshotError::NotDir(parent.to_string())),
                    Err(FsError::NotFound | FsError::NotDir) => {
                        return Err(SnapshotError::NotFound(parent.to_string()))
                    }
                    Err(e) => return Err(ns_err(e)),
                };
                let staging = format!(".cfs-restore-{snap}-{}", tag(base.as_bytes()));
                if self.child(dir, staging.as_bytes())?.is_none()
                    && self.child(dir, base.as_bytes())?.is_some()
                {
                    return Err(SnapshotError::TargetExists(path.to_string()));
                }
                let st = self.ensure_dir(dir, staging.as_bytes()).await?;
                self.build(snap, root, st, &[], &mut r).await?;
                match self
                    .rename(dir, staging.as_bytes(), dir, base.as_bytes())
                    .await
                {
                    Err(SnapshotError::Namespace(FsError::Exists | FsError::NotEmpty)) => {
                        return Err(SnapshotError::TargetExists(path.to_string()))
                    }
                    other => other?,
                }
                r.to = path.to_string();
            }
            None => {
                let staging = format!(".cfs-restore-{snap}");
                let ready = format!(".cfs-restore-{snap}.ready");
                let replaced = format!(".cfs-replaced-{snap}");
                let ours = [staging.clone(), ready.clone(), replaced.clone()];
                let root_path = self
                    .paths(&HashSet::from([root]))
                    .remove(&root)
                    .unwrap_or_else(|| format!("(directory {root})"));
                if self.child(root, ready.as_bytes())?.is_none() {
                    if self.child(root, staging.as_bytes())?.is_none()
                        && self.child(root, replaced.as_bytes())?.is_some()
                    {
                        // An earlier restore's old entries: moving more in would mix them.
                        return Err(SnapshotError::TargetExists(format!(
                            "{}/{replaced}",
                            root_path.trim_end_matches('/')
                        )));
                    }
                    let st = self.ensure_dir(root, staging.as_bytes()).await?;
                    self.build(snap, root, st, &ours, &mut r).await?;
                    let rep = self.ensure_dir(root, replaced.as_bytes()).await?;
                    let moved = self.move_all(root, rep, &ours).await?;
                    if moved == 0 && self.is_empty(rep)? {
                        self.execute(Command::Rmdir {
                            parent: root,
                            name: replaced.clone().into_bytes(),
                            child: rep,
                            time: Time::now(),
                        })
                        .await?;
                    }
                    self.rename(root, staging.as_bytes(), root, ready.as_bytes())
                        .await?;
                }
                let rd = self
                    .child(root, ready.as_bytes())?
                    .ok_or(SnapshotError::Namespace(FsError::NotFound))?
                    .ino;
                self.move_all(rd, root, &[]).await?;
                self.execute(Command::Rmdir {
                    parent: root,
                    name: ready.into_bytes(),
                    child: rd,
                    time: Time::now(),
                })
                .await?;
                let at = self.view(|s| s.inode_at(snap, root)).await?;
                self.set_attrs(snap, root, &at).await?;
                r.to = root_path.clone();
                if self.child(root, replaced.as_bytes())?.is_some() {
                    r.replaced = Some(format!("{}/{replaced}", root_path.trim_end_matches('/')));
                }
            }
        }
        r.secs = started.elapsed().as_secs_f64();
        tracing::info!(
            snapshot = name,
            to = r.to,
            files = r.files,
            dirs = r.dirs,
            shared = r.shared_bytes,
            copied = r.copied_bytes,
            secs = r.secs,
            "snapshot restored"
        );
        Ok(r)
    }

    /// Snapshot `name`'s id and root, if it is ready to read.
    async fn ready_snapshot(&self, name: &str) -> Result<(SnapId, u64), SnapshotError> {
        let records = self.mds.ns.list_snapshots().await.map_err(ns_err)?;
        let Some((id, rec)) = records.into_iter().find(|(_, r)| {
            r.name == name.as_bytes() && !matches!(r.state, SnapState::Aborted { .. })
        }) else {
            return Err(SnapshotError::NoSuchSnapshot(name.to_string()));
        };
        match rec.state {
            SnapState::Ready { .. } => Ok((id, rec.root)),
            SnapState::Deleting { .. } => Err(SnapshotError::NoSuchSnapshot(name.to_string())),
            _ => Err(SnapshotError::Busy),
        }
    }

    /// A read of the snapshot; a replica that has not applied the cut yet (`Busy`) catches up
    /// with its leaders and reads again.
    async fn view<T>(
        &self,
        f: impl Fn(&meta::namespace::Snapshot<'_>) -> Result<T, FsError>,
    ) -> Result<T, SnapshotError> {
        let ns = &self.mds.ns;
        let mut tries = 0;
        loop {
            match ns.snapshot().and_then(|s| f(&s)) {
                Err(FsError::Busy | FsError::Dangling { .. }) if tries < 10 => {
                    tries += 1;
                    for shard in 0..ns.shard_count() {
                        let _ = ns.barrier(ShardId(shard)).await;
                    }
                }
                other => return other.map_err(ns_err),
            }
        }
    }

    async fn execute(&self, cmd: Command) -> Result<meta::namespace::Outcome, SnapshotError> {
        self.mds.ns.execute(cmd).await.map_err(ns_err)
    }

    /// The live entry `name` of `dir`, if any.
    fn child(&self, dir: u64, name: &[u8]) -> Result<Option<Inode>, SnapshotError> {
        match self.mds.ns.lookup(dir, name) {
            Ok(i) => Ok(Some(i)),
            Err(FsError::NotFound) => Ok(None),
            Err(e) => Err(ns_err(e)),
        }
    }

    fn is_empty(&self, dir: u64) -> Result<bool, SnapshotError> {
        let (page, _) = self.mds.ns.readdir(dir, 0, 1).map_err(ns_err)?;
        Ok(page.is_empty())
    }

    /// A private working directory `name` in `dir` (made, or found from an earlier run).
    async fn ensure_dir(&self, dir: u64, name: &[u8]) -> Result<u64, SnapshotError> {
        self.ensure_as(dir, name, &FileKind::Directory, 0o700, 0, 0)
            .await
    }

    /// Entry `name` in `dir` as an object like `i` (kind, mode, owner): the one an earlier run
    /// made, or a new one.
    async fn ensure(&self, dir: u64, name: &[u8], i: &Inode) -> Result<u64, SnapshotError> {
        self.ensure_as(dir, name, &i.kind, i.mode, i.uid, i.gid)
            .await
    }

    async fn ensure_as(
        &self,
        dir: u64,
        name: &[u8],
        kind: &FileKind,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<u64, SnapshotError> {
        let conflict =
            || SnapshotError::RestoreConflict(String::from_utf8_lossy(name).into_owned());
        if let Some(cur) = self.child(dir, name)? {
            return match cur.kind == *kind {
                true => Ok(cur.ino),
                false => Err(conflict()),
            };
        }
        let made = self
            .mds
            .ns
            .execute(Command::Create {
                parent: dir,
                name: name.to_vec(),
                kind: kind.clone(),
                mode,
                uid,
                gid,
                time: Time::now(),
                how: CreateHow::Guarded,
            })
            .await;
        match made {
            Ok(o) => o
                .inode
                .map(|x| x.ino)
                .ok_or(SnapshotError::Namespace(FsError::NotFound)),
            // Made meanwhile (a request sent again): take it as above.
            Err(FsError::Exists) => match self.child(dir, name)? {
                Some(cur) if cur.kind == *kind => Ok(cur.ino),
                _ => Err(conflict()),
            },
            Err(e) => Err(ns_err(e)),
        }
    }

    /// Renames `from/a` to `to/b` (`b` must be free).
    async fn rename(&self, from: u64, a: &[u8], to: u64, b: &[u8]) -> Result<(), SnapshotError> {
        let src = self
            .child(from, a)?
            .ok_or(SnapshotError::Namespace(FsError::NotFound))?;
        self.execute(Command::Rename {
            src_parent: from,
            src_name: a.to_vec(),
            src: src.ino,
            dst_parent: to,
            dst_name: b.to_vec(),
            dst: None,
            time: Time::now(),
        })
        .await?;
        Ok(())
    }

    /// Moves every entry of `from` but `keep` into `to`, under the same names. Returns how
    /// many it moved. Each is renamed as it is found, so a run cut short leaves the rest to
    /// the next.
    async fn move_all(&self, from: u64, to: u64, keep: &[String]) -> Result<u64, SnapshotError> {
        let mut moved = 0;
        loop {
            // From the start each time: the entries moved are gone from the listing.
            let (page, _) = self.mds.ns.readdir(from, 0, PAGE).map_err(ns_err)?;
            let todo: Vec<_> = page
                .into_iter()
                .filter(|e| !keep.iter().any(|k| k.as_bytes() == e.name.as_slice()))
                .collect();
            if todo.is_empty() {
                return Ok(moved);
            }
            for e in todo {
                match self.rename(from, &e.name, to, &e.name).await {
                    Ok(()) => moved += 1,
                    Err(SnapshotError::Namespace(FsError::Exists | FsError::NotEmpty)) => {
                        return Err(SnapshotError::RestoreConflict(
                            String::from_utf8_lossy(&e.name).into_owned(),
                        ))
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }

    /// Builds the tree of `src` at `snap` inside directory `dst`, skipping the top-level names
    /// in `skip` (a restore's own working directories, if the snapshot caught one).
    async fn build(
        &self,
        snap: SnapId,
        src: u64,
        dst: u64,
        skip: &[String],
        r: &mut RestoreReport,
    ) -> Result<(), SnapshotError> {
        enum Step {
            Enter { src: u64, dst: u64 },
            Finish { src: u64, dst: u64 },
        }
        // Snapshot inode -> restored inode, for files with more than one link.
        let mut links: HashMap<u64, u64> = HashMap::new();
        let top = src;
        let mut stack = vec![Step::Enter { src, dst }];
        while let Some(step) = stack.pop() {
            let (src, dst) = match step {
                Step::Finish { src, dst } => {
                    let at = self.view(|s| s.inode_at(snap, src)).await?;
                    self.set_attrs(snap, dst, &at).await?;
                    continue;
                }
                Step::Enter { src, dst } => (src, dst),
            };
            stack.push(Step::Finish { src, dst });
            let mut after = 0;
            loop {
                let (page, done) = self.view(|s| s.readdir_at(snap, src, after, PAGE)).await?;
                for e in page {
                    after = e.cookie;
                    if src == top && skip.iter().any(|k| k.as_bytes() == e.name.as_slice()) {
                        continue;
                    }
                    let i = self.view(|s| s.inode_at(snap, e.ino)).await?;
                    match &i.kind {
                        FileKind::Directory => {
                            let d = self.ensure(dst, &e.name, &i).await?;
                            r.dirs += 1;
                            stack.push(Step::Enter { src: i.ino, dst: d });
                        }
                        FileKind::Regular if links.contains_key(&i.ino) => {
                            self.ensure_link(links[&i.ino], dst, &e.name).await?;
                            r.links += 1;
                        }
                        FileKind::Regular => {
                            let f = self.ensure(dst, &e.name, &i).await?;
                            // Boxed: the data step's future is deep (the gate, the links).
                            Box::pin(self.restore_bytes(snap, &i, f, r)).await?;
                            self.set_attrs(snap, f, &i).await?;
                            if i.nlink > 1 {
                                links.insert(i.ino, f);
                            }
                            r.files += 1;
                            meta::failpoint::hit("snap-restore-file");
                        }
                        _ => {
                            let o = self.ensure(dst, &e.name, &i).await?;
                            self.set_attrs(snap, o, &i).await?;
                            r.others += 1;
                        }
                    }
                }
                if done {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Name `name` in `dir` for restored file `ino` (a further hard link).
    async fn ensure_link(&self, ino: u64, dir: u64, name: &[u8]) -> Result<(), SnapshotError> {
        match self.child(dir, name)? {
            Some(cur) if cur.ino == ino => Ok(()),
            Some(_) => Err(SnapshotError::RestoreConflict(
                String::from_utf8_lossy(name).into_owned(),
            )),
            None => {
                self.execute(Command::Link {
                    ino,
                    parent: dir,
                    name: name.to_vec(),
                    time: Time::now(),
                })
                .await?;
                Ok(())
            }
        }
    }

    /// Gives restored file `new` the bytes `i` had at `snap`, unless an earlier run did (its
    /// size, set last, is the snapshot's).
    async fn restore_bytes(
        &self,
        snap: SnapId,
        i: &Inode,
        new: u64,
        r: &mut RestoreReport,
    ) -> Result<(), SnapshotError> {
        if i.size == 0 {
            return Ok(());
        }
        let cur = self.mds.ns.getattr(new).map_err(ns_err)?;
        if cur.size == i.size {
            return Ok(());
        }
        // Boxed: the gate's and the links' future is deep.
        let shared =
            waiting(|| Box::pin(self.mds.data.share_snapshot_bytes(snap, i.ino, new))).await?;
        match shared {
            Shared::Linked => r.shared_bytes += i.size,
            Shared::Empty => {}
            Shared::Copy => r.copied_bytes += Box::pin(self.copy_bytes(snap, i, new)).await?,
        }
        Ok(())
    }

    /// Copies the bytes of `i` at `snap` into `new`, skipping runs of zeros (holes stay
    /// holes). Returns the bytes written.
    async fn copy_bytes(&self, snap: SnapId, i: &Inode, new: u64) -> Result<u64, SnapshotError> {
        let mut off = 0;
        let mut written = 0;
        while off < i.size {
            let (buf, _) =
                waiting(|| crate::nfs::ops::snap::read_at(&self.mds, snap, i, off, COPY_STEP))
                    .await?;
            if buf.is_empty() {
                break;
            }
            let n = buf.len() as u64;
            if buf.iter().any(|b| *b != 0) {
                self.mds
                    .data
                    .write_data_owned(new, off, buf, true)
                    .await
                    .map_err(SnapshotError::Data)?;
                written += n;
            }
            off += n;
        }
        Ok(written)
    }

    /// Sets what `i` had at `snap` on restored object `ino`: extended attributes, then mode,
    /// owner, size (files) and times in one change (owner and mode only where they differ,
    /// so no set-id bit is dropped by a chown).
    async fn set_attrs(&self, snap: SnapId, ino: u64, i: &Inode) -> Result<(), SnapshotError> {
        let want = self.view(|s| s.xattrs_at(snap, i.ino)).await?;
        let have = self.mds.ns.xattrs(ino).map_err(ns_err)?;
        for (name, value) in &want {
            if have.get(name) != Some(value) {
                self.execute(Command::SetXattr {
                    ino,
                    name: name.clone(),
                    value: value.clone(),
                    how: meta_core::xattr::How::Either,
                    time: Time::now(),
                })
                .await?;
            }
        }
        let cur = self.mds.ns.getattr(ino).map_err(ns_err)?;
        let symlink = matches!(i.kind, FileKind::Symlink { .. });
        let regular = matches!(i.kind, FileKind::Regular);
        let differs = |a: u32, b: u32| (a != b).then_some(b);
        self.execute(Command::SetAttr {
            ino,
            mode: if symlink {
                None
            } else {
                differs(cur.mode, i.mode)
            },
            uid: differs(cur.uid, i.uid),
            gid: differs(cur.gid, i.gid),
            size: (regular && cur.size != i.size).then_some(i.size),
            atime: Some(SetTime::At(i.atime)),
            mtime: Some(SetTime::At(i.mtime)),
            time: Time::now(),
        })
        .await?;
        Ok(())
    }
}

/// `step` run again while it answers `Delay` (a gate's claim, a half-linked image, an
/// election), for up to `DATA_WAIT`.
async fn waiting<T, F, Fut>(mut step: F) -> Result<T, SnapshotError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::error::NfsResult<T>>,
{
    let waited = Instant::now();
    loop {
        match step().await {
            Ok(v) => return Ok(v),
            Err(NfsError::Delay) if waited.elapsed() < DATA_WAIT => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(SnapshotError::Data(e)),
        }
    }
}

/// `/a/b/c` as (`/a/b`, `c`); the root and paths ending in `.` or `..` have no parent to
/// restore beside.
fn split(path: &str) -> Result<(&str, &str), SnapshotError> {
    let p = path.trim_end_matches('/');
    let bad = || SnapshotError::BadTarget(path.to_string());
    if !p.starts_with('/') {
        return Err(bad());
    }
    let (parent, base) = p.rsplit_once('/').ok_or_else(bad)?;
    if base.is_empty() || base == "." || base == ".." || base == SNAPSHOT_DIR {
        return Err(bad());
    }
    Ok((if parent.is_empty() { "/" } else { parent }, base))
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn a_target_splits_into_its_parent_and_a_plain_name() {
        assert_eq!(split("/a/b").ok(), Some(("/a", "b")));
        assert_eq!(split("/b/").ok(), Some(("/", "b")));
        for bad in ["", "/", "b", "/a/..", "/a/.", "/a/.snapshot"] {
            assert!(split(bad).is_err(), "{bad:?} accepted");
        }
    }
}
