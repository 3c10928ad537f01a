//! The values the state machine stores and the commands that change them.

use serde::{Deserialize, Serialize};

/// The inode number of the root directory, created on first open.
pub const ROOT_INO: u64 = 1;
/// Directory cookies 0, 1 and 2 are reserved by NFSv4 (RFC 8881 §16.24.4), so entries start at 3.
pub const FIRST_COOKIE: u64 = 3;
/// Longest name accepted, in bytes.
pub const NAME_MAX: usize = 255;

/// A point in time, as NFS's nfstime4.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Time {
    pub secs: i64,
    pub nsecs: u32,
}

impl Time {
    pub const fn new(secs: i64, nsecs: u32) -> Self {
        Time { secs, nsecs }
    }

    /// The wall clock now; only proposers call this, never `apply`.
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Time {
            secs: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nsecs: d.subsec_nanos(),
        }
    }
}

/// What kind of object an inode is; kind-specific data rides along.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FileKind {
    Regular,
    Directory,
    Symlink { target: Vec<u8> },
    BlockDev { major: u32, minor: u32 },
    CharDev { major: u32, minor: u32 },
    Fifo,
    Socket,
}

impl FileKind {
    pub fn is_dir(&self) -> bool {
        matches!(self, FileKind::Directory)
    }
}

/// The attributes of one file system object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Inode {
    /// NFS fileid; never reused within one file system.
    pub ino: u64,
    pub kind: FileKind,
    /// Permission bits and set-id/sticky bits (12 bits); the kind is in `kind`.
    pub mode: u32,
    /// Links. Directories count "." and each subdirectory's ".." (2 + subdirs), as POSIX does.
    /// A regular file with nlink 0 is an orphan kept until `Command::Forget`.
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    /// Regular files: bytes; symlinks: target length; directories: a constant 4096.
    pub size: u64,
    pub atime: Time,
    pub mtime: Time,
    pub ctime: Time,
    pub crtime: Time,
    /// NFS change attribute: +1 on every change of this inode, data writes included, so it is
    /// strictly increasing (change_attr_type MONOTONIC_INCR).
    pub change: u64,
    /// Directories: the parent directory (the root is its own parent), for LOOKUPP.
    /// Others: 0 (files may have several parents).
    pub parent: u64,
    /// The verifier of an EXCLUSIVE4(_1) create, kept so a retransmitted create is recognised.
    pub create_verifier: Option<[u8; 8]>,
}

/// One directory entry as READDIR returns it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub ino: u64,
    /// Stable for the life of the entry, never reused in the directory, always >= 3.
    pub cookie: u64,
}

/// How `SetAttr` sets a timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetTime {
    /// The command's own `time` (SET_TO_SERVER_TIME4).
    Now,
    At(Time),
}

/// The inode number under which the placement table holds the drain marks (`SetDrain`): 0 is
/// never an inode (shard 0's counter starts past `ROOT_INO`).
pub const DRAIN_INO: u64 = 0;

/// The change of one directory made by a command, for NFSv4 change_info4 (atomic = true).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirChange {
    pub ino: u64,
    pub before: u64,
    pub after: u64,
}

/// What a successful command did (and, through replication, what the proposer is told).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The object the command was about, after it: the created/linked/renamed/changed inode;
    /// for removals the removed inode as it is after losing the link (nlink already decreased).
    pub inode: Option<Inode>,
    /// `Create`: false when an existing file was returned (`Unchecked`, or an `Exclusive` replay).
    pub created: bool,
    /// The directory changed (the parent; for `Rename` the source directory).
    pub dir: Option<DirChange>,
    /// `Rename`: the target directory (equal to `dir` when renaming within one directory).
    pub dst_dir: Option<DirChange>,
    /// Work this command leaves to whoever runs the state machine (the shard's leader).
    pub effects: Vec<Effect>,
}

/// Work a command leaves outside the state machine. Every replica's `apply` reports the same
/// effects; the shard's leader carries them out (`namespace::EffectSink`). Each is also
/// derivable from the state (`Snapshot::orphans`, `Snapshot::detached`), so a new leader, or
/// a restart, finds what its predecessor left undone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    /// A regular file lost its last link (by unlink, or being replaced by rename). Its inode
    /// stays, with nlink 0, readable by `getattr`, until `Forget` once no client has it open;
    /// then its data goes.
    Orphaned(u64),
    /// An object was deleted outright (a non-regular object, or a forgotten orphan): nothing
    /// may be kept for it any more.
    Freed(u64),
    /// A directory was detached with its contents (`Command::Detach`): the reclaimer of its
    /// shard's leader empties it (`namespace::rmtree`); found again from the state
    /// (`Snapshot::detached`) after a restart or by a new leader.
    Detached(u64),
}

/// Whole-file-system counters for FSSTAT / space attributes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatFs {
    /// Inodes in use, orphans included.
    pub files: u64,
    /// Sum of the sizes of regular files, orphans included.
    pub bytes: u64,
}
