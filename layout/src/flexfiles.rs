//! The RFC 8435 bodies the MDS returns: `ff_layout4` for LAYOUTGET and `ff_device_addr4` for
//! GETDEVICEINFO, already wrapped in `layout4` / `device_addr4`.
//!
//! DSs are loosely coupled NFSv3 servers: the client sends them AUTH_SYS with the layout's
//! `ffds_user`/`ffds_group` and the anonymous stateid, and what actually authorises an I/O is
//! the capability in `ffds_fh_vers`.

use std::net::SocketAddr;

use proto::nfs4::{
    DeviceAddr4, FfDataServer4, FfDeviceAddr4, FfDeviceVersions4, FfLayout4, FfMirror4, Layout4,
    LayoutContent4, Layoutiomode4, Netaddr4, NfsFh4, Stateid4, LAYOUT4_FLEX_FILES,
};
use proto::xdr::{Opaque, Xdr};
use thiserror::Error;

use crate::capability::{Cap, CapKey, Rights};
use crate::dsmap::{DsId, DsInfo};
use crate::geometry::Segment;
use crate::uaddr::{netid_for, to_uaddr};
use crate::FileId;

/// rsize/wsize advertised for the NFSv3 data path. The client splits I/O at this size per RPC;
/// 1 MiB is the largest Linux issues and a quarter of a default chunk.
pub const DS_IO_SIZE: u32 = 1 << 20;

/// LAYOUTSTATS interval we suggest, in seconds; the Linux client reports about this often
/// anyway, and per-DS counters need nothing finer.
pub const DEFAULT_STATS_HINT: u32 = 60;

/// The protocol bounds (`ff_mirror4<>`, `multipath_list4`) as proto's decoder enforces them: a
/// body we could not decode ourselves must never go on the wire.
const MAX_MIRRORS: usize = 1024;
const MAX_STRIPES: usize = 1024;
const MAX_NETADDRS: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LayoutError {
    #[error("segment has {segment} chunks but {given} target lists were given")]
    TargetCount { segment: u32, given: usize },
    #[error("chunk {chunk} of the segment has no data server")]
    NoTargets { chunk: u64 },
    #[error("chunk {chunk} lists {ds} twice; two mirrors on one DS are one copy")]
    DuplicateTarget { chunk: u64, ds: DsId },
    #[error("iomode ANY is not a layout the server can grant")]
    IomodeAny,
    #[error("{what} exceeds the protocol limit of {max}")]
    TooMany { what: &'static str, max: usize },
    #[error("{ds} would be advertised as {addr}, which no client can connect to")]
    Unroutable { ds: DsId, addr: SocketAddr },
    #[error("{ds} advertises netid {netid:?} with address {addr}; the client would drop it")]
    NetidMismatch {
        ds: DsId,
        netid: String,
        addr: SocketAddr,
    },
}

/// Who owns the layout's I/O as far as the DS's AUTH_SYS check goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FfCredentials {
    pub uid: u32,
    pub gid: u32,
}

/// Tunables of the layouts we hand out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FfOptions {
    /// `ff_flags4`. Default 0: in particular FF_FLAGS_NO_IO_THRU_MDS is off, so a client that
    /// cannot reach a DS falls back to I/O through the MDS instead of sleeping and retrying.
    pub flags: u32,
    pub stats_collect_hint: u32,
    /// Mirrors given in READ layouts. A read needs one; more would let a client fail over
    /// without a new LAYOUTGET but spreads reads less predictably.
    pub read_mirrors: usize,
}

impl Default for FfOptions {
    fn default() -> Self {
        FfOptions {
            flags: 0,
            stats_collect_hint: DEFAULT_STATS_HINT,
            read_mirrors: 1,
        }
    }
}

