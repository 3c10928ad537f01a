//! A namespace made whole after a rebuild from shard images of different times (`cfs repair
//! --from-s3`; the images: `super::restore`).
//!
//! Each shard's image is its state at one applied index of its own, shipped at its own time, so
//! no two need be of one moment. An operation within one shard is in an image whole or not at
//! all; one over several shards (a cross-shard transaction: a directory made in another shard
//! than its parent's, a rename between directories of two shards, a hard link across them) can
//! be in one shard's image and not in another's. So, in this order:
//!
//! 1. **Transactions.** A shard prepared for a transaction its coordinating shard's image had
//!    decided to commit gets its writes (what `TxnCommit` does); any other prepared part is
//!    released (what an abort does). Then every transaction record goes: nothing is in flight
//!    in a rebuilt cluster, and a decision left behind would commit into a shard whose image
//!    predates its lock, over whatever that shard did since. The writes such a shard misses
//!    leave names or inodes that the next steps mend.
//! 2. **Dangling entries** are removed: an entry naming an inode no image holds, or one whose own
//!    shard has it with no names left (awaiting reclaim), or an entry of a directory that is not
//!    there. A directory named by several entries (a rename seen by the two shards at two
//!    times) keeps the one in the directory its inode names as parent, else the first.
//! 3. **Orphans** are linked into `/lost+found` (made in the root's shard if needed, root's,
//!    mode 0700) as `#INO`, as fsck does: inodes not awaiting reclaim that no entry names, and
//!    directories the root does not reach (a loop of two renames seen at different times).
//! 4. **Link counts and directory parents** are set to what the entries say.
//!
//! Only names are removed: every inode stays, with its bytes in the bucket. The result is a
//! function of the images and `at` alone, so every MDS node rebuilt from one bucket holds the
//! same replicas.
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use meta_core::state::{MemState, StateStore};
use meta_core::txn::{Decision, TxnId};
use meta_core::{apply, Command, CreateHow, FileKind, FsError, Inode, ShardId, Time, ROOT_INO};

/// The directory orphans are linked into (then `lost+found.1`, ... if the name is another
/// kind of file).
pub const LOST_FOUND: &str = "lost+found";

/// What [`mend`] found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mended {
    /// Prepared parts of transactions committed from their coordinator's decision, and
    /// released for want of one.
    pub txns_committed: u64,
    pub txns_released: u64,
    /// Entries removed: (directory, name, the inode it named).
    pub dangling: Vec<(u64, Vec<u8>, u64)>,
    /// Inodes linked into lost+found: (inode, name there).
    pub found: Vec<(u64, Vec<u8>)>,
    pub lost_found: Option<u64>,
    /// Inodes whose link count or parent was set to what the entries say.
    pub links_fixed: u64,
}

impl Mended {
    /// Whether the images were of one consistent namespace (nothing but settled transactions).
    pub fn is_whole(&self) -> bool {
        self.dangling.is_empty() && self.found.is_empty() && self.links_fixed == 0
    }
}

/// Mends the states of a file system's shards (every shard the bucket held; missing ones are
/// empty), taken at different times, into one consistent namespace. `at`: the time changes
/// are made at.
pub fn mend(states: &mut [(u16, MemState)], at: Time) -> Result<Mended, FsError> {
    let mut out = Mended::default();
    settle_txns(states, &mut out);
    let index = states
        .iter()
        .enumerate()
        .map(|(i, (s, _))| (*s, i))
        .collect();
    let mut ns = Shards { states, index, at };
    ns.drop_dangling(&mut out);
    ns.adopt_orphans(&mut out)?;
    ns.count_links(&mut out);
    Ok(out)
}

