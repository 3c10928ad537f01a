//! pNFS operations (RFC 8881 §18.40–18.44, RFC 7862 §15.6–15.7) for flexfiles layouts
//! (RFC 8435): LAYOUTGET, GETDEVICEINFO, LAYOUTCOMMIT, LAYOUTRETURN, LAYOUTERROR, LAYOUTSTATS.
//! Without data servers there are no layouts: LAYOUTGET answers LAYOUTUNAVAILABLE (the client
//! then reads and writes through us) and the rest NOTSUPP.
//!
//! Every layout is one whole-file segment (`layout::SegmentStyle::WholeFile`, whose doc gives the
//! Linux 6.1 behaviour that rules per-range segments out). The exception is the READ layout of an
//! erasure-coded file given to Linux ≥ 6.18 (`reads_striped_layouts`, by its EXCHANGE_ID
//! implementation id, under the export's `ec_reads`): one segment striped over the k data shards'
//! servers with a rebuild mirror; every other client gets one assembling data server per mirror
//! (docs/EC.md "Reads"). krb5i and krb5p callers get no layout: their bytes would cross the network
//! to the data servers unprotected.
//!
//! A LAYOUTCOMMIT claims only what a WRITE could: it needs a layout granted read-write
//! (`StateManager::layout_rw`, else BADLAYOUT), a writable export and write permission or
//! ownership, and it grows the size only as far as the DSs hold data (`Cluster::stored_end`): the
//! client's last write offset outlives a truncation, so the claim alone would bring truncated bytes
//! back.
use std::sync::Arc;

use layout::reports::{DsFault, FaultKind};
use layout::{DsId, FfCredentials, FfOptions, LayoutGrant, SegmentStyle};
use proto::nfs4::basic::Bitmap4;
use proto::nfs4::pnfs::*;
use proto::nfs4::v42::{LayouterrorArgs, LayoutstatsArgs};
use proto::nfs4::Nfsstat4;
use proto::xdr::Xdr;

use crate::dataservers::{Cluster, MdsIoStats};
use crate::error::{NfsError, NfsResult};
use crate::nfs::ctx::Ctx;
use meta::namespace::{Command, FileKind, Inode, Time};

fn cluster(ctx: &Ctx<'_>) -> NfsResult<Arc<Cluster>> {
    ctx.mds.cluster().cloned().ok_or(NfsError::NotSupp)
}

fn regular(ctx: &Ctx<'_>) -> NfsResult<Inode> {
    let i = ctx.cur()?;
    match i.kind {
        FileKind::Regular => Ok(i),
        FileKind::Directory => Err(NfsError::IsDir),
        _ => Err(NfsError::WrongType),
    }
}

fn clientid(ctx: &Ctx<'_>) -> NfsResult<u64> {
    ctx.clientid.ok_or(NfsError::OpNotInSession)
}

/// Whether a client reads striped flexfiles layouts, by its EXCHANGE_ID implementation id:
/// Linux from 6.18 (docs/EC.md "How the Linux client reads a striped flexfiles layout"; Linux
/// sends domain "kernel.org" and name "Linux <release> <version> <machine>"). Anything else,
/// or no id (the nfs module's `send_implementation_id=0`), gets layouts it can read for sure.
pub fn reads_striped_layouts(ids: &[proto::nfs4::basic::NfsImplId4]) -> bool {
    ids.iter().any(|id| {
        let name = String::from_utf8_lossy(id.nii_name.as_bytes());
        let mut words = name.split_whitespace();
        if id.nii_domain.as_bytes() != b"kernel.org" || words.next() != Some("Linux") {
            return false;
        }
        let mut release = words
            .next()
            .unwrap_or("")
            .split(|c: char| !c.is_ascii_digit());
        let major: u32 = release.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        let minor: u32 = release.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        (major, minor) >= (6, 18)
    })
}

