//! NLM v4: v3 clients' `fcntl` locks as NFSv4 byte-range locks through the gateway's session,
//! so they conflict with each other (every NLM owner, i.e. host + process, is its own NFSv4
//! lock owner) and with NFSv4.1 clients' locks on the same files (the MDS holds them all).
//!
//! A blocking request that conflicts is answered BLOCKED and not queued: the Linux client
//! polls, sending the LOCK again (every 30 s, `NLMCLNT_POLL_TIMEOUT`, or at once on an
//! NLM GRANTED callback, which the gateway does not send), and each try is a new NFSv4 LOCK.
//! So a waiter gets the lock within 30 s of its release, never one it gave up on.
//!
//! Locks do not survive a gateway restart: its new session starts without them (the MDS
//! drops the previous instance's state), and the gateway keeps no list of clients to notify,
//! so clients are not told (what `-o nolock` users get is the client's local locking only).
use crate::creds::Cred;
use crate::nfs3::Req;
use crate::opens::Entry;
use crate::Shared;
use client::CompoundBuilder;
use proto::nfs3::NfsFh3;
use proto::nfs4::*;
use proto::nlm::*;
pub use proto::nlm::{NLM_PROGRAM, NLM_V4};
use proto::rpc::{accepted_reply, AcceptStat, Auth, Call, Connection};
use proto::xdr::{Opaque, Writer, Xdr};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// A lock owner's state on one file: the NFSv4 lock stateid and the open it hangs on.
struct Held {
    stateid: Stateid4,
    entry: Arc<Entry>,
    host: Vec<u8>,
}

/// (file handle, NFSv4 lock owner).
type Key = (Vec<u8>, Vec<u8>);

/// (file handle, owner) → state. Bounded: past `max`, new owners get DENIED_NOLOCKS.
pub struct LockTable {
    max: usize,
    map: Mutex<HashMap<Key, Held>>,
}

