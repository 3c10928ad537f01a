//! Which clients may reclaim after a restart. The owners of clients that held confirmed state
//! are kept on stable storage; after a restart they get a grace period to reclaim opens and
//! locks, which ends early once every one of them has sent RECLAIM_COMPLETE.
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::namespace::SpaceGuard;

#[derive(Debug)]
pub struct ClientDb {
    path: PathBuf,
    owners: BTreeSet<Vec<u8>>,
    /// Reserved space to fall back on when the file system is full, so a new client can still
    /// be recorded (and mount, and free space).
    space: Option<Arc<dyn SpaceGuard>>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl ClientDb {
    /// Loads the owners recorded by the previous server instance.
    pub fn open(dir: &Path) -> std::io::Result<(ClientDb, BTreeSet<Vec<u8>>)> {
        let path = dir.join("clients");
        let owners: BTreeSet<Vec<u8>> = match std::fs::read_to_string(&path) {
            Ok(t) => t.lines().filter_map(unhex).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => return Err(e),
        };
        let previous = owners.clone();
        Ok((
            ClientDb {
                path,
                owners,
                space: None,
            },
            previous,
        ))
    }

    pub fn set_space(&mut self, space: Arc<dyn SpaceGuard>) {
        self.space = Some(space);
    }

    pub fn add(&mut self, owner: &[u8]) -> std::io::Result<()> {
        if self.owners.insert(owner.to_vec()) {
            self.persist()?;
        }
        Ok(())
    }

    pub fn remove(&mut self, owner: &[u8]) -> std::io::Result<()> {
        if self.owners.remove(owner) {
            self.persist()?;
        }
        Ok(())
    }

    /// Forgets every owner in `gone` with one rewrite of the list.
    pub fn remove_all<'a>(
        &mut self,
        gone: impl IntoIterator<Item = &'a Vec<u8>>,
    ) -> std::io::Result<usize> {
        let before = self.owners.len();
        for o in gone {
            self.owners.remove(o);
        }
        let n = before - self.owners.len();
        if n > 0 {
            self.persist()?;
        }
        Ok(n)
    }

    /// Writes the list; on a full file system, again after taking space from the reserve.
    fn persist(&self) -> std::io::Result<()> {
        match self.write_list() {
            Err(e)
                if e.raw_os_error() == Some(libc::ENOSPC)
                    && self.space.as_ref().is_some_and(|s| s.release()) =>
            {
                self.write_list()
            }
            r => r,
        }
    }

    /// Write-to-temp, fsync, rename, fsync the directory: the list is replaced whole or not at all.
    fn write_list(&self) -> std::io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            for o in &self.owners {
                writeln!(f, "{}", hex(o))?;
            }
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Some(d) = self.path.parent() {
            std::fs::File::open(d)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen() {
        let d = tempfile::tempdir().unwrap();
        let (mut db, prev) = ClientDb::open(d.path()).unwrap();
        assert!(prev.is_empty());
        db.add(b"Linux NFSv4.1 guest").unwrap();
        db.add(&[0, 255, 7]).unwrap();
        db.remove(&[0, 255, 7]).unwrap();
        db.add(b"gone-1").unwrap();
        db.add(b"gone-2").unwrap();
        let gone = [b"gone-1".to_vec(), b"gone-2".to_vec(), b"never".to_vec()];
        assert_eq!(db.remove_all(&gone).unwrap(), 2);
        let (_, prev) = ClientDb::open(d.path()).unwrap();
        assert_eq!(
            prev.into_iter().collect::<Vec<_>>(),
            vec![b"Linux NFSv4.1 guest".to_vec()]
        );
    }
}
