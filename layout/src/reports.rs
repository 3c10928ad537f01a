//! What clients tell the MDS about data servers: DS errors (LAYOUTERROR, and `ff_ioerr4` in a
//! LAYOUTRETURN body) and I/O counters (LAYOUTSTATS, `ff_iostats4`), turned into facts about
//! our DSs. The MDS's health tracking acts on these; this module only decides what they mean.

use proto::nfs4::{
    DeviceError4, FfLayoutreturn4, IoInfo4, LayouterrorArgs, LayoutstatsArgs, Nfsstat4,
};
use proto::xdr::{Xdr, XdrError};

use crate::dsmap::DsId;
use crate::geometry::ByteRange;

/// What a reported DS error says about the DS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The client could not reach the DS (the Linux client reports transport failures as
    /// NFS4ERR_NXIO): suspect the DS and check it before handing it out again.
    Unreachable,
    /// The DS refused the handle (access, stale, bad handle): the client's layout is fenced or
    /// out of date. The DS is doing its job; the client needs a fresh layout.
    Fenced,
    /// The DS is out of space.
    Full,
    /// The DS asked for a retry; nothing to act on unless it keeps happening.
    Transient,
    /// Anything else (NFS4ERR_IO and friends): the DS is misbehaving.
    Failing,
}

/// Classifies an NFSv4 status the client reported for a DS operation.
pub fn classify(status: u32) -> FaultKind {
    match Nfsstat4::from_code(status) {
        Some(Nfsstat4::Nxio) => FaultKind::Unreachable,
        Some(Nfsstat4::Access | Nfsstat4::Perm | Nfsstat4::Stale | Nfsstat4::Badhandle) => {
            FaultKind::Fenced
        }
        Some(Nfsstat4::Nospc | Nfsstat4::Dquot) => FaultKind::Full,
        Some(Nfsstat4::Delay) => FaultKind::Transient,
        _ => FaultKind::Failing,
    }
}

/// One DS error a client reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DsFault {
    /// `None` when the device id is not one we issued (a confused or hostile client).
    pub ds: Option<DsId>,
    pub range: ByteRange,
    pub status: u32,
    pub opnum: u32,
    pub kind: FaultKind,
}

/// Per-DS I/O a client reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DsIoReport {
    pub ds: Option<DsId>,
    pub range: ByteRange,
    pub read: IoInfo4,
    pub write: IoInfo4,
}

fn fault(range: ByteRange, e: &DeviceError4) -> DsFault {
    DsFault {
        ds: DsId::from_device_id(&e.de_deviceid),
        range,
        status: e.de_status,
        opnum: e.de_opnum,
        kind: classify(e.de_status),
    }
}

/// The faults in a LAYOUTERROR.
pub fn from_layouterror(args: &LayouterrorArgs) -> Vec<DsFault> {
    let range = ByteRange::new(args.lea_offset, args.lea_length);
    args.lea_errors.iter().map(|e| fault(range, e)).collect()
}

/// The counters in a LAYOUTSTATS.
pub fn from_layoutstats(args: &LayoutstatsArgs) -> DsIoReport {
    DsIoReport {
        ds: DsId::from_device_id(&args.lsa_deviceid),
        range: ByteRange::new(args.lsa_offset, args.lsa_length),
        read: args.lsa_read,
        write: args.lsa_write,
    }
}

