//! The layout driver against an in-process mock of the cluster: an NFSv4.1 MDS that grants
//! one-chunk flexfiles layouts (two mirrors for RW) and NFSv3 data servers holding objects in
//! memory. The mock follows the contract the real MDS implements (see the driver's module
//! docs); it lets the driver's failover paths run deterministically, with a DS "killed" (its
//! listener and connections closed) at an exact byte of an upload.
use client::transfer::{self, TransferOptions};
use client::{Client, ClientConfig, CreateMode, SetAttrs, StableHow4};
use layout::dsmap::{DsId, DsInfo};
use proto::nfs3::*;
use proto::nfs4::*;
use proto::rpc::{
    accepted_reply, AcceptStat, Auth, Call, CallHandler, Connection, ConnectionLimits,
};
use proto::xdr::{Opaque, Reader, Writer, Xdr};
use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

const MIB: usize = 1 << 20;
const CHUNK: u64 = 4 << 20;

// ---------------------------------------------------------------- data servers

/// DS handle: file id, chunk index, DS id.
fn ds_fh(file: u64, chunk: u64, ds: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(24);
    v.extend_from_slice(&file.to_be_bytes());
    v.extend_from_slice(&chunk.to_be_bytes());
    v.extend_from_slice(&ds.to_be_bytes());
    v
}

fn fh_chunk(fh: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(fh.get(8..16)?.try_into().ok()?))
}

struct Ds {
    id: u64,
    addr: SocketAddr,
    alive: AtomicBool,
    /// The MDS no longer puts it in layouts (its heartbeats stopped being heard).
    noticed_down: AtomicBool,
    verf: [u8; 8],
    /// Objects by handle: the bytes of one chunk, from the chunk's start.
    objects: Mutex<HashMap<Vec<u8>, Vec<u8>>>,
    conns: Mutex<Vec<Connection>>,
    accept: Mutex<Option<JoinHandle<()>>>,
    write_bytes: AtomicU64,
    read_bytes: AtomicU64,
    commits: AtomicU64,
    /// Handles refused with NFS3ERR_STALE (a fenced layout).
    fenced: Mutex<Vec<Vec<u8>>>,
}

impl Ds {
    async fn start(id: u64) -> Arc<Ds> {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind DS");
        let ds = Arc::new(Ds {
            id,
            addr: l.local_addr().expect("addr"),
            alive: AtomicBool::new(true),
            noticed_down: AtomicBool::new(false),
            verf: [id as u8; 8],
            objects: Mutex::default(),
            conns: Mutex::default(),
            accept: Mutex::default(),
            write_bytes: AtomicU64::new(0),
            read_bytes: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            fenced: Mutex::default(),
        });
        let d2 = ds.clone();
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let h = Arc::new(DsHandler(d2.clone()));
                if let Ok(c) = Connection::spawn(s, h, ConnectionLimits::default()) {
                    d2.conns.lock().unwrap().push(c);
                }
            }
        });
        *ds.accept.lock().unwrap() = Some(task);
        ds
    }

    /// As `kill -9`: nothing answers any more, connections drop, new ones are refused.
    fn kill(&self) {
        self.alive.store(false, Ordering::SeqCst);
        if let Some(t) = self.accept.lock().unwrap().take() {
            t.abort();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            c.close();
        }
    }

    fn object(&self, fh: &[u8]) -> Option<Vec<u8>> {
        self.objects.lock().unwrap().get(fh).cloned()
    }
}

struct DsHandler(Arc<Ds>);

fn reply(call: &Call, body: &impl Xdr) -> Option<Writer> {
    let mut w = accepted_reply(call.xid, &Auth::None, AcceptStat::Success);
    body.encode(&mut w);
    Some(w)
}

impl CallHandler for DsHandler {
    async fn handle(&self, _conn: Connection, call: Call) -> Option<Writer> {
        let ds = &self.0;
        if !ds.alive.load(Ordering::SeqCst) {
            return None;
        }
        let stale = |fh: &[u8]| ds.fenced.lock().unwrap().iter().any(|f| f == fh);
        match call.proc_ {
            NFSPROC3_NULL => Some(accepted_reply(call.xid, &Auth::None, AcceptStat::Success)),
            NFSPROC3_WRITE => {
                let a = Write3Args::from_xdr(call.args()).ok()?;
                let fh = a.file.data.0.clone();
                if stale(&fh) {
                    return reply(&call, &Write3Res::Fail(70, WccResFail::default()));
                }
                let base = fh_chunk(&fh)? * CHUNK;
                let rel = (a.offset - base) as usize;
                let mut objs = ds.objects.lock().unwrap();
                let o = objs.entry(fh).or_default();
                if o.len() < rel + a.data.0.len() {
                    o.resize(rel + a.data.0.len(), 0);
                }
                o[rel..rel + a.data.0.len()].copy_from_slice(&a.data.0);
                ds.write_bytes
                    .fetch_add(a.data.0.len() as u64, Ordering::Relaxed);
                reply(
                    &call,
                    &Write3Res::Ok(Write3ResOk {
                        file_wcc: WccData::default(),
                        count: a.data.0.len() as u32,
                        committed: a.stable,
                        verf: ds.verf,
                    }),
                )
            }
            NFSPROC3_READ => {
                let a = Read3Args::from_xdr(call.args()).ok()?;
                let fh = a.file.data.0.clone();
                if stale(&fh) {
                    return reply(
                        &call,
                        &Read3Res::Fail(
                            70,
                            AttrResFail {
                                obj_attributes: None,
                            },
                        ),
                    );
                }
                let base = fh_chunk(&fh)? * CHUNK;
                let rel = (a.offset - base) as usize;
                let o = ds.object(&fh).unwrap_or_default();
                let end = (rel + a.count as usize).min(o.len());
                let data = if rel < end {
                    o[rel..end].to_vec()
                } else {
                    Vec::new()
                };
                ds.read_bytes
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                reply(
                    &call,
                    &Read3Res::Ok(Read3ResOk {
                        file_attributes: None,
                        count: data.len() as u32,
                        eof: rel + data.len() >= o.len(),
                        data: Opaque(data),
                    }),
                )
            }
            NFSPROC3_COMMIT => {
                ds.commits.fetch_add(1, Ordering::Relaxed);
                reply(
                    &call,
                    &Commit3Res::Ok(Commit3ResOk {
                        file_wcc: WccData::default(),
                        verf: ds.verf,
                    }),
                )
            }
            _ => Some(accepted_reply(
                call.xid,
                &Auth::None,
                AcceptStat::ProcUnavail,
            )),
        }
    }
}

