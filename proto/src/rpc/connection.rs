//! One TCP connection carrying RPC in both directions: calls from the peer go to a handler,
//! calls we make get their replies matched by xid. The NFSv4.1 back channel needs exactly
//! this: the server sends CB_COMPOUND over the client's own fore-channel connection.
use super::admission::ConnTable;
use super::message::{
    accepted_reply, parse_message, rpc_mismatch_reply, AcceptStat, Call, Incoming, Reply,
};
use super::record::{frame_writer, read_record_within};
use super::{Auth, RpcError};
use crate::xdr::Writer;
use std::collections::HashMap;
use std::future::Future;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};

#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Largest record accepted; a bigger one closes the connection (there is no way to
    /// answer a call whose header we refuse to read).
    pub max_record: usize,
    /// Calls from the peer being served at once; the reader stops reading past this, which
    /// pushes back on the peer through TCP.
    pub max_in_flight: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_record: 4 << 20,
            max_in_flight: 64,
        }
    }
}

/// What a handler notes of a call when it arrives (`CallHandler::arrived`), kept until the
/// call's reply is sent.
pub type Arrival = Box<dyn std::any::Any + Send>;

/// Serves calls arriving on a connection. `None` means "no reply" (the call is dropped).
pub trait CallHandler: Send + Sync + 'static {
    fn handle(&self, conn: Connection, call: Call) -> impl Future<Output = Option<Writer>> + Send;

    /// Runs in the connection's reader, in the order calls arrive, before the call is handed
    /// to its own task (calls then run concurrently, a later one possibly first): what a later
    /// call on the connection must be able to see of this one. It must be cheap and must not
    /// block. The value is dropped once the call's reply is sent (or it has none).
    fn arrived(&self, _call: &Call) -> Option<Arrival> {
        None
    }
}

/// Answers every call with PROG_UNAVAIL: for connections that only make calls.
pub struct RejectCalls;

impl CallHandler for RejectCalls {
    async fn handle(&self, _conn: Connection, call: Call) -> Option<Writer> {
        Some(accepted_reply(
            call.xid,
            &Auth::None,
            AcceptStat::ProgUnavail,
        ))
    }
}

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

struct Inner {
    id: u64,
    peer: SocketAddr,
    local: SocketAddr,
    out: mpsc::Sender<Writer>,
    pending: Mutex<HashMap<u32, oneshot::Sender<Reply>>>,
    next_xid: AtomicU32,
    closed: AtomicBool,
    closed_notify: Notify,
    /// When a record was last read whole or written (ms since `epoch()`).
    last_active: AtomicU64,
    /// Calls from the peer being served.
    in_flight: AtomicUsize,
}

/// Clones of a connection its own reader and writer tasks hold.
const OWN_HANDLES: usize = 2;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

/// A table's handle on a connection: it must not keep the connection alive, or the count of
/// handles that tells a session's back channel from an idle socket would be off.
#[derive(Clone)]
pub(crate) struct WeakConnection(Weak<Inner>);

impl WeakConnection {
    pub(crate) fn upgrade(&self) -> Option<Connection> {
        self.0.upgrade().map(|inner| Connection { inner })
    }
}

#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Connection#{}({})", self.inner.id, self.inner.peer)
    }
}

impl Connection {
    /// Takes over `stream`: spawns its reader and writer tasks and returns the handle.
    pub fn spawn<H: CallHandler>(
        stream: TcpStream,
        handler: Arc<H>,
        limits: ConnectionLimits,
    ) -> std::io::Result<Connection> {
        Self::spawn_inner(stream, handler, limits, None)
    }

    /// `spawn` for a connection a listener accepted: it joins `table`, which may close it to make
    /// room, and it is closed when idle, when a record trickles in, or when a record cannot get
    /// memory in time (see `ServeLimits`).
    pub fn spawn_served<H: CallHandler>(
        stream: TcpStream,
        handler: Arc<H>,
        limits: ConnectionLimits,
        table: Arc<ConnTable>,
    ) -> std::io::Result<Connection> {
        Self::spawn_inner(stream, handler, limits, Some(table))
    }

