//! Host-side rendezvous for the two-client scenario. The guests must not coordinate through the
//! NFS mount, whose attribute and lookup caches are exactly what the scenario examines, so each
//! step is posted to / awaited from this tiny line protocol on host loopback (guest: 10.0.2.2).
//!   "post NAME T\n" -> "ok\n"
//!   "wait NAME T\n" -> "ok\n", "abort\n" once anyone posted "abort", or "timeout\n" after T s
//!   "get PREFIX T\n" -> "ok NAME\n" once a name starting with PREFIX is posted (a fact the
//!                       host passes to the guest, as "port:20049"), else as "wait"

use crate::error::{IoContext, Result};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

type Board = Arc<(Mutex<HashSet<String>>, Condvar)>;

pub struct Rendezvous {
    pub port: u16,
    board: Board,
}

/// What an in-process wait on the board saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    Posted,
    /// "abort" was posted (a failed guest, or the harness after the guest exited)
    Aborted,
    TimedOut,
}

/// Waits until `name` (or "abort") is on the board, at most `timeout`.
fn wait_on(board: &Board, name: &str, timeout: Duration) -> Seen {
    wait_for(board, timeout, |set| set.contains(name).then(String::new)).0
}

/// Waits until a name starting with `prefix` (or "abort") is on the board, at most `timeout`;
/// the name, when one came.
fn wait_prefix(board: &Board, prefix: &str, timeout: Duration) -> (Seen, Option<String>) {
    wait_for(board, timeout, |set| {
        set.iter().find(|n| n.starts_with(prefix)).cloned()
    })
}

/// Waits until `found` finds something on the board (or "abort" is there), at most `timeout`.
fn wait_for(
    board: &Board,
    timeout: Duration,
    found: impl Fn(&HashSet<String>) -> Option<String>,
) -> (Seen, Option<String>) {
    let (lock, cv) = &**board;
    let deadline = Instant::now() + timeout;
    let Ok(mut set) = lock.lock() else {
        return (Seen::Aborted, None);
    };
    loop {
        if let Some(n) = found(&set) {
            return (Seen::Posted, Some(n));
        }
        // a guest that failed fatally posts "abort" so its peer stops waiting
        if set.contains("abort") {
            return (Seen::Aborted, None);
        }
        let now = Instant::now();
        if now >= deadline {
            return (Seen::TimedOut, None);
        }
        match cv.wait_timeout(set, deadline - now) {
            Ok((s, _)) => set = s,
            Err(_) => return (Seen::Aborted, None),
        }
    }
}

fn post_on(board: &Board, name: &str) {
    if let Ok(mut set) = board.0.lock() {
        set.insert(name.to_owned());
    }
    board.1.notify_all();
}

impl Rendezvous {
    /// Listens until the process exits; one per two-client run (threads are cheap and detached).
    pub fn start() -> Result<Rendezvous> {
        let listener = TcpListener::bind("127.0.0.1:0").ctx(|| "bind rendezvous".into())?;
        let port = listener
            .local_addr()
            .ctx(|| "rendezvous addr".into())?
            .port();
        let board: Board = Arc::new((Mutex::new(HashSet::new()), Condvar::new()));
        let shared = board.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let b = board.clone();
                std::thread::spawn(move || serve(conn, b));
            }
        });
        Ok(Rendezvous {
            port,
            board: shared,
        })
    }

    /// The host's side of a step (the harness's own host operations).
    pub fn post(&self, name: &str) {
        post_on(&self.board, name);
    }

    pub fn wait(&self, name: &str, timeout: Duration) -> Seen {
        wait_on(&self.board, name, timeout)
    }

    /// A posted name starting with `prefix` (a guest passes facts the host cannot see, such
    /// as its files' inode numbers, as a name: "files:big=123/9449817,...").
    pub fn posted_with(&self, prefix: &str) -> Option<String> {
        let set = self.board.0.lock().ok()?;
        set.iter().find(|n| n.starts_with(prefix)).cloned()
    }
}

fn serve(conn: TcpStream, board: Board) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut line = String::new();
    let Ok(reader) = conn.try_clone() else { return };
    if BufReader::new(reader).read_line(&mut line).is_err() {
        return;
    }
    let mut w = line.split_whitespace();
    let (Some(op), Some(name)) = (w.next(), w.next()) else {
        return;
    };
    let secs: u64 = w
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or(120)
        .min(600);
    let answer = |seen| match seen {
        Seen::Posted => "ok\n".to_string(),
        Seen::Aborted => "abort\n".to_string(),
        Seen::TimedOut => "timeout\n".to_string(),
    };
    let reply = match op {
        "post" => {
            post_on(&board, name);
            "ok\n".to_string()
        }
        "wait" => answer(wait_on(&board, name, Duration::from_secs(secs))),
        "get" => match wait_prefix(&board, name, Duration::from_secs(secs)) {
            (Seen::Posted, Some(n)) => format!("ok {n}\n"),
            (seen, _) => answer(seen),
        },
        _ => "error unknown op\n".to_string(),
    };
    let mut conn = conn;
    let _ = conn.write_all(reply.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn ask(port: u16, msg: &str) -> String {
        let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        c.write_all(msg.as_bytes()).expect("write");
        let mut s = String::new();
        c.read_to_string(&mut s).expect("read");
        s
    }

    #[test]
    fn wait_returns_after_post_and_times_out_otherwise() {
        let r = Rendezvous::start().expect("start");
        let p = r.port;
        let waiter = std::thread::spawn(move || ask(p, "wait step1 10\n"));
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(ask(p, "post step1 10\n"), "ok\n");
        assert_eq!(waiter.join().expect("join"), "ok\n");
        assert_eq!(ask(p, "wait never 1\n"), "timeout\n");
        assert_eq!(ask(p, "post abort 1\n"), "ok\n");
        assert_eq!(ask(p, "wait never 30\n"), "abort\n");
        assert_eq!(ask(p, "wait step1 30\n"), "ok\n");
    }

    #[test]
    fn get_answers_the_first_name_with_the_prefix_once_posted() {
        let r = Rendezvous::start().expect("start");
        let p = r.port;
        let guest = std::thread::spawn(move || ask(p, "get port: 10\n"));
        std::thread::sleep(Duration::from_millis(100));
        r.post("portable");
        r.post("port:20049");
        assert_eq!(guest.join().expect("join"), "ok port:20049\n");
        assert_eq!(ask(p, "get nothing: 1\n"), "timeout\n");
    }

    #[test]
    fn host_side_post_and_wait_meet_the_guest_protocol() {
        let r = Rendezvous::start().expect("start");
        let p = r.port;
        let guest = std::thread::spawn(move || ask(p, "wait killed 10\n"));
        std::thread::sleep(Duration::from_millis(100));
        r.post("killed");
        assert_eq!(guest.join().expect("join"), "ok\n");
        assert_eq!(ask(p, "post half 5\n"), "ok\n");
        assert_eq!(r.wait("half", Duration::from_secs(5)), Seen::Posted);
        assert_eq!(r.wait("never", Duration::from_millis(50)), Seen::TimedOut);
        r.post("abort");
        assert_eq!(r.wait("never", Duration::from_secs(5)), Seen::Aborted);
    }
}