// ---------------------------------------------------------------- MDS

#[derive(Default)]
struct MdsState {
    names: HashMap<String, u64>,
    sizes: HashMap<u64, u64>,
    next_id: u64,
    layout_seq: u32,
    /// DSs holding each (file, chunk), oldest first.
    locations: HashMap<(u64, u64), Vec<usize>>,
}

#[derive(Default)]
struct MdsCounters {
    layoutgets: AtomicU64,
    layoutcommits: AtomicU64,
    layoutreturns: AtomicU64,
    returned_ioerrs: AtomicU64,
    layouterrors: AtomicU64,
    read_bytes: AtomicU64,
    write_bytes: AtomicU64,
}

/// What the MDS saw of a layout's return, for the recall test.
#[derive(Debug, Default, Clone)]
struct ReturnSeen {
    /// Stateid, offset and length of the last LAYOUTRETURN4_FILE.
    last: Option<(Stateid4, u64, u64)>,
    /// Bytes written and COMMITs on the DSs when it came.
    ds_write_bytes: u64,
    ds_commits: u64,
    /// Bytes written on the DSs when the first LAYOUTGET after it came.
    ds_write_bytes_at_next_layoutget: Option<u64>,
}

struct Mds {
    dss: Vec<Arc<Ds>>,
    read_mirrors: usize,
    offer_pnfs: bool,
    unavailable: AtomicBool,
    /// LAYOUTGETs are answered NFS4ERR_DELAY until then (as a snapshot's quiesce does).
    delay_layoutgets_until: Mutex<Option<std::time::Instant>>,
    /// The connection of the latest CREATE_SESSION: callbacks go over it.
    back_channel: Mutex<Option<Connection>>,
    returns: Mutex<ReturnSeen>,
    st: Mutex<MdsState>,
    n: MdsCounters,
}

const ROOT: [u8; 8] = [0; 8];

impl Mds {
    fn file_id(fh: &[u8]) -> Option<u64> {
        let id = u64::from_be_bytes(fh.try_into().ok()?);
        (id != 0).then_some(id)
    }

    /// The mirrors of a chunk for a new grant: the recorded holders still believed up, topped
    /// up from placement order for RW.
    fn mirrors(&self, file: u64, chunk: u64, iomode: Layoutiomode4) -> Vec<usize> {
        let up: Vec<usize> = (0..self.dss.len())
            .filter(|&i| !self.dss[i].noticed_down.load(Ordering::SeqCst))
            .collect();
        if up.is_empty() {
            return Vec::new();
        }
        let mut st = self.st.lock().unwrap();
        let rec = st.locations.entry((file, chunk)).or_default();
        let mut set: Vec<usize> = rec.iter().copied().filter(|i| up.contains(i)).collect();
        match iomode {
            Layoutiomode4::Read if !set.is_empty() => {
                set.truncate(self.read_mirrors);
                set
            }
            _ => {
                let want = if iomode == Layoutiomode4::Read {
                    self.read_mirrors
                } else {
                    2
                };
                let start = (file + chunk) as usize;
                for k in 0..up.len() {
                    if set.len() >= want {
                        break;
                    }
                    let c = up[(start + k) % up.len()];
                    if !set.contains(&c) {
                        set.push(c);
                    }
                }
                if iomode == Layoutiomode4::Rw {
                    for &c in &set {
                        if !rec.contains(&c) {
                            rec.push(c);
                        }
                    }
                }
                set
            }
        }
    }

    fn ds_write_bytes(&self) -> u64 {
        self.dss
            .iter()
            .map(|d| d.write_bytes.load(Ordering::SeqCst))
            .sum()
    }

    fn layoutget(&self, file: u64, a: &LayoutgetArgs) -> LayoutgetRes {
        self.n.layoutgets.fetch_add(1, Ordering::Relaxed);
        {
            let mut r = self.returns.lock().unwrap();
            if r.last.is_some() && r.ds_write_bytes_at_next_layoutget.is_none() {
                r.ds_write_bytes_at_next_layoutget = Some(self.ds_write_bytes());
            }
        }
        if self
            .delay_layoutgets_until
            .lock()
            .unwrap()
            .is_some_and(|t| std::time::Instant::now() < t)
        {
            return LayoutgetRes::Err(Nfsstat4::Delay.code());
        }
        if self.unavailable.load(Ordering::SeqCst) {
            return LayoutgetRes::Err(Nfsstat4::Layoutunavailable.code());
        }
        let chunk = a.loga_offset / CHUNK;
        let set = self.mirrors(file, chunk, a.loga_iomode);
        if set.is_empty() {
            return LayoutgetRes::Err(Nfsstat4::Layoutunavailable.code());
        }
        let ff = FfLayout4 {
            ffl_stripe_unit: 0,
            ffl_mirrors: set
                .iter()
                .enumerate()
                .map(|(m, &i)| FfMirror4 {
                    ffm_data_servers: vec![FfDataServer4 {
                        ffds_deviceid: DsId(self.dss[i].id).device_id(),
                        ffds_efficiency: 255 - m as u32,
                        ffds_stateid: Stateid4::default(),
                        ffds_fh_vers: vec![NfsFh4(Opaque(ds_fh(file, chunk, self.dss[i].id)))],
                        ffds_user: Opaque::from("1000"),
                        ffds_group: Opaque::from("1000"),
                    }],
                })
                .collect(),
            ffl_flags: 0,
            ffl_stats_collect_hint: 0,
        };
        let seq = {
            let mut st = self.st.lock().unwrap();
            st.layout_seq += 1;
            st.layout_seq
        };
        LayoutgetRes::Ok(LayoutgetResOk {
            logr_return_on_close: false,
            logr_stateid: Stateid4 {
                seqid: seq,
                other: [9; 12],
            },
            logr_layout: vec![Layout4 {
                lo_offset: chunk * CHUNK,
                lo_length: CHUNK,
                lo_iomode: a.loga_iomode,
                lo_content: LayoutContent4 {
                    loc_type: LAYOUT4_FLEX_FILES,
                    loc_body: Opaque(ff.to_xdr()),
                },
            }],
        })
    }

