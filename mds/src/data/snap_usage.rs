//! The bytes each snapshot holds (`cfs admin snapshot list`, docs/plans/snapshots.md §3.8):
//! its **unique** bytes are what deleting it would free, its **shared** bytes those it holds
//! with the live files or with other snapshots. Both count the data images some live cut
//! reads (`snap::image_uses`), as raw bytes of disk on every copy (a mirrored image twice),
//! or, for an image moved to the object store, the bytes the bucket holds of it:
//! - an image that serves one snapshot is that snapshot's: the chunk files it shares with the
//!   file (hard links, `SHARDPROC_OBJSTAT`'s `shared_bytes`: bytes the file has not
//!   rewritten since) are shared, the rest unique;
//! - an image that serves several is shared by each of them.
//!
//! A file unchanged since a cut has no image: the snapshot reads the live file's bytes and
//! holds none of its own, so it is not counted. One walk asks every image's copies (O(chunks)
//! `stat`s on each data server), so its result is kept a minute (`KEEP`), and a walk stops at
//! `MAX_IMAGES`, its numbers then a lower bound (`exact: false`), as they are when a copy
//! cannot be asked or a shard is not on this node.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use layout::DsId;
use meta_core::snap::{ImageForm, ImageUse, SnapId};

use super::{Data, DataPath};

/// How long one walk's numbers are shown before the next walk.
const KEEP: Duration = Duration::from_secs(60);
/// Images one walk asks about.
const MAX_IMAGES: usize = 10_000;
/// OBJSTAT calls in flight at once.
const IN_FLIGHT: usize = 8;

/// A snapshot's bytes (module comment).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapBytes {
    pub unique: u64,
    pub shared: u64,
}

/// One walk's result.
#[derive(Clone, Debug)]
pub struct SnapUsage {
    pub by_snap: BTreeMap<SnapId, SnapBytes>,
    /// Every image was counted on every copy (else the numbers are a lower bound).
    pub exact: bool,
    at: Instant,
}

/// An image's bytes: all of them, and those shared with another object, with whether every
/// copy answered.
#[derive(Clone, Copy, Debug, Default)]
struct ImageBytes {
    bytes: u64,
    shared: u64,
    exact: bool,
}

impl Data {
    /// Each snapshot's unique and shared bytes (module comment): a walk at most `KEEP` old,
    /// or, `fresh`, a new one (an administrator's `snapshot list`; the console, which asks
    /// every few seconds, takes the kept one).
    pub async fn snapshot_usage(&self, fresh: bool) -> SnapUsage {
        let mut kept = self.snap_usage.lock().await;
        if let Some(u) = kept.as_ref().filter(|u| !fresh && u.at.elapsed() < KEEP) {
            return u.clone();
        }
        let u = self.walk_usage().await;
        *kept = Some(u.clone());
        u
    }

    async fn walk_usage(&self) -> SnapUsage {
        let (uses, mut exact) = match self
            .ns
            .snapshot()
            .and_then(|s| s.image_uses(MAX_IMAGES, self.ns.shard_count()))
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("snapshot usage: the images cannot be read: {e}");
                (Vec::new(), false)
            }
        };
        let sized: Vec<(ImageUse, ImageBytes)> = stream::iter(uses)
            .map(|u| async move {
                let b = self.image_bytes(&u).await;
                (u, b)
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        let mut by_snap: BTreeMap<SnapId, SnapBytes> = BTreeMap::new();
        for (u, b) in sized {
            exact &= b.exact;
            if let [only] = u.served[..] {
                let s = by_snap.entry(only).or_default();
                s.unique += b.bytes.saturating_sub(b.shared);
                s.shared += b.shared;
            } else {
                for snap in u.served {
                    by_snap.entry(snap).or_default().shared += b.bytes;
                }
            }
        }
        SnapUsage {
            by_snap,
            exact,
            at: Instant::now(),
        }
    }

    /// The bytes image `u` holds (module comment).
    async fn image_bytes(&self, u: &ImageUse) -> ImageBytes {
        let (object, mirrors) = match &u.form {
            ImageForm::Empty => {
                return ImageBytes {
                    exact: true,
                    ..ImageBytes::default()
                }
            }
            ImageForm::InBucket { copy, .. } => {
                return ImageBytes {
                    bytes: copy.bytes(),
                    shared: 0,
                    exact: true,
                }
            }
            ImageForm::Mirrored {
                object, mirrors, ..
            } => (*object, mirrors),
        };
        let mut out = ImageBytes {
            exact: true,
            ..ImageBytes::default()
        };
        match &self.path {
            DataPath::Local(store) => match store.object_stat(object).await {
                Ok(st) => {
                    out.bytes = st.bytes;
                    out.shared = st.shared_bytes;
                }
                Err(e) => {
                    tracing::debug!(object, "snapshot usage: object stat: {e}");
                    out.exact = false;
                }
            },
            DataPath::Cluster(c) => {
                for ds in mirrors.iter().map(|d| DsId(*d)) {
                    if c.written_off(ds) {
                        continue;
                    }
                    match c.object_stat_on(ds, object).await {
                        Ok(st) => {
                            out.bytes += st.bytes;
                            out.shared += st.shared_bytes;
                        }
                        Err(_) => out.exact = false,
                    }
                }
            }
        }
        out
    }
}