/// A READ layout of an encoded file. For a client that stripes: mirror 0 reads each data shard
/// straight from its server (`direct`, stripe unit = the shard unit), mirror 1 rebuilds each
/// from the others on a server holding another shard (`rebuild`), which the client turns to
/// per offset when a data server fails; a shard whose server is down now is rebuilt in
/// mirror 0 too. For any other client: two mirrors of one data server each that assembles the
/// whole file from the shards (a READ at any offset, rebuilt if a shard is lost).
fn encoded_layout(
    c: &Cluster,
    ino: u64,
    code: &meta::namespace::FileCode,
    ctx: &Ctx<'_>,
    stripes: bool,
) -> NfsResult<Layout4> {
    use layout::ShardKind;
    let up: Vec<DsId> = code
        .placement
        .iter()
        .map(|d| DsId(*d))
        .filter(|d| c.registry.is_up(*d))
        .collect();
    if up.len() < usize::from(code.k) {
        // More shards lost than parity covers: reads fail (EIO) until repair or a return.
        return Err(NfsError::LayoutUnavailable);
    }
    let mut mirrors = Vec::new();
    let mut unit = 0;
    if stripes {
        let (k, m) = (usize::from(code.k), usize::from(code.m));
        // Shard i's rebuilder: a server holding another shard, parity holders first (they
        // serve no direct reads), spread over them by i, then the other data holders. (This
        // walked the placement from k + i before, which for i >= m wrapped into the data
        // servers: a degraded striped read doubled one data server's load, measured by
        // `conformance ecbench`, while a parity server sat idle.)
        let rebuilder = |i: usize, skip: Option<DsId>| -> Option<DsId> {
            (0..m)
                .map(|j| k + (i + j) % m)
                .chain((1..k).map(|j| (i + j) % k))
                .map(|s| DsId(code.placement[s]))
                .filter(|d| d.0 != code.placement[i] && Some(*d) != skip)
                .find(|d| up.contains(d))
        };
        let mut direct = Vec::with_capacity(k);
        let mut rebuild = Vec::with_capacity(k);
        for i in 0..k {
            let own = DsId(code.placement[i]);
            let i8 = u8::try_from(i).map_err(|_| NfsError::ServerFault)?;
            let first = if up.contains(&own) {
                (own, c.shard_handle(ino, code, ShardKind::Direct(i8), own)?)
            } else {
                let r = rebuilder(i, None).ok_or(NfsError::LayoutUnavailable)?;
                (r, c.shard_handle(ino, code, ShardKind::Rebuild(i8), r)?)
            };
            let r = rebuilder(i, Some(first.0))
                .or_else(|| rebuilder(i, None))
                .ok_or(NfsError::LayoutUnavailable)?;
            rebuild.push((r, c.shard_handle(ino, code, ShardKind::Rebuild(i8), r)?));
            direct.push(first);
        }
        mirrors.push(direct);
        mirrors.push(rebuild);
        unit = 1u64 << code.unit_shift;
    } else {
        for ds in c.assemblers(ino, code).into_iter().take(2) {
            let fh = c.shard_handle(ino, code, ShardKind::Assembled, ds)?;
            mirrors.push(vec![(ds, fh)]);
        }
    }
    let creds = FfCredentials {
        uid: ctx.user.uid,
        gid: ctx.user.gid,
    };
    layout::build_shard_layout(&mirrors, unit, creds, &FfOptions::default()).map_err(|e| {
        tracing::error!(ino, "cannot build a layout: {e}");
        NfsError::LayoutUnavailable
    })
}

/// A layout of a mirrored file (or one not written yet): its mirrors, RW or READ.
async fn mirrored_layout(
    c: &Cluster,
    ctx: &Ctx<'_>,
    i: &Inode,
    a: &LayoutgetArgs,
    segment: &layout::Segment,
    rw: bool,
) -> NfsResult<Layout4> {
    let targets = if rw {
        // No DS with room: the client writes through us, and the WRITE says NOSPC.
        c.mirrors_for_write(&ctx.mds.ns, i.ino)
            .await
            .map_err(|e| match e {
                NfsError::NoSpc => NfsError::LayoutUnavailable,
                e => e,
            })?
    } else {
        // Reduced: no data server holds the file as it is; one assembles its reads from the
        // segments (`dataservers::reduced_reads`), or, where none can, they come through us
        // (LAYOUTUNAVAILABLE, as for an evicted file).
        if let Some(red) = c.reduced(&ctx.mds.ns, i.ino)? {
            let ds = c
                .reduced_assembler(&ctx.mds.ns, i.ino, red)?
                .ok_or(NfsError::LayoutUnavailable)?;
            let fh = layout::ReducedCap {
                file: layout::FileId(i.ino),
                generation: c.generation(i.ino),
                epoch: red.epoch,
                key_id: 0,
            }
            .mint(&c.cap_key, ds);
            let creds = FfCredentials {
                uid: ctx.user.uid,
                gid: ctx.user.gid,
            };
            return layout::build_shard_layout(&[vec![(ds, fh)]], 0, creds, &FfOptions::default())
                .map_err(|e| {
                    tracing::error!(ino = i.ino, "cannot build a layout: {e}");
                    NfsError::LayoutUnavailable
                });
        }
        c.mirrors_for_read(&ctx.mds.ns, i.ino)?
    };
    let grant = LayoutGrant {
        file: layout::FileId(i.ino),
        generation: c.generation(i.ino),
        key: &c.cap_key,
        key_id: 0,
        iomode: a.loga_iomode,
        creds: FfCredentials {
            uid: ctx.user.uid,
            gid: ctx.user.gid,
        },
    };
    layout::build_layout(segment, &[targets], &grant, &FfOptions::default()).map_err(|e| {
        tracing::error!(ino = i.ino, "cannot build a layout: {e}");
        NfsError::LayoutUnavailable
    })
}

