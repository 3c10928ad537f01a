//! A small NFSv3 client for the data path: what a flexfiles client (the MDS proxying I/O, the
//! Rust layout driver, repair) sends to a loosely coupled DS. NULL, GETATTR, SETATTR (size),
//! READ, WRITE, COMMIT over one multiplexed TCP connection.
use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;

use crate::nfs3::*;
use crate::rpc::{Auth, AuthSys, Connection, ConnectionLimits, RejectCalls, RpcError};
use crate::xdr::{Opaque, Xdr, XdrError};

#[derive(Debug, Error)]
pub enum Nfs3ClientError {
    #[error("no address of the data server answered: {0}")]
    Connect(std::io::Error),
    #[error("rpc: {0}")]
    Rpc(#[from] RpcError),
    #[error("undecodable reply: {0}")]
    Xdr(#[from] XdrError),
    #[error("server replied {status:?}")]
    Status { status: Nfsstat3 },
    #[error("server replied unknown status {0}")]
    UnknownStatus(u32),
}

impl Nfs3ClientError {
    fn from_status(code: u32) -> Self {
        match Nfsstat3::from_code(code) {
            Some(status) => Nfs3ClientError::Status { status },
            None => Nfs3ClientError::UnknownStatus(code),
        }
    }

    /// The NFSv3 status, when the server answered with one.
    pub fn status(&self) -> Option<Nfsstat3> {
        match self {
            Nfs3ClientError::Status { status } => Some(*status),
            _ => None,
        }
    }

    /// True when the connection or the server is gone (as opposed to a refusal).
    pub fn is_transport(&self) -> bool {
        matches!(self, Nfs3ClientError::Connect(_) | Nfs3ClientError::Rpc(_))
    }
}

pub type Nfs3Result<T> = Result<T, Nfs3ClientError>;

/// One connection to an NFSv3 server.
#[derive(Clone)]
pub struct Nfs3Client {
    conn: Connection,
    cred: Auth,
    timeout: Duration,
}

/// What a READ returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadReply {
    pub data: Vec<u8>,
    pub eof: bool,
}

/// What a WRITE returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteReply {
    pub count: u32,
    pub committed: StableHow,
    pub verf: [u8; 8],
}

