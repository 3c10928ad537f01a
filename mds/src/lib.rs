//! mds

pub mod namespace;
