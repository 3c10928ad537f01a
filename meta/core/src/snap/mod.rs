//! Snapshots of the namespace (issue 48; `docs/plans/snapshots.md`): one shard's record of
//! its cuts (`ShardSnaps`), the pre-images that keep each cut's view while the live tables
//! move on (`Versions`), the copy-on-write layer that writes them (`preserving`), and the
//! reads of a key as it was at a cut (`view`), shard 0's registry of snapshots, whose
//! records carry the cross-shard protocol's decision (`registry`), and files' data images,
//! the bytes a snapshot reads once a file's bytes changed (`image`).
//!
//! A cut `S` records the shard's inode counter. After it, the first change of an inode, a
//! directory entry or an inode's extended attributes writes the value from before the change
//! into that key's versions at the shard's latest live cut. The value of a key at `S` is then
//! its version with the smallest id at or above `S`, else the live value: a version at `S'`
//! holds the value from before the first change after cut `S'`, so no version in `[S, S')`
//! means no change between `S` and `S'`, and none at all means no change since `S`.
//!
//! The name: "snapshot" already means openraft's snapshots and the read view
//! `read::Snapshot`, so these types are `Snap*`.

mod forward;
pub mod image;
mod preserving;
pub mod registry;
pub mod view;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::object::{Time, DRAIN_INO};
use crate::shard::ShardId;

pub(crate) use forward::forward_snap_state;
pub use image::{
    adopted, image_serves, image_uses, images_to_archive, needs_image, served_cuts,
    unserved_images, walk_images, DataImage, ImageForm, ImageUse, Images, ToArchive,
};
pub use preserving::Preserving;
pub use registry::{past_retention, Registry, SnapRecord, SnapState, FREEZE_MAX};
pub use view::{entry_at, inode_at, readdir_at, xattrs_at, ViewError};

/// A snapshot's id: shard 0's counter, one for the whole file system, never reused; 0 is none.
pub type SnapId = u64;

/// A pre-image: the key did not exist, or held this value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pre<T> {
    Absent,
    Was(T),
}

impl<T> Pre<T> {
    pub fn of(v: Option<T>) -> Pre<T> {
        match v {
            Some(v) => Pre::Was(v),
            None => Pre::Absent,
        }
    }

    pub fn value(&self) -> Option<&T> {
        match self {
            Pre::Absent => None,
            Pre::Was(v) => Some(v),
        }
    }
}

/// One key's pre-images by the cut they serve from. Kept whole per key (empty: none), so a
/// store changes a key's versions as it changes any value, and the copy-on-write test, the
/// read at a cut and a merge step are each one look at one list; a list is at most as long
/// as the number of cuts the key changed after.
pub type Versions<T> = BTreeMap<SnapId, Pre<T>>;

/// The versions of directory entries, by `(dir, name)`; each value an `(ino, cookie)`.
pub type EntryVersions = BTreeMap<(u64, Vec<u8>), Versions<(u64, u64)>>;

/// What a key's versions hang off, for listing the keys that have a version at one cut
/// (`StateStore::pre_keys_at`, the merge of a deleted snapshot).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PreKey {
    Inode(u64),
    Entry(u64, Vec<u8>),
    Xattrs(u64),
}

/// A shard's record of snapshot `S`, made by `Command::SnapCut`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cut {
    /// The shard's inode counter (`meta::NEXT_INO`, at least `ROOT_INO + 1`) at the cut:
    /// numbers come only from it and are never reused, so an inode numbered at or above it
    /// did not exist at the cut, and needs no pre-image.
    pub next_ino: u64,
    pub at: Time,
    /// Cross-shard decisions are allowed again (`SnapThaw`): every shard is cut.
    pub thawed: bool,
    /// The snapshot is being deleted (`SnapRetire`): no view any more, no new pre-images,
    /// its versions merge into the next older live cut (`SnapMerge`).
    pub retired: bool,
}

/// A shard held still for snapshot `snap`'s cut (`SnapFreeze`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freeze {
    pub snap: SnapId,
    pub since: Time,
}

/// One shard's snapshot state: its freeze, if any, and its cuts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardSnaps {
    pub freeze: Option<Freeze>,
    pub cuts: BTreeMap<SnapId, Cut>,
}

impl ShardSnaps {
    /// The newest cut that is not retired: the one changes are preserved for.
    pub fn latest(&self) -> Option<(SnapId, &Cut)> {
        self.cuts
            .iter()
            .rev()
            .find(|(_, c)| !c.retired)
            .map(|(s, c)| (*s, c))
    }

    /// The newest cut below `snap` that is not retired: where `snap`'s versions merge to.
    pub fn live_below(&self, snap: SnapId) -> Option<(SnapId, &Cut)> {
        self.cuts
            .range(..snap)
            .rev()
            .find(|(_, c)| !c.retired)
            .map(|(s, c)| (*s, c))
    }

    /// Whether a live cut still waits for its thaw: a cross-shard decision now could land
    /// after this shard's cut and before another's.
    pub fn unthawed(&self) -> bool {
        self.cuts.values().any(|c| !c.thawed && !c.retired)
    }
}

impl Cut {
    /// Whether `ino` (of this cut's shard) existed, or could have, at the cut. `DRAIN_INO`
    /// is no inode: the placement table's drain marks and the data key hang off it.
    pub fn born_before(&self, ino: u64) -> bool {
        ino != DRAIN_INO && ShardId::local(ino) < self.next_ino
    }
}