/// What the MDS knows when it grants a layout for one file.
#[derive(Debug, Clone, Copy)]
pub struct LayoutGrant<'a> {
    pub file: FileId,
    /// The file's current layout generation; bumping it fences every handle minted here.
    pub generation: u64,
    pub key: &'a CapKey,
    pub key_id: u8,
    pub iomode: Layoutiomode4,
    pub creds: FfCredentials,
}

/// The AUTH_SYS uid a DS sees for a layout. READ layouts get uid + 1, as knfsd does, so a DS
/// (or pynfs FFLA1) can tell the two kinds of I/O apart and fence writers alone. Saturating, so
/// no uid ever turns into root.
pub fn ds_uid(iomode: Layoutiomode4, uid: u32) -> u32 {
    match iomode {
        Layoutiomode4::Read => uid.saturating_add(1),
        _ => uid,
    }
}

/// Higher is preferred: the Linux client sorts mirrors by efficiency, so this keeps the
/// placement order (mirror 0 = preferred copy) on the client.
fn efficiency(mirror: usize) -> u32 {
    255u32.saturating_sub(u32::try_from(mirror).unwrap_or(u32::MAX))
}

/// Builds `ff_layout4` for one segment. `targets[j]` lists the DSs holding chunk
/// `segment.first_chunk + j`, preferred first (from recorded locations, or from placement for
/// chunks not yet written); Down DSs must already be filtered out
/// ([`crate::placement::serving`]). Mirror `m` stripe `j` is
/// `targets[j][m]`, with a capability for exactly that chunk on exactly that DS.
///
/// Every mirror must have the same stripe count, so the mirror count is the smallest number of
/// targets any chunk has (a chunk left with one copy makes the whole segment one mirror).
pub fn build_ff_layout(
    segment: &Segment,
    targets: &[Vec<DsId>],
    grant: &LayoutGrant<'_>,
    opts: &FfOptions,
) -> Result<FfLayout4, LayoutError> {
    let rights = match grant.iomode {
        Layoutiomode4::Read => Rights::Read,
        Layoutiomode4::Rw => Rights::ReadWrite,
        Layoutiomode4::Any => return Err(LayoutError::IomodeAny),
    };
    if targets.len() != segment.chunk_count as usize {
        return Err(LayoutError::TargetCount {
            segment: segment.chunk_count,
            given: targets.len(),
        });
    }
    if targets.len() > MAX_STRIPES {
        return Err(LayoutError::TooMany {
            what: "stripe count",
            max: MAX_STRIPES,
        });
    }
    let mut mirrors = usize::MAX;
    for (chunk, t) in segment.chunks().zip(targets) {
        if t.is_empty() {
            return Err(LayoutError::NoTargets { chunk });
        }
        let repeated = t
            .iter()
            .enumerate()
            .find_map(|(i, d)| t[..i].contains(d).then_some(*d));
        if let Some(ds) = repeated {
            return Err(LayoutError::DuplicateTarget { chunk, ds });
        }
        mirrors = mirrors.min(t.len());
    }
    if rights == Rights::Read {
        mirrors = mirrors.min(opts.read_mirrors.max(1));
    }
    if mirrors > MAX_MIRRORS {
        return Err(LayoutError::TooMany {
            what: "mirror count",
            max: MAX_MIRRORS,
        });
    }

    let user = Opaque::from(ds_uid(grant.iomode, grant.creds.uid).to_string().as_str());
    let group = Opaque::from(grant.creds.gid.to_string().as_str());
    let ffl_mirrors = (0..mirrors)
        .map(|m| FfMirror4 {
            ffm_data_servers: segment
                .chunks()
                .zip(targets)
                .map(|(chunk, t)| {
                    let ds = t[m];
                    let cap = Cap {
                        file: grant.file,
                        first_chunk: chunk,
                        chunk_count: if segment.whole_file { u32::MAX } else { 1 },
                        rights,
                        generation: grant.generation,
                        key_id: grant.key_id,
                    };
                    FfDataServer4 {
                        ffds_deviceid: ds.device_id(),
                        ffds_efficiency: efficiency(m),
                        ffds_stateid: Stateid4::ANONYMOUS,
                        ffds_fh_vers: vec![NfsFh4::from(&cap.mint(grant.key, ds)[..])],
                        ffds_user: user.clone(),
                        ffds_group: group.clone(),
                    }
                })
                .collect(),
        })
        .collect();
    Ok(FfLayout4 {
        ffl_stripe_unit: segment.stripe_unit,
        ffl_mirrors,
        ffl_flags: opts.flags,
        ffl_stats_collect_hint: opts.stats_collect_hint,
    })
}

