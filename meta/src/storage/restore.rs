//! A node's metadata rebuilt from shard images kept in an object store (`cfs repair
//! --from-s3`, issue 45): the images' format ([`ShardImage`]), the rewrite that turns the state
//! of a lost site into one whose file bytes are all in the bucket ([`from_bucket`]), and the
//! store of a fresh data directory written from them ([`write`]).
//!
//! An image is a shard's dump as a snapshot carries it (`raft::machine::Dump`), taken under the
//! state's read lock, so it is the state at exactly one applied log index: a rebuilt shard is
//! a state the shard really had, never a mix. The rebuilt store has no log and no applied id:
//! the node that opens it starts its Raft groups afresh (index 1) on top of that state, which
//! is why the incarnation (`meta::TIER_INCARNATION`) goes up, so its images order after the
//! lost ones' in the bucket.
use std::path::Path;

use redb::{Database, Durability};

use crate::namespace::DB_FILE;
use crate::storage::store::{self, Db, RedbState, NODE, SHARDS};
use meta_core::state::{meta, MemState};
use meta_core::{FileKind, FsError, ShardId, Time};

/// One shard's state at one applied log index, as shipped to the object store.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardImage {
    pub shard: u16,
    /// The log id of the last entry the state holds (0, 0: nothing applied yet).
    pub term: u64,
    pub index: u64,
    /// The file system's incarnation in the object store (`meta::TIER_INCARNATION`).
    pub incarnation: u64,
    /// The state, as a snapshot encodes it.
    pub dump: Vec<u8>,
}

impl ShardImage {
    pub fn state(&self) -> Result<MemState, FsError> {
        crate::raft::machine::decode_state(&self.dump)
    }
}

/// What [`from_bucket`] did to a shard's files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rebuilt {
    /// Regular files now read from the bucket, and their bytes.
    pub evicted_files: u64,
    pub evicted_bytes: u64,
    /// Files changed after their last upload: they come back as the bucket holds them (an
    /// older version), (ino, size recorded, size in the bucket).
    pub older: Vec<(u64, u64, u64)>,
    /// Files none of whose bytes reached the bucket: they come back empty, (ino, size lost).
    pub lost: Vec<(u64, u64)>,
    /// Uploads under way at the image's time, whose objects are doomed (deleted after the
    /// grace delay by the rebuilt cluster).
    pub uploads_given_up: u64,
}