pub async fn layoutget(ctx: &mut Ctx<'_>, a: &LayoutgetArgs) -> LayoutgetRes {
    match layoutget_inner(ctx, a).await {
        Ok(r) => LayoutgetRes::Ok(r),
        // The error's arm carries whether we will signal (CB_RECALLABLE_OBJ_AVAIL): no.
        Err(NfsError::LayoutTryLater) => LayoutgetRes::TryLater(false),
        Err(e) => LayoutgetRes::Err(e.code()),
    }
}

async fn layoutget_inner(ctx: &mut Ctx<'_>, a: &LayoutgetArgs) -> NfsResult<LayoutgetResOk> {
    let Some(c) = ctx.mds.cluster().cloned() else {
        return Err(NfsError::LayoutUnavailable);
    };
    // Data servers speak loosely coupled NFSv3, which Linux sends with AUTH_SYS whatever the
    // mount's flavor: bytes a krb5i or krb5p caller reads or writes would cross the network
    // unprotected there. Such callers get no layout, so their I/O comes through this server
    // under their own protection (and the MDS moves it to the data servers).
    if matches!(
        ctx.cred.flavor(),
        crate::export::SecFlavor::Krb5i | crate::export::SecFlavor::Krb5p
    ) {
        return Err(NfsError::LayoutUnavailable);
    }
    if a.loga_layout_type != LAYOUT4_FLEX_FILES {
        return Err(NfsError::UnknownLayoutType);
    }
    let rw = match a.loga_iomode {
        Layoutiomode4::Read => false,
        Layoutiomode4::Rw => true,
        Layoutiomode4::Any => return Err(NfsError::BadIoMode),
    };
    if a.loga_length < a.loga_minlength {
        return Err(NfsError::Inval);
    }
    let i = regular(ctx)?;
    let clientid = clientid(ctx)?;
    if rw {
        ctx.writable()?;
    }
    // An RW layout lets the client change the bytes without asking again: granted only
    // inside the snapshot quiesce's gate, held until the layout is recorded, so a quiesce
    // recalls every RW layout granted before it (`state::quiesce`).
    let _entered = if rw {
        Some(ctx.mds.nfs.quiesce.enter()?)
    } else {
        None
    };
    // Evicted: no data server holds its bytes. LAYOUTUNAVAILABLE sends the client's I/O
    // through us (from the bucket) for a while (Linux: PNFS_LAYOUTGET_RETRY_TIMEOUT, 120 s,
    // then it asks again). Not LAYOUTTRYLATER: Linux retries that LAYOUTGET, backing off, before
    // each I/O, and a kernel reading an evicted file took ten minutes for 6 MB.
    if ctx.mds.data.evicted_for(i.ino, rw)?.is_some() {
        return Err(NfsError::LayoutUnavailable);
    }
    let presented = ctx.stateid(&a.loga_stateid)?;
    // An RW layout lets the client write without asking us again, so it needs what a WRITE
    // would: an open for writing.
    if rw && !ctx.mds.nfs.state.has_write_open(clientid, i.ino) {
        return Err(NfsError::OpenMode);
    }
    let segment = c
        .geometry
        .segment(a.loga_offset, SegmentStyle::WholeFile)
        .map_err(|_| NfsError::Inval)?;
    if !segment.satisfies(a.loga_offset, a.loga_minlength) {
        return Err(NfsError::LayoutUnavailable);
    }
    let encoded = if rw {
        None
    } else {
        ctx.mds.ns.stripes(i.ino)?.filter(|c| c.is_encoded())
    };
    let layout = match encoded {
        Some(code) => {
            let stripes = match ctx.export.ec_reads {
                crate::export::EcReads::Auto => ctx.mds.nfs.state.stripes(clientid),
                crate::export::EcReads::Striped => true,
                crate::export::EcReads::Assembled => false,
            };
            encoded_layout(&c, i.ino, &code, ctx, stripes)?
        }
        None => mirrored_layout(&c, ctx, &i, a, &segment, rw).await?,
    };
    if layout.to_xdr().len() + 64 > a.loga_maxcount as usize {
        return Err(NfsError::TooSmall);
    }
    let stateid = ctx
        .mds
        .nfs
        .state
        .layout_get(clientid, i.ino, &presented, rw)?;
    if rw {
        // Writes through it are not seen here: a returned write delegation of this client's
        // drains while it lays out and commits (`state::delegations::DRAIN_QUIET_LAYOUT`).
        ctx.mds.nfs.state.note_layout_write(clientid, i.ino);
    }
    tracing::debug!(
        ino = i.ino,
        offset = a.loga_offset,
        length = a.loga_length,
        minlength = a.loga_minlength,
        rw,
        seg = segment.first_chunk,
        seqid = stateid.seqid,
        "LAYOUTGET"
    );
    MdsIoStats::add(&c.stats.layouts_granted, 1);
    Ok(LayoutgetResOk {
        // Linux returns layouts on its last close when asked to, which keeps our layout
        // state as short-lived as the opens.
        logr_return_on_close: true,
        logr_stateid: stateid,
        logr_layout: vec![layout],
    })
}