/// The client's side of a layout: for I/O at file `offset`, the data server of each mirror,
/// chosen as Linux does (`(offset / stripe_unit) % stripe_count`, on the file offset, with a
/// stripe unit of 0 or a single stripe meaning stripe 0). Mirrors with no data servers are
/// skipped rather than trusted, since the layout came off the wire.
pub fn data_servers_for(ff: &FfLayout4, offset: u64) -> impl Iterator<Item = &FfDataServer4> {
    ff.ffl_mirrors.iter().filter_map(move |m| {
        let count = m.ffm_data_servers.len() as u64;
        let stripe = match offset.checked_div(ff.ffl_stripe_unit) {
            Some(unit) if count > 1 => unit % count,
            _ => 0,
        };
        m.ffm_data_servers.get(usize::try_from(stripe).ok()?)
    })
}

/// [`build_ff_layout`] wrapped as the `layout4` LAYOUTGET returns, covering the segment's range.
pub fn build_layout(
    segment: &Segment,
    targets: &[Vec<DsId>],
    grant: &LayoutGrant<'_>,
    opts: &FfOptions,
) -> Result<Layout4, LayoutError> {
    let body = build_ff_layout(segment, targets, grant, opts)?;
    Ok(Layout4 {
        lo_offset: segment.range.offset,
        lo_length: segment.range.length,
        lo_iomode: grant.iomode,
        lo_content: LayoutContent4 {
            loc_type: LAYOUT4_FLEX_FILES,
            loc_body: Opaque(body.to_xdr()),
        },
    })
}

/// The one data-path protocol our DSs speak: loosely coupled NFSv3 with 1 MiB I/O.
pub fn nfsv3_version() -> FfDeviceVersions4 {
    FfDeviceVersions4 {
        ffdv_version: 3,
        ffdv_minorversion: 0,
        ffdv_rsize: DS_IO_SIZE,
        ffdv_wsize: DS_IO_SIZE,
        ffdv_tightly_coupled: false,
    }
}

/// `ff_device_addr4` for a DS: its advertised addresses (or its listening address when none is
/// configured) as a multipath list, in the configured order.
///
/// Refuses what would only fail later on the client, where it is much harder to see: a
/// wildcard address (a DS listening on 0.0.0.0 with nothing advertised) and a netid whose
/// address family does not match its address.
pub fn build_ff_device_addr(info: &DsInfo) -> Result<FfDeviceAddr4, LayoutError> {
    let fallback;
    let pairs: &[(String, SocketAddr)] = if info.advertised.is_empty() {
        fallback = [(netid_for(&info.addr).to_owned(), info.addr)];
        &fallback
    } else {
        &info.advertised
    };
    let mut netaddrs = Vec::with_capacity(pairs.len());
    for (netid, addr) in pairs {
        if addr.ip().is_unspecified() || addr.port() == 0 {
            return Err(LayoutError::Unroutable {
                ds: info.id,
                addr: *addr,
            });
        }
        let v6_netid = netid.ends_with('6');
        if v6_netid != addr.is_ipv6() {
            return Err(LayoutError::NetidMismatch {
                ds: info.id,
                netid: netid.clone(),
                addr: *addr,
            });
        }
        netaddrs.push(netaddr(netid, addr));
    }
    if netaddrs.len() > MAX_NETADDRS {
        return Err(LayoutError::TooMany {
            what: "advertised address count",
            max: MAX_NETADDRS,
        });
    }
    Ok(FfDeviceAddr4 {
        ffda_netaddrs: netaddrs,
        ffda_versions: vec![nfsv3_version()],
    })
}

