//! For tests of this crate and of the servers above it (feature `testing`): a real S3 server
//! (moto) as a child process, and a fault proxy in front of it. Not an in-process mock: the
//! store under test speaks HTTP to a real S3 implementation.

pub mod moto;
pub mod proxy;
