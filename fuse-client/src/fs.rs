//! The file system: every FUSE request becomes a task on the runtime that sends the NFS
//! COMPOUNDs for it with the caller's credential and answers the kernel when they return, so
//! requests run side by side (as many as the session's slots and the data servers take).
use crate::attr::{file_attr, set_attrs};
use crate::creds::Creds;
use crate::dir::{self, DirHandle};
use crate::errno::errno;
use crate::locks::{self, Kind, Locks};
use crate::nodes::{KernelAttrs, Nodes};
use crate::writebehind::WriteBehind;
use crate::xattr;
use client::proto::nfs4::*;
use client::proto::xdr::Opaque;
use client::{Client, CompoundBuilder, CreateMode, Error, OpenFile, SetAttrs, Stat, STAT_ATTRS};
use fuser::{
    Errno, FileHandle, FopenFlags, Generation, INodeNo, KernelConfig, LockOwner, OpenFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
    ReplyLock, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// How the mount behaves; `Default` is what `cfs mount` uses.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long the kernel may trust attributes and names without asking (NFS's `acregmin`
    /// is 3 s; shorter here, since opens revalidate anyway).
    pub attr_ttl: Duration,
    pub entry_ttl: Duration,
    /// FUSE's writeback cache: the kernel buffers writes and sends them in 1 MiB pieces.
    /// Off by default: with it the kernel never takes a file's size or mtime from the server
    /// while it caches the inode (`fuse_get_cache_mask`), so a file another client changed
    /// keeps its old size here, which breaks close-to-open consistency; and it measured no
    /// faster (write-behind already keeps the data servers busy): 512 MiB written 105-124
    /// MiB/s with it, 111-205 without; 200 small files 38-41/s with it, 52-63/s without.
    pub writeback_cache: bool,
    /// Largest READ and WRITE the kernel sends.
    pub max_io: u32,
    /// The kernel's readahead on the mount (see `set_readahead`).
    pub readahead_kib: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            attr_ttl: Duration::from_secs(1),
            entry_ttl: Duration::from_secs(1),
            writeback_cache: false,
            max_io: 1 << 20,
            readahead_kib: 4096,
        }
    }
}

type R<T> = Result<T, Errno>;

/// How soon after an open answered ESTALE (`Fs::kernel_size_stale`) the next open of the
/// node counts as its retry: the kernel's LOOKUPs of the path come in between.
const RELOOK_WITHIN: Duration = Duration::from_secs(10);

trait Ex<T> {
    fn ex(self) -> R<T>;
}

impl<T> Ex<T> for client::Result<T> {
    fn ex(self) -> R<T> {
        self.map_err(|e| {
            tracing::debug!("{e}");
            errno(&e)
        })
    }
}

/// An UNSTABLE write the MDS took: offset, bytes, and the verifier it answered with.
type Kept = (u64, Arc<Vec<u8>>, Verifier4);

/// One open file.
pub struct Handle {
    pub ino: u64,
    pub open: OpenFile,
    /// The opener's credential: writes the kernel sends later (and the COMMIT at close) go
    /// to the MDS as the user who opened the file.
    auth: client::proto::rpc::Auth,
    wb: WriteBehind,
    /// UNSTABLE writes the MDS took (no pNFS), kept until a COMMIT with their verifier: a
    /// server restart in between loses them, and then they are written again.
    kept: Mutex<Vec<Kept>>,
    sync: bool,
    direct: bool,
    /// Writes through this open that completed, and how many of them the last commit
    /// covered: a commit is needed while they differ.
    writes: AtomicU64,
    committed: AtomicU64,
}

impl Handle {
    fn dirty(&self) -> bool {
        self.writes.load(Ordering::Acquire) != self.committed.load(Ordering::Acquire)
    }
}

/// The shared state of a mount.
pub struct Fs {
    pub c: Client,
    opts: Options,
    nodes: Nodes,
    creds: Creds,
    files: Mutex<HashMap<u64, Arc<Handle>>>,
    dirs: Mutex<HashMap<u64, Arc<DirHandle>>>,
    next_fh: AtomicU64,
    locks: Locks,
    pnfs: bool,
    rt: tokio::runtime::Handle,
    pub notifier: OnceLock<fuser::Notifier>,
}

/// The `fuser::Filesystem` over [`Fs`].
pub struct CfsFuse(pub Arc<Fs>);

fn name_of(n: &OsStr) -> R<String> {
    n.to_str().map(str::to_owned).ok_or(Errno::EINVAL)
}

fn fh_and_stat(res: &[NfsResop4]) -> client::Result<(NfsFh4, Stat)> {
    let fh = res
        .iter()
        .rev()
        .find_map(|r| match r {
            NfsResop4::Getfh(GetfhRes::Ok(ok)) => Some(ok.object.clone()),
            _ => None,
        })
        .ok_or_else(|| Error::Protocol("reply lacks GETFH".into()))?;
    Ok((fh, last_stat(res)?))
}

fn last_stat(res: &[NfsResop4]) -> client::Result<Stat> {
    let a = res
        .iter()
        .rev()
        .find_map(|r| match r {
            NfsResop4::Getattr(GetattrRes::Ok(ok)) => Some(&ok.obj_attributes),
            _ => None,
        })
        .ok_or_else(|| Error::Protocol("reply lacks GETATTR".into()))?;
    Stat::from_fattr(a)
}

