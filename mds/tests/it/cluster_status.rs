//! The cluster program's STATUS (DS addresses, capacity, traffic) answers only requests made
//! with the cluster secret: not anyone who can reach the MDS's port.
use mds::config::ClusterConfig;
use mds::config::Export;
use mds::{Server, ServerConfig};
use proto::cluster::*;
use proto::rpc::{Auth, Connection, ConnectionLimits, RejectCalls};
use proto::xdr::Xdr;
use std::sync::Arc;
use std::time::Duration;

const SECRET: &str = "status test secret, long enough";

async fn status(c: &Connection, args: &[u8]) -> StatusRes {
    let r = c
        .call(
            CFS_CLUSTER_PROGRAM,
            CFS_CLUSTER_V1,
            CLUSTERPROC_STATUS,
            &Auth::None,
            args,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    StatusRes::from_xdr(r.body()).unwrap()
}

/// An MDS with the cluster role under `SECRET`, and a connection to it.
async fn mds_with_cluster(
    data_dir: &std::path::Path,
) -> (Server, Connection, layout::ClusterSecret) {
    let secret = layout::ClusterSecret::from_passphrase(SECRET).unwrap();
    let s = Server::start(ServerConfig {
        data_dir: data_dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        exports: vec![Export::new("/").unwrap()],
        lease_seconds: 30,
        write_delegations: true,
        grace_seconds: None,
        cluster: Some(ClusterConfig::new(secret.clone())),
        connections: Default::default(),
        members: None,
        client_addresses: Default::default(),
        tier: None,
    })
    .await
    .unwrap();
    let c = Connection::connect(
        s.local_addr(),
        Arc::new(RejectCalls),
        ConnectionLimits::default(),
    )
    .await
    .unwrap();
    (s, c, secret)
}

#[tokio::test]
async fn status_needs_the_cluster_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, c, secret) = mds_with_cluster(dir.path()).await;
    // No arguments, as anyone (and `cfs admin status` before this change) sends.
    assert_eq!(status(&c, &[]).await, StatusRes::Err(CLUSTER_ERR_AUTH));
    // Signed with another secret, or signed and then altered.
    let other = layout::ClusterSecret::from_passphrase("some other long secret").unwrap();
    assert_eq!(
        status(&c, &other.status_args(1).to_xdr()).await,
        StatusRes::Err(CLUSTER_ERR_AUTH)
    );
    let mut altered = secret.status_args(2);
    altered.nonce += 1;
    assert_eq!(
        status(&c, &altered.to_xdr()).await,
        StatusRes::Err(CLUSTER_ERR_AUTH)
    );
    // Signed, but from long ago: a captured request replayed.
    let mut old = secret.status_args(3);
    old.timestamp_ms -= 10 * 60 * 1000;
    old.mac = secret.status_mac(&old);
    assert_eq!(
        status(&c, &old.to_xdr()).await,
        StatusRes::Err(CLUSTER_ERR_CLOCK)
    );
    // With the secret: the status.
    assert!(matches!(
        status(&c, &secret.status_args(4).to_xdr()).await,
        StatusRes::Ok(_)
    ));
}

/// A DS's report of bad chunks makes the MDS drop that DS from a file's mirrors: only a report
/// made with the cluster secret, and recently, is acted on.
#[tokio::test]
async fn bad_chunk_reports_need_the_cluster_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, c, secret) = mds_with_cluster(dir.path()).await;
    let report = |a: &BadChunksArgs| {
        let c = c.clone();
        let body = a.to_xdr();
        async move {
            let r = c
                .call(
                    CFS_CLUSTER_PROGRAM,
                    CFS_CLUSTER_V1,
                    CLUSTERPROC_BAD_CHUNKS,
                    &Auth::None,
                    &body,
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
            BadChunksRes::from_xdr(r.body()).unwrap()
        }
    };
    let mut a = BadChunksArgs {
        ds_id: 7,
        timestamp_ms: layout::secret::now_ms(),
        chunks: vec![BadChunk { file: 42, chunk: 0 }],
        mac: [0; 32],
    };
    assert_eq!(report(&a).await, BadChunksRes::Err(CLUSTER_ERR_AUTH));
    let other = layout::ClusterSecret::from_passphrase("some other long secret").unwrap();
    a.mac = other.bad_chunks_mac(&a);
    assert_eq!(report(&a).await, BadChunksRes::Err(CLUSTER_ERR_AUTH));
    let mut old = a.clone();
    old.timestamp_ms -= 10 * 60 * 1000;
    old.mac = secret.bad_chunks_mac(&old);
    assert_eq!(report(&old).await, BadChunksRes::Err(CLUSTER_ERR_CLOCK));
    // Signed: a file with no placement record has nothing to repair, and nothing to retry.
    a.mac = secret.bad_chunks_mac(&a);
    assert_eq!(report(&a).await, BadChunksRes::Ok(vec![]));
}
