//! The uploader (see `mod.rs`): one pass takes the files due and sends each, piece by piece.
//!
//! Order of one upload, and what a crash at each step leaves (`meta_core::tiering`):
//! 1. `TierBegin` records the generation and piece count: from here every key it may write is
//!    known, so a crash leaves an upload under way that the deleter gives up and deletes.
//! 2. Each piece is read and PUT. Before each, the file is looked at again: removed or changed
//!    means stop (`TierAbort` dooms what was sent), so no upload goes on for a deleted file.
//! 3. `TierDone` records the pieces' sums; it counts only if the file's change attribute is
//!    still the one read at step 1, else the objects are doomed and the file is due again.
use std::time::Instant;

use futures::stream::{self, StreamExt};
use meta::namespace::{Command, FsError, TierDue, Time};
use meta_core::TierPiece;
use tier::TierError;

use crate::error::NfsError;
use crate::node::Mds;
use crate::tier_set::{Tier, TierMode, FILES_PER_PASS, UPLOADS_AT_ONCE};

/// Bytes read from flash per call while a piece is gathered.
const READ_STEP: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub(super) enum UploadError {
    #[error("metadata: {0}")]
    Meta(#[from] FsError),
    #[error("reading the file: {0:?}")]
    Read(NfsError),
    #[error("object store: {0}")]
    Store(#[from] TierError),
    #[error("the file changed or went away during the upload")]
    Changed,
    #[error(transparent)]
    KeyNotReady(#[from] crate::tier_set::KeyNotReady),
}

/// One uploader pass: the files due, `UPLOADS_AT_ONCE` at a time.
///
/// In tiered mode a file is due once unchanged and unused for `tier_after`: used means a use
/// this node saw (`Tier::touch`) or a client holding it open or laid out, here or on another
/// MDS node. A file written after its upload is stale in the bucket and, like any other,
/// waits until it is left alone that long again; its old objects count for nothing meanwhile
/// and are doomed when the new copy replaces them or the file goes (`meta_core::tiering`).
pub(super) async fn pass(mds: &Mds, tier: &Tier) {
    if tier.seal().is_err() {
        // Sealing, and the key not known yet: nothing goes to the bucket in plaintext.
        return;
    }
    let now = Time::now();
    // Write-through (flash nearly full): what was written goes now, quiet or not, so it can
    // leave flash (`through`).
    let quiet = if tier.flash.write_through() {
        std::time::Duration::ZERO
    } else {
        tier.settings.quiet_for()
    };
    let after = i64::try_from(quiet.as_secs()).unwrap_or(i64::MAX);
    let before = Time::new(now.secs.saturating_sub(after), now.nsecs);
    let tiered = tier.settings.mode == TierMode::Tiered;
    // Taken before the scan, which holds the shards' state locks: nothing that takes another
    // lock runs under them.
    let used = if tiered {
        tier.uses_since(before.secs)
    } else {
        Default::default()
    };
    let due = match mds
        .ns
        .tier_due(before, FILES_PER_PASS, &|ino| used.contains(&ino))
    {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!("cannot scan for files to upload: {e}");
            return;
        }
    };
    let mut mine: Vec<TierDue> = due
        .into_iter()
        .filter(|d| mds.ns.leads_file(d.ino))
        .filter(|d| {
            if tiered {
                // Open or laid out by a client of this node: in use now.
                !mds.nfs.state.file_has_state(d.ino)
            } else {
                // A client of this node may be writing it: its LAYOUTCOMMIT or COMMIT is to
                // come.
                !mds.nfs.state.file_writable_by_someone(d.ino)
            }
        })
        .collect();
    if tiered && mds.ns.peers().is_some() && !mine.is_empty() {
        // Open through another MDS node: in use there (its reads we never see).
        let inos: Vec<u64> = mine.iter().map(|d| d.ino).collect();
        let Some(elsewhere) = crate::state::remote::in_use::elsewhere(&mds.ns, &inos).await else {
            tracing::debug!("tiered uploads wait: an MDS node did not say which files are open");
            return;
        };
        let mut open = elsewhere.into_iter();
        mine.retain(|_| open.next() != Some(true));
    }
    stream::iter(mine)
        .for_each_concurrent(UPLOADS_AT_ONCE, |d| async move {
            match upload_file(mds, tier, d).await {
                Ok(()) => {}
                Err(UploadError::Changed) => {
                    tracing::debug!(
                        ino = d.ino,
                        "file changed during its upload; sent again later"
                    );
                }
                Err(e) => {
                    metrics::tier::UPLOADS_FAILED.inc();
                    tracing::warn!(
                        ino = d.ino,
                        "upload to the object store failed, retried later: {e}"
                    );
                }
            }
        })
        .await;
}

/// Clears `ino` from the node's running set when the upload ends, however it ends.
struct Running<'a>(&'a Tier, u64);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running().remove(&self.1);
    }
}

