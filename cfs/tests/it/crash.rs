//! Crash safety: `kill -9` the server in the middle of a data and metadata workload, restart
//! it on the same data directory, and check that everything it acknowledged is still there;
//! then check that a client holding an open and a lock can reclaim them in the grace period.
use crate::common;
use client::transfer::TransferOptions;
use client::{Client, ClientConfig, CreateMode, Error, LockKind, Nfsstat4, SetAttrs, StableHow4};
use common::*;
use proto::nfs4::{OPEN4_SHARE_ACCESS_BOTH, OPEN4_SHARE_ACCESS_READ};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Small deterministic generator for the workload's choices.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A value the server acknowledged, or, for the operation in flight when it died, either the
/// old or the new one.
#[derive(Debug, Clone)]
enum Known<T> {
    Is(T),
    Either(T, T),
}

#[derive(Debug, Clone)]
struct FileModel {
    /// Every WRITE to the file writes these bytes at their own offsets.
    planned: Arc<Vec<u8>>,
    chunk: usize,
    /// Chunks the server acknowledged as stable (FILE_SYNC reply, or COMMIT with the same
    /// verifier as the WRITEs).
    acked: Vec<bool>,
    mode: Known<u32>,
}

#[derive(Debug, Clone)]
enum Entry {
    Dir,
    File(FileModel),
}

type Model = BTreeMap<String, Known<Option<Entry>>>;

/// What the workers learned before the server died; shared so it survives their failure.
#[derive(Default)]
struct Ledger {
    model: Model,
    /// Operations acknowledged, for the report.
    acks: usize,
    /// The first failure, with when it happened: failures before the kill are bugs.
    first_error: Option<(Instant, String)>,
}

type Shared = Arc<Mutex<Ledger>>;

fn set(l: &Shared, path: &str, v: Known<Option<Entry>>) {
    let mut g = l.lock().unwrap();
    g.model.insert(path.to_string(), v);
}

fn ack(l: &Shared) {
    l.lock().unwrap().acks += 1;
}

fn current(l: &Shared, path: &str) -> Option<Entry> {
    match l.lock().unwrap().model.get(path) {
        Some(Known::Is(e)) => e.clone(),
        _ => None,
    }
}

/// Writes a whole new file: OPEN(GUARDED create), WRITEs with several in flight, COMMIT for
/// UNSTABLE, CLOSE. Each chunk counts as acknowledged only once the server said it is stable.
/// A file a worker is about to write.
struct NewFile<'a> {
    path: &'a str,
    name: &'a str,
    size: usize,
    stable: StableHow4,
    seed: u64,
}

async fn write_file(
    c: &Client,
    l: &Shared,
    dir: &client::NfsFh4,
    nf: NewFile<'_>,
) -> Result<(), Error> {
    let NewFile {
        path,
        name,
        size,
        stable,
        seed,
    } = nf;
    let chunk = 128 * 1024;
    let planned = Arc::new(random_bytes(size, seed));
    let nchunks = size.div_ceil(chunk);
    let mut m = FileModel {
        planned: planned.clone(),
        chunk,
        acked: vec![false; nchunks],
        mode: Known::Is(0o640),
    };
    set(l, path, Known::Either(None, Some(Entry::File(m.clone()))));
    let f = c
        .open(
            dir,
            name,
            OPEN4_SHARE_ACCESS_BOTH,
            Some(CreateMode::Guarded(SetAttrs::mode(0o640))),
        )
        .await?;
    set(l, path, Known::Is(Some(Entry::File(m.clone()))));
    ack(l);
    let f = Arc::new(f);
    let mut inflight = VecDeque::new();
    let mut verfs = Vec::new();
    let mut unstable_chunks = Vec::new();
    for i in 0..nchunks {
        let (c2, f2, p2) = (c.clone(), f.clone(), planned.clone());
        let range = i * chunk..((i + 1) * chunk).min(size);
        inflight.push_back((
            i,
            tokio::spawn(async move {
                c2.write_all(&f2, range.start as u64, &p2[range], stable)
                    .await
            }),
        ));
        while inflight.len() >= 4 || (i + 1 == nchunks && !inflight.is_empty()) {
            let Some((j, h)) = inflight.pop_front() else {
                break;
            };
            let (got, vs) = h.await.map_err(|e| Error::Protocol(e.to_string()))??;
            if got == StableHow4::FileSync4 {
                m.acked[j] = true;
                set(l, path, Known::Is(Some(Entry::File(m.clone()))));
                ack(l);
            } else {
                unstable_chunks.push(j);
                verfs.extend(vs);
            }
        }
    }
    if !unstable_chunks.is_empty() {
        let v = c.commit(&f.fh, 0, 0).await?;
        if verfs.iter().all(|w| *w == v) {
            for j in unstable_chunks {
                m.acked[j] = true;
            }
            set(l, path, Known::Is(Some(Entry::File(m.clone()))));
            ack(l);
        }
    }
    c.close(&f).await
}

