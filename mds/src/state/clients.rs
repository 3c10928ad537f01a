//! Client records: EXCHANGE_ID, the CREATE_SESSION that confirms a client, DESTROY_CLIENTID,
//! and which owners to record or forget. A client is its owner and its principal; purging one
//! takes all its state with it.
use super::{Client, Inner, Session, SessionId, StateManager};
use crate::error::{NfsError, NfsResult};
use std::time::Instant;

impl StateManager {
    /// EXCHANGE_ID (RFC 8881 §18.35.5), case by case as knfsd's nfsd4_exchange_id; `update`
    /// is EXCHGID4_FLAG_UPD_CONFIRMED_REC_A. Returns (clientid, sequenceid, confirmed).
    pub fn exchange_id(
        &self,
        owner: &[u8],
        verifier: [u8; 8],
        principal: u32,
        update: bool,
    ) -> NfsResult<(u64, u32, bool)> {
        let mut g = self.lock();
        let conf = g
            .clients
            .values()
            .find(|c| c.confirmed && c.owner == owner)
            .map(|c| (c.clientid, c.cs_seq, c.verifier, c.principal));
        let mut replaced = None;
        if let Some((id, seq, v, p)) = conf {
            if update {
                if p != principal {
                    return Err(NfsError::Perm); // case 9
                }
                if v != verifier {
                    return Err(NfsError::NotSame); // case 8
                }
                return Ok((id, seq, true)); // case 6
            }
            if p != principal {
                // Case 3, a collision: another principal's client with live state keeps its
                // name; without state it is replaced.
                if Self::has_state(&g, id) {
                    return Err(NfsError::ClidInUse);
                }
                replaced = Some(id);
            } else if v == verifier {
                return Ok((id, seq, true)); // case 2
            }
            // Case 5, the client rebooted: the old record stays until the new one is
            // confirmed (CREATE_SESSION retires it).
        } else if update {
            return Err(NfsError::NoEnt); // case 7
        }
        if let Some(id) = replaced {
            if let Some(owner) = g.clients.get(&id).map(|c| c.owner.clone()) {
                g.db.remove(&owner);
            }
            Self::purge_client(&mut g, id);
        }
        // Case 4: an unconfirmed record for this owner is replaced.
        g.clients.retain(|_, c| c.confirmed || c.owner != owner);
        let n = g.next_id;
        g.next_id += 1;
        let clientid = ((self.boot as u64) << 32) | (n & 0xffff_ffff);
        let may_reclaim = g.grace_until.is_some() && g.awaiting_reclaim.contains(owner);
        g.clients.insert(
            clientid,
            Client {
                clientid,
                owner: owner.to_vec(),
                verifier,
                principal,
                confirmed: false,
                cs_seq: 1,
                last_cs_reply: None,
                renewed: Instant::now(),
                reclaim_complete: false,
                may_reclaim,
                stripes: false,
            },
        );
        Ok((clientid, 1, false))
    }

    /// Records whether `clientid` reads striped flexfiles layouts.
    pub fn set_stripes(&self, clientid: u64, stripes: bool) {
        if let Some(c) = self.lock().clients.get_mut(&clientid) {
            c.stripes = stripes;
        }
    }

    /// The owner of `clientid` (the session ids of its sessions carry its hash).
    pub fn owner_of(&self, clientid: u64) -> NfsResult<Vec<u8>> {
        self.lock()
            .clients
            .get(&clientid)
            .map(|c| c.owner.clone())
            .ok_or(NfsError::StaleClientId)
    }

    /// Whether `clientid` reads striped flexfiles layouts (false for a client not known).
    pub fn stripes(&self, clientid: u64) -> bool {
        self.lock()
            .clients
            .get(&clientid)
            .is_some_and(|c| c.stripes)
    }

    /// Sessions, opens, locks, delegations or layouts: a client with any is in use.
    fn has_state(g: &Inner, clientid: u64) -> bool {
        g.sessions.values().any(|s| s.clientid == clientid)
            || g.states.values().any(|s| s.clientid == clientid)
    }

    /// Whether `c` is a record EXCHANGE_ID made that no CREATE_SESSION confirmed within a
    /// lease: it is gone (RFC 8881 §18.35.4), whether or not the laundromat, which looks only
    /// every half lease, has dropped it yet.
    pub(super) fn unconfirmed_lapsed(&self, c: &Client) -> bool {
        !c.confirmed && c.renewed.elapsed() > self.lease
    }

