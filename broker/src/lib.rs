//! The Fjord broker.
//!
//! - [`storage`]: partition logs on disk (segments, indexes, recovery, retention).

pub mod storage;
