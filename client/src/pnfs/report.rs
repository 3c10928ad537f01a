//! What a data server's failure means for the driver, and the bodies that tell the MDS about
//! it (LAYOUTERROR, and `ff_layoutreturn4` in LAYOUTRETURN).
use proto::nfs3::Nfsstat3;
use proto::nfs3_client::Nfs3ClientError;
use proto::nfs4::*;
use proto::xdr::{Opaque, Xdr};

/// How the driver reacts to a failed DS call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsFault {
    /// NFS3ERR_JUKEBOX: the DS is busy (e.g. recalling data from a tier); ask it again later.
    Busy,
    /// No connection, a dropped one, or no answer in time: the DS is presumed dead.
    Unreachable,
    /// The handle is refused (fenced capability, stale layout generation): the layout is no
    /// longer good, ask for a new one.
    Fenced,
    /// Any other refusal (I/O error, no space...). Not retried on that DS.
    Failed,
}

pub fn classify(e: &Nfs3ClientError) -> DsFault {
    if e.is_transport() {
        return DsFault::Unreachable;
    }
    match e.status() {
        Some(Nfsstat3::Jukebox) => DsFault::Busy,
        Some(Nfsstat3::Acces | Nfsstat3::Perm | Nfsstat3::Stale | Nfsstat3::Badhandle) => {
            DsFault::Fenced
        }
        _ => DsFault::Failed,
    }
}

/// The `nfsstat4` reported for a DS failure. NFSv3 and NFSv4 share the numbers of every status
/// they both have; a lost connection is NFS4ERR_NXIO, as the Linux client reports it.
pub fn nfs4_status(e: &Nfs3ClientError) -> Nfsstat4 {
    if e.is_transport() {
        return Nfsstat4::Nxio;
    }
    match e.status() {
        Some(Nfsstat3::Jukebox) => Nfsstat4::Delay,
        Some(s) => Nfsstat4::from_code(s.code()).unwrap_or(Nfsstat4::Io),
        None => Nfsstat4::Io,
    }
}

/// One DS error, as both LAYOUTERROR and `ff_ioerr4` carry it.
pub fn device_error(device: Deviceid4, status: Nfsstat4, opnum: u32) -> DeviceError4 {
    DeviceError4 {
        de_deviceid: device,
        de_status: status.code(),
        de_opnum: opnum,
    }
}

pub fn layouterror(
    offset: u64,
    length: u64,
    stateid: Stateid4,
    errors: Vec<DeviceError4>,
) -> NfsArgop4 {
    NfsArgop4::Layouterror(LayouterrorArgs {
        lea_offset: offset,
        lea_length: length,
        lea_stateid: stateid,
        lea_errors: errors,
    })
}

/// LAYOUTRETURN of one range (a whole file is offset 0, length NFS4_UINT64_MAX) with the
/// errors seen on it in the flexfiles body (the I/O statistics array stays empty).
pub fn layoutreturn(
    offset: u64,
    length: u64,
    iomode: Layoutiomode4,
    stateid: Stateid4,
    errors: Vec<DeviceError4>,
) -> NfsArgop4 {
    let ioerr = if errors.is_empty() {
        Vec::new()
    } else {
        vec![FfIoerr4 {
            ffie_offset: offset,
            ffie_length: length,
            ffie_stateid: stateid,
            ffie_errors: errors,
        }]
    };
    let body = FfLayoutreturn4 {
        fflr_ioerr_report: ioerr,
        fflr_iostats_report: Vec::new(),
    };
    NfsArgop4::Layoutreturn(LayoutreturnArgs {
        lora_reclaim: false,
        lora_layout_type: LAYOUT4_FLEX_FILES,
        lora_iomode: iomode,
        lora_layoutreturn: Layoutreturn4::File(LayoutreturnFile4 {
            lrf_offset: offset,
            lrf_length: length,
            lrf_stateid: stateid,
            lrf_body: Opaque(body.to_xdr()),
        }),
    })
}

