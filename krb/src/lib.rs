//! RPCSEC_GSS version 1 (RFC 2203) with Kerberos 5, on the system's GSS-API (MIT krb5 through
//! `libgssapi`): krb5 (a MIC over every call's header and every reply's sequence number),
//! krb5i (arguments and results under a MIC too) and krb5p (arguments and results encrypted).
//!
//! - `GssLayer` wraps any `proto::rpc::CallHandler` (the MDS, a data server): RPCSEC_GSS calls
//!   are verified and unwrapped, and reach the handler with `Call::gss` set to the caller's
//!   principal, service and local ids; other flavors pass through.
//! - `GssClient` is the client side, for the Rust client library: contexts from the user's
//!   ticket cache, calls signed or wrapped, replies checked.
//! - `IdentityConfig` maps principals to local users.
//!
//! The wire formats are in `proto::rpc::gss`.
#![forbid(unsafe_code)]

mod client;
mod contexts;
pub mod identity;
mod name;
mod server;
mod window;

pub use client::{GssClient, GssClientError, Ticket};
pub use contexts::is_sealed;
pub use identity::{Identity, IdentityConfig, Target};
pub use server::{Acceptor, AcceptorConfig, Counters, GssLayer};
pub use window::{SeqWindow, WINDOW};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum KrbError {
    #[error("GSS-API, {what}: {err}")]
    Gss {
        what: &'static str,
        err: libgssapi::error::Error,
    },
    #[error("principal {0:?} maps to no local user and there is no fallback")]
    NoIdentity(String),
    #[error("bad principal name {0:?}")]
    BadName(String),
    #[error("a krb5p body that is not encrypted")]
    NotSealed,
    #[error("a reply this layer cannot parse")]
    BadReply,
    #[error("a context's lock was poisoned")]
    Poisoned,
}

impl KrbError {
    fn gss(what: &'static str) -> impl Fn(libgssapi::error::Error) -> KrbError {
        move |err| KrbError::Gss { what, err }
    }
}

/// The pseudo-flavors Linux and SECINFO use for the three services (RFC 2623 §2.2.1).
pub const PSEUDO_KRB5: u32 = 390003;
pub const PSEUDO_KRB5I: u32 = 390004;
pub const PSEUDO_KRB5P: u32 = 390005;

/// The Kerberos 5 mechanism's OID as SECINFO carries it (the DER value without tag and
/// length, as Linux's `gss_mech_info2flavor` compares it).
pub const KRB5_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02];

/// Points the GSS-API at a keytab other than `/etc/krb5.keytab`. MIT krb5 reads it from the
/// environment (`KRB5_KTNAME`) when it first needs keys, and libgssapi offers no way to pass
/// it per credential, so call this at process start, before any thread is spawned.
pub fn use_keytab(path: &std::path::Path) {
    std::env::set_var("KRB5_KTNAME", format!("FILE:{}", path.display()));
}