/// Step 1: every prepared part committed or released, every record gone.
fn settle_txns(states: &mut [(u16, MemState)], out: &mut Mended) {
    let decisions: BTreeMap<(u16, TxnId), Decision> = states
        .iter()
        .flat_map(|(shard, s)| {
            s.txns
                .iter()
                .filter_map(move |(id, e)| e.decision.clone().map(|d| ((*shard, *id), d)))
        })
        .collect();
    for (shard, s) in states.iter_mut() {
        let prepared: Vec<(TxnId, ShardId)> = s
            .txns
            .iter()
            .filter_map(|(id, e)| e.prepared.as_ref().map(|p| (*id, p.coord)))
            .collect();
        for (txn, coord) in prepared {
            let part = match decisions.get(&(coord.0, txn)) {
                Some(Decision::Commit { parts, .. }) => {
                    parts.iter().find(|p| p.shard.0 == *shard).cloned()
                }
                _ => None,
            };
            // On a copy: a part that fails leaves the shard as it was (released).
            let committed = part.is_some_and(|part| {
                let mut t = s.clone();
                let ok = apply(&mut t, &Command::TxnCommit { txn, part }).is_ok();
                if ok {
                    *s = t;
                }
                ok
            });
            if committed {
                out.txns_committed += 1;
            } else {
                out.txns_released += 1;
            }
        }
        s.txns.clear();
        s.locks.clear();
    }
}

struct Shards<'a> {
    states: &'a mut [(u16, MemState)],
    /// Shard number → its place in `states`.
    index: BTreeMap<u16, usize>,
    at: Time,
}