impl LockTable {
    pub fn new(max: usize) -> LockTable {
        LockTable {
            max: max.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Held>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether any NLM owner holds state on the file (its open must stay).
    pub fn holds(&self, fh: &NfsFh4) -> bool {
        self.lock()
            .keys()
            .any(|(f, _)| f.as_slice() == fh.as_bytes())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The session went: so did every lock.
    pub fn forget_all(&self) {
        self.lock().clear();
    }

    fn get(&self, fh: &NfsFh4, owner: &[u8], gen: u64) -> Option<Stateid4> {
        let mut m = self.lock();
        let k = (fh.as_bytes().to_vec(), owner.to_vec());
        match m.get(&k) {
            Some(h) if h.entry.generation == gen => Some(h.stateid),
            Some(_) => {
                m.remove(&k);
                None
            }
            None => None,
        }
    }

    fn put(&self, fh: &NfsFh4, owner: &[u8], h: Held) -> bool {
        let mut m = self.lock();
        let k = (fh.as_bytes().to_vec(), owner.to_vec());
        if !m.contains_key(&k) && m.len() >= self.max {
            return false;
        }
        m.insert(k, h);
        true
    }

    fn update(&self, fh: &NfsFh4, owner: &[u8], sid: Stateid4) {
        if let Some(h) = self
            .lock()
            .get_mut(&(fh.as_bytes().to_vec(), owner.to_vec()))
        {
            h.stateid = sid;
        }
    }

    fn take_host(&self, host: &[u8]) -> Vec<(Vec<u8>, Held)> {
        let mut m = self.lock();
        let keys: Vec<_> = m
            .iter()
            .filter(|(_, h)| h.host == host)
            .map(|(k, _)| k.clone())
            .collect();
        keys.into_iter()
            .filter_map(|k| m.remove(&k).map(|h| (k.0, h)))
            .collect()
    }
}

/// Bytes of an NFSv4 lock owner the gateway makes: 'N', the NLM process id, and 15 bytes of
/// a hash of the host name and the client's owner handle.
///
/// Why 20: Linux since 6.13 (NeilBrown's "NFS: fix open_owner_id_maxsz and related fields",
/// in the sid guest's kernel) sizes the reply to a LOCK for a conflicting owner of 20 bytes,
/// its own owners' size, and fails the `fcntl` with EIO when the holder's owner is longer
/// (seen: a v4.1 client's F_SETLK against a v3 client's lock, `mixed` scenario on sid, with
/// the earlier owner of host + handle, ~35 bytes). Owners of this size come back whole to
/// every client.
pub const OWNER_LEN: usize = 20;

/// The NFSv4 lock owner of an NLM owner (host, process id, the client's owner handle).
pub fn owner_key(l: &Nlm4Lock) -> Vec<u8> {
    use std::hash::{Hash, Hasher};
    let half = |salt: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (salt, l.caller_name.as_bytes(), l.oh.as_bytes()).hash(&mut h);
        h.finish().to_be_bytes()
    };
    let mut o = Vec::with_capacity(OWNER_LEN);
    o.push(b'N');
    o.extend_from_slice(&l.svid.to_be_bytes());
    o.extend_from_slice(&half(1));
    o.extend_from_slice(&half(2)[..OWNER_LEN - 13]);
    o
}

/// NLM's (offset, len; 0 = to the end) as NFSv4's (offset, length; all ones = to the end).
pub fn range(l: &Nlm4Lock) -> (u64, u64) {
    if l.l_len == 0 {
        return (l.l_offset, u64::MAX);
    }
    (l.l_offset, l.l_len.min(u64::MAX - l.l_offset).max(1))
}

fn locktype(exclusive: bool) -> NfsLockType4 {
    if exclusive {
        NfsLockType4::WriteLt
    } else {
        NfsLockType4::ReadLt
    }
}

fn stat_of(s: Nfsstat4) -> Nlm4Stats {
    match s {
        Nfsstat4::Ok => Nlm4Stats::Granted,
        Nfsstat4::Denied | Nfsstat4::Locked => Nlm4Stats::Denied,
        Nfsstat4::Grace => Nlm4Stats::DeniedGracePeriod,
        Nfsstat4::Deadlock => Nlm4Stats::Deadlck,
        Nfsstat4::Rofs => Nlm4Stats::Rofs,
        Nfsstat4::Stale | Nfsstat4::Badhandle | Nfsstat4::Fhexpired => Nlm4Stats::StaleFh,
        Nfsstat4::Fbig | Nfsstat4::BadRange | Nfsstat4::Inval => Nlm4Stats::Fbig,
        Nfsstat4::Resource => Nlm4Stats::DeniedNolocks,
        _ => Nlm4Stats::Failed,
    }
}

fn stat_of3(s: proto::nfs3::Nfsstat3) -> Nlm4Stats {
    use proto::nfs3::Nfsstat3 as S;
    match s {
        S::Stale | S::Badhandle => Nlm4Stats::StaleFh,
        S::Rofs => Nlm4Stats::Rofs,
        S::Jukebox => Nlm4Stats::DeniedGracePeriod,
        _ => Nlm4Stats::Failed,
    }
}

pub async fn dispatch(
    s: &Arc<Shared>,
    peer: IpAddr,
    cred: Cred,
    call: &Call,
    _conn: &Connection,
) -> Option<Writer> {
    let args = match crate::call_args(call, NlmArgs::decode) {
        Ok(a) => a,
        Err(reply) => return reply,
    };
    let q = Req {
        s,
        peer,
        cred,
        any_flavor: true,
    };
    let mut w = accepted_reply(call.xid, &Auth::None, AcceptStat::Success);
    match args {
        NlmArgs::Null => {}
        NlmArgs::Test(a) => test(&q, a).await.encode(&mut w),
        NlmArgs::Lock(a) | NlmArgs::NmLock(a) => {
            let cookie = a.cookie.clone();
            Nlm4Res {
                cookie,
                stat: lock(&q, a).await,
            }
            .encode(&mut w)
        }
        NlmArgs::Cancel(a) => Nlm4Res {
            // Nothing is queued, so there is nothing left to cancel.
            cookie: a.cookie,
            stat: Nlm4Stats::Granted,
        }
        .encode(&mut w),
        NlmArgs::Unlock(a) => {
            let cookie = a.cookie.clone();
            Nlm4Res {
                cookie,
                stat: unlock(&q, a.alock).await,
            }
            .encode(&mut w)
        }
        NlmArgs::FreeAll(n) => free_host(s, n.name.as_bytes()).await,
    }
    Some(w)
}

async fn test(q: &Req<'_>, a: Nlm4TestArgs) -> Nlm4TestRes {
    let r = async {
        let o = q
            .obj(&NfsFh3::from(a.alock.fh.as_bytes().to_vec()))
            .await
            .map_err(stat_of3)?;
        let (offset, length) = range(&a.alock);
        let op = NfsArgop4::Lockt(LocktArgs {
            locktype: locktype(a.exclusive),
            offset,
            length,
            owner: StateOwner4 {
                clientid: o.gw.clientid(),
                owner: Opaque(owner_key(&a.alock)),
            },
        });
        let (st, res) = match o
            .gw
            .compound_keep_failure(CompoundBuilder::new().putfh(&o.fh).op(op))
            .await
        {
            Ok(x) => x,
            Err(e) => return Err(stat_of3(q.fail(&o, e).await)),
        };
        if st == Nfsstat4::Ok {
            return Ok(None);
        }
        let d = res.iter().find_map(|r| match r {
            NfsResop4::Lockt(LocktRes::Denied(d)) => Some(d.clone()),
            _ => None,
        });
        match d {
            Some(d) => {
                let ob = d.owner.owner.as_bytes();
                let svid = if ob.len() == OWNER_LEN && ob[0] == b'N' {
                    i32::from_be_bytes([ob[1], ob[2], ob[3], ob[4]])
                } else {
                    0
                };
                Ok(Some(Nlm4Holder {
                    exclusive: matches!(d.locktype, NfsLockType4::WriteLt | NfsLockType4::WritewLt),
                    svid,
                    oh: Opaque(ob.iter().take(MAXNETOBJ_SZ).copied().collect()),
                    l_offset: d.offset,
                    l_len: if d.length == u64::MAX { 0 } else { d.length },
                }))
            }
            None => Err(stat_of(st)),
        }
    }
    .await;
    Nlm4TestRes {
        cookie: a.cookie,
        stat: match r {
            Ok(None) => Nlm4TestRply::Other(Nlm4Stats::Granted as u32),
            Ok(Some(h)) => Nlm4TestRply::Denied(h),
            Err(s) => Nlm4TestRply::Other(s as u32),
        },
    }
}

async fn lock(q: &Req<'_>, a: Nlm4LockArgs) -> Nlm4Stats {
    let r = async {
        let o = q
            .obj(&NfsFh3::from(a.alock.fh.as_bytes().to_vec()))
            .await
            .map_err(stat_of3)?;
        let e = match q.s.opens.get(&o.gw, o.gen, &o.fh, a.exclusive).await {
            Ok((e, displaced)) => {
                q.s.close_later(displaced);
                e
            }
            Err(err) => return Err(stat_of3(q.fail(&o, err).await)),
        };
        let owner = owner_key(&a.alock);
        let existing = q.s.locks.get(&o.fh, &owner, o.gen);
        let locker = match existing {
            Some(sid) => Locker4::ExistingLockOwner(ExistLockOwner4 {
                lock_stateid: sid,
                lock_seqid: 0,
            }),
            None => Locker4::NewLockOwner(OpenToLockOwner4 {
                open_seqid: 0,
                open_stateid: Stateid4 {
                    seqid: 0,
                    ..e.file.stateid
                },
                lock_seqid: 0,
                lock_owner: StateOwner4 {
                    clientid: o.gw.clientid(),
                    owner: Opaque(owner.clone()),
                },
            }),
        };
        let (offset, length) = range(&a.alock);
        let op = NfsArgop4::Lock(LockArgs {
            locktype: locktype(a.exclusive),
            reclaim: false,
            offset,
            length,
            locker,
        });
        let (st, res) = match o
            .gw
            .compound_keep_failure(CompoundBuilder::new().putfh(&o.fh).op(op))
            .await
        {
            Ok(x) => x,
            Err(err) => return Err(stat_of3(q.fail(&o, err).await)),
        };
        match st {
            Nfsstat4::Ok => {
                let sid = res
                    .iter()
                    .find_map(|r| match r {
                        NfsResop4::Lock(LockRes::Ok(ok)) => Some(ok.lock_stateid),
                        _ => None,
                    })
                    .ok_or(Nlm4Stats::Failed)?;
                if existing.is_some() {
                    q.s.locks.update(&o.fh, &owner, sid);
                } else if !q.s.locks.put(
                    &o.fh,
                    &owner,
                    Held {
                        stateid: sid,
                        entry: e.clone(),
                        host: a.alock.caller_name.as_bytes().to_vec(),
                    },
                ) {
                    release(&o.gw, &o.fh, sid).await;
                    return Err(Nlm4Stats::DeniedNolocks);
                }
                Ok(Nlm4Stats::Granted)
            }
            Nfsstat4::Denied if a.block => Ok(Nlm4Stats::Blocked),
            other => Err(stat_of(other)),
        }
    }
    .await;
    match r {
        Ok(s) | Err(s) => s,
    }
}

/// LOCKU of the whole file for one owner's stateid.
async fn release(c: &client::Client, fh: &NfsFh4, sid: Stateid4) {
    let op = NfsArgop4::Locku(LockuArgs {
        locktype: NfsLockType4::WriteLt,
        seqid: 0,
        lock_stateid: sid,
        offset: 0,
        length: u64::MAX,
    });
    if let Err(e) = c.compound(CompoundBuilder::new().putfh(fh).op(op)).await {
        tracing::debug!("releasing an NLM owner's locks: {e}");
    }
}

async fn unlock(q: &Req<'_>, l: Nlm4Lock) -> Nlm4Stats {
    let r = async {
        let o = q
            .obj(&NfsFh3::from(l.fh.as_bytes().to_vec()))
            .await
            .map_err(stat_of3)?;
        let owner = owner_key(&l);
        let Some(sid) = q.s.locks.get(&o.fh, &owner, o.gen) else {
            // Nothing held by this owner here: unlocking is done.
            return Ok(Nlm4Stats::Granted);
        };
        let (offset, length) = range(&l);
        let op = NfsArgop4::Locku(LockuArgs {
            locktype: NfsLockType4::WriteLt,
            seqid: 0,
            lock_stateid: sid,
            offset,
            length,
        });
        match o
            .gw
            .compound(CompoundBuilder::new().putfh(&o.fh).op(op))
            .await
        {
            Ok(res) => {
                if let Some(s) = res.iter().find_map(|r| match r {
                    NfsResop4::Locku(LockuRes::Ok(s)) => Some(*s),
                    _ => None,
                }) {
                    q.s.locks.update(&o.fh, &owner, s);
                }
                Ok(Nlm4Stats::Granted)
            }
            Err(err) => match err.status() {
                Some(st) if !err.needs_recovery() => Err(stat_of(st)),
                _ => Err(stat_of3(q.fail(&o, err).await)),
            },
        }
    }
    .await;
    match r {
        Ok(s) | Err(s) => s,
    }
}

/// A host restarted (SM_NOTIFY) or asked to drop everything (FREE_ALL): its locks go.
pub async fn free_host(s: &Arc<Shared>, host: &[u8]) {
    let gone = s.locks.take_host(host);
    if gone.is_empty() {
        return;
    }
    tracing::info!(host = %String::from_utf8_lossy(host), locks = gone.len(), "releasing a restarted NLM client's locks");
    let Some(c) = s.up.current().await else {
        return;
    };
    for (fh, h) in gone {
        release(&c, &NfsFh4(Opaque(fh)), h.stateid).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(svid: i32, oh: &[u8], off: u64, len: u64) -> Nlm4Lock {
        Nlm4Lock {
            caller_name: Opaque::from("host"),
            fh: Opaque(vec![]),
            oh: Opaque(oh.to_vec()),
            svid,
            l_offset: off,
            l_len: len,
        }
    }

    #[test]
    fn owners_differ_by_process_and_ranges_map_to_nfs4() {
        assert_ne!(owner_key(&l(1, b"a", 0, 0)), owner_key(&l(2, b"a", 0, 0)));
        assert_ne!(owner_key(&l(1, b"a", 0, 0)), owner_key(&l(1, b"b", 0, 0)));
        let k = owner_key(&l(0x01020304, &[7; 2000], 0, 0));
        assert_eq!(k.len(), OWNER_LEN);
        assert_eq!(&k[..5], &[b'N', 1, 2, 3, 4]);
        assert_eq!(
            k,
            owner_key(&l(0x01020304, &[7; 2000], 9, 9)),
            "the range is not the owner"
        );
        assert_eq!(range(&l(1, b"", 5, 0)), (5, u64::MAX));
        assert_eq!(range(&l(1, b"", 5, 10)), (5, 10));
        assert_eq!(range(&l(1, b"", u64::MAX - 1, 10)), (u64::MAX - 1, 1));
    }
}
