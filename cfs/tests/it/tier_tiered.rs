//! Tiered mode (issue 45, item 3) against a real S3 server (moto, a child process) and a real
//! `cfs server`: only files left alone (unchanged and unused) for `tier_after_seconds` go to
//! the bucket; a file kept in use stays on flash only until it is left alone, and one written
//! after its upload waits again. Cache mode, the default, copies both (as before).
use std::time::{Duration, Instant};

use client::{Client, ClientConfig};
use proto::nfs4::OPEN4_SHARE_ACCESS_READ;

use crate::common::ec::wait_for;
use crate::common::{free_port, Server};
use crate::tier_cache::{bucket, data, from_bucket, put, rt, s3, tier_toml};
use crate::tier_evict::tier_status;

/// `tier_after_seconds` in these tests.
const TIER_AFTER: u64 = 3;

/// Opens `path`, reads a little of it and closes it, every 500 ms until `until` says stop
/// (asked between uses, 90 s at most): a reader the MDS sees (OPEN, READ, CLOSE). Returns how
/// long it kept at it and when the last use ended: an idle file's age counts from there, not
/// from the return, which comes after `until`'s bucket listing (seconds on a loaded machine).
fn keep_busy(
    rt: &tokio::runtime::Runtime,
    srv: &Server,
    path: &str,
    mut until: impl FnMut() -> bool,
) -> (Duration, Instant) {
    let t = Instant::now();
    let mut last_use = t;
    let c = rt
        .block_on(Client::connect(ClientConfig::new(srv.addr)))
        .expect("connect");
    while !until() {
        assert!(t.elapsed() < Duration::from_secs(90), "busy for 90 s");
        rt.block_on(async {
            let f = c
                .open_path(path, OPEN4_SHARE_ACCESS_READ, None)
                .await
                .expect("open");
            c.read(&f, 0, 4096).await.expect("read");
            c.close(&f).await.expect("close");
        });
        last_use = Instant::now();
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = rt.block_on(c.shutdown());
    (t.elapsed(), last_use)
}

/// A server uploading through moto in `mode`, with a busy and an idle file written: the
/// runtime, moto and its store, the server, and the files (path, ino, bytes).
struct Setup {
    rt: tokio::runtime::Runtime,
    _moto: tier::testing::moto::Moto,
    _proxy: tier::testing::proxy::FaultProxy,
    store: tier::Store,
    srv: Server,
    _dir: tempfile::TempDir,
    busy: (u64, Vec<u8>),
    idle: (u64, Vec<u8>),
}

fn setup(mode: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (moto, proxy, store) = s3(&rt);
    let tiered = if mode == "tiered" {
        format!("tier_after_seconds = {TIER_AFTER}\n")
    } else {
        String::new()
    };
    // Flash of its own size: the host disk's fullness must not evict (and restore) the files.
    let config = format!(
        "data = {:?}\n{}mode = \"{mode}\"\n{tiered}flash_capacity_mib = 4096\n\
         [admin]\nlisten = \"127.0.0.1:{}\"\n",
        dir.path().join("data"),
        tier_toml(&proxy.endpoint()),
        free_port()
    );
    let srv = Server::start(dir.path(), Some(&config));
    let busy = data(1_500_000, 81);
    let idle = data(1_200_000, 82);
    let busy = (put(&rt, srv.addr, "/busy", &busy), busy);
    let idle = (put(&rt, srv.addr, "/idle", &idle), idle);
    Setup {
        rt,
        _moto: moto,
        _proxy: proxy,
        store,
        srv,
        _dir: dir,
        busy,
        idle,
    }
}

impl Setup {
    fn in_bucket(&self, (ino, d): &(u64, Vec<u8>)) -> bool {
        from_bucket(&bucket(&self.rt, &self.store), *ino, d.len()).as_deref() == Some(&d[..])
    }

    fn objects_of(&self, ino: u64) -> usize {
        bucket(&self.rt, &self.store)
            .keys()
            .filter(|k| k.0 == ino)
            .count()
    }

    fn status(&self) -> serde_json::Value {
        tier_status(self.srv.config.as_deref().expect("config"))
    }
}

#[test]
fn in_tiered_mode_a_file_in_use_stays_on_flash_while_an_idle_one_goes_to_the_bucket() {
    let s = setup("tiered");
    // Read every 500 ms for three times `tier_after` and until the idle file is uploaded.
    let started = Instant::now();
    let (busy_for, last_use) = keep_busy(&s.rt, &s.srv, "/busy", || {
        started.elapsed() > Duration::from_secs(3 * TIER_AFTER) && s.in_bucket(&s.idle)
    });
    eprintln!("busy file read for {busy_for:?}; the idle one uploaded meanwhile");
    assert_eq!(
        s.objects_of(s.busy.0),
        0,
        "a file read every 500 ms is not uploaded with tier_after_seconds = {TIER_AFTER}"
    );
    let t = s.status();
    assert_eq!(t["mode"], "tiered", "{t}");
    assert!(t["flash_only_files"].as_u64() >= Some(1), "{t}");
    assert_eq!(t["evicted_files"], 0, "{t}");

    // Left alone, it ages and goes too.
    let took = wait_for(30, "the busy file in the bucket once left alone", || {
        s.in_bucket(&s.busy)
    });
    let idle_for = last_use.elapsed();
    assert!(
        idle_for >= Duration::from_secs(TIER_AFTER - 1),
        "not before tier_after: {idle_for:?} after its last use ({took:?} of waiting)"
    );

    // Written again, the idle file is on flash only (its bucket copy stale, counting for
    // nothing) until it ages again; then its new bytes go.
    let again = data(1_200_000, 83);
    let ino = put(&s.rt, s.srv.addr, "/idle", &again);
    assert_eq!(ino, s.idle.0);
    let written = Instant::now();
    let t = s.status();
    assert!(t["flash_only_files"].as_u64() >= Some(1), "{t}");
    assert!(s.in_bucket(&s.idle), "the old copy stays until replaced");
    let took = wait_for(30, "the rewritten file's new bytes in the bucket", || {
        s.in_bucket(&(ino, again.clone()))
    });
    let aged = written.elapsed();
    assert!(
        aged >= Duration::from_secs(TIER_AFTER),
        "uploaded again only after tier_after: {aged:?} ({took:?})"
    );
    wait_for(10, "nothing queued or kept on flash", || {
        let t = s.status();
        t["queued_files"] == 0 && t["flash_only_files"] == 0
    });
}

#[test]
fn in_cache_mode_a_file_in_use_is_uploaded_like_an_idle_one() {
    let s = setup("cache");
    let (busy_for, _) = keep_busy(&s.rt, &s.srv, "/busy", || {
        s.in_bucket(&s.busy) && s.in_bucket(&s.idle)
    });
    eprintln!("cache mode: both files uploaded while one was read, after {busy_for:?}");
    let t = s.status();
    assert_eq!(t["mode"], "cache", "{t}");
    assert_eq!(t["flash_only_files"], 0, "{t}");
}
