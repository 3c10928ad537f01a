//! A connection to a data server: NFSv3 over TCP, or the same calls over a libfabric endpoint
//! with the bytes moved by RMA (`proto::fabric`). The fabric path is used when the client is
//! configured with a provider ([`crate::ClientConfig::fabric`]) and the device information
//! names an `ofi+PROVIDER` address; every failure to set it up leaves the TCP path.
//!
//! Zero-copy on the fabric path: a WRITE registers the very buffer the driver keeps until the
//! data is committed and the data server reads it from there; a READ registers the buffer it
//! returns and the data server writes into it.
use fabric::{Endpoint, Peer};
use proto::fabric::{FabricCall, FabricReply, RmaBuf};
use proto::nfs3::*;
use proto::nfs3_client::{Nfs3Client, Nfs3ClientError, ReadReply, WriteReply};
use proto::rpc::RpcError;
use proto::xdr::{Opaque, Reader, Xdr};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

type R<T> = Result<T, Nfs3ClientError>;

#[derive(Clone)]
pub enum DsConn {
    Tcp(Nfs3Client),
    Fabric(FabricConn),
}

impl DsConn {
    pub fn is_closed(&self) -> bool {
        match self {
            DsConn::Tcp(c) => c.is_closed(),
            DsConn::Fabric(_) => false,
        }
    }
    pub fn close(&self) {
        if let DsConn::Tcp(c) = self {
            c.close();
        }
    }
    pub fn peer_addr(&self) -> SocketAddr {
        match self {
            DsConn::Tcp(c) => c.peer_addr(),
            DsConn::Fabric(f) => f.addr,
        }
    }
    pub async fn read(&self, fh: &[u8], offset: u64, count: u32) -> R<ReadReply> {
        match self {
            DsConn::Tcp(c) => c.read(fh, offset, count).await,
            DsConn::Fabric(f) => f.read(fh, offset, count).await,
        }
    }
    pub async fn write(
        &self,
        fh: &[u8],
        offset: u64,
        data: &Arc<Vec<u8>>,
        stable: StableHow,
    ) -> R<WriteReply> {
        match self {
            DsConn::Tcp(c) => c.write(fh, offset, data, stable).await,
            DsConn::Fabric(f) => f.write(fh, offset, data.clone(), stable).await,
        }
    }
    pub async fn commit(&self, fh: &[u8], offset: u64, count: u32) -> R<[u8; 8]> {
        match self {
            DsConn::Tcp(c) => c.commit(fh, offset, count).await,
            DsConn::Fabric(f) => f.commit(fh, offset, count).await,
        }
    }
}

/// The client's endpoint of one provider, and the calls waiting for answers.
pub struct FabricClient {
    ep: Endpoint,
    pending: Mutex<HashMap<u64, oneshot::Sender<FabricReply>>>,
    next_xid: AtomicU64,
    timeout: Duration,
    /// Payload bytes moved by RMA (READ and WRITE) since the endpoint opened.
    pub bytes: AtomicU64,
}

impl FabricClient {
    /// Opens an endpoint of `provider` (bound to loopback when the data servers are there:
    /// the provider otherwise picks an interface whose address the peer may not route to).
    pub fn open(provider: &str, loopback: bool, timeout: Duration) -> Result<Arc<Self>, String> {
        let bind = loopback.then(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let (ep, mut rx) = Endpoint::open(provider, bind).map_err(|e| e.to_string())?;
        let me = Arc::new(FabricClient {
            ep,
            pending: Mutex::new(HashMap::new()),
            next_xid: AtomicU64::new(1),
            timeout,
            bytes: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&me);
        tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                let Some(me) = weak.upgrade() else { return };
                match FabricReply::from_xdr(&msg) {
                    Ok(r) => {
                        let w = me.pending.lock().ok().and_then(|mut p| p.remove(&r.xid));
                        if let Some(w) = w {
                            let _ = w.send(r);
                        }
                    }
                    Err(e) => tracing::debug!("undecodable fabric reply: {e}"),
                }
            }
        });
        tracing::debug!(provider, addr = ?me.ep.socket_addr(), "fabric endpoint open");
        Ok(me)
    }

    pub fn conn(self: &Arc<Self>, addr: SocketAddr) -> Result<FabricConn, String> {
        let peer = self.ep.peer_at(addr).map_err(|e| e.to_string())?;
        Ok(FabricConn {
            client: self.clone(),
            peer,
            addr,
        })
    }

    async fn call(&self, peer: Peer, proc_: u32, args: Vec<u8>, buf: RmaBuf) -> R<FabricReply> {
        let xid = self.next_xid.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(xid, tx);
        }
        let call = FabricCall {
            xid,
            proc_,
            reply_to: Opaque(self.ep.name().to_vec()),
            buf,
            args: Opaque(args),
        };
        let forget = || {
            if let Ok(mut p) = self.pending.lock() {
                p.remove(&xid);
            }
        };
        if let Err(e) = self.ep.send(peer, call.to_xdr()).await {
            forget();
            tracing::debug!("fabric send: {e}");
            return Err(Nfs3ClientError::Rpc(RpcError::Closed));
        }
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err(Nfs3ClientError::Rpc(RpcError::Closed)),
            Err(_) => {
                forget();
                Err(Nfs3ClientError::Rpc(RpcError::Timeout))
            }
        }
    }
}

