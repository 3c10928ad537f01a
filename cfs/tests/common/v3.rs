//! A small NFSv3 / MOUNT / NLM client for the gateway tests: typed calls over
//! `proto::rpc::Connection`, with AUTH_SYS as any user.
#![allow(dead_code)]
use proto::nfs3::*;
use proto::nlm::*;
use proto::rpc::{
    AcceptStat, Auth, AuthSys, Connection, ConnectionLimits, RejectCalls, ReplyStatus,
};
use proto::xdr::{Opaque, Reader, Writer, Xdr};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct V3 {
    pub conn: Connection,
    pub auth: Auth,
    /// RPCSEC_GSS instead of `auth` (a context from the process's ticket cache).
    pub gss: Option<krb::GssClient>,
}

pub fn sys(uid: u32, gid: u32) -> Auth {
    Auth::Sys(AuthSys {
        stamp: 1,
        machine: b"v3test".to_vec(),
        uid,
        gid,
        gids: vec![],
    })
}

pub fn name(s: &str) -> Opaque {
    Opaque::from(s)
}

pub fn dirop(dir: &NfsFh3, n: &str) -> Diropargs3 {
    Diropargs3 {
        dir: dir.clone(),
        name: name(n),
    }
}

impl V3 {
    /// Connects (retrying for up to 20 s while the gateway starts).
    pub async fn connect(addr: SocketAddr) -> V3 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match Connection::connect(addr, Arc::new(RejectCalls), ConnectionLimits::default())
                .await
            {
                Ok(conn) => {
                    return V3 {
                        conn,
                        auth: sys(0, 0),
                        gss: None,
                    }
                }
                Err(e) if Instant::now() > deadline => panic!("connect {addr}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    pub async fn from_stream(s: tokio::net::TcpStream) -> V3 {
        V3 {
            conn: Connection::spawn(s, Arc::new(RejectCalls), ConnectionLimits::default())
                .expect("spawn"),
            auth: sys(0, 0),
            gss: None,
        }
    }

    pub fn as_user(&mut self, uid: u32, gid: u32) -> &mut Self {
        self.auth = sys(uid, gid);
        self
    }

    /// One call; the reply body, or the RPC-level refusal.
    pub async fn raw(
        &self,
        prog: u32,
        vers: u32,
        proc_: u32,
        args: &[u8],
    ) -> Result<Vec<u8>, ReplyStatus> {
        if let Some(g) = &self.gss {
            let t = Duration::from_secs(60);
            return match g.call(&self.conn, prog, vers, proc_, args, t).await {
                Ok(body) => Ok(body),
                Err(krb::GssClientError::NotAccepted(st)) => Err(st),
                Err(e) => panic!("RPCSEC_GSS call: {e}"),
            };
        }
        let r = self
            .conn
            .call(prog, vers, proc_, &self.auth, args, Duration::from_secs(60))
            .await
            .expect("rpc");
        if r.status != ReplyStatus::Accepted(AcceptStat::Success) {
            return Err(r.status.clone());
        }
        Ok(r.body().to_vec())
    }

    pub async fn nfs(&self, a: Nfs3Args) -> Nfs3Res {
        let mut w = Writer::new();
        a.encode(&mut w);
        let body = self
            .raw(NFS3_PROGRAM, NFS_V3, a.proc_num(), &w.buf)
            .await
            .expect("accepted");
        let mut r = Reader::new(&body);
        let res = Nfs3Res::decode(a.proc_num(), &mut r)
            .expect("decodable reply")
            .expect("known proc");
        assert_eq!(r.remaining(), 0, "trailing bytes in the reply to {a:?}");
        res
    }

    pub async fn mnt(&self, path: &str) -> Mountres3 {
        let args = Dirpath(Opaque::from(path)).to_xdr();
        let body = self
            .raw(MOUNT_PROGRAM, MOUNT_V3, MOUNTPROC3_MNT, &args)
            .await
            .expect("accepted");
        Mountres3::from_xdr(&body).expect("mountres3")
    }

    /// The root handle of `path` (panics if refused).
    pub async fn root(&self, path: &str) -> NfsFh3 {
        match self.mnt(path).await {
            Mountres3::Ok(ok) => NfsFh3 { data: ok.fhandle.0 },
            Mountres3::Err(e) => panic!("MNT {path}: {e}"),
        }
    }

    pub async fn getattr(&self, fh: &NfsFh3) -> Result<Fattr3, u32> {
        match self
            .nfs(Nfs3Args::Getattr(Getattr3Args { object: fh.clone() }))
            .await
        {
            Nfs3Res::Getattr(Getattr3Res::Ok(ok)) => Ok(ok.obj_attributes),
            Nfs3Res::Getattr(Getattr3Res::Fail(e, _)) => Err(e),
            other => panic!("{other:?}"),
        }
    }

    pub async fn lookup(&self, dir: &NfsFh3, n: &str) -> Result<NfsFh3, u32> {
        match self
            .nfs(Nfs3Args::Lookup(Lookup3Args {
                what: dirop(dir, n),
            }))
            .await
        {
            Nfs3Res::Lookup(Lookup3Res::Ok(ok)) => Ok(ok.object),
            Nfs3Res::Lookup(Lookup3Res::Fail(e, _)) => Err(e),
            other => panic!("{other:?}"),
        }
    }

    pub async fn create(
        &self,
        dir: &NfsFh3,
        n: &str,
        how: Createhow3,
    ) -> Result<Create3ResOk, u32> {
        match self
            .nfs(Nfs3Args::Create(Create3Args {
                r#where: dirop(dir, n),
                how,
            }))
            .await
        {
            Nfs3Res::Create(Create3Res::Ok(ok)) => Ok(ok),
            Nfs3Res::Create(Create3Res::Fail(e, _)) => Err(e),
            other => panic!("{other:?}"),
        }
    }

    /// A new empty file, mode 0644.
    pub async fn new_file(&self, dir: &NfsFh3, n: &str) -> NfsFh3 {
        let ok = self
            .create(
                dir,
                n,
                Createhow3::Unchecked(Sattr3 {
                    mode: Some(0o644),
                    ..Default::default()
                }),
            )
            .await
            .unwrap_or_else(|e| panic!("CREATE {n}: {e}"));
        ok.obj.expect("handle")
    }

    pub async fn write(
        &self,
        fh: &NfsFh3,
        off: u64,
        data: &[u8],
        stable: StableHow,
    ) -> Result<Write3ResOk, u32> {
        match self
            .nfs(Nfs3Args::Write(Write3Args {
                file: fh.clone(),
                offset: off,
                count: data.len() as u32,
                stable,
                data: Opaque(data.to_vec()),
            }))
            .await
        {
            Nfs3Res::Write(Write3Res::Ok(ok)) => Ok(ok),
            Nfs3Res::Write(Write3Res::Fail(e, _)) => Err(e),
            other => panic!("{other:?}"),
        }
    }

    pub async fn commit(&self, fh: &NfsFh3) -> Result<[u8; 8], u32> {
        match self
            .nfs(Nfs3Args::Commit(Commit3Args {
                file: fh.clone(),
                offset: 0,
                count: 0,
            }))
            .await
        {
            Nfs3Res::Commit(Commit3Res::Ok(ok)) => Ok(ok.verf),
            Nfs3Res::Commit(Commit3Res::Fail(e, _)) => Err(e),
            other => panic!("{other:?}"),
        }
    }

    pub async fn read(&self, fh: &NfsFh3, off: u64, count: u32) -> Result<(Vec<u8>, bool), u32> {
        match self
            .nfs(Nfs3Args::Read(Read3Args {
                file: fh.clone(),
                offset: off,
                count,
            }))
            .await
        {
            Nfs3Res::Read(Read3Res::Ok(ok)) => Ok((ok.data.0, ok.eof)),
            Nfs3Res::Read(Read3Res::Fail(e, _)) => Err(e),
            other => panic!("{other:?}"),
        }
    }

    /// The whole file, in 1 MiB READs.
    pub async fn read_all(&self, fh: &NfsFh3) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let (d, eof) = self
                .read(fh, out.len() as u64, 1 << 20)
                .await
                .expect("READ");
            out.extend_from_slice(&d);
            if eof || d.is_empty() {
                return out;
            }
        }
    }

    pub async fn nlm(&self, a: NlmArgs) -> Vec<u8> {
        let mut w = Writer::new();
        a.encode(&mut w);
        self.raw(NLM_PROGRAM, NLM_V4, a.proc_num(), &w.buf)
            .await
            .expect("accepted")
    }

    /// NLM LOCK; the status.
    pub async fn nlm_lock(&self, l: &Nlm4Lock, exclusive: bool, block: bool) -> Nlm4Stats {
        let b = self
            .nlm(NlmArgs::Lock(Nlm4LockArgs {
                cookie: Opaque(vec![1, 2]),
                block,
                exclusive,
                alock: l.clone(),
                reclaim: false,
                state: 1,
            }))
            .await;
        let r = Nlm4Res::from_xdr(&b).expect("nlm4_res");
        assert_eq!(r.cookie, Opaque(vec![1, 2]), "the cookie comes back");
        r.stat
    }

    pub async fn nlm_unlock(&self, l: &Nlm4Lock) -> Nlm4Stats {
        let b = self
            .nlm(NlmArgs::Unlock(Nlm4UnlockArgs {
                cookie: Opaque(vec![]),
                alock: l.clone(),
            }))
            .await;
        Nlm4Res::from_xdr(&b).expect("nlm4_res").stat
    }

    pub async fn nlm_test(&self, l: &Nlm4Lock, exclusive: bool) -> Nlm4TestRply {
        let b = self
            .nlm(NlmArgs::Test(Nlm4TestArgs {
                cookie: Opaque(vec![]),
                exclusive,
                alock: l.clone(),
            }))
            .await;
        Nlm4TestRes::from_xdr(&b).expect("nlm4_testres").stat
    }
}

pub fn nlm_lock(host: &str, svid: i32, fh: &NfsFh3, off: u64, len: u64) -> Nlm4Lock {
    Nlm4Lock {
        caller_name: Opaque::from(host),
        fh: fh.data.clone(),
        oh: Opaque(format!("{host}-{svid}").into_bytes()),
        svid,
        l_offset: off,
        l_len: len,
    }
}
