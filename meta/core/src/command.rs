//! The commands that change the namespace: what a proposer asks of a shard, and what the
//! log replicates.

use serde::{Deserialize, Serialize};

use super::coding::Encoded;
use super::error::FsError;
use super::object::{FileKind, Inode, Outcome, SetTime, Time, DRAIN_INO, NAME_MAX, ROOT_INO};
use super::perm::Cred;
use super::reduce_index::{Referrer, SegmentId, SegmentTierStep, StoredSegment};
use super::reducing::RecipePart;
use super::sessions::ClientRequest;
use super::shard::{Key, ShardId};
use super::snap::SnapId;
use super::tiering::TierPiece;
use super::txn::{TxnId, TxnPart};
use super::xattr::How as XattrHow;

/// How `Create` treats an existing name (NFSv4 createmode4, plus plain CREATE as `Guarded`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CreateHow {
    /// Fail with `Exists` if the name exists.
    Guarded,
    /// If the name is an existing regular file and a regular file is asked for, succeed with
    /// `created == false` and the existing inode (OPEN UNCHECKED4). Otherwise `Exists`.
    Unchecked,
    /// If the name is an existing regular file created with the same verifier, succeed with
    /// `created == false` (a retransmission); otherwise `Exists`.
    Exclusive([u8; 8]),
}

impl CreateHow {
    /// Whether creating a `kind` object this way over the existing `existing` opens it (true)
    /// or fails with `Exists`.
    pub fn reuses(self, existing: &Inode, kind: &FileKind) -> bool {
        let both_regular = existing.kind == FileKind::Regular && *kind == FileKind::Regular;
        match self {
            CreateHow::Guarded => false,
            CreateHow::Unchecked => both_regular,
            CreateHow::Exclusive(v) => both_regular && existing.create_verifier == Some(v),
        }
    }
}

