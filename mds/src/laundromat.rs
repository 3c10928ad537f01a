//! The laundromat: expires clients whose lease ran out when no courtesy keeps them
//! (`state::courtesy`), fences the files they held RW layouts on, records the size of those
//! a write delegation was lost on unreturned (`state::settle`) and hands the unlinked files
//! only they had open to the reaper (`orphans`).
use std::sync::Arc;
use std::time::Duration;

use meta::namespace;

use crate::node::Mds;

/// Expires clients (`StateManager::sweep`: courtesy clients are kept until a conflict or a
/// bound) every half lease, and at once when a conflict has expired one; then fences the
/// files the expired clients held RW layouts on and reaps the unlinked files only they had
/// open.
pub(crate) async fn laundromat(mds: Arc<Mds>) {
    let mut tick = tokio::time::interval(Duration::from_secs(u64::from(mds.nfs.lease_seconds) / 2));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = mds.nfs.state.laundromat.notified() => {}
        }
        let orphans = mds
            .nfs
            .state
            .lapsed_open_files()
            .into_iter()
            .filter(|&ino| mds.is_orphan(ino))
            .collect();
        mds.nfs.state.sweep(&orphans);
        forget_client_records(&mds).await;
        let expired = mds.nfs.state.take_expired();
        if expired.clients == 0 && expired.settle.is_empty() {
            continue;
        }
        if expired.clients > 0 {
            tracing::info!(
                clients = expired.clients,
                "expired clients whose lease ran out"
            );
        }
        if let Some(c) = mds.cluster() {
            for &ino in &expired.fenced {
                c.fence(ino);
            }
        }
        // After the fence: what the holder wrote before it is all there is.
        for (holder, ino) in expired.settle {
            let nfs = mds.nfs.clone();
            tokio::spawn(async move { crate::state::settle::settle(&nfs, holder, ino).await });
        }
        let orphans = expired
            .released
            .into_iter()
            .filter(|&ino| mds.is_orphan(ino))
            .collect();
        mds.forget_orphans(orphans).await;
    }
}

/// Commits the removal of the records of clients that are gone (`state::ClientDb`). One that
/// fails stays recorded, which costs at most a wait in a later grace period.
pub(crate) async fn forget_client_records(mds: &Mds) {
    let gone = mds.nfs.state.take_forgotten();
    if gone.is_empty() {
        return;
    }
    let n = gone.len();
    let cmd = namespace::Command::ClientRecords {
        node: u64::from(mds.nfs.node),
        add: Vec::new(),
        remove: gone,
    };
    if let Err(e) = mds.ns.execute(cmd).await {
        tracing::warn!(clients = n, "cannot forget client records: {e}");
    }
}
