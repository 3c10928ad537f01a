//! The parts of the `cfs` binary that need none of its servers: the configuration file
//! (`config`), its Kerberos settings (`kerberos`), time and operation-name formatting
//! (`timefmt`, `op_names`) and the small HTTP client of the admin commands (`http_client`).
//! They are a library so that their unit tests build without the whole binary. Unsafe code:
//! only `timefmt`'s calls of libc's `localtime_r`, each with its SAFETY comment.
#![deny(unsafe_code)]

pub mod config;
pub mod http_client;
pub mod kerberos;
pub mod op_names;
pub mod tier_config;
#[allow(unsafe_code)]
pub mod timefmt;