impl Fs {
    pub async fn new(c: Client, opts: Options) -> client::Result<Fs> {
        let root = c.root().clone();
        let st = c.getattr(&root).await?;
        let pnfs = c.pnfs_active().await;
        Ok(Fs {
            opts,
            nodes: Nodes::new(root, st.fsid, st.fileid),
            creds: Creds::new(),
            files: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            locks: Locks::default(),
            pnfs,
            rt: tokio::runtime::Handle::current(),
            notifier: OnceLock::new(),
            c,
        })
    }

    pub fn pnfs(&self) -> bool {
        self.pnfs
    }

    fn fh(&self, ino: INodeNo) -> R<NfsFh4> {
        self.nodes.fh(ino.0).ok_or(Errno::ESTALE)
    }

    fn file(&self, fh: FileHandle) -> R<Arc<Handle>> {
        self.files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh.0)
            .cloned()
            .ok_or(Errno::EBADF)
    }

    fn handles_of(&self, ino: u64) -> Vec<Arc<Handle>> {
        self.files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|h| h.ino == ino)
            .cloned()
            .collect()
    }

    fn new_fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }

    /// Attributes for the kernel: the size counts what this client wrote that the server
    /// does not show yet. Noted as what the kernel holds (`kernel_size_stale` and
    /// `revalidate` compare).
    fn attr(&self, ino: u64, st: &Stat) -> fuser::FileAttr {
        let mut a = file_attr(INodeNo(ino), st);
        self.nodes.update(ino, |n| {
            if let Some(end) = n.local_end {
                a.size = a.size.max(end);
            }
            n.kernel_attrs = Some(KernelAttrs {
                change: st.change,
                size: a.size,
            });
        });
        a
    }

    fn entry(&self, fh: &NfsFh4, st: &Stat, reply: ReplyEntry) {
        let ino = self.nodes.remember(fh, st);
        let a = self.attr(ino, st);
        reply.entry_with_ttls(&self.opts.entry_ttl, &self.opts.attr_ttl, &a, Generation(0));
    }

    async fn getattr(&self, ino: INodeNo) -> R<fuser::FileAttr> {
        let fh = self.fh(ino)?;
        // Sizes of files with writes in flight are only final once those land.
        for h in self.handles_of(ino.0) {
            h.wb.settle(0, u64::MAX).await;
        }
        let st = self.c.getattr(&fh).await.ex()?;
        Ok(self.attr(ino.0, &st))
    }

    async fn lookup(&self, parent: INodeNo, name: &str) -> R<(NfsFh4, Stat)> {
        let dir = self.fh(parent)?;
        let res = self
            .c
            .compound(
                CompoundBuilder::new()
                    .putfh(&dir)
                    .lookup(name)
                    .getfh()
                    .getattr(STAT_ATTRS),
            )
            .await
            .ex()?;
        // `.snapshot` and what is below it come as any other name: a snapshot's objects are
        // on a fsid of their own, and so nodes of their own (`nodes`); the server refuses
        // every change inside (NFS4ERR_ROFS, EROFS here).
        fh_and_stat(&res).ex()
    }

    async fn create_obj(
        &self,
        parent: INodeNo,
        name: &str,
        t: Createtype4,
        mode: u32,
    ) -> R<(NfsFh4, Stat)> {
        let dir = self.fh(parent)?;
        let res = self
            .c
            .compound(
                CompoundBuilder::new()
                    .putfh(&dir)
                    .op(NfsArgop4::Create(CreateArgs {
                        objtype: t,
                        objname: Opaque::from(name),
                        createattrs: SetAttrs::mode(mode & 0o7777).to_fattr(),
                    }))
                    .getfh()
                    .getattr(STAT_ATTRS),
            )
            .await
            .ex()?;
        fh_and_stat(&res).ex()
    }

    async fn setattr(
        &self,
        ino: INodeNo,
        fh: Option<FileHandle>,
        a: SetAttrs,
    ) -> R<fuser::FileAttr> {
        let nfh = self.fh(ino)?;
        let h = match fh {
            Some(fh) => self.file(fh).ok(),
            None => None,
        };
        if a.size.is_some() {
            // A truncation must not be undone by writes still on their way.
            for h in self.handles_of(ino.0) {
                h.wb.settle(0, u64::MAX).await;
            }
        }
        let stateid = h.as_ref().map(|h| h.open.stateid);
        if a != SetAttrs::default() {
            self.c.setattr(&nfh, &a, stateid).await.ex()?;
        }
        if let Some(size) = a.size {
            self.nodes.update(ino.0, |n| {
                n.local_end = n.local_end.map(|e| e.min(size)).filter(|&e| e > size);
            });
        }
        let st = self.c.getattr(&nfh).await.ex()?;
        if a.size.is_some() {
            self.nodes.update(ino.0, |n| n.change = Some(st.change));
        }
        Ok(self.attr(ino.0, &st))
    }

    async fn open(
        &self,
        ino: INodeNo,
        flags: i32,
        auth: client::proto::rpc::Auth,
    ) -> R<(u64, FopenFlags)> {
        let fh = self.fh(ino)?;
        let acc = match flags & libc::O_ACCMODE {
            libc::O_RDONLY => OPEN4_SHARE_ACCESS_READ,
            libc::O_WRONLY if !self.opts.writeback_cache => OPEN4_SHARE_ACCESS_WRITE,
            // The writeback cache reads pages before partial writes to them.
            _ => OPEN4_SHARE_ACCESS_BOTH,
        };
        let open = self.c.open_fh(&fh, acc).await.ex()?;
        // Reached through a name the kernel still caches, a file another client removed
        // opens by handle (the server keeps it until reaped). Not opened here, it has no name
        // left: ESTALE makes the kernel look the name up again (LOOKUP_REVAL), as the NFS
        // client's close-to-open revalidation would, and the open then fails with ENOENT.
        if open.stat.nlink == 0 && self.handles_of(ino.0).is_empty() {
            if let Err(e) = self.c.close(&open).await {
                tracing::debug!("CLOSE of a removed file: {e}");
            }
            return Err(Errno::ESTALE);
        }
        if self.kernel_size_stale(ino.0, &open.stat, flags) {
            if let Err(e) = self.c.close(&open).await {
                tracing::debug!("CLOSE before the kernel looks the name up again: {e}");
            }
            return Err(Errno::ESTALE);
        }
        let flags_out = self.revalidate(ino.0, &open.stat, flags);
        let id = self.new_fh();
        self.add_handle(id, ino.0, open, auth, flags);
        Ok((id, flags_out))
    }

    /// Whether the size the kernel holds for `ino` is not the one this OPEN found, so that
    /// the open is to fail with ESTALE: the kernel then looks the name up again
    /// (LOOKUP_REVAL), which gives it the size, and opens again. Invalidating its attributes
    /// is not enough: read(2) asks for them again past the size it holds, but sendfile(2)
    /// and splice(2) read the page cache up to that size and never ask (`filemap_splice_read`;
    /// busybox cat uses sendfile). The kernel holds the attributes of the LOOKUP or
    /// READDIRPLUS that found the name for `attr_ttl`, and they may be from before another
    /// client's writes: a READDIR lists a file write-delegated to another client at the size
    /// the server has, which lags its holder's. fuse_mount's twoclient case failed so in 13
    /// of 20 runs ('B reads a file in A's new directory': a 2-byte file the kernel client had
    /// just created, listed at size 0 and read by cat 10 ms later, empty although the OPEN
    /// said 2 bytes), and only invalidating the attributes still failed with sendfile.
    ///
    /// Once per open(2): the retry that follows gets no second ESTALE (the VFS retries only
    /// once, and would fail the open), even if another client changed the file again
    /// meanwhile. Not with O_TRUNC (the size goes anyway), nor with the writeback cache (the
    /// kernel keeps its own size then, whatever a LOOKUP says).
    fn kernel_size_stale(&self, ino: u64, st: &Stat, flags: i32) -> bool {
        if self.opts.writeback_cache || flags & libc::O_TRUNC != 0 {
            return false;
        }
        let mut stale = false;
        self.nodes.update(ino, |n| {
            let size = st.size.max(n.local_end.unwrap_or(0));
            let retried = n
                .relooked
                .take()
                .is_some_and(|t| t.elapsed() < RELOOK_WITHIN);
            if !retried && n.kernel_attrs.is_some_and(|k| k.size != size) {
                n.relooked = Some(Instant::now());
                stale = true;
            }
        });
        stale
    }

    /// Close-to-open: the kernel keeps its cached pages only if the file did not change
    /// since this client last opened or flushed it, and its cached attributes only if they
    /// are the ones this OPEN found (its size is right by now, `kernel_size_stale`); else
    /// they are dropped, and asked for again when next needed.
    fn revalidate(&self, ino: u64, st: &Stat, flags: i32) -> FopenFlags {
        let node = self.nodes.get(ino);
        let seen = node.as_ref().and_then(|n| n.change);
        let held = node.as_ref().and_then(|n| n.kernel_attrs).map(|k| k.change);
        self.nodes.update(ino, |n| n.change = Some(st.change));
        let mut out = FopenFlags::empty();
        if flags & libc::O_DIRECT != 0 {
            out |= FopenFlags::FOPEN_DIRECT_IO;
        } else if seen == Some(st.change) {
            out |= FopenFlags::FOPEN_KEEP_CACHE;
        }
        let changed_since_open = seen.is_some_and(|c| c != st.change);
        if changed_since_open || held != Some(st.change) {
            if let Some(n) = self.notifier.get() {
                // Offset -1: attributes only (the pages go because KEEP_CACHE is not set).
                if let Err(e) = n.inval_inode(INodeNo(ino), -1, 0) {
                    tracing::debug!("inval_inode: {e}");
                }
            }
        }
        out
    }

    fn add_handle(
        &self,
        id: u64,
        ino: u64,
        open: OpenFile,
        auth: client::proto::rpc::Auth,
        flags: i32,
    ) {
        let h = Arc::new(Handle {
            ino,
            open,
            auth,
            wb: WriteBehind::default(),
            kept: Mutex::new(Vec::new()),
            sync: flags & (libc::O_SYNC | libc::O_DSYNC) != 0,
            direct: flags & libc::O_DIRECT != 0,
            writes: AtomicU64::new(0),
            committed: AtomicU64::new(0),
        });
        self.files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, h);
    }

    /// Writes all of `data` (the driver may take it in pieces).
    async fn write_through(
        &self,
        h: &Handle,
        offset: u64,
        data: Arc<Vec<u8>>,
    ) -> client::Result<()> {
        let mut done = 0usize;
        while done < data.len() {
            let off = offset + done as u64;
            let r = self
                .c
                .write(&h.open, off, &data[done..], StableHow4::Unstable4)
                .await?;
            if r.count == 0 {
                return Err(Error::Protocol("WRITE wrote nothing".into()));
            }
            let n = r.count as usize;
            if !self.pnfs && r.committed != StableHow4::FileSync4 {
                let piece = if done == 0 && n == data.len() {
                    data.clone()
                } else {
                    Arc::new(data[done..done + n].to_vec())
                };
                h.kept
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((off, piece, r.verifier));
            }
            done += n;
        }
        Ok(())
    }

    /// Every byte written through `h` stable on the server: on every mirror that took it
    /// (the layout driver commits on each data server, rewrites what one cannot vouch for,
    /// and LAYOUTCOMMITs), or through the MDS with a COMMIT whose verifier matches every
    /// kept WRITE's (else they are written again, FILE_SYNC).
    async fn commit_handle(&self, h: &Handle) -> client::Result<()> {
        h.wb.settle(0, u64::MAX).await;
        // Writes finishing after this count are left for the next commit.
        let done = h.writes.load(Ordering::Acquire);
        if done == h.committed.load(Ordering::Acquire) {
            return Ok(());
        }
        self.commit_writes(h).await?;
        h.committed.fetch_max(done, Ordering::AcqRel);
        Ok(())
    }

    async fn commit_writes(&self, h: &Handle) -> client::Result<()> {
        if self.pnfs {
            self.c.commit_file(&h.open).await?;
            return Ok(());
        }
        let kept = std::mem::take(&mut *h.kept.lock().unwrap_or_else(|p| p.into_inner()));
        if kept.is_empty() {
            return Ok(());
        }
        let verf = self.c.commit(&h.open.fh, 0, 0).await?;
        if kept.iter().all(|(_, _, v)| *v == verf) {
            return Ok(());
        }
        tracing::warn!("write verifier changed (server restarted): writing again");
        for (off, data, _) in kept {
            self.c
                .write_all(&h.open, off, &data, StableHow4::FileSync4)
                .await?;
        }
        Ok(())
    }

    /// fsync and close: every open of the node committed (the kernel may have sent a file's
    /// writes through any of them), and failures kept by write-behind reported.
    async fn sync_node(&self, ino: u64) -> R<()> {
        let mut first: Option<Errno> = None;
        let handles = self.handles_of(ino);
        let wrote = handles.iter().any(|h| h.dirty());
        for h in handles {
            let r = client::as_caller(h.auth.clone(), self.commit_handle(&h)).await;
            if let Err(e) = r {
                tracing::warn!("commit: {e}");
                first.get_or_insert(errno(&e));
            }
            if let Some(e) = h.wb.take_error() {
                first.get_or_insert(Errno::from_i32(e));
            }
        }
        if let Some(e) = first {
            return Err(e);
        }
        if !wrote {
            return Ok(());
        }
        // Our writes are on the server now: its size is the truth again, and its change
        // attribute is what our next open compares against.
        if let Some(fh) = self.nodes.fh(ino) {
            if let Ok(st) = self.c.getattr(&fh).await {
                self.nodes.update(ino, |n| {
                    n.change = Some(st.change);
                    n.local_end = None;
                });
            }
        }
        Ok(())
    }

    async fn release(&self, fh: FileHandle, flock_owner: Option<LockOwner>) -> R<()> {
        let h = self.file(fh)?;
        let mut r = client::as_caller(h.auth.clone(), self.commit_handle(&h))
            .await
            .ex();
        if let Some(o) = flock_owner {
            self.locks.release_owner(&self.c, h.ino, o.0, &h.open).await;
        }
        self.locks.release_open(&self.c, fh.0, &h.open).await;
        let closed = client::as_caller(h.auth.clone(), self.c.close(&h.open)).await;
        self.files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh.0);
        if let Err(e) = closed {
            tracing::debug!("CLOSE: {e}");
            r = r.and(Err(errno(&e)));
        }
        r
    }

    async fn read(&self, fh: FileHandle, offset: u64, size: u32) -> R<Vec<u8>> {
        let h = self.file(fh)?;
        h.wb.settle(offset, u64::from(size)).await;
        let (data, _) = self.c.read_full(&h.open, offset, size).await.ex()?;
        Ok(data)
    }

    async fn statfs(&self) -> R<(u64, u64, u64, u64, u64, u32)> {
        let a = self
            .c
            .getattr_raw(
                self.c.root(),
                &[
                    FATTR4_SPACE_TOTAL,
                    FATTR4_SPACE_FREE,
                    FATTR4_SPACE_AVAIL,
                    FATTR4_FILES_TOTAL,
                    FATTR4_FILES_FREE,
                    FATTR4_MAXNAME,
                ],
            )
            .await
            .ex()?;
        const BS: u64 = 4096;
        Ok((
            a.space_total.unwrap_or(0) / BS,
            a.space_free.unwrap_or(0) / BS,
            a.space_avail.unwrap_or(0) / BS,
            a.files_total.unwrap_or(0),
            a.files_free.unwrap_or(0),
            a.maxname.unwrap_or(255),
        ))
    }

    async fn access(&self, ino: INodeNo, mask: i32) -> R<()> {
        let fh = self.fh(ino)?;
        let mut want = 0;
        if mask & libc::R_OK != 0 {
            want |= ACCESS4_READ;
        }
        if mask & libc::W_OK != 0 {
            want |= ACCESS4_MODIFY | ACCESS4_EXTEND;
        }
        if mask & libc::X_OK != 0 {
            want |= ACCESS4_EXECUTE | ACCESS4_LOOKUP;
        }
        if want == 0 {
            return self.c.getattr(&fh).await.ex().map(|_| ());
        }
        let res = self
            .c
            .compound(
                CompoundBuilder::new()
                    .putfh(&fh)
                    .op(NfsArgop4::Access(AccessArgs { access: want })),
            )
            .await
            .ex()?;
        let got = res
            .iter()
            .find_map(|r| match r {
                NfsResop4::Access(AccessRes::Ok(ok)) => Some(ok.access),
                _ => None,
            })
            .ok_or(Errno::EIO)?;
        // X_OK is LOOKUP on a directory, EXECUTE on a file: either granted will do.
        let need_x = mask & libc::X_OK != 0;
        let x_ok = got & (ACCESS4_EXECUTE | ACCESS4_LOOKUP) != 0;
        let rest = want & !(ACCESS4_EXECUTE | ACCESS4_LOOKUP);
        if got & rest == rest && (!need_x || x_ok) {
            Ok(())
        } else {
            Err(Errno::EACCES)
        }
    }
}

