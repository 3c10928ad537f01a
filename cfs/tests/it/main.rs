//! The cfs crate's integration tests as one test binary: each module here was its own
//! `tests/NAME.rs` binary, and each cost ~12 s of compile and link in CI's build step (and
//! compiled `common` again). Run one module with `cargo test --release -p cfs --test it NAME::`.
//!
//! Still their own binaries: `kerberos.rs` and `gateway_kerberos.rs`. Each sets up a realm in
//! the process environment (KRB5_CONFIG, KRB5CCNAME, ...), which the GSS-API in the test
//! process reads and every process a test starts inherits; two realms cannot share a process.
#[path = "../common/mod.rs"]
mod common;
#[path = "../../src/http_client.rs"]
#[allow(dead_code)]
mod http_client;

mod admin_http;
mod admin_status;
mod client_ops;
mod cluster_procs;
mod console_browser;
mod crash;
mod crate_arrows;
mod data_reduction;
mod deleg_timestamps;
mod dist_files;
mod docs_links;
mod drain;
mod ds_learns_mds;
mod ec_data_servers;
mod ec_encode;
mod ec_reads_export;
mod ec_repair;
mod export_usage;
mod files;
mod full_disk;
mod fuse_mount;
mod ganesha;
mod gateway_v3;
mod hostile_connections;
mod isolated_locks;
mod lagging_node;
mod mds_faults;
mod mds_membership;
mod metadata_cluster;
mod pnfs_client;
mod pnfs_data;
mod repair_across_nodes;
mod rmtree;
mod segment_repair;
mod snapshot_cli;
mod snapshot_cluster;
mod snapshot_restore;
mod snapshots;
mod tier_cache;
mod tier_evict;
mod tier_full;
mod tier_reduce;
mod tier_repair;
mod tier_snapshots;
mod tier_tiered;