    fn size(&self, file: u64) -> u64 {
        *self.st.lock().unwrap().sizes.get(&file).unwrap_or(&0)
    }

    /// READ through the MDS: from any live DS holding each chunk (the MDS proxies).
    fn read(&self, file: u64, offset: u64, count: u32) -> (Vec<u8>, bool) {
        let size = self.size(file);
        let end = (offset + u64::from(count)).min(size);
        let mut out = Vec::new();
        let mut at = offset;
        while at < end {
            let chunk = at / CHUNK;
            let upto = ((chunk + 1) * CHUNK).min(end);
            let obj = self
                .dss
                .iter()
                .filter(|d| d.alive.load(Ordering::SeqCst))
                .find_map(|d| d.object(&ds_fh(file, chunk, d.id)))
                .unwrap_or_default();
            for p in at..upto {
                out.push(*obj.get((p - chunk * CHUNK) as usize).unwrap_or(&0));
            }
            at = upto;
        }
        self.n
            .read_bytes
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        (out, end >= size)
    }

    /// WRITE through the MDS: to the chunk's RW mirrors that are alive.
    fn write(&self, file: u64, offset: u64, data: &[u8]) {
        let mut done = 0usize;
        while done < data.len() {
            let at = offset + done as u64;
            let chunk = at / CHUNK;
            let n = (((chunk + 1) * CHUNK - at) as usize).min(data.len() - done);
            for i in self.mirrors(file, chunk, Layoutiomode4::Rw) {
                let d = &self.dss[i];
                if !d.alive.load(Ordering::SeqCst) {
                    continue;
                }
                let mut objs = d.objects.lock().unwrap();
                let o = objs.entry(ds_fh(file, chunk, d.id)).or_default();
                let rel = (at - chunk * CHUNK) as usize;
                if o.len() < rel + n {
                    o.resize(rel + n, 0);
                }
                o[rel..rel + n].copy_from_slice(&data[done..done + n]);
            }
            done += n;
        }
        let mut st = self.st.lock().unwrap();
        let s = st.sizes.entry(file).or_default();
        *s = (*s).max(offset + data.len() as u64);
        self.n
            .write_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
    }

    fn attrs(&self, fh: &[u8]) -> FileAttrs {
        match Self::file_id(fh) {
            None => FileAttrs {
                ftype: Some(NfsFtype4::Dir),
                fileid: Some(1),
                mode: Some(0o755),
                lease_time: Some(90),
                maxread: Some(1 << 20),
                maxwrite: Some(1 << 20),
                fs_layout_types: Some(if self.offer_pnfs {
                    vec![LAYOUT4_FLEX_FILES]
                } else {
                    vec![]
                }),
                layout_blksize: Some(CHUNK as u32),
                ..Default::default()
            },
            Some(id) => FileAttrs {
                ftype: Some(NfsFtype4::Reg),
                fileid: Some(id + 1),
                mode: Some(0o644),
                size: Some(self.size(id)),
                ..Default::default()
            },
        }
    }

