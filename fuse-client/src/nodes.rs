//! FUSE node ids and what each names on the server. A node id is the file's NFS fileid (so
//! hard links are one node and `st_ino` is the server's), with the root's fileid and 1
//! swapped: FUSE calls the root 1. The kernel counts lookups; a node is forgotten when its
//! count drops to zero (the kernel's inode cache bounds the table).
use client::{NfsFh4, Stat};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

pub const ROOT: u64 = 1;

#[derive(Debug, Clone)]
pub struct Node {
    pub fh: NfsFh4,
    nlookup: u64,
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

pub struct Nodes {
    root_fileid: u64,
    map: Mutex<HashMap<u64, Node>>,
}

impl Nodes {
    pub fn new(root: NfsFh4, root_fileid: u64) -> Nodes {
        let mut map = HashMap::new();
        map.insert(
            ROOT,
            Node {
                fh: root,
                nlookup: 1,
                change: None,
                local_end: None,
                kernel_attrs: None,
                relooked: None,
            },
        );
        Nodes {
            root_fileid,
            map: Mutex::new(map),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Node>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node id of a fileid.
    pub fn id_of(&self, fileid: u64) -> u64 {
        if fileid == self.root_fileid {
            ROOT
        } else if fileid == ROOT {
            self.root_fileid
        } else {
            fileid
        }
    }

    pub fn fh(&self, ino: u64) -> Option<NfsFh4> {
        self.lock().get(&ino).map(|n| n.fh.clone())
    }

    pub fn get(&self, ino: u64) -> Option<Node> {
        self.lock().get(&ino).cloned()
    }

    /// A lookup the kernel will count, answered with `st`: the node is created or its count
    /// raised, and the kernel now holds `st`'s attributes.
    pub fn remember(&self, fh: &NfsFh4, st: &Stat) -> u64 {
        let ino = self.id_of(st.fileid);
        let mut m = self.lock();
        let n = m.entry(ino).or_insert_with(|| Node {
            fh: fh.clone(),
            nlookup: 0,
            change: None,
            local_end: None,
            kernel_attrs: None,
            relooked: None,
        });
        n.nlookup += 1;
        n.kernel_attrs = Some(KernelAttrs {
            change: st.change,
            size: st.size.max(n.local_end.unwrap_or(0)),
        });
        ino
    }

    pub fn forget(&self, ino: u64, n: u64) {
        if ino == ROOT {
            return;
        }
        let mut m = self.lock();
        if let Some(node) = m.get_mut(&ino) {
            node.nlookup = node.nlookup.saturating_sub(n);
            if node.nlookup == 0 {
                m.remove(&ino);
            }
        }
    }

    pub fn update(&self, ino: u64, f: impl FnOnce(&mut Node)) {
        if let Some(n) = self.lock().get_mut(&ino) {
            f(n);
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(fileid: u64) -> Stat {
        Stat {
            fileid,
            ..Default::default()
        }
    }

    #[test]
    fn root_is_one_and_links_are_one_node() {
        let fh = |b: u8| NfsFh4::from(vec![b; 8]);
        let n = Nodes::new(fh(0), 7);
        assert_eq!(n.id_of(7), ROOT);
        assert_eq!(n.id_of(ROOT), 7, "fileid 1 takes the root's place");
        let a = n.remember(&fh(1), &st(50));
        let b = n.remember(&fh(2), &st(50));
        assert_eq!(a, b);
        assert_eq!(n.fh(a), Some(fh(1)), "the first handle stays");
        n.forget(a, 1);
        assert!(n.fh(a).is_some());
        n.forget(a, 1);
        assert!(n.fh(a).is_none());
        n.forget(ROOT, 100);
        assert!(n.fh(ROOT).is_some(), "the root is never forgotten");
    }
}