    fn spawn_inner<H: CallHandler>(
        stream: TcpStream,
        handler: Arc<H>,
        limits: ConnectionLimits,
        table: Option<Arc<ConnTable>>,
    ) -> std::io::Result<Connection> {
        let peer = stream.peer_addr()?;
        let local = stream.local_addr()?;
        // Nagle only delays small replies; records are written whole.
        stream.set_nodelay(true)?;
        let (rd, wr) = stream.into_split();
        let (tx, rx) = mpsc::channel::<Writer>(256);
        let seed = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0))
            ^ (NEXT_CONN_ID.load(Ordering::Relaxed) as u32).rotate_left(16);
        let conn = Connection {
            inner: Arc::new(Inner {
                id: NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed),
                peer,
                local,
                out: tx,
                pending: Mutex::new(HashMap::new()),
                next_xid: AtomicU32::new(seed),
                closed: AtomicBool::new(false),
                closed_notify: Notify::new(),
                last_active: AtomicU64::new(now_ms()),
                in_flight: AtomicUsize::new(0),
            }),
        };
        if let Some(t) = &table {
            // Before the tasks start, so the table's count never misses a live connection.
            t.admit(&conn);
        }
        tokio::spawn(write_loop(conn.clone(), wr, rx));
        tokio::spawn(read_loop(conn.clone(), rd, handler, limits, table));
        Ok(conn)
    }

    /// Connects to `addr` and serves incoming calls (if any) with `handler`.
    pub async fn connect<H: CallHandler>(
        addr: SocketAddr,
        handler: Arc<H>,
        limits: ConnectionLimits,
    ) -> std::io::Result<Connection> {
        let s = TcpStream::connect(addr).await?;
        Self::spawn(s, handler, limits)
    }

    pub fn id(&self) -> u64 {
        self.inner.id
    }
    pub fn peer_addr(&self) -> SocketAddr {
        self.inner.peer
    }
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    pub(crate) fn downgrade(&self) -> WeakConnection {
        WeakConnection(Arc::downgrade(&self.inner))
    }

    fn touch(&self) {
        self.inner.last_active.store(now_ms(), Ordering::Relaxed);
    }

    /// How long since a record was last read whole or written.
    pub fn idle_for(&self) -> Duration {
        let last = self.inner.last_active.load(Ordering::Relaxed);
        Duration::from_millis(now_ms().saturating_sub(last))
    }

    /// Whether calls are being served or awaited on it.
    pub(crate) fn busy(&self) -> bool {
        self.inner.in_flight.load(Ordering::Acquire) > 0
            || self
                .inner
                .pending
                .lock()
                .map(|p| !p.is_empty())
                .unwrap_or(true)
    }

    /// Whether anything but the connection's own tasks, the calls it is serving and `callers`
    /// handles of the caller keeps it: the MDS keeps a session's back channel
    /// (`Session::back_conn`), and such a connection is idle on our side while the client
    /// holds state it may recall.
    pub(crate) fn kept_elsewhere(&self, callers: usize) -> bool {
        let own = OWN_HANDLES + self.inner.in_flight.load(Ordering::Acquire) + callers;
        Arc::strong_count(&self.inner) > own
    }

    /// Resolves once the connection is gone.
    pub async fn closed(&self) {
        loop {
            let notified = self.inner.closed_notify.notified();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    pub fn close(&self) {
        if !self.inner.closed.swap(true, Ordering::AcqRel) {
            self.inner.closed_notify.notify_waiters();
            if let Ok(mut p) = self.inner.pending.lock() {
                p.clear();
            }
        }
    }

    /// Queues one framed record (whose first 4 bytes are the header placeholder).
    pub async fn send(&self, mut w: Writer) -> Result<(), RpcError> {
        if self.is_closed() {
            return Err(RpcError::Closed);
        }
        frame_writer(&mut w);
        self.inner.out.send(w).await.map_err(|_| RpcError::Closed)
    }

    pub fn next_xid(&self) -> u32 {
        self.inner.next_xid.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends a call built with `encode_call` (whose xid must come from `next_xid`) and waits
    /// for its reply.
    pub async fn call_raw(
        &self,
        xid: u32,
        msg: Writer,
        timeout: Duration,
    ) -> Result<Reply, RpcError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.inner.pending.lock().map_err(|_| RpcError::Closed)?;
            p.insert(xid, tx);
        }
        if let Err(e) = self.send(msg).await {
            self.forget(xid);
            return Err(e);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(RpcError::Closed),
            Err(_) => {
                self.forget(xid);
                Err(RpcError::Timeout)
            }
        }
    }

    /// Makes a call and returns the reply; non-SUCCESS replies are errors.
    #[allow(clippy::too_many_arguments)]
    pub async fn call(
        &self,
        prog: u32,
        vers: u32,
        proc_: u32,
        cred: &Auth,
        args: &[u8],
        timeout: Duration,
    ) -> Result<Reply, RpcError> {
        let xid = self.next_xid();
        let mut w = super::encode_call(xid, prog, vers, proc_, cred, &Auth::None);
        w.buf.extend_from_slice(args);
        let reply = self.call_raw(xid, w, timeout).await?;
        match &reply.status {
            super::ReplyStatus::Accepted(AcceptStat::Success) => Ok(reply),
            other => Err(RpcError::NotAccepted(other.clone())),
        }
    }

    fn forget(&self, xid: u32) {
        if let Ok(mut p) = self.inner.pending.lock() {
            p.remove(&xid);
        }
    }

    fn complete(&self, reply: Reply) {
        let waiter = self
            .inner
            .pending
            .lock()
            .ok()
            .and_then(|mut p| p.remove(&reply.xid));
        match waiter {
            Some(tx) => {
                let _ = tx.send(reply);
            }
            None => tracing::debug!(
                conn = self.inner.id,
                xid = reply.xid,
                "reply to no pending call"
            ),
        }
    }
}

