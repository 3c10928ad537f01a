//! The metadata server: NFSv4.1/4.2 over the namespace state machine (`meta`). File data lives
//! in an in-process chunk store (the single-node default) or on data servers, which clients reach
//! through pNFS flexfiles layouts (`dataservers`, `nfs::ops::pnfs`).
//!
//! Read from the top: `start` runs a node (`Server`); `nfs` answers NFS requests with the
//! `node`'s parts (`Mds`); `state` keeps the clients' NFS state under one owner (`NfsState`);
//! `dataservers` is the control plane of the data servers; `data`, `fh`, `export`, `space`,
//! `limits` and `error` are the leaves. `laundromat` and `orphans` run off the request path.
//!
//! The public surface is what `cfs` uses: `Server`, `config` and `admin` (which carries
//! `cfs repair --from-s3`'s rebuild, `meta_store::repair_from`); plus what the fuzz
//! targets in mds/fuzz decode (`fh`, `state::remote::peer_bodies`).
pub mod admin;
pub mod config;
mod data;
mod dataservers;
mod error;
mod evicted;
mod export;
pub mod fh;
mod laundromat;
mod limits;
mod meta_store;
mod nfs;
mod node;
mod orphans;
mod rmtree;
mod space;
mod start;
pub mod state;
mod tier_set;
mod tiering;
mod usage;

pub use config::ServerConfig;
pub use node::ServerError;
pub use start::Server;
