//! The client handle: owns the connection and session, sends COMPOUNDs with retries for the
//! transient statuses, renews the lease, and recovers after a server restart.
use crate::backchannel::Backchannel;
use crate::compound::{last_attrs, last_fh, CompoundBuilder};
use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::path::split_path;
use crate::session::{self, Session};
use proto::nfs4::*;
use proto::rpc::Auth;
use proto::xdr::Opaque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// A connected NFSv4.1 client. Cheap to clone; clones share the session, so any number of
/// tasks may issue calls at once (up to the slot count are on the wire together).
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
    /// The credential of this handle's COMPOUNDs when not the configured one (see
    /// [`Client::with_auth`]).
    pub(crate) auth: Option<Arc<Auth>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Client({:?})", self.session())
    }
}

pub(crate) struct Inner {
    pub cfg: ClientConfig,
    session: RwLock<Arc<Session>>,
    pub root: NfsFh4,
    pub lease: Duration,
    pub max_read: u32,
    pub max_write: u32,
    last_used: Mutex<Instant>,
    next_owner: AtomicU64,
    instance: u64,
    cb: Arc<Backchannel>,
    lease_task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut t) = self.lease_task.lock() {
            if let Some(t) = t.take() {
                t.abort();
            }
        }
        if let Ok(s) = self.session.read() {
            s.conn.close();
        }
    }
}

/// How often a DELAY is retried, and how long GRACE is waited out, before giving up.
const MAX_DELAY_RETRIES: u32 = 40;

/// The retries of an NFS4ERR_DELAY: a pause from 20 ms doubling up to 1 s, at most
/// `MAX_DELAY_RETRIES` of them.
pub(crate) struct DelayRetry {
    backoff: Duration,
    done: u32,
}

impl Default for DelayRetry {
    fn default() -> Self {
        DelayRetry {
            backoff: Duration::from_millis(20),
            done: 0,
        }
    }
}

impl DelayRetry {
    /// Whether another retry is allowed.
    pub(crate) fn more(&self) -> bool {
        self.done < MAX_DELAY_RETRIES
    }

    /// Pauses before the next retry.
    pub(crate) async fn wait(&mut self) {
        self.done += 1;
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(Duration::from_secs(1));
    }
}
const MAX_GRACE_WAIT: Duration = Duration::from_secs(180);

impl Client {
    /// Connects, creates a session, sends RECLAIM_COMPLETE (unless `cfg.reclaim_complete` is
    /// off) and resolves the export root.
    pub async fn connect(cfg: ClientConfig) -> Result<Client> {
        let cb = Arc::new(Backchannel::default());
        let conn = session::connect(&cfg, cb.clone()).await?;
        let session = Session::create(conn, &cfg).await?;
        if cfg.reclaim_complete {
            reclaim_complete_on(&session, &cfg).await?;
        }
        // Root, lease and I/O limits in one round trip.
        let mut b = CompoundBuilder::new().putrootfh();
        for c in split_path(&cfg.export)? {
            b = b.lookup(c);
        }
        let b = b.getfh().getattr(&[
            FATTR4_TYPE,
            FATTR4_LEASE_TIME,
            FATTR4_MAXREAD,
            FATTR4_MAXWRITE,
        ]);
        // DELAY retried as in `compound`: a metadata node that cannot confirm its replica is
        // current yet (a shard's leader just died) answers it, and a stock client waits it out
        // on the same client ID rather than starting over as another client.
        let ops = b.into_ops();
        let mut delay = DelayRetry::default();
        let res = loop {
            match session.call(&cfg, &ops).await {
                Err(Error::Nfs {
                    status: Nfsstat4::Delay,
                    ..
                }) if delay.more() => delay.wait().await,
                r => break r?,
            }
        };
        let root = last_fh(&res)?;
        let a = last_attrs(&res)?;
        let lease = Duration::from_secs(u64::from(a.lease_time.unwrap_or(90).max(1)));
        let cap = |v: Option<u64>| v.map(|v| v.min(u64::from(u32::MAX)) as u32);
        let max_read = cap(a.maxread)
            .unwrap_or(session.max_io)
            .min(session.max_io)
            .max(512);
        let max_write = cap(a.maxwrite)
            .unwrap_or(session.max_io)
            .min(session.max_io)
            .max(512);
        let inner = Arc::new(Inner {
            cfg,
            session: RwLock::new(Arc::new(session)),
            root,
            lease,
            max_read,
            max_write,
            last_used: Mutex::new(Instant::now()),
            next_owner: AtomicU64::new(1),
            instance: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
            cb,
            lease_task: Mutex::new(None),
        });
        let weak = Arc::downgrade(&inner);
        inner.cb.set_recall_hook(Arc::new(move |stateid, fh| {
            return_delegation(weak.clone(), stateid, fh)
        }));
        let weak = Arc::downgrade(&inner);
        inner
            .cb
            .set_layout_recall_hook(Arc::new(move |a| crate::pnfs::layout_recalled(&weak, a)));
        let task = crate::lease::spawn(Arc::downgrade(&inner), lease);
        if let Ok(mut t) = inner.lease_task.lock() {
            *t = Some(task);
        }
        Ok(Client { inner, auth: None })
    }

