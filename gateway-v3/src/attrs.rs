//! NFSv3 attributes from NFSv4 ones, and the other way for SETATTR and creates.
use crate::creds::Cred;
use proto::nfs3::*;
use proto::nfs4::*;
use proto::xdr::Opaque;

/// What every GETATTR upstream asks for: enough for `fattr3`.
pub const ATTRS: &[u32] = &[
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

/// `ATTRS` and the file handle: what READDIRPLUS asks for per entry.
pub fn attrs_and_fh() -> Vec<u32> {
    let mut v = ATTRS.to_vec();
    v.push(FATTR4_FILEHANDLE);
    v
}

/// A numeric owner string ("1000"); anything else (cfs sends numbers only) is nobody.
fn id_of(s: &Option<Opaque>) -> u32 {
    s.as_ref()
        .and_then(|o| std::str::from_utf8(o.as_bytes()).ok())
        .and_then(|t| t.parse().ok())
        .unwrap_or(65534)
}

fn time3(t: Option<Nfstime4>) -> Nfstime3 {
    let t = t.unwrap_or_default();
    Nfstime3 {
        seconds: t.seconds.clamp(0, i64::from(u32::MAX)) as u32,
        nseconds: t.nseconds,
    }
}

fn ftype3(t: Option<NfsFtype4>) -> Ftype3 {
    match t {
        Some(NfsFtype4::Dir) => Ftype3::Dir,
        Some(NfsFtype4::Blk) => Ftype3::Blk,
        Some(NfsFtype4::Chr) => Ftype3::Chr,
        Some(NfsFtype4::Lnk) => Ftype3::Lnk,
        Some(NfsFtype4::Sock) => Ftype3::Sock,
        Some(NfsFtype4::Fifo) => Ftype3::Fifo,
        _ => Ftype3::Reg,
    }
}

/// One fsid for the whole file system (v3 clients take a change of fsid for a mount point).
pub fn fsid3(a: &FileAttrs) -> u64 {
    a.fsid
        .map(|f| f.major ^ f.minor.rotate_left(32))
        .unwrap_or(0)
}

pub fn fattr3(a: &FileAttrs) -> Fattr3 {
    let rdev = a.rawdev.unwrap_or_default();
    Fattr3 {
        ftype: ftype3(a.ftype),
        mode: a.mode.unwrap_or(0) & 0o7777,
        nlink: a.numlinks.unwrap_or(1),
        uid: id_of(&a.owner),
        gid: id_of(&a.owner_group),
        size: a.size.unwrap_or(0),
        used: a.space_used.unwrap_or(0),
        rdev: Specdata3 {
            specdata1: rdev.specdata1,
            specdata2: rdev.specdata2,
        },
        fsid: fsid3(a),
        fileid: a.fileid.unwrap_or(0),
        atime: time3(a.time_access),
        mtime: time3(a.time_modify),
        ctime: time3(a.time_metadata),
    }
}

pub fn wcc_attr(a: &FileAttrs) -> WccAttr {
    WccAttr {
        size: a.size.unwrap_or(0),
        mtime: time3(a.time_modify),
        ctime: time3(a.time_metadata),
    }
}

/// `wcc_data` from the attributes before and after (either may be missing).
pub fn wcc(before: Option<&FileAttrs>, after: Option<&FileAttrs>) -> WccData {
    WccData {
        before: before.map(wcc_attr),
        after: after.map(fattr3),
    }
}

fn settime4(t: SetTime3) -> Option<Settime4> {
    match t {
        SetTime3::DontChange => None,
        SetTime3::ServerTime => Some(Settime4::ServerTime),
        SetTime3::ClientTime(t) => Some(Settime4::ClientTime(Nfstime4 {
            seconds: i64::from(t.seconds),
            nseconds: t.nseconds,
        })),
    }
}

/// `sattr3` as the attributes of SETATTR, CREATE or OPEN. Owners go as numeric strings.
pub fn sattr(s: &Sattr3) -> FileAttrs {
    FileAttrs {
        mode: s.mode.map(|m| m & 0o7777),
        size: s.size,
        owner: s.uid.map(|u| Opaque::from(u.to_string().as_str())),
        owner_group: s.gid.map(|g| Opaque::from(g.to_string().as_str())),
        time_access_set: settime4(s.atime),
        time_modify_set: settime4(s.mtime),
        ..Default::default()
    }
}

/// MAY_READ, MAY_WRITE, MAY_EXEC as in Linux's `generic_permission`.
pub const MAY_EXEC: u32 = 1;
pub const MAY_WRITE: u32 = 2;
pub const MAY_READ: u32 = 4;

/// Whether `cred` may do `want` to the file with these attributes, as knfsd decides for v3
/// READ and WRITE (`nfsd_permission` with NFSD_MAY_OWNER_OVERRIDE): the owner may read and
/// write whatever the mode says (a file created 0444 is written by its creator: `cp`, `git`
/// and `tar` rely on it), root may read and write anything, and a file one may only execute
/// may be read (NFSD_MAY_READ_IF_EXEC: that is how exec(2) reads it).
pub fn may_io(cred: &Cred, a: &FileAttrs, want: u32) -> bool {
    let uid = id_of(&a.owner);
    if cred.uid == 0 || cred.uid == uid {
        return true;
    }
    let mode = a.mode.unwrap_or(0);
    let bits = if cred.in_group(id_of(&a.owner_group)) {
        (mode >> 3) & 7
    } else {
        mode & 7
    };
    if bits & want == want {
        return true;
    }
    want == MAY_READ && bits & MAY_EXEC != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(uid: u32, gid: u32, mode: u32) -> FileAttrs {
        FileAttrs {
            ftype: Some(NfsFtype4::Reg),
            mode: Some(mode),
            owner: Some(Opaque::from(uid.to_string().as_str())),
            owner_group: Some(Opaque::from(gid.to_string().as_str())),
            time_modify: Some(Nfstime4 {
                seconds: -5,
                nseconds: 1,
            }),
            ..Default::default()
        }
    }

    fn cred(uid: u32, gid: u32, gids: &[u32]) -> Cred {
        Cred {
            uid,
            gid,
            gids: gids.to_vec(),
            machine: vec![],
            anonymous: false,
            flavor: proto::rpc::AUTH_SYS,
        }
    }

    #[test]
    fn v3_attributes_carry_numeric_owners_and_clamped_times() {
        let mut a = file(1000, 2000, 0o104755);
        a.owner_group = Some(Opaque::from("staff"));
        let f = fattr3(&a);
        assert_eq!((f.uid, f.gid, f.mode), (1000, 65534, 0o4755));
        assert_eq!(f.mtime.seconds, 0);
        assert_eq!(f.ftype, Ftype3::Reg);
    }

    #[test]
    fn owner_override_and_group_bits_decide_io() {
        let a = file(1000, 2000, 0o440);
        assert!(may_io(&cred(1000, 1, &[]), &a, MAY_WRITE));
        assert!(may_io(&cred(0, 0, &[]), &a, MAY_WRITE));
        assert!(may_io(&cred(7, 1, &[2000]), &a, MAY_READ));
        assert!(!may_io(&cred(7, 1, &[2000]), &a, MAY_WRITE));
        assert!(!may_io(&cred(7, 1, &[]), &a, MAY_READ));
        let x = file(1000, 2000, 0o711);
        assert!(may_io(&cred(7, 1, &[]), &x, MAY_READ));
        let s = sattr(&Sattr3 {
            mode: Some(0o100644),
            uid: Some(5),
            ..Default::default()
        });
        assert_eq!(s.mode, Some(0o644));
        assert_eq!(s.owner, Some(Opaque::from("5")));
    }
}