fn netaddr(netid: &str, a: &SocketAddr) -> Netaddr4 {
    Netaddr4 {
        na_r_netid: Opaque::from(netid),
        na_r_addr: Opaque::from(to_uaddr(a).as_str()),
    }
}

/// A whole-file READ layout of an erasure-coded file: mirror `j` is `mirrors[j]`, its data
/// servers in stripe order with the shard handle each serves (`crate::ShardCap`), preferred
/// mirror first; `stripe_unit` is the shard unit when mirrors have several data servers (a
/// striping client), 0 when each has one (an assembling data server). No handle grants
/// writing, so this is never an RW layout.
pub fn build_shard_layout(
    mirrors: &[Vec<(DsId, [u8; crate::SHARD_CAP_LEN])>],
    stripe_unit: u64,
    creds: FfCredentials,
    opts: &FfOptions,
) -> Result<Layout4, LayoutError> {
    if mirrors.len() > MAX_MIRRORS {
        return Err(LayoutError::TooMany {
            what: "mirror count",
            max: MAX_MIRRORS,
        });
    }
    let user = Opaque::from(ds_uid(Layoutiomode4::Read, creds.uid).to_string().as_str());
    let group = Opaque::from(creds.gid.to_string().as_str());
    let ff = FfLayout4 {
        ffl_stripe_unit: stripe_unit,
        ffl_mirrors: mirrors
            .iter()
            .enumerate()
            .map(|(j, dss)| FfMirror4 {
                ffm_data_servers: dss
                    .iter()
                    .map(|(ds, fh)| FfDataServer4 {
                        ffds_deviceid: ds.device_id(),
                        ffds_efficiency: efficiency(j),
                        ffds_stateid: Stateid4::ANONYMOUS,
                        ffds_fh_vers: vec![NfsFh4::from(&fh[..])],
                        ffds_user: user.clone(),
                        ffds_group: group.clone(),
                    })
                    .collect(),
            })
            .collect(),
        ffl_flags: opts.flags,
        ffl_stats_collect_hint: opts.stats_collect_hint,
    };
    Ok(Layout4 {
        lo_offset: 0,
        lo_length: u64::MAX,
        lo_iomode: Layoutiomode4::Read,
        lo_content: LayoutContent4 {
            loc_type: LAYOUT4_FLEX_FILES,
            loc_body: Opaque(ff.to_xdr()),
        },
    })
}

