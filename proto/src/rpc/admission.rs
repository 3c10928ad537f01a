//! Which connections a listener keeps: at most `max_per_address` from one source address and
//! `max_connections` in all. At a cap the newcomer gets in and an old idle connection goes, as
//! in knfsd's `svc_check_conn_limits` (which closes the oldest temporary socket, "not fair, but
//! so is life"; its comment names dropping old connections from the same address first as the
//! better way, which it cannot do for lack of the address). Here the victim comes from the
//! newcomer's own address when that one is at its cap, else from the address holding the most
//! connections: a flooder only displaces its own sockets, and a client with one connection
//! keeps it.
use super::connection::{CallHandler, Connection, ConnectionLimits, WeakConnection};
use super::limits::{RecordBudget, ServeLimits};
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// The connections a listener holds, and the record memory they share.
pub struct ConnTable {
    limits: ServeLimits,
    budget: Arc<RecordBudget>,
    table: Mutex<Table>,
    /// Connections closed at a cap since the last warning, and when that was.
    evicted: AtomicU64,
    warned: Mutex<Option<Instant>>,
}

/// At most one warning about the caps per this long: a flood must not flood the log too.
const WARN_EVERY: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Table {
    by_addr: HashMap<IpAddr, Vec<(u64, WeakConnection)>>,
    total: usize,
}

impl Table {
    fn count(&self, ip: &IpAddr) -> usize {
        self.by_addr.get(ip).map_or(0, Vec::len)
    }

    fn remove(&mut self, ip: &IpAddr, id: u64) -> bool {
        let Some(v) = self.by_addr.get_mut(ip) else {
            return false;
        };
        let Some(i) = v.iter().position(|(c, _)| *c == id) else {
            return false;
        };
        v.swap_remove(i);
        if v.is_empty() {
            self.by_addr.remove(ip);
        }
        self.total -= 1;
        true
    }

    /// Takes out the connection of `ip` to close: the longest idle of those neither serving a
    /// call nor kept by the server (a back channel), else the longest idle of all.
    fn take_victim(&mut self, ip: &IpAddr) -> Option<Connection> {
        let v = self.by_addr.get(ip)?;
        let live: Vec<(u64, Option<Connection>)> =
            v.iter().map(|(id, w)| (*id, w.upgrade())).collect();
        // A connection already gone frees its place without anyone being closed.
        if let Some((id, _)) = live.iter().find(|(_, c)| c.is_none()) {
            let id = *id;
            self.remove(ip, id);
            return None;
        }
        let conns: Vec<Connection> = live.into_iter().filter_map(|(_, c)| c).collect();
        let quiet = conns
            .iter()
            .filter(|c| !c.busy() && !c.kept_elsewhere(1))
            .max_by_key(|c| c.idle_for());
        let victim = quiet
            .or_else(|| conns.iter().max_by_key(|c| c.idle_for()))?
            .clone();
        self.remove(ip, victim.id());
        Some(victim)
    }

    fn fullest(&self) -> Option<IpAddr> {
        self.by_addr
            .iter()
            .max_by_key(|(_, v)| v.len())
            .map(|(ip, _)| *ip)
    }
}