    /// CREATE_SESSION's client check. Only the principal that created a client record may
    /// confirm it (RFC 8881 §18.36.4; knfsd answers CLID_INUSE, as here). An unconfirmed
    /// record a lease old is dropped here and is STALE_CLIENTID, so the answer does not
    /// depend on when the laundromat last ran.
    pub fn check_clientid(&self, clientid: u64, principal: u32) -> NfsResult<()> {
        let mut g = self.lock();
        if (clientid >> 32) as u32 != self.boot && !g.adopted.contains(&clientid) {
            return Err(NfsError::StaleClientId);
        }
        match g.clients.get(&clientid) {
            None => Err(NfsError::StaleClientId),
            Some(c) if self.unconfirmed_lapsed(c) => {
                g.clients.remove(&clientid);
                Err(NfsError::StaleClientId)
            }
            Some(c) if !c.confirmed && c.principal != principal => Err(NfsError::ClidInUse),
            Some(_) => Ok(()),
        }
    }

    /// CREATE_SESSION's sequence check. Ok(None) = new request, Ok(Some(r)) = replay.
    pub fn create_session_seq(
        &self,
        clientid: u64,
        seq: u32,
    ) -> NfsResult<Option<std::sync::Arc<Vec<u8>>>> {
        let g = self.lock();
        let c = g.clients.get(&clientid).ok_or(NfsError::StaleClientId)?;
        if seq == c.cs_seq {
            Ok(None)
        } else if seq.wrapping_add(1) == c.cs_seq {
            c.last_cs_reply
                .clone()
                .map(Some)
                .ok_or(NfsError::SeqMisordered)
        } else {
            Err(NfsError::SeqMisordered)
        }
    }

    /// Confirms the client (first CREATE_SESSION), retiring any older record of the same owner,
    /// and installs the new session.
    pub fn create_session(
        &self,
        clientid: u64,
        session: Session,
        reply: std::sync::Arc<Vec<u8>>,
    ) -> NfsResult<()> {
        let mut g = self.lock();
        let owner = {
            let c = g
                .clients
                .get_mut(&clientid)
                .ok_or(NfsError::StaleClientId)?;
            c.cs_seq = c.cs_seq.wrapping_add(1);
            c.last_cs_reply = Some(reply);
            // A new session of a confirmed client needs no shard 0: cut off from the
            // majority, it must not renew the lease either (`crate::state::remote::isolation`).
            if self.quorum.vouching() {
                c.renewed = Instant::now();
            }
            if c.confirmed {
                None
            } else {
                c.confirmed = true;
                Some(c.owner.clone())
            }
        };
        if let Some(owner) = owner {
            let old: Vec<u64> = g
                .clients
                .values()
                .filter(|c| c.owner == owner && c.clientid != clientid)
                .map(|c| c.clientid)
                .collect();
            for id in old {
                Self::purge_client(&mut g, id);
            }
            // Recorded by the caller before this (`owner_to_record`); noted again in case
            // a removal was queued meanwhile.
            g.db.recorded(&owner);
        }
        g.sessions.insert(session.id, session);
        Ok(())
    }

    pub fn set_cs_reply(&self, clientid: u64, reply: std::sync::Arc<Vec<u8>>) {
        if let Some(c) = self.lock().clients.get_mut(&clientid) {
            c.last_cs_reply = Some(reply);
        }
    }

    pub fn destroy_clientid(&self, clientid: u64) -> NfsResult<()> {
        let mut g = self.lock();
        if !g.clients.contains_key(&clientid) {
            return Err(NfsError::StaleClientId);
        }
        if Self::has_state(&g, clientid) {
            return Err(NfsError::ClientIdBusy);
        }
        if let Some(c) = g.clients.remove(&clientid) {
            g.db.remove(&c.owner);
        }
        Ok(())
    }

