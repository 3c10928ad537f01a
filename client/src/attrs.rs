//! The attributes the helpers ask for and a plain view of them.
use crate::error::Result;
use proto::nfs4::*;
use proto::xdr::Opaque;

/// What `getattr`, `readdir` and the open helpers request.
pub const STAT_ATTRS: &[u32] = &[
    FATTR4_TYPE,
    FATTR4_CHANGE,
    FATTR4_SIZE,
    FATTR4_FSID,
    FATTR4_FILEID,
    FATTR4_MODE,
    FATTR4_NUMLINKS,
    FATTR4_OWNER,
    FATTR4_OWNER_GROUP,
    FATTR4_RAWDEV,
    FATTR4_SPACE_USED,
    FATTR4_TIME_ACCESS,
    FATTR4_TIME_METADATA,
    FATTR4_TIME_MODIFY,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileType {
    #[default]
    Regular,
    Directory,
    Symlink,
    Block,
    Char,
    Socket,
    Fifo,
    Other,
}

impl FileType {
    fn from_wire(t: Option<NfsFtype4>) -> Self {
        match t {
            Some(NfsFtype4::Reg) | None => FileType::Regular,
            Some(NfsFtype4::Dir) => FileType::Directory,
            Some(NfsFtype4::Lnk) => FileType::Symlink,
            Some(NfsFtype4::Blk) => FileType::Block,
            Some(NfsFtype4::Chr) => FileType::Char,
            Some(NfsFtype4::Sock) => FileType::Socket,
            Some(NfsFtype4::Fifo) => FileType::Fifo,
            Some(_) => FileType::Other,
        }
    }
    /// The `ls -l` type letter.
    pub fn letter(self) -> char {
        match self {
            FileType::Regular => '-',
            FileType::Directory => 'd',
            FileType::Symlink => 'l',
            FileType::Block => 'b',
            FileType::Char => 'c',
            FileType::Socket => 's',
            FileType::Fifo => 'p',
            FileType::Other => '?',
        }
    }
}

/// Attributes of one file; anything the server did not return is zero/empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stat {
    pub ftype: FileType,
    pub size: u64,
    pub mode: u32,
    pub nlink: u32,
    pub owner: String,
    pub group: String,
    /// The file system the object is on: a fileid is unique only within it (cfs gives each
    /// snapshot a fsid of its own, whose objects keep their live files' fileids).
    pub fsid: Fsid4,
    pub fileid: u64,
    pub change: u64,
    pub rawdev: (u32, u32),
    pub space_used: u64,
    pub atime: Nfstime4,
    pub mtime: Nfstime4,
    pub ctime: Nfstime4,
}

fn text(o: &Option<Opaque>) -> String {
    o.as_ref()
        .map(|s| String::from_utf8_lossy(s.as_bytes()).into_owned())
        .unwrap_or_default()
}

impl From<&FileAttrs> for Stat {
    fn from(a: &FileAttrs) -> Self {
        Stat {
            ftype: FileType::from_wire(a.ftype),
            size: a.size.unwrap_or(0),
            mode: a.mode.unwrap_or(0),
            nlink: a.numlinks.unwrap_or(0),
            owner: text(&a.owner),
            group: text(&a.owner_group),
            fsid: a.fsid.unwrap_or_default(),
            fileid: a.fileid.unwrap_or(0),
            change: a.change.unwrap_or(0),
            rawdev: a
                .rawdev
                .map(|r| (r.specdata1, r.specdata2))
                .unwrap_or((0, 0)),
            space_used: a.space_used.unwrap_or(0),
            atime: a.time_access.unwrap_or_default(),
            mtime: a.time_modify.unwrap_or_default(),
            ctime: a.time_metadata.unwrap_or_default(),
        }
    }
}

impl Stat {
    pub fn from_fattr(f: &Fattr4) -> Result<Stat> {
        Ok(Stat::from(&FileAttrs::decode(f)?))
    }
    pub fn is_dir(&self) -> bool {
        self.ftype == FileType::Directory
    }
}

/// One directory entry with its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub cookie: u64,
    pub stat: Stat,
}

/// Attributes to set (SETATTR, or at creation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetAttrs {
    pub mode: Option<u32>,
    pub size: Option<u64>,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub atime: Option<Settime4>,
    pub mtime: Option<Settime4>,
}

impl SetAttrs {
    pub fn mode(mode: u32) -> Self {
        SetAttrs {
            mode: Some(mode),
            ..Default::default()
        }
    }
    pub fn to_fattr(&self) -> Fattr4 {
        FileAttrs {
            mode: self.mode,
            size: self.size,
            owner: self.owner.as_deref().map(Opaque::from),
            owner_group: self.group.as_deref().map(Opaque::from),
            time_access_set: self.atime,
            time_modify_set: self.mtime,
            ..Default::default()
        }
        .encode_all()
    }
}