/// LAYOUTCOMMIT after data written to DSs is stable: `last_write` is the highest byte
/// offset written, from which the MDS learns the size. No modify time, as Linux sends none
/// (`encode_layoutcommit`): the MDS stamps its own clock, except after a holder returned a
/// delegation with delegated timestamps and reported them, whose times it keeps: the recall
/// that follows such a return makes us commit (`recall`), and a time from our clock then would
/// overwrite the ones reported for the writes.
pub fn layoutcommit(offset: u64, length: u64, stateid: Stateid4, last_write: u64) -> NfsArgop4 {
    NfsArgop4::Layoutcommit(LayoutcommitArgs {
        loca_offset: offset,
        loca_length: length,
        loca_reclaim: false,
        loca_stateid: stateid,
        loca_last_write_offset: Newoffset4::Offset(last_write),
        loca_time_modify: Newtime4::Unchanged,
        loca_layoutupdate: Layoutupdate4 {
            lou_type: LAYOUT4_FLEX_FILES,
            lou_body: Opaque(Vec::new()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::rpc::RpcError;

    fn st(s: Nfsstat3) -> Nfs3ClientError {
        Nfs3ClientError::Status { status: s }
    }

    #[test]
    fn faults() {
        assert_eq!(classify(&st(Nfsstat3::Jukebox)), DsFault::Busy);
        assert_eq!(classify(&st(Nfsstat3::Acces)), DsFault::Fenced);
        assert_eq!(classify(&st(Nfsstat3::Stale)), DsFault::Fenced);
        assert_eq!(classify(&st(Nfsstat3::Badhandle)), DsFault::Fenced);
        assert_eq!(classify(&st(Nfsstat3::Io)), DsFault::Failed);
        assert_eq!(classify(&st(Nfsstat3::Nospc)), DsFault::Failed);
        let gone = Nfs3ClientError::Rpc(RpcError::Closed);
        assert_eq!(classify(&gone), DsFault::Unreachable);
        let refused = Nfs3ClientError::Connect(std::io::ErrorKind::ConnectionRefused.into());
        assert_eq!(classify(&refused), DsFault::Unreachable);
    }

    #[test]
    fn statuses_map_to_nfs4() {
        assert_eq!(nfs4_status(&st(Nfsstat3::Acces)), Nfsstat4::Access);
        assert_eq!(nfs4_status(&st(Nfsstat3::Stale)), Nfsstat4::Stale);
        assert_eq!(nfs4_status(&st(Nfsstat3::Badhandle)), Nfsstat4::Badhandle);
        assert_eq!(nfs4_status(&st(Nfsstat3::Nospc)), Nfsstat4::Nospc);
        assert_eq!(nfs4_status(&st(Nfsstat3::Jukebox)), Nfsstat4::Delay);
        assert_eq!(nfs4_status(&st(Nfsstat3::Io)), Nfsstat4::Io);
        assert_eq!(
            nfs4_status(&Nfs3ClientError::Rpc(RpcError::Closed)),
            Nfsstat4::Nxio
        );
        // Every NFSv3 status maps to something a server can decode.
        for s in Nfsstat3::ALL {
            let code = nfs4_status(&st(*s)).code();
            assert!(Nfsstat4::from_code(code).is_some(), "{s:?}");
        }
    }

    #[test]
    fn layoutreturn_body_round_trips() {
        let sid = Stateid4 {
            seqid: 3,
            other: [7; 12],
        };
        let err = device_error([9; 16], Nfsstat4::Nxio, OP_WRITE);
        let op = layoutreturn(16 << 20, 16 << 20, Layoutiomode4::Rw, sid, vec![err]);
        let back = NfsArgop4::from_xdr(&op.to_xdr()).expect("decode LAYOUTRETURN");
        assert_eq!(back, op);
        let NfsArgop4::Layoutreturn(a) = back else {
            panic!("not a LAYOUTRETURN")
        };
        let Layoutreturn4::File(f) = a.lora_layoutreturn else {
            panic!("not a file return")
        };
        let body =
            FfLayoutreturn4::from_xdr(f.lrf_body.as_bytes()).expect("decode ff_layoutreturn4");
        assert_eq!(body.fflr_ioerr_report.len(), 1);
        assert_eq!(body.fflr_ioerr_report[0].ffie_errors, vec![err]);
        assert_eq!(body.fflr_ioerr_report[0].ffie_offset, 16 << 20);
        assert!(body.fflr_iostats_report.is_empty());

        // No errors: an empty body, still a valid ff_layoutreturn4.
        let op = layoutreturn(0, u64::MAX, Layoutiomode4::Any, sid, Vec::new());
        let NfsArgop4::Layoutreturn(a) = op else {
            panic!()
        };
        let Layoutreturn4::File(f) = a.lora_layoutreturn else {
            panic!()
        };
        assert_eq!(
            FfLayoutreturn4::from_xdr(f.lrf_body.as_bytes()).expect("decode"),
            FfLayoutreturn4::default()
        );
    }

    #[test]
    fn layouterror_and_commit_round_trip() {
        let sid = Stateid4 {
            seqid: 1,
            other: [1; 12],
        };
        let op = layouterror(
            0,
            16 << 20,
            sid,
            vec![device_error([2; 16], Nfsstat4::Stale, OP_READ)],
        );
        assert_eq!(NfsArgop4::from_xdr(&op.to_xdr()).expect("decode"), op);
        let op = layoutcommit(0, 40 << 20, sid, (40 << 20) - 1);
        assert_eq!(NfsArgop4::from_xdr(&op.to_xdr()).expect("decode"), op);
    }
}