/// Every mutation of the namespace. Times are chosen by the proposer and carried here, inode
/// numbers are allocated by `apply` in the shard's own counter, so `apply` is a pure function of
/// (state, command) and a new leader of a shard never reissues a number.
///
/// A command names every object it touches (`keys`), so which shards it needs follows from the
/// command alone. Where the proposer resolved a name to decide what to do (the entry a removal
/// takes away, the source and target of a rename), the command carries what it found, and
/// `apply` refuses with `FsError::Changed` if the name has meanwhile come to mean something
/// else; the proposer then looks again.
///
/// The encoding (postcard) is what the log replicates: variants and fields are only ever added
/// at the end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Creates the root directory; issued by `Namespace::open` on an empty store.
    InitRoot { fs_id: u64, time: Time },
    /// Creates `name` in `parent` as a new inode numbered from the parent's shard's counter.
    Create {
        parent: u64,
        name: Vec<u8>,
        kind: FileKind,
        mode: u32,
        uid: u32,
        gid: u32,
        time: Time,
        how: CreateHow,
    },
    /// Adds a hard link `parent/name` to the non-directory `ino`.
    Link {
        ino: u64,
        parent: u64,
        name: Vec<u8>,
        time: Time,
    },
    /// Removes the non-directory entry `parent/name`, which must be `child` (`IsDir` on a
    /// directory).
    Unlink {
        parent: u64,
        name: Vec<u8>,
        child: u64,
        time: Time,
    },
    /// Removes the empty directory `parent/name`, which must be `child` (`NotDir` on anything
    /// else, `NotEmpty` if it has entries).
    Rmdir {
        parent: u64,
        name: Vec<u8>,
        child: u64,
        time: Time,
    },
    /// NFSv4 REMOVE: `Unlink` or `Rmdir` depending on what `child` is.
    Remove {
        parent: u64,
        name: Vec<u8>,
        child: u64,
        time: Time,
    },
    /// Moves `src_parent/src_name` (which must be `src`) to `dst_parent/dst_name` (which must be
    /// `dst`: the object it replaces, or `None` when the name is free).
    Rename {
        src_parent: u64,
        src_name: Vec<u8>,
        src: u64,
        dst_parent: u64,
        dst_name: Vec<u8>,
        dst: Option<u64>,
        time: Time,
    },
    SetAttr {
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<SetTime>,
        mtime: Option<SetTime>,
        time: Time,
    },
    /// Records data writes ending at `end_offset`: size = max(size, end), mtime and ctime move,
    /// and the change attribute moves by `writes` (at least 1): one command carries every WRITE
    /// since the last one for the file, and clients saw the change move on each of them.
    Write {
        ino: u64,
        end_offset: u64,
        time: Time,
        writes: u64,
    },
    /// Deletes an orphan: a regular file whose last link went, or an orphan directory
    /// (`Detach`) once it is empty (`NotEmpty` before). `Invalid` if it still has links.
    Forget { ino: u64 },
    /// Records which DSs hold chunk `chunk` of regular file `ino` (empty: forget the record).
    SetMirrors {
        ino: u64,
        chunk: u64,
        mirrors: Vec<u64>,
    },
    /// Does nothing; useful as a barrier.
    Noop,
    /// `Forget` of each listed inode that is still an orphan; any other is skipped, so one
    /// stale entry cannot cost the rest. The reaper's batch: one log record, not one per file.
    ForgetOrphans { inos: Vec<u64> },
    /// `cmd` on behalf of `cred`: `apply` checks Linux's permission rules (`perm`) against the
    /// state it changes, and makes the change as Linux would for that caller (set-id bits
    /// cleared, a new object's owner and group). Commands without it are the server's own.
    As { cred: Cred, cmd: Box<Command> },
    /// Marks data server `ds` as being drained (`draining`), or no longer: no new file is
    /// placed on it and its copies move to other data servers (`mds::dataservers::drain`). Kept in
    /// the placement table under `DRAIN_INO`, an inode number no file has (chunk = the DS id),
    /// so the mark is replicated, checkpointed and restored with the records it is about.
    SetDrain { ds: u64, draining: bool },
    /// Starts encoding `ino` (mirrored now) as groups `[first, end)` (first = 0: the whole
    /// file) with `k`+`m` shards of 2^`unit_shift` bytes per stripe on `placement`
    /// (`coding::begin`).
    BeginEncode {
        ino: u64,
        first: u64,
        end: u64,
        k: u8,
        m: u8,
        unit_shift: u8,
        placement: Vec<u64>,
        time: Time,
    },
    /// The encode of epoch `epoch` finished: these groups' shards are durable with these sums,
    /// and the file's mirrors no longer count.
    FinishEncode {
        ino: u64,
        epoch: u64,
        done: Vec<Encoded>,
    },
    /// The encode of epoch `epoch` is given up: the file stays mirrored, the shards are dropped.
    AbortEncode { ino: u64, epoch: u64 },
    /// Shard `shard` of group `group` failed its checksum: to repair.
    ShardBad {
        ino: u64,
        epoch: u64,
        group: u64,
        shard: u8,
    },
    /// Shard `shard` of every group was rebuilt on `ds` (and checked against its sums).
    ShardMoved {
        ino: u64,
        epoch: u64,
        shard: u8,
        ds: u64,
    },
    /// The mirror copies made redundant by the encode of `epoch` are deleted.
    CopiesTrimmed { ino: u64, epoch: u64 },
    /// The shards of retired epoch `epoch` are deleted: the record goes.
    ShardsDropped { ino: u64, epoch: u64 },
    /// MDS node `node` confirmed the NFS clients `add` (their owners) and forgot `remove`:
    /// the clients that may reclaim state after the node restarts, or after another node took
    /// over its address (`mds::state::remote::addresses`). On shard 0, replicated like everything else, so a
    /// survivor knows a dead node's clients.
    ClientRecords {
        node: u64,
        add: Vec<Vec<u8>>,
        remove: Vec<Vec<u8>>,
    },
    /// Node `to` took over node `from`'s client address: `from`'s client records become
    /// `to`'s (they reclaim there).
    TakeOverClients { from: u64, to: u64 },
    /// `cmd` (a `Create`) with its new inode numbered in `shard`'s counter instead of its
    /// parent's: a new directory placed on another shard (`Namespace::place`).
    Place { shard: ShardId, cmd: Box<Command> },
    /// Cross-shard transaction `txn` locks `keys` (all of this shard; `txn` module).
    TxnLock {
        txn: TxnId,
        coord: ShardId,
        keys: Vec<Key>,
        time: Time,
    },
    /// The coordinating shard records `txn`'s commit with every shard's writes.
    TxnDecide {
        txn: TxnId,
        parts: Vec<TxnPart>,
        time: Time,
    },
    /// The coordinating shard records an abort of `txn` unless it decided already.
    TxnResolve { txn: TxnId, time: Time },
    /// This shard's writes of the committed `txn`; its locks go.
    TxnCommit { txn: TxnId, part: TxnPart },
    /// This shard's locks of the aborted `txn` go.
    TxnAbort { txn: TxnId },
    /// The coordinating shard forgets `txn`'s decision (carried out everywhere).
    TxnForget { txn: TxnId },
    /// `cmd` on behalf of NFS client request `req`: applied at most once however often the
    /// client sends the request, through whichever node (a session that outlived its node,
    /// `mds::state::adopt`). The shard keeps the answer of each request that succeeded
    /// (`sessions::Answers`) and answers a copy with it. `answer`: what the request is
    /// answered when it is not `cmd`'s own outcome (a transaction's decision carries the
    /// outcome the coordinator computed). Wrapping a transaction's `TxnLock` on its
    /// coordinating shard only asks: a request answered already fails it with
    /// `FsError::Answered`.
    Request {
        req: ClientRequest,
        /// When the node proposed it: answers are kept `sessions::ANSWER_KEEP` after.
        at: Time,
        cmd: Box<Command>,
        answer: Option<Box<Outcome>>,
    },
    /// Takes the directory `parent/name` (which must be `child`) out of the tree with whatever
    /// it holds: the name goes and the parent's link count and times change as for `Rmdir`,
    /// and the directory stays as an orphan directory (nlink 0, in the orphans table) that
    /// keeps its entries, gets no new names, and is emptied and then `Forget`-ten by the
    /// reclaimer (`namespace::rmtree`). The server's own (an administrator's `cfs admin
    /// rmtree`), never a client's: `NotDir` on anything but a directory.
    Detach {
        parent: u64,
        name: Vec<u8>,
        child: u64,
        time: Time,
    },
    /// `SetMirrors`, if chunk `chunk`'s record is still `expect` (empty: no record); else
    /// `Changed` and nothing changes. Every MDS node places and re-places files, each under
    /// its own lock only: two nodes that read the same record and decide differently (the
    /// first placement of a new file, or each seeing another mirror's DS down in a partition)
    /// must not both be recorded, or the bytes one node's clients wrote where only it pointed
    /// would be lost. The loser reads the record again.
    ReplaceMirrors {
        ino: u64,
        chunk: u64,
        expect: Vec<u64>,
        mirrors: Vec<u64>,
    },
    /// Sets extended attribute `name` of `ino` to `value` as `how` says (`xattr::set`); the
    /// file's ctime and change move (Linux's setxattr).
    SetXattr {
        ino: u64,
        name: Vec<u8>,
        value: Vec<u8>,
        how: XattrHow,
        time: Time,
    },
    /// Removes extended attribute `name` of `ino` (`NoXattr` if it has none of that name).
    RemoveXattr { ino: u64, name: Vec<u8>, time: Time },
    /// `Write` by a writer that keeps the file's times itself and reported them (a holder of
    /// delegated timestamps, RFC 9754): size = max(size, end) and the change attribute moves
    /// by `writes`, but mtime and ctime stay as they are: a time taken now would be later
    /// than the writes, and override the holder's.
    WriteKeepingTimes {
        ino: u64,
        end_offset: u64,
        writes: u64,
    },
    /// Starts the upload of `ino` to the object store as it is at change attribute `change`, in
    /// `pieces` objects of a new generation (`tiering`).
    TierBegin {
        ino: u64,
        change: u64,
        pieces: u64,
        time: Time,
        /// The uploading node's instance (`TierUpload::by`).
        by: u64,
    },
    /// The upload of generation `gen` is in the bucket with these pieces' lengths and sums; it
    /// counts if the file did not change meanwhile, else its objects are doomed.
    TierDone {
        ino: u64,
        gen: u64,
        pieces: Vec<TierPiece>,
        time: Time,
    },
    /// The upload of generation `gen` is given up: its objects are doomed.
    TierAbort { ino: u64, gen: u64, time: Time },
    /// `ino` is gone: every object of it is doomed.
    TierDoom { ino: u64, time: Time },
    /// The objects of doomed generation `gen` of `ino` are deleted from the bucket.
    TierDeleted { ino: u64, gen: u64 },
    /// `ino`'s bytes are to leave flash: its copy `gen` is current at change `change`.
    TierEvict { ino: u64, gen: u64, change: u64 },
    /// Someone needs the evicted `ino` back on flash.
    TierWant { ino: u64 },
    /// The evicted `ino`'s copy `gen` is back on flash.
    TierRestored { ino: u64, gen: u64 },
    /// Adds `referrer` to segment `segment`'s set, on `shard` (`ShardId::of_segment`;
    /// `reduce_index`). The first referrer creates the record and carries the segment as
    /// stored (`stored`: its chunks and placement; a later one's is ignored, its chunks
    /// checked). `FsError::Changed` if the segment is `Dying` or gone (and `stored` is `None`):
    /// the reducer stores its chunks anew. A referrer already there: nothing changes.
    /// `Outcome::created` says whether this command created the record.
    AddReferrer {
        shard: ShardId,
        segment: SegmentId,
        stored: Option<StoredSegment>,
        referrer: Referrer,
    },
    /// Removes `referrer` from segment `segment`'s set (nothing if it is not there, or the
    /// record is gone); the set left empty turns the segment `Dying` in the same apply.
    DropReferrer {
        shard: ShardId,
        segment: SegmentId,
        referrer: Referrer,
    },
    /// The `Dying` segment `segment`'s shards are deleted: the record goes (`Invalid` while it
    /// is `Live`; nothing if it is gone already).
    ForgetSegment { shard: ShardId, segment: SegmentId },
    /// Starts reducing `ino` (mirrored now) at a new epoch (`reducing`): `Unavailable` while
    /// it has an encoding or reduce record, `Invalid` if it has no mirrors, `Changed` if it is
    /// evicted.
    BeginReduce { ino: u64, time: Time },
    /// The reduce of epoch `epoch` finished: the file's `len` bytes are `recipe`'s
    /// (`reduce::recipe`'s encoding, at most `reducing::MAX_RECIPE_LEN` bytes), over
    /// `segments` (every segment it names, at most `reducing::MAX_REDUCE_SEGMENTS`), whose
    /// referrers `(ino, epoch)` are in the index; the file's mirrors no longer count.
    /// `Changed` if that reduce is not under way or the file changed since it began.
    FinishReduce {
        ino: u64,
        epoch: u64,
        len: u64,
        recipe: Vec<u8>,
        segments: Vec<SegmentId>,
    },
    /// The reduce of epoch `epoch` is given up (nothing if it is not under way; `Changed` if
    /// it finished).
    AbortReduce { ino: u64, epoch: u64 },
    /// The mirror copies made redundant by the reduce of `epoch` are deleted.
    ReduceCopiesTrimmed { ino: u64, epoch: u64 },
    /// The referrers `(ino, epoch)` of every segment of the retired reduce of `epoch` are
    /// dropped from the index: the record goes (once no mirror copy is left to trim).
    ReferrersDropped { ino: u64, epoch: u64 },
    /// Records the cluster's data key, wrapped by the operator's key-encryption key
    /// (`[encryption] key_file`), if the one recorded now is `expect` (`None`: none yet): the
    /// first node with a key file makes the key, a rotation re-wraps it. Kept as an
    /// attribute of `DRAIN_INO`, which no file has, so it is replicated, checkpointed and
    /// restored (and shipped to the object store) with the rest of shard 0.
    SetDataKey {
        wrapped: Vec<u8>,
        expect: Option<Vec<u8>>,
    },
    /// Shard `index` of the `Live` segment `segment` (on `shard`) was rebuilt on data server
    /// `to`: its placement names `to` there instead of `from`. `Changed` if the record no
    /// longer names `from` there, or the segment is `Dying` or gone (the rebuilt shard is then
    /// the mover's to delete: no record names it); `Invalid` if `to` holds another of its
    /// shards.
    SegmentMoved {
        shard: ShardId,
        segment: SegmentId,
        index: u8,
        from: u64,
        to: u64,
    },
    /// Holds shard `shard` still for the cut of snapshot `snap` (`snap`): its ordinary
    /// commands and `TxnLock` answer `Busy`, its `TxnDecide` `Aborted`, until `SnapCut` or
    /// `SnapAbort`. `Busy` while another snapshot's freeze is on; `Invalid` for snapshot 0 or
    /// one older than a cut here. Frozen or cut for `snap` already: nothing changes.
    SnapFreeze {
        shard: ShardId,
        snap: SnapId,
        time: Time,
    },
    /// Cuts the shard, frozen for `snap`, at its present state: records its inode counter and
    /// ends the freeze, and from then on the first change of each inode, entry and set of
    /// extended attributes keeps a pre-image for `snap`. Cut already: nothing changes;
    /// `Invalid` if the shard is not frozen for `snap`.
    SnapCut {
        shard: ShardId,
        snap: SnapId,
        time: Time,
    },
    /// Every shard is cut for `snap`: this one decides cross-shard transactions again
    /// (`Invalid` if it has no cut `snap`).
    SnapThaw { shard: ShardId, snap: SnapId },
    /// Snapshot `snap` is given up before its cut: the freeze for it ends (nothing if there
    /// is none; `Invalid` if the shard is cut for `snap`: the snapshot was decided).
    SnapAbort { shard: ShardId, snap: SnapId },
    /// Snapshot `snap` is being deleted: no read at it any more, no new pre-image for it, and
    /// its pre-images are to merge (`SnapMerge`). Nothing if the shard has no cut `snap`.
    SnapRetire { shard: ShardId, snap: SnapId },
    /// Merges up to `max` of the retired `snap`'s pre-images into the newest live cut below
    /// it, or drops those no live snapshot reads (`apply::snap::merge`). `Invalid` unless
    /// `snap` is a retired cut.
    SnapMerge {
        shard: ShardId,
        snap: SnapId,
        max: u32,
    },
    /// Forgets the retired cut `snap`, which has no pre-image left (`NotEmpty` before;
    /// `Invalid` if it is not retired; nothing if it is gone already).
    SnapForget { shard: ShardId, snap: SnapId },
    /// Shard 0 (the registry, `snap::registry`): begins snapshot `name` (unique among the
    /// records not aborted, `Exists` otherwise; a name as `check_name` allows) shown at the
    /// directory `root` (which the proposer checked: it may live on another shard), kept
    /// `retain_secs`. Takes the next id of `meta::NEXT_SNAP` and records it `Pending`; the
    /// proposer reads the id back by name. `NoSpace` at `registry::MAX_SNAPSHOTS` records.
    SnapBegin {
        name: Vec<u8>,
        root: u64,
        retain_secs: u64,
        time: Time,
    },
    /// Shard 0: the commit point of snapshot `snap`, every shard frozen and drained: `Pending`
    /// becomes `Decided`. `Aborted` if it was aborted (or is unknown), or if `time` is more
    /// than `registry::FREEZE_MAX` after its begin; decided already: nothing changes.
    SnapDecide { snap: SnapId, time: Time },
    /// Shard 0: a recovery's question about snapshot `snap`, whose coordinator seems gone:
    /// aborts it unless decided (`TxnResolve`'s rule). Nothing changes otherwise.
    SnapResolve { snap: SnapId, time: Time },
    /// Shard 0: every shard is cut for the decided `snap`: it becomes `Ready` (ready or being
    /// deleted already: nothing changes; `Invalid` if it was not decided).
    SnapReady { snap: SnapId, time: Time },
    /// Shard 0: the ready `snap` is to be deleted: it becomes `Deleting`, for the merge of its
    /// pre-images on every shard. `Busy` while it is being made, `Invalid` if it was aborted,
    /// `NotFound` if there is no such record; being deleted already: nothing changes.
    SnapDelete { snap: SnapId, time: Time },
    /// Shard 0: forgets the record of `snap`, aborted, or being deleted once no shard has its
    /// cut any more (the proposer sees to that); `Invalid` in any other state, nothing if it
    /// is gone already.
    SnapForgetRecord { snap: SnapId },
    /// A step of segment `segment`'s tiering (on `shard`): its upload begun or verified in
    /// the bucket, its flash dropped or freed or written again (`reduce_index::SegmentTierStep`, whose
    /// comment says when each is refused). `Changed` if the segment is gone or not in the
    /// state the step needs.
    SegmentTier {
        shard: ShardId,
        segment: SegmentId,
        step: SegmentTierStep,
    },
    /// The gate before `ino`'s bytes change (`snap::image`): makes an image of the file at
    /// the shard's latest live cut if `snap::needs_image` says it needs one (`created`), and
    /// nothing otherwise. A mirrored file's image is a new object (numbered from the shard's
    /// inode counter) to be linked on its mirrors, recorded `linking`; a file without data
    /// gets an `Empty` image. `Invalid` for anything but a regular file, and (until the plan's
    /// step 7) for an erasure-coded, reduced or evicted one. The server's own.
    SnapKeep { ino: u64, time: Time },
    /// Every mirror of `ino`'s image at `snap` linked its object: it is no longer `linking`
    /// (`NotFound` without that image, `Invalid` if it is not mirrored; done already: nothing
    /// changes).
    SnapKept { ino: u64, snap: SnapId },
    /// `ino`'s mirrored image at `snap` is on `mirrors` now, if it was on `expect` (`Changed`
    /// otherwise, and nothing changes), as `ReplaceMirrors` for a live file: repair and drain
    /// move image objects too. `Invalid` if `mirrors` is empty or the image is not mirrored.
    SnapImageMirrors {
        ino: u64,
        snap: SnapId,
        expect: Vec<u64>,
        mirrors: Vec<u64>,
    },
    /// A part of the reduce of epoch `epoch` of `ino` made in parts (a file too large for one
    /// recipe, `reducing`): `part` covers the file's bytes from the end of the previous part
    /// (0 for the first); `last` finishes the reduce, as `FinishReduce` does, and must end at
    /// the file's size (any other part must end before it). `Changed` if that reduce is not
    /// under way or the file changed since it began; `Invalid` for a gap, an overlap, a part
    /// out of bounds or past `reducing::MAX_REDUCE_PARTS`.
    ReducePart {
        ino: u64,
        epoch: u64,
        part: RecipePart,
        last: bool,
    },
    /// `SnapKeep` on a server that keeps file bytes in its own chunk store (no data servers,
    /// so no placement rows): a file with bytes (size above 0) gets a mirrored image with no
    /// `mirrors`, its object in that store, `linking`; one of size 0, `Empty`.
    SnapKeepLocal { ino: u64, time: Time },
    /// `ino`'s image at `snap` is read by no live cut any more (`snap::image_serves`) and its
    /// object was deleted (on each mirror, or in the server's own store): the record goes.
    /// `Invalid` while a live cut reads it or it is `linking`; gone already: nothing changes.
    SnapImageGone { ino: u64, snap: SnapId },
    /// Orphan `ino` (a regular file at nlink 0 that nobody has open) is about to lose its
    /// bytes: if a live cut saw it linked and no image serves that cut (`snap::needs_image`),
    /// its bytes become the image at the shard's latest live cut, under the file's own object
    /// id (`created`), so the reaper forgets it without deleting its data; else nothing.
    /// `local` as for `SnapKeepLocal`. `Invalid` for a file that is not an orphan, and (until
    /// the plan's step 7) for an erasure-coded, reduced or evicted one. The server's own.
    SnapAdopt { ino: u64, time: Time, local: bool },
    /// `ino`'s settled mirrored image at `snap` is in the object store now as `copy`
    /// (snap-to-object): it becomes `InBucket`, its flash copies still listed until
    /// `SnapImageFlashFreed`. `Invalid` for a `linking` image or one of another form; in the
    /// bucket already: nothing changes (the first copy recorded counts).
    SnapImageArchived {
        ino: u64,
        snap: SnapId,
        copy: crate::tiering::TierCopy,
    },
    /// The flash copies of `ino`'s image at `snap`, in the bucket, were deleted.
    SnapImageFlashFreed { ino: u64, snap: SnapId },
}

