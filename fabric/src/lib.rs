//! libfabric for cfs: a reliable-datagram (FI_EP_RDM) endpoint with messages and RMA, and
//! memory registration, behind a safe API. Only what the data path uses is wrapped.
//!
//! Why a crate of our own: no maintained binding fits Debian's libfabric 1.x
//! (`ofi-libfabric-sys` needs 2.x, `libfabric-sys` is unmaintained). `sys.rs` is bindgen's
//! output for the 1.17 headers (`gen-bindings.sh`), committed; most of libfabric's API is
//! `static inline` functions that call through a provider's operation tables, which `ops` below
//! does by hand. The library is loaded at run time (`dlopen("libfabric.so.1")`, package
//! `libfabric1`), so cfs builds and runs without it and the data path then stays on TCP.
//!
//! Threading: the domain is opened `FI_THREAD_SAFE`, so operations are posted from any
//! thread; one progress thread per endpoint waits on the completion queue (`fi_cq_sread`),
//! which also drives the provider's progress (incoming RMA is served there), and completes the
//! futures of finished operations. Every buffer an operation touches is owned by the
//! operation until its completion arrives, so dropping a future early never frees memory the
//! provider still uses.
//!
//! `unsafe` lives in this crate only; each block says why it is sound.
mod ops;
#[allow(unsafe_op_in_unsafe_fn)]
mod sys;

use std::collections::HashMap;
use std::ffi::{c_void, CStr, CString};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

/// Receive buffers kept posted; a message larger than this is refused by the provider.
pub const RECV_SIZE: usize = 4096;
/// Messages that can arrive before the receiver takes them.
const RECV_POSTED: usize = 64;
/// How long a post is retried while the provider answers FI_EAGAIN.
const POST_PATIENCE: Duration = Duration::from_secs(2);
/// Peers kept in the address vector before the oldest are removed.
const MAX_PEERS: usize = 4096;

#[derive(Debug, Error, Clone)]
pub enum FabricError {
    #[error("libfabric is not available: {0}")]
    NoLibrary(String),
    #[error("{call}: {msg} ({code})")]
    Call {
        call: &'static str,
        code: i32,
        msg: String,
    },
    #[error("no {provider} provider offers a reliable-datagram endpoint with RMA")]
    NoProvider { provider: String },
    #[error("operation failed: {0}")]
    Completion(String),
    #[error("the endpoint is closed")]
    Closed,
    #[error("bad fabric address")]
    BadAddress,
}

pub type Result<T, E = FabricError> = std::result::Result<T, E>;

type GetinfoFn = unsafe extern "C" fn(
    u32,
    *const libc::c_char,
    *const libc::c_char,
    u64,
    *const sys::fi_info,
    *mut *mut sys::fi_info,
) -> libc::c_int;
type FreeinfoFn = unsafe extern "C" fn(*mut sys::fi_info);
type DupinfoFn = unsafe extern "C" fn(*const sys::fi_info) -> *mut sys::fi_info;
type FabricFn = unsafe extern "C" fn(
    *mut sys::fi_fabric_attr,
    *mut *mut sys::fid_fabric,
    *mut c_void,
) -> libc::c_int;
type StrerrorFn = unsafe extern "C" fn(libc::c_int) -> *const libc::c_char;

/// The few exported functions of libfabric, resolved once.
struct Lib {
    getinfo: GetinfoFn,
    freeinfo: FreeinfoFn,
    dupinfo: DupinfoFn,
    fabric: FabricFn,
    strerror: StrerrorFn,
}

static LIB: OnceLock<Result<Lib, String>> = OnceLock::new();

fn lib() -> Result<&'static Lib> {
    LIB.get_or_init(load)
        .as_ref()
        .map_err(|e| FabricError::NoLibrary(e.clone()))
}

