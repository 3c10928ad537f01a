//! This node's disks: the log every shard's Raft group appends to (`log`, over the segment
//! files of `wal`, with openraft's view of it in `log_store`), the checkpoints of every
//! shard's state into redb (`checkpoint`, over the tables of `store`), the types of the
//! replicated entries (`entry`, and those of older builds still read, `legacy`), and each shard's live state (`shard`). Nothing here sends a
//! message or proposes a command: replication (`raft`) and the facade (`namespace`) sit above.

pub mod checkpoint;
pub mod entry;
pub mod legacy;
pub mod log;
pub mod log_store;
pub mod mend;
pub mod restore;
pub mod shard;
pub mod space;
pub mod store;
pub mod wal;
