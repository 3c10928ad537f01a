//! NFS state across MDS nodes: what this node asks the others about their clients' locks,
//! delegations, share reservations and open files, what it answers them (`peer_answers`, the
//! procedures it registers with the namespace's peer service), and the client addresses that
//! move to a surviving node (`addresses`). One node's own state is the folder above
//! (`StateManager`); each file here keeps the cross-node half of one kind of state.

pub mod addresses;
pub mod delegations;
pub mod holds;
pub mod in_use;
pub mod isolation;
pub mod locking;
pub(crate) mod nodes;
pub mod peer_answers;
pub mod peer_bodies;
pub mod shares;