pub fn getdeviceinfo(ctx: &mut Ctx<'_>, a: &GetdeviceinfoArgs) -> GetdeviceinfoRes {
    let r = (|| {
        let c = cluster(ctx)?;
        if a.gdia_layout_type != LAYOUT4_FLEX_FILES {
            return Err(NfsError::UnknownLayoutType);
        }
        let ds = DsId::from_device_id(&a.gdia_device_id).ok_or(NfsError::NoEnt)?;
        let info = c.registry.info(ds).ok_or(NfsError::NoEnt)?;
        let addr = layout::build_device_addr(&info).map_err(|e| {
            tracing::error!(ds = %ds, "cannot describe data server: {e}");
            NfsError::ServerFault
        })?;
        Ok(addr)
    })();
    match r {
        Ok(addr) => {
            // Body plus the notification bitmap and the status.
            let need = addr.to_xdr().len() as u32 + 12;
            if a.gdia_maxcount != 0 && need > a.gdia_maxcount {
                return GetdeviceinfoRes::TooSmall(need);
            }
            GetdeviceinfoRes::Ok(GetdeviceinfoResOk {
                gdir_device_addr: addr,
                // We send no device notifications.
                gdir_notification: Bitmap4::default(),
            })
        }
        Err(e) => GetdeviceinfoRes::Err(e.code()),
    }
}

pub async fn layoutcommit(ctx: &mut Ctx<'_>, a: &LayoutcommitArgs) -> LayoutcommitRes {
    match layoutcommit_inner(ctx, a).await {
        Ok(r) => LayoutcommitRes::Ok(r),
        Err(e) => LayoutcommitRes::error(e.code()),
    }
}