pub(super) async fn upload_file(mds: &Mds, tier: &Tier, d: TierDue) -> Result<(), UploadError> {
    let TierDue { ino, change, size } = d;
    let object = tier.settings.object_size;
    let pieces = size.div_ceil(object);
    tier.seal()?;
    if !tier.running().insert(ino) {
        return Ok(());
    }
    let _running = Running(tier, ino);
    let pieces = match send_segments(mds, d).await? {
        // Its segments are in the bucket: its copy is those, a copy of no pieces.
        true => 0,
        false => pieces,
    };
    mds.ns
        .execute(Command::TierBegin {
            ino,
            change,
            pieces,
            time: Time::now(),
            by: tier.me,
        })
        .await?;
    let gen = mds
        .ns
        .tier(ino)?
        .and_then(|t| t.upload)
        .filter(|u| u.change == change)
        .map(|u| u.gen)
        .ok_or(UploadError::Changed)?;
    let sent = match pieces {
        0 => Ok(Vec::new()),
        _ => send_pieces(mds, tier, ino, gen, change, size).await,
    };
    let sums = match sent {
        Ok(s) => s,
        Err(e) => {
            // What was sent is doomed now; if even that fails (leadership moved), the next
            // leader's deleter gives the upload up once it is stale.
            let abort = Command::TierAbort {
                ino,
                gen,
                time: Time::now(),
            };
            if let Err(a) = mds.ns.execute(abort).await {
                tracing::debug!(ino, gen, "upload left for the deleter to give up: {a}");
            }
            return Err(e);
        }
    };
    let done = Time::now();
    mds.ns
        .execute(Command::TierDone {
            ino,
            gen,
            pieces: sums,
            time: done,
        })
        .await?;
    let counted = mds
        .ns
        .tier(ino)?
        .and_then(|t| t.copy)
        .is_some_and(|c| c.gen == gen);
    if !counted {
        return Err(UploadError::Changed);
    }
    if let Ok(i) = mds.ns.getattr(ino) {
        let lag = (done.secs - i.ctime.secs).max(0) as u64;
        metrics::tier::UPLOAD_LAG.observe(std::time::Duration::from_secs(lag));
    }
    tracing::debug!(
        ino,
        gen,
        bytes = size,
        pieces,
        "file uploaded to the object store"
    );
    Ok(())
}