    /// A handle on the same session whose COMPOUNDs carry `auth` instead of the configured
    /// credential: the server checks permissions and sets owners for that user. Opens,
    /// locks and layouts stay the session's (what the NFSv3 gateway needs to act for each
    /// of its clients' users over one session).
    pub fn with_auth(&self, auth: Auth) -> Client {
        Client {
            inner: self.inner.clone(),
            auth: Some(Arc::new(auth)),
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.cfg
    }
    /// File handle of the export root.
    pub fn root(&self) -> &NfsFh4 {
        &self.inner.root
    }
    pub fn lease(&self) -> Duration {
        self.inner.lease
    }
    /// Largest READ payload (negotiated channel size and the server's `maxread`).
    pub fn max_read(&self) -> u32 {
        self.inner.max_read
    }
    pub fn max_write(&self) -> u32 {
        self.inner.max_write
    }
    /// Fore-channel slots: how many COMPOUNDs may be in flight at once.
    pub fn slots(&self) -> usize {
        self.session().slots.len()
    }
    pub fn clientid(&self) -> Clientid4 {
        self.session().clientid
    }
    /// Whether the server bound our connection as the back channel.
    pub fn has_back_channel(&self) -> bool {
        self.session().back_channel
    }

    pub(crate) fn session(&self) -> Arc<Session> {
        match self.inner.session.read() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub(crate) fn idle_for(&self) -> Duration {
        self.inner
            .last_used
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default()
    }

    pub(crate) fn new_owner(&self, kind: &str) -> Vec<u8> {
        let n = self.inner.next_owner.fetch_add(1, Ordering::Relaxed);
        // Unique per instance too: two `Client`s made from one config are one NFS client,
        // and must not share open owners by accident.
        format!("{kind}-{:x}-{n}", self.inner.instance).into_bytes()
    }

    /// Sends SEQUENCE + `ops` and returns the results of `ops`. NFS4ERR_DELAY is retried with
    /// backoff; NFS4ERR_GRACE too when `retry_grace` is set. Any other failure is returned as
    /// `Error::Nfs` naming the operation.
    pub async fn compound(&self, ops: impl Into<Vec<NfsArgop4>>) -> Result<Vec<NfsResop4>> {
        self.compound_with(ops.into(), true).await
    }

    /// `compound` that returns NFS4ERR_DELAY instead of waiting it out: for a caller that must
    /// not hold a lock across the pauses (LAYOUTGET holds the file's layout lock, which a
    /// recall's LAYOUTRETURN needs), and retries after letting go of it.
    pub(crate) async fn compound_no_delay_retry(
        &self,
        ops: impl Into<Vec<NfsArgop4>>,
    ) -> Result<Vec<NfsResop4>> {
        self.compound_with(ops.into(), false).await
    }

    async fn compound_with(
        &self,
        ops: Vec<NfsArgop4>,
        retry_delay: bool,
    ) -> Result<Vec<NfsResop4>> {
        let started = Instant::now();
        let mut delay = DelayRetry::default();
        loop {
            let s = self.session();
            let auth = self.auth.as_deref().unwrap_or(&self.inner.cfg.auth);
            let r = s.call_as(&self.inner.cfg, auth, &ops).await;
            if let Ok(mut t) = self.inner.last_used.lock() {
                *t = Instant::now();
            }
            match r {
                Err(Error::Nfs {
                    status: Nfsstat4::Delay,
                    ..
                }) if retry_delay && delay.more() => delay.wait().await,
                Err(Error::Nfs {
                    status: Nfsstat4::Grace,
                    op,
                }) if self.inner.cfg.retry_grace && started.elapsed() < MAX_GRACE_WAIT => {
                    tracing::debug!(op, "server in grace; retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                r => return r,
            }
        }
    }

    /// SEQUENCE + `ops`, returning the COMPOUND's status with the results even when an
    /// operation failed (its result holds what the error says, e.g. LOCK or LOCKT's
    /// NFS4ERR_DENIED carries the conflicting lock). NFS4ERR_DELAY is retried as in
    /// [`Client::compound`].
    pub async fn compound_keep_failure(
        &self,
        ops: impl Into<Vec<NfsArgop4>>,
    ) -> Result<(Nfsstat4, Vec<NfsResop4>)> {
        let ops = ops.into();
        let mut delay = DelayRetry::default();
        while delay.more() {
            let s = self.session();
            let auth = self.auth.as_deref().unwrap_or(&self.inner.cfg.auth);
            let (status, res) = s.call_keep_failure(&self.inner.cfg, auth, &ops).await?;
            if let Ok(mut t) = self.inner.last_used.lock() {
                *t = Instant::now();
            }
            let status = Nfsstat4::from_code(status).unwrap_or(Nfsstat4::Serverfault);
            if status != Nfsstat4::Delay {
                return Ok((status, res));
            }
            delay.wait().await;
        }
        Ok((Nfsstat4::Delay, Vec::new()))
    }

    /// SEQUENCE alone: renews the lease.
    pub async fn renew(&self) -> Result<()> {
        self.compound(Vec::new()).await.map(|_| ())
    }

    /// RECLAIM_COMPLETE for the whole client: reclaim (if any) is over.
    pub async fn reclaim_complete(&self) -> Result<()> {
        reclaim_complete_on(&self.session(), &self.inner.cfg).await
    }

    /// After a server restart (or lease loss): probes the old session on a new connection,
    /// then establishes a new client ID and session with the same owner. Returns the status
    /// the old session got (NFS4ERR_BADSESSION or NFS4ERR_STALE_CLIENTID from a restarted
    /// server). RECLAIM_COMPLETE is not sent: reclaim what was held, then call
    /// [`Client::reclaim_complete`].
    pub async fn recover(&self) -> Result<Option<Nfsstat4>> {
        let old = self.session();
        let conn = session::connect(&self.inner.cfg, self.inner.cb.clone()).await?;
        let probe = old.probe_on(&conn, &self.inner.cfg).await;
        let seen = match probe {
            Ok(()) => None,
            Err(Error::Nfs { status, .. }) => Some(status),
            Err(e) => return Err(e),
        };
        let new = Session::create(conn, &self.inner.cfg).await?;
        old.conn.close();
        match self.inner.session.write() {
            Ok(mut s) => *s = Arc::new(new),
            Err(p) => *p.into_inner() = Arc::new(new),
        }
        Ok(seen)
    }

    /// DESTROY_SESSION and DESTROY_CLIENTID, then closes the connection. State still held
    /// (opens, locks) makes DESTROY_CLIENTID fail with NFS4ERR_CLIENTID_BUSY.
    pub async fn shutdown(&self) -> Result<()> {
        if let Ok(mut t) = self.inner.lease_task.lock() {
            if let Some(t) = t.take() {
                t.abort();
            }
        }
        let s = self.session();
        let r = s.destroy(&self.inner.cfg).await;
        s.conn.close();
        r
    }

    /// Resolves `path` (inside the export) with LOOKUPs from the root, adding `tail` (e.g.
    /// GETFH, GETATTR) to the last COMPOUND. Long paths take several round trips.
    pub(crate) async fn walk(&self, path: &str, tail: CompoundBuilder) -> Result<Vec<NfsResop4>> {
        let comps = split_path(path)?;
        let per = (self.session().max_ops as usize)
            .saturating_sub(2 + tail.len())
            .max(1);
        let mut fh = self.inner.root.clone();
        let mut chunks = comps.chunks(per).peekable();
        if chunks.peek().is_none() {
            let ops = CompoundBuilder::new().putfh(&fh).into_ops();
            let mut ops = ops;
            ops.extend(tail.into_ops());
            return self.compound(ops).await;
        }
        while let Some(chunk) = chunks.next() {
            let mut b = CompoundBuilder::new().putfh(&fh);
            for c in chunk {
                b = b.lookup(c);
            }
            if chunks.peek().is_none() {
                let mut ops = b.into_ops();
                ops.extend(tail.into_ops());
                return self.compound(ops).await;
            }
            let res = self.compound(b.getfh()).await?;
            fh = last_fh(&res)?;
        }
        Err(Error::BadPath(path.to_string()))
    }
}

async fn reclaim_complete_on(s: &Session, cfg: &ClientConfig) -> Result<()> {
    let ops = [NfsArgop4::ReclaimComplete(ReclaimCompleteArgs {
        rca_one_fs: false,
    })];
    match s.call(cfg, &ops).await {
        Ok(_)
        | Err(Error::Nfs {
            status: Nfsstat4::CompleteAlready,
            ..
        }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A delegation we did not ask for was recalled: give it back from a task of its own (the
/// callback must be answered first).
fn return_delegation(weak: Weak<Inner>, stateid: Stateid4, fh: NfsFh4) {
    let Some(inner) = weak.upgrade() else { return };
    let c = Client { inner, auth: None };
    tokio::spawn(async move {
        let ops = CompoundBuilder::new()
            .putfh(&fh)
            .op(NfsArgop4::Delegreturn(DelegreturnArgs {
                deleg_stateid: stateid,
            }));
        if let Err(e) = c.compound(ops).await {
            tracing::warn!("DELEGRETURN: {e}");
        }
    });
}

/// Component for the wire.
pub(crate) fn component(name: &str) -> Opaque {
    Opaque::from(name)
}
