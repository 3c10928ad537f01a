//! The mds crate's integration tests as one test binary: each module here was its own
//! `tests/NAME.rs` binary, and each cost ~12 s of compile and link in CI's build step (and
//! compiled `common` again). Run one module with `cargo test --release -p mds --test it NAME::`.
//!
//! `reply_cache_memory` measures the growth of a process's RSS around an in-process server, so
//! its test runs this binary again with only itself (other tests' servers would count).
#[path = "../common/mod.rs"]
mod common;

mod client_identity;
mod cluster_status;
mod confinement;
mod courtesy;
mod deleg_timestamps;
mod delegation;
mod dir_delegation;
mod exports;
mod hostile;
mod layout_stateid;
mod open_create;
mod open_unlinked;
mod pnfs;
mod posix_perm;
mod reclaim_records;
mod reply_cache_memory;
mod secinfo;
mod session_limits;
mod snapshots;
mod write_delegation;
mod xattrs;
