//! Chunks whose copy on this DS failed verification. A read that finds one answers NFS3ERR_IO
//! (never the bad bytes, never zeros) and records it here, durably (`bad_chunks` in the data
//! directory, write-temp-fsync-rename), before the reader hears back; a task reports the
//! records to the MDS until it answers. The MDS stops counting this DS as a mirror of the file
//! and has repair rewrite the copy from a good one, which starts by truncating the object here
//! to 0: that (or any truncation below a chunk) forgets its record.
//!
//! The file is the durable half of the MDS's repair queue for corruption: a report lost to a
//! restart of either side is sent again, since what was reported is remembered in memory only.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use layout::secret::now_ms;
use proto::cluster::{
    BadChunk, BadChunksArgs, BadChunksRes, BadShard, BadShardsArgs, BadShardsRes,
    CFS_CLUSTER_PROGRAM, CFS_CLUSTER_V1, CLUSTERPROC_BAD_CHUNKS, CLUSTERPROC_BAD_SHARDS,
    MAX_BAD_CHUNKS,
};
use proto::rpc::{Auth, Connection, ConnectionLimits, RejectCalls};
use proto::xdr::Xdr;
use tokio::sync::{watch, Notify};

use super::Shared;

/// Most bad chunks remembered; past this, new ones are still refused to readers but not
/// recorded (a disk this damaged needs an operator, not a longer list).
pub(crate) const MAX_BAD: usize = 4096;
const FILE: &str = "bad_chunks";
/// Pause before reporting again after a failed report or one the MDS could not act on yet.
const RETRY: Duration = Duration::from_secs(2);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Inner {
    bad: BTreeSet<BadChunk>,
    /// Answered by the MDS since this process started.
    reported: BTreeSet<BadChunk>,
}