/// Faults and counters from a flexfiles LAYOUTRETURN body (`lrf_body`). An empty body is an
/// empty report: nothing obliges the client to send one.
pub fn from_layoutreturn_body(body: &[u8]) -> Result<(Vec<DsFault>, Vec<DsIoReport>), XdrError> {
    if body.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let r = FfLayoutreturn4::from_xdr(body)?;
    let faults = r
        .fflr_ioerr_report
        .iter()
        .flat_map(|io| {
            let range = ByteRange::new(io.ffie_offset, io.ffie_length);
            io.ffie_errors.iter().map(move |e| fault(range, e))
        })
        .collect();
    let stats = r
        .fflr_iostats_report
        .iter()
        .map(|s| DsIoReport {
            ds: DsId::from_device_id(&s.ffis_deviceid),
            range: ByteRange::new(s.ffis_offset, s.ffis_length),
            read: s.ffis_read,
            write: s.ffis_write,
        })
        .collect();
    Ok((faults, stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proto::nfs4::{
        FfIoLatency4, FfIoerr4, FfIostats4, FfLayoutupdate4, Layoutupdate4, Netaddr4, NfsFh4,
        Nfstime4, Stateid4, LAYOUT4_FLEX_FILES,
    };
    use proto::xdr::Opaque;

    const OP_WRITE: u32 = 38;

    #[test]
    fn classification() {
        assert_eq!(classify(Nfsstat4::Nxio.code()), FaultKind::Unreachable);
        assert_eq!(classify(Nfsstat4::Access.code()), FaultKind::Fenced);
        assert_eq!(classify(Nfsstat4::Stale.code()), FaultKind::Fenced);
        assert_eq!(classify(Nfsstat4::Nospc.code()), FaultKind::Full);
        assert_eq!(classify(Nfsstat4::Delay.code()), FaultKind::Transient);
        assert_eq!(classify(Nfsstat4::Io.code()), FaultKind::Failing);
        assert_eq!(classify(0xdead_beef), FaultKind::Failing);
    }

    #[test]
    fn layouterror_and_layoutstats() {
        let args = LayouterrorArgs {
            lea_offset: 4096,
            lea_length: u64::MAX,
            lea_stateid: Stateid4::ANONYMOUS,
            lea_errors: vec![
                DeviceError4 {
                    de_deviceid: DsId(2).device_id(),
                    de_status: Nfsstat4::Nxio.code(),
                    de_opnum: OP_WRITE,
                },
                DeviceError4 {
                    de_deviceid: [0xee; 16],
                    de_status: Nfsstat4::Access.code(),
                    de_opnum: OP_WRITE,
                },
            ],
        };
        let f = from_layouterror(&args);
        assert_eq!(f[0].ds, Some(DsId(2)));
        assert_eq!(f[0].kind, FaultKind::Unreachable);
        assert_eq!(f[0].range.end(), u64::MAX);
        assert_eq!(f[1].ds, None);
        assert_eq!(f[1].kind, FaultKind::Fenced);

        let stats = LayoutstatsArgs {
            lsa_offset: 0,
            lsa_length: 10,
            lsa_stateid: Stateid4::ANONYMOUS,
            lsa_read: IoInfo4 {
                ii_count: 1,
                ii_bytes: 2,
            },
            lsa_write: IoInfo4 {
                ii_count: 3,
                ii_bytes: 4,
            },
            lsa_deviceid: DsId(8).device_id(),
            lsa_layoutupdate: Layoutupdate4 {
                lou_type: LAYOUT4_FLEX_FILES,
                lou_body: Opaque(Vec::new()),
            },
        };
        let r = from_layoutstats(&stats);
        assert_eq!(r.ds, Some(DsId(8)));
        assert_eq!(r.write.ii_bytes, 4);
    }

    #[test]
    fn layoutreturn_body() {
        assert_eq!(from_layoutreturn_body(&[]), Ok((vec![], vec![])));
        let body = FfLayoutreturn4 {
            fflr_ioerr_report: vec![FfIoerr4 {
                ffie_offset: 0,
                ffie_length: 4 << 20,
                ffie_stateid: Stateid4::ANONYMOUS,
                ffie_errors: vec![DeviceError4 {
                    de_deviceid: DsId(1).device_id(),
                    de_status: Nfsstat4::Nospc.code(),
                    de_opnum: OP_WRITE,
                }],
            }],
            fflr_iostats_report: vec![FfIostats4 {
                ffis_offset: 0,
                ffis_length: 4 << 20,
                ffis_stateid: Stateid4::ANONYMOUS,
                ffis_read: IoInfo4 {
                    ii_count: 0,
                    ii_bytes: 0,
                },
                ffis_write: IoInfo4 {
                    ii_count: 4,
                    ii_bytes: 4 << 20,
                },
                ffis_deviceid: DsId(1).device_id(),
                ffis_layoutupdate: FfLayoutupdate4 {
                    ffl_addr: Netaddr4::default(),
                    ffl_fhandle: NfsFh4::from(&[1u8, 2][..]),
                    ffl_read: FfIoLatency4::default(),
                    ffl_write: FfIoLatency4::default(),
                    ffl_duration: Nfstime4::default(),
                    ffl_local: false,
                },
            }],
        }
        .to_xdr();
        let (faults, stats) = from_layoutreturn_body(&body).unwrap();
        assert_eq!(faults.len(), 1);
        assert_eq!(
            (faults[0].ds, faults[0].kind),
            (Some(DsId(1)), FaultKind::Full)
        );
        assert_eq!(stats.len(), 1);
        assert_eq!(stats[0].write.ii_bytes, 4 << 20);
        assert!(from_layoutreturn_body(&body[..body.len() - 1]).is_err());
    }

    proptest! {
        #[test]
        fn hostile_layoutreturn_bodies_do_not_panic(
            body in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let _ = from_layoutreturn_body(&body);
        }
    }
}