    fn op(&self, cur: &mut Vec<u8>, op: NfsArgop4) -> NfsResop4 {
        let ok = |n: u32| NfsResop4::from_status(n, 0);
        match op {
            NfsArgop4::ExchangeId(_) => NfsResop4::ExchangeId(ExchangeIdRes::Ok(ExchangeIdResOk {
                eir_clientid: 1,
                eir_sequenceid: 1,
                eir_flags: EXCHGID4_FLAG_USE_PNFS_MDS,
                eir_state_protect: StateProtect4R::None,
                eir_server_owner: ServerOwner4 {
                    so_minor_id: 0,
                    so_major_id: Opaque::from("mock"),
                },
                eir_server_scope: Opaque::from("mock"),
                eir_server_impl_id: vec![],
            })),
            NfsArgop4::CreateSession(a) => {
                NfsResop4::CreateSession(CreateSessionRes::Ok(CreateSessionResOk {
                    csr_sessionid: [7; 16],
                    csr_sequence: a.csa_sequence,
                    csr_flags: 0,
                    csr_fore_chan_attrs: ChannelAttrs4 {
                        ca_headerpadsize: 0,
                        ca_maxrequestsize: 2 << 20,
                        ca_maxresponsesize: 2 << 20,
                        ca_maxresponsesize_cached: 8192,
                        ca_maxoperations: 16,
                        ca_maxrequests: 64,
                        ca_rdma_ird: vec![],
                    },
                    csr_back_chan_attrs: a.csa_back_chan_attrs,
                }))
            }
            NfsArgop4::Sequence(a) => NfsResop4::Sequence(SequenceRes::Ok(SequenceResOk {
                sr_sessionid: a.sa_sessionid,
                sr_sequenceid: a.sa_sequenceid,
                sr_slotid: a.sa_slotid,
                sr_highest_slotid: a.sa_highest_slotid,
                sr_target_highest_slotid: 63,
                sr_status_flags: 0,
            })),
            NfsArgop4::Putrootfh => {
                *cur = ROOT.to_vec();
                ok(OP_PUTROOTFH)
            }
            NfsArgop4::Putfh(a) => {
                *cur = a.object.0 .0;
                ok(OP_PUTFH)
            }
            NfsArgop4::Getfh => NfsResop4::Getfh(GetfhRes::Ok(GetfhResOk {
                object: NfsFh4(Opaque(cur.clone())),
            })),
            NfsArgop4::Lookup(a) => {
                let name = String::from_utf8_lossy(a.objname.as_bytes()).into_owned();
                match self.st.lock().unwrap().names.get(&name) {
                    Some(id) => {
                        *cur = id.to_be_bytes().to_vec();
                        ok(OP_LOOKUP)
                    }
                    None => NfsResop4::from_status(OP_LOOKUP, Nfsstat4::Noent.code()),
                }
            }
            NfsArgop4::Getattr(_) => NfsResop4::Getattr(GetattrRes::Ok(GetattrResOk {
                obj_attributes: self.attrs(cur).encode_all(),
            })),
            NfsArgop4::Open(a) => {
                let OpenClaim4::Null(name) = a.claim else {
                    return NfsResop4::from_status(OP_OPEN, Nfsstat4::Notsupp.code());
                };
                let name = String::from_utf8_lossy(name.as_bytes()).into_owned();
                let mut st = self.st.lock().unwrap();
                let id = match st.names.get(&name) {
                    Some(id) => *id,
                    None => {
                        if matches!(a.openhow, Openflag4::NoCreate) {
                            return NfsResop4::from_status(OP_OPEN, Nfsstat4::Noent.code());
                        }
                        st.next_id += 1;
                        let id = st.next_id;
                        st.names.insert(name, id);
                        st.sizes.insert(id, 0);
                        id
                    }
                };
                *cur = id.to_be_bytes().to_vec();
                let mut other = [0u8; 12];
                other[..8].copy_from_slice(&id.to_be_bytes());
                NfsResop4::Open(OpenRes::Ok(OpenResOk {
                    stateid: Stateid4 { seqid: 1, other },
                    cinfo: ChangeInfo4::default(),
                    rflags: 0,
                    attrset: vec![],
                    delegation: OpenDelegation4::None,
                }))
            }
            NfsArgop4::Close(a) => NfsResop4::Close(CloseRes::Ok(a.open_stateid)),
            NfsArgop4::Layoutget(a) => {
                let Some(file) = Self::file_id(cur) else {
                    return NfsResop4::from_status(OP_LAYOUTGET, Nfsstat4::Inval.code());
                };
                NfsResop4::Layoutget(self.layoutget(file, &a))
            }
            NfsArgop4::Getdeviceinfo(a) => {
                let ds = DsId::from_device_id(&a.gdia_device_id)
                    .and_then(|id| self.dss.iter().find(|d| d.id == id.0));
                match ds {
                    Some(d) => NfsResop4::Getdeviceinfo(GetdeviceinfoRes::Ok(GetdeviceinfoResOk {
                        gdir_device_addr: layout::flexfiles::build_device_addr(&DsInfo::new(
                            DsId(d.id),
                            d.addr,
                        ))
                        .expect("device addr"),
                        gdir_notification: vec![],
                    })),
                    None => NfsResop4::from_status(OP_GETDEVICEINFO, Nfsstat4::Noent.code()),
                }
            }
            NfsArgop4::Layoutcommit(a) => {
                self.n.layoutcommits.fetch_add(1, Ordering::Relaxed);
                let file = Self::file_id(cur).unwrap_or(0);
                let mut st = self.st.lock().unwrap();
                let s = st.sizes.entry(file).or_default();
                if let Newoffset4::Offset(o) = a.loca_last_write_offset {
                    *s = (*s).max(o + 1);
                }
                NfsResop4::Layoutcommit(LayoutcommitRes::Ok(LayoutcommitResOk {
                    locr_newsize: Newsize4::Size(*s),
                }))
            }
            NfsArgop4::Layoutreturn(a) => {
                self.n.layoutreturns.fetch_add(1, Ordering::Relaxed);
                let mut whole = false;
                if let Layoutreturn4::File(f) = &a.lora_layoutreturn {
                    let body = FfLayoutreturn4::from_xdr(f.lrf_body.as_bytes())
                        .expect("client sent a valid ff_layoutreturn4");
                    self.n
                        .returned_ioerrs
                        .fetch_add(body.fflr_ioerr_report.len() as u64, Ordering::Relaxed);
                    *self.returns.lock().unwrap() = ReturnSeen {
                        last: Some((f.lrf_stateid, f.lrf_offset, f.lrf_length)),
                        ds_write_bytes: self.ds_write_bytes(),
                        ds_commits: self
                            .dss
                            .iter()
                            .map(|d| d.commits.load(Ordering::SeqCst))
                            .sum(),
                        ds_write_bytes_at_next_layoutget: None,
                    };
                    whole = f.lrf_offset == 0 && f.lrf_length == u64::MAX;
                }
                // As RFC 8881 §18.44.3 (and the real MDS): nothing left, no stateid.
                NfsResop4::Layoutreturn(LayoutreturnRes::Ok(if whole {
                    LayoutreturnStateid::Absent
                } else {
                    LayoutreturnStateid::Present(Stateid4 {
                        seqid: 1000,
                        other: [9; 12],
                    })
                }))
            }
            NfsArgop4::Layouterror(_) => {
                self.n.layouterrors.fetch_add(1, Ordering::Relaxed);
                ok(OP_LAYOUTERROR)
            }
            NfsArgop4::Read(a) => {
                let file = Self::file_id(cur).unwrap_or(0);
                let (data, eof) = self.read(file, a.offset, a.count);
                NfsResop4::Read(ReadRes::Ok(ReadResOk {
                    eof,
                    data: Opaque(data),
                }))
            }
            NfsArgop4::Write(a) => {
                let file = Self::file_id(cur).unwrap_or(0);
                self.write(file, a.offset, &a.data.0);
                NfsResop4::Write(WriteRes::Ok(WriteResOk {
                    count: a.data.0.len() as u32,
                    committed: StableHow4::FileSync4,
                    writeverf: [1; 8],
                }))
            }
            NfsArgop4::Commit(_) => {
                NfsResop4::Commit(CommitRes::Ok(CommitResOk { writeverf: [1; 8] }))
            }
            NfsArgop4::ReclaimComplete(_)
            | NfsArgop4::DestroySession(_)
            | NfsArgop4::DestroyClientid(_)
            | NfsArgop4::Delegreturn(_) => ok(op.opnum()),
            other => NfsResop4::from_status(other.opnum(), Nfsstat4::Notsupp.code()),
        }
    }
}

