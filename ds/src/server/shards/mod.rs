//! Erasure-coded shards on a data server (issue 13; docs/EC.md "Data-server interface").
//!
//! - [`store`]: shard objects (dense, in the chunk store) and their headers.
//! - [`service`]: the shard program (`proto::shard`): PUT, SEAL, GET, ENCODE, REPAIR, PLACE.
//! - [`stripes`]: reading a shard range here or from a peer, and rebuilding one from k others.
//! - [`jobs`]: the encode job and the repair job.
//! - [`reads`]: NFSv3 READ and GETATTR on shard handles (direct, rebuild, assembled).

mod jobs;
pub(crate) mod reads;
pub(crate) mod service;
pub(crate) mod store;
pub(crate) mod stripes;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use proto::shard::{ShardCallError, ShardClient};

pub use store::object_id as shard_object_id;
pub(crate) use store::ShardStore;

/// Connections to other data servers' shard programs.
const MAX_PEERS: usize = 256;
/// A peer that does not accept within this is treated as lost for the read at hand (a
/// kill -9'd server refuses at once; a partitioned one must not stall a client's READ long:
/// the kernel's own DS timeout is 60 s by default, and a rebuild needs several peers).
const PEER_CONNECT: Duration = Duration::from_secs(2);
const PEER_CALL: Duration = Duration::from_secs(10);

#[derive(Default)]
pub(crate) struct Peers {
    conns: Mutex<HashMap<SocketAddr, ShardClient>>,
}

impl Peers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, ShardClient>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection to `addr`'s shard program, reused while it stays open.
    pub(crate) async fn get(&self, addr: SocketAddr) -> Result<ShardClient, ShardCallError> {
        if let Some(c) = self.lock().get(&addr).filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let c = ShardClient::connect(addr, PEER_CONNECT, PEER_CALL).await?;
        let mut m = self.lock();
        if m.len() >= MAX_PEERS {
            m.retain(|_, c| !c.is_closed());
            if m.len() >= MAX_PEERS {
                m.clear();
            }
        }
        m.insert(addr, c.clone());
        Ok(c)
    }

    /// Drops a connection that failed, so the next call reconnects.
    pub(crate) fn forget(&self, addr: SocketAddr) {
        if let Some(c) = self.lock().remove(&addr) {
            c.close();
        }
    }
}
