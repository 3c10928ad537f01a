//! The cluster program's STATUS (DS addresses, capacity, traffic) answers only requests made
//! with the cluster secret: not anyone who can reach the MDS's port.
use mds::cluster::ClusterConfig;
use mds::export::Export;
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

#[tokio::test]
async fn status_needs_the_cluster_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret = layout::ClusterSecret::from_passphrase(SECRET).unwrap();
    let s = Server::start(ServerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        exports: vec![Export::new("/").unwrap()],
        lease_seconds: 30,
        grace_seconds: None,
        cluster: Some(ClusterConfig::new(secret.clone())),
        connections: Default::default(),
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