/// getxattr's and listxattr's answer for a buffer of `size` bytes (`xattr::fit`).
fn answer_xattr(r: R<Vec<u8>>, size: u32, reply: ReplyXattr) {
    match r.and_then(|data| match xattr::fit(&data, size)? {
        xattr::Sized::Size(n) => Ok(Err(n)),
        xattr::Sized::Data(_) => Ok(Ok(data)),
    }) {
        Ok(Ok(data)) => reply.data(&data),
        Ok(Err(n)) => reply.size(n),
        Err(e) => reply.error(e),
    }
}

impl CfsFuse {
    /// Runs `f` as the caller of `req`.
    fn run<F>(&self, req: &Request, f: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let auth = self.0.creds.auth(req.uid(), req.gid(), req.pid());
        self.0.rt.spawn(client::as_caller(auth, f));
    }

    fn auth(&self, req: &Request) -> client::proto::rpc::Auth {
        self.0.creds.auth(req.uid(), req.gid(), req.pid())
    }
}

impl fuser::Filesystem for CfsFuse {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        use fuser::InitFlags as F;
        let want = F::FUSE_POSIX_LOCKS
            | F::FUSE_FLOCK_LOCKS
            | F::FUSE_ASYNC_READ
            | F::FUSE_BIG_WRITES
            | F::FUSE_DO_READDIRPLUS
            | F::FUSE_READDIRPLUS_AUTO
            | F::FUSE_PARALLEL_DIROPS
            | F::FUSE_ASYNC_DIO
            | F::FUSE_MAX_PAGES
            // The server clears set-id bits on a write or truncation by another user
            // (`file_remove_privs`); without this the kernel would send a chmod as that
            // user first, which only the owner may do.
            | F::FUSE_HANDLE_KILLPRIV_V2;
        let want = if self.0.opts.writeback_cache {
            want | F::FUSE_WRITEBACK_CACHE
        } else {
            want
        };
        if let Err(missing) = config.add_capabilities(want & config.capabilities()) {
            tracing::warn!(?missing, "kernel lacks FUSE capabilities");
        }
        let io = self.0.opts.max_io;
        if let Err(n) = config.set_max_write(io) {
            let _ = config.set_max_write(n);
        }
        if let Err(n) = config.set_max_readahead(io) {
            let _ = config.set_max_readahead(n);
        }
        // Readahead and writeback requests the kernel keeps in flight.
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let fs = self.0.clone();
        let name = name_of(name);
        self.run(req, async move {
            let r = match name {
                Ok(n) => fs.lookup(parent, &n).await,
                Err(e) => Err(e),
            };
            match r {
                Ok((fh, st)) => fs.entry(&fh, &st, reply),
                Err(e) => reply.error(e),
            }
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.0.nodes.forget(ino.0, nlookup);
    }

    fn getattr(&self, req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let fs = self.0.clone();
        self.run(req, async move {
            match fs.getattr(ino).await {
                Ok(a) => reply.attr(&fs.opts.attr_ttl, &a),
                Err(e) => reply.error(e),
            }
        });
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let fs = self.0.clone();
        let a = set_attrs(mode, uid, gid, size, atime, mtime);
        self.run(req, async move {
            match fs.setattr(ino, fh, a).await {
                Ok(a) => reply.attr(&fs.opts.attr_ttl, &a),
                Err(e) => reply.error(e),
            }
        });
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        let fs = self.0.clone();
        self.run(req, async move {
            let r = match fs.fh(ino) {
                Ok(fh) => fs.c.readlink(&fh).await.ex(),
                Err(e) => Err(e),
            };
            match r {
                Ok(t) => reply.data(t.as_bytes()),
                Err(e) => reply.error(e),
            }
        });
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let fs = self.0.clone();
        let name = name_of(name);
        self.run(req, async move {
            let spec = Specdata4 {
                specdata1: libc::major(rdev.into()),
                specdata2: libc::minor(rdev.into()),
            };
            let t = match mode & libc::S_IFMT {
                libc::S_IFIFO => Some(Createtype4::Fifo),
                libc::S_IFSOCK => Some(Createtype4::Sock),
                libc::S_IFCHR => Some(Createtype4::Chr(spec)),
                libc::S_IFBLK => Some(Createtype4::Blk(spec)),
                _ => None,
            };
            let r = match (name, t) {
                (Err(e), _) => Err(e),
                (Ok(n), Some(t)) => fs.create_obj(parent, &n, t, mode).await,
                // A regular file: OPEN creates it, CLOSE at once.
                (Ok(n), None) => match fs.create_file(parent, &n, mode, libc::O_EXCL).await {
                    Ok(open) => match fs.c.close(&open).await {
                        Ok(()) => Ok((open.fh, open.stat)),
                        Err(e) => Err(errno(&e)),
                    },
                    Err(e) => Err(e),
                },
            };
            match r {
                Ok((fh, st)) => fs.entry(&fh, &st, reply),
                Err(e) => reply.error(e),
            }
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let fs = self.0.clone();
        let name = name_of(name);
        self.run(req, async move {
            let r = match name {
                Ok(n) => fs.create_obj(parent, &n, Createtype4::Dir, mode).await,
                Err(e) => Err(e),
            };
            match r {
                Ok((fh, st)) => fs.entry(&fh, &st, reply),
                Err(e) => reply.error(e),
            }
        });
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(req, parent, name, reply);
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(req, parent, name, reply);
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let fs = self.0.clone();
        let name = name_of(link_name);
        let target = target.to_str().map(str::to_owned);
        self.run(req, async move {
            let r = match (name, target) {
                (Ok(n), Some(t)) => {
                    fs.create_obj(
                        parent,
                        &n,
                        Createtype4::Lnk(Opaque::from(t.as_str())),
                        0o777,
                    )
                    .await
                }
                (Err(e), _) => Err(e),
                (_, None) => Err(Errno::EINVAL),
            };
            match r {
                Ok((fh, st)) => fs.entry(&fh, &st, reply),
                Err(e) => reply.error(e),
            }
        });
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        let fs = self.0.clone();
        let (from, to) = (name_of(name), name_of(newname));
        let plain = flags.bits() == 0;
        self.run(req, async move {
            let r = async {
                // RENAME_NOREPLACE and RENAME_EXCHANGE have no NFSv4 counterpart; callers
                // fall back to rename(2) on EINVAL.
                if !plain {
                    return Err(Errno::EINVAL);
                }
                let (from, to) = (from?, to?);
                let (a, b) = (fs.fh(parent)?, fs.fh(newparent)?);
                fs.c.rename(&a, &from, &b, &to).await.ex()
            }
            .await;
            match r {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let fs = self.0.clone();
        let name = name_of(newname);
        self.run(req, async move {
            let r = async {
                let name = name?;
                let (file, dir) = (fs.fh(ino)?, fs.fh(newparent)?);
                fs.c.link(&file, &dir, &name).await.ex()?;
                let st = fs.c.getattr(&file).await.ex()?;
                Ok((file, st))
            }
            .await;
            match r {
                Ok((fh, st)) => fs.entry(&fh, &st, reply),
                Err(e) => reply.error(e),
            }
        });
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let fs = self.0.clone();
        let auth = self.auth(req);
        self.run(req, async move {
            match fs.open(ino, flags.0, auth).await {
                Ok((id, f)) => reply.opened(FileHandle(id), f),
                Err(e) => reply.error(e),
            }
        });
    }

    fn read(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let fs = self.0.clone();
        self.run(req, async move {
            match fs.read(fh, offset, size).await {
                Ok(d) => reply.data(&d),
                Err(e) => reply.error(e),
            }
        });
    }

    fn write(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let fs = self.0.clone();
        let data = Arc::new(data.to_vec());
        self.run(req, async move {
            let h = match fs.file(fh) {
                Ok(h) => h,
                Err(e) => return reply.error(e),
            };
            if let Some(e) = h.wb.take_error() {
                return reply.error(Errno::from_i32(e));
            }
            let len = data.len();
            let end = offset + len as u64;
            fs.nodes.update(h.ino, |n| {
                n.local_end = Some(n.local_end.unwrap_or(0).max(end));
                // The kernel grows its size with the write (`fuse_write_update_attr`).
                if let Some(k) = &mut n.kernel_attrs {
                    k.size = k.size.max(end);
                }
            });
            let auth = h.auth.clone();
            if h.direct || h.sync {
                // O_DIRECT and O_SYNC: the bytes are on the server (and for O_SYNC stable)
                // before write(2) returns.
                let r = client::as_caller(auth, async {
                    fs.write_through(&h, offset, data).await?;
                    h.writes.fetch_add(1, Ordering::AcqRel);
                    if h.sync {
                        fs.commit_handle(&h).await?;
                    }
                    Ok(())
                })
                .await;
                return match r {
                    Ok(()) => reply.written(len as u32),
                    Err(e) => reply.error(errno(&e)),
                };
            }
            let t = h.wb.admit(offset, len).await;
            reply.written(len as u32);
            let r = client::as_caller(auth, fs.write_through(&h, offset, data)).await;
            // Counted even when it failed: the commit that follows reports the failure.
            h.writes.fetch_add(1, Ordering::AcqRel);
            h.wb.finish(
                t,
                r.map_err(|e| {
                    tracing::warn!(offset, "write: {e}");
                    i32::from(errno(&e))
                }),
            );
        });
    }

    fn flush(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let fs = self.0.clone();
        self.run(req, async move {
            // close(2) drops the process's fcntl locks on the file (POSIX), whichever
            // descriptor they were taken through.
            if let Ok(h) = fs.file(fh) {
                fs.locks
                    .release_owner(&fs.c, ino.0, lock_owner.0, &h.open)
                    .await;
            }
            match fs.sync_node(ino.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }

    fn release(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let fs = self.0.clone();
        self.run(req, async move {
            match fs.release(fh, lock_owner).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }

    fn fsync(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let fs = self.0.clone();
        self.run(req, async move {
            match fs.sync_node(ino.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.0.fh(ino) {
            Ok(fh) => {
                let id = self.0.new_fh();
                self.0
                    .dirs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id, Arc::new(DirHandle::new(fh)));
                reply.opened(FileHandle(id), FopenFlags::empty());
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let fs = self.0.clone();
        self.run(req, async move {
            let Some(d) = fs.dir(fh) else {
                return reply.error(Errno::EBADF);
            };
            if offset < dir::DOT && reply.add(ino, dir::DOT, fuser::FileType::Directory, ".") {
                return reply.ok();
            }
            if offset < dir::DOTDOT && reply.add(ino, dir::DOTDOT, fuser::FileType::Directory, "..")
            {
                return reply.ok();
            }
            let mut cookie = if offset <= dir::DOTDOT { 0 } else { offset };
            loop {
                let page = match d.after(&fs.c, cookie).await {
                    Ok(p) => p,
                    Err(e) => return reply.error(errno(&e)),
                };
                if page.is_empty() {
                    return reply.ok();
                }
                for e in page {
                    let ino = INodeNo(fs.nodes.id_of(e.stat.fsid, e.stat.fileid));
                    if reply.add(ino, e.cookie, crate::attr::kind(e.stat.ftype), &e.name) {
                        return reply.ok();
                    }
                    cookie = e.cookie;
                }
            }
        });
    }

    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let fs = self.0.clone();
        self.run(req, async move {
            let Some(d) = fs.dir(fh) else {
                return reply.error(Errno::EBADF);
            };
            let ttl = fs.opts.attr_ttl;
            let dot = match fs.getattr(ino).await {
                Ok(a) => a,
                Err(e) => return reply.error(e),
            };
            if offset < dir::DOT && reply.add(ino, dir::DOT, ".", &ttl, &dot, Generation(0)) {
                return reply.ok();
            }
            if offset < dir::DOTDOT && reply.add(ino, dir::DOTDOT, "..", &ttl, &dot, Generation(0))
            {
                return reply.ok();
            }
            let mut cookie = if offset <= dir::DOTDOT { 0 } else { offset };
            loop {
                let page = match d.after(&fs.c, cookie).await {
                    Ok(p) => p,
                    Err(e) => return reply.error(errno(&e)),
                };
                if page.is_empty() {
                    return reply.ok();
                }
                for e in page {
                    let Some(efh) = e.fh.as_ref() else {
                        return reply.error(Errno::EIO);
                    };
                    // Counted before it is handed over, so that a snapshot's object keeps the
                    // id it is given (`Nodes::id_of`).
                    let (eino, held) = fs.nodes.remember_keeping(efh, &e.stat);
                    let a = fs.attr(eino, &e.stat);
                    if reply.add(INodeNo(eino), e.cookie, &e.name, &ttl, &a, Generation(0)) {
                        // Not handed over (the buffer is full): not counted, and the kernel
                        // keeps what it had.
                        fs.nodes.forget(eino, 1);
                        fs.nodes.update(eino, |n| n.kernel_attrs = held);
                        return reply.ok();
                    }
                    cookie = e.cookie;
                }
            }
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.0
            .dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _d: bool,
        reply: ReplyEmpty,
    ) {
        // Every namespace change was durable on the server before it was answered.
        reply.ok();
    }

    fn statfs(&self, req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let fs = self.0.clone();
        self.run(req, async move {
            match fs.statfs().await {
                Ok((blocks, bfree, bavail, files, ffree, namelen)) => {
                    reply.statfs(blocks, bfree, bavail, files, ffree, 4096, namelen, 4096)
                }
                Err(e) => reply.error(e),
            }
        });
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let fs = self.0.clone();
        let args =
            xattr::wire_name(name).and_then(|n| Ok((n.to_vec(), xattr::how(flags)?, fs.fh(ino)?)));
        let value = value.to_vec();
        self.run(req, async move {
            let r = match args {
                Ok((name, how, fh)) => fs.c.setxattr(&fh, &name, &value, how).await.ex(),
                Err(e) => Err(e),
            };
            match r {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let fs = self.0.clone();
        let args = xattr::wire_name(name).and_then(|n| Ok((n.to_vec(), fs.fh(ino)?)));
        self.run(req, async move {
            let r = match args {
                Ok((name, fh)) => fs.c.getxattr(&fh, &name).await.ex(),
                Err(e) => Err(e),
            };
            answer_xattr(r, size, reply);
        });
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let fs = self.0.clone();
        self.run(req, async move {
            let r = match fs.fh(ino) {
                Ok(fh) => fs.c.listxattrs(&fh).await.ex(),
                Err(e) => Err(e),
            };
            answer_xattr(r.map(|names| xattr::list_buffer(&names)), size, reply);
        });
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let fs = self.0.clone();
        let args = xattr::wire_name(name).and_then(|n| Ok((n.to_vec(), fs.fh(ino)?)));
        self.run(req, async move {
            let r = match args {
                Ok((name, fh)) => fs.c.removexattr(&fh, &name).await.ex(),
                Err(e) => Err(e),
            };
            match r {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: fuser::AccessFlags, reply: ReplyEmpty) {
        let fs = self.0.clone();
        let mask = mask.bits();
        self.run(req, async move {
            match fs.access(ino, mask).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let fs = self.0.clone();
        let name = name_of(name);
        let auth = self.auth(req);
        self.run(req, async move {
            let r = match name {
                Ok(n) => fs.create_file(parent, &n, mode, flags).await,
                Err(e) => Err(e),
            };
            match r {
                Ok(open) => {
                    let st = open.stat.clone();
                    let ino = fs.nodes.remember(&open.fh, &st);
                    fs.nodes.update(ino, |n| n.change = Some(st.change));
                    let id = fs.new_fh();
                    fs.add_handle(id, ino, open, auth, flags);
                    let a = fs.attr(ino, &st);
                    let mut out = FopenFlags::empty();
                    if flags & libc::O_DIRECT != 0 {
                        out |= FopenFlags::FOPEN_DIRECT_IO;
                    }
                    reply.created(&fs.opts.entry_ttl, &a, Generation(0), FileHandle(id), out);
                }
                Err(e) => reply.error(e),
            }
        });
    }

    fn getlk(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        reply: ReplyLock,
    ) {
        let fs = self.0.clone();
        self.run(req, async move {
            let r = async {
                let nfh = fs.fh(ino)?;
                let kind = Kind::from_fcntl(typ).ok_or(Errno::EINVAL)?;
                fs.locks
                    .test(&fs.c, &nfh, lock_owner.0, kind, locks::range(start, end))
                    .await
                    .ex()
            }
            .await;
            match r {
                // The holder's range and type from LOCKT's denial; no pid (the holder may be
                // another client; the Linux NFS client reports 0 too).
                Ok(Some(c)) => reply.locked(c.start, c.end, c.typ, 0),
                Ok(None) => reply.locked(start, end, libc::F_UNLCK, pid),
                Err(e) => reply.error(e),
            }
        });
    }

    fn setlk(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        _pid: u32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        let fs = self.0.clone();
        self.run(req, async move {
            let r = async {
                let h = fs.file(fh)?;
                let kind = Kind::from_fcntl(typ).ok_or(Errno::EINVAL)?;
                fs.locks
                    .set(
                        &fs.c,
                        ino.0,
                        fh.0,
                        &h.open,
                        lock_owner.0,
                        kind,
                        locks::range(start, end),
                        sleep,
                    )
                    .await
                    .ex()
            }
            .await;
            match r {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }
}

impl CfsFuse {
    fn remove(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let fs = self.0.clone();
        let name = name_of(name);
        self.run(req, async move {
            let r = async {
                let name = name?;
                let dir = fs.fh(parent)?;
                fs.c.remove(&dir, &name).await.ex()
            }
            .await;
            match r {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }
}

impl Fs {
    fn dir(&self, fh: FileHandle) -> Option<Arc<DirHandle>> {
        self.dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh.0)
            .cloned()
    }

    /// OPEN with create.
    async fn create_file(&self, parent: INodeNo, name: &str, mode: u32, flags: i32) -> R<OpenFile> {
        let dir = self.fh(parent)?;
        let attrs = SetAttrs::mode(mode & 0o7777);
        let how = if flags & libc::O_EXCL != 0 {
            CreateMode::Guarded(attrs)
        } else {
            CreateMode::Unchecked(attrs)
        };
        let acc = match flags & libc::O_ACCMODE {
            libc::O_RDONLY => OPEN4_SHARE_ACCESS_READ,
            libc::O_WRONLY if !self.opts.writeback_cache => OPEN4_SHARE_ACCESS_WRITE,
            _ => OPEN4_SHARE_ACCESS_BOTH,
        };
        self.c.open(&dir, name, acc, Some(how)).await.ex()
    }
}
