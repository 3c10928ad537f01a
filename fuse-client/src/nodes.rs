//! FUSE node ids and what each names on the server.
//!
//! A fileid is unique only within its file system (fsid), so a node is keyed by both. On the
//! mount root's fsid the node id is the fileid (so hard links are one node and `st_ino` is
//! the server's), with the root's fileid and 1 swapped: FUSE calls the root 1. An object on
//! any other fsid gets a node id of its own from a table (`OTHER_BASE` onwards): cfs serves
//! each snapshot (`DIR/.snapshot/NAME/...`) on a fsid of its own whose objects keep their
//! live files' fileids (mds `nfs/ops/snap.rs`), so on fileids alone a snapshot's file would
//! be its live file's node, pages and attributes. Hard links inside a snapshot share a
//! fileid there, and so one node. The kernel counts lookups; a node, and its table entry,
//! is forgotten when its count drops to zero (the kernel's inode cache bounds the table).
//!
//! Such an object's `st_ino` is its node id, not the server's fileid: fuser 0.18 sends the
//! attributes' ino as the node id (`ReplyEntry`, `ReplyCreate`, `ReplyDirectoryPlus`), and the
//! kernel reports it as `st_ino`. Nor should it be the fileid: a FUSE mount is one device
//! (`st_dev`), so a snapshot's file with its live file's `st_ino` would be the same file to
//! `cp` (which refuses to copy it back: "are the same file"), `tar`, `rsync -H` and `du`. The
//! kernel NFS client shows the fileid because it mounts each snapshot as its own device.
use client::proto::nfs4::Fsid4;
use client::{NfsFh4, Stat};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

pub const ROOT: u64 = 1;

/// The first node id of objects on other fsids than the root's: `0xFFFF << 48`, the range
/// of shard 0xFFFF in cfs's inode numbers (a shard in the top 16 bits,
/// `meta_core::shard`). No fileid of the live fsid is in it: inode numbers are below 2^63
/// (at most 2^15 - 1 shards), and a `.snapshot` directory's fileid, `D | 1 << 63` for a
/// live directory D, has top 16 bits `0x8000 | shard of D`, at most 0xFFFE. 2^48 ids, handed
/// out in turn (`Table::next`); a server numbering its files otherwise could collide here.
pub const OTHER_BASE: u64 = 0xFFFF << 48;
/// How many ids on other fsids the table keeps for objects that have no node (named only as
/// a plain READDIR's `d_ino`, `Nodes::id_of`) before it drops them: the kernel never
/// forgets those, as it was never given them as nodes. Dropped, such an object gets another
/// id when next named; one the kernel is given (`remember`) keeps its id while it has a node.
const UNHELD_MAX: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub struct Node {
    pub fh: NfsFh4,
    nlookup: u64,
    /// Where the node's id came from the table (an object on another fsid than the root's):
    /// its key there, dropped with the node.
    other: Option<(Fsid4, u64)>,
    /// The change attribute when this client last opened or flushed the file: an open that
    /// finds another one drops the kernel's cached pages and attributes (close-to-open).
    pub change: Option<u64>,
    /// Bytes this client wrote past the server's size, not yet made visible there (a
    /// pNFS write is on the data servers before LAYOUTCOMMIT tells the MDS the new size).
    pub local_end: Option<u64>,
    /// The change attribute and size of the attributes the kernel was last given for this
    /// node (by LOOKUP, READDIRPLUS, GETATTR, SETATTR or CREATE), the size raised by this
    /// client's writes as the kernel raises its own: it trusts them for `attr_ttl`, and
    /// `Fs::open` compares them with the OPEN's.
    pub kernel_attrs: Option<KernelAttrs>,
    /// When an open last answered ESTALE to have the kernel look the name up again
    /// (`Fs::open`): the retry that follows must not get another.
    pub relooked: Option<Instant>,
}

/// What the kernel holds of a node's attributes (`Node::kernel_attrs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelAttrs {
    pub change: u64,
    pub size: u64,
}

/// The node ids of objects on other fsids than the root's (the module comment).
#[derive(Default)]
struct Table {
    ids: HashMap<(Fsid4, u64), u64>,
    /// The next id to hand out is `OTHER_BASE | next`.
    next: u64,
    /// Whether `next` came round past 2^48 ids.
    wrapped: bool,
}

