//! NFSv3 gateway over the client library; its issue has not come yet, so this crate is empty.
#![forbid(unsafe_code)]
