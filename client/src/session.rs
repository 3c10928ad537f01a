//! Establishing a session (EXCHANGE_ID, CREATE_SESSION) and sending COMPOUNDs on it with a
//! SEQUENCE in front, one slot per request.
use crate::backchannel::Backchannel;
use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::slots::SlotTable;
use proto::nfs4::*;
use proto::rpc::{encode_call, AcceptStat, Auth, Connection, ConnectionLimits, ReplyStatus};
use proto::xdr::{Opaque, Reader, Writer, Xdr};
use std::sync::Arc;

/// RPC header and COMPOUND overhead kept free when sizing READ/WRITE payloads.
const IO_OVERHEAD: u32 = 4096;

pub struct Session {
    pub conn: Connection,
    pub id: Sessionid4,
    pub clientid: Clientid4,
    pub slots: SlotTable,
    /// Largest READ/WRITE payload the negotiated channel sizes leave room for.
    pub max_io: u32,
    pub max_ops: u32,
    pub back_channel: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Session(clientid {:#x}, {:?})", self.clientid, self.conn)
    }
}

pub async fn connect(cfg: &ClientConfig, cb: Arc<Backchannel>) -> Result<Connection> {
    let limits = ConnectionLimits {
        max_record: (cfg.max_io as usize) + (1 << 20),
        max_in_flight: 16,
    };
    Connection::connect(cfg.server, cb, limits)
        .await
        .map_err(|source| Error::Connect {
            addr: cfg.server,
            source,
        })
}

/// A COMPOUND outside any session (EXCHANGE_ID, CREATE_SESSION, DESTROY_*): these must be
/// the only operation, or first, of their COMPOUND.
pub async fn sessionless(
    conn: &Connection,
    cfg: &ClientConfig,
    ops: &[NfsArgop4],
) -> Result<Vec<NfsResop4>> {
    let res = send(conn, cfg, None, ops).await?;
    check(res.status, &res.resarray)?;
    Ok(res.resarray)
}

/// Fails with the status of the operation that stopped the COMPOUND.
pub fn check(status: u32, resarray: &[NfsResop4]) -> Result<()> {
    if status == 0 {
        return Ok(());
    }
    let op = resarray.last().map(|r| r.opnum()).unwrap_or(0);
    Err(Error::from_code(op, status))
}

/// COMPOUND4args: an empty tag, minor version 1, (optionally) SEQUENCE, the operations.
fn encode_compound_args(w: &mut Writer, seq: Option<SequenceArgs>, ops: &[NfsArgop4]) {
    w.opaque(b"");
    w.u32(1);
    w.u32(ops.len() as u32 + u32::from(seq.is_some()));
    if let Some(s) = seq {
        NfsArgop4::Sequence(s).encode(w);
    }
    for op in ops {
        op.encode(w);
    }
}

/// One RPC: header, then (optionally) SEQUENCE, then the operations, encoded straight into
/// the record (a WRITE's data is copied once, here).
async fn send(
    conn: &Connection,
    cfg: &ClientConfig,
    seq: Option<SequenceArgs>,
    ops: &[NfsArgop4],
) -> Result<Compound4Res> {
    send_as(conn, cfg, &cfg.auth, seq, ops).await
}

/// `send` with a credential other than the session's own (the gateway acts for many users).
/// A Kerberos session always speaks as its GSS context's principal: `auth` is for AUTH_SYS.
async fn send_as(
    conn: &Connection,
    cfg: &ClientConfig,
    auth: &Auth,
    seq: Option<SequenceArgs>,
    ops: &[NfsArgop4],
) -> Result<Compound4Res> {
    if let Some(gss) = &cfg.gss {
        let mut w = Writer::with_capacity(256);
        encode_compound_args(&mut w, seq, ops);
        let body = gss
            .call(
                conn,
                NFS4_PROGRAM,
                NFS_V4,
                NFSPROC4_COMPOUND,
                &w.into_inner(),
                cfg.timeout,
            )
            .await?;
        return Ok(Compound4Res::decode(&mut Reader::new(&body))?);
    }
    let xid = conn.next_xid();
    let mut w = encode_call(
        xid,
        NFS4_PROGRAM,
        NFS_V4,
        NFSPROC4_COMPOUND,
        &crate::caller::effective(auth),
        &Auth::None,
    );
    encode_compound_args(&mut w, seq, ops);
    let reply = conn.call_raw(xid, w, cfg.timeout).await?;
    match &reply.status {
        ReplyStatus::Accepted(AcceptStat::Success) => {}
        other => return Err(proto::rpc::RpcError::NotAccepted(other.clone()).into()),
    }
    let mut r = Reader::new(reply.body());
    Ok(Compound4Res::decode(&mut r)?)
}

impl Session {
    /// EXCHANGE_ID and CREATE_SESSION on `conn` for the owner in `cfg`.
    pub async fn create(conn: Connection, cfg: &ClientConfig) -> Result<Session> {
        let eid = ExchangeIdArgs {
            eia_clientowner: ClientOwner4 {
                co_verifier: cfg.verifier,
                co_ownerid: Opaque(cfg.owner.clone()),
            },
            eia_flags: 0,
            eia_state_protect: StateProtect4A::None,
            eia_client_impl_id: vec![NfsImplId4 {
                nii_domain: Opaque::from(cfg.implementation.0.as_str()),
                nii_name: Opaque::from(cfg.implementation.1.as_str()),
                nii_date: Nfstime4::default(),
            }],
        };
        let res = sessionless(&conn, cfg, &[NfsArgop4::ExchangeId(eid)]).await?;
        let Some(NfsResop4::ExchangeId(ExchangeIdRes::Ok(eir))) = res.into_iter().next() else {
            return Err(Error::Protocol("EXCHANGE_ID reply without result".into()));
        };
        let want_max = cfg.max_io.saturating_add(IO_OVERHEAD * 4);
        let sec = match &cfg.auth {
            Auth::Sys(s) => CallbackSecParms4::AuthSys(AuthsysParms {
                stamp: s.stamp,
                machinename: Opaque(s.machine.clone()),
                uid: s.uid,
                gid: s.gid,
                gids: Vec::new(),
            }),
            _ => CallbackSecParms4::AuthNone,
        };
        let csa = CreateSessionArgs {
            csa_clientid: eir.eir_clientid,
            csa_sequence: eir.eir_sequenceid,
            csa_flags: if cfg.back_channel {
                CREATE_SESSION4_FLAG_CONN_BACK_CHAN
            } else {
                0
            },
            csa_fore_chan_attrs: ChannelAttrs4 {
                ca_headerpadsize: 0,
                ca_maxrequestsize: want_max,
                ca_maxresponsesize: want_max,
                ca_maxresponsesize_cached: 8192,
                ca_maxoperations: 64,
                ca_maxrequests: cfg.slots.max(1),
                ca_rdma_ird: vec![],
            },
            csa_back_chan_attrs: ChannelAttrs4 {
                ca_headerpadsize: 0,
                ca_maxrequestsize: 16384,
                ca_maxresponsesize: 16384,
                ca_maxresponsesize_cached: 0,
                ca_maxoperations: 8,
                ca_maxrequests: 1,
                ca_rdma_ird: vec![],
            },
            csa_cb_program: NFS4_CALLBACK,
            csa_sec_parms: vec![sec],
        };
        let res = sessionless(&conn, cfg, &[NfsArgop4::CreateSession(csa)]).await?;
        let Some(NfsResop4::CreateSession(CreateSessionRes::Ok(csr))) = res.into_iter().next()
        else {
            return Err(Error::Protocol(
                "CREATE_SESSION reply without result".into(),
            ));
        };
        let fore = &csr.csr_fore_chan_attrs;
        let room = fore
            .ca_maxrequestsize
            .min(fore.ca_maxresponsesize)
            .saturating_sub(IO_OVERHEAD);
        // Whole 4 KiB pages: servers and page caches prefer aligned I/O.
        let max_io = (room.min(cfg.max_io) & !4095).max(4096);
        tracing::debug!(
            clientid = eir.eir_clientid,
            slots = fore.ca_maxrequests,
            max_io,
            "session created"
        );
        Ok(Session {
            conn,
            id: csr.csr_sessionid,
            clientid: eir.eir_clientid,
            slots: SlotTable::new(fore.ca_maxrequests.clamp(1, 1024)),
            max_io,
            max_ops: fore.ca_maxoperations.max(2),
            back_channel: csr.csr_flags & CREATE_SESSION4_FLAG_CONN_BACK_CHAN != 0,
        })
    }

