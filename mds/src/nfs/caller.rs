//! The caller as the namespace sees it: permission checks with `namespace::perm`'s rules, and
//! changes made on the caller's behalf (`Command::As`), so that `apply` checks them again
//! against the state it changes.
use crate::error::{NfsError, NfsResult};
use crate::nfs::ctx::Ctx;
use meta::namespace::perm;
use meta::namespace::{ClientRequest, Command, FsError, Inode, Key, Outcome, ShardId};

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
        Ok(self.mds.ns.execute(self.on_behalf(cmd)).await?)
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

    /// The client request the running operation is, as its session numbers it.
    fn request(&self) -> Option<ClientRequest> {
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
    /// directory the command names first (`Command::home`).
    async fn answered_before(&self, home: u64) -> Option<Outcome> {
        let req = self.request()?;
        let shard = ShardId::of_ino(home);
        self.mds.ns.barrier(shard).await.ok()?;
        self.mds.ns.answered_here(shard, &req)
    }
}

/// Times a command built from fresh lookups is tried when the names keep changing under it.
const RESOLVE_ATTEMPTS: usize = 8;

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
                Err(NfsError::NoEnt) => match self.answered_before(home).await {
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
            match self.mds.ns.execute(self.on_behalf(cmd)).await {
                Err(FsError::Changed) => continue,
                r => return Ok(r?),
            }
        }
        Err(NfsError::Delay)
    }
}