/// [`build_ff_device_addr`] wrapped as the `device_addr4` GETDEVICEINFO returns.
pub fn build_device_addr(info: &DsInfo) -> Result<DeviceAddr4, LayoutError> {
    Ok(DeviceAddr4 {
        da_layout_type: LAYOUT4_FLEX_FILES,
        da_addr_body: Opaque(build_ff_device_addr(info)?.to_xdr()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::{verify, CapError};
    use crate::dsmap::DsMap;
    use crate::geometry::{ChunkGeometry, SegmentStyle};
    use crate::placement::place;
    use crate::uaddr::from_uaddr;
    use proptest::prelude::*;

    fn key() -> CapKey {
        CapKey::new([0x5a; 32])
    }

    fn grant(iomode: Layoutiomode4, key: &CapKey) -> LayoutGrant<'_> {
        LayoutGrant {
            file: FileId(77),
            generation: 4,
            key,
            key_id: 0,
            iomode,
            creds: FfCredentials {
                uid: 1000,
                gid: 100,
            },
        }
    }

    fn decode_layout(l: &Layout4) -> FfLayout4 {
        let wire = l.to_xdr();
        let back = Layout4::from_xdr(&wire).unwrap();
        assert_eq!(&back, l);
        assert_eq!(back.lo_content.loc_type, LAYOUT4_FLEX_FILES);
        FfLayout4::from_xdr(back.lo_content.loc_body.as_bytes()).unwrap()
    }

    fn fh(ds: &FfDataServer4) -> &[u8] {
        ds.ffds_fh_vers[0].0.as_bytes()
    }

    #[test]
    fn per_chunk_rw_layout_has_one_ds_per_mirror() {
        let g = ChunkGeometry::default();
        let seg = g.segment(9 << 20, SegmentStyle::PerChunk).unwrap();
        let k = key();
        let gr = grant(Layoutiomode4::Rw, &k);
        let l = build_layout(&seg, &[vec![DsId(3), DsId(1)]], &gr, &FfOptions::default()).unwrap();
        assert_eq!(
            (l.lo_offset, l.lo_length, l.lo_iomode),
            (8 << 20, 4 << 20, Layoutiomode4::Rw)
        );
        let ff = decode_layout(&l);
        assert_eq!(ff.ffl_stripe_unit, 0);
        assert_eq!(ff.ffl_flags & proto::nfs4::FF_FLAGS_NO_IO_THRU_MDS, 0);
        assert_eq!(ff.ffl_stats_collect_hint, DEFAULT_STATS_HINT);
        assert_eq!(ff.ffl_mirrors.len(), 2);
        for (m, want) in ff.ffl_mirrors.iter().zip([DsId(3), DsId(1)]) {
            assert_eq!(
                m.ffm_data_servers.len(),
                1,
                "pre-6.18 kernels need ds_count == 1"
            );
            let ds = &m.ffm_data_servers[0];
            assert_eq!(ds.ffds_deviceid, want.device_id());
            assert_eq!(ds.ffds_stateid, Stateid4::ANONYMOUS);
            assert_eq!(ds.ffds_user.as_str(), Some("1000"));
            assert_eq!(ds.ffds_group.as_str(), Some("100"));
            assert!(fh(ds).len() <= proto::nfs3::NFS3_FHSIZE);
            let cap = verify(fh(ds), &k, want, 4).unwrap();
            assert_eq!(
                (cap.file, cap.first_chunk, cap.chunk_count),
                (FileId(77), 2, 1)
            );
            assert_eq!(cap.rights, Rights::ReadWrite);
            assert_eq!(verify(fh(ds), &k, DsId(9), 4), Err(CapError::Forged));
        }
        assert!(
            ff.ffl_mirrors[0].ffm_data_servers[0].ffds_efficiency
                > ff.ffl_mirrors[1].ffm_data_servers[0].ffds_efficiency
        );
    }

    #[test]
    fn read_layouts_get_one_mirror_and_uid_plus_one() {
        let g = ChunkGeometry::default();
        let seg = g.segment(0, SegmentStyle::PerChunk).unwrap();
        let k = key();
        let gr = grant(Layoutiomode4::Read, &k);
        let l = build_layout(&seg, &[vec![DsId(3), DsId(1)]], &gr, &FfOptions::default()).unwrap();
        let ff = decode_layout(&l);
        assert_eq!(ff.ffl_mirrors.len(), 1);
        let ds = &ff.ffl_mirrors[0].ffm_data_servers[0];
        assert_eq!(ds.ffds_user.as_str(), Some("1001"));
        assert_eq!(ds.ffds_group.as_str(), Some("100"));
        assert_eq!(verify(fh(ds), &k, DsId(3), 4).unwrap().rights, Rights::Read);
        assert_eq!(ds_uid(Layoutiomode4::Read, u32::MAX), u32::MAX);
    }

    #[test]
    fn striped_layout_from_placement() {
        let mut map = DsMap::new();
        for i in 0..5 {
            map.add(DsInfo::new(
                DsId(i),
                format!("127.0.0.1:{}", 2100 + i).parse().unwrap(),
            ))
            .unwrap();
        }
        let g = ChunkGeometry::default();
        let seg = g
            .segment(13 << 20, SegmentStyle::Striped { width: 3 })
            .unwrap();
        let targets: Vec<Vec<DsId>> = seg
            .chunks()
            .map(|c| place(&map, FileId(77), c, 2).unwrap().targets)
            .collect();
        let k = key();
        let l = build_layout(
            &seg,
            &targets,
            &grant(Layoutiomode4::Rw, &k),
            &FfOptions::default(),
        )
        .unwrap();
        assert_eq!((l.lo_offset, l.lo_length), (12 << 20, 12 << 20));
        let ff = decode_layout(&l);
        assert_eq!(ff.ffl_stripe_unit, 4 << 20);
        assert_eq!(ff.ffl_mirrors.len(), 2);
        for (m, mirror) in ff.ffl_mirrors.iter().enumerate() {
            assert_eq!(
                mirror.ffm_data_servers.len(),
                3,
                "same stripe count in every mirror"
            );
            for (j, ds) in mirror.ffm_data_servers.iter().enumerate() {
                let want = targets[j][m];
                assert_eq!(ds.ffds_deviceid, want.device_id());
                let cap = verify(fh(ds), &k, want, 4).unwrap();
                assert_eq!(cap.first_chunk, seg.first_chunk + j as u64);
            }
        }
        // The two copies of each chunk are on different DSs.
        for j in 0..3 {
            assert_ne!(
                ff.ffl_mirrors[0].ffm_data_servers[j].ffds_deviceid,
                ff.ffl_mirrors[1].ffm_data_servers[j].ffds_deviceid
            );
        }
    }

    #[test]
    fn client_selection_lands_on_a_capability_for_the_offset() {
        let g = ChunkGeometry::default();
        let k = key();
        for style in [SegmentStyle::PerChunk, SegmentStyle::Striped { width: 4 }] {
            let seg = g.segment(21 << 20, style).unwrap();
            let targets: Vec<Vec<DsId>> = seg
                .chunks()
                .map(|c| vec![DsId(c * 10), DsId(c * 10 + 1)])
                .collect();
            let gr = grant(Layoutiomode4::Rw, &k);
            let ff = build_ff_layout(&seg, &targets, &gr, &FfOptions::default()).unwrap();
            for off in (seg.range.offset..seg.range.end()).step_by(1 << 19) {
                let chosen: Vec<_> = data_servers_for(&ff, off).collect();
                assert_eq!(chosen.len(), 2);
                for (m, ds) in chosen.into_iter().enumerate() {
                    let want = targets[(g.chunk_of(off) - seg.first_chunk) as usize][m];
                    assert_eq!(ds.ffds_deviceid, want.device_id());
                    let cap = verify(fh(ds), &k, want, 4).unwrap();
                    assert_eq!(cap.check(&g, true, off, 1 << 19), Ok(()));
                }
            }
        }
        let empty = FfLayout4 {
            ffl_stripe_unit: 7,
            ffl_mirrors: vec![FfMirror4 {
                ffm_data_servers: vec![],
            }],
            ffl_flags: 0,
            ffl_stats_collect_hint: 0,
        };
        assert_eq!(data_servers_for(&empty, 100).count(), 0);
    }

    #[test]
    fn uneven_targets_shrink_to_the_common_mirror_count() {
        let g = ChunkGeometry::default();
        let seg = g.segment(0, SegmentStyle::Striped { width: 2 }).unwrap();
        let k = key();
        let gr = grant(Layoutiomode4::Rw, &k);
        let o = FfOptions::default();
        let ff = build_ff_layout(&seg, &[vec![DsId(1), DsId(2)], vec![DsId(3)]], &gr, &o).unwrap();
        assert_eq!(ff.ffl_mirrors.len(), 1);
        assert_eq!(
            build_ff_layout(&seg, &[vec![DsId(1)], vec![]], &gr, &o),
            Err(LayoutError::NoTargets { chunk: 1 })
        );
        assert_eq!(
            build_ff_layout(&seg, &[vec![DsId(1)], vec![DsId(4), DsId(4)]], &gr, &o),
            Err(LayoutError::DuplicateTarget {
                chunk: 1,
                ds: DsId(4)
            })
        );
        assert_eq!(
            build_ff_layout(&seg, &[vec![DsId(1)]], &gr, &o),
            Err(LayoutError::TargetCount {
                segment: 2,
                given: 1
            })
        );
        assert_eq!(
            build_ff_layout(
                &seg,
                &[vec![DsId(1)], vec![DsId(2)]],
                &grant(Layoutiomode4::Any, &k),
                &o
            ),
            Err(LayoutError::IomodeAny)
        );
    }

    #[test]
    fn device_addr_uses_advertised_addresses() {
        let mut info = DsInfo::new(DsId(4), "127.0.0.1:20049".parse().unwrap());
        let d = build_device_addr(&info).unwrap();
        let back = DeviceAddr4::from_xdr(&d.to_xdr()).unwrap();
        assert_eq!(back, d);
        assert_eq!(back.da_layout_type, LAYOUT4_FLEX_FILES);
        let ff = FfDeviceAddr4::from_xdr(back.da_addr_body.as_bytes()).unwrap();
        assert_eq!(ff.ffda_netaddrs.len(), 1);
        assert_eq!(ff.ffda_netaddrs[0].na_r_netid.as_str(), Some("tcp"));
        assert_eq!(
            ff.ffda_netaddrs[0].na_r_addr.as_str(),
            Some("127.0.0.1.78.81")
        );
        assert_eq!(ff.ffda_versions, vec![nfsv3_version()]);
        assert!(!ff.ffda_versions[0].ffdv_tightly_coupled);
        assert_eq!(ff.ffda_versions[0].ffdv_rsize, 1 << 20);

        info.advertised = vec![
            ("tcp".into(), "10.0.2.2:20049".parse().unwrap()),
            ("tcp6".into(), "[fd00::2]:20049".parse().unwrap()),
        ];
        let ff = FfDeviceAddr4::from_xdr(build_device_addr(&info).unwrap().da_addr_body.as_bytes())
            .unwrap();
        let got: Vec<_> = ff
            .ffda_netaddrs
            .iter()
            .map(|n| {
                let a = from_uaddr(n.na_r_addr.as_str().unwrap()).unwrap();
                (n.na_r_netid.as_str().unwrap().to_owned(), a)
            })
            .collect();
        assert_eq!(got, info.advertised);

        let mut wild = DsInfo::new(DsId(5), "0.0.0.0:20049".parse().unwrap());
        assert!(matches!(
            build_device_addr(&wild),
            Err(LayoutError::Unroutable { .. })
        ));
        wild.advertised = vec![("tcp".into(), "[fd00::2]:20049".parse().unwrap())];
        assert!(matches!(
            build_device_addr(&wild),
            Err(LayoutError::NetidMismatch { .. })
        ));
        wild.advertised = vec![("tcp6".into(), "10.0.2.2:20049".parse().unwrap())];
        assert!(matches!(
            build_device_addr(&wild),
            Err(LayoutError::NetidMismatch { .. })
        ));
        wild.advertised = vec![("rdma".into(), "10.0.2.2:20049".parse().unwrap())];
        assert!(build_device_addr(&wild).is_ok());
    }

    proptest! {
        #[test]
        fn selection_on_arbitrary_layouts_never_panics(
            unit in any::<u64>(),
            counts in proptest::collection::vec(0usize..5, 0..4),
            offset in any::<u64>(),
        ) {
            let ds = FfDataServer4 {
                ffds_deviceid: [0; 16],
                ffds_efficiency: 0,
                ffds_stateid: Stateid4::ANONYMOUS,
                ffds_fh_vers: vec![],
                ffds_user: Opaque::from("0"),
                ffds_group: Opaque::from("0"),
            };
            let ff = FfLayout4 {
                ffl_stripe_unit: unit,
                ffl_mirrors: counts
                    .iter()
                    .map(|&n| FfMirror4 { ffm_data_servers: vec![ds.clone(); n] })
                    .collect(),
                ffl_flags: 0,
                ffl_stats_collect_hint: 0,
            };
            let n = data_servers_for(&ff, offset).count();
            prop_assert_eq!(n, counts.iter().filter(|&&c| c > 0).count());
        }

        #[test]
        fn built_layouts_always_decode(
            width in 1u32..=16,
            striped in any::<bool>(),
            offset in any::<u64>(),
            mirrors in 1usize..=3,
            rw in any::<bool>(),
            uid in any::<u32>(),
            generation in any::<u64>(),
        ) {
            let g = ChunkGeometry::default();
            let style = if striped { SegmentStyle::Striped { width } } else { SegmentStyle::PerChunk };
            let seg = g.segment(offset, style).unwrap();
            let targets: Vec<Vec<DsId>> = seg
                .chunks()
                .map(|c| (0..mirrors as u64).map(|m| DsId(c.wrapping_add(m))).collect())
                .collect();
            let k = key();
            let iomode = if rw { Layoutiomode4::Rw } else { Layoutiomode4::Read };
            let gr = LayoutGrant { generation, creds: FfCredentials { uid, gid: 0 }, ..grant(iomode, &k) };
            let l = build_layout(&seg, &targets, &gr, &FfOptions::default()).unwrap();
            let ff = decode_layout(&l);
            prop_assert_eq!(ff.ffl_mirrors.len(), if rw { mirrors } else { 1 });
            for (m, mirror) in ff.ffl_mirrors.iter().enumerate() {
                prop_assert_eq!(mirror.ffm_data_servers.len(), seg.chunk_count as usize);
                for (j, ds) in mirror.ffm_data_servers.iter().enumerate() {
                    let cap = verify(fh(ds), &k, targets[j][m], generation).unwrap();
                    prop_assert_eq!(cap.first_chunk, seg.first_chunk + j as u64);
                }
            }
        }
    }

    #[test]
    fn whole_file_layout_grants_every_offset_on_its_mirrors_only() {
        let k = key();
        let g = ChunkGeometry::new(16 << 20).unwrap();
        let seg = g.segment(123 << 20, SegmentStyle::WholeFile).unwrap();
        assert_eq!((seg.range.offset, seg.range.length), (0, u64::MAX));
        let targets = vec![vec![DsId(1), DsId(2)]];
        let l = build_layout(
            &seg,
            &targets,
            &grant(Layoutiomode4::Rw, &k),
            &FfOptions::default(),
        )
        .unwrap();
        assert_eq!((l.lo_offset, l.lo_length), (0, u64::MAX));
        let ff = decode_layout(&l);
        assert_eq!(ff.ffl_mirrors.len(), 2);
        for (m, ds) in ff.ffl_mirrors.iter().zip([DsId(1), DsId(2)]) {
            let fh = m.ffm_data_servers[0].ffds_fh_vers[0].0.as_bytes().to_vec();
            let cap = verify(&fh, &k, ds, 4).unwrap();
            // Far into the file, and at the last byte a 16 MiB chunk index can name.
            cap.check(&g, true, 5 << 40, 1 << 20).unwrap();
            cap.check(&g, true, 0, 4096).unwrap();
            // Never valid at the other mirror's DS.
            let other = if ds == DsId(1) { DsId(2) } else { DsId(1) };
            assert_eq!(verify(&fh, &k, other, 4), Err(CapError::Forged));
        }
    }
}
