//! NFS attributes as FUSE wants them, and FUSE's setattr as an NFS SETATTR.
use client::{FileType, Nfstime4, SetAttrs, Settime4, Stat};
use fuser::{FileAttr, INodeNo, TimeOrNow};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn kind(t: FileType) -> fuser::FileType {
    match t {
        FileType::Directory => fuser::FileType::Directory,
        FileType::Symlink => fuser::FileType::Symlink,
        FileType::Block => fuser::FileType::BlockDevice,
        FileType::Char => fuser::FileType::CharDevice,
        FileType::Socket => fuser::FileType::Socket,
        FileType::Fifo => fuser::FileType::NamedPipe,
        FileType::Regular | FileType::Other => fuser::FileType::RegularFile,
    }
}

fn time(t: Nfstime4) -> SystemTime {
    let ns = t.nseconds.min(999_999_999);
    if t.seconds >= 0 {
        UNIX_EPOCH + Duration::new(t.seconds as u64, ns)
    } else {
        // Before 1970: whole seconds back, then the nanoseconds forward.
        UNIX_EPOCH - Duration::from_secs(t.seconds.unsigned_abs()) + Duration::from_nanos(ns.into())
    }
}

pub fn nfstime(t: SystemTime) -> Nfstime4 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Nfstime4 {
            seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nseconds: d.subsec_nanos(),
        },
        Err(e) => {
            let d = e.duration();
            let (mut s, mut ns) = (-(d.as_secs() as i64), 0u32);
            if d.subsec_nanos() > 0 {
                s -= 1;
                ns = 1_000_000_000 - d.subsec_nanos();
            }
            Nfstime4 {
                seconds: s,
                nseconds: ns,
            }
        }
    }
}

/// Owners travel as numeric strings (cfs, and knfsd without idmapping); anything else maps
/// to nobody, as the kernel client maps names it cannot resolve.
fn id(s: &str) -> u32 {
    s.parse().unwrap_or(65534)
}

pub fn file_attr(ino: INodeNo, st: &Stat) -> FileAttr {
    let (maj, min) = st.rawdev;
    FileAttr {
        ino,
        size: st.size,
        blocks: st.space_used.div_ceil(512),
        atime: time(st.atime),
        mtime: time(st.mtime),
        ctime: time(st.ctime),
        crtime: time(st.ctime),
        kind: kind(st.ftype),
        perm: (st.mode & 0o7777) as u16,
        nlink: st.nlink,
        uid: id(&st.owner),
        gid: id(&st.group),
        rdev: libc::makedev(maj, min) as u32,
        blksize: 1 << 20,
        flags: 0,
    }
}

fn settime(t: TimeOrNow) -> Settime4 {
    match t {
        TimeOrNow::Now => Settime4::ServerTime,
        TimeOrNow::SpecificTime(t) => Settime4::ClientTime(nfstime(t)),
    }
}

/// FUSE's setattr arguments as one SETATTR. ctime is the server's to set.
pub fn set_attrs(
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    size: Option<u64>,
    atime: Option<TimeOrNow>,
    mtime: Option<TimeOrNow>,
) -> SetAttrs {
    SetAttrs {
        mode: mode.map(|m| m & 0o7777),
        size,
        owner: uid.map(|u| u.to_string()),
        group: gid.map(|g| g.to_string()),
        atime: atime.map(settime),
        mtime: mtime.map(settime),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_both_sides_of_the_epoch() {
        for (s, ns) in [
            (0i64, 0u32),
            (981_173_106, 5),
            (-1, 999_999_999),
            (-86_400, 0),
        ] {
            let t = Nfstime4 {
                seconds: s,
                nseconds: ns,
            };
            assert_eq!(nfstime(time(t)), t, "{s}.{ns}");
        }
    }

    #[test]
    fn attributes_map_type_mode_owner_and_device() {
        let st = Stat {
            ftype: FileType::Char,
            size: 3,
            mode: 0o104755,
            nlink: 2,
            owner: "1234".into(),
            group: "alice@x".into(),
            rawdev: (8, 1),
            space_used: 4096,
            ..Default::default()
        };
        let a = file_attr(INodeNo(9), &st);
        assert_eq!(a.kind, fuser::FileType::CharDevice);
        assert_eq!(a.perm, 0o4755);
        assert_eq!((a.uid, a.gid), (1234, 65534));
        assert_eq!(a.rdev, libc::makedev(8, 1) as u32);
        assert_eq!(a.blocks, 8);
    }

    #[test]
    fn setattr_carries_numeric_owners_and_times() {
        let s = set_attrs(
            Some(0o100640),
            Some(1),
            None,
            Some(0),
            Some(TimeOrNow::Now),
            None,
        );
        assert_eq!(s.mode, Some(0o640));
        assert_eq!(s.owner.as_deref(), Some("1"));
        assert_eq!(s.atime, Some(Settime4::ServerTime));
        assert_eq!(s.size, Some(0));
    }
}
