//! Fjord benchmarks.
//!
//! - `benches/codec.rs`: criterion benchmarks of the record batch codec (build, validate,
//!   CRC-32C, record iteration).
//! - `benches/storage.rs`: criterion benchmarks of the partition log (append under both
//!   durability policies, sequential reads, offset lookups).
//! - `examples/recovery.rs`: how long opening a 1 GiB log takes after a clean shutdown
//!   and after a crash.
//! - `scripts/disk-limits.sh`: the raw limits of the disk the figures are compared with.
//! - [`fixtures`]: the workloads and scratch directories they share.
//! - [`load`]: `fjord-bench`, the load generator (binary `src/bin/fjord-bench.rs`).
//!
//! `docs/benchmarks.md` has the method and the latest figures.

pub mod fixtures;
pub mod load;
