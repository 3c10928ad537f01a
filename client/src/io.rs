//! Opening, reading, writing, committing and closing files.
use crate::attrs::{SetAttrs, Stat, STAT_ATTRS};
use crate::client::{component, Client};
use crate::compound::{find, last_attrs, last_fh, CompoundBuilder};
use crate::error::{Error, Result};
use proto::nfs4::*;
use proto::xdr::Opaque;
use std::sync::Mutex;

/// How OPEN creates a file that does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateMode {
    /// Create, or open (and apply the attributes, e.g. `size: Some(0)` to truncate) if it exists.
    Unchecked(SetAttrs),
    /// Create; NFS4ERR_EXIST if it exists.
    Guarded(SetAttrs),
    /// EXCLUSIVE4_1: create exactly once per verifier (a retransmission with the same verifier
    /// succeeds, another verifier gets NFS4ERR_EXIST), with these attributes.
    Exclusive(Verifier4, SetAttrs),
}

/// An open file: its handle, open stateid, and the lock stateid once it holds locks.
#[derive(Debug)]
pub struct OpenFile {
    pub fh: NfsFh4,
    pub stateid: Stateid4,
    /// Attributes right after the OPEN.
    pub stat: Stat,
    /// OPEN4_SHARE_ACCESS_* granted.
    pub access: u32,
    pub owner: Vec<u8>,
    pub(crate) lock: Mutex<Option<Stateid4>>,
    /// Layouts held for this open (pNFS).
    pub(crate) pnfs: crate::pnfs::FileLayouts,
}

impl OpenFile {
    pub fn lock_stateid(&self) -> Option<Stateid4> {
        self.lock.lock().ok().and_then(|g| *g)
    }

    /// The stateid for READ and WRITE: the lock stateid once the file is locked through this
    /// open, so the server checks the I/O against the locks of the owner that holds them
    /// (with the open stateid our own lock would conflict on a mandatory-locking server).
    pub fn io_stateid(&self) -> Stateid4 {
        self.lock_stateid().unwrap_or(self.stateid)
    }
}

/// A WRITE's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteResult {
    pub count: u32,
    pub committed: StableHow4,
    pub verifier: Verifier4,
}

impl Client {
    /// OPEN `name` in `dir` with `access` (OPEN4_SHARE_ACCESS_READ/WRITE/BOTH), creating it
    /// if `create` says so. Delegations are declined (WANT_NO_DELEG).
    pub async fn open(
        &self,
        dir: &NfsFh4,
        name: &str,
        access: u32,
        create: Option<CreateMode>,
    ) -> Result<OpenFile> {
        let openhow = match create {
            None => Openflag4::NoCreate,
            Some(CreateMode::Unchecked(a)) => {
                Openflag4::Create(Createhow4::Unchecked(a.to_fattr()))
            }
            Some(CreateMode::Guarded(a)) => Openflag4::Create(Createhow4::Guarded(a.to_fattr())),
            Some(CreateMode::Exclusive(v, a)) => {
                Openflag4::Create(Createhow4::Exclusive41(Creatverfattr {
                    cva_verf: v,
                    cva_attrs: a.to_fattr(),
                }))
            }
        };
        self.do_open(
            dir,
            access,
            openhow,
            OpenClaim4::Null(component(name)),
            self.new_owner("open"),
        )
        .await
    }

    /// OPEN of `path` (inside the export).
    pub async fn open_path(
        &self,
        path: &str,
        access: u32,
        create: Option<CreateMode>,
    ) -> Result<OpenFile> {
        let (dir, name) = self.lookup_parent(path).await?;
        self.open(&dir, name, access, create).await
    }

    /// OPEN by file handle (CLAIM_FH).
    pub async fn open_fh(&self, fh: &NfsFh4, access: u32) -> Result<OpenFile> {
        self.do_open(
            fh,
            access,
            Openflag4::NoCreate,
            OpenClaim4::Fh,
            self.new_owner("open"),
        )
        .await
    }

    /// Reclaims an open held before a server restart (CLAIM_PREVIOUS, same owner and access),
    /// during the grace period after [`Client::recover`].
    pub async fn reclaim_open(&self, old: &OpenFile) -> Result<OpenFile> {
        let f = self
            .do_open(
                &old.fh,
                old.access,
                Openflag4::NoCreate,
                OpenClaim4::Previous(OpenDelegationType4::None),
                old.owner.clone(),
            )
            .await?;
        Ok(f)
    }

