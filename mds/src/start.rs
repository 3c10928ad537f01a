//! `Server`: a running MDS node. It opens the node's parts (`node`), registers what this node
//! answers other MDS nodes, starts the NFS port and the tasks off the request path (the
//! laundromat, the reaper, the data servers' loops), and stops them.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meta::{namespace, raft};

use crate::config::ServerConfig;
use crate::nfs::server;
use crate::node::{Mds, ServerError};
use crate::state::recall;
use crate::state::remote::{addresses, delegations, in_use, isolation, peer_answers, shares};
use crate::{dataservers as cluster, laundromat, limits, orphans};

pub struct Server {
    local: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    mds: Arc<Mds>,
    /// Why this node must stop, once something finds it must (`Server::fatal`).
    fatal: tokio::sync::watch::Receiver<Option<String>>,
}

impl Server {
    pub async fn start(cfg: ServerConfig) -> Result<Server, ServerError> {
        Self::start_with_gss(cfg, None).await
    }

    /// `start`, with RPCSEC_GSS (Kerberos) answered by `gss` in front of the NFS service.
    /// Without it RPCSEC_GSS calls get AUTH_TOOWEAK.
    pub async fn start_with_gss(
        cfg: ServerConfig,
        gss: Option<Arc<krb::Acceptor>>,
    ) -> Result<Server, ServerError> {
        let mds = Arc::new(Mds::open(&cfg).await?);
        let (effects, effects_rx) = tokio::sync::mpsc::unbounded_channel();
        mds.ns
            .set_effect_sink(Arc::new(orphans::QueuedEffects(effects)));
        in_use::answer_here(&mds.nfs);
        peer_answers::answer_here(&mds.nfs);
        // Files unlinked while open before the restart: OPEN promised their holders
        // (OPEN4_RESULT_PRESERVE_UNLINKED, RFC 8881 §18.16.3) to keep them through the grace
        // period, so they can reclaim the open by file handle. What nobody reclaimed by then
        // goes.
        if let Ok(orphans) = mds.ns.orphans() {
            if !orphans.is_empty() {
                let weak = Arc::downgrade(&mds);
                tokio::spawn(async move {
                    loop {
                        match weak.upgrade() {
                            Some(m) if m.nfs.state.in_grace() => {}
                            Some(m) => {
                                m.forget_orphans(orphans).await;
                                return;
                            }
                            None => return,
                        }
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                });
            }
        }
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| ServerError::Listen {
                addr: cfg.listen,
                source,
            })?;
        let local = listener
            .local_addr()
            .map_err(|source| ServerError::Listen {
                addr: cfg.listen,
                source,
            })?;
        let svc = Arc::new(server::NfsService { mds: mds.clone() });
        let limits = proto::rpc::ConnectionLimits {
            max_record: limits::MAX_RECORD,
            max_in_flight: 64,
        };
        let table = proto::rpc::ConnTable::new(cfg.connections);
        if let Some(c) = mds.cluster() {
            // Before the port answers anyone (DS heartbeats, LAYOUTGETs), so no new file lands
            // on a DS being drained.
            if let Err(e) = c.load_drains(&mds.ns) {
                tracing::warn!("cannot read the drain marks: {e:?}");
            }
        }
        let mut tasks = Vec::new();
        // With several nodes, always: a node that joins later may bring a client address
        // (`raft::node_addr`) that this one must take over should it die.
        if let Some(m) = &cfg.members {
            let (svc, gss, table) = (svc.clone(), gss.clone(), table.clone());
            let serve = move |l| {
                tokio::spawn(server::accept_loop(
                    l,
                    svc.clone(),
                    gss.clone(),
                    limits,
                    table.clone(),
                ))
            };
            tasks.push(tokio::spawn(addresses::keep(
                mds.nfs.clone(),
                m.me,
                m.nodes.clone(),
                cfg.client_addresses.clone(),
                serve,
            )));
        }
        tasks.extend([
            tokio::spawn(server::accept_loop(listener, svc, gss, limits, table)),
            tokio::spawn(orphans::carry_out_effects(Arc::downgrade(&mds), effects_rx)),
        ]);
        tasks.push(tokio::spawn(laundromat::laundromat(mds.clone())));
        if mds.ns.peers().is_some() {
            tasks.push(tokio::spawn(isolation::watch(mds.nfs.clone())));
            tasks.push(tokio::spawn(delegations::sweep(Arc::downgrade(&mds.nfs))));
            tasks.push(tokio::spawn(shares::sweep(Arc::downgrade(&mds.nfs))));
        }
        if cfg.members.is_some() {
            // The root is made once shard 0 has a leader, which needs the other nodes to hear
            // this one: answered from now on by the accept loop above.
            let waited = tokio::time::timeout(raft::START_WAIT, async {
                while mds.ns.getattr(namespace::ROOT_INO).is_err() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
            .await;
            if waited.is_err() {
                tracing::warn!(
                    "no metadata quorum yet: requests wait until enough MDS nodes are up"
                );
            }
        }
        if cfg.members.is_some() {
            // This node's client records as its replica had them at start may be stale: a
            // node that took over its address while it was down moved them. Read again once
            // the replica caught up (a command through shard 0 returns after that).
            let m = mds.clone();
            tasks.push(tokio::spawn(async move {
                let node = u64::from(m.nfs.node);
                if addresses::shard0_barrier(&m.nfs, node, m.nfs.grace)
                    .await
                    .is_ok()
                {
                    if let Ok(r) = m.ns.client_records(node) {
                        m.nfs.state.keep_reclaimers(&r.into_iter().collect());
                    }
                }
            }));
        }
        let keeper = mds.clone();
        tasks.push(tokio::spawn(async move {
            // Gives the reserve back when something else fills the disk, and takes it again
            // once space returns (see `space`); statvfs and a resize are cheap.
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                keeper.space.keep();
            }
        }));
        if let Some(t) = mds.tier.clone() {
            tasks.extend(crate::tiering::start(&mds, t));
        }
        {
            // Snapshots' images (`Data::snapshot_passes`); with a tier, a reclaimed image's
            // pieces an archive cut short left in the bucket go with it.
            let m = mds.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(cluster::snap_data::PASS_EVERY);
                let tier = m.tier.clone();
                let sweep =
                    |object| crate::tiering::snap_archive::sweep_strays(tier.clone(), object);
                loop {
                    tick.tick().await;
                    m.data.snapshot_passes(&sweep).await;
                }
            }));
        }
        let (fatal_tx, fatal) = tokio::sync::watch::channel(None);
        if let Some(c) = mds.cluster().cloned() {
            // The data key first: until it is known a sealing node's jobs wait (`key_ready`).
            let ns = mds.ns.clone();
            let key = c.clone();
            let tier = mds.tier.clone();
            tasks.push(tokio::spawn(async move {
                match key.keep_data_key(&ns).await {
                    Ok(()) => {
                        if let (Some(t), Some(k)) = (&tier, key.data_key()) {
                            t.set_seal(k);
                        }
                    }
                    Err(e) => {
                        tracing::error!("{e}");
                        let _ = fatal_tx.send(Some(e.to_string()));
                        // Held open: a closed channel would read as "nothing wrong".
                        std::future::pending::<()>().await;
                    }
                }
            }));
            let recall: cluster::loops::Recall = {
                let m = Arc::downgrade(&mds.nfs);
                Arc::new(move |ino: u64| {
                    if let Some(m) = m.upgrade() {
                        recall::recall_layouts(&m, ino, None);
                    }
                })
            };
            let in_use: cluster::loops::InUse = {
                let m = Arc::downgrade(&mds.nfs);
                Arc::new(move |ino: u64| {
                    m.upgrade()
                        .is_none_or(|m| m.state.file_writable_by_someone(ino))
                })
            };
            let ds_down: cluster::loops::DsDown = {
                let m = Arc::downgrade(&mds.nfs);
                Arc::new(move |ds| {
                    if let Some(m) = m.upgrade() {
                        recall::recall_layouts_on_ds(&m, ds);
                    }
                })
            };
            // Usage per export: a walk of each export's tree, paced (`usage`).
            tasks.push(tokio::spawn(crate::usage::run(
                mds.ns.clone(),
                mds.exports.iter().map(|e| e.path.clone()).collect(),
                mds.usage.clone(),
            )));
            tasks.extend(cluster::loops::start(
                c,
                mds.ns.clone(),
                cluster::loops::Hooks {
                    recall,
                    in_use,
                    ds_down,
                },
            ));
        }
        Ok(Server {
            local,
            tasks,
            mds,
            fatal,
        })
    }

    /// Resolves with the reason once this node finds it must not go on running (its key file
    /// does not open the cluster's data key, `dataservers::data_key`); never otherwise.
    pub async fn fatal(&self) -> String {
        let mut rx = self.fatal.clone();
        let why = rx
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|w| w.clone());
        match why {
            Some(why) => why,
            // The sender went without a reason (the key settled): nothing is wrong.
            None => std::future::pending().await,
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// What an operator's tools read of this server and ask of it (`cfs`'s admin listener):
    /// the server's state stays behind it.
    pub fn admin(&self) -> crate::admin::Admin {
        crate::admin::Admin::new(self.mds.clone())
    }

    /// The namespace itself, for tests that drive what no admin route reaches yet (snapshots
    /// made and deleted by hand in `mds/tests/it/snapshots.rs`).
    #[doc(hidden)]
    pub fn namespace(&self) -> &namespace::Namespace {
        &self.mds.ns
    }

    /// The namespace's counters: commands, batches, durable commits (fdatasyncs), checkpoints.
    pub fn namespace_stats(&self) -> namespace::StatsSnapshot {
        self.mds.ns.stats()
    }

    /// Stops accepting, then makes everything applied durable.
    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        laundromat::forget_client_records(&self.mds).await;
        if let Err(e) = self.mds.ns.record_all_and_sync().await {
            tracing::error!("final sync of the namespace failed: {e}");
        }
    }
}
