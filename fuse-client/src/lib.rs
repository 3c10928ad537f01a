//! FUSE client with an RDMA fast path; its issue has not come yet, so this crate is empty.
#![forbid(unsafe_code)]