    async fn do_open(
        &self,
        fh: &NfsFh4,
        access: u32,
        openhow: Openflag4,
        claim: OpenClaim4,
        owner: Vec<u8>,
    ) -> Result<OpenFile> {
        let want = if matches!(claim, OpenClaim4::Previous(_)) {
            0
        } else {
            OPEN4_SHARE_ACCESS_WANT_NO_DELEG
        };
        let res = self
            .compound(
                CompoundBuilder::new()
                    .putfh(fh)
                    .op(NfsArgop4::Open(OpenArgs {
                        seqid: 0,
                        share_access: access | want,
                        share_deny: OPEN4_SHARE_DENY_NONE,
                        owner: StateOwner4 {
                            clientid: self.clientid(),
                            owner: Opaque(owner.clone()),
                        },
                        openhow,
                        claim,
                    }))
                    .getfh()
                    .getattr(STAT_ATTRS),
            )
            .await?;
        let ok = find(&res, "OPEN", |r| match r {
            NfsResop4::Open(OpenRes::Ok(ok)) => Some(ok.clone()),
            _ => None,
        })?;
        let file = OpenFile {
            fh: last_fh(&res)?,
            stateid: ok.stateid,
            stat: Stat::from(&last_attrs(&res)?),
            access,
            owner,
            lock: Mutex::new(None),
            pnfs: Default::default(),
        };
        // We asked for no delegation; one granted anyway is given straight back, or a later
        // conflicting OPEN (from anyone) waits for a recall that may find us gone.
        let deleg = match &ok.delegation {
            OpenDelegation4::Read(d) | OpenDelegation4::ReadAttrsDeleg(d) => Some(d.stateid),
            OpenDelegation4::Write(d) | OpenDelegation4::WriteAttrsDeleg(d) => Some(d.stateid),
            _ => None,
        };
        if let Some(stateid) = deleg {
            tracing::debug!("returning a delegation we did not ask for");
            let r = self
                .compound(
                    CompoundBuilder::new()
                        .putfh(&file.fh)
                        .op(NfsArgop4::Delegreturn(DelegreturnArgs {
                            deleg_stateid: stateid,
                        })),
                )
                .await;
            if let Err(e) = r {
                tracing::debug!("DELEGRETURN: {e}");
            }
        }
        Ok(file)
    }

    /// One READ. Returns the data and the EOF flag; the data may be shorter than `count`.
    /// With pNFS the data comes from a data server (or the MDS for ranges without a layout).
    pub async fn read(&self, f: &OpenFile, offset: u64, count: u32) -> Result<(Vec<u8>, bool)> {
        if let Some(d) = crate::pnfs::for_file(self, f).await {
            return d.read(self, f, offset, count).await;
        }
        self.mds_read(f, offset, count).await
    }

    /// One READ sent to the MDS.
    pub(crate) async fn mds_read(
        &self,
        f: &OpenFile,
        offset: u64,
        count: u32,
    ) -> Result<(Vec<u8>, bool)> {
        let res = self
            .compound(
                CompoundBuilder::new()
                    .putfh(&f.fh)
                    .op(NfsArgop4::Read(ReadArgs {
                        stateid: f.io_stateid(),
                        offset,
                        count: count.min(self.max_read()),
                    })),
            )
            .await?;
        let mut res = res;
        match res.pop() {
            Some(NfsResop4::Read(ReadRes::Ok(ok))) => Ok((ok.data.0, ok.eof)),
            _ => Err(Error::Protocol("reply lacks the READ result".into())),
        }
    }

    /// READs until `count` bytes or EOF; the EOF flag says whether the end was reached.
    pub async fn read_full(
        &self,
        f: &OpenFile,
        offset: u64,
        count: u32,
    ) -> Result<(Vec<u8>, bool)> {
        let mut out = Vec::with_capacity(count as usize);
        loop {
            let want = count - out.len() as u32;
            let (data, eof) = self.read(f, offset + out.len() as u64, want).await?;
            let got = data.len();
            if out.is_empty() {
                out = data;
            } else {
                out.extend_from_slice(&data);
            }
            // A short read that is not at EOF is legal; a zero-length one would loop forever.
            if eof || got == 0 {
                return Ok((out, true));
            }
            if out.len() as u32 >= count {
                return Ok((out, false));
            }
        }
    }