fn load() -> Result<Lib, String> {
    // SAFETY: dlopen with a constant NUL-terminated name; the handle is never closed, so the
    // resolved symbols stay valid for the life of the process.
    let h = unsafe { libc::dlopen(c"libfabric.so.1".as_ptr(), libc::RTLD_NOW) };
    if h.is_null() {
        return Err("libfabric.so.1 not found (apt-get install libfabric1)".into());
    }
    let sym = |name: &CStr| -> Result<*mut c_void, String> {
        // SAFETY: `h` is a live handle and `name` a NUL-terminated symbol name.
        let p = unsafe { libc::dlsym(h, name.as_ptr()) };
        if p.is_null() {
            Err(format!("libfabric lacks {name:?}"))
        } else {
            Ok(p)
        }
    };
    // SAFETY: each symbol is the exported libfabric 1.x function of that name, whose C
    // signature (fabric.h) the function pointer type restates.
    unsafe {
        Ok(Lib {
            getinfo: std::mem::transmute::<*mut c_void, GetinfoFn>(sym(c"fi_getinfo")?),
            freeinfo: std::mem::transmute::<*mut c_void, FreeinfoFn>(sym(c"fi_freeinfo")?),
            dupinfo: std::mem::transmute::<*mut c_void, DupinfoFn>(sym(c"fi_dupinfo")?),
            fabric: std::mem::transmute::<*mut c_void, FabricFn>(sym(c"fi_fabric")?),
            strerror: std::mem::transmute::<*mut c_void, StrerrorFn>(sym(c"fi_strerror")?),
        })
    }
}

/// Whether libfabric can be loaded here.
pub fn available() -> bool {
    lib().is_ok()
}

fn errmsg(code: i32) -> String {
    match lib() {
        // SAFETY: fi_strerror returns a pointer to a static NUL-terminated string.
        Ok(l) => unsafe { CStr::from_ptr((l.strerror)(code.abs())) }
            .to_string_lossy()
            .into_owned(),
        Err(_) => format!("error {code}"),
    }
}

fn check(call: &'static str, rc: i64) -> Result<()> {
    if rc >= 0 {
        Ok(())
    } else {
        Err(FabricError::Call {
            call,
            code: rc as i32,
            msg: errmsg(rc as i32),
        })
    }
}

/// A peer in this endpoint's address vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer(u64);

/// Where a registered region is, as a peer's RMA names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteBuf {
    pub addr: u64,
    pub key: u64,
    pub len: u32,
}

/// A finished operation (with the buffer an RMA read filled), or why it failed.
type Done = oneshot::Sender<Result<Option<Vec<u8>>, FabricError>>;

/// What an operation owns until it completes. `#[repr(C)]` with the provider's context first:
/// a pointer to the `Op` is the `fi_context2` the provider may use as scratch space.
#[repr(C)]
struct Op {
    ctx: sys::fi_context2,
    kind: OpKind,
}

enum OpKind {
    Send { _buf: Vec<u8>, done: Done },
    Recv { buf: Box<[u8]> },
    Rma { keep: Keep, done: Done },
}

/// Memory an RMA reads from or writes into, kept alive until the operation completes.
enum Keep {
    Owned(Vec<u8>),
}

/// Memory registered for peers' RMA. Deregistered before its buffer is freed.
pub struct Region {
    _ep: Arc<Inner>,
    mr: *mut sys::fid_mr,
    mem: Mem,
    key: u64,
    addr: u64,
}

enum Mem {
    Owned(Vec<u8>),
    Shared(Arc<Vec<u8>>),
}

impl Mem {
    fn bytes(&self) -> &[u8] {
        match self {
            Mem::Owned(v) => v,
            Mem::Shared(v) => v,
        }
    }
}

// SAFETY: the registration is a provider object of a FI_THREAD_SAFE domain; the buffer is
// plain owned memory.
unsafe impl Send for Region {}
// SAFETY: shared access only reads the buffer and the key.
unsafe impl Sync for Region {}