impl ConnTable {
    pub fn new(mut limits: ServeLimits) -> Arc<Self> {
        limits.max_per_address = limits.max_per_address.max(1);
        limits.max_connections = limits.max_connections.max(1);
        Arc::new(Self {
            limits,
            budget: RecordBudget::new(limits.record_memory),
            table: Mutex::new(Table::default()),
            evicted: AtomicU64::new(0),
            warned: Mutex::new(None),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // Every update leaves the table consistent; a panic elsewhere cannot corrupt it.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn limits(&self) -> ServeLimits {
        self.limits
    }

    pub fn budget(&self) -> &RecordBudget {
        &self.budget
    }

    /// Connections held now.
    pub fn len(&self) -> usize {
        self.lock().total
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Enters `conn`, first closing connections to keep both caps.
    pub(crate) fn admit(&self, conn: &Connection) {
        let ip = conn.peer_addr().ip();
        let mut victims = Vec::new();
        {
            let mut t = self.lock();
            // Bounded: each pass removes an entry (a victim or a dead one).
            while t.count(&ip) >= self.limits.max_per_address {
                victims.extend(t.take_victim(&ip));
            }
            while t.total >= self.limits.max_connections {
                let Some(from) = t.fullest() else { break };
                if let Some(v) = t.take_victim(&from) {
                    victims.push(v);
                }
            }
            t.by_addr
                .entry(ip)
                .or_default()
                .push((conn.id(), conn.downgrade()));
            t.total += 1;
        }
        self.note_evictions(victims.len(), conn);
        for v in victims {
            tracing::debug!(
                victim = ?v,
                idle = ?v.idle_for(),
                newcomer = %conn.peer_addr(),
                "connection cap reached: closing an old connection"
            );
            v.close();
        }
    }

    /// Tells the operator, now and then, that the caps are closing connections (knfsd prints a
    /// rate-limited "too many open connections").
    fn note_evictions(&self, n: usize, newcomer: &Connection) {
        if n == 0 {
            return;
        }
        let total = self.evicted.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        if warned.is_some_and(|w| w.elapsed() < WARN_EVERY) {
            return;
        }
        *warned = Some(Instant::now());
        self.evicted.fetch_sub(total, Ordering::Relaxed);
        tracing::warn!(
            closed = total,
            latest_newcomer = %newcomer.peer_addr(),
            max_connections = self.limits.max_connections,
            per_address = self.limits.max_per_address,
            "connection caps reached: closed the longest-idle connections to admit new ones"
        );
    }

    /// Forgets `conn` (it is gone, or going).
    pub(crate) fn remove(&self, conn: &Connection) {
        self.lock().remove(&conn.peer_addr().ip(), conn.id());
    }

    /// Closes one connection of the fullest address, to free a descriptor.
    fn evict_one(&self) {
        let victim = {
            let mut t = self.lock();
            t.fullest().and_then(|ip| t.take_victim(&ip))
        };
        if let Some(v) = victim {
            tracing::debug!(victim = ?v, "out of descriptors: closing an old connection");
            v.close();
        }
    }

    /// Closes every connection (shutdown).
    pub fn close_all(&self) {
        let all: Vec<WeakConnection> = {
            let mut t = self.lock();
            t.total = 0;
            t.by_addr
                .drain()
                .flat_map(|(_, v)| v.into_iter().map(|(_, w)| w))
                .collect()
        };
        for c in all.iter().filter_map(WeakConnection::upgrade) {
            c.close();
        }
    }
}

/// Linux's "too many open files" for the process (EMFILE) and the system (ENFILE).
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;

/// Accepts connections on `listener` into `table` and serves their calls with `handler` until
/// `stop` resolves.
pub async fn serve<H: CallHandler>(
    listener: TcpListener,
    handler: Arc<H>,
    limits: ConnectionLimits,
    table: Arc<ConnTable>,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut stop => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                tracing::debug!(%peer, "connection");
                if let Err(e) =
                    Connection::spawn_served(stream, handler.clone(), limits, table.clone())
                {
                    tracing::warn!(%peer, "cannot set up connection: {e}");
                }
            }
            Err(e) => {
                // The caps keep connections under the descriptor limit; if files or another
                // listener used the rest, make room rather than lock every newcomer out.
                if matches!(e.raw_os_error(), Some(EMFILE | ENFILE)) {
                    table.evict_one();
                }
                tracing::warn!("accept: {e}");
                // Back off instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::{accepted_reply, AcceptStat, Auth, Call, RejectCalls};
    use crate::xdr::Writer;
    use std::net::SocketAddr;
    use tokio::net::TcpSocket;

    /// Keeps a handle on every connection that calls procedure 1, as the MDS keeps a back
    /// channel.
    #[derive(Default)]
    struct Keep(Mutex<Vec<Connection>>);
    impl CallHandler for Keep {
        async fn handle(&self, c: Connection, call: Call) -> Option<Writer> {
            if call.proc_ == 1 {
                self.0.lock().unwrap().push(c);
            }
            Some(accepted_reply(call.xid, &Auth::None, AcceptStat::Success))
        }
    }

    async fn dial(from: [u8; 4], to: SocketAddr) -> Connection {
        let s = TcpSocket::new_v4().unwrap();
        s.bind(SocketAddr::from((from, 0))).unwrap();
        let s = s.connect(to).await.unwrap();
        Connection::spawn(s, Arc::new(RejectCalls), ConnectionLimits::default()).unwrap()
    }

    async fn call(c: &Connection, proc_: u32) {
        c.call(9, 1, proc_, &Auth::None, &[], Duration::from_secs(5))
            .await
            .unwrap();
    }

    async fn is_closed(c: &Connection) -> bool {
        tokio::time::timeout(Duration::from_secs(2), c.closed())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn at_a_cap_the_longest_idle_connection_of_the_fullest_address_goes() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let table = ConnTable::new(ServeLimits {
            max_connections: 3,
            max_per_address: 2,
            ..ServeLimits::default()
        });
        let keep = Arc::new(Keep::default());
        tokio::spawn(serve(
            l,
            keep.clone(),
            ConnectionLimits::default(),
            table.clone(),
            std::future::pending(),
        ));
        let a = [127, 0, 0, 2];
        // a1 is kept by the server (a back channel), a2 is plain; both then idle, a1 longer.
        let a1 = dial(a, addr).await;
        call(&a1, 1).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let a2 = dial(a, addr).await;
        call(&a2, 0).await;
        // A third from the same address displaces the plain one, not the kept one.
        let a3 = dial(a, addr).await;
        call(&a3, 0).await;
        assert!(is_closed(&a2).await);
        assert!(!a1.is_closed());
        assert_eq!(table.len(), 2);
        // Past the total cap, a newcomer from elsewhere displaces one of the fullest address's.
        let b1 = dial([127, 0, 0, 3], addr).await;
        call(&b1, 0).await;
        let c1 = dial([127, 0, 0, 4], addr).await;
        call(&c1, 0).await;
        assert!(is_closed(&a3).await);
        assert!(!a1.is_closed() && !b1.is_closed() && !c1.is_closed());
        call(&b1, 0).await;
        assert_eq!(table.len(), 3);
    }
}