/// Records taken off the queue for one `writev`, and iovecs per `writev` (Linux's IOV_MAX is 1024).
const MAX_BATCH: usize = 64;
const MAX_IOV: usize = 512;
/// Read-side buffer of a connection.
const READ_BUFFER: usize = 16 * 1024;

async fn write_loop(
    conn: Connection,
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::Receiver<Writer>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let first = tokio::select! {
            m = rx.recv() => m,
            _ = conn.closed() => None,
        };
        let Some(rec) = first else { break };
        batch.push(rec);
        // Coalesce whatever else is queued into the same system call.
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(rec) => batch.push(rec),
                Err(_) => break,
            }
        }
        if write_all_vectored(&mut wr, &batch).await.is_err() {
            break;
        }
        conn.touch();
        batch.clear();
    }
    conn.close();
    let _ = wr.shutdown().await;
}

/// Writes the records' pieces (headers and shared payloads alike) without first copying them
/// into one buffer. The I/O vector is an array in the writer task, refilled for each system
/// call: two `Vec`s per batch before, ~1.7 allocations per COMPOUND (METADATA-BENCH run 17).
async fn write_all_vectored(
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    batch: &[Writer],
) -> std::io::Result<()> {
    let mut parts = batch
        .iter()
        .flat_map(|w| w.segments())
        .filter(|p| !p.is_empty());
    let mut iov = [IoSlice::new(&[]); MAX_IOV];
    loop {
        let mut filled = 0;
        // `zip` asks `iov` first: no part is taken without a place for it.
        for (slot, part) in iov.iter_mut().zip(parts.by_ref()) {
            *slot = IoSlice::new(part);
            filled += 1;
        }
        if filled == 0 {
            return Ok(());
        }
        let mut left = &mut iov[..filled];
        while !left.is_empty() {
            let n = wr.write_vectored(left).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut left, n);
        }
    }
}

