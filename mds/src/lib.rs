//! The metadata server: NFSv4.1/4.2 over the namespace state machine (`meta`). File data lives
//! in an in-process chunk store (the single-node default) or on data servers, which clients reach
//! through pNFS flexfiles layouts (`cluster`, `ops::pnfs`).
//!
//! Read from the top: `start` runs a node (`Server`); `server`, `compound` and `ops` answer NFS
//! requests with the `node`'s parts (`Mds`); `state` keeps the clients' NFS state (`NfsState`);
//! `cluster` is the control plane of the data servers; `data`, `fh`, `export`, `space`,
//! `limits` and `error` are the leaves. `laundromat` and `orphans` run off the request path.
pub mod config;
pub mod data;
pub mod dataservers;
pub mod error;
pub mod export;
pub mod fh;
mod laundromat;
pub mod limits;
pub mod nfs;
pub mod node;
mod orphans;
pub mod rmtree;
pub mod space;
mod start;
pub mod state;

// What `cfs` still reaches through `mds` until it uses the admin API (issue 42).
pub use meta::{namespace, raft};

pub use config::ServerConfig;
pub use limits::{DEFAULT_LEASE_SECONDS, MAX_IO};
pub use node::{Mds, ServerError};
pub use start::Server;