struct Inner {
    nodes: HashMap<u64, Node>,
    other: Table,
}

pub struct Nodes {
    root_fsid: Fsid4,
    root_fileid: u64,
    map: Mutex<Inner>,
}

impl Nodes {
    pub fn new(root: NfsFh4, root_fsid: Fsid4, root_fileid: u64) -> Nodes {
        let mut root = Node::new(root, None);
        root.nlookup = 1;
        let nodes = HashMap::from([(ROOT, root)]);
        Nodes {
            root_fsid,
            root_fileid,
            map: Mutex::new(Inner {
                nodes,
                other: Table::default(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node id of the object `fileid` on `fsid`: on the root's fsid the fileid (the root
    /// and 1 swapped), on any other the id the table holds for it, given one if it has none.
    /// For naming an object to the kernel without a node (a plain READDIR's `d_ino`): an id
    /// handed over as a node is `remember`'s, which counts it in the same step (an id with no
    /// node may be dropped in between, `UNHELD_MAX`).
    pub fn id_of(&self, fsid: Fsid4, fileid: u64) -> u64 {
        if fsid == self.root_fsid {
            return self.live_id(fileid);
        }
        Self::other_id(&mut self.lock(), fsid, fileid)
    }

    fn live_id(&self, fileid: u64) -> u64 {
        if fileid == self.root_fileid {
            ROOT
        } else if fileid == ROOT {
            self.root_fileid
        } else {
            fileid
        }
    }

    fn other_id(m: &mut Inner, fsid: Fsid4, fileid: u64) -> u64 {
        if let Some(&id) = m.other.ids.get(&(fsid, fileid)) {
            return id;
        }
        if m.other.ids.len() >= m.nodes.len() + UNHELD_MAX {
            // Ids no node holds were only ever named in listings: nothing refers to them.
            let nodes = &m.nodes;
            m.other.ids.retain(|_, id| nodes.contains_key(id));
        }
        let id = loop {
            let id = OTHER_BASE | m.other.next;
            m.other.next = (m.other.next + 1) & !OTHER_BASE;
            m.other.wrapped |= m.other.next == 0;
            // Past 2^48 ids the count comes round to ids that may still be in use.
            let in_use = || m.nodes.contains_key(&id) || m.other.ids.values().any(|&v| v == id);
            if !m.other.wrapped || !in_use() {
                break id;
            }
        };
        m.other.ids.insert((fsid, fileid), id);
        id
    }

    pub fn fh(&self, ino: u64) -> Option<NfsFh4> {
        self.lock().nodes.get(&ino).map(|n| n.fh.clone())
    }

    pub fn get(&self, ino: u64) -> Option<Node> {
        self.lock().nodes.get(&ino).cloned()
    }

    /// A lookup the kernel will count, answered with `st`: the node is created or its count
    /// raised, and the kernel now holds `st`'s attributes.
    pub fn remember(&self, fh: &NfsFh4, st: &Stat) -> u64 {
        self.remember_keeping(fh, st).0
    }

    /// `remember`, with the attributes the kernel held before (for an entry that then finds
    /// no room in its reply: `forget` it and put them back).
    pub fn remember_keeping(&self, fh: &NfsFh4, st: &Stat) -> (u64, Option<KernelAttrs>) {
        let mut m = self.lock();
        let (ino, other) = if st.fsid == self.root_fsid {
            (self.live_id(st.fileid), None)
        } else {
            let key = (st.fsid, st.fileid);
            (Self::other_id(&mut m, key.0, key.1), Some(key))
        };
        let n = m
            .nodes
            .entry(ino)
            .or_insert_with(|| Node::new(fh.clone(), other));
        n.nlookup += 1;
        let held = n.kernel_attrs.replace(KernelAttrs {
            change: st.change,
            size: st.size.max(n.local_end.unwrap_or(0)),
        });
        (ino, held)
    }

    pub fn forget(&self, ino: u64, n: u64) {
        if ino == ROOT {
            return;
        }
        let mut m = self.lock();
        let Some(node) = m.nodes.get_mut(&ino) else {
            return;
        };
        node.nlookup = node.nlookup.saturating_sub(n);
        if node.nlookup == 0 {
            if let Some(key) = node.other {
                m.other.ids.remove(&key);
            }
            m.nodes.remove(&ino);
        }
    }

    pub fn update(&self, ino: u64, f: impl FnOnce(&mut Node)) {
        if let Some(n) = self.lock().nodes.get_mut(&ino) {
            f(n);
        }
    }

    pub fn len(&self) -> usize {
        self.lock().nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().nodes.is_empty()
    }
}

impl Node {
    fn new(fh: NfsFh4, other: Option<(Fsid4, u64)>) -> Node {
        Node {
            fh,
            nlookup: 0,
            other,
            change: None,
            local_end: None,
            kernel_attrs: None,
            relooked: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: Fsid4 = Fsid4 { major: 9, minor: 0 };
    const SNAP: Fsid4 = Fsid4 { major: 9, minor: 4 };

    fn st(fsid: Fsid4, fileid: u64) -> Stat {
        Stat {
            fsid,
            fileid,
            ..Default::default()
        }
    }

    fn fh(b: u8) -> NfsFh4 {
        NfsFh4::from(vec![b; 8])
    }

    #[test]
    fn root_is_one_and_links_are_one_node() {
        let n = Nodes::new(fh(0), LIVE, 7);
        assert_eq!(n.id_of(LIVE, 7), ROOT);
        assert_eq!(n.id_of(LIVE, ROOT), 7, "fileid 1 takes the root's place");
        let a = n.remember(&fh(1), &st(LIVE, 50));
        let b = n.remember(&fh(2), &st(LIVE, 50));
        assert_eq!(a, b);
        assert_eq!(a, 50, "on the root's fsid the node id is the fileid");
        assert_eq!(n.fh(a), Some(fh(1)), "the first handle stays");
        n.forget(a, 1);
        assert!(n.fh(a).is_some());
        n.forget(a, 1);
        assert!(n.fh(a).is_none());
        n.forget(ROOT, 100);
        assert!(n.fh(ROOT).is_some(), "the root is never forgotten");
    }

    #[test]
    fn objects_on_another_fsid_get_ids_of_their_own_until_forgotten() {
        let n = Nodes::new(fh(0), LIVE, 7);
        let snapdir = 7 | 1 << 63;
        assert_eq!(
            n.id_of(LIVE, snapdir),
            snapdir,
            ".snapshot is on the live fsid"
        );
        let live = n.remember(&fh(1), &st(LIVE, 50));
        // The snapshot's root keeps the live root's fileid, its file the live file's.
        let root = n.remember(&fh(2), &st(SNAP, 7));
        let file = n.remember(&fh(3), &st(SNAP, 50));
        let other = n.remember(&fh(4), &st(Fsid4 { major: 9, minor: 5 }, 50));
        for id in [root, file, other] {
            assert!(
                id >= OTHER_BASE && id > snapdir,
                "{id:#x} in the reserved range"
            );
            assert!(![ROOT, live, snapdir].contains(&id));
        }
        assert_ne!(root, file);
        assert_ne!(file, other, "each fsid apart");
        assert_eq!(n.fh(live), Some(fh(1)));
        assert_eq!(n.fh(file), Some(fh(3)));
        // A hard link inside the snapshot: the same (fsid, fileid), the same node.
        assert_eq!(n.remember(&fh(5), &st(SNAP, 50)), file);
        assert_eq!(n.id_of(SNAP, 50), file);
        assert_eq!(n.fh(file), Some(fh(3)));
        n.forget(file, 2);
        assert!(n.fh(file).is_none());
        assert!(n.fh(live).is_some(), "the live node stays");
        let again = n.remember(&fh(6), &st(SNAP, 50));
        assert_ne!(again, file, "forgotten: the table entry went with the node");
        assert_eq!(n.lock().other.ids.len(), 3, "root, file, other");
        for id in [root, again, other] {
            n.forget(id, 1);
        }
        assert!(n.lock().other.ids.is_empty());
        assert_eq!(n.len(), 2, "the root and the live file");
    }

    #[test]
    fn ids_named_only_in_listings_are_bounded() {
        let n = Nodes::new(fh(0), LIVE, 7);
        let held = n.remember(&fh(1), &st(SNAP, 3));
        for fileid in 10..10 + 3 * UNHELD_MAX as u64 {
            n.id_of(SNAP, fileid);
        }
        let m = n.lock();
        assert!(m.other.ids.len() <= m.nodes.len() + UNHELD_MAX);
        assert_eq!(m.other.ids.get(&(SNAP, 3)), Some(&held), "a held id stays");
    }
}