/// Rewrites the state of a lost site so that every regular file's bytes are the bucket's:
/// flash held them and is gone. Files whose current bytes are in the bucket become evicted
/// (read from it, brought back to flash as they are used); a file changed since its last
/// upload becomes that upload's bytes; a file with none comes back empty; all are reported,
/// never left to read as garbage. Where flash placed bytes (mirrors, stripes, the segments of
/// reduced files and the index of them), the NFS client records and the proposers' sessions
/// of the lost nodes are forgotten; the incarnation is set.
pub fn from_bucket(s: &mut MemState, incarnation: u64, now: Time) -> Rebuilt {
    let mut out = Rebuilt::default();
    s.chunks.clear();
    s.stripes.clear();
    keep_bucket_segments(s);
    s.clients.clear();
    s.sessions = Default::default();
    s.meta.insert(meta::TIER_INCARNATION, incarnation);
    let mut bytes = s.meta.get(meta::BYTES).copied().unwrap_or(0);
    for inode in s.inodes.values_mut() {
        if !matches!(inode.kind, FileKind::Regular) {
            continue;
        }
        let ino = inode.ino;
        let mut t = s.tier.remove(&ino).unwrap_or_default();
        if let Some(u) = t.upload.take() {
            t.doom(u.gen, u.pieces, now);
            out.uploads_given_up += 1;
        }
        t.wanted = false;
        let had = inode.size;
        // A reduced file whose copy is its segments (`meta_core::tiering`: a copy of no
        // pieces): it stays reduced, read from its segments in the bucket.
        let reduce = s.reduces.get_mut(&ino);
        let by_segments = t
            .copy
            .as_ref()
            .is_some_and(|c| c.pieces.is_empty() && (t.evicted || c.change == inode.change))
            && reduce.as_ref().is_some_and(|r| {
                r.is_reduced() && r.reduced().is_some_and(|d| d.len() == inode.size)
            });
        if let Some(r) = reduce {
            // Mirror copies were flash's; a reduce under way never finishes; one whose file
            // comes back from pieces no longer counts (its referrers are dropped).
            r.stale_copies.clear();
            if !by_segments && r.is_reduced() {
                r.retire();
            }
        }
        if s.reduces
            .get(&ino)
            .is_some_and(|r| r.reducing_since().is_some())
        {
            s.reduces.remove(&ino);
        }
        if by_segments {
            t.evicted = true;
            out.evicted_files += 1;
            out.evicted_bytes += had;
            s.tier.insert(ino, t);
            continue;
        }
        match &t.copy {
            Some(c) => {
                let held = c.bytes();
                if !t.evicted && c.change != inode.change {
                    out.older.push((ino, had, held));
                }
                // An empty copy needs nothing fetched: the file is whole on flash as it is
                // (and no read of it would ever ask for it back).
                t.evicted = held > 0;
                inode.size = held;
                if t.evicted {
                    out.evicted_files += 1;
                    out.evicted_bytes += held;
                }
            }
            None => {
                t.evicted = false;
                if had > 0 {
                    out.lost.push((ino, had));
                }
                inode.size = 0;
            }
        }
        if inode.size != had {
            bytes = bytes.saturating_sub(had).saturating_add(inode.size);
            inode.change += 1;
        }
        if !t.is_empty() {
            s.tier.insert(ino, t);
        }
    }
    s.meta.insert(meta::BYTES, bytes);
    out
}

/// The reduce index of a lost site: a segment whose object is verified in the bucket
/// (`SegmentBucket::Held`) stays, with no shard on flash. One whose upload may have begun
/// (`Sending`) stays `Dying`, whatever it was: its object may be there, named by nothing but
/// this record, and the deleting pass deletes it before it forgets the record. The rest go.
/// Only a `Live` segment keeps its referrers; the files that referred to one that did not
/// come back from their pieces, if any (`from_bucket`: no file's copy is its segments unless
/// every one was `Held`), and their referrers elsewhere are dropped by the reclaim pass as
/// `Gone`.
fn keep_bucket_segments(s: &mut MemState) {
    use meta_core::reduce_index::{SegmentBucket, SegmentState};
    s.segments.retain(|_, seg| {
        seg.placement.clear();
        seg.dropping.clear();
        match seg.bucket {
            SegmentBucket::Held => true,
            SegmentBucket::Sending => {
                seg.state = SegmentState::Dying;
                true
            }
            SegmentBucket::No => false,
        }
    });
    let segments = &s.segments;
    s.referrers
        .retain(|(id, _)| segments.get(id).is_some_and(|seg| seg.is_live()));
    s.index_chunks();
}