impl Region {
    /// What a peer needs to reach this memory.
    pub fn remote(&self) -> RemoteBuf {
        RemoteBuf {
            addr: self.addr,
            key: self.key,
            len: self.mem.bytes().len() as u32,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        self.mem.bytes()
    }

    /// Deregisters and gives the buffer back (with what peers wrote into it); a shared
    /// buffer is copied out.
    pub fn into_inner(mut self) -> Vec<u8> {
        self.close();
        match std::mem::replace(&mut self.mem, Mem::Owned(Vec::new())) {
            Mem::Owned(v) => v,
            Mem::Shared(v) => v.to_vec(),
        }
    }

    fn close(&mut self) {
        if !self.mr.is_null() {
            // SAFETY: `mr` is live and closed once (nulled right after).
            unsafe { ops::close(self.mr.cast()) };
            self.mr = ptr::null_mut();
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        self.close();
    }
}

struct Inner {
    info: *mut sys::fi_info,
    fabric: *mut sys::fid_fabric,
    domain: *mut sys::fid_domain,
    av: *mut sys::fid_av,
    cq: *mut sys::fid_cq,
    ep: *mut sys::fid_ep,
    /// The provider uses virtual addresses for RMA (else offsets into the region).
    virt_addr: bool,
    /// The provider picks memory keys (else we do).
    prov_key: bool,
    name: Vec<u8>,
    peers: Mutex<HashMap<Vec<u8>, u64>>,
    next_key: AtomicU64,
    stop: AtomicBool,
    /// Receive operations posted, freed when the endpoint closes.
    posted: Mutex<Vec<usize>>,
    provider: String,
}

// SAFETY: the domain is opened with FI_THREAD_SAFE, so every provider object may be used from
// any thread at once; the raw pointers are only dereferenced through libfabric calls, and are
// freed once (in `Drop`), after the progress thread has stopped.
unsafe impl Send for Inner {}
// SAFETY: as for Send: FI_THREAD_SAFE makes concurrent calls on these objects sound.
unsafe impl Sync for Inner {}

/// An RDM endpoint with its completion queue, address vector and progress thread.
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<Inner>,
    _thread: Arc<ThreadGuard>,
}

struct ThreadGuard {
    inner: Arc<Inner>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for ThreadGuard {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        // SAFETY: the CQ is open until Inner drops, which cannot happen while we hold it.
        unsafe { ops::cq_signal(self.inner.cq) };
        if let Ok(mut t) = self.thread.lock() {
            if let Some(t) = t.take() {
                let _ = t.join();
            }
        }
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Endpoint({} {:?})",
            self.inner.provider,
            self.socket_addr()
        )
    }
}

/// Incoming messages, as the progress thread hands them over.
pub type Incoming = mpsc::Receiver<Vec<u8>>;