impl Nfs3Client {
    /// Connects to the first of `addrs` that answers: all are tried at once (an advertised
    /// address list may hold ones only some clients can reach, like a qemu guest's 10.0.2.2)
    /// and the first to answer an RPC NULL wins. A TCP handshake alone proves nothing: a
    /// middlebox may accept connections for addresses it cannot deliver to.
    pub async fn connect(
        addrs: &[SocketAddr],
        connect_timeout: Duration,
        uid: u32,
        gid: u32,
    ) -> Nfs3Result<Nfs3Client> {
        let cred = Auth::Sys(AuthSys {
            stamp: 0,
            machine: b"cfs".to_vec(),
            uid,
            gid,
            gids: vec![],
        });
        let mut set = tokio::task::JoinSet::new();
        for a in addrs {
            let a = *a;
            let cred = cred.clone();
            set.spawn(async move {
                let attempt = async {
                    let stream = tokio::net::TcpStream::connect(a).await?;
                    let limits = ConnectionLimits {
                        max_record: 2 << 20,
                        max_in_flight: 16,
                    };
                    let conn = Connection::spawn(stream, std::sync::Arc::new(RejectCalls), limits)?;
                    let c = Nfs3Client {
                        conn,
                        cred,
                        timeout: connect_timeout,
                    };
                    if let Err(e) = c.null().await {
                        c.close();
                        return Err(std::io::Error::other(format!("{a}: no NFSv3 answer: {e}")));
                    }
                    Ok(c)
                };
                match tokio::time::timeout(connect_timeout, attempt).await {
                    Ok(r) => r,
                    Err(_) => Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("{a}: connect timed out"),
                    )),
                }
            });
        }
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok(mut c)) => {
                    set.abort_all();
                    // Losers that got through anyway must not linger as open connections.
                    while let Some(other) = set.join_next().await {
                        if let Ok(Ok(o)) = other {
                            o.close();
                        }
                    }
                    c.timeout = Duration::from_secs(30);
                    return Ok(c);
                }
                Ok(Err(e)) => last = e,
                Err(_) => {}
            }
        }
        Err(Nfs3ClientError::Connect(last))
    }

    /// How long a call may take before it fails with a timeout.
    pub fn set_timeout(&mut self, t: Duration) {
        self.timeout = t;
    }

    pub fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }

    pub fn close(&self) {
        self.conn.close()
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.conn.peer_addr()
    }

    async fn call<R: Xdr>(&self, proc_: u32, args: &[u8]) -> Nfs3Result<R> {
        let reply = self
            .conn
            .call(NFS3_PROGRAM, NFS_V3, proc_, &self.cred, args, self.timeout)
            .await?;
        Ok(R::from_xdr(reply.body())?)
    }

    pub async fn null(&self) -> Nfs3Result<()> {
        self.conn
            .call(
                NFS3_PROGRAM,
                NFS_V3,
                NFSPROC3_NULL,
                &self.cred,
                &[],
                self.timeout,
            )
            .await?;
        Ok(())
    }

    pub async fn getattr(&self, fh: &[u8]) -> Nfs3Result<Fattr3> {
        let args = Getattr3Args { object: fh3(fh) };
        match self
            .call::<Getattr3Res>(NFSPROC3_GETATTR, &args.to_xdr())
            .await?
        {
            Getattr3Res::Ok(ok) => Ok(ok.obj_attributes),
            Getattr3Res::Fail(s, _) => Err(Nfs3ClientError::from_status(s)),
        }
    }

    /// Sets the size (truncates or extends).
    pub async fn set_size(&self, fh: &[u8], size: u64) -> Nfs3Result<()> {
        let args = Setattr3Args {
            object: fh3(fh),
            new_attributes: Sattr3 {
                size: Some(size),
                ..Default::default()
            },
            guard: None,
        };
        match self
            .call::<Setattr3Res>(NFSPROC3_SETATTR, &args.to_xdr())
            .await?
        {
            Setattr3Res::Ok(_) => Ok(()),
            Setattr3Res::Fail(s, _) => Err(Nfs3ClientError::from_status(s)),
        }
    }

    pub async fn read(&self, fh: &[u8], offset: u64, count: u32) -> Nfs3Result<ReadReply> {
        let args = Read3Args {
            file: fh3(fh),
            offset,
            count,
        };
        match self.call::<Read3Res>(NFSPROC3_READ, &args.to_xdr()).await? {
            Read3Res::Ok(ok) => Ok(ReadReply {
                data: ok.data.0,
                eof: ok.eof,
            }),
            Read3Res::Fail(s, _) => Err(Nfs3ClientError::from_status(s)),
        }
    }

    pub async fn write(
        &self,
        fh: &[u8],
        offset: u64,
        data: &[u8],
        stable: StableHow,
    ) -> Nfs3Result<WriteReply> {
        // Encoded by hand so the payload is copied once, straight into the call.
        let mut w = crate::xdr::Writer::new();
        fh3(fh).encode(&mut w);
        w.u64(offset);
        w.u32(data.len() as u32);
        stable.encode(&mut w);
        w.opaque(data);
        match self.call::<Write3Res>(NFSPROC3_WRITE, &w.buf).await? {
            Write3Res::Ok(ok) => Ok(WriteReply {
                count: ok.count,
                committed: ok.committed,
                verf: ok.verf,
            }),
            Write3Res::Fail(s, _) => Err(Nfs3ClientError::from_status(s)),
        }
    }

    /// Commits `[offset, offset + count)` (count 0: to the end of the file); returns the verifier.
    pub async fn commit(&self, fh: &[u8], offset: u64, count: u32) -> Nfs3Result<[u8; 8]> {
        let args = Commit3Args {
            file: fh3(fh),
            offset,
            count,
        };
        match self
            .call::<Commit3Res>(NFSPROC3_COMMIT, &args.to_xdr())
            .await?
        {
            Commit3Res::Ok(ok) => Ok(ok.verf),
            Commit3Res::Fail(s, _) => Err(Nfs3ClientError::from_status(s)),
        }
    }
}

fn fh3(fh: &[u8]) -> NfsFh3 {
    NfsFh3 {
        data: Opaque(fh.to_vec()),
    }
}