/// The reduced files of rebuilt shards (`states`, after `from_bucket`; `shard_count` the file
/// system's) whose copy is their segments and one of whose segments its shard's image does
/// not hold as `Live` and `Held`: the images are of different times, and the segment's shard
/// shipped before the segment was recorded there. Nothing names that segment's object any
/// more (its key needs the record), so such a file comes back empty and is reported lost, as a
/// file none of whose bytes reached the bucket; its reduce is retired, and the reclaim pass
/// drops its referrers on the segments that are there. Returns (ino, size lost) of each.
pub fn drop_unheld_segments(states: &mut [(u16, MemState)], shard_count: u16) -> Vec<(u64, u64)> {
    use meta_core::reduce_index::SegmentBucket;
    let held = |id: &meta_core::reduce_index::SegmentId| {
        let shard = ShardId::of_segment(id, shard_count).0;
        states
            .iter()
            .find(|(s, _)| *s == shard)
            .and_then(|(_, st)| st.segments.get(id))
            .is_some_and(|g| g.is_live() && g.bucket == SegmentBucket::Held)
    };
    let mut missing: Vec<(usize, u64)> = Vec::new();
    for (i, (_, st)) in states.iter().enumerate() {
        for (ino, r) in &st.reduces {
            let by_segments = st
                .tier
                .get(ino)
                .is_some_and(|t| t.evicted && t.copy.as_ref().is_some_and(|c| c.pieces.is_empty()));
            let Some(d) = r.reduced().filter(|_| r.is_reduced() && by_segments) else {
                continue;
            };
            if !d.segments().iter().all(held) {
                missing.push((i, *ino));
            }
        }
    }
    let mut lost = Vec::new();
    for (i, ino) in missing {
        let s = &mut states[i].1;
        if let Some(r) = s.reduces.get_mut(&ino) {
            r.retire();
        }
        if let Some(t) = s.tier.get_mut(&ino) {
            t.evicted = false;
            t.copy = None;
        }
        let Some(inode) = s.inodes.get_mut(&ino) else {
            continue;
        };
        let had = inode.size;
        inode.size = 0;
        inode.change += 1;
        let bytes = s.meta.get(meta::BYTES).copied().unwrap_or(0);
        s.meta.insert(meta::BYTES, bytes.saturating_sub(had));
        lost.push((ino, had));
    }
    lost
}