/// A reduced file goes to the bucket as its segments, each once for every file sharing it
/// (`dataservers::segment_tier`): true once every segment of its recipe is verified there,
/// false for a file that is not reduced (its pieces are sent). The segments need no
/// generation of the file's: each is named by its own record, which also says what to delete.
async fn send_segments(mds: &Mds, d: TierDue) -> Result<bool, UploadError> {
    let Some(c) = mds.data.cluster() else {
        return Ok(false);
    };
    let Some(red) = c.reduced(&mds.ns, d.ino).map_err(UploadError::Read)? else {
        return Ok(false);
    };
    let segments = mds
        .ns
        .file_reduce(d.ino)?
        .filter(|r| r.epoch == red.epoch && r.is_reduced())
        .and_then(|r| r.reduced().map(|x| x.segments()))
        .ok_or(UploadError::Changed)?;
    for id in &segments {
        // Removed or written since: nothing more is sent.
        match mds.ns.getattr(d.ino) {
            Ok(i) if i.nlink > 0 && i.change == d.change => {}
            _ => return Err(UploadError::Changed),
        }
        if !c
            .tier_segment(&mds.ns, id)
            .await
            .map_err(UploadError::Read)?
        {
            return Err(UploadError::Changed);
        }
    }
    tracing::debug!(
        ino = d.ino,
        segments = segments.len(),
        "reduced file's segments in the object store"
    );
    Ok(true)
}

/// Reads and PUTs every piece; their lengths and sums, in order.
async fn send_pieces(
    mds: &Mds,
    tier: &Tier,
    ino: u64,
    gen: u64,
    change: u64,
    size: u64,
) -> Result<Vec<TierPiece>, UploadError> {
    let object = tier.settings.object_size;
    let mut sums = Vec::new();
    let mut offset = 0;
    let mut piece = 0;
    while offset < size {
        // Removed or changed since `TierBegin`: nothing more is sent.
        match mds.ns.getattr(ino) {
            Ok(i) if i.nlink > 0 && i.change == change => {}
            _ => return Err(UploadError::Changed),
        }
        let len = (size - offset).min(object);
        let bytes = read_piece(mds, ino, offset, len, size).await?;
        sums.push(put_piece(tier, ino, piece, gen, offset, bytes).await?);
        offset += len;
        piece += 1;
    }
    Ok(sums)
}

/// Sends `bytes`, the range of the file (or image object) `ino` from `offset`, as piece
/// `piece` of generation `gen`: one self-describing object (`tier::object`), sealed when
/// encryption is on. Returns the record of it.
pub(super) async fn put_piece(
    tier: &Tier,
    ino: u64,
    piece: u64,
    gen: u64,
    offset: u64,
    bytes: Vec<u8>,
) -> Result<TierPiece, UploadError> {
    let len = bytes.len() as u64;
    let id = Tier::id(ino, piece, gen);
    let seal = tier.seal()?;
    let body = tier::object::encode(&id, offset, len, &bytes, seal);
    drop(bytes);
    let (header, _) = tier::object::decode_header(&body, seal)
        .map_err(|e| UploadError::Store(TierError::Format(e)))?;
    let started = Instant::now();
    let put = tier.store().put(&tier.key(ino, piece, gen), body).await;
    metrics::tier::PUT.observe(started.elapsed());
    if let Err(e) = put {
        metrics::tier::request_failed();
        return Err(e.into());
    }
    metrics::tier::request_ok();
    metrics::tier::UPLOADED_OBJECTS.inc();
    metrics::tier::UPLOADED_BYTES.add(len);
    Ok(TierPiece {
        len,
        sum: header.payload_blake3,
    })
}

/// File bytes `[offset, offset + len)`, which must all be there (a shorter file has changed).
async fn read_piece(
    mds: &Mds,
    ino: u64,
    offset: u64,
    len: u64,
    size: u64,
) -> Result<Vec<u8>, UploadError> {
    let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    while (out.len() as u64) < len {
        let at = offset + out.len() as u64;
        let want = (len - out.len() as u64).min(READ_STEP);
        let (data, _eof) = mds
            .data
            .read_data(ino, at, want, size)
            .await
            .map_err(UploadError::Read)?;
        if data.is_empty() {
            return Err(UploadError::Changed);
        }
        out.extend_from_slice(&data);
    }
    out.truncate(usize::try_from(len).unwrap_or(usize::MAX));
    Ok(out)
}
