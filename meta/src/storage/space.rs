//! What the storage asks of whoever keeps space for metadata: the log and the checkpoints
//! must never meet ENOSPC half way (redb cannot go on after a failed write).

/// What the namespace asks of whoever keeps space for metadata (`mds::space::Space`).
pub trait SpaceGuard: Send + Sync + std::fmt::Debug {
    /// A metadata write met ENOSPC: free reserved space; false when none is left.
    fn release(&self) -> bool;
    /// Whether a checkpoint may write now, freeing reserved space if that makes room. redb
    /// cannot go on after a failed write without being reopened, so it must not meet ENOSPC.
    fn room_for_checkpoint(&self) -> bool;
}
