//! The values the state machine stores and the commands that change them.

use serde::{Deserialize, Serialize};

use super::error::FsError;

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

/// How `Create` treats an existing name (NFSv4 createmode4, plus plain CREATE as `Guarded`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CreateHow {
    /// Fail with `Exists` if the name exists.
    Guarded,
    /// If the name is an existing regular file and a regular file is asked for, succeed with
    /// `created == false` and the existing inode (OPEN UNCHECKED4). Otherwise `Exists`.
    Unchecked,
    /// If the name is an existing regular file created with the same verifier, succeed with
    /// `created == false` (a retransmission); otherwise `Exists`.
    Exclusive([u8; 8]),
}

impl CreateHow {
    /// Whether creating a `kind` object this way over the existing `existing` opens it (true)
    /// or fails with `Exists`.
    pub fn reuses(self, existing: &Inode, kind: &FileKind) -> bool {
        let both_regular = existing.kind == FileKind::Regular && *kind == FileKind::Regular;
        match self {
            CreateHow::Guarded => false,
            CreateHow::Unchecked => both_regular,
            CreateHow::Exclusive(v) => both_regular && existing.create_verifier == Some(v),
        }
    }
}

/// Every mutation of the namespace. Times and inode numbers are chosen by the proposer and carried
/// here, so that `apply` is a pure function of (state, command).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Creates the root directory; issued by `Namespace::open` on an empty store.
    InitRoot { fs_id: u64, time: Time },
    /// Creates `name` in `parent` as a new inode `ino` (from `Namespace::alloc_ino`).
    Create {
        parent: u64,
        name: Vec<u8>,
        ino: u64,
        kind: FileKind,
        mode: u32,
        uid: u32,
        gid: u32,
        time: Time,
        how: CreateHow,
    },
    /// Adds a hard link `parent/name` to the non-directory `ino`.
    Link {
        ino: u64,
        parent: u64,
        name: Vec<u8>,
        time: Time,
    },
    /// Removes a non-directory entry (`IsDir` on a directory).
    Unlink {
        parent: u64,
        name: Vec<u8>,
        time: Time,
    },
    /// Removes an empty directory (`NotDir` on anything else, `NotEmpty` if it has entries).
    Rmdir {
        parent: u64,
        name: Vec<u8>,
        time: Time,
    },
    /// NFSv4 REMOVE: `Unlink` or `Rmdir` depending on what the name is.
    Remove {
        parent: u64,
        name: Vec<u8>,
        time: Time,
    },
    Rename {
        src_parent: u64,
        src_name: Vec<u8>,
        dst_parent: u64,
        dst_name: Vec<u8>,
        time: Time,
    },
    SetAttr {
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<SetTime>,
        mtime: Option<SetTime>,
        time: Time,
    },
    /// Records a data write ending at `end_offset`: size = max(size, end), mtime/ctime/change move.
    Write {
        ino: u64,
        end_offset: u64,
        time: Time,
    },
    /// Deletes an orphan (a regular file whose last link went). `Invalid` if it still has links.
    Forget { ino: u64 },
    /// Records which DSs hold chunk `chunk` of regular file `ino` (empty: forget the record).
    SetMirrors {
        ino: u64,
        chunk: u64,
        mirrors: Vec<u64>,
    },
    /// Does nothing; useful as a barrier.
    Noop,
    /// `Forget` of each listed inode that is still an orphan; any other is skipped, so one
    /// stale entry cannot cost the rest. The reaper's batch: one log record, not one per file.
    ForgetOrphans { inos: Vec<u64> },
    /// `cmd` on behalf of `cred`: `apply` checks Linux's permission rules (`perm`) against the
    /// state it changes, and makes the change as Linux would for that caller (set-id bits
    /// cleared, a new object's owner and group). Commands without it are the server's own.
    /// Last in the enum, so records written before it existed decode unchanged.
    As {
        cred: super::perm::Cred,
        cmd: Box<Command>,
    },
}

impl Command {
    /// The compact on-disk and on-wire form (postcard).
    pub fn encode(&self) -> Result<Vec<u8>, FsError> {
        postcard::to_stdvec(self).map_err(|e| FsError::Io(format!("encode command: {e}")))
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, FsError> {
        postcard::from_bytes(bytes).map_err(|e| FsError::Corrupt(format!("command: {e}")))
    }
}

/// The change of one directory made by a command, for NFSv4 change_info4 (atomic = true).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirChange {
    pub ino: u64,
    pub before: u64,
    pub after: u64,
}

/// What a successful command did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
    /// A regular file lost its last link (by unlink, or being replaced by rename). Its inode stays,
    /// with nlink 0, readable by `getattr`, until the proposer issues `Forget { ino }` — once no
    /// client has it open — and then drops its data.
    pub orphaned: Option<u64>,
    /// A non-regular object (directory, symlink, device, fifo, socket) was deleted outright: it
    /// has no data and cannot be open, so nothing waits for it.
    pub freed: Option<u64>,
}

/// Whole-file-system counters for FSSTAT / space attributes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatFs {
    /// Inodes in use, orphans included.
    pub files: u64,
    /// Sum of the sizes of regular files, orphans included.
    pub bytes: u64,
}

/// Checks a name in `apply` (the protocol layer checks UTF-8 and "."/"..").
pub fn check_name(name: &[u8]) -> Result<(), FsError> {
    if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
        return Err(FsError::Invalid);
    }
    if name.len() > NAME_MAX {
        return Err(FsError::NameTooLong);
    }
    Ok(())
}