    pub(super) fn purge_client(g: &mut Inner, clientid: u64) {
        g.clients.remove(&clientid);
        g.adopted.remove(&clientid);
        let sessions: Vec<SessionId> = g
            .sessions
            .values()
            .filter(|s| s.clientid == clientid)
            .map(|s| s.id)
            .collect();
        for id in sessions {
            Self::remove_session(g, &id);
        }
        let dead: Vec<[u8; 12]> = g
            .states
            .iter()
            .filter(|(_, s)| s.clientid == clientid)
            .map(|(k, _)| *k)
            .collect();
        for other in dead {
            Self::drop_state(g, &other);
        }
        for f in g.files.values_mut() {
            f.locks.release_client(clientid);
        }
        g.open_index.retain(|k, _| k.0 != clientid);
        g.lock_index.retain(|k, _| k.0 != clientid);
        g.layout_index.retain(|k, _| k.0 != clientid);
        g.revoked.retain(|_, r| r.clientid != clientid);
    }

    /// The owner CREATE_SESSION must record before it confirms `clientid` (None: nothing to
    /// record, or no such client).
    pub fn owner_to_record(&self, clientid: u64) -> Option<Vec<u8>> {
        let g = self.lock();
        let c = g.clients.get(&clientid)?;
        (!c.confirmed && !g.db.is_recorded(&c.owner)).then(|| c.owner.clone())
    }

    /// `owner`'s record is committed (`owner_to_record`).
    pub fn note_recorded(&self, owner: &[u8]) {
        self.lock().db.recorded(owner);
    }

    /// Records to forget (clients gone), for the laundromat to commit; owners with a client
    /// record here, confirmed or not, keep theirs.
    pub fn take_forgotten(&self) -> Vec<Vec<u8>> {
        let mut g = self.lock();
        let g = &mut *g;
        let clients = &g.clients;
        g.db.take_forgotten(|o| clients.values().any(|c| c.owner == o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::{confirmed, lapsing_mgr, mgr};

    #[test]
    fn exchange_id_cases() {
        let (m, _d) = mgr();
        let (c1, seq, confirmed) = m.exchange_id(b"host", [1; 8], 0, false).unwrap();
        assert_eq!((seq, confirmed), (1, false));
        // Unconfirmed record is replaced by a retry.
        let (c2, _, _) = m.exchange_id(b"host", [1; 8], 0, false).unwrap();
        assert_ne!(c1, c2);
        assert_eq!(
            m.check_clientid(c1, 0).unwrap_err(),
            NfsError::StaleClientId
        );
        // Only its own principal may confirm it.
        assert_eq!(m.check_clientid(c2, 7).unwrap_err(), NfsError::ClidInUse);
        assert!(m.create_session_seq(c2, 1).unwrap().is_none());
        assert_eq!(
            m.create_session_seq(c2, 7).unwrap_err(),
            NfsError::SeqMisordered
        );
    }

    #[test]
    fn an_unconfirmed_record_a_lease_old_is_stale_without_waiting_for_the_laundromat() {
        let m = lapsing_mgr();
        let (c, seq, _) = m.exchange_id(b"late", [1; 8], 0, false).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        // No sweep has run: CREATE_SESSION's check alone finds it gone, and drops it.
        assert_eq!(m.check_clientid(c, 0), Err(NfsError::StaleClientId));
        assert_eq!(m.owner_of(c), Err(NfsError::StaleClientId));
        assert_eq!(
            m.create_session_seq(c, seq).unwrap_err(),
            NfsError::StaleClientId
        );
        // A confirmed client past its lease is a courtesy client, not stale.
        let ok = confirmed(&m, b"kept");
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(m.check_clientid(ok, 0), Ok(()));
        // Within its lease an unconfirmed record may still be confirmed.
        let (m, _d) = mgr();
        let (c, _, _) = m.exchange_id(b"early", [1; 8], 0, false).unwrap();
        assert_eq!(m.check_clientid(c, 0), Ok(()));
    }

    #[test]
    fn the_sweep_drops_unconfirmed_records_a_lease_old_and_keeps_courtesy_clients() {
        let m = lapsing_mgr();
        let (c, _, _) = m.exchange_id(b"never", [1; 8], 0, false).unwrap();
        let ok = confirmed(&m, b"kept");
        m.open(ok, b"o", 9, crate::state::OPEN4_SHARE_ACCESS_BOTH, 0)
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(m.sweep(&Default::default()), 1);
        assert_eq!(m.owner_of(c), Err(NfsError::StaleClientId));
        assert_eq!(m.owner_of(ok), Ok(b"kept".to_vec()));
    }
}