impl Shards<'_> {
    fn state(&self, ino: u64) -> Option<&MemState> {
        let i = *self.index.get(&ShardId::of_ino(ino).0)?;
        Some(&self.states[i].1)
    }

    fn state_mut(&mut self, ino: u64) -> Option<&mut MemState> {
        let i = *self.index.get(&ShardId::of_ino(ino).0)?;
        Some(&mut self.states[i].1)
    }

    fn inode(&self, ino: u64) -> Option<&Inode> {
        self.state(ino)?.inodes.get(&ino)
    }

    fn inode_mut(&mut self, ino: u64) -> Option<&mut Inode> {
        self.state_mut(ino)?.inodes.get_mut(&ino)
    }

    /// Whether its own shard holds `ino` with no names left: an orphaned file or a detached
    /// tree, which the reaper and the reclaimer finish.
    fn reclaiming(&self, ino: u64) -> bool {
        self.state(ino)
            .is_some_and(|s| s.orphans.contains_key(&ino))
    }

    /// Every entry: (directory, name, inode).
    fn entries(&self) -> Vec<(u64, Vec<u8>, u64)> {
        self.states
            .iter()
            .flat_map(|(_, s)| s.dirents.iter().map(|((d, n), (i, _))| (*d, n.clone(), *i)))
            .collect()
    }

    /// Every inode there is, but the root and those awaiting reclaim.
    fn live(&self) -> Vec<(u64, bool)> {
        self.states
            .iter()
            .flat_map(|(_, s)| {
                s.inodes
                    .values()
                    .filter(|i| i.ino != ROOT_INO && !s.orphans.contains_key(&i.ino))
                    .map(|i| (i.ino, i.kind.is_dir()))
            })
            .collect()
    }

    /// A directory's entries changed: its change attribute and times move.
    fn touch(&mut self, dir: u64) {
        let at = self.at;
        if let Some(d) = self.inode_mut(dir) {
            d.change += 1;
            d.mtime = d.mtime.max(at);
            d.ctime = d.ctime.max(at);
        }
    }

    fn remove_entry(&mut self, dir: u64, name: &[u8], out: &mut Mended) {
        let Some(s) = self.state_mut(dir) else { return };
        let Some((ino, _)) = s.dirents.get(&(dir, name.to_vec())).copied() else {
            return;
        };
        // MemState's own removal: the READDIR index goes with the entry. It cannot fail.
        let _ = s.del_dirent(dir, name);
        self.touch(dir);
        out.dangling.push((dir, name.to_vec(), ino));
    }

    /// Step 2.
    fn drop_dangling(&mut self, out: &mut Mended) {
        for (dir, name, ino) in self.entries() {
            let in_a_dir = self.inode(dir).is_some_and(|d| d.kind.is_dir());
            let named = ino != ROOT_INO && self.inode(ino).is_some() && !self.reclaiming(ino);
            if !in_a_dir || !named {
                self.remove_entry(dir, &name, out);
            }
        }
        let mut names: BTreeMap<u64, Vec<(u64, Vec<u8>)>> = BTreeMap::new();
        for (dir, name, ino) in self.entries() {
            if self.inode(ino).is_some_and(|i| i.kind.is_dir()) {
                names.entry(ino).or_default().push((dir, name));
            }
        }
        for (ino, list) in names.into_iter().filter(|(_, l)| l.len() > 1) {
            let parent = self.inode(ino).map_or(0, |i| i.parent);
            let keep = list.iter().position(|(d, _)| *d == parent).unwrap_or(0);
            for (k, (dir, name)) in list.into_iter().enumerate() {
                if k != keep {
                    self.remove_entry(dir, &name, out);
                }
            }
        }
    }

    /// The directory orphans go into, made on first use.
    fn lost_found(&mut self, out: &mut Mended) -> Result<u64, FsError> {
        if let Some(l) = out.lost_found {
            return Ok(l);
        }
        for k in 0u32.. {
            let name = match k {
                0 => LOST_FOUND.to_string(),
                k => format!("{LOST_FOUND}.{k}"),
            };
            let root = self.state(ROOT_INO).ok_or(FsError::NotFound)?;
            match root.dirents.get(&(ROOT_INO, name.clone().into_bytes())) {
                Some((ino, _)) => {
                    let ino = *ino;
                    if self.inode(ino).is_some_and(|i| i.kind.is_dir()) && !self.reclaiming(ino) {
                        out.lost_found = Some(ino);
                        return Ok(ino);
                    }
                }
                None => {
                    let at = self.at;
                    let root = self.state_mut(ROOT_INO).ok_or(FsError::NotFound)?;
                    let made = apply(
                        root,
                        &Command::Create {
                            parent: ROOT_INO,
                            name: name.into_bytes(),
                            kind: FileKind::Directory,
                            mode: 0o700,
                            uid: 0,
                            gid: 0,
                            time: at,
                            how: CreateHow::Guarded,
                        },
                    )?;
                    let ino = made.inode.map(|i| i.ino).ok_or(FsError::NotFound)?;
                    out.lost_found = Some(ino);
                    return Ok(ino);
                }
            }
        }
        Err(FsError::Exists)
    }

    /// Links `ino` into lost+found as `#INO` (then `#INO.1`, ...).
    fn adopt(&mut self, ino: u64, out: &mut Mended) -> Result<(), FsError> {
        let lf = self.lost_found(out)?;
        let s = self.state_mut(lf).ok_or(FsError::NotFound)?;
        let mut name = format!("#{ino}").into_bytes();
        let mut k = 0;
        while s.dirents.contains_key(&(lf, name.clone())) {
            k += 1;
            name = format!("#{ino}.{k}").into_bytes();
        }
        let cookie = s.next_cookie(lf)?;
        s.put_dirent(lf, &name, ino, cookie)?;
        s.set_next_cookie(lf, Some(cookie + 1))?;
        self.touch(lf);
        out.found.push((ino, name));
        Ok(())
    }

    /// Step 3.
    fn adopt_orphans(&mut self, out: &mut Mended) -> Result<(), FsError> {
        let named: BTreeSet<u64> = self.entries().into_iter().map(|(_, _, i)| i).collect();
        let mut unnamed: Vec<u64> = self
            .live()
            .into_iter()
            .map(|(i, _)| i)
            .filter(|i| !named.contains(i))
            .collect();
        unnamed.sort_unstable();
        for ino in unnamed {
            self.adopt(ino, out)?;
        }
        // Directories the root does not reach (nor a detached tree being reclaimed): each
        // pass moves the lowest one, and with it everything below, into lost+found.
        loop {
            let entries = self.entries();
            let mut below: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
            for (dir, _, ino) in &entries {
                below.entry(*dir).or_default().push(*ino);
            }
            let mut reached: BTreeSet<u64> = BTreeSet::new();
            let detached = self.states.iter().flat_map(|(_, s)| {
                s.orphans
                    .keys()
                    .filter(|i| s.inodes.get(i).is_some_and(|i| i.kind.is_dir()))
                    .copied()
            });
            let mut queue: VecDeque<u64> = std::iter::once(ROOT_INO).chain(detached).collect();
            while let Some(d) = queue.pop_front() {
                if reached.insert(d) {
                    queue.extend(below.get(&d).into_iter().flatten().copied());
                }
            }
            let stray = self
                .live()
                .into_iter()
                .filter(|(i, dir)| *dir && !reached.contains(i))
                .map(|(i, _)| i)
                .min();
            let Some(stray) = stray else { return Ok(()) };
            for (dir, name, _) in entries.iter().filter(|(_, _, i)| *i == stray) {
                self.remove_entry(*dir, name, out);
            }
            self.adopt(stray, out)?;
        }
    }

    /// Step 4.
    fn count_links(&mut self, out: &mut Mended) {
        let mut names: BTreeMap<u64, u32> = BTreeMap::new();
        let mut subdirs: BTreeMap<u64, u32> = BTreeMap::new();
        let mut parent: BTreeMap<u64, u64> = BTreeMap::new();
        for (dir, _, ino) in self.entries() {
            *names.entry(ino).or_default() += 1;
            if self.inode(ino).is_some_and(|i| i.kind.is_dir()) {
                *subdirs.entry(dir).or_default() += 1;
                parent.insert(ino, dir);
            }
        }
        let mut inos: Vec<(u64, bool)> = self.live();
        inos.push((ROOT_INO, true));
        let at = self.at;
        for (ino, dir) in inos {
            let Some(i) = self.inode_mut(ino) else {
                continue;
            };
            let (nlink, up) = if dir {
                let up = if ino == ROOT_INO {
                    ROOT_INO
                } else {
                    parent.get(&ino).copied().unwrap_or(i.parent)
                };
                (2 + subdirs.get(&ino).copied().unwrap_or(0), up)
            } else {
                (names.get(&ino).copied().unwrap_or(0), i.parent)
            };
            if (i.nlink, i.parent) != (nlink, up) {
                i.nlink = nlink;
                i.parent = up;
                i.change += 1;
                i.ctime = i.ctime.max(at);
                out.links_fixed += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meta_core::txn::{Prepared, TxnEntry, TxnPart};
    use meta_core::Key;

    const SHARDS: u16 = 4;

    fn t(s: i64) -> Time {
        Time::new(s, 0)
    }

    fn root() -> MemState {
        let mut s = MemState::default();
        apply(
            &mut s,
            &Command::InitRoot {
                fs_id: 3,
                time: t(1),
            },
        )
        .unwrap();
        s
    }

    /// Makes `name` in `parent`, a directory in `shard`, else a file in the parent's shard.
    fn make(s: &mut MemState, parent: u64, name: &str, dir_in: Option<u16>) -> u64 {
        let create = Command::Create {
            parent,
            name: name.into(),
            kind: if dir_in.is_some() {
                FileKind::Directory
            } else {
                FileKind::Regular
            },
            mode: 0o755,
            uid: 7,
            gid: 8,
            time: t(2),
            how: CreateHow::Guarded,
        };
        let cmd = match dir_in {
            Some(shard) => Command::Place {
                shard: ShardId(shard),
                cmd: Box::new(create),
            },
            None => create,
        };
        apply(s, &cmd).unwrap();
        s.dirents[&(parent, name.as_bytes().to_vec())].0
    }

    /// One state holding every shard's keys, cut into the shards' own states.
    fn split(s: &MemState) -> Vec<(u16, MemState)> {
        let of = |ino: u64| ShardId::of_ino(ino).0;
        (0..SHARDS)
            .map(|k| {
                let mut p = MemState {
                    inodes: s
                        .inodes
                        .iter()
                        .filter(|(i, _)| of(**i) == k)
                        .map(|(a, b)| (*a, b.clone()))
                        .collect(),
                    ..MemState::default()
                };
                for ((d, n), (i, c)) in &s.dirents {
                    if of(*d) == k {
                        p.put_dirent(*d, n, *i, *c).unwrap();
                    }
                }
                p.cookies = s
                    .cookies
                    .iter()
                    .filter(|(d, _)| of(**d) == k)
                    .map(|(a, b)| (*a, *b))
                    .collect();
                p.meta = s.meta.clone();
                (k, p)
            })
            .collect()
    }

    /// A tree over the shards: /a (shard 1) holding /a/b (shard 2) and /a/f, /g, /a/b/h.
    fn tree() -> (MemState, [u64; 5]) {
        let mut s = root();
        let a = make(&mut s, ROOT_INO, "a", Some(1));
        let b = make(&mut s, a, "b", Some(2));
        let f = make(&mut s, a, "f", None);
        let g = make(&mut s, ROOT_INO, "g", None);
        let h = make(&mut s, b, "h", None);
        (s, [a, b, f, g, h])
    }

    fn dumps(states: &[(u16, MemState)]) -> Vec<meta_core::Dump> {
        states.iter().map(|(_, s)| s.dump()).collect()
    }

    fn state(states: &mut [(u16, MemState)], shard: u16) -> &mut MemState {
        &mut states.iter_mut().find(|(k, _)| *k == shard).unwrap().1
    }

    /// Every inode but those awaiting reclaim has the links its entries give it.
    fn links_agree(states: &[(u16, MemState)]) {
        let mut all = MemState::default();
        for (_, s) in states {
            all.inodes.extend(s.inodes.clone());
            all.dirents.extend(s.dirents.clone());
        }
        for i in all.inodes.values() {
            let names = all.dirents.values().filter(|(n, _)| *n == i.ino).count() as u32;
            let want = if i.kind.is_dir() {
                2 + all
                    .dirents
                    .iter()
                    .filter(|((d, _), (n, _))| *d == i.ino && all.inodes[n].kind.is_dir())
                    .count() as u32
            } else {
                names
            };
            assert_eq!(i.nlink, want, "{i:?}");
            if i.kind.is_dir() && i.ino != ROOT_INO {
                assert_eq!(names, 1, "{i:?}");
                assert!(all.dirents.contains_key(&(
                    i.parent,
                    all.dirents
                        .iter()
                        .find(|(_, (n, _))| *n == i.ino)
                        .unwrap()
                        .0
                         .1
                        .clone()
                )));
            }
        }
    }

    #[test]
    fn images_of_one_moment_are_left_as_they_are() {
        let (s, _) = tree();
        let mut states = split(&s);
        let before = dumps(&states);
        let m = mend(&mut states, t(9)).unwrap();
        assert!(m.is_whole() && m.lost_found.is_none(), "{m:?}");
        assert_eq!(dumps(&states), before);
        links_agree(&states);
    }

    #[test]
    fn an_entry_whose_inode_its_shard_never_saw_is_removed() {
        let (s, [a, b, ..]) = tree();
        let mut states = split(&s);
        // Shard 2's image predates the mkdir of /a/b (and so of /a/b/h).
        *state(&mut states, 2) = MemState::default();
        let m = mend(&mut states, t(9)).unwrap();
        assert_eq!(m.dangling, vec![(a, b"b".to_vec(), b)]);
        assert!(m.found.is_empty() && m.lost_found.is_none());
        let sa = &state(&mut states, 1).inodes[&a];
        assert_eq!(sa.nlink, 2, "no subdirectory left");
        assert!(sa.mtime == t(9) && sa.change > s.inodes[&a].change);
        links_agree(&states);
    }

    #[test]
    fn an_inode_no_entry_names_is_linked_into_lost_found() {
        let (s, [a, b, ..]) = tree();
        let mut states = split(&s);
        // Shard 1's image predates the mkdir of /a/b: /a has only f; b and h are in shard 2.
        state(&mut states, 1).del_dirent(a, b"b").unwrap();
        state(&mut states, 1).inodes.get_mut(&a).unwrap().nlink = 2;
        let m = mend(&mut states, t(9)).unwrap();
        let lf = m.lost_found.expect("lost+found made");
        assert_eq!(m.found, vec![(b, format!("#{b}").into_bytes())]);
        let s0 = state(&mut states, 0);
        assert_eq!(s0.dirents[&(ROOT_INO, b"lost+found".to_vec())].0, lf);
        assert_eq!(s0.inodes[&lf].mode, 0o700);
        assert_eq!(s0.dirents[&(lf, format!("#{b}").into_bytes())].0, b);
        let sb = &state(&mut states, 2).inodes[&b];
        assert_eq!(sb.parent, lf);
        assert!(state(&mut states, 2)
            .dirents
            .contains_key(&(b, b"h".to_vec())));
        assert!(state(&mut states, 1)
            .dirents
            .contains_key(&(a, b"f".to_vec())));
        links_agree(&states);
        // Mended again: nothing more to do.
        let again = mend(&mut states, t(10)).unwrap();
        assert!(again.is_whole(), "{again:?}");
    }

    #[test]
    fn a_directory_named_twice_keeps_the_name_its_inode_agrees_with() {
        let (s, [a, b, ..]) = tree();
        let mut states = split(&s);
        // /a/b renamed to /b: shard 0 (the new entry) and shard 2 (b's parent) saw it, shard 1
        // (the old entry) did not.
        let s0 = state(&mut states, 0);
        let c = s0.next_cookie(ROOT_INO).unwrap();
        s0.put_dirent(ROOT_INO, b"b", b, c).unwrap();
        s0.set_next_cookie(ROOT_INO, Some(c + 1)).unwrap();
        state(&mut states, 2).inodes.get_mut(&b).unwrap().parent = ROOT_INO;
        let m = mend(&mut states, t(9)).unwrap();
        assert_eq!(m.dangling, vec![(a, b"b".to_vec(), b)]);
        assert!(m.found.is_empty());
        links_agree(&states);
    }

    #[test]
    fn a_loop_of_two_renames_is_broken_into_lost_found() {
        let mut s = root();
        let x = make(&mut s, ROOT_INO, "x", Some(1));
        let y = make(&mut s, ROOT_INO, "y", Some(2));
        let mut states = split(&s);
        // mv /y /x/y seen by shard 1 (x's entries), mv /x /y/x by shard 2 (y's entries), and
        // root's shard saw both names go: x and y name each other, the root neither.
        let s0 = state(&mut states, 0);
        s0.del_dirent(ROOT_INO, b"x").unwrap();
        s0.del_dirent(ROOT_INO, b"y").unwrap();
        state(&mut states, 1).put_dirent(x, b"y", y, 3).unwrap();
        state(&mut states, 2).put_dirent(y, b"x", x, 3).unwrap();
        let m = mend(&mut states, t(9)).unwrap();
        assert_eq!(m.dangling, vec![(y, b"x".to_vec(), x)]);
        assert_eq!(m.found, vec![(x, format!("#{x}").into_bytes())]);
        assert_eq!(state(&mut states, 2).inodes[&y].parent, x);
        links_agree(&states);
    }

    #[test]
    fn prepared_parts_commit_as_their_coordinator_decided_or_are_released() {
        let (s, [a, _, f, ..]) = tree();
        let mut states = split(&s);
        let lock = |coord: u16, keys: Vec<Key>| TxnEntry {
            prepared: Some(Prepared {
                coord: ShardId(coord),
                keys,
                reserved: None,
                since: t(5),
            }),
            decision: None,
        };
        // Transaction 1, coordinated by shard 0, decided: shard 1 gets /a/f renamed to /a/f2.
        let (_, cookie) = state(&mut states, 1).dirents[&(a, b"f".to_vec())];
        let part = TxnPart {
            shard: ShardId(1),
            dirents: vec![
                (a, b"f".to_vec(), None),
                (a, b"f2".to_vec(), Some((f, cookie + 10))),
            ],
            ..TxnPart::default()
        };
        state(&mut states, 0).txns.insert(
            1,
            TxnEntry {
                prepared: None,
                decision: Some(Decision::Commit {
                    parts: vec![part],
                    at: t(5),
                }),
            },
        );
        state(&mut states, 1)
            .put_txn(1, Some(&lock(0, vec![Key::Entries(a)])))
            .unwrap();
        // Transaction 2: shard 1 locked /a for it, its coordinator never decided.
        state(&mut states, 1)
            .put_txn(2, Some(&lock(0, vec![Key::Inode(a)])))
            .unwrap();
        let m = mend(&mut states, t(9)).unwrap();
        assert_eq!((m.txns_committed, m.txns_released), (1, 1));
        assert!(m.is_whole(), "{m:?}");
        let s1 = state(&mut states, 1);
        assert!(s1.dirents.contains_key(&(a, b"f2".to_vec())));
        assert!(!s1.dirents.contains_key(&(a, b"f".to_vec())));
        assert!(states
            .iter()
            .all(|(_, s)| s.txns.is_empty() && s.locks.is_empty()));
    }

    #[test]
    fn a_detached_tree_is_left_to_the_reclaimer() {
        let mut s = root();
        let d = make(&mut s, ROOT_INO, "t", Some(1));
        let u = make(&mut s, d, "u", Some(2));
        make(&mut s, u, "f", None);
        let mut states = split(&s);
        // rm -rf /t as the reclaimer does it: the tree detached whole, emptied later.
        let s0 = state(&mut states, 0);
        s0.del_dirent(ROOT_INO, b"t").unwrap();
        s0.inodes.get_mut(&ROOT_INO).unwrap().nlink = 2;
        state(&mut states, 1).set_orphan(d, true).unwrap();
        let before = dumps(&states);
        let m = mend(&mut states, t(9)).unwrap();
        assert!(m.is_whole() && m.lost_found.is_none(), "{m:?}");
        assert_eq!(dumps(&states), before);
        assert!(state(&mut states, 2)
            .dirents
            .contains_key(&(u, b"f".to_vec())));
    }

    #[test]
    fn a_hard_link_its_inodes_shard_never_saw_is_kept_and_counted() {
        let (s, [a, _, f, g, _]) = tree();
        let mut states = split(&s);
        // ln /g /a/g2 seen by shard 1 (the entry) but not by shard 0 (g's count: 1), and
        // ln /a/f /f2 seen by shard 0 (the entry) and not by shard 1 (f's count: 1 as well).
        // (The other way, a count of 2 with one name lost, is `cfs/tests/it/tier_repair.rs`'s.)
        let s1 = state(&mut states, 1);
        s1.put_dirent(a, b"g2", g, 50).unwrap();
        let s0 = state(&mut states, 0);
        s0.put_dirent(ROOT_INO, b"f2", f, 51).unwrap();
        let m = mend(&mut states, t(9)).unwrap();
        assert!(m.dangling.is_empty() && m.found.is_empty(), "{m:?}");
        assert_eq!(m.links_fixed, 2, "{m:?}");
        assert_eq!(state(&mut states, 0).inodes[&g].nlink, 2);
        assert_eq!(state(&mut states, 1).inodes[&f].nlink, 2);
        links_agree(&states);
    }

    #[test]
    fn lost_found_taken_by_a_file_makes_the_next_name() {
        let (mut s, [a, b, ..]) = tree();
        let taken = make(&mut s, ROOT_INO, LOST_FOUND, None);
        let mut states = split(&s);
        // Shard 1's image predates the mkdir of /a/b: b is nobody's.
        state(&mut states, 1).del_dirent(a, b"b").unwrap();
        state(&mut states, 1).inodes.get_mut(&a).unwrap().nlink = 2;
        let m = mend(&mut states, t(9)).unwrap();
        let lf = m.lost_found.expect("a lost+found");
        assert_ne!(lf, taken);
        let s0 = state(&mut states, 0);
        assert_eq!(s0.dirents[&(ROOT_INO, b"lost+found.1".to_vec())].0, lf);
        assert_eq!(
            s0.dirents[&(ROOT_INO, LOST_FOUND.as_bytes().to_vec())].0,
            taken
        );
        assert_eq!(s0.dirents[&(lf, format!("#{b}").into_bytes())].0, b);
        links_agree(&states);
    }

    #[test]
    fn an_orphan_awaiting_reclaim_loses_the_name_an_older_image_left() {
        let mut s = root();
        let d = make(&mut s, ROOT_INO, "d", Some(1));
        let f = make(&mut s, d, "f", None);
        let mut states = split(&s);
        // A hard link /l to /d/f in shard 0's image; shard 1's image has f unlinked from both
        // names (nlink 0, awaiting the reaper) and /d/f gone.
        let s0 = state(&mut states, 0);
        s0.put_dirent(ROOT_INO, b"l", f, 40).unwrap();
        let s1 = state(&mut states, 1);
        s1.del_dirent(d, b"f").unwrap();
        s1.inodes.get_mut(&f).unwrap().nlink = 0;
        s1.set_orphan(f, true).unwrap();
        let m = mend(&mut states, t(9)).unwrap();
        assert_eq!(m.dangling, vec![(ROOT_INO, b"l".to_vec(), f)]);
        assert_eq!(
            state(&mut states, 1).inodes[&f].nlink,
            0,
            "still the reaper's"
        );
    }
}