async fn read_loop<H: CallHandler>(
    conn: Connection,
    mut rd: tokio::net::tcp::OwnedReadHalf,
    handler: Arc<H>,
    limits: ConnectionLimits,
    table: Option<Arc<ConnTable>>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_in_flight));
    // Small records (most calls and replies) arrive several per system call instead of two
    // system calls each (header, then body); large payloads still bypass the buffer.
    let mut rd = tokio::io::BufReader::with_capacity(READ_BUFFER, &mut rd);
    loop {
        let rec = match &table {
            None => tokio::select! {
                r = read_record_within(&mut rd, limits.max_record, None) => r,
                _ = conn.closed() => break,
            },
            Some(t) => {
                if !wait_for_record(&conn, &mut rd, t).await {
                    break;
                }
                let l = t.limits();
                let read = read_record_within(&mut rd, limits.max_record, Some(t.budget()));
                tokio::select! {
                    r = tokio::time::timeout(l.record_timeout, read) => match r {
                        Ok(r) => r,
                        Err(_) => {
                            tracing::debug!(
                                conn = conn.inner.id,
                                peer = %conn.inner.peer,
                                "closing: record not whole within {:?}",
                                l.record_timeout
                            );
                            break;
                        }
                    },
                    _ = conn.closed() => break,
                }
            }
        };
        let rec = match rec {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(conn = conn.inner.id, peer = %conn.inner.peer, "closing: {e}");
                break;
            }
        };
        conn.touch();
        match parse_message(rec) {
            Ok(Incoming::Call(call)) => {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let h = handler.clone();
                conn.inner.in_flight.fetch_add(1, Ordering::AcqRel);
                let c = conn.clone();
                let arrival = h.arrived(&call);
                tokio::spawn(async move {
                    if let Some(w) = h.handle(c.clone(), call).await {
                        let _ = c.send(w).await;
                    }
                    drop(arrival);
                    c.inner.in_flight.fetch_sub(1, Ordering::AcqRel);
                    drop(permit);
                });
            }
            Ok(Incoming::Reply(reply)) => conn.complete(reply),
            Ok(Incoming::Garbage { xid, bad_version }) => {
                let w = if bad_version {
                    rpc_mismatch_reply(xid)
                } else {
                    accepted_reply(xid, &Auth::None, AcceptStat::GarbageArgs)
                };
                if conn.send(w).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                tracing::debug!(conn = conn.inner.id, "closing on malformed message: {e}");
                break;
            }
        }
    }
    conn.close();
    if let Some(t) = table {
        t.remove(&conn);
    }
}

