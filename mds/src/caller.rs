//! The caller as the namespace sees it: permission checks with `namespace::perm`'s rules, and
//! changes made on the caller's behalf (`Command::As`), so that `apply` checks them again
//! against the state it changes.
use crate::compound::Ctx;
use crate::error::NfsResult;
use crate::namespace::perm;
use crate::namespace::{Command, Inode, Outcome};

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

    /// `execute_as` for commands whose durability may wait for the next COMMIT or sync.
    pub async fn execute_lazy_as(&self, cmd: Command) -> NfsResult<Outcome> {
        Ok(self
            .mds
            .ns
            .execute_lazy(Command::As {
                cred: self.user.clone(),
                cmd: Box::new(cmd),
            })
            .await?)
    }
}