    /// One WRITE. The server may write fewer bytes than given (see `count`). With pNFS it
    /// goes to every mirror of the layout; UNSTABLE data is then made stable by
    /// [`Client::commit_file`] or [`Client::close`] (not by [`Client::commit`], which only
    /// reaches the MDS).
    pub async fn write(
        &self,
        f: &OpenFile,
        offset: u64,
        data: &[u8],
        stable: StableHow4,
    ) -> Result<WriteResult> {
        if let Some(d) = crate::pnfs::for_file(self, f).await {
            return d.write(self, f, offset, data, stable).await;
        }
        self.mds_write(f, offset, data, stable).await
    }

    /// One WRITE sent to the MDS.
    pub(crate) async fn mds_write(
        &self,
        f: &OpenFile,
        offset: u64,
        data: &[u8],
        stable: StableHow4,
    ) -> Result<WriteResult> {
        let res = self
            .compound(
                CompoundBuilder::new()
                    .putfh(&f.fh)
                    .op(NfsArgop4::Write(WriteArgs {
                        stateid: f.io_stateid(),
                        offset,
                        stable,
                        data: Opaque(data.to_vec()),
                    })),
            )
            .await?;
        let ok = find(&res, "WRITE", |r| match r {
            NfsResop4::Write(WriteRes::Ok(ok)) => Some(*ok),
            _ => None,
        })?;
        Ok(WriteResult {
            count: ok.count,
            committed: ok.committed,
            verifier: ok.writeverf,
        })
    }

    /// WRITEs all of `data` (in `max_write` pieces, repeating short writes). Returns the
    /// weakest stability any piece got and the verifiers seen.
    pub async fn write_all(
        &self,
        f: &OpenFile,
        offset: u64,
        data: &[u8],
        stable: StableHow4,
    ) -> Result<(StableHow4, Vec<Verifier4>)> {
        let mut done = 0usize;
        let mut weakest = StableHow4::FileSync4;
        let mut verfs: Vec<Verifier4> = Vec::new();
        while done < data.len() {
            let end = (done + self.max_write() as usize).min(data.len());
            let r = self
                .write(f, offset + done as u64, &data[done..end], stable)
                .await?;
            if r.count == 0 {
                return Err(Error::Protocol("WRITE wrote nothing".into()));
            }
            weakest = weakest.min(r.committed);
            if !verfs.contains(&r.verifier) {
                verfs.push(r.verifier);
            }
            done += r.count as usize;
        }
        Ok((weakest, verfs))
    }

    /// COMMIT of `count` bytes at `offset` (0, 0: the whole file). Returns the verifier that
    /// must equal the one of every UNSTABLE write it covers.
    pub async fn commit(&self, fh: &NfsFh4, offset: u64, count: u32) -> Result<Verifier4> {
        let res = self
            .compound(
                CompoundBuilder::new()
                    .putfh(fh)
                    .op(NfsArgop4::Commit(CommitArgs { offset, count })),
            )
            .await?;
        find(&res, "COMMIT", |r| match r {
            NfsResop4::Commit(CommitRes::Ok(ok)) => Some(ok.writeverf),
            _ => None,
        })
    }

    /// COMMIT of everything written through `f`. Through the MDS this is COMMIT of the whole
    /// file, and the verifier is returned for the caller to compare with its WRITEs'. With
    /// pNFS the layout driver compares the verifiers of every data server itself, writes again
    /// what a failed or restarted DS may have lost, and sends LAYOUTCOMMIT; None is returned.
    pub async fn commit_file(&self, f: &OpenFile) -> Result<Option<Verifier4>> {
        if let Some(d) = crate::pnfs::for_file(self, f).await {
            d.commit(self, f).await?;
            return Ok(None);
        }
        self.commit(&f.fh, 0, 0).await.map(Some)
    }

    /// CLOSE. Locks still held through this open are released first: a server may refuse
    /// the CLOSE with NFS4ERR_LOCKS_HELD otherwise (ganesha does). With pNFS, data written to
    /// data servers is committed, LAYOUTCOMMITted and the layouts returned first; if that
    /// fails the CLOSE is still sent and the failure returned.
    pub async fn close(&self, f: &OpenFile) -> Result<()> {
        let flushed = match crate::pnfs::used_by(f) {
            Some(d) => d.finish(self, f).await,
            None => Ok(()),
        };
        if f.lock_stateid().is_some() {
            if let Err(e) = self
                .unlock(f, crate::locks::LockKind::Write, 0, u64::MAX)
                .await
            {
                tracing::debug!("releasing locks before CLOSE: {e}");
            }
        }
        self.compound(
            CompoundBuilder::new()
                .putfh(&f.fh)
                .op(NfsArgop4::Close(CloseArgs {
                    seqid: 0,
                    open_stateid: f.stateid,
                })),
        )
        .await?;
        flushed
    }
}
