//! The size the data servers hold of a file, recorded as a LAYOUTCOMMIT would: for a write
//! delegation's holder that wrote through its layout and will send none (`settle`), or whose
//! MDS node died with the delegation (`remote::delegations::announce_gone`). Safe because the
//! holder was the file's only writer, and the size only grows. The times are the server's
//! clock's, or the holder's if it reported them under delegated timestamps (`Times`).
use std::sync::Arc;
use std::time::Duration;

use meta::namespace::{Command, ShardId, Time};

use super::NfsState;

/// How long `record` keeps trying (within `delegations::DRAIN_MAX`, which other clients wait
/// at most for a settling delegation).
const RECORD_WAIT: Duration = Duration::from_secs(5);

/// Whose times the writes `record` records carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Times {
    /// The server's clock when they are recorded: nobody reported a time for them.
    Server,
    /// The file's as they are: the holder of delegated timestamps (RFC 9754) reported them
    /// when it returned the delegation (`StateManager::returned_with_times`). Its times are
    /// the file's; the server's clock now is later than its writes (seen: the mtime a
    /// holder reported replaced by the moment its size was recorded).
    Holders,
}

/// Records the size the data servers hold of `ino`, if larger than the recorded one, with
/// `times`. A data server that does not answer, or a shard that cannot take the command yet
/// (electing, busy), is tried again for up to `RECORD_WAIT`: giving up lets a reader in to a
/// short file.
pub async fn record(nfs: &Arc<NfsState>, ino: u64, times: Times) {
    let Some(c) = nfs.cluster() else {
        return;
    };
    let deadline = tokio::time::Instant::now() + RECORD_WAIT;
    let mut pause = Duration::from_millis(20);
    loop {
        // This node's replica of the file's shard may be behind its leader's: the chunk
        // map the holder's LAYOUTGET placed, the size. Seen as a size left at 0 under load.
        let current = match nfs.ns.barrier(ShardId::of_ino(ino)).await {
            Ok(()) => Ok(()),
            Err(e) => Err(format!("read barrier: {e:?}")),
        };
        let r = match current {
            Err(e) => Err(e),
            Ok(()) => match c.stored_end(&nfs.ns, ino).await {
                Ok(Some(end)) if nfs.ns.getattr(ino).is_ok_and(|i| end > i.size) => {
                    let cmd = match times {
                        Times::Server => Command::Write {
                            ino,
                            end_offset: end,
                            time: Time::now(),
                            writes: 1,
                        },
                        Times::Holders => Command::WriteKeepingTimes {
                            ino,
                            end_offset: end,
                            writes: 1,
                        },
                    };
                    nfs.ns
                        .execute(cmd)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
                Ok(Some(_)) => Ok(()),
                // No data server holds any of it: nothing was written.
                Ok(None) if nfs.ns.chunks(ino).is_ok_and(|c| c.is_empty()) => Ok(()),
                Ok(None) => Err("no data server answered".to_string()),
                Err(e) => Err(format!("{e:?}")),
            },
        };
        match r {
            Ok(()) => return,
            Err(e) if tokio::time::Instant::now() + pause < deadline => {
                tracing::debug!(ino, "size written through a layout, again: {e}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            Err(e) => {
                tracing::warn!(ino, "size written through a layout not recorded: {e}");
                return;
            }
        }
    }
}
