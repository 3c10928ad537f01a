//! The control plane's loops, each a task of its own so a long step of one never delays
//! another: repair (copies, rebuilds, drains), erasure coding, and the health sweep of the data
//! servers, and snapshots' data images. What they need of the NFS state (recall a file's layouts, whether someone may be
//! writing a file) comes in as `Hooks`, so this folder stays below the state it serves.
use std::sync::Arc;
use std::time::Duration;

use meta::namespace::Namespace;

use super::Cluster;

/// Recalls the layouts of a file (before it moves or is encoded).
pub type Recall = Arc<dyn Fn(u64) + Send + Sync>;
/// Whether a client may be writing a file (an encode job leaves it alone).
pub type InUse = Arc<dyn Fn(u64) -> bool + Send + Sync>;
/// A data server was declared down: recall the layouts that point at it.
pub type DsDown = Arc<dyn Fn(layout::DsId) + Send + Sync>;

/// What the loops ask of the NFS state.
pub struct Hooks {
    pub recall: Recall,
    pub in_use: InUse,
    pub ds_down: DsDown,
}

/// Starts the loops; they run until their handles are aborted (`Server::shutdown`).
pub fn start(c: Arc<Cluster>, ns: Namespace, hooks: Hooks) -> Vec<tokio::task::JoinHandle<()>> {
    let Hooks {
        recall,
        in_use,
        ds_down,
    } = hooks;
    let mut tasks = Vec::new();
    // Repair runs on its own so a long copy never delays the health sweep.
    {
        let rc = c.clone();
        let ns = ns.clone();
        let recall = recall.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(rc.cfg.heartbeat * 2);
            let recall = move |ino: u64| recall(ino);
            // The first pass rescans: the queue is derived from the placement records, so
            // files left short of a mirror before a restart are found again.
            for pass in 0u64.. {
                tick.tick().await;
                let rescan = pass % super::repair::RESCAN_TICKS == 0 || rc.rescan_soon();
                rc.repair_pass(&ns, rescan).await;
                if rescan || rc.take_shard_reports() {
                    rc.bad_shards_pass(&ns).await;
                }
                rc.declare_lost(&ns).await;
                rc.drain_pass(&ns, &recall).await;
            }
        }));
    }
    // Snapshots' data images (`snap_data`): images a dead gate left half linked, on the shards
    // this node leads (those no snapshot reads any more: `Data::snapshot_passes`).
    {
        let sc = c.clone();
        let ns = ns.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(super::snap_data::PASS_EVERY);
            loop {
                tick.tick().await;
                sc.relink_pass(&ns).await;
            }
        }));
    }
    // Erasure coding (`encode`), on its own: an encode job takes seconds. With several
    // metadata nodes each encodes the files of the shards it leads, and its claim keeps every
    // node's writers off the file (`holds`).
    {
        let ec = c.clone();
        tasks.push(tokio::spawn(async move {
            let every = ec
                .cfg
                .encode_after
                .map_or(Duration::from_secs(30), |a| a / 4)
                .clamp(Duration::from_secs(1), Duration::from_secs(30));
            let mut tick = tokio::time::interval(every);
            let recall = move |ino: u64| recall(ino);
            let in_use = move |ino: u64| in_use(ino);
            loop {
                tick.tick().await;
                ec.encode_pass(&ns, &in_use, &recall).await;
            }
        }));
    }
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(c.cfg.heartbeat);
        loop {
            tick.tick().await;
            c.registry.sweep(c.cfg.dead_after);
            for ds in c.registry.take_down_events() {
                c.want_rescan();
                ds_down(ds);
            }
        }
    }));
    tasks
}