/// Writes a fresh node store in `dir` (which must hold none) holding `shards` of a file system
/// of `shard_count` shards; shards not given start empty.
pub fn write(dir: &Path, shard_count: u16, shards: &[(u16, MemState)]) -> Result<(), FsError> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(DB_FILE);
    if path.exists() {
        return Err(FsError::Exists);
    }
    let db = Database::create(&path).db()?;
    let mut txn = db.begin_write().db()?;
    txn.set_durability(Durability::Immediate);
    store::create_tables(&txn)?;
    txn.open_table(NODE)
        .db()?
        .insert(SHARDS, u64::from(shard_count))
        .db()?;
    for (id, s) in shards {
        {
            let mut st = RedbState::open(&txn, ShardId(*id))?;
            store::write_whole(&mut st, s)?;
        }
        store::set_sessions(&txn, ShardId(*id), &s.sessions.encode()?)?;
    }
    txn.commit().db()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use meta_core::{apply, Command, CreateHow, TierPiece, ROOT_INO};

    fn create(s: &mut MemState, name: &str) -> u64 {
        apply(
            s,
            &Command::Create {
                parent: ROOT_INO,
                name: name.into(),
                kind: FileKind::Regular,
                mode: 0o640,
                uid: 7,
                gid: 8,
                time: Time::new(2, 0),
                how: CreateHow::Guarded,
            },
        )
        .unwrap();
        s.dirents[&(ROOT_INO, name.as_bytes().to_vec())].0
    }

    /// A file system holding one 70-byte file reduced (epoch 5) to `segments`, whose tier copy
    /// (generation 4, current) is its segments: a copy of no pieces. Returns it and the file.
    fn reduced_by_segments(
        segments: Vec<meta_core::reduce_index::SegmentId>,
        stale_copies: Vec<u64>,
        evicted: bool,
    ) -> (MemState, u64) {
        let mut s = MemState::default();
        apply(
            &mut s,
            &Command::InitRoot {
                fs_id: 3,
                time: Time::new(1, 0),
            },
        )
        .unwrap();
        let ino = create(&mut s, "reduced");
        s.inodes.get_mut(&ino).unwrap().size = 70;
        s.reduces.insert(
            ino,
            meta_core::FileReduce {
                epoch: 5,
                state: meta_core::ReduceState::Reduced(meta_core::Reduced {
                    len: 70,
                    recipe: vec![1],
                    segments,
                }),
                stale_copies,
                retired: false,
            },
        );
        let change = s.inodes[&ino].change;
        s.tier.insert(
            ino,
            meta_core::FileTier {
                copy: Some(meta_core::TierCopy {
                    gen: 4,
                    change,
                    pieces: Vec::new(),
                    at: Time::new(3, 0),
                }),
                evicted,
                ..Default::default()
            },
        );
        (s, ino)
    }

    /// A reduced file whose copy is its segments comes back reduced, read from the bucket:
    /// the segments verified there stay (with no shard on flash), the others and their
    /// referrers go.
    #[test]
    fn a_reduced_file_comes_back_from_its_segments() {
        use meta_core::reduce_index::{Referrer, Segment, SegmentBucket, SegmentId, SegmentState};
        let (held, sent) = (SegmentId([6; 32]), SegmentId([7; 32]));
        let (mut s, ino) = reduced_by_segments(vec![held], vec![9], false);
        let me = Referrer { ino, epoch: 5 };
        for (id, bucket) in [(held, SegmentBucket::Held), (sent, SegmentBucket::Sending)] {
            let seg = Segment {
                chunks: [(
                    meta_core::reduce_index::ChunkId(id.0),
                    meta_core::reduce_index::ChunkSlot {
                        index: 0,
                        raw_len: 70,
                    },
                )]
                .into(),
                placement: vec![1, 2, 3],
                stored_len: 40,
                state: SegmentState::Live,
                origin: me,
                bucket,
                dropping: Vec::new(),
            };
            s.segments.insert(id, seg);
            s.referrers.insert((id, me));
        }
        s.index_chunks();
        let r = from_bucket(&mut s, 2, Time::new(9, 0));
        assert_eq!((r.evicted_files, r.evicted_bytes), (1, 70));
        assert!(r.lost.is_empty() && r.older.is_empty());
        assert_eq!(s.inodes[&ino].size, 70);
        assert!(s.tier[&ino].evicted);
        let red = &s.reduces[&ino];
        assert!(red.is_reduced() && red.stale_copies.is_empty());
        // The segment whose upload began stays for the deleting pass (its object may be in
        // the bucket, named by nothing else), no longer findable by dedup.
        assert_eq!(
            s.segments.keys().copied().collect::<Vec<_>>(),
            vec![held, sent]
        );
        assert!(s.segments[&held].is_live() && !s.segments[&sent].is_live());
        assert!(
            s.segments.values().all(|g| g.placement.is_empty()),
            "no shard on flash"
        );
        assert_eq!(s.referrers.len(), 1);
        assert_eq!(s.chunk_index.len(), 1);
    }

    /// Shard images of different times: the file's shard saw its reduce finish and its copy
    /// uploaded, the segment's shard shipped before the segment was recorded there. The file
    /// comes back empty and reported, not as a recipe naming a segment nothing holds.
    #[test]
    fn a_reduced_file_whose_segment_no_image_holds_is_reported_lost() {
        use meta_core::reduce_index::{Referrer, Segment, SegmentBucket, SegmentId, SegmentState};
        const SHARDS: u16 = 4;
        // Two segments on two other shards' images: one holds its segment, one does not.
        let (here, gone) = (SegmentId([1; 32]), SegmentId([2; 32]));
        let (sh, sg) = (
            ShardId::of_segment(&here, SHARDS).0,
            ShardId::of_segment(&gone, SHARDS).0,
        );
        assert!(sh != sg && sh != 0 && sg != 0, "{sh} {sg}: pick other ids");
        let (mut s, ino) = reduced_by_segments(vec![here, gone], Vec::new(), true);
        s.meta.insert(meta::BYTES, 70);
        let mut other = MemState::default();
        other.segments.insert(
            here,
            Segment {
                chunks: Default::default(),
                placement: Vec::new(),
                stored_len: 40,
                state: SegmentState::Live,
                origin: Referrer { ino, epoch: 5 },
                bucket: SegmentBucket::Held,
                dropping: Vec::new(),
            },
        );
        let mut states = vec![(0, s), (sh, other), (sg, MemState::default())];
        let whole = states.clone();
        // With both segments held, nothing changes.
        let mut both = whole.clone();
        let seg = both[1].1.segments[&here].clone();
        both[2].1.segments.insert(gone, seg);
        assert!(drop_unheld_segments(&mut both, SHARDS).is_empty());
        assert!(both[0].1.reduces[&ino].is_reduced());

        assert_eq!(drop_unheld_segments(&mut states, SHARDS), vec![(ino, 70)]);
        let s = &states[0].1;
        assert_eq!(s.inodes[&ino].size, 0);
        assert!(s.inodes[&ino].change > whole[0].1.inodes[&ino].change);
        assert_eq!(s.meta[&meta::BYTES], 0);
        assert!(
            !s.reduces[&ino].is_reduced(),
            "its referrers go by the reclaim pass"
        );
        assert!(!s.tier[&ino].evicted && s.tier[&ino].copy.is_none());
        assert_eq!(
            states[1].1.segments, whole[1].1.segments,
            "the segment that is there stays"
        );
    }

    fn uploaded(s: &mut MemState, ino: u64, len: u64) {
        let change = s.inodes[&ino].change;
        let step = |s: &mut MemState, c: &Command| apply(s, c).unwrap();
        step(
            s,
            &Command::TierBegin {
                ino,
                change,
                pieces: 1,
                time: Time::new(3, 0),
                by: 1,
            },
        );
        let gen = s.tier[&ino].upload.unwrap().gen;
        step(
            s,
            &Command::TierDone {
                ino,
                gen,
                pieces: vec![TierPiece { len, sum: [1; 32] }],
                time: Time::new(4, 0),
            },
        );
    }

    #[test]
    fn every_file_comes_back_as_the_bucket_holds_it_and_the_rest_is_reported() {
        let mut s = MemState::default();
        apply(
            &mut s,
            &Command::InitRoot {
                fs_id: 3,
                time: Time::new(1, 0),
            },
        )
        .unwrap();
        let (current, changed, never, empty) = (
            create(&mut s, "current"),
            create(&mut s, "changed"),
            create(&mut s, "never"),
            create(&mut s, "empty"),
        );
        for (ino, size) in [(current, 100), (changed, 50), (never, 9)] {
            s.inodes.get_mut(&ino).unwrap().size = size;
        }
        uploaded(&mut s, current, 100);
        uploaded(&mut s, changed, 50);
        let i = s.inodes.get_mut(&changed).unwrap();
        i.size = 80;
        i.change += 1;
        s.chunks.insert((current, 0), vec![4, 5]);
        let reduced = meta_core::FileReduce {
            epoch: 5,
            state: meta_core::ReduceState::Reduced(meta_core::Reduced {
                len: 100,
                recipe: vec![1],
                segments: vec![meta_core::reduce_index::SegmentId([6; 32])],
            }),
            stale_copies: Vec::new(),
            retired: false,
        };
        s.reduces.insert(current, reduced);
        let r = from_bucket(&mut s, 2, Time::new(9, 0));
        assert_eq!(r.evicted_files, 2);
        assert_eq!(r.evicted_bytes, 150);
        assert_eq!(r.older, vec![(changed, 80, 50)]);
        assert_eq!(r.lost, vec![(never, 9)]);
        assert!(s.tier[&current].evicted && s.tier[&changed].evicted);
        assert_eq!(s.inodes[&changed].size, 50);
        assert_eq!(s.inodes[&never].size, 0);
        assert!(!s.tier.contains_key(&never) && !s.tier.contains_key(&empty));
        assert!(s.chunks.is_empty());
        assert!(
            s.reduces[&current].retired,
            "its reduce no longer counts: the file is its pieces"
        );
        assert_eq!(s.meta[meta::TIER_INCARNATION], 2);
        // The rewritten state travels as an image and back.
        let image = ShardImage {
            shard: 0,
            term: 1,
            index: 9,
            incarnation: 2,
            dump: crate::raft::machine::encode_state(&s).unwrap(),
        };
        assert_eq!(image.state().unwrap().dump(), s.dump());
    }
}
