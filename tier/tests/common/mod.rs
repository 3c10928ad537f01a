//! Test helpers: a real S3 server (moto) as a child process, and a fault proxy in front of it.
#![allow(dead_code)]

pub mod moto;
pub mod proxy;