struct MdsHandler(Arc<Mds>);

impl CallHandler for MdsHandler {
    async fn handle(&self, conn: Connection, call: Call) -> Option<Writer> {
        let args = Compound4Args::decode_partial(&mut Reader::new(call.args())).ok()?;
        if args
            .argarray
            .iter()
            .any(|o| matches!(o, NfsArgop4::CreateSession(_)))
        {
            *self.0.back_channel.lock().unwrap() = Some(conn);
        }
        let mut cur = Vec::new();
        let mut resarray = Vec::new();
        let mut status = 0;
        for op in args.argarray {
            let r = self.0.op(&mut cur, op);
            status = r.status();
            resarray.push(r);
            if status != 0 {
                break;
            }
        }
        reply(
            &call,
            &Compound4Res {
                status,
                tag: args.tag,
                resarray,
            },
        )
    }
}

struct Cluster {
    mds: Arc<Mds>,
    addr: SocketAddr,
    _accept: JoinHandle<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self._accept.abort();
        for d in &self.mds.dss {
            d.kill();
        }
    }
}

async fn cluster(n_ds: u64, read_mirrors: usize, offer_pnfs: bool) -> Cluster {
    let mut dss = Vec::new();
    for i in 1..=n_ds {
        dss.push(Ds::start(i).await);
    }
    let mds = Arc::new(Mds {
        dss,
        read_mirrors,
        offer_pnfs,
        unavailable: AtomicBool::new(false),
        delay_layoutgets_until: Mutex::default(),
        back_channel: Mutex::default(),
        returns: Mutex::default(),
        st: Mutex::default(),
        n: MdsCounters::default(),
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind MDS");
    let addr = l.local_addr().expect("addr");
    let m2 = mds.clone();
    let accept = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let limits = ConnectionLimits {
                max_record: 8 << 20,
                max_in_flight: 64,
            };
            let _ = Connection::spawn(s, Arc::new(MdsHandler(m2.clone())), limits);
        }
    });
    Cluster {
        mds,
        addr,
        _accept: accept,
    }
}

async fn client(cl: &Cluster, pnfs: bool) -> Client {
    let mut cfg = ClientConfig::new(cl.addr);
    cfg.pnfs = pnfs;
    cfg.back_channel = false;
    Client::connect(cfg).await.expect("connect to mock MDS")
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    v.truncate(len);
    v
}

async fn upload(c: &Client, path: &str, src: &mut dyn Read) -> client::Result<u64> {
    let f = Arc::new(
        c.open_path(
            path,
            OPEN4_SHARE_ACCESS_BOTH,
            Some(CreateMode::Unchecked(SetAttrs {
                size: Some(0),
                ..Default::default()
            })),
        )
        .await?,
    );
    let opt = TransferOptions {
        stable: StableHow4::Unstable4,
        ..TransferOptions::default()
    };
    let r = transfer::upload(c, f.clone(), src, opt).await;
    let closed = c.close(&f).await;
    let n = r?;
    closed?;
    Ok(n)
}

async fn download(c: &Client, path: &str) -> client::Result<Vec<u8>> {
    let f = Arc::new(c.open_path(path, OPEN4_SHARE_ACCESS_READ, None).await?);
    let mut out = Vec::new();
    let r = transfer::download(c, f.clone(), &mut out, TransferOptions::default()).await;
    let closed = c.close(&f).await;
    r?;
    closed?;
    Ok(out)
}

fn file_id(cl: &Cluster, name: &str) -> u64 {
    *cl.mds.st.lock().unwrap().names.get(name).expect("file")
}