pub(crate) struct BadChunks {
    path: PathBuf,
    inner: Mutex<Inner>,
    /// Serialises rewrites of the file, each with the set as of its turn, so an older set
    /// never lands after a newer one.
    persist: tokio::sync::Mutex<()>,
    wake: Notify,
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    // Sets only: a panic elsewhere cannot leave them harmful.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl BadChunks {
    /// Loads the records of `data_dir`; unreadable lines are skipped with a warning.
    pub(crate) fn open(data_dir: &Path) -> std::io::Result<BadChunks> {
        let path = data_dir.join(FILE);
        let mut bad = BTreeSet::new();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    let mut it = line.split_whitespace();
                    let parsed = (|| {
                        let file = u64::from_str_radix(it.next()?, 16).ok()?;
                        let chunk = u64::from_str_radix(it.next()?, 16).ok()?;
                        Some(BadChunk { file, chunk })
                    })();
                    match parsed {
                        Some(b) if bad.len() < MAX_BAD => {
                            bad.insert(b);
                        }
                        Some(_) => {}
                        None => tracing::warn!(line, "skipping an unreadable bad-chunk record"),
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if !bad.is_empty() {
            tracing::warn!(
                count = bad.len(),
                "chunks recorded bad, to report to the MDS"
            );
        }
        Ok(BadChunks {
            path,
            inner: Mutex::new(Inner {
                bad,
                reported: BTreeSet::new(),
            }),
            persist: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
        })
    }

    /// Records that chunk `chunk` of `file` failed verification here; durable on return.
    pub(crate) async fn mark(&self, file: u64, chunk: u64) -> std::io::Result<()> {
        let b = BadChunk { file, chunk };
        {
            let mut g = lock(&self.inner);
            if g.bad.contains(&b) {
                return Ok(());
            }
            if g.bad.len() >= MAX_BAD {
                tracing::error!(
                    file,
                    chunk,
                    "too many bad chunks recorded; not recording this one"
                );
                return Ok(());
            }
            g.bad.insert(b);
        }
        tracing::error!(
            file,
            chunk,
            "chunk failed verification; recorded for repair"
        );
        self.persist().await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Forgets the records of `file`'s chunks from `from_chunk` on (they were truncated away,
    /// so nothing bad is left of them).
    pub(crate) async fn forget(&self, file: u64, from_chunk: u64) -> std::io::Result<()> {
        let changed = {
            let mut g = lock(&self.inner);
            let before = g.bad.len();
            g.bad.retain(|b| b.file != file || b.chunk < from_chunk);
            g.reported
                .retain(|b| b.file != file || b.chunk < from_chunk);
            g.bad.len() != before
        };
        if changed {
            tracing::info!(file, "bad chunk records dropped: the copy was rewritten");
            self.persist().await?;
        }
        Ok(())
    }

    /// What the MDS has not answered yet, at most one report's worth.
    fn pending(&self) -> Vec<BadChunk> {
        let g = lock(&self.inner);
        g.bad
            .difference(&g.reported)
            .take(MAX_BAD_CHUNKS)
            .copied()
            .collect()
    }

    fn answered(&self, chunks: impl Iterator<Item = BadChunk>) {
        let mut g = lock(&self.inner);
        for b in chunks {
            if g.bad.contains(&b) {
                g.reported.insert(b);
            }
        }
    }

    async fn persist(&self) -> std::io::Result<()> {
        let _turn = self.persist.lock().await;
        let text: String = lock(&self.inner)
            .bad
            .iter()
            .map(|b| format!("{:016x} {:x}\n", b.file, b.chunk))
            .collect();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, text.as_bytes()))
            .await
            .map_err(std::io::Error::other)?
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Reports bad chunks to the MDS whenever there are unanswered ones: at once after a new one,
/// and again every `RETRY` while some are unanswered.
pub(crate) async fn run(s: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let pending = s.bad.pending();
        let wait = if pending.is_empty() {
            None
        } else {
            match report_any(&s, &pending).await {
                Ok(later) => {
                    let later: BTreeSet<BadChunk> = later.into_iter().collect();
                    s.bad
                        .answered(pending.iter().copied().filter(|b| !later.contains(b)));
                    if later.is_empty() {
                        // More than one report's worth: go on at once.
                        continue;
                    }
                    Some(RETRY)
                }
                Err(e) => {
                    tracing::warn!("cannot report bad chunks (will retry): {e}");
                    Some(RETRY)
                }
            }
        };
        tokio::select! {
            _ = s.bad.wake.notified() => {}
            _ = async {
                match wait {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            } => {}
            _ = stop.changed() => return,
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ReportError {
    #[error("cannot connect: {0}")]
    Connect(#[from] std::io::Error),
    #[error("no timely answer: connect timed out")]
    ConnectTimeout,
    #[error("{0}")]
    Rpc(#[from] proto::rpc::RpcError),
    #[error("undecodable reply: {0}")]
    Decode(#[from] proto::xdr::XdrError),
    #[error("MDS refused the report (code {0})")]
    Refused(u32),
}

/// Whether an object is a shard of an erasure-coded file (`shards::object_id` sets the top
/// bit; a file's own object is its inode number, below 2^63).
fn is_shard_object(id: u64) -> bool {
    id >> 63 == 1
}

/// Reports what is pending: copies of files as bad chunks, shards as bad shards (named by
/// their header: (file, epoch, index)). Returns what to report again later.
async fn report_any(s: &Shared, pending: &[BadChunk]) -> Result<Vec<BadChunk>, ReportError> {
    let (shards, files): (Vec<BadChunk>, Vec<BadChunk>) =
        pending.iter().partition(|b| is_shard_object(b.file));
    let mut later = Vec::new();
    if !files.is_empty() {
        later.extend(report(s, &files).await?);
    }
    let mut named: Vec<(BadChunk, BadShard)> = Vec::new();
    for b in shards {
        match s.shards.header(b.file).await {
            Ok(Some(h)) => named.push((
                b,
                BadShard {
                    file: h.shard.file,
                    epoch: h.shard.epoch,
                    index: h.shard.index,
                },
            )),
            // Dropped since (its encoding retired, or the file removed): nothing to repair.
            Ok(None) => {
                let _ = s.bad.forget(b.file, 0).await;
            }
            Err(e) => {
                tracing::warn!(object = b.file, "cannot read a bad shard's header: {e}");
                later.push(b);
            }
        }
    }
    if !named.is_empty() {
        let list: Vec<BadShard> = named.iter().map(|(_, n)| *n).collect();
        let back: BTreeSet<BadShard> = report_shards(s, &list).await?.into_iter().collect();
        later.extend(
            named
                .iter()
                .filter(|(_, n)| back.contains(n))
                .map(|(b, _)| *b),
        );
    }
    Ok(later)
}

async fn report_shards(s: &Shared, shards: &[BadShard]) -> Result<Vec<BadShard>, ReportError> {
    let mut a = BadShardsArgs {
        ds_id: s.id.0,
        timestamp_ms: now_ms(),
        shards: shards.to_vec(),
        mac: [0; 32],
    };
    a.mac = s.cfg.secret.bad_shards_mac(&a);
    let mut last = ReportError::ConnectTimeout;
    for mds in &s.mds.targets() {
        match call_mds(*mds, CLUSTERPROC_BAD_SHARDS, &a.to_xdr()).await {
            Ok(body) => match BadShardsRes::from_xdr(&body)? {
                BadShardsRes::Ok(later) => return Ok(later),
                BadShardsRes::Err(code) => last = ReportError::Refused(code),
            },
            Err(e) => {
                tracing::debug!(%mds, "bad shard report not taken: {e}");
                last = e;
            }
        }
    }
    Err(last)
}

/// One call of the cluster program over a fresh connection (reports are rare); the reply body.
async fn call_mds(
    mds: std::net::SocketAddr,
    proc_: u32,
    args: &[u8],
) -> Result<Vec<u8>, ReportError> {
    let limits = ConnectionLimits {
        max_record: 1 << 20,
        max_in_flight: 1,
    };
    let conn = tokio::time::timeout(
        CALL_TIMEOUT,
        Connection::connect(mds, Arc::new(RejectCalls), limits),
    )
    .await
    .map_err(|_| ReportError::ConnectTimeout)??;
    let r = conn
        .call(
            CFS_CLUSTER_PROGRAM,
            CFS_CLUSTER_V1,
            proc_,
            &Auth::None,
            args,
            CALL_TIMEOUT,
        )
        .await;
    conn.close();
    Ok(r?.body().to_vec())
}

/// One report to the first MDS node that takes it (any node can start a repair: the
/// placement records it changes are replicated); returns what to report again later.
async fn report(s: &Shared, chunks: &[BadChunk]) -> Result<Vec<BadChunk>, ReportError> {
    let mut last = ReportError::ConnectTimeout;
    for mds in &s.mds.targets() {
        match report_to(s, *mds, chunks).await {
            Ok(later) => return Ok(later),
            Err(e) => {
                tracing::debug!(%mds, "bad chunk report not taken: {e}");
                last = e;
            }
        }
    }
    Err(last)
}

/// One report over a fresh connection (reports are rare).
async fn report_to(
    s: &Shared,
    mds: std::net::SocketAddr,
    chunks: &[BadChunk],
) -> Result<Vec<BadChunk>, ReportError> {
    let mut a = BadChunksArgs {
        ds_id: s.id.0,
        timestamp_ms: now_ms(),
        chunks: chunks.to_vec(),
        mac: [0; 32],
    };
    a.mac = s.cfg.secret.bad_chunks_mac(&a);
    let body = call_mds(mds, CLUSTERPROC_BAD_CHUNKS, &a.to_xdr()).await?;
    match BadChunksRes::from_xdr(&body)? {
        BadChunksRes::Ok(later) => Ok(later),
        BadChunksRes::Err(code) => Err(ReportError::Refused(code)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_survive_reopening_and_truncation_forgets_them() {
        let dir = tempfile::tempdir().unwrap();
        let b = BadChunks::open(dir.path()).unwrap();
        b.mark(7, 0).await.unwrap();
        b.mark(7, 3).await.unwrap();
        b.mark(9, 1).await.unwrap();
        b.answered([BadChunk { file: 9, chunk: 1 }].into_iter());
        assert_eq!(b.pending().len(), 2);
        drop(b);
        // Reopened (a restart): everything is reported again.
        let b = BadChunks::open(dir.path()).unwrap();
        assert_eq!(b.pending().len(), 3);
        b.forget(7, 1).await.unwrap();
        b.forget(9, 0).await.unwrap();
        drop(b);
        let b = BadChunks::open(dir.path()).unwrap();
        assert_eq!(b.pending(), vec![BadChunk { file: 7, chunk: 0 }]);
    }
}
