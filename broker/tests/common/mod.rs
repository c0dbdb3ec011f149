//! Helpers shared by the broker's integration tests.

#![allow(dead_code)]

pub mod blocking_client;
pub mod http_client;
pub mod in_process_cluster;
pub mod native_client;
pub mod netns;
pub mod pre_raft;
pub mod process;
pub mod process_cluster;
pub mod raw_client;

#[allow(unused_imports)]
pub use process::*;
