//! The object-store tier's record of a file (issue 45, cache mode): which of its bytes are in
//! the bucket, under which generation, checked by which sums; the upload under way; and the
//! objects to delete once their grace delay has passed.
//!
//! The unit uploaded is a *piece*: a range `[i·P, (i+1)·P)` of the file's bytes (P is the
//! uploader's piece size, ~64 MiB), one object each. Not the data servers' units (a mirror copy
//! or an EC shard): placement is per file and changes with repair, drain and encoding, while a
//! file range is what a client reads, what an evicted read fetches with a range GET, and what
//! `cfs repair --from-s3` needs to rebuild a file without knowing where it lived.
//!
//! An upload is valid while the file's change attribute is the one it was read at (`change`:
//! +1 on every change of the inode, data writes included, MONOTONIC_INCR); a later write makes
//! it stale and the uploader sends the file again under a new generation. Data written through
//! a layout is counted when its LAYOUTCOMMIT (or the settling of a write delegation) records it,
//! so an upload that raced such a write is found stale then.
//!
//! Nothing in the bucket is forgotten by the record before it is deleted there: an upload under
//! way names its generation and piece count before its first PUT (`TierBegin`), so a crash
//! leaves keys to delete, not unknown objects; superseded and abandoned uploads move to
//! `doomed` with the time they stopped counting, and only `TierDeleted` (after the deleter's
//! grace delay and its DELETEs) removes them. The record outlives its file: a file that is gone
//! (inode numbers are never reused) has its objects doomed (`TierDoom`), and the record goes
//! with its last doomed set, so a file deleted during its upload leaves nothing behind.

use serde::{Deserialize, Serialize};

use super::object::Time;

/// One piece's object: its length and the blake3 of its bytes (the object's header carries
/// both too, so a recovered object verifies without this record).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierPiece {
    pub len: u64,
    pub sum: [u8; 32],
}

/// The upload that counts: pieces `0..pieces.len()` under `gen`, taken at change `change`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierCopy {
    pub gen: u64,
    pub change: u64,
    pub pieces: Vec<TierPiece>,
    /// When it was recorded (the upload lag is measured from the file's ctime to this).
    pub at: Time,
}

impl TierCopy {
    /// File bytes the bucket holds in this copy.
    pub fn bytes(&self) -> u64 {
        self.pieces.iter().map(|p| p.len).sum()
    }
}

/// An upload under way since `since`: `pieces` objects of generation `gen` may exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierUpload {
    pub gen: u64,
    pub change: u64,
    pub pieces: u64,
    pub since: Time,
    /// The uploading node's instance (node id and boot count): a node that finds one of its
    /// own earlier boots' uploads knows it ended, without waiting for it to look stale.
    pub by: u64,
}

/// Objects `0..pieces` of generation `gen` to delete from the bucket; they stopped counting at
/// `since` (the deleter waits its grace delay after that).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierDoomed {
    pub gen: u64,
    pub pieces: u64,
    pub since: Time,
}

/// A file's record in the tier.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileTier {
    pub copy: Option<TierCopy>,
    pub upload: Option<TierUpload>,
    pub doomed: Vec<TierDoomed>,
    /// Flash holds none of the file's bytes: they are the copy's, read from the bucket. Set
    /// only on a copy that was current (`TierEvict`); a change to the bytes waits until they
    /// are back on flash (`TierRestored`), so while it is set the copy stays the file's bytes
    /// whatever else (owner, mode) changes.
    pub evicted: bool,
    /// A client read or wants to change the evicted file: its shard's leader brings it back.
    pub wanted: bool,
}

impl FileTier {
    /// Whether the bucket holds the file's bytes as they are at change attribute `change`.
    pub fn is_current(&self, change: u64) -> bool {
        self.copy
            .as_ref()
            .is_some_and(|c| self.evicted || c.change == change)
    }

    /// Nothing in the bucket is left to account for: the record may go.
    pub fn is_empty(&self) -> bool {
        self.copy.is_none() && self.upload.is_none() && self.doomed.is_empty()
    }

    /// Moves the copy and the upload under way to `doomed`, from `since`.
    pub fn doom_all(&mut self, since: Time) {
        self.evicted = false;
        self.wanted = false;
        if let Some(c) = self.copy.take() {
            self.doom(c.gen, c.pieces.len() as u64, since);
        }
        if let Some(u) = self.upload.take() {
            self.doom(u.gen, u.pieces, since);
        }
    }

    pub fn doom(&mut self, gen: u64, pieces: u64, since: Time) {
        if pieces > 0 && !self.doomed.iter().any(|d| d.gen == gen) {
            self.doomed.push(TierDoomed { gen, pieces, since });
        }
    }
}

/// The extended attribute that pins a file to a tier (`user.cfs.tier` as `setfattr` names it;
/// RFC 8276 carries names without the `user.` prefix). New files and directories take their
/// parent's.
pub const PIN_XATTR: &[u8] = b"cfs.tier";

/// Where a file's bytes are to be kept (`PIN_XATTR`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pin {
    /// Never evicted from flash.
    Flash,
    /// Evicted as soon as the bucket holds it, whatever the watermarks; reads of it do not
    /// bring it back (a change still does).
    S3,
    /// Evicted when flash is past its high watermark (no pin).
    #[default]
    Auto,
}

impl Pin {
    /// A pin's value, or `None` if it is not one.
    pub fn parse(value: &[u8]) -> Option<Pin> {
        match value {
            b"flash" => Some(Pin::Flash),
            b"s3" => Some(Pin::S3),
            b"auto" => Some(Pin::Auto),
            _ => None,
        }
    }

    /// The pin these attributes give a file.
    pub fn of(x: Option<&super::xattr::Xattrs>) -> Pin {
        x.and_then(|x| x.get(PIN_XATTR))
            .and_then(|v| Pin::parse(v))
            .unwrap_or_default()
    }
}

/// What the tier holds, for `cfs admin status` and `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TierUsage {
    /// Regular files whose current bytes are in the bucket, and those bytes.
    pub current_files: u64,
    pub current_bytes: u64,
    /// Regular files not (or no longer) in the bucket as they are, and their bytes: the
    /// upload queue.
    pub pending_files: u64,
    pub pending_bytes: u64,
    /// Uploads under way.
    pub uploading: u64,
    /// Object sets waiting to be deleted.
    pub doomed_sets: u64,
    /// The oldest pending file's ctime, seconds since the epoch (0: none pending).
    pub oldest_pending_secs: i64,
    /// Files evicted from flash (their bytes only in the bucket), and those bytes.
    pub evicted_files: u64,
    pub evicted_bytes: u64,
    /// Tiered mode: files kept on flash only because they changed or were used lately (not
    /// queued, and no part of the upload lag), and their bytes.
    pub flash_only_files: u64,
    pub flash_only_bytes: u64,
}