impl Endpoint {
    /// Opens an endpoint of `provider` ("tcp", "sockets", "verbs", ...). `bind`: the address to
    /// listen on (a data server); None picks one (a client, addressed by what it sends).
    pub fn open(provider: &str, bind: Option<SocketAddr>) -> Result<(Endpoint, Incoming)> {
        let lib = lib()?;
        let (tx, rx) = mpsc::channel(1024);
        // SAFETY: `hints` comes from fi_dupinfo(NULL) (libfabric's fi_allocinfo), so every
        // attribute struct it points to is allocated and zeroed; strings we put in it are
        // malloc'd (strdup) because fi_freeinfo frees them.
        let hints = unsafe { (lib.dupinfo)(ptr::null()) };
        if hints.is_null() {
            return Err(FabricError::NoLibrary("fi_allocinfo failed".into()));
        }
        let prov = CString::new(provider).map_err(|_| FabricError::NoProvider {
            provider: provider.into(),
        })?;
        // SAFETY: see above; all pointers dereferenced here were allocated by fi_dupinfo.
        unsafe {
            let h = &mut *hints;
            h.caps = (sys::FI_MSG | sys::FI_RMA | sys::FI_SEND | sys::FI_RECV) as u64
                | (sys::FI_READ | sys::FI_WRITE | sys::FI_REMOTE_READ | sys::FI_REMOTE_WRITE)
                    as u64;
            h.mode = sys::FI_CONTEXT | sys::FI_CONTEXT2;
            h.addr_format = sys::FI_SOCKADDR_IN;
            (*h.ep_attr).type_ = sys::fi_ep_type_FI_EP_RDM;
            (*h.domain_attr).threading = sys::fi_threading_FI_THREAD_SAFE;
            // Local buffers unregistered (FI_MR_LOCAL not offered): only memory a peer
            // reaches is registered.
            (*h.domain_attr).mr_mode =
                (sys::FI_MR_VIRT_ADDR | sys::FI_MR_ALLOCATED | sys::FI_MR_PROV_KEY) as i32;
            (*h.fabric_attr).prov_name = libc::strdup(prov.as_ptr());
        }
        let (node, service, flags) = match bind {
            Some(a) => (
                Some(CString::new(a.ip().to_string()).map_err(|_| FabricError::BadAddress)?),
                Some(CString::new(a.port().to_string()).map_err(|_| FabricError::BadAddress)?),
                sys::FI_SOURCE,
            ),
            None => (None, None, 0),
        };
        let mut info: *mut sys::fi_info = ptr::null_mut();
        // SAFETY: valid hints, optional NUL-terminated node/service, and an out pointer.
        let rc = unsafe {
            (lib.getinfo)(
                (1 << 16) | 10,
                node.as_ref().map_or(ptr::null(), |c| c.as_ptr()),
                service.as_ref().map_or(ptr::null(), |c| c.as_ptr()),
                flags,
                hints,
                &mut info,
            )
        };
        // SAFETY: hints came from fi_dupinfo and is freed once.
        unsafe { (lib.freeinfo)(hints) };
        if rc != 0 || info.is_null() {
            tracing::debug!(provider, "fi_getinfo: {}", errmsg(rc));
            return Err(FabricError::NoProvider {
                provider: provider.into(),
            });
        }
        // SAFETY: `info` is the list fi_getinfo returned; we use its first entry, keep the
        // list until Inner drops, and open each object once, closing it in Drop.
        let inner = unsafe { ops::open(lib, info, provider) };
        let inner = match inner {
            Ok(i) => Arc::new(i),
            Err(e) => {
                // SAFETY: the list is ours and not referenced by anything opened.
                unsafe { (lib.freeinfo)(info) };
                return Err(e);
            }
        };
        for _ in 0..RECV_POSTED {
            inner.post_recv(Box::new(Op {
                ctx: zeroed_ctx(),
                kind: OpKind::Recv {
                    buf: vec![0u8; RECV_SIZE].into_boxed_slice(),
                },
            }))?;
        }
        let t_inner = inner.clone();
        let thread = std::thread::Builder::new()
            .name("cfs-fabric".into())
            .spawn(move || progress(t_inner, tx))
            .map_err(|e| FabricError::Completion(e.to_string()))?;
        let guard = Arc::new(ThreadGuard {
            inner: inner.clone(),
            thread: Mutex::new(Some(thread)),
        });
        Ok((
            Endpoint {
                inner,
                _thread: guard,
            },
            rx,
        ))
    }

    pub fn provider(&self) -> &str {
        &self.inner.provider
    }

    /// This endpoint's address as peers insert it.
    pub fn name(&self) -> &[u8] {
        &self.inner.name
    }