/// One worker: a random sequence of creates, writes, mkdirs, renames, removes and mode
/// changes inside its own directory, recording each acknowledgement in the ledger.
async fn worker(c: Client, l: Shared, top: String, seed: u64) -> Result<(), Error> {
    let mut rng = Rng(seed | 1);
    let dir_fh = c.mkdir(c.root(), &top, 0o755).await.or_else(|e| {
        if e.is_status(Nfsstat4::Exist) {
            Ok(client::NfsFh4::default())
        } else {
            Err(e)
        }
    })?;
    let dir_fh = if dir_fh.as_bytes().is_empty() {
        c.lookup(c.root(), &top).await?
    } else {
        dir_fh
    };
    set(&l, &format!("/{top}"), Known::Is(Some(Entry::Dir)));
    let mut files: Vec<String> = Vec::new();
    let mut n = 0u64;
    loop {
        n += 1;
        let name = format!("n{n}");
        let path = format!("/{top}/{name}");
        match rng.below(10) {
            0..=3 => {
                let size = rng.below(1_200_000) as usize;
                let stable = if rng.below(2) == 0 {
                    StableHow4::Unstable4
                } else {
                    StableHow4::FileSync4
                };
                write_file(
                    &c,
                    &l,
                    &dir_fh,
                    NewFile {
                        path: &path,
                        name: &name,
                        size,
                        stable,
                        seed: rng.next(),
                    },
                )
                .await?;
                files.push(name);
            }
            4 => {
                set(&l, &path, Known::Either(None, Some(Entry::Dir)));
                c.mkdir(&dir_fh, &name, 0o755).await?;
                set(&l, &path, Known::Is(Some(Entry::Dir)));
                ack(&l);
            }
            5 | 6 if !files.is_empty() => {
                let i = rng.below(files.len() as u64) as usize;
                let old = files.swap_remove(i);
                let old_path = format!("/{top}/{old}");
                let Some(e) = current(&l, &old_path) else {
                    continue;
                };
                set(&l, &old_path, Known::Either(Some(e.clone()), None));
                set(&l, &path, Known::Either(None, Some(e.clone())));
                c.rename(&dir_fh, &old, &dir_fh, &name).await?;
                set(&l, &old_path, Known::Is(None));
                set(&l, &path, Known::Is(Some(e)));
                ack(&l);
                files.push(name);
            }
            7 if !files.is_empty() => {
                let i = rng.below(files.len() as u64) as usize;
                let old = files.swap_remove(i);
                let old_path = format!("/{top}/{old}");
                let Some(e) = current(&l, &old_path) else {
                    continue;
                };
                set(&l, &old_path, Known::Either(Some(e), None));
                c.remove(&dir_fh, &old).await?;
                set(&l, &old_path, Known::Is(None));
                ack(&l);
            }
            8 | 9 if !files.is_empty() => {
                let i = rng.below(files.len() as u64) as usize;
                let fname = files[i].clone();
                let fpath = format!("/{top}/{fname}");
                let Some(Entry::File(m)) = current(&l, &fpath) else {
                    continue;
                };
                let Known::Is(old_mode) = m.mode else {
                    continue;
                };
                let new_mode = 0o600 | (rng.below(0o100) as u32);
                let mut m2 = m.clone();
                m2.mode = Known::Either(old_mode, new_mode);
                set(&l, &fpath, Known::Is(Some(Entry::File(m2.clone()))));
                let fh = c.lookup(&dir_fh, &fname).await?;
                c.setattr(&fh, &SetAttrs::mode(new_mode), None).await?;
                m2.mode = Known::Is(new_mode);
                set(&l, &fpath, Known::Is(Some(Entry::File(m2))));
                ack(&l);
            }
            _ => {}
        }
    }
}

