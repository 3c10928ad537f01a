//! A full file system (issue 11 item 7): data writes get NFS4ERR_NOSPC before they reach the
//! space kept for metadata, and even at 0 bytes free (filled by someone else) clients can still
//! mount, list, read and remove, and a removal makes room for writes again. Before, at 0 bytes
//! free every new client got NFS4ERR_SERVERFAULT at CREATE_SESSION ("cannot record client for
//! reclaim: ENOSPC"), so nobody could delete anything.
//!
//! The test mounts its own small tmpfs (it runs as root, as CI does) and unmounts it at the end.
use crate::common;
use common::*;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `cfs server` with its data on `data` and its log outside it (a full disk would eat it).
struct Proc {
    child: Child,
    addr: SocketAddr,
}

impl Proc {
    fn start(data: &Path, log: &Path) -> Proc {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut child = Command::new(BIN)
            .arg("server")
            .arg("--data")
            .arg(data)
            .arg("--listen")
            .arg(addr.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(log).unwrap()))
            .spawn()
            .expect("spawn cfs server");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(st)) = child.try_wait() {
                panic!("cfs server exited early ({st})");
            }
            assert!(Instant::now() < deadline, "cfs server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Proc { child, addr }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_full_disk_refuses_data_but_clients_can_still_mount_list_read_and_remove() {
    let t = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&t.path().join("fs"), "128m");
    let log = t.path().join("server.log");
    let srv = Proc::start(&fs.0.join("data"), &log);
    let server = srv.addr.to_string();
    let cmd = |args: &[&str]| {
        let mut a = vec![args[0], "--server", server.as_str()];
        a.extend_from_slice(&args[1..]);
        cfs(t.path(), &a)
    };
    let content = random_bytes(4 << 20, 7);
    let local = t.path().join("f4");
    std::fs::write(&local, &content).unwrap();
    let local = local.to_str().unwrap();

    // Data until the server refuses it: NOSPC, while space is still left for metadata.
    let mut stored = 0;
    let mut refused = None;
    for i in 0..40 {
        let out = cmd(&["put", local, &format!("/f{i}")]);
        if out.ok() {
            stored += 1;
            continue;
        }
        refused = Some(out.stderr);
        break;
    }
    let refused = refused.expect("128 MiB took 160 MiB of data");
    assert!(
        refused.contains("NFS4ERR_NOSPC"),
        "a write past the reserve: {refused}"
    );
    assert!(stored >= 10, "only {stored} files of 4 MiB fit in 128 MiB");

    // Someone else takes the last byte (`fill` writes until ENOSPC). The server gives back
    // part of its reserve when it notices, or when a metadata write meets ENOSPC first.
    let filler = fs.fill("filler", 0);

    // New clients mount (EXCHANGE_ID, CREATE_SESSION), list, read and remove.
    let ls = cmd(&["ls", "/"]);
    assert!(ls.ok(), "ls at 0 bytes free: {}", ls.stderr);
    assert!(ls.text().lines().any(|l| l.trim() == "f0"), "{}", ls.text());
    let cat = cmd(&["cat", "/f1"]);
    assert!(cat.ok(), "cat at 0 bytes free: {}", cat.stderr);
    assert_eq!(digest(&cat.stdout), digest(&content));
    let put = cmd(&["put", local, "/more"]);
    assert!(
        !put.ok() && put.stderr.contains("NFS4ERR_NOSPC"),
        "a write at 0 bytes free: {}",
        put.stderr
    );
    for i in 0..stored {
        let rm = cmd(&["rm", &format!("/f{i}")]);
        assert!(rm.ok(), "rm /f{i} at 0 bytes free: {}", rm.stderr);
    }
    let ls = cmd(&["ls", "/"]);
    assert!(ls.ok(), "{}", ls.stderr);
    assert!(
        !ls.text().lines().any(|l| l.trim() == "f0"),
        "{}",
        ls.text()
    );

    // The removals freed the data (the reaper runs in the background): writes work again.
    std::fs::remove_file(filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let put = cmd(&["put", local, "/again"]);
        if put.ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writes still refused after the removals: {}",
            put.stderr
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let back = cmd(&["cat", "/again"]);
    assert_eq!(digest(&back.stdout), digest(&content));
    drop(srv);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !text.contains("cannot record client") && !text.contains("namespace writer stops"),
        "{text}"
    );
}