/// Waits for the first byte of the next record; false if the connection is to go: closed,
/// at EOF, or idle past the limit with nothing keeping it. Waiting in `fill_buf` loses no
/// bytes when the idle timer fires, unlike a half-read header.
async fn wait_for_record<R: tokio::io::AsyncRead + Unpin>(
    conn: &Connection,
    rd: &mut tokio::io::BufReader<R>,
    table: &ConnTable,
) -> bool {
    let idle_timeout = table.limits().idle_timeout;
    loop {
        let left = idle_timeout.saturating_sub(conn.idle_for());
        // Idle but kept (or busy): look again a full period later.
        let wait = if left.is_zero() { idle_timeout } else { left };
        tokio::select! {
            r = rd.fill_buf() => return matches!(r, Ok(b) if !b.is_empty()),
            _ = tokio::time::sleep(wait) => {
                if conn.idle_for() >= idle_timeout && !conn.busy() && !conn.kept_elsewhere(0) {
                    tracing::debug!(
                        conn = conn.inner.id,
                        peer = %conn.inner.peer,
                        "closing: idle for {:?}",
                        conn.idle_for()
                    );
                    return false;
                }
            }
            _ = conn.closed() => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::read_record;
    use super::*;
    use tokio::net::TcpListener;

    struct Echo;
    impl CallHandler for Echo {
        async fn handle(&self, _c: Connection, call: Call) -> Option<Writer> {
            let mut w = accepted_reply(call.xid, &Auth::None, AcceptStat::Success);
            w.buf.extend_from_slice(call.args());
            Some(w)
        }
    }

    #[tokio::test]
    async fn calls_flow_both_ways_on_one_connection() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let c = Connection::spawn(s, Arc::new(Echo), ConnectionLimits::default()).unwrap();
            // The server calls back into the client over the same socket.
            let r = c
                .call(7, 1, 0, &Auth::None, &[0, 0, 0, 9], Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(r.body(), &[0, 0, 0, 9]);
            c
        });
        let client = Connection::connect(addr, Arc::new(Echo), ConnectionLimits::default())
            .await
            .unwrap();
        let r = client
            .call(
                100003,
                4,
                1,
                &Auth::None,
                &[1, 2, 3, 4],
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(r.body(), &[1, 2, 3, 4]);
        let _sc = server.await.unwrap();
    }

    /// Replies with shared payloads around the call's arguments.
    struct BigEcho;
    impl CallHandler for BigEcho {
        async fn handle(&self, _c: Connection, call: Call) -> Option<Writer> {
            let mut w = accepted_reply(call.xid, &Auth::None, AcceptStat::Success);
            w.opaque_shared(bytes::Bytes::from(big_payload(2 << 20)));
            w.buf.extend_from_slice(call.args());
            w.opaque_shared(bytes::Bytes::from(big_payload(5000)));
            Some(w)
        }
    }

    fn big_payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    #[tokio::test]
    async fn shared_payloads_arrive_whole_and_in_order() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let _c = Connection::spawn(s, Arc::new(BigEcho), ConnectionLimits::default());
            std::future::pending::<()>().await;
        });
        let client = Connection::connect(addr, Arc::new(RejectCalls), ConnectionLimits::default())
            .await
            .unwrap();
        let mut want = Writer::new();
        want.opaque(&big_payload(2 << 20));
        want.u32(7);
        want.opaque(&big_payload(5000));
        // Several at once, so records queue behind each other and writes come back partial.
        let calls: Vec<_> = (0..4)
            .map(|_| {
                let c = client.clone();
                tokio::spawn(async move {
                    c.call(
                        1,
                        1,
                        1,
                        &Auth::None,
                        &7u32.to_be_bytes(),
                        Duration::from_secs(20),
                    )
                    .await
                })
            })
            .collect();
        for h in calls {
            assert!(h.await.unwrap().unwrap().body() == want.buf.as_slice());
        }
    }

    #[tokio::test]
    async fn garbage_gets_an_error_reply_and_the_server_lives_on() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let _ = Connection::spawn(s, Arc::new(Echo), ConnectionLimits::default());
            }
        });
        let mut s = TcpStream::connect(addr).await.unwrap();
        // A call header with RPC version 3 and nothing else.
        let rec = vec![0x80, 0, 0, 12, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 3];
        s.write_all(&rec).await.unwrap();
        let mut rd = tokio::io::BufReader::new(s);
        let reply = read_record(&mut rd, 1024).await.unwrap().unwrap();
        match parse_message(reply).unwrap() {
            Incoming::Reply(r) => assert_eq!(
                r.status,
                super::super::ReplyStatus::RpcMismatch { low: 2, high: 2 }
            ),
            other => panic!("{other:?}"),
        }
        // Pure noise closes that connection, and a new one is still served.
        let mut s2 = TcpStream::connect(addr).await.unwrap();
        s2.write_all(&[0x80, 0, 0, 4, 1, 2, 3, 4]).await.unwrap();
        let client = Connection::connect(addr, Arc::new(RejectCalls), ConnectionLimits::default())
            .await
            .unwrap();
        let r = client
            .call(1, 1, 1, &Auth::None, &[9, 9, 9, 9], Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(r.body(), &[9, 9, 9, 9]);
    }
}