    /// The IPv4 address and port the endpoint listens on, when its address is a sockaddr_in.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        sockaddr_in(&self.inner.name)
    }

    /// A peer from its address (as [`Endpoint::name`] gave it there), inserted once.
    pub fn peer(&self, name: &[u8]) -> Result<Peer> {
        if name.len() < 2 || name.len() > 128 {
            return Err(FabricError::BadAddress);
        }
        let mut peers = self.inner.peers.lock().map_err(|_| FabricError::Closed)?;
        if let Some(&a) = peers.get(name) {
            return Ok(Peer(a));
        }
        if peers.len() >= MAX_PEERS {
            // A bounded table: peers come back by being inserted again.
            let old: Vec<(Vec<u8>, u64)> = peers.drain().collect();
            for (_, a) in old {
                // SAFETY: `a` was returned by fi_av_insert on this AV and not removed since.
                unsafe { ops::av_remove(self.inner.av, a) };
            }
        }
        // SAFETY: the AV is open; `name` is an address of this provider's format (a peer's
        // fi_getname output, length checked above); the provider validates it.
        let a = unsafe { ops::av_insert(self.inner.av, name)? };
        peers.insert(name.to_vec(), a);
        Ok(Peer(a))
    }

    /// The peer at an IPv4 socket address (for providers addressed by sockaddr_in).
    pub fn peer_at(&self, a: SocketAddr) -> Result<Peer> {
        self.peer(&to_sockaddr_in(a)?)
    }

    /// Sends one message (at most [`RECV_SIZE`] bytes).
    pub async fn send(&self, to: Peer, msg: Vec<u8>) -> Result<()> {
        if msg.len() > RECV_SIZE {
            return Err(FabricError::Completion("message too large".into()));
        }
        let (tx, rx) = oneshot::channel();
        // Addresses as integers: nothing !Send is held across the awaits below.
        let (ptr, len) = (msg.as_ptr() as usize, msg.len());
        let op = Box::new(Op {
            ctx: zeroed_ctx(),
            kind: OpKind::Send {
                _buf: msg,
                done: tx,
            },
        });
        let ctx = Box::into_raw(op) as usize;
        // SAFETY: the buffer is owned by the Op (heap memory that does not move when the Vec
        // does) until its completion frees the Op; on a failed post the Op is reclaimed here.
        self.post(ctx, "fi_send", || unsafe {
            ops::send(
                self.inner.ep,
                ptr as *const u8,
                len,
                to.0,
                ctx as *mut c_void,
            )
        })
        .await?;
        rx.await.map_err(|_| FabricError::Closed)?.map(|_| ())
    }

    /// RMA read of `remote` (a peer's registered memory) into a new buffer of its length.
    pub async fn read(&self, from: Peer, remote: RemoteBuf) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; remote.len as usize];
        let (ptr, len) = (buf.as_mut_ptr() as usize, buf.len());
        let (tx, rx) = oneshot::channel();
        let ctx = Box::into_raw(Box::new(Op {
            ctx: zeroed_ctx(),
            kind: OpKind::Rma {
                keep: Keep::Owned(buf),
                done: tx,
            },
        })) as usize;
        // SAFETY: the destination buffer is owned by the Op (its heap memory does not move
        // with the Vec) until the completion hands it back; see `send`.
        self.post(ctx, "fi_read", || unsafe {
            let (p, c) = (ptr as *mut u8, ctx as *mut c_void);
            ops::read(self.inner.ep, p, len, from.0, remote.addr, remote.key, c)
        })
        .await?;
        match rx.await.map_err(|_| FabricError::Closed)?? {
            Some(b) => Ok(b),
            None => Err(FabricError::Completion(
                "RMA read returned no buffer".into(),
            )),
        }
    }

    /// RMA write of `data` into `remote` (a peer's registered memory).
    pub async fn write(&self, to: Peer, data: Vec<u8>, remote: RemoteBuf) -> Result<()> {
        if data.len() > remote.len as usize {
            return Err(FabricError::Completion(
                "RMA write past the peer's buffer".into(),
            ));
        }
        let (ptr, len) = (data.as_ptr() as usize, data.len());
        let (tx, rx) = oneshot::channel();
        let ctx = Box::into_raw(Box::new(Op {
            ctx: zeroed_ctx(),
            kind: OpKind::Rma {
                keep: Keep::Owned(data),
                done: tx,
            },
        })) as usize;
        // SAFETY: the source buffer is owned by the Op until completion; see `send`.
        self.post(ctx, "fi_write", || unsafe {
            let (p, c) = (ptr as *const u8, ctx as *mut c_void);
            ops::write(self.inner.ep, p, len, to.0, remote.addr, remote.key, c)
        })
        .await?;
        rx.await.map_err(|_| FabricError::Closed)?.map(|_| ())
    }

    /// Registers `buf` for peers to read (`remote_write` false) or write into.
    pub fn register(&self, buf: Vec<u8>, remote_write: bool) -> Result<Region> {
        self.register_mem(Mem::Owned(buf), remote_write)
    }

    /// Registers a shared buffer for peers to read (no copy: the bytes a writer keeps until
    /// they are committed are the bytes the peer reads).
    pub fn register_shared(&self, buf: Arc<Vec<u8>>) -> Result<Region> {
        self.register_mem(Mem::Shared(buf), false)
    }

    fn register_mem(&self, mem: Mem, remote_write: bool) -> Result<Region> {
        let access = if remote_write {
            sys::FI_REMOTE_WRITE
        } else {
            sys::FI_REMOTE_READ
        } as u64;
        // Keys we choose are unpredictable: another peer of this fabric cannot guess one.
        let key = if self.inner.prov_key {
            0
        } else {
            self.inner
                .next_key
                .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
        };
        let (ptr, len) = (mem.bytes().as_ptr(), mem.bytes().len());
        // SAFETY: the domain is open; the region covers exactly the buffer's heap memory,
        // which the Region owns (and never reallocates; a shared one is never written while
        // registered: it is registered read-only) until it deregisters in Drop.
        let mr = unsafe { ops::mr_reg(self.inner.domain, ptr, len, access, key)? };
        // SAFETY: `mr` is the live registration just made.
        let key = unsafe { ops::mr_key(mr) };
        let addr = if self.inner.virt_addr { ptr as u64 } else { 0 };
        Ok(Region {
            _ep: self.inner.clone(),
            mr,
            mem,
            key,
            addr,
        })
    }

    /// Posts an operation, again while the provider answers FI_EAGAIN (a connection being
    /// set up, a full queue: the progress thread frees room), for at most [`POST_PATIENCE`].
    async fn post(&self, ctx: usize, call: &'static str, f: impl Fn() -> isize) -> Result<()> {
        let deadline = std::time::Instant::now() + POST_PATIENCE;
        let mut pause = Duration::from_micros(20);
        loop {
            let rc = f();
            if rc == 0 {
                return Ok(());
            }
            if rc != -(sys::FI_EAGAIN as isize) || std::time::Instant::now() > deadline {
                // SAFETY: the post failed, so the provider never took `ctx` (a Box<Op> leaked
                // by the caller); we own it again.
                drop(unsafe { Box::from_raw(ctx as *mut Op) });
                return check(call, rc as i64);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(5));
        }
    }
}