async fn layoutcommit_inner(
    ctx: &mut Ctx<'_>,
    a: &LayoutcommitArgs,
) -> NfsResult<LayoutcommitResOk> {
    cluster(ctx)?;
    let i = regular(ctx)?;
    let clientid = clientid(ctx)?;
    let sid = ctx.stateid(&a.loca_stateid)?;
    // What a WRITE would need: the export writable, a read-write layout (RFC 8881 §18.42.3:
    // the range must lie in an RW layout, else BADLAYOUT), and write permission for the user
    // unless it owns the file (as knfsd's LAYOUTCOMMIT checks NFSD_MAY_WRITE). A READ layout
    // could otherwise set any size and mtime.
    ctx.writable()?;
    // A layout another server instance handed out (this node before a restart, or the node
    // whose client address this one took over; Linux never sets loca_reclaim) still had its
    // writes taken by the data servers, which fence per node: what they hold is the client's
    // acknowledged data, so its size is committed, as far as they hold it (`stored_end`).
    let foreign = ctx.mds.nfs.state.minted_elsewhere(&sid);
    if !foreign && !ctx.mds.nfs.state.layout_rw(clientid, i.ino, &sid)? {
        return Err(NfsError::BadLayout);
    }
    if !meta::namespace::perm::owner_or_capable(&ctx.user, &i) {
        ctx.require(&i, 2)?;
    }
    // Asked before anything waits: the settling ends once the size is recorded.
    let times_reported = ctx.mds.nfs.state.returned_with_times(clientid, i.ino);
    let mut end = match a.loca_last_write_offset {
        Newoffset4::Offset(o) => o.checked_add(1).ok_or(NfsError::Inval)?,
        Newoffset4::None => 0,
    };
    // The client's last write offset counts writes from before a truncation too (RFC 8881
    // §18.42.3 lets the server check it; Linux does not reset it when it truncates): grow the
    // size only as far as the data servers hold data: a truncation cut their copies.
    if end > i.size {
        let c = cluster(ctx)?;
        // When no holder answers, the claim stands, as it would without this check (not
        // for a foreign layout: nothing here vouches for it).
        let stored = c.stored_end(&ctx.mds.ns, i.ino).await?;
        if foreign && stored.is_none() {
            end = i.size;
        }
        if let Some(stored) = stored {
            if stored < end {
                tracing::debug!(
                    ino = i.ino,
                    claimed = end,
                    stored,
                    "LAYOUTCOMMIT beyond the data"
                );
                end = stored;
            }
        }
    }
    let time = match a.loca_time_modify {
        Newtime4::Changed(t) => Some(Time {
            secs: t.seconds,
            nsecs: t.nseconds.min(999_999_999),
        }),
        // Linux never sends a time. A holder that returned its delegation with delegated
        // timestamps and reported them (`settle.rs`) commits after its DELEGRETURN, when its
        // layout is recalled: the time of this commit is not its writes', the reported one is.
        Newtime4::Unchanged if times_reported => None,
        Newtime4::Unchanged => Some(Time::now()),
    };
    // Durable before the reply: the client forgets what it wrote once we have the size. As
    // the committing user, so the writes through the layout clear set-id bits as a WRITE
    // through us would; the client commits at close or fsync, before it reports the mode.
    let cmd = match time {
        Some(time) => Command::Write {
            ino: i.ino,
            end_offset: end,
            time,
            writes: 1,
        },
        None => Command::WriteKeepingTimes {
            ino: i.ino,
            end_offset: end,
            writes: 1,
        },
    };
    let out = ctx.execute_as(cmd).await?;
    ctx.mds.nfs.state.note_layout_write(clientid, i.ino);
    // Past the write-through mark on a data server holding the file, in the bucket too
    // (`tiering::through`): Linux sends this at close and fsync, and retries it on DELAY.
    let at = out.inode.as_ref().map(|n| n.change);
    crate::tiering::through::acknowledge(ctx.mds, i.ino, at).await?;
    let size = out.inode.map(|n| n.size).unwrap_or(i.size);
    tracing::debug!(
        ino = i.ino,
        clientid,
        recorded = i.size,
        committed = end,
        size,
        "LAYOUTCOMMIT"
    );
    Ok(LayoutcommitResOk {
        locr_newsize: if size != i.size {
            Newsize4::Size(size)
        } else {
            Newsize4::Unchanged
        },
    })
}

pub async fn layoutreturn(ctx: &mut Ctx<'_>, a: &LayoutreturnArgs) -> LayoutreturnRes {
    match layoutreturn_inner(ctx, a).await {
        Ok(r) => LayoutreturnRes::Ok(r),
        Err(e) => LayoutreturnRes::error(e.code()),
    }
}

