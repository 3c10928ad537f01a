//! A TCP proxy in front of the S3 server that misbehaves on request: added latency, `503 Slow
//! Down` answers, connection resets, a black hole (accepts, reads, never answers).
//!
//! It reads each request's head, so it can count requests and answer for the store. Every
//! request it forwards goes upstream on a fresh connection with `Connection: close`, so the
//! client's connection ends with it: one request per connection, no pooled connection carrying
//! requests the proxy did not see. A request is "in flight" from its head arriving to the
//! store's answer head coming back, a span that lies inside the client's own.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// What the proxy does to a request instead of forwarding it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer `HTTP/1.1 503 Slow Down` with S3's `SlowDown` error body.
    SlowDown,
    /// Reset the connection (RST) without an answer.
    Reset,
    /// Keep the connection, read everything, answer nothing.
    BlackHole,
}

#[derive(Default)]
struct Faults {
    next: Option<(Fault, usize)>,
    always: Option<Fault>,
    delay: Duration,
}

struct State {
    upstream: SocketAddr,
    faults: Mutex<Faults>,
    requests: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl State {
    /// The fault for the request that just arrived, and the delay before forwarding it.
    fn decide(&self) -> (Option<Fault>, Duration) {
        let mut f = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        let mut fault = f.always;
        if fault.is_none() {
            if let Some((kind, left)) = f.next.as_mut() {
                fault = Some(*kind);
                *left -= 1;
                if *left == 0 {
                    f.next = None;
                }
            }
        }
        (fault, f.delay)
    }
}

/// A proxy listening on 127.0.0.1; stops (with every connection) when dropped.
pub struct FaultProxy {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        Self::start_at(upstream, 0).await
    }

    /// As `start`, listening on 127.0.0.1:`port` (0: any free port), so a test can keep its
    /// ports below the ephemeral range.
    pub async fn start_at(upstream: SocketAddr, port: u16) -> FaultProxy {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(State {
            upstream,
            faults: Mutex::new(Faults::default()),
            requests: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            // Connection tasks live in the set, so aborting this task ends them all.
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        if let Ok((sock, _)) = accepted {
                            conns.spawn(serve(sock, st.clone()));
                        }
                    }
                    Some(_) = conns.join_next() => {}
                }
            }
        });
        FaultProxy { addr, state, task }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.state.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next `n` requests get `fault`; then requests pass again.
    pub fn fail_next(&self, n: usize, fault: Fault) {
        self.faults().next = (n > 0).then_some((fault, n));
    }

    /// Every request gets `fault` until `clear`.
    pub fn fail_all(&self, fault: Fault) {
        self.faults().always = Some(fault);
    }

    pub fn clear(&self) {
        *self.faults() = Faults::default();
    }

    /// Each forwarded request waits `d` before it goes upstream.
    pub fn set_delay(&self, d: Duration) {
        self.faults().delay = d;
    }

    /// Request heads seen, faulted or not.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// The most requests forwarded and not yet answered at any one time.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Counts a request in flight until dropped or released.
struct InFlight(Option<Arc<State>>);

impl InFlight {
    fn new(st: &Arc<State>) -> InFlight {
        let now = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        st.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(Some(st.clone()))
    }

    fn release(&mut self) {
        if let Some(st) = self.0.take() {
            st.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.release();
    }
}

const MAX_HEAD: usize = 64 << 10;

async fn serve(mut client: TcpStream, st: Arc<State>) {
    let mut buf = Vec::new();
    let Some(head_len) = read_head(&mut client, &mut buf).await else {
        return;
    };
    st.requests.fetch_add(1, Ordering::SeqCst);
    let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    let (fault, delay) = st.decide();
    match fault {
        Some(Fault::BlackHole) => {
            let mut sink = vec![0u8; 64 << 10];
            while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
        }
        Some(Fault::Reset) => {
            let _ = client.set_zero_linger();
        }
        Some(Fault::SlowDown) => {
            // Read the body first, so the client is not cut off mid-upload and sees the 503.
            if header(&head, "expect").is_none() {
                let len: usize = header(&head, "content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let mut left = len.saturating_sub(buf.len() - head_len);
                let mut sink = vec![0u8; 64 << 10];
                while left > 0 {
                    match client.read(&mut sink[..left.min(64 << 10)]).await {
                        Ok(n) if n > 0 => left -= n,
                        _ => return,
                    }
                }
            }
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
                        <Message>Please reduce your request rate.</Message></Error>";
            let answer = format!(
                "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = client.write_all(answer.as_bytes()).await;
            let _ = client.shutdown().await;
        }
        None => {
            let mut flight = InFlight::new(&st);
            tokio::time::sleep(delay).await;
            let _ = forward(client, &st, &head, &buf[head_len..], &mut flight).await;
        }
    }
}

/// Sends the request upstream with `Connection: close` and copies both ways until the store
/// closes; releases `flight` when the answer's head comes back.
async fn forward(
    client: TcpStream,
    st: &State,
    head: &str,
    body_start: &[u8],
    flight: &mut InFlight,
) -> std::io::Result<()> {
    let mut up = TcpStream::connect(st.upstream).await?;
    let mut rewritten = String::with_capacity(head.len() + 20);
    for line in head.trim_end_matches("\r\n").split("\r\n") {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            rewritten.push_str(line);
            rewritten.push_str("\r\n");
        }
    }
    rewritten.push_str("Connection: close\r\n\r\n");
    up.write_all(rewritten.as_bytes()).await?;
    up.write_all(body_start).await?;
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = up.into_split();
    let upload = async {
        let _ = tokio::io::copy(&mut cr, &mut uw).await;
        std::future::pending::<()>().await
    };
    let download = async {
        answer_head(&mut ur, &mut cw, flight).await?;
        tokio::io::copy(&mut ur, &mut cw).await?;
        cw.shutdown().await
    };
    tokio::select! {
        r = download => r,
        _ = upload => Ok(()),
    }
}

/// Copies the store's answer up to and including its final (non-1xx) head.
async fn answer_head(
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
    flight: &mut InFlight,
) -> std::io::Result<()> {
    let mut seen = Vec::new();
    let mut chunk = vec![0u8; 16 << 10];
    loop {
        let n = from.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        seen.extend_from_slice(&chunk[..n]);
        // Released before the client can see the answer, so no new request of the client's
        // can arrive while this one still counts.
        let mut done = false;
        while let Some(end) = find(&seen, b"\r\n\r\n") {
            let informational = seen.starts_with(b"HTTP/1.1 1") || seen.starts_with(b"HTTP/1.0 1");
            if !informational {
                flight.release();
                done = true;
                break;
            }
            seen.drain(..end + 4);
        }
        to.write_all(&chunk[..n]).await?;
        if done {
            return Ok(());
        }
    }
}

/// Reads until the end of a request head; its length, or `None` if the client went away.
async fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            return Some(end + 4);
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        match s.read(&mut chunk).await {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