    /// Sends SEQUENCE + `ops` on a free slot. Returns the results after SEQUENCE, or the
    /// first failure.
    pub async fn call(&self, cfg: &ClientConfig, ops: &[NfsArgop4]) -> Result<Vec<NfsResop4>> {
        self.call_as(cfg, &cfg.auth, ops).await
    }

    /// `call` under another credential: NFSv4.1 takes each COMPOUND's credential as its own
    /// (the session is not bound to one principal without SP4_MACH_CRED).
    pub async fn call_as(
        &self,
        cfg: &ClientConfig,
        auth: &Auth,
        ops: &[NfsArgop4],
    ) -> Result<Vec<NfsResop4>> {
        self.call_inner(cfg, auth, ops, false).await.map(|(_, r)| r)
    }

    /// `call_as`, but a failing operation is returned with the results so far (its own
    /// result included, e.g. LOCK's NFS4ERR_DENIED body with the conflicting lock) and the
    /// COMPOUND's status, instead of as an error. SEQUENCE failures are still errors.
    pub async fn call_keep_failure(
        &self,
        cfg: &ClientConfig,
        auth: &Auth,
        ops: &[NfsArgop4],
    ) -> Result<(u32, Vec<NfsResop4>)> {
        self.call_inner(cfg, auth, ops, true).await
    }