/// One data server reached through the client's fabric endpoint.
#[derive(Clone)]
pub struct FabricConn {
    client: Arc<FabricClient>,
    peer: Peer,
    addr: SocketAddr,
}

fn rma(r: &fabric::Region) -> RmaBuf {
    let b = r.remote();
    RmaBuf {
        addr: b.addr,
        key: b.key,
        len: b.len,
    }
}

fn fh3(fh: &[u8]) -> NfsFh3 {
    NfsFh3 {
        data: Opaque(fh.to_vec()),
    }
}

/// The NFSv3 result of a reply, or the status of a call the server could not run.
fn result(proc_: u32, r: FabricReply) -> R<Nfs3Res> {
    if r.status != 0 {
        return Err(match Nfsstat3::from_code(r.status) {
            Some(status) => Nfs3ClientError::Status { status },
            None => Nfs3ClientError::UnknownStatus(r.status),
        });
    }
    Nfs3Res::decode(proc_, &mut Reader::new(r.res.as_bytes()))?.ok_or(Nfs3ClientError::Rpc(
        RpcError::Malformed("no result".into()),
    ))
}

fn fail(code: u32) -> Nfs3ClientError {
    match Nfsstat3::from_code(code) {
        Some(status) => Nfs3ClientError::Status { status },
        None => Nfs3ClientError::UnknownStatus(code),
    }
}

fn setup(e: fabric::FabricError) -> Nfs3ClientError {
    Nfs3ClientError::Connect(std::io::Error::other(e.to_string()))
}

impl FabricConn {
    async fn read(&self, fh: &[u8], offset: u64, count: u32) -> R<ReadReply> {
        let region = self
            .client
            .ep
            .register(vec![0u8; count as usize], true)
            .map_err(setup)?;
        let args = Read3Args {
            file: fh3(fh),
            offset,
            count,
        };
        let r = self
            .client
            .call(self.peer, NFSPROC3_READ, args.to_xdr(), rma(&region))
            .await?;
        match result(NFSPROC3_READ, r)? {
            Nfs3Res::Read(Read3Res::Ok(ok)) => {
                let mut data = region.into_inner();
                data.truncate(ok.count.min(count) as usize);
                self.client
                    .bytes
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                Ok(ReadReply { data, eof: ok.eof })
            }
            Nfs3Res::Read(Read3Res::Fail(s, _)) => Err(fail(s)),
            _ => Err(Nfs3ClientError::Rpc(RpcError::Malformed(
                "not a READ result".into(),
            ))),
        }
    }

    async fn write(
        &self,
        fh: &[u8],
        offset: u64,
        data: Arc<Vec<u8>>,
        stable: StableHow,
    ) -> R<WriteReply> {
        let count = data.len() as u32;
        let region = self.client.ep.register_shared(data).map_err(setup)?;
        let args = Write3Args {
            file: fh3(fh),
            offset,
            count,
            stable,
            data: Opaque(Vec::new()),
        };
        let r = self
            .client
            .call(self.peer, NFSPROC3_WRITE, args.to_xdr(), rma(&region))
            .await?;
        // The data server has read the bytes (or never will) once it answered.
        drop(region);
        match result(NFSPROC3_WRITE, r)? {
            Nfs3Res::Write(Write3Res::Ok(ok)) => {
                self.client
                    .bytes
                    .fetch_add(u64::from(ok.count), Ordering::Relaxed);
                Ok(WriteReply {
                    count: ok.count,
                    committed: ok.committed,
                    verf: ok.verf,
                })
            }
            Nfs3Res::Write(Write3Res::Fail(s, _)) => Err(fail(s)),
            _ => Err(Nfs3ClientError::Rpc(RpcError::Malformed(
                "not a WRITE result".into(),
            ))),
        }
    }

    async fn commit(&self, fh: &[u8], offset: u64, count: u32) -> R<[u8; 8]> {
        let args = Commit3Args {
            file: fh3(fh),
            offset,
            count,
        };
        let r = self
            .client
            .call(self.peer, NFSPROC3_COMMIT, args.to_xdr(), RmaBuf::default())
            .await?;
        match result(NFSPROC3_COMMIT, r)? {
            Nfs3Res::Commit(Commit3Res::Ok(ok)) => Ok(ok.verf),
            Nfs3Res::Commit(Commit3Res::Fail(s, _)) => Err(fail(s)),
            _ => Err(Nfs3ClientError::Rpc(RpcError::Malformed(
                "not a COMMIT result".into(),
            ))),
        }
    }
}