fn check_file(m: &FileModel, mode: u32, data: &[u8]) -> Result<(), String> {
    match &m.mode {
        Known::Is(x) if *x != mode => return Err(format!("mode {mode:o}, acknowledged {x:o}")),
        Known::Either(a, b) if mode != *a && mode != *b => {
            return Err(format!("mode {mode:o}, expected {a:o} or {b:o}"))
        }
        _ => {}
    }
    if data.len() > m.planned.len() {
        return Err(format!(
            "{} bytes, never wrote past {}",
            data.len(),
            m.planned.len()
        ));
    }
    for (i, acked) in m.acked.iter().enumerate() {
        let r = i * m.chunk..((i + 1) * m.chunk).min(m.planned.len());
        let want = &m.planned[r.clone()];
        let got = data.get(r.start..r.end.min(data.len())).unwrap_or(&[]);
        if *acked {
            if got != want {
                return Err(format!(
                    "acknowledged chunk {i} lost or corrupt ({} bytes back)",
                    got.len()
                ));
            }
        } else {
            // Unacknowledged data may be missing (short, or zeros where a torn write left a
            // page unwritten) but never garbage: every 4 KiB page is either what was planned
            // or zeros.
            let bad = got
                .chunks(4096)
                .zip(want.chunks(4096))
                .position(|(g, w)| g != &w[..g.len()] && g.iter().any(|b| *b != 0));
            if let Some(page) = bad {
                return Err(format!(
                    "unacknowledged chunk {i}: page {page} holds bytes never written"
                ));
            }
        }
    }
    Ok(())
}

async fn check_entry(c: &Client, path: &str, want: &Option<Entry>) -> Result<(), String> {
    let got = c.stat_path(path).await;
    match (want, got) {
        (None, Err(e)) if e.is_status(Nfsstat4::Noent) => Ok(()),
        (None, Ok(_)) => Err("exists, acknowledged as absent".into()),
        (Some(_), Err(e)) => Err(format!("missing: {e}")),
        (Some(Entry::Dir), Ok((_, st))) if st.is_dir() => Ok(()),
        (Some(Entry::Dir), Ok(_)) => Err("not a directory".into()),
        (Some(Entry::File(m)), Ok((fh, st))) => {
            if st.is_dir() {
                return Err("a directory, expected a file".into());
            }
            let f = c
                .open_fh(&fh, OPEN4_SHARE_ACCESS_READ)
                .await
                .map_err(|e| format!("open: {e}"))?;
            let f = Arc::new(f);
            let mut data = Vec::new();
            client::transfer::download(c, f.clone(), &mut data, TransferOptions::default())
                .await
                .map_err(|e| format!("read: {e}"))?;
            c.close(&f).await.map_err(|e| format!("close: {e}"))?;
            check_file(m, st.mode, &data)
        }
        (None, Err(e)) => Err(format!("stat: {e}")),
    }
}

async fn verify(c: &Client, model: &Model) -> Vec<String> {
    let mut bad = Vec::new();
    for (path, k) in model {
        let r = match k {
            Known::Is(w) => check_entry(c, path, w).await,
            Known::Either(a, b) => match check_entry(c, path, a).await {
                Ok(()) => Ok(()),
                Err(ea) => check_entry(c, path, b)
                    .await
                    .map_err(|eb| format!("neither outcome: {ea} / {eb}")),
            },
        };
        if let Err(e) = r {
            bad.push(format!("{path}: {e}"));
        }
    }
    bad
}