impl Command {
    /// Every object this command reads or changes; the shards it needs are theirs.
    pub fn keys(&self) -> Vec<Key> {
        use Key::{Entries, Inode as I, NewInode};
        match self {
            Command::InitRoot { .. } => vec![I(ROOT_INO), Entries(ROOT_INO)],
            Command::Create { parent, .. } => vec![
                I(*parent),
                Entries(*parent),
                NewInode(ShardId::of_ino(*parent)),
            ],
            Command::Link { ino, parent, .. } => vec![I(*ino), I(*parent), Entries(*parent)],
            Command::Unlink { parent, child, .. }
            | Command::Rmdir { parent, child, .. }
            | Command::Remove { parent, child, .. } => {
                // A directory's own entries go with it (it must be empty).
                vec![I(*parent), Entries(*parent), I(*child), Entries(*child)]
            }
            // The directory keeps its entries: they are not touched.
            Command::Detach { parent, child, .. } => {
                vec![I(*parent), Entries(*parent), I(*child)]
            }
            Command::Rename {
                src_parent,
                src,
                dst_parent,
                dst,
                ..
            } => {
                let mut k = vec![
                    I(*src_parent),
                    Entries(*src_parent),
                    I(*src),
                    I(*dst_parent),
                    Entries(*dst_parent),
                ];
                if let Some(d) = dst {
                    k.extend([I(*d), Entries(*d)]);
                }
                k.sort();
                k.dedup();
                k
            }
            Command::SetAttr { ino, .. }
            | Command::Write { ino, .. }
            | Command::WriteKeepingTimes { ino, .. }
            | Command::SetMirrors { ino, .. }
            | Command::ReplaceMirrors { ino, .. }
            | Command::BeginEncode { ino, .. }
            | Command::FinishEncode { ino, .. }
            | Command::AbortEncode { ino, .. }
            | Command::ShardBad { ino, .. }
            | Command::ShardMoved { ino, .. }
            | Command::CopiesTrimmed { ino, .. }
            | Command::ShardsDropped { ino, .. }
            | Command::SetXattr { ino, .. }
            | Command::RemoveXattr { ino, .. }
            | Command::TierBegin { ino, .. }
            | Command::TierDone { ino, .. }
            | Command::TierAbort { ino, .. }
            | Command::TierDoom { ino, .. }
            | Command::TierDeleted { ino, .. }
            | Command::TierEvict { ino, .. }
            | Command::TierWant { ino }
            | Command::TierRestored { ino, .. }
            | Command::BeginReduce { ino, .. }
            | Command::FinishReduce { ino, .. }
            | Command::AbortReduce { ino, .. }
            | Command::ReduceCopiesTrimmed { ino, .. }
            | Command::ReferrersDropped { ino, .. }
            | Command::SnapKeep { ino, .. }
            | Command::SnapKept { ino, .. }
            | Command::SnapImageMirrors { ino, .. }
            | Command::ReducePart { ino, .. }
            | Command::SnapKeepLocal { ino, .. }
            | Command::SnapImageGone { ino, .. }
            | Command::SnapImageArchived { ino, .. }
            | Command::SnapImageFlashFreed { ino, .. }
            | Command::SnapAdopt { ino, .. } => vec![I(*ino)],
            // An orphan directory must be empty to go, and its cookie counter goes with it.
            Command::Forget { ino } => vec![I(*ino), Entries(*ino)],
            Command::Noop => Vec::new(),
            Command::ForgetOrphans { inos } => inos.iter().map(|i| I(*i)).collect(),
            Command::As { cmd, .. } | Command::Request { cmd, .. } => cmd.keys(),
            Command::SetDrain { .. } | Command::SetDataKey { .. } => vec![I(DRAIN_INO)],
            Command::ClientRecords { .. } | Command::TakeOverClients { .. } => {
                vec![Key::Clients]
            }
            Command::Place { shard, cmd } => cmd
                .keys()
                .into_iter()
                .map(|k| match k {
                    NewInode(_) => NewInode(*shard),
                    other => other,
                })
                .collect(),
            Command::AddReferrer { shard, .. }
            | Command::DropReferrer { shard, .. }
            | Command::ForgetSegment { shard, .. }
            | Command::SegmentMoved { shard, .. }
            | Command::SegmentTier { shard, .. } => vec![Key::Segments(*shard)],
            // The shard a transaction's step goes to is named by the step itself.
            Command::TxnLock { keys, .. } => keys.clone(),
            Command::TxnCommit { part, .. } => vec![Key::NewInode(part.shard)],
            Command::TxnDecide { .. }
            | Command::TxnResolve { .. }
            | Command::TxnAbort { .. }
            | Command::TxnForget { .. } => Vec::new(),
            // A shard's snapshot step, routed as a transaction's commit step is.
            Command::SnapFreeze { shard, .. }
            | Command::SnapCut { shard, .. }
            | Command::SnapThaw { shard, .. }
            | Command::SnapAbort { shard, .. }
            | Command::SnapRetire { shard, .. }
            | Command::SnapMerge { shard, .. }
            | Command::SnapForget { shard, .. } => vec![Key::NewInode(*shard)],
            Command::SnapBegin { .. }
            | Command::SnapDecide { .. }
            | Command::SnapResolve { .. }
            | Command::SnapReady { .. }
            | Command::SnapDelete { .. }
            | Command::SnapForgetRecord { .. } => vec![Key::NewInode(ShardId(0))],
        }
    }

