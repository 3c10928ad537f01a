//! The object-store tier's foundation (issue 45, item 1): self-describing, checksummed objects
//! on any S3-compatible store, spoken to with GET, PUT and DELETE only.
//!
//! - `config.rs`: endpoint, bucket, region and credentials (configuration first, then the AWS
//!   environment variables), timeouts, the concurrency bound, the retry bounds.
//! - `store.rs`: [`Store`]: `put`, `get`, `get_range`, `delete`, at most `max_in_flight` at
//!   once, each attempt under a deadline, transient failures retried with backoff; `header`
//!   and `read_payload`, a verified ranged read of an object's payload.
//! - `retry.rs`: exponential backoff with full jitter.
//! - `object.rs`: the object format: a header naming file, segment, byte range and generation,
//!   with the payload's, each 1 MiB block's and its own blake3; `encode`, and a `decode` that
//!   verifies everything; version 3 is the sealed form.
//! - `seal.rs`: [`SealKey`], derived from the cluster's data key: sealed objects are XChaCha20
//!   ciphertext with keyed-BLAKE3 sums (encrypt-then-MAC), so the bucket holds no plaintext.
//! - `keys.rs`: keys as a pure function of (kind, file, segment, generation), spread over
//!   65,536 hash prefixes.
//! - `connector.rs`: the HTTP client the SDK is given (hyper 1, rustls on ring).
//!
//! **Hand-written vs. from crates.** From crates: S3 request building, SigV4 signing and XML
//! error parsing (`aws-sdk-s3`, default features off), HTTP/1.1 (`hyper`, `hyper-util`), TLS
//! (`rustls` with the `ring` provider, system roots via `hyper-rustls`), hashing (`blake3`).
//! Ours: the object format and key scheme, the retry loop, timeouts and concurrency bound
//! (the SDK's own retries and timeouts are off, so there is one policy and its counts are
//! ours), error classification, and the small SDK-to-hyper adapter that keeps `aws-lc-sys`
//! (a C/cmake build) out of the tree, which the SDK's bundled client cannot.
//!
//! **Why GET, PUT and DELETE only.** These three are what every S3-compatible store implements
//! alike and what S3 makes strongly consistent per key. No multipart: an object is written
//! whole or not at all, so no half-uploaded parts to find and abort after a crash, and ~64 MiB
//! objects fit one PUT. No LIST on any path that matters, recovery included: listing is slow,
//! paginated, billed per thousand, and on some stores only eventually consistent; a key here is
//! derived from what it holds (`keys.rs`), so whoever has the metadata computes it, and whoever
//! lost the metadata can still verify each object it finds from its own header (`object.rs`).
//!
//! The MDS uses it for file data (`mds/src/tiering/`); metadata objects are to come.
#![forbid(unsafe_code)]

pub mod config;
mod connector;
pub mod error;
pub mod keys;
pub mod object;
mod retry;
pub mod seal;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{Credentials, RetryPolicy, TierConfig};
pub use error::TierError;
pub use keys::{KeySpace, ObjectId};
pub use object::{FormatError, Header, Kind, Object, Sealing};
pub use seal::SealKey;
pub use store::Store;