#[test]
fn acknowledged_writes_and_metadata_survive_kill_9() {
    let t = tempfile::tempdir().unwrap();
    let mut srv = Server::start(t.path(), Some("lease_seconds = 10\ngrace_seconds = 1\n"));
    let rt = rt();
    let started = Instant::now();
    let mut all = Model::new();
    let mut rng = Rng(0x00c0_ffee ^ u64::from(std::process::id()));
    for round in 0..5 {
        let ledger: Shared = Arc::default();
        let kill_after = Duration::from_millis(300 + rng.below(1500));
        let killed_at = rt.block_on(async {
            let c = Client::connect(ClientConfig::new(srv.addr)).await.unwrap();
            let mut tasks = Vec::new();
            for w in 0..3u64 {
                let (c, l) = (c.clone(), ledger.clone());
                let top = format!("r{round}w{w}");
                let seed = rng.next();
                tasks.push(tokio::spawn(async move {
                    if let Err(e) = worker(c, l.clone(), top, seed).await {
                        let mut g = l.lock().unwrap();
                        if g.first_error.is_none() {
                            g.first_error = Some((Instant::now(), e.to_string()));
                        }
                    }
                }));
            }
            tokio::time::sleep(kill_after).await;
            let at = Instant::now();
            srv.kill();
            // Every worker stops at its first failure after the kill.
            for t in tasks {
                tokio::time::timeout(Duration::from_secs(40), t)
                    .await
                    .expect("worker did not stop after the kill")
                    .unwrap();
            }
            at
        });
        let g = ledger.lock().unwrap();
        if let Some((when, e)) = &g.first_error {
            assert!(
                *when >= killed_at,
                "round {round}: workload failed before the kill: {e}"
            );
        }
        eprintln!(
            "round {round}: killed after {kill_after:?}, {} acknowledged operations, {} names",
            g.acks,
            g.model.len()
        );
        all.extend(g.model.clone());
        drop(g);
        srv.restart();
        // Every round's acknowledged state, earlier rounds' included, must still be there.
        let bad = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(60), async {
                let c = Client::connect(ClientConfig::new(srv.addr)).await.unwrap();
                let bad = verify(&c, &all).await;
                let _ = c.shutdown().await;
                bad
            })
            .await
            .expect("verification timed out")
        });
        assert!(
            bad.is_empty(),
            "round {round}: {} violations:\n{}",
            bad.len(),
            bad.join("\n")
        );
    }
    eprintln!("5 rounds in {:?}", started.elapsed());
}

