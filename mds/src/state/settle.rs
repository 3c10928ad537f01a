//! The size a write delegation's holder wrote to the data servers, recorded when it returns
//! the delegation.
//!
//! Through a layout the holder writes the data servers directly, and the size reaches the MDS
//! only with its LAYOUTCOMMIT. Linux sends that at a close or fsync it does not wait for under
//! a write delegation (`nfs4_file_flush` only starts the write-back), and not before it answers
//! a recall with DELEGRETURN (`nfs_end_delegation_return`): a reader let in at the DELEGRETURN
//! read the file short. So a returned write delegation whose holder holds a read-write layout
//! settles (`StateManager::return_delegation`): it stays in every other client's way (DELAY)
//! until the size the data servers hold is recorded here, as a LAYOUTCOMMIT would, which is
//! safe because the holder was the only writer:
//! - at once, when the holder no longer has the file open (Linux sends CLOSE after the last
//!   WRITE and COMMIT of the open: everything is on the data servers);
//! - else after its layout is recalled: Linux commits what it wrote and returns the layout once
//!   its I/O through it is done (`initiate_file_draining`), or answers that it holds none;
//!   the LAYOUTRETURN or CLOSE that follows records the size (`after_writes`), and
//!   `DRAIN_MAX` after the return it is recorded whatever came.
use std::sync::Arc;

use super::delegations::DRAIN_MAX;
use super::recall::{layout_recall, wait_for_returns, LayoutRecalled};
use super::NfsState;
use crate::error::NfsResult;

/// Records the size the data servers hold of `ino` (`stored_size::record`) and ends
/// `clientid`'s settling delegation there. With the times its holder reported in returning
/// it, if it had delegated timestamps and did; else the server's: a delegation lost
/// unreturned (`settle_unreturned`) reported nothing for its last writes, and a later time is
/// the safe side (a build tool sees the change).
pub async fn settle(nfs: &Arc<NfsState>, clientid: u64, ino: u64) {
    use super::stored_size::{record, Times};
    let times = if nfs.state.returned_with_times(clientid, ino) {
        Times::Holders
    } else {
        Times::Server
    };
    record(nfs, ino, times).await;
    nfs.state.end_settling(clientid, ino);
}

/// DELEGRETURN said `Returned::Settle`: settles now, or recalls the holder's layout and
/// settles once it is back (in its own task; DELEGRETURN's reply does not wait).
pub async fn after_return(nfs: &Arc<NfsState>, clientid: u64, ino: u64, recall_layout: bool) {
    if !recall_layout {
        return settle(nfs, clientid, ino).await;
    }
    let nfs = nfs.clone();
    tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        if layout_recall(&nfs, clientid, ino).await == LayoutRecalled::Returning {
            // Its LAYOUTRETURN or CLOSE settles it; past `DRAIN_MAX`, whatever is there.
            while nfs.state.settling(clientid, ino) {
                let returned = nfs.state.returned.notified();
                tokio::pin!(returned);
                returned.as_mut().enable();
                if !nfs.state.settling(clientid, ino) {
                    return;
                }
                if tokio::time::timeout_at(started + DRAIN_MAX, returned)
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
        if nfs.state.settling(clientid, ino) {
            settle(&nfs, clientid, ino).await;
        }
    });
}

/// `clientid` returns its layout on `ino` or closes the file: if a write delegation of its
/// there settles, everything it wrote through the layout is in, and the size is recorded.
pub async fn after_writes(nfs: &Arc<NfsState>, clientid: u64, ino: u64) {
    if nfs.state.settling(clientid, ino) {
        settle(nfs, clientid, ino).await;
    }
}

/// Waits (NFS4ERR_DELAY past a moment) while `clientid`'s own returned write delegation on
/// `ino` settles: until then the server's size is short of what the holder wrote, and Linux
/// takes a smaller size from the server, with no write of its own outstanding, as another
/// client's truncation (an `O_APPEND` write after it went to offset 0).
pub async fn settled(nfs: &NfsState, clientid: u64, ino: u64) -> NfsResult<()> {
    wait_for_returns(nfs, || nfs.state.settling(clientid, ino)).await
}