    /// The directory whose shard coordinates this command when it runs as a transaction, and
    /// so keeps its client request's answer (`Command::Request`): the parent, for a rename the
    /// source's. A client sending a removal or rename again finds the name gone; the answer is
    /// then looked for there (`Namespace::answered_here`). `None`: the lowest shard involved.
    pub fn home(&self) -> Option<u64> {
        match self {
            Command::Create { parent, .. }
            | Command::Link { parent, .. }
            | Command::Unlink { parent, .. }
            | Command::Rmdir { parent, .. }
            | Command::Remove { parent, .. }
            | Command::Detach { parent, .. } => Some(*parent),
            Command::Rename { src_parent, .. } => Some(*src_parent),
            Command::As { cmd, .. } | Command::Request { cmd, .. } | Command::Place { cmd, .. } => {
                cmd.home()
            }
            _ => None,
        }
    }

    /// Whether this is a step of a cross-shard transaction, which `apply` runs unguarded.
    pub fn is_txn_step(&self) -> bool {
        if let Command::Request { cmd, .. } = self {
            return cmd.is_txn_step();
        }
        matches!(
            self,
            Command::TxnLock { .. }
                | Command::TxnDecide { .. }
                | Command::TxnResolve { .. }
                | Command::TxnCommit { .. }
                | Command::TxnAbort { .. }
                | Command::TxnForget { .. }
        )
    }

