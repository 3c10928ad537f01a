//! The data path over libfabric, beside TCP: a reliable-datagram endpoint with RMA (crate
//! `fabric`), advertised to clients in the device information as netid `ofi+PROVIDER`. Calls
//! are NFSv3 READ, WRITE and COMMIT (`proto::fabric`), served by the same functions as over
//! TCP (so the same capability check, fencing, counters and durability), with the bytes moved
//! by RMA: this server reads a WRITE's bytes from the client's registered buffer and writes a
//! READ's into it, then answers. The handle is checked before any RMA, so a refused call
//! moves no data.
use std::net::SocketAddr;
use std::sync::Arc;

use fabric::{Endpoint, Incoming, RemoteBuf};
use proto::fabric::{FabricCall, FabricReply, MAX_BODY};
use proto::nfs3::*;
use proto::xdr::{Opaque, Reader, Writer, Xdr};
use tokio::sync::{watch, Semaphore};

use super::nfs3;
use super::{DsServer, DsServerError, Shared};

/// Calls served at once (each may hold a 1 MiB buffer).
const MAX_CALLS: usize = 64;

/// Opens a fabric endpoint of `provider` ("tcp", "sockets", "verbs", ...) on `listen` (port
/// 0: any), serves the data path there until `stop`, and has the heartbeats advertise it.
pub(crate) fn open(
    s: &Arc<Shared>,
    provider: &str,
    listen: SocketAddr,
    stop: watch::Receiver<bool>,
) -> Result<SocketAddr, DsServerError> {
    let err = |e: fabric::FabricError| DsServerError::Fabric(e.to_string());
    let (ep, rx) = Endpoint::open(provider, Some(listen)).map_err(err)?;
    let at = ep
        .socket_addr()
        .ok_or_else(|| DsServerError::Fabric("endpoint address is not IPv4".into()))?;
    s.set_fabric(format!("ofi+{provider}"), at);
    tracing::info!(provider, %at, "fabric data path listening");
    tokio::spawn(serve(s.clone(), ep, rx, stop));
    Ok(at)
}

impl DsServer {
    /// The address of the fabric endpoint, if one is open.
    pub fn fabric_addr(&self) -> Option<SocketAddr> {
        self.shared.fabric_addr().map(|(_, a)| a)
    }
}

async fn serve(s: Arc<Shared>, ep: Endpoint, mut rx: Incoming, mut stop: watch::Receiver<bool>) {
    let calls = Arc::new(Semaphore::new(MAX_CALLS));
    loop {
        let msg = tokio::select! {
            m = rx.recv() => match m { Some(m) => m, None => return },
            _ = stop.changed() => return,
        };
        let Ok(permit) = calls.clone().acquire_owned().await else {
            return;
        };
        let (s, ep) = (s.clone(), ep.clone());
        tokio::spawn(async move {
            handle(&s, &ep, &msg).await;
            drop(permit);
        });
    }
}

async fn handle(s: &Shared, ep: &Endpoint, msg: &[u8]) {
    let Ok(call) = FabricCall::from_xdr(msg) else {
        // Without a decodable call there is nobody to answer.
        tracing::debug!(len = msg.len(), "undecodable fabric call");
        return;
    };
    let Ok(peer) = ep.peer(call.reply_to.as_bytes()) else {
        tracing::debug!("fabric call with a bad reply address");
        return;
    };
    let (status, res) = match run(s, ep, peer, &call).await {
        Ok(res) => (0, res),
        Err(st) => (st.code(), Vec::new()),
    };
    let reply = FabricReply {
        xid: call.xid,
        status,
        res: Opaque(res),
    };
    if let Err(e) = ep.send(peer, reply.to_xdr()).await {
        tracing::debug!("fabric reply: {e}");
    }
}

fn encode(r: Nfs3Res) -> Result<Vec<u8>, Nfsstat3> {
    let mut w = Writer::new();
    r.encode(&mut w);
    if w.buf.len() > MAX_BODY {
        return Err(Nfsstat3::Serverfault);
    }
    Ok(w.buf)
}

/// The call's NFSv3 result, encoded; Err: the call could not be run at all.
async fn run(
    s: &Shared,
    ep: &Endpoint,
    peer: fabric::Peer,
    call: &FabricCall,
) -> Result<Vec<u8>, Nfsstat3> {
    let args = Nfs3Args::decode(call.proc_, &mut Reader::new(call.args.as_bytes()))
        .map_err(|_| Nfsstat3::Inval)?;
    let remote = |len: u32| RemoteBuf {
        addr: call.buf.addr,
        key: call.buf.key,
        len,
    };
    match args {
        Some(Nfs3Args::Write(mut a)) => {
            if a.count > nfs3::MAX_READ || a.count > call.buf.len {
                return Err(Nfsstat3::Inval);
            }
            // Refused handles move no bytes.
            if let Err(st) = nfs3::authorize(s, &a.file, true, a.offset, u64::from(a.count)) {
                return encode(Nfs3Res::Write(Write3Res::Fail(
                    st.code(),
                    Default::default(),
                )));
            }
            let data = ep.read(peer, remote(a.count)).await.map_err(|e| {
                tracing::debug!("RMA read of a WRITE's bytes: {e}");
                Nfsstat3::Io
            })?;
            a.data = Opaque(data);
            encode(Nfs3Res::Write(nfs3::write(s, a).await))
        }
        Some(Nfs3Args::Read(mut a)) => {
            a.count = a.count.min(call.buf.len);
            let mut r = nfs3::read(s, a).await;
            if let Read3Res::Ok(ok) = &mut r {
                let data = std::mem::take(&mut ok.data.0);
                ok.count = data.len() as u32;
                if !data.is_empty() {
                    ep.write(peer, data, remote(call.buf.len))
                        .await
                        .map_err(|e| {
                            tracing::debug!("RMA write of a READ's bytes: {e}");
                            Nfsstat3::Io
                        })?;
                }
            }
            encode(Nfs3Res::Read(r))
        }
        Some(Nfs3Args::Commit(a)) => encode(Nfs3Res::Commit(nfs3::commit(s, a).await)),
        _ => Err(Nfsstat3::Notsupp),
    }
}
