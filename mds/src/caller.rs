//! The caller as the namespace sees it: permission checks with `namespace::perm`'s rules, and
//! changes made on the caller's behalf (`Command::As`), so that `apply` checks them again
//! against the state it changes.
use crate::compound::Ctx;
use crate::error::{NfsError, NfsResult};
use crate::namespace::perm;
use crate::namespace::{Command, FsError, Inode, Key, Outcome};

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
        Ok(self
            .mds
            .ns
            .execute(Command::As {
                cred: self.user.clone(),
                cmd: Box::new(cmd),
            })
            .await?)
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
        mut build: impl FnMut(&Self) -> NfsResult<Command>,
    ) -> NfsResult<Outcome> {
        for _ in 0..RESOLVE_ATTEMPTS {
            let cmd = build(self)?;
            let inos: Vec<u64> = cmd
                .keys()
                .into_iter()
                .filter_map(|k| match k {
                    Key::Inode(ino) => Some(ino),
                    _ => None,
                })
                .collect();
            crate::recall::recall_and_wait(self.mds, &inos, self.clientid).await?;
            let cmd = Command::As {
                cred: self.user.clone(),
                cmd: Box::new(cmd),
            };
            match self.mds.ns.execute(cmd).await {
                Err(FsError::Changed) => continue,
                r => return Ok(r?),
            }
        }
        Err(NfsError::Delay)
    }
}