fn zeroed_ctx() -> sys::fi_context2 {
    sys::fi_context2 {
        internal: [ptr::null_mut(); 8],
    }
}

/// `struct sockaddr_in` bytes → the socket address.
pub fn sockaddr_in(b: &[u8]) -> Option<SocketAddr> {
    if b.len() < 8 || u16::from_ne_bytes([b[0], b[1]]) != libc::AF_INET as u16 {
        return None;
    }
    let port = u16::from_be_bytes([b[2], b[3]]);
    let ip = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
    Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
}

/// A socket address as `struct sockaddr_in` bytes (16).
pub fn to_sockaddr_in(a: SocketAddr) -> Result<Vec<u8>> {
    let SocketAddr::V4(a) = a else {
        return Err(FabricError::BadAddress);
    };
    let mut b = vec![0u8; 16];
    b[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
    b[2..4].copy_from_slice(&a.port().to_be_bytes());
    b[4..8].copy_from_slice(&a.ip().octets());
    Ok(b)
}

fn progress(inner: Arc<Inner>, incoming: mpsc::Sender<Vec<u8>>) {
    let mut entries = [sys::fi_cq_msg_entry {
        op_context: ptr::null_mut(),
        flags: 0,
        len: 0,
    }; 32];
    while !inner.stop.load(Ordering::SeqCst) {
        // SAFETY: the CQ is open while `inner` lives; the array holds 32 msg-format entries.
        let n = unsafe { ops::cq_sread(inner.cq, entries.as_mut_ptr(), entries.len(), 100) };
        if n > 0 {
            for e in &entries[..n as usize] {
                complete(&inner, e.op_context, e.len, Ok(()), &incoming);
            }
            continue;
        }
        if n == -(sys::FI_EAVAIL as isize) {
            // SAFETY: an error entry is waiting; read it into a zeroed entry.
            let (ctx, err) = unsafe { ops::cq_readerr(inner.cq) };
            if !ctx.is_null() {
                complete(
                    &inner,
                    ctx,
                    0,
                    Err(FabricError::Completion(errmsg(err))),
                    &incoming,
                );
            }
            continue;
        }
        // -FI_EAGAIN: timed out or signalled; anything else: keep serving, but not in a spin.
        if n != -(sys::FI_EAGAIN as isize) && n != -(libc::EINTR as isize) {
            tracing::debug!("fi_cq_sread: {}", errmsg(n as i32));
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// One completion: the Op's owner is told, a receive buffer's message delivered and posted
/// again.
fn complete(
    inner: &Inner,
    ctx: *mut c_void,
    len: usize,
    r: Result<()>,
    incoming: &mpsc::Sender<Vec<u8>>,
) {
    // SAFETY: every context we post is a Box<Op> leaked with Box::into_raw, and the provider
    // reports each exactly once; we take ownership back here.
    let op = unsafe { Box::from_raw(ctx.cast::<Op>()) };
    let Op { kind, .. } = *op;
    match kind {
        OpKind::Send { done, .. } => {
            let _ = done.send(r.map(|_| None));
        }
        OpKind::Rma { keep, done } => {
            let Keep::Owned(b) = keep;
            let _ = done.send(r.map(|_| Some(b)));
        }
        OpKind::Recv { buf } => {
            if let Ok(mut p) = inner.posted.lock() {
                p.retain(|&c| c != ctx as usize);
            }
            if r.is_ok() && !inner.stop.load(Ordering::SeqCst) {
                let msg = buf[..len.min(buf.len())].to_vec();
                if incoming.try_send(msg).is_err() {
                    tracing::warn!("fabric: receiver full or gone; message dropped");
                }
            }
            if !inner.stop.load(Ordering::SeqCst) {
                let op = Box::new(Op {
                    ctx: zeroed_ctx(),
                    kind: OpKind::Recv { buf },
                });
                if let Err(e) = inner.post_recv(op) {
                    tracing::warn!("fabric: cannot post a receive: {e}");
                }
            }
        }
    }
}

impl Inner {
    fn post_recv(&self, op: Box<Op>) -> Result<()> {
        let OpKind::Recv { buf } = &op.kind else {
            return Err(FabricError::Completion("not a receive".into()));
        };
        let (ptr, len) = (buf.as_ptr() as *mut u8, buf.len());
        let ctx = Box::into_raw(op);
        if let Ok(mut p) = self.posted.lock() {
            p.push(ctx as usize);
        }
        // SAFETY: the buffer is owned by the Op until its completion (or until Drop frees the
        // Ops still posted, after the endpoint that could write them is closed).
        let rc = unsafe { ops::recv(self.ep, ptr, len, ctx.cast()) };
        if rc != 0 {
            if let Ok(mut p) = self.posted.lock() {
                p.retain(|&c| c != ctx as usize);
            }
            // SAFETY: the post failed, so the provider never took `ctx`.
            drop(unsafe { Box::from_raw(ctx) });
            return check("fi_recv", rc as i64);
        }
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // SAFETY: the progress thread has stopped (ThreadGuard joined it before the last
        // reference went); objects are closed children first, each once; the receive Ops
        // still posted are freed only after the endpoint that owned them is closed.
        unsafe {
            ops::close(self.ep.cast());
            ops::close(self.cq.cast());
            ops::close(self.av.cast());
            ops::close(self.domain.cast());
            ops::close(self.fabric.cast());
            if let Ok(l) = lib() {
                (l.freeinfo)(self.info);
            }
            if let Ok(p) = self.posted.lock() {
                for &c in p.iter() {
                    drop(Box::from_raw(c as *mut Op));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_in_round_trips() {
        let a: SocketAddr = "127.0.0.1:22050".parse().unwrap();
        assert_eq!(sockaddr_in(&to_sockaddr_in(a).unwrap()), Some(a));
        assert!(to_sockaddr_in("[::1]:1".parse().unwrap()).is_err());
        assert_eq!(sockaddr_in(&[0; 3]), None);
    }
}
