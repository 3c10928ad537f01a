//! Wire formats of ClaudeFS: XDR, ONC RPC, and the NFS protocols it speaks.
//! Protocol decoding lives here and nowhere else.
#![forbid(unsafe_code)]

// Lets `#[derive(Xdr)]` (which names `::proto::xdr`) be used inside this crate too.
extern crate self as proto;

pub mod bufpool;
pub mod cluster;
pub mod fabric;
pub mod nfs3;
pub mod nfs3_client;
pub mod nfs4;
pub mod nlm;
pub mod peer;
pub mod portmap;
pub mod rpc;
pub mod shard;
pub mod xdr;

pub use xdr_derive::Xdr;
