//! NFSv4 attributes of an inode, and the attributes a client may set.
use crate::error::{NfsError, NfsResult};
use crate::node::Mds;
use meta::namespace::{FileKind, Inode, SetTime, Time};
use proto::nfs4::attr::*;
use proto::nfs4::basic::{Fattr4, Fsid4, NfsFtype4, Nfstime4, Settime4, Specdata4};
use proto::xdr::Opaque;

/// Every attribute this server returns (built once: GETATTR is the hottest operation).
pub fn supported() -> &'static Bitmap {
    static SUPPORTED: std::sync::LazyLock<Bitmap> = std::sync::LazyLock::new(|| {
        Bitmap::from_bits(&[
            FATTR4_SUPPORTED_ATTRS,
            FATTR4_TYPE,
            FATTR4_FH_EXPIRE_TYPE,
            FATTR4_CHANGE,
            FATTR4_SIZE,
            FATTR4_LINK_SUPPORT,
            FATTR4_SYMLINK_SUPPORT,
            FATTR4_NAMED_ATTR,
            FATTR4_FSID,
            FATTR4_UNIQUE_HANDLES,
            FATTR4_LEASE_TIME,
            FATTR4_RDATTR_ERROR,
            FATTR4_ACLSUPPORT,
            FATTR4_CANSETTIME,
            FATTR4_CASE_INSENSITIVE,
            FATTR4_CASE_PRESERVING,
            FATTR4_CHOWN_RESTRICTED,
            FATTR4_FILEHANDLE,
            FATTR4_FILEID,
            FATTR4_FILES_AVAIL,
            FATTR4_FILES_FREE,
            FATTR4_FILES_TOTAL,
            FATTR4_HOMOGENEOUS,
            FATTR4_MAXFILESIZE,
            FATTR4_MAXLINK,
            FATTR4_MAXNAME,
            FATTR4_MAXREAD,
            FATTR4_MAXWRITE,
            FATTR4_MODE,
            FATTR4_NO_TRUNC,
            FATTR4_NUMLINKS,
            FATTR4_OWNER,
            FATTR4_OWNER_GROUP,
            FATTR4_RAWDEV,
            FATTR4_SPACE_AVAIL,
            FATTR4_SPACE_FREE,
            FATTR4_SPACE_TOTAL,
            FATTR4_SPACE_USED,
            FATTR4_TIME_ACCESS,
            FATTR4_TIME_ACCESS_SET,
            FATTR4_TIME_CREATE,
            FATTR4_TIME_DELTA,
            FATTR4_TIME_METADATA,
            FATTR4_TIME_MODIFY,
            FATTR4_TIME_MODIFY_SET,
            FATTR4_MOUNTED_ON_FILEID,
            FATTR4_SUPPATTR_EXCLCREAT,
            FATTR4_CLONE_BLKSIZE,
            FATTR4_CHANGE_ATTR_TYPE,
            FATTR4_FS_LAYOUT_TYPES,
            FATTR4_LAYOUT_BLKSIZE,
            FATTR4_XATTR_SUPPORT,
            // RFC 9754 (`open_arguments`, `OPEN4_SHARE_ACCESS_WANT_DELEG_TIMESTAMPS`): Linux
            // asks for delegated timestamps only from a server that lists all three.
            FATTR4_TIME_DELEG_ACCESS,
            FATTR4_TIME_DELEG_MODIFY,
            FATTR4_OPEN_ARGUMENTS,
        ])
    });
    &SUPPORTED
}

