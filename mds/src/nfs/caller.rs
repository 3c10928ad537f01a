//! The caller as the namespace sees it: permission checks with `namespace::perm`'s rules, and
//! changes made on the caller's behalf (`Command::As`), so that `apply` checks them again
//! against the state it changes.
use crate::error::{NfsError, NfsResult};
use crate::nfs::ctx::Ctx;
use meta::namespace::perm;
use meta::namespace::{ClientRequest, Command, FsError, Inode, Key, Outcome, ShardId};
use std::time::Duration;

impl Ctx<'_> {
    /// `want` is a mask of 4 (read), 2 (write), 1 (execute/search): `perm::permission`.
    pub fn may(&self, i: &Inode, want: u32) -> bool {
        perm::permission(&self.user, i, want)
    }

    /// `may` as a result: NFS4ERR_ACCESS when refused.
    pub fn require(&self, i: &Inode, want: u32) -> NfsResult<()> {
        Ok(perm::require(&self.user, i, want)?)
    }

    /// Runs `cmd` as the caller: `apply` checks the caller's permission inside the command.
    pub async fn execute_as(&self, cmd: Command) -> NfsResult<Outcome> {
        Ok(self.execute_request(cmd).await?)
    }

    /// `cmd` as the caller, for this request; while the namespace cannot tell whether it was
    /// carried out (`in_doubt`), the same request again, for up to `IN_DOUBT_WAIT`.
    ///
    /// NFS4ERR_DELAY would end the request: the client sends the operation again under the
    /// slot's next sequence id, a new request, which the shards carry out again if the first
    /// was (a MKDIR then answers EXIST, a REMOVE NOENT). Sent again as the same request, it
    /// is carried out once, or answered with its first answer (`Command::Request`). Seen
    /// after an MDS node died under a MKDIR: its client's retransmission reached the node that
    /// took its address while the directory's shard was electing a leader.
    async fn execute_request(&self, cmd: Command) -> Result<Outcome, FsError> {
        let cmd = self.on_behalf(cmd);
        if !matches!(cmd, Command::Request { .. }) {
            return self.mds.ns.execute(cmd).await;
        }
        let deadline = tokio::time::Instant::now() + IN_DOUBT_WAIT;
        let mut pause = Duration::from_millis(20);
        loop {
            // By reference: an attempt copies nothing (the proposer encodes it).
            match self.mds.ns.execute_ref(&cmd).await {
                Err(e) if in_doubt(&e) && tokio::time::Instant::now() + pause < deadline => {
                    tracing::debug!("a client request tried again as itself: {e}");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                r => return r,
            }
        }
    }

    /// `cmd` as the caller, for this request: the shard applies it once however often the
    /// client sends the request, through whichever node (`Command::Request`).
    fn on_behalf(&self, cmd: Command) -> Command {
        let cmd = Command::As {
            cred: self.user.clone(),
            cmd: Box::new(cmd),
        };
        match self.request() {
            Some(req) => Command::Request {
                req,
                at: meta::namespace::Time::now(),
                cmd: Box::new(cmd),
                answer: None,
            },
            None => cmd,
        }
    }

    /// The client request the running operation is, as its session numbers it (or the one it
    /// is a retry of: `retry_of`).
    pub(crate) fn request(&self) -> Option<ClientRequest> {
        if self.retry_of.is_some() {
            return self.retry_of;
        }
        let (session, slot) = (self.session?, self.slot?);
        Some(ClientRequest {
            session,
            slot: slot.slot,
            seqid: slot.seqid,
            op: self.op_index,
        })
    }

    /// A removal or rename whose name is gone may be a request carried out before, sent
    /// again (its node died before answering): its answer, kept on the shard of `home`, the
    /// directory the command names first (`Command::home`). Only a current replica can say
    /// there is none, so the shard's read barrier is waited for as `execute_request` waits
    /// out an election, then DELAY: NOENT while the shard had no leader was a wrong answer
    /// to a REMOVE that had succeeded (seen once in CI: `rm -r` failed on a name it had
    /// just removed through the node the host killed).
    async fn answered_before(&self, home: u64) -> NfsResult<Option<Outcome>> {
        let Some(req) = self.request() else {
            return Ok(None);
        };
        let shard = ShardId::of_ino(home);
        let deadline = tokio::time::Instant::now() + IN_DOUBT_WAIT;
        let mut pause = Duration::from_millis(20);
        loop {
            match self.mds.ns.barrier(shard).await {
                Ok(()) => return Ok(self.mds.ns.answered_here(shard, &req)),
                Err(e) if tokio::time::Instant::now() + pause < deadline => {
                    tracing::debug!(%shard, "is a missing name a request answered before? {e}");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err(_) => return Err(NfsError::Delay),
            }
        }
    }
}

/// Times a command built from fresh lookups is tried when the names keep changing under it.
const RESOLVE_ATTEMPTS: usize = 8;

/// How long a client request is tried again as itself (`Ctx::execute_request`): a shard's
/// election after its leader died takes a few seconds, the recovery of a transaction the dead
/// node left as long (`txn_stale`); Linux waits a minute before it resends over TCP.
pub(crate) const IN_DOUBT_WAIT: Duration = Duration::from_secs(10);

/// Errors after which a request may have been carried out without its answer reaching us (a
/// leader gone after the proposal), or was not carried out only because another request held
/// what it needs for a moment (a transaction, perhaps one a dead node left to recover). Not
/// `Closed`: this node is stopping, and its client goes to the node that takes over.
fn in_doubt(e: &FsError) -> bool {
    matches!(
        e,
        FsError::Unavailable(_) | FsError::Busy | FsError::Aborted
    )
}

impl Ctx<'_> {
    /// Runs a command that names objects found by looking names up (`build` does the lookups),
    /// as the caller. Other clients' delegations on every object it names (`Command::keys`) are
    /// recalled first. If a name came to mean something else before the command applied
    /// (`FsError::Changed`), `build` looks again.
    pub async fn execute_resolved_as(
        &self,
        home: u64,
        mut build: impl FnMut(&Self) -> NfsResult<Command>,
    ) -> NfsResult<Outcome> {
        for _ in 0..RESOLVE_ATTEMPTS {
            let cmd = match build(self) {
                Err(NfsError::NoEnt) => match self.answered_before(home).await? {
                    Some(first) => return Ok(first),
                    None => return Err(NfsError::NoEnt),
                },
                other => other?,
            };
            let inos: Vec<u64> = cmd
                .keys()
                .into_iter()
                .filter_map(|k| match k {
                    Key::Inode(ino) => Some(ino),
                    _ => None,
                })
                .collect();
            let _busy =
                crate::state::recall::recall_and_wait(&self.mds.nfs, &inos, self.clientid).await?;
            match self.execute_request(cmd).await {
                Err(FsError::Changed) => continue,
                r => return Ok(r?),
            }
        }
        Err(NfsError::Delay)
    }
}