    /// The shard a snapshot step is for, if this is one (`snap`): it changes only that
    /// shard's snapshot state (shard 0's registry, for the registry's steps), runs in every
    /// phase of a cut, and keeps no pre-image.
    pub fn snap_step(&self) -> Option<ShardId> {
        match self {
            Command::SnapFreeze { shard, .. }
            | Command::SnapCut { shard, .. }
            | Command::SnapThaw { shard, .. }
            | Command::SnapAbort { shard, .. }
            | Command::SnapRetire { shard, .. }
            | Command::SnapMerge { shard, .. }
            | Command::SnapForget { shard, .. } => Some(*shard),
            Command::SnapBegin { .. }
            | Command::SnapDecide { .. }
            | Command::SnapResolve { .. }
            | Command::SnapReady { .. }
            | Command::SnapDelete { .. }
            | Command::SnapForgetRecord { .. } => Some(ShardId(0)),
            Command::Request { cmd, .. } => cmd.snap_step(),
            _ => None,
        }
    }

    /// The segment a data-reduction index command is about and the shard it names, which the
    /// proposer checks against the file system's shard count (`ShardId::of_segment`): the
    /// state machine does not know the count, and a record on the wrong shard would be
    /// found by lookups but never by the drops routed to the right one.
    pub fn segment_route(&self) -> Option<(ShardId, &SegmentId)> {
        match self {
            Command::AddReferrer { shard, segment, .. }
            | Command::DropReferrer { shard, segment, .. }
            | Command::ForgetSegment { shard, segment }
            | Command::SegmentMoved { shard, segment, .. }
            | Command::SegmentTier { shard, segment, .. } => Some((*shard, segment)),
            Command::As { cmd, .. } | Command::Request { cmd, .. } => cmd.segment_route(),
            _ => None,
        }
    }

    /// The shards `keys` fall in, each once, in order.
    pub fn shards(&self) -> Vec<ShardId> {
        let mut s: Vec<ShardId> = self.keys().into_iter().map(Key::shard).collect();
        s.sort();
        s.dedup();
        s
    }

    /// The compact on-disk and on-wire form (postcard).
    pub fn encode(&self) -> Result<Vec<u8>, FsError> {
        postcard::to_stdvec(self).map_err(|e| FsError::Io(format!("encode command: {e}")))
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, FsError> {
        postcard::from_bytes(bytes).map_err(|e| FsError::Corrupt(format!("command: {e}")))
    }
}

/// Checks a name in `apply` (the protocol layer checks UTF-8 and "."/"..").
pub fn check_name(name: &[u8]) -> Result<(), FsError> {
    if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
        return Err(FsError::Invalid);
    }
    if name.len() > NAME_MAX {
        return Err(FsError::NameTooLong);
    }
    Ok(())
}