/// What OPEN takes (RFC 9754 §3), as `ops::open` handles it: every share access and deny;
/// of the wants, any, none, cancel and delegated timestamps (a delegation's holder keeps
/// the times); every claim but CLAIM_DELEGATE_PREV and CLAIM_DELEG_PREV_FH (NOTSUPP: no
/// delegation survives a client's restart); every create mode. knfsd lists the two
/// DELEG_PREV claims although it answers them NOTSUPP too.
///
/// Not listed: READ_DELEG and WRITE_DELEG (handled, but RFC 9754's
/// `open_args_share_access_want4` has no bit for them), SIGNAL_DELEG_WHEN_RESRC_AVAIL and
/// PUSH_DELEG_WHEN_UNCONTENDED (never promised), and OPEN_XOR_DELEGATION (an OPEN always
/// returns an open stateid).
pub fn open_arguments() -> OpenArguments4 {
    let bits = |b: &[u32]| Bitmap::from_bits(b).to_vec();
    OpenArguments4 {
        oa_share_access: bits(&[
            OPEN_ARGS_SHARE_ACCESS_READ,
            OPEN_ARGS_SHARE_ACCESS_WRITE,
            OPEN_ARGS_SHARE_ACCESS_BOTH,
        ]),
        oa_share_deny: bits(&[
            OPEN_ARGS_SHARE_DENY_NONE,
            OPEN_ARGS_SHARE_DENY_READ,
            OPEN_ARGS_SHARE_DENY_WRITE,
            OPEN_ARGS_SHARE_DENY_BOTH,
        ]),
        oa_share_access_want: bits(&[
            OPEN_ARGS_SHARE_ACCESS_WANT_ANY_DELEG,
            OPEN_ARGS_SHARE_ACCESS_WANT_NO_DELEG,
            OPEN_ARGS_SHARE_ACCESS_WANT_CANCEL,
            OPEN_ARGS_SHARE_ACCESS_WANT_DELEG_TIMESTAMPS,
        ]),
        oa_open_claim: bits(&[
            OPEN_ARGS_OPEN_CLAIM_NULL,
            OPEN_ARGS_OPEN_CLAIM_PREVIOUS,
            OPEN_ARGS_OPEN_CLAIM_DELEGATE_CUR,
            OPEN_ARGS_OPEN_CLAIM_FH,
            OPEN_ARGS_OPEN_CLAIM_DELEG_CUR_FH,
        ]),
        oa_create_mode: bits(&[
            OPEN_ARGS_CREATEMODE_UNCHECKED4,
            OPEN_ARGS_CREATE_MODE_GUARDED,
            OPEN_ARGS_CREATEMODE_EXCLUSIVE4,
            OPEN_ARGS_CREATE_MODE_EXCLUSIVE4_1,
        ]),
    }
}

/// Attributes SETATTR (and CREATE/OPEN) accept.
pub fn settable() -> &'static Bitmap {
    static SETTABLE: std::sync::LazyLock<Bitmap> = std::sync::LazyLock::new(|| {
        Bitmap::from_bits(&[
            FATTR4_SIZE,
            FATTR4_MODE,
            FATTR4_OWNER,
            FATTR4_OWNER_GROUP,
            FATTR4_TIME_ACCESS_SET,
            FATTR4_TIME_MODIFY_SET,
        ])
    });
    &SETTABLE
}

fn t(x: Time) -> Nfstime4 {
    Nfstime4 {
        seconds: x.secs,
        nseconds: x.nsecs,
    }
}