async fn layoutreturn_inner(
    ctx: &mut Ctx<'_>,
    a: &LayoutreturnArgs,
) -> NfsResult<LayoutreturnStateid> {
    let c = cluster(ctx)?;
    if a.lora_layout_type != LAYOUT4_FLEX_FILES {
        return Err(NfsError::UnknownLayoutType);
    }
    let clientid = clientid(ctx)?;
    match &a.lora_layoutreturn {
        Layoutreturn4::File(f) => {
            let i = regular(ctx)?;
            let sid = ctx.stateid(&f.lrf_stateid)?;
            // The body reports the I/O errors the client met; a malformed one must not cost
            // the client its return.
            match layout::reports::from_layoutreturn_body(&f.lrf_body.0) {
                Ok((faults, _stats)) => act_on_faults(ctx, &c, i.ino, &faults).await,
                Err(e) => tracing::debug!(ino = i.ino, "unreadable ff_layoutreturn4: {e}"),
            }
            // A write delegation returned while this layout was out settles once it is back:
            // the writes through it are in.
            crate::state::settle::after_writes(&ctx.mds.nfs, clientid, i.ino).await;
            let whole = f.lrf_offset == 0 && f.lrf_length == u64::MAX;
            match ctx
                .mds
                .nfs
                .state
                .layout_return(clientid, i.ino, &sid, whole)?
            {
                Some(s) => Ok(LayoutreturnStateid::Present(s)),
                None => Ok(LayoutreturnStateid::Absent),
            }
        }
        Layoutreturn4::Fsid | Layoutreturn4::All => {
            ctx.mds.nfs.state.layout_return_all(clientid);
            Ok(LayoutreturnStateid::Absent)
        }
        Layoutreturn4::Other(_) => Err(NfsError::Inval),
    }
}

pub async fn layouterror(ctx: &mut Ctx<'_>, a: &LayouterrorArgs) -> NfsResult<()> {
    let c = cluster(ctx)?;
    let i = regular(ctx)?;
    act_on_faults(ctx, &c, i.ino, &layout::reports::from_layouterror(a)).await;
    Ok(())
}

pub fn layoutstats(ctx: &mut Ctx<'_>, a: &LayoutstatsArgs) -> NfsResult<()> {
    cluster(ctx)?;
    regular(ctx)?;
    let r = layout::reports::from_layoutstats(a);
    tracing::trace!(ds = ?r.ds.map(|d| d.to_string()), read = r.read.ii_bytes, write = r.write.ii_bytes, "layoutstats");
    Ok(())
}

/// A client could not reach or use a DS. Its word alone does not take a DS out of service
/// (one client's network trouble is not the cluster's), but a DS that also fails our own probe
/// is marked down at once instead of after its heartbeats time out. A DS that answered NOSPC
/// takes no new files for a while and stops being a mirror of this one (the others took the
/// bytes it refused), before the reply, so the client's next LAYOUTGET goes elsewhere.
async fn act_on_faults(ctx: &Ctx<'_>, c: &Arc<Cluster>, ino: u64, faults: &[DsFault]) {
    for f in faults {
        let Some(ds) = f.ds else { continue };
        tracing::info!(
            ds = %ds,
            status = ?Nfsstat4::from_code(f.status),
            kind = ?f.kind,
            "client reports a data server error"
        );
        match f.kind {
            FaultKind::Unreachable | FaultKind::Failing => {
                let c = c.clone();
                tokio::spawn(async move { c.probe(ds).await });
            }
            FaultKind::Full if f.status == Nfsstat4::Nospc.code() => {
                c.out_of_space(&ctx.mds.ns, ino, ds).await;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::reads_striped_layouts;
    use proto::nfs4::basic::{NfsImplId4, Nfstime4};
    use proto::xdr::Opaque;

    fn id(domain: &str, name: &str) -> Vec<NfsImplId4> {
        vec![NfsImplId4 {
            nii_domain: Opaque::from(domain),
            nii_name: Opaque::from(name),
            nii_date: Nfstime4::default(),
        }]
    }

    #[test]
    fn only_linux_from_6_18_gets_striped_layouts() {
        let linux = |release: &str| {
            id(
                "kernel.org",
                &format!("Linux {release} #1 SMP PREEMPT_DYNAMIC Debian x86_64"),
            )
        };
        assert!(reads_striped_layouts(&linux("6.18.3+deb14-amd64")));
        assert!(reads_striped_layouts(&linux("6.19.0")));
        assert!(reads_striped_layouts(&linux("7.0.1-rc2")));
        assert!(!reads_striped_layouts(&linux("6.17.9")));
        assert!(!reads_striped_layouts(&linux("6.1.0-28-amd64")));
        assert!(!reads_striped_layouts(&linux("5.19.0")));
        assert!(!reads_striped_layouts(&linux("garbage")));
        assert!(!reads_striped_layouts(&id("example.com", "Linux 6.18.0")));
        assert!(!reads_striped_layouts(&id("kernel.org", "FreeBSD 15.0")));
        assert!(!reads_striped_layouts(&[]));
    }
}
