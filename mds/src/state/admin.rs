//! What the admin listener asks of the state: counts for `/metrics`, a summary per client for
//! `cfs admin clients`, and eviction (`cfs admin client evict`), which expires a client at once
//! as the lease would (knfsd's `echo expire > /proc/fs/nfsd/clients/N/ctl`): its opens, locks,
//! delegations and layouts go, files it held RW layouts on are fenced, and its next request
//! gets NFS4ERR_BADSESSION / STALE_CLIENTID, after which a live client starts over.
use super::{StateKind, StateManager};
use std::time::Duration;

/// How much state the server holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts {
    pub clients: usize,
    /// Confirmed clients whose lease ran out but whose state is kept (courtesy).
    pub courtesy: usize,
    pub sessions: usize,
    pub opens: usize,
    pub locks: usize,
    pub delegations: usize,
    /// Of `delegations`, the write delegations.
    pub write_delegations: usize,
    pub layouts: usize,
    pub in_grace: bool,
    /// Write delegations granted and CB_GETATTRs sent since the start.
    pub write_delegations_granted: u64,
    pub cb_getattrs: u64,
}

/// One client as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSummary {
    pub clientid: u64,
    /// `co_ownerid` as text (Linux sends "Linux NFSv4.1 HOSTNAME").
    pub owner: String,
    pub principal: u32,
    pub confirmed: bool,
    pub courtesy: bool,
    pub since_renewal: Duration,
    pub sessions: usize,
    pub opens: usize,
    pub locks: usize,
    pub delegations: usize,
    pub layouts: usize,
    /// Files it has open (at most `FILES_SHOWN`, lowest first).
    pub files: Vec<u64>,
}

/// Files listed per client.
pub const FILES_SHOWN: usize = 16;

impl StateManager {
    pub fn counts(&self) -> StateCounts {
        let in_grace = self.in_grace();
        let g = self.lock();
        let mut c = StateCounts {
            clients: g.clients.values().filter(|c| c.confirmed).count(),
            courtesy: g.clients.keys().filter(|id| self.lapsed(&g, **id)).count(),
            sessions: g.sessions.len(),
            in_grace,
            write_delegations_granted: self
                .write_delegations_granted
                .load(std::sync::atomic::Ordering::Relaxed),
            cb_getattrs: self.cb_getattrs.load(std::sync::atomic::Ordering::Relaxed),
            ..Default::default()
        };
        for st in g.states.values() {
            match st.kind {
                StateKind::Open { .. } => c.opens += 1,
                StateKind::Lock { .. } => c.locks += 1,
                // A draining delegation was returned: nobody holds it.
                StateKind::Delegation {
                    returned: Some(_), ..
                } => {}
                StateKind::Delegation { write, .. } => {
                    c.delegations += 1;
                    c.write_delegations += usize::from(write);
                }
                StateKind::Layout { .. } => c.layouts += 1,
            }
        }
        c
    }

    /// Every client, by client id.
    pub fn client_summaries(&self) -> Vec<ClientSummary> {
        let g = self.lock();
        let mut out: Vec<ClientSummary> = g
            .clients
            .values()
            .map(|c| ClientSummary {
                clientid: c.clientid,
                owner: String::from_utf8_lossy(&c.owner).into_owned(),
                principal: c.principal,
                confirmed: c.confirmed,
                courtesy: self.lapsed(&g, c.clientid),
                since_renewal: c.renewed.elapsed(),
                sessions: 0,
                opens: 0,
                locks: 0,
                delegations: 0,
                layouts: 0,
                files: Vec::new(),
            })
            .collect();
        out.sort_by_key(|c| c.clientid);
        let find = |out: &mut Vec<ClientSummary>, id: u64| -> Option<usize> {
            out.binary_search_by_key(&id, |c| c.clientid).ok()
        };
        for s in g.sessions.values() {
            if let Some(i) = find(&mut out, s.clientid) {
                out[i].sessions += 1;
            }
        }
        for st in g.states.values() {
            let Some(i) = find(&mut out, st.clientid) else {
                continue;
            };
            let c = &mut out[i];
            match st.kind {
                StateKind::Open { .. } => {
                    c.opens += 1;
                    c.files.push(st.ino);
                }
                StateKind::Lock { .. } => c.locks += 1,
                StateKind::Delegation {
                    returned: Some(_), ..
                } => {}
                StateKind::Delegation { .. } => c.delegations += 1,
                StateKind::Layout { .. } => c.layouts += 1,
            }
        }
        for c in &mut out {
            c.files.sort_unstable();
            c.files.dedup();
            c.files.truncate(FILES_SHOWN);
        }
        out
    }

    /// Expires `clientid` now with all its state; false if there is no such client. The
    /// laundromat then fences and reaps what it left, as after a lease expiry.
    pub fn evict(&self, clientid: u64) -> bool {
        let mut g = self.lock();
        if !g.clients.contains_key(&clientid) {
            return false;
        }
        tracing::warn!(clientid, "evicting a client at the operator's request");
        self.expire(&mut g, clientid);
        drop(g);
        self.laundromat.notify_one();
        true
    }
}