fn ftype(k: &FileKind) -> NfsFtype4 {
    match k {
        FileKind::Regular => NfsFtype4::Reg,
        FileKind::Directory => NfsFtype4::Dir,
        FileKind::Symlink { .. } => NfsFtype4::Lnk,
        FileKind::BlockDev { .. } => NfsFtype4::Blk,
        FileKind::CharDev { .. } => NfsFtype4::Chr,
        FileKind::Fifo => NfsFtype4::Fifo,
        FileKind::Socket => NfsFtype4::Sock,
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct FsSpace {
    pub total: u64,
    pub free: u64,
    pub avail: u64,
    pub files_total: u64,
    pub files_free: u64,
}

/// Space of the file system holding the data directory.
pub fn fs_space(mds: &Mds) -> FsSpace {
    let used_files = mds.ns.statfs().map(|s| s.files).unwrap_or(0);
    let mut s = FsSpace {
        files_total: 1 << 32,
        files_free: (1u64 << 32).saturating_sub(used_files),
        ..Default::default()
    };
    if let Ok(p) = std::ffi::CString::new(mds.data_path.as_os_str().as_encoded_bytes()) {
        let mut v: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: p is a valid NUL-terminated path and v a properly sized out-parameter.
        if unsafe { libc::statvfs(p.as_ptr(), &mut v) } == 0 {
            let bs = v.f_frsize as u64;
            s.total = v.f_blocks as u64 * bs;
            s.free = v.f_bfree as u64 * bs;
            s.avail = v.f_bavail as u64 * bs;
        }
    }
    s
}

/// The attributes of `i`, as many as `want` asks for. The fixed-size values are computed
/// whether asked or not (cheap); the ones that allocate (bitmaps, handles, owner strings,
/// OPEN's argument lists) and file-system space (a system call) only when asked: a GETATTR
/// built them all, ~17 allocations, to encode a dozen numbers (METADATA-BENCH run 17).
pub fn file_attrs(mds: &Mds, i: &Inode, want: &Bitmap, space_used: u64) -> FileAttrs {
    let asked = |bit| want.get(bit);
    let mut a = FileAttrs {
        supported_attrs: asked(FATTR4_SUPPORTED_ATTRS).then(|| supported().clone()),
        ftype: Some(ftype(&i.kind)),
        // Persistent handles (RFC 8881 §4.2.3).
        fh_expire_type: Some(0),
        change: Some(i.change),
        size: Some(match &i.kind {
            FileKind::Symlink { target } => target.len() as u64,
            _ => i.size,
        }),
        link_support: Some(true),
        symlink_support: Some(true),
        named_attr: Some(false),
        fsid: Some(Fsid4 {
            major: mds.handles.fs_id,
            minor: 0,
        }),
        unique_handles: Some(true),
        lease_time: Some(mds.nfs.lease_seconds),
        rdattr_error: Some(0),
        aclsupport: Some(0),
        cansettime: Some(true),
        case_insensitive: Some(false),
        case_preserving: Some(true),
        chown_restricted: Some(true),
        filehandle: asked(FATTR4_FILEHANDLE).then(|| mds.handles.handle_of(i.ino)),
        fileid: Some(i.ino),
        homogeneous: Some(true),
        maxfilesize: Some(i64::MAX as u64),
        maxlink: Some(u32::MAX),
        maxname: Some(255),
        maxread: Some(u64::from(crate::limits::MAX_IO)),
        maxwrite: Some(u64::from(crate::limits::MAX_IO)),
        mode: Some(i.mode & 0o7777),
        no_trunc: Some(true),
        numlinks: Some(i.nlink),
        owner: asked(FATTR4_OWNER).then(|| Opaque(i.uid.to_string().into_bytes())),
        owner_group: asked(FATTR4_OWNER_GROUP).then(|| Opaque(i.gid.to_string().into_bytes())),
        rawdev: Some(match i.kind {
            FileKind::BlockDev { major, minor } | FileKind::CharDev { major, minor } => Specdata4 {
                specdata1: major,
                specdata2: minor,
            },
            _ => Specdata4::default(),
        }),
        space_used: Some(space_used),
        time_access: Some(t(i.atime)),
        time_create: Some(t(i.crtime)),
        time_delta: Some(Nfstime4 {
            seconds: 0,
            nseconds: 1,
        }),
        time_metadata: Some(t(i.ctime)),
        time_modify: Some(t(i.mtime)),
        mounted_on_fileid: Some(i.ino),
        suppattr_exclcreat: asked(FATTR4_SUPPATTR_EXCLCREAT).then(|| settable().clone()),
        clone_blksize: Some(4096),
        // NFS4_CHANGE_TYPE_IS_MONOTONIC_INCR: lets the client order changes.
        change_attr_type: Some(1),
        // With data servers the client loads its flexfiles driver on seeing this; without, the
        // empty list tells it to do all I/O through us.
        fs_layout_types: asked(FATTR4_FS_LAYOUT_TYPES).then(|| match mds.cluster() {
            Some(_) => vec![proto::nfs4::pnfs::LAYOUT4_FLEX_FILES],
            None => Vec::new(),
        }),
        layout_blksize: Some(match mds.cluster() {
            Some(c) => u32::try_from(c.geometry.chunk_size()).unwrap_or(u32::MAX),
            None => crate::limits::MAX_IO,
        }),
        // User extended attributes (RFC 8276) on files and directories (`ops::xattr`): the
        // Linux client only sends the xattr operations to a file system that says so.
        xattr_support: Some(true),
        // time_deleg_access and time_deleg_modify are the holder's to report (SETATTR,
        // CB_GETATTR): a GETATTR leaves them out, as knfsd does.
        open_arguments: asked(FATTR4_OPEN_ARGUMENTS).then(open_arguments),
        ..Default::default()
    };
    let space_bits = [
        FATTR4_SPACE_AVAIL,
        FATTR4_SPACE_FREE,
        FATTR4_SPACE_TOTAL,
        FATTR4_FILES_AVAIL,
        FATTR4_FILES_FREE,
        FATTR4_FILES_TOTAL,
    ];
    if space_bits.iter().any(|b| asked(*b)) {
        let s = fs_space(mds);
        a.space_avail = Some(s.avail);
        a.space_free = Some(s.free);
        a.space_total = Some(s.total);
        a.files_avail = Some(s.files_free);
        a.files_free = Some(s.files_free);
        a.files_total = Some(s.files_total);
    }
    a
}

/// Encodes the requested attributes of `i`.
pub fn encode(mds: &Mds, i: &Inode, want: &Bitmap) -> Fattr4 {
    // Allocation is not tracked per object yet: report the size rounded up to blocks.
    let used = i.size.div_ceil(4096) * 4096;
    file_attrs(mds, i, want, used).encode(&want.intersection(supported()))
}

/// What a client asked to change, already mapped to namespace terms.
#[derive(Debug, Default, Clone)]
pub struct SetAttrs {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SetTime>,
    pub mtime: Option<SetTime>,
    pub mask: Bitmap,
}

impl SetAttrs {
    /// The change as the permission rules see it.
    pub fn request(&self) -> meta::namespace::perm::AttrRequest {
        meta::namespace::perm::AttrRequest::new(
            self.mode, self.uid, self.gid, self.size, self.atime, self.mtime,
        )
    }
}

/// Parses an owner string: numeric ids (what Linux sends with AUTH_SYS, and with Kerberos
/// when it has no idmapper), optionally with "@domain" which is ignored, or `name@domain`
/// (what Linux's idmapper sends with Kerberos), looked up in the name service.
fn parse_id(s: &Opaque, by_name: fn(&str) -> Option<u32>) -> NfsResult<u32> {
    let s = s.as_str().ok_or(NfsError::BadOwner)?;
    let s = s.split('@').next().unwrap_or(s);
    match s.parse::<u32>() {
        Ok(id) => Ok(id),
        Err(_) if !s.is_empty() => by_name(s).ok_or(NfsError::BadOwner),
        Err(_) => Err(NfsError::BadOwner),
    }
}

fn parse_owner(s: &Opaque) -> NfsResult<u32> {
    parse_id(s, |n| krb::identity::user(n).map(|i| i.uid))
}

fn parse_group(s: &Opaque) -> NfsResult<u32> {
    parse_id(s, krb::identity::group)
}

fn settime(s: Settime4) -> SetTime {
    match s {
        Settime4::ServerTime => SetTime::Now,
        Settime4::ClientTime(t) => SetTime::At(time(t)),
    }
}

/// Decodes a client's fattr4 for setting. Read-only attributes are NFS4ERR_INVAL, unknown
/// ones NFS4ERR_ATTRNOTSUPP.
pub fn decode_settable(f: &Fattr4) -> NfsResult<SetAttrs> {
    let a = decode_fattr(f)?;
    settable_from(&a, Bitmap::from_words(&f.attrmask))
}

/// The times a delegation's holder reports in SETATTR (RFC 9754 §5.2).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HeldTimes {
    pub atime: Option<Time>,
    pub mtime: Option<Time>,
}

impl HeldTimes {
    pub fn is_empty(&self) -> bool {
        self.atime.is_none() && self.mtime.is_none()
    }
}

/// SETATTR's attributes: what `decode_settable` takes, and the delegated times, which only
/// SETATTR takes (from the delegation's holder, under its stateid: `ops::attr`). CREATE and
/// OPEN's create attributes go through `decode_settable`, which does not support them.
pub fn decode_setattr(f: &Fattr4) -> NfsResult<(SetAttrs, HeldTimes)> {
    let a = decode_fattr(f)?;
    let mut mask = Bitmap::from_words(&f.attrmask);
    mask.clear(FATTR4_TIME_DELEG_ACCESS);
    mask.clear(FATTR4_TIME_DELEG_MODIFY);
    let held = HeldTimes {
        atime: a.time_deleg_access.map(time),
        mtime: a.time_deleg_modify.map(time),
    };
    Ok((settable_from(&a, mask)?, held))
}

fn time(t: Nfstime4) -> Time {
    Time {
        secs: t.seconds,
        nsecs: t.nseconds,
    }
}

fn decode_fattr(f: &Fattr4) -> NfsResult<FileAttrs> {
    FileAttrs::decode(f).map_err(|e| match e.status() {
        proto::nfs4::basic::Nfsstat4::Attrnotsupp => NfsError::AttrNotSupp,
        proto::nfs4::basic::Nfsstat4::Badxdr => NfsError::BadXdr,
        _ => NfsError::Inval,
    })
}

/// The settable attributes of `a` that `mask` names.
fn settable_from(a: &FileAttrs, mask: Bitmap) -> NfsResult<SetAttrs> {
    let settable = settable();
    for bit in mask.iter() {
        if !settable.get(bit) {
            // A known read-only attribute cannot be set (INVAL); a writable one we do not
            // implement, or an unknown one, is not supported.
            return Err(if FileAttrs::KNOWN.contains(&bit) && !is_writable(bit) {
                NfsError::Inval
            } else {
                NfsError::AttrNotSupp
            });
        }
    }
    Ok(SetAttrs {
        mode: a.mode,
        uid: a.owner.as_ref().map(parse_owner).transpose()?,
        gid: a.owner_group.as_ref().map(parse_group).transpose()?,
        size: a.size,
        atime: a.time_access_set.map(settime),
        mtime: a.time_modify_set.map(settime),
        mask,
    })
}

/// Whether `f` matches the attributes of `i` exactly (VERIFY/NVERIFY).
pub fn matches(mds: &Mds, i: &Inode, f: &Fattr4) -> NfsResult<bool> {
    let mask = Bitmap::from_words(&f.attrmask);
    if !mask.is_subset(supported()) {
        return Err(NfsError::AttrNotSupp);
    }
    // Set-only as far as this server is concerned: GETATTR never returns them.
    if mask.get(FATTR4_RDATTR_ERROR)
        || mask.get(FATTR4_TIME_ACCESS_SET)
        || mask.get(FATTR4_TIME_MODIFY_SET)
        || mask.get(FATTR4_TIME_DELEG_ACCESS)
        || mask.get(FATTR4_TIME_DELEG_MODIFY)
    {
        return Err(NfsError::Inval);
    }
    let mine = encode(mds, i, &mask);
    Ok(mine.attrmask == f.attrmask && mine.attr_vals == f.attr_vals)
}