    async fn call_inner(
        &self,
        cfg: &ClientConfig,
        auth: &Auth,
        ops: &[NfsArgop4],
        keep_failure: bool,
    ) -> Result<(u32, Vec<NfsResop4>)> {
        let nops = ops.len();
        let slot = self.slots.acquire().await;
        let seq = SequenceArgs {
            sa_sessionid: self.id,
            sa_sequenceid: slot.seqid,
            sa_slotid: slot.slot,
            sa_highest_slotid: slot.highest,
            sa_cachethis: false,
        };
        // On error the slot guard is dropped unfinished: the request's fate is unknown.
        let res = send_as(&self.conn, cfg, auth, Some(seq), ops).await?;
        let mut it = res.resarray.into_iter();
        match it.next() {
            Some(NfsResop4::Sequence(SequenceRes::Ok(ok))) => {
                slot.done(true);
                let flags = ok.sr_status_flags;
                if flags & !(SEQ4_STATUS_CB_PATH_DOWN | SEQ4_STATUS_CB_PATH_DOWN_SESSION) != 0 {
                    tracing::warn!(flags, "SEQUENCE status flags");
                } else if flags != 0 {
                    tracing::debug!(flags, "back channel down");
                }
            }
            Some(NfsResop4::Sequence(SequenceRes::Err(code))) => {
                slot.done(false);
                return Err(Error::from_code(OP_SEQUENCE, code));
            }
            _ => {
                slot.done(false);
                return Err(if res.status != 0 {
                    Error::from_code(OP_SEQUENCE, res.status)
                } else {
                    Error::Protocol("reply does not start with SEQUENCE".into())
                });
            }
        }
        let rest: Vec<NfsResop4> = it.collect();
        if keep_failure {
            return Ok((res.status, rest));
        }
        check(res.status, &rest)?;
        if rest.len() != nops {
            return Err(Error::Protocol(format!(
                "{} results for {nops} operations",
                rest.len()
            )));
        }
        Ok((0, rest))
    }

    /// Sends a bare SEQUENCE for this session on another connection (after a server restart,
    /// to learn whether the session survived). Slot 0 is used without taking it: a session
    /// being probed is not used for anything else.
    pub async fn probe_on(&self, conn: &Connection, cfg: &ClientConfig) -> Result<()> {
        let seq = SequenceArgs {
            sa_sessionid: self.id,
            sa_sequenceid: self.slots.seqid(0).wrapping_add(1),
            sa_slotid: 0,
            sa_highest_slotid: 0,
            sa_cachethis: false,
        };
        let res = send(conn, cfg, Some(seq), &[]).await?;
        match res.resarray.first() {
            Some(NfsResop4::Sequence(SequenceRes::Ok(_))) => Ok(()),
            Some(NfsResop4::Sequence(SequenceRes::Err(code))) => {
                Err(Error::from_code(OP_SEQUENCE, *code))
            }
            _ => check(res.status, &res.resarray),
        }
    }

    /// DESTROY_SESSION, then DESTROY_CLIENTID (each alone in its COMPOUND, as RFC 8881
    /// allows outside a session).
    pub async fn destroy(&self, cfg: &ClientConfig) -> Result<()> {
        sessionless(
            &self.conn,
            cfg,
            &[NfsArgop4::DestroySession(DestroySessionArgs {
                dsa_sessionid: self.id,
            })],
        )
        .await?;
        sessionless(
            &self.conn,
            cfg,
            &[NfsArgop4::DestroyClientid(DestroyClientidArgs {
                dca_clientid: self.clientid,
            })],
        )
        .await?;
        Ok(())
    }
}