#[test]
fn open_and_lock_are_reclaimed_in_grace() {
    let t = tempfile::tempdir().unwrap();
    let mut srv = Server::start(t.path(), Some("lease_seconds = 10\n"));
    let rt = rt();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), async {
            let mut cfg = ClientConfig::new(srv.addr);
            cfg.owner = b"reclaiming client".to_vec();
            let a = Client::connect(cfg).await.unwrap();
            let root = a.root().clone();
            let f = a
                .open(
                    &root,
                    "locked",
                    OPEN4_SHARE_ACCESS_BOTH,
                    Some(CreateMode::Unchecked(SetAttrs::mode(0o644))),
                )
                .await
                .unwrap();
            a.write(&f, 0, b"before the crash", StableHow4::FileSync4)
                .await
                .unwrap();
            a.lock(&f, LockKind::Write, 0, 100, false).await.unwrap();

            srv.kill();
            tokio::task::block_in_place(|| srv.restart());

            // A's session died with the server: recovery sees BADSESSION and starts over
            // with the same owner.
            let seen = a.recover().await.unwrap();
            assert!(
                matches!(seen, Some(Nfsstat4::Badsession | Nfsstat4::StaleClientid)),
                "old session after restart: {seen:?}"
            );

            // Another client, new since the restart: no OPEN while A may still reclaim.
            let mut bcfg = ClientConfig::new(srv.addr);
            bcfg.retry_grace = false;
            let b = Client::connect(bcfg).await.unwrap();
            let e = b
                .open(&root, "locked", OPEN4_SHARE_ACCESS_READ, None)
                .await
                .unwrap_err();
            assert_eq!(
                e.status(),
                Some(Nfsstat4::Grace),
                "non-reclaim OPEN in grace: {e}"
            );
            let e = b
                .open(
                    &root,
                    "other",
                    OPEN4_SHARE_ACCESS_BOTH,
                    Some(CreateMode::Unchecked(SetAttrs::mode(0o644))),
                )
                .await
                .unwrap_err();
            assert_eq!(
                e.status(),
                Some(Nfsstat4::Grace),
                "creating OPEN in grace: {e}"
            );
            // B has sent RECLAIM_COMPLETE: RFC 8881 §18.51.3 says its reclaims get NO_GRACE.
            let e = b.reclaim_open(&f).await.unwrap_err();
            assert_eq!(
                e.status(),
                Some(Nfsstat4::NoGrace),
                "reclaim after RECLAIM_COMPLETE: {e}"
            );

            // A reclaims its open and its lock, then says it is done.
            let f2 = a.reclaim_open(&f).await.unwrap();
            a.lock(&f2, LockKind::Write, 0, 100, true).await.unwrap();
            a.reclaim_complete().await.unwrap();
            // Reclaiming again after RECLAIM_COMPLETE is refused.
            let e = a.reclaim_open(&f).await.unwrap_err();
            assert_eq!(
                e.status(),
                Some(Nfsstat4::NoGrace),
                "reclaim after RECLAIM_COMPLETE: {e}"
            );

            // Every client of the previous instance is done, so grace is over (or ends
            // within the lease): B can open now, and A's reclaimed lock holds against B.
            let deadline = Instant::now() + Duration::from_secs(15);
            let fb = loop {
                match b.open(&root, "locked", OPEN4_SHARE_ACCESS_READ, None).await {
                    Ok(fb) => break fb,
                    Err(e) if e.is_status(Nfsstat4::Grace) && Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(200)).await
                    }
                    Err(e) => panic!("OPEN after grace: {e}"),
                }
            };
            let e = b
                .lock(&fb, LockKind::Read, 10, 10, false)
                .await
                .unwrap_err();
            assert_eq!(
                e.status(),
                Some(Nfsstat4::Denied),
                "reclaimed lock not enforced: {e}"
            );
            b.lock(&fb, LockKind::Read, 200, 10, false).await.unwrap();
            // The reclaimed open is usable for I/O.
            a.write(&f2, 16, b", after", StableHow4::FileSync4)
                .await
                .unwrap();
            a.unlock(&f2, LockKind::Write, 0, 100).await.unwrap();
            b.lock(&fb, LockKind::Read, 10, 10, false).await.unwrap();
            let (data, _) = b.read(&fb, 0, 100).await.unwrap();
            assert_eq!(data, b"before the crash, after");
        })
        .await
        .expect("timed out");
    });
}

/// A client that closed its files and destroyed its client ID (a clean unmount) is not waited
/// for after a kill -9 that follows at once: its record went before DESTROY_CLIENTID's reply,
/// as knfsd's does, so the restart has nobody to wait for and a new client opens at once.
#[test]
fn a_client_that_unmounted_is_not_waited_for_after_a_kill_9() {
    let t = tempfile::tempdir().unwrap();
    // A lease of 30 s: the laundromat, which forgets records lazily, runs every 15 s, well
    // after the kill.
    let mut srv = Server::start(t.path(), Some("lease_seconds = 30\n"));
    let rt = rt();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), async {
            let mut cfg = ClientConfig::new(srv.addr);
            cfg.owner = b"unmounting client".to_vec();
            let a = Client::connect(cfg).await.unwrap();
            let root = a.root().clone();
            let f = a
                .open(
                    &root,
                    "written",
                    OPEN4_SHARE_ACCESS_BOTH,
                    Some(CreateMode::Unchecked(SetAttrs::mode(0o644))),
                )
                .await
                .unwrap();
            a.write(&f, 0, b"before the unmount", StableHow4::FileSync4)
                .await
                .unwrap();
            a.close(&f).await.unwrap();
            a.shutdown()
                .await
                .expect("DESTROY_SESSION, DESTROY_CLIENTID");

            srv.kill();
            tokio::task::block_in_place(|| srv.restart());

            let mut bcfg = ClientConfig::new(srv.addr);
            bcfg.retry_grace = false;
            let b = Client::connect(bcfg).await.unwrap();
            let fb = b
                .open(&root, "written", OPEN4_SHARE_ACCESS_READ, None)
                .await
                .unwrap_or_else(|e| panic!("OPEN right after the restart: {e}"));
            let (data, _) = b.read(&fb, 0, 100).await.unwrap();
            assert_eq!(data, b"before the unmount");
        })
        .await
        .expect("timed out");
    });
}
