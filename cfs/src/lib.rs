//! The parts of the `cfs` binary that need none of its servers: the configuration file
//! (`config`), its Kerberos and encryption settings (`kerberos`, `encryption_config`), time and operation-name formatting
//! (`timefmt`, `op_names`), the small HTTP client of the admin commands (`http_client`) and
//! the cluster STATUS call with its printing (`admin`). They are a library so that their unit
//! tests build without the whole binary, and so that the tests and benchmark examples ask a
//! cluster's status the way `cfs admin status` does. Unsafe code:
//! only `timefmt`'s calls of libc's `localtime_r`, each with its SAFETY comment.
#![deny(unsafe_code)]

pub mod admin;
pub mod config;
pub mod encryption_config;
pub mod http_client;
pub mod kerberos;
pub mod op_names;
pub mod snapshot_config;
pub mod tier_config;
#[allow(unsafe_code)]
pub mod timefmt;
