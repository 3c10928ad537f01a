//! The TCP front: accepts connections and routes RPC calls to the NFSv4 program.
use crate::nfs::compound;
use crate::node::Mds;
use proto::nfs4::basic::{NFS4_PROGRAM, NFSPROC4_COMPOUND, NFSPROC4_NULL, NFS_V4};
use proto::rpc::{
    accepted_reply, AcceptStat, Auth, Call, CallHandler, ConnTable, Connection, ConnectionLimits,
};
use proto::xdr::Writer;
use std::sync::Arc;
use tokio::net::TcpListener;

pub struct NfsService {
    pub mds: Arc<Mds>,
}

impl CallHandler for NfsService {
    /// A LAYOUTCOMMIT is in flight on its file from its arrival, so a CLOSE of the file that
    /// Linux sent after it finds it even if the CLOSE's task runs first (seen: a CLOSE carried
    /// out 58 µs ahead of the LAYOUTCOMMIT sent just before it; `state::commits`). The call is
    /// not authenticated yet: its file handle is (the MAC), and a forged call holds a CLOSE
    /// only until its own reply.
    fn arrived(&self, call: &Call) -> Option<proto::rpc::Arrival> {
        if call.prog != NFS4_PROGRAM || call.proc_ != NFSPROC4_COMPOUND {
            return None;
        }
        let fh = proto::nfs4::peek::layoutcommit_fh(call.args())?;
        let h = &self.mds.handles;
        let ino = crate::fh::FileHandle::decode(fh, h.fs_id, &h.key).ok()?.ino;
        Some(Box::new(self.mds.nfs.commits.begin(ino)))
    }

    async fn handle(&self, conn: Connection, call: Call) -> Option<Writer> {
        metrics::mds::RPC_RECEIVED_BYTES.add(call.args().len() as u64);
        let reply = self.route(conn, call).await;
        if let Some(w) = &reply {
            metrics::mds::RPC_SENT_BYTES.add(w.total_len() as u64);
        }
        reply
    }
}

impl NfsService {
    async fn route(&self, conn: Connection, call: Call) -> Option<Writer> {
        if call.prog == proto::cluster::CFS_CLUSTER_PROGRAM {
            if call.proc_ == proto::cluster::CLUSTERPROC_BAD_CHUNKS
                && call.vers == proto::cluster::CFS_CLUSTER_V1
            {
                if let Some(c) = self.mds.cluster() {
                    // Answered after the namespace has recorded the change: it waits on a commit.
                    return Some(
                        crate::dataservers::service::bad_chunks(c, &self.mds.ns, &call).await,
                    );
                }
            }
            if call.proc_ == proto::cluster::CLUSTERPROC_BAD_SHARDS
                && call.vers == proto::cluster::CFS_CLUSTER_V1
            {
                if let Some(c) = self.mds.cluster() {
                    return Some(
                        crate::dataservers::service::bad_shards(c, &self.mds.ns, &call).await,
                    );
                }
            }
            return Some(crate::dataservers::service::handle(
                self.mds.cluster().map(|c| c.as_ref()),
                &self.mds.ns,
                &call,
            ));
        }
        if call.prog == proto::peer::CFS_PEER_PROGRAM {
            return Some(meta::raft::service::handle(self.mds.ns.groups(), &call).await);
        }
        if call.prog != NFS4_PROGRAM {
            return Some(accepted_reply(
                call.xid,
                &Auth::None,
                AcceptStat::ProgUnavail,
            ));
        }
        if call.vers != NFS_V4 {
            return Some(accepted_reply(
                call.xid,
                &Auth::None,
                AcceptStat::ProgMismatch {
                    low: NFS_V4,
                    high: NFS_V4,
                },
            ));
        }
        match call.proc_ {
            NFSPROC4_NULL => Some(accepted_reply(call.xid, &Auth::None, AcceptStat::Success)),
            NFSPROC4_COMPOUND => Some(compound::run(&self.mds, &conn, &call).await),
            _ => Some(accepted_reply(
                call.xid,
                &Auth::None,
                AcceptStat::ProcUnavail,
            )),
        }
    }
}

/// Serves the NFS port (NFSv4 and the cluster program) within `table`'s bounds.
/// With `gss`, RPCSEC_GSS is verified and unwrapped in front of the service (`krb::GssLayer`).
pub async fn accept_loop(
    listener: TcpListener,
    svc: Arc<NfsService>,
    gss: Option<Arc<krb::Acceptor>>,
    limits: ConnectionLimits,
    table: Arc<ConnTable>,
) {
    let stop = std::future::pending();
    match gss {
        Some(acc) => {
            let layer = Arc::new(krb::GssLayer::new(svc, acc));
            proto::rpc::serve(listener, layer, limits, table, stop).await
        }
        None => proto::rpc::serve(listener, svc, limits, table, stop).await,
    }
}