/// Every live DS the MDS records for a chunk holds exactly that chunk's bytes.
fn assert_mirrors_hold(cl: &Cluster, name: &str, data: &[u8], min_copies: usize) {
    let id = file_id(cl, name);
    let chunks = (data.len() as u64).div_ceil(CHUNK);
    for chunk in 0..chunks {
        let lo = (chunk * CHUNK) as usize;
        let hi = (lo + CHUNK as usize).min(data.len());
        let holders = cl
            .mds
            .st
            .lock()
            .unwrap()
            .locations
            .get(&(id, chunk))
            .cloned()
            .unwrap_or_default();
        let mut copies = 0;
        for i in holders {
            let d = &cl.mds.dss[i];
            if !d.alive.load(Ordering::SeqCst) {
                continue;
            }
            let obj = d.object(&ds_fh(id, chunk, d.id)).unwrap_or_default();
            assert!(
                obj.as_slice() == &data[lo..hi],
                "chunk {chunk} on ds{} differs ({} bytes, want {})",
                d.id,
                obj.len(),
                hi - lo
            );
            copies += 1;
        }
        assert!(copies >= min_copies, "chunk {chunk}: {copies} copies");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mirrored_writes_go_to_the_data_servers() {
    let cl = cluster(3, 1, true).await;
    let data = random_bytes(22 * MIB + 4321, 1);
    let c = client(&cl, true).await;
    assert!(c.pnfs_active().await);
    let n = upload(&c, "/a", &mut std::io::Cursor::new(&data))
        .await
        .expect("upload");
    assert_eq!(n, data.len() as u64);
    let s = c.pnfs_stats().expect("stats");
    assert_eq!(s.ds_write_bytes, 2 * data.len() as u64, "{s:?}");
    assert_eq!(s.mds_write_bytes, 0, "{s:?}");
    assert_eq!(s.rewrite_bytes, 0, "{s:?}");
    assert!(s.layoutcommits >= 1 && s.ds_commits >= 12, "{s:?}");
    assert_eq!(s.getdeviceinfos, 3, "one GETDEVICEINFO per DS: {s:?}");
    assert_eq!(cl.mds.n.write_bytes.load(Ordering::Relaxed), 0);
    // LAYOUTCOMMIT told the MDS the size.
    assert_eq!(cl.mds.size(file_id(&cl, "a")), data.len() as u64);
    assert_mirrors_hold(&cl, "a", &data, 2);

    let r = client(&cl, true).await;
    let got = download(&r, "/a").await.expect("download");
    assert!(got == data, "pNFS read differs");
    let s = r.pnfs_stats().expect("stats");
    assert_eq!(s.ds_read_bytes, data.len() as u64, "{s:?}");
    assert_eq!(s.mds_read_bytes, 0, "{s:?}");

    // pnfs off: the MDS does all the I/O and no layout is asked for.
    let lg = cl.mds.n.layoutgets.load(Ordering::Relaxed);
    let m = client(&cl, false).await;
    assert!(!m.pnfs_active().await);
    let got = download(&m, "/a").await.expect("download via MDS");
    assert!(got == data, "MDS read differs");
    assert!(m.pnfs_stats().is_none());
    assert_eq!(cl.mds.n.layoutgets.load(Ordering::Relaxed), lg);
    assert_eq!(
        cl.mds.n.read_bytes.load(Ordering::Relaxed),
        data.len() as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_without_flexfiles_gets_plain_io() {
    let cl = cluster(2, 1, false).await;
    let data = random_bytes(3 * MIB, 2);
    let c = client(&cl, true).await;
    assert!(!c.pnfs_active().await);
    upload(&c, "/p", &mut std::io::Cursor::new(&data))
        .await
        .expect("upload");
    assert!(download(&c, "/p").await.expect("download") == data);
    assert_eq!(cl.mds.n.layoutgets.load(Ordering::Relaxed), 0);
    assert!(c.pnfs_stats().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_layout_available_means_io_through_the_mds() {
    let cl = cluster(2, 1, true).await;
    cl.mds.unavailable.store(true, Ordering::SeqCst);
    let data = random_bytes(5 * MIB + 7, 3);
    let c = client(&cl, true).await;
    upload(&c, "/u", &mut std::io::Cursor::new(&data))
        .await
        .expect("upload");
    let asked = cl.mds.n.layoutgets.load(Ordering::Relaxed);
    assert!(download(&c, "/u").await.expect("download") == data);
    // A READ layout refused once is not asked for again before every READ of the open (as
    // Linux, for PNFS_LAYOUTGET_RETRY_TIMEOUT): one LAYOUTGET for six 1 MiB READs.
    assert_eq!(cl.mds.n.layoutgets.load(Ordering::Relaxed) - asked, 1);
    let s = c.pnfs_stats().expect("stats");
    assert_eq!(s.mds_write_bytes, data.len() as u64, "{s:?}");
    assert_eq!(s.ds_write_bytes, 0, "{s:?}");
    assert!(s.mds_read_bytes >= data.len() as u64, "{s:?}");
}

/// Stops handing out data at `at` and runs `hook` once there (with writes still in flight).
struct Gate<F: FnMut()> {
    inner: std::io::Cursor<Vec<u8>>,
    at: u64,
    hook: Option<F>,
}

impl<F: FnMut()> Read for Gate<F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let pos = self.inner.position();
        if pos >= self.at {
            if let Some(mut h) = self.hook.take() {
                h();
            }
        }
        let room = if self.hook.is_some() {
            buf.len().min((self.at - pos) as usize)
        } else {
            buf.len()
        };
        self.inner.read(&mut buf[..room])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upload_survives_a_data_server_dying_midway() {
    let cl = cluster(3, 1, true).await;
    let data = random_bytes(30 * MIB + 99, 4);
    let c = client(&cl, true).await;
    let victim = cl.mds.dss[0].clone();
    let c2 = c.clone();
    let gate = Gate {
        inner: std::io::Cursor::new(data.clone()),
        at: 10 * MIB as u64,
        hook: Some(move || {
            // Let the writes before the gate land (unstable, on both mirrors), so the dead DS
            // surely takes uncommitted data with it. This blocks one worker; others run them.
            let t = std::time::Instant::now();
            while c2.pnfs_stats().map_or(0, |s| s.ds_write_bytes) < 20 * MIB as u64
                && t.elapsed() < std::time::Duration::from_secs(10)
            {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            victim.kill();
            // The MDS notices after a few missed heartbeats.
            let v = victim.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(1500));
                v.noticed_down.store(true, Ordering::SeqCst);
            });
        }),
    };
    let mut gate = gate;
    let t0 = std::time::Instant::now();
    let n = upload(&c, "/k", &mut gate).await.expect("upload");
    assert_eq!(n, data.len() as u64);
    let s = c.pnfs_stats().expect("stats");
    eprintln!(
        "upload with ds1 killed at 10 MiB: {:?}; {s:?}",
        t0.elapsed()
    );
    assert!(s.ds_errors > 0, "{s:?}");
    assert!(
        s.rewrite_bytes > 0,
        "uncommitted data on the dead DS is rewritten: {s:?}"
    );
    assert!(cl.mds.n.layouterrors.load(Ordering::Relaxed) > 0);
    assert!(cl.mds.n.returned_ioerrs.load(Ordering::Relaxed) > 0);
    assert_eq!(cl.mds.size(file_id(&cl, "k")), data.len() as u64);
    // Every live DS recorded for a chunk holds all of it: nothing acknowledged was on the
    // dead DS alone.
    assert_mirrors_hold(&cl, "k", &data, 1);
    let r = client(&cl, true).await;
    assert!(download(&r, "/k").await.expect("download") == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_fails_over_to_the_other_mirror() {
    // READ layouts with both mirrors: the driver tries mirror 1 when mirror 0 is dead.
    let cl = cluster(3, 2, true).await;
    let data = random_bytes(12 * MIB + 5, 5);
    let c = client(&cl, true).await;
    upload(&c, "/m", &mut std::io::Cursor::new(&data))
        .await
        .expect("upload");
    cl.mds.dss[1].kill();
    let r = client(&cl, true).await;
    assert!(download(&r, "/m").await.expect("download") == data);
    let s = r.pnfs_stats().expect("stats");
    assert!(s.ds_errors > 0, "{s:?}");
    assert_eq!(s.ds_read_bytes, data.len() as u64, "{s:?}");
    assert_eq!(s.mds_read_bytes, 0, "{s:?}");
    assert!(cl.mds.n.layouterrors.load(Ordering::Relaxed) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_falls_back_to_the_mds_when_the_layout_only_names_a_dead_ds() {
    let cl = cluster(3, 1, true).await;
    let data = random_bytes(12 * MIB, 6);
    let c = client(&cl, true).await;
    upload(&c, "/f", &mut std::io::Cursor::new(&data))
        .await
        .expect("upload");
    // Dead but not yet noticed: READ layouts keep naming it for the chunks it holds first.
    cl.mds.dss[0].kill();
    let r = client(&cl, true).await;
    assert!(download(&r, "/f").await.expect("download") == data);
    let s = r.pnfs_stats().expect("stats");
    assert!(s.mds_read_bytes > 0, "{s:?}");
    assert!(s.ds_read_bytes > 0, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holes_read_as_zeros_up_to_the_size() {
    let cl = cluster(3, 1, true).await;
    let c = client(&cl, true).await;
    let f = c
        .open_path(
            "/h",
            OPEN4_SHARE_ACCESS_BOTH,
            Some(CreateMode::Unchecked(SetAttrs::default())),
        )
        .await
        .expect("open");
    let a = random_bytes(MIB, 7);
    let b = random_bytes(MIB, 8);
    c.write_all(&f, 0, &a, StableHow4::Unstable4)
        .await
        .expect("write a");
    c.write_all(&f, 9 * MIB as u64, &b, StableHow4::Unstable4)
        .await
        .expect("write b");
    assert_eq!(c.commit_file(&f).await.expect("commit"), None);
    c.close(&f).await.expect("close");
    let mut want = vec![0u8; 10 * MIB];
    want[..MIB].copy_from_slice(&a);
    want[9 * MIB..].copy_from_slice(&b);
    let r = client(&cl, true).await;
    let got = download(&r, "/h").await.expect("download");
    assert_eq!(got.len(), want.len());
    assert!(got == want, "holes must read as zeros");
    let s = r.pnfs_stats().expect("stats");
    assert_eq!(s.mds_read_bytes, 0, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fenced_handle_gets_a_new_layout() {
    let cl = cluster(3, 1, true).await;
    let c = client(&cl, true).await;
    let f = c
        .open_path(
            "/s",
            OPEN4_SHARE_ACCESS_BOTH,
            Some(CreateMode::Unchecked(SetAttrs::default())),
        )
        .await
        .expect("open");
    let a = random_bytes(MIB, 9);
    c.write_all(&f, 0, &a, StableHow4::FileSync4)
        .await
        .expect("write");
    // Fence the chunk's handle on its first mirror for a while: the MDS "rotates" nothing
    // here, so lift the fence when the client returns the layout.
    let id = file_id(&cl, "s");
    let first = cl.mds.st.lock().unwrap().locations[&(id, 0)][0];
    let d = cl.mds.dss[first].clone();
    d.fenced.lock().unwrap().push(ds_fh(id, 0, d.id));
    let d2 = d.clone();
    let mds = cl.mds.clone();
    let returns = mds.n.layoutreturns.load(Ordering::Relaxed);
    let lift = tokio::spawn(async move {
        while mds.n.layoutreturns.load(Ordering::Relaxed) == returns {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        d2.fenced.lock().unwrap().clear();
    });
    let b = random_bytes(MIB, 10);
    c.write_all(&f, MIB as u64, &b, StableHow4::Unstable4)
        .await
        .expect("write after fence");
    lift.await.expect("lift");
    c.close(&f).await.expect("close");
    let s = c.pnfs_stats().expect("stats");
    assert!(s.ds_errors > 0 && s.layoutreturns > 0, "{s:?}");
    let r = client(&cl, true).await;
    let got = download(&r, "/s").await.expect("download");
    assert!(got[..MIB] == a[..] && got[MIB..] == b[..]);
}

/// Sends CB_LAYOUTRECALL over the latest session's connection, as the MDS's recall does;
/// returns the status the client answered it with.
async fn recall_layout(cl: &Cluster, recall: Layoutrecall4) -> u32 {
    let conn = cl
        .mds
        .back_channel
        .lock()
        .unwrap()
        .clone()
        .expect("a session");
    let args = CbCompound4Args {
        tag: Opaque::default(),
        minorversion: 1,
        callback_ident: 0,
        argarray: vec![
            NfsCbArgop4::Sequence(CbSequenceArgs {
                csa_sessionid: [7; 16],
                csa_sequenceid: 1,
                csa_slotid: 0,
                csa_highest_slotid: 0,
                csa_cachethis: false,
                csa_referring_call_lists: vec![],
            }),
            NfsCbArgop4::Layoutrecall(CbLayoutrecallArgs {
                clora_type: LAYOUT4_FLEX_FILES,
                clora_iomode: Layoutiomode4::Any,
                clora_changed: true,
                clora_recall: recall,
            }),
        ],
    };
    let reply = conn
        .call(
            NFS4_CALLBACK,
            NFS_CB,
            CB_COMPOUND,
            &Auth::None,
            &args.to_xdr(),
            std::time::Duration::from_secs(5),
        )
        .await
        .expect("CB_COMPOUND answered");
    let res = CbCompound4Res::from_xdr(reply.body()).expect("a CB_COMPOUND reply");
    assert_eq!(res.resarray.len(), 2, "{res:?}");
    res.status
}

/// CB_LAYOUTRECALL of a layout the client writes through (RFC 8881 §12.5.5): it answers
/// NFS4_OK, COMMITs on the DSs what it wrote UNSTABLE through the layout, LAYOUTCOMMITs (the
/// MDS learns the size), and returns the layout with the recall's stateid. No DS write goes
/// out between the return and the next LAYOUTGET, which the MDS answers DELAY for a while
/// (a snapshot's quiesce): the next write waits that out and succeeds. A recall of a file it
/// holds no layout of is answered NOMATCHING_LAYOUT.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recalled_layout_is_committed_and_returned_and_the_next_write_waits_for_a_new_one() {
    let cl = cluster(3, 1, true).await;
    let mut cfg = ClientConfig::new(cl.addr);
    cfg.back_channel = true;
    let c = Client::connect(cfg).await.expect("connect");
    let f = c
        .open_path(
            "/r",
            OPEN4_SHARE_ACCESS_BOTH,
            Some(CreateMode::Unchecked(SetAttrs::default())),
        )
        .await
        .expect("open");
    let a = random_bytes(MIB, 11);
    c.write_all(&f, 0, &a, StableHow4::Unstable4)
        .await
        .expect("write through the layout");
    let id = file_id(&cl, "r");
    assert_eq!(cl.mds.size(id), 0, "nothing LAYOUTCOMMITted yet");
    let commits_before: u64 = cl
        .mds
        .dss
        .iter()
        .map(|d| d.commits.load(Ordering::SeqCst))
        .sum();

    // A file the client never had a layout of.
    let other = recall_layout(
        &cl,
        Layoutrecall4::File(LayoutrecallFile4 {
            lor_fh: NfsFh4(Opaque(77u64.to_be_bytes().to_vec())),
            lor_offset: 0,
            lor_length: u64::MAX,
            lor_stateid: Stateid4 {
                seqid: 1,
                other: [9; 12],
            },
        }),
    )
    .await;
    assert_eq!(other, Nfsstat4::NomatchingLayout.code());

    let quiet = std::time::Duration::from_millis(300);
    *cl.mds.delay_layoutgets_until.lock().unwrap() = Some(std::time::Instant::now() + quiet);
    let recalled = Stateid4 {
        seqid: cl.mds.st.lock().unwrap().layout_seq + 1,
        other: [9; 12],
    };
    let t0 = std::time::Instant::now();
    let status = recall_layout(
        &cl,
        Layoutrecall4::File(LayoutrecallFile4 {
            lor_fh: f.fh.clone(),
            lor_offset: 0,
            lor_length: u64::MAX,
            lor_stateid: recalled,
        }),
    )
    .await;
    assert_eq!(status, 0, "a held layout is recalled with NFS4_OK");
    while cl.mds.returns.lock().unwrap().last.is_none() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(5),
            "no LAYOUTRETURN"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let returned = t0.elapsed();
    let seen = cl.mds.returns.lock().unwrap().clone();
    assert_eq!(
        seen.last,
        Some((recalled, 0, u64::MAX)),
        "the recalled range, with the recall's stateid"
    );
    assert!(
        seen.ds_commits > commits_before,
        "the DSs committed before the return: {seen:?}"
    );
    assert_eq!(
        cl.mds.size(id),
        MIB as u64,
        "LAYOUTCOMMIT came before the return"
    );

    let b = random_bytes(MIB, 12);
    let t1 = std::time::Instant::now();
    c.write_all(&f, MIB as u64, &b, StableHow4::Unstable4)
        .await
        .expect("the write after the recall waits for a new layout");
    let waited = t1.elapsed();
    let seen = cl.mds.returns.lock().unwrap().clone();
    assert_eq!(
        seen.ds_write_bytes_at_next_layoutget,
        Some(seen.ds_write_bytes),
        "no DS write through the returned layout"
    );
    assert!(
        t0.elapsed() >= quiet,
        "the write went out only once LAYOUTGET stopped answering DELAY"
    );
    c.close(&f).await.expect("close");
    let s = c.pnfs_stats().expect("stats");
    assert_eq!(s.layoutrecalls, 1, "{s:?}");
    assert_eq!(s.mds_write_bytes, 0, "{s:?}");
    eprintln!("recall to LAYOUTRETURN: {returned:?}; next write (DELAY 300 ms): {waited:?}");

    let mut want = a.clone();
    want.extend_from_slice(&b);
    let r = client(&cl, true).await;
    assert!(download(&r, "/r").await.expect("download") == want);
}
