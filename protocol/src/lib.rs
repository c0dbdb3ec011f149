//! Fjord's native binary protocol, sans-I/O.
//!
//! This crate turns bytes into typed values and back. It never touches a socket or a
//! file and has no async runtime, so the broker, the client, the benchmarks and the
//! fuzzers all share one codec. `docs/protocol.md` draws every byte layout.
//!
//! Modules:
//! - [`wire`]: primitive readers and writers (big-endian integers, strings, bytes,
//!   arrays) and the [`wire::DecodeError`] every decoder returns.
//! - [`limits`]: the `*_MAX` constants that bound every length and count read off the wire.
//! - [`frame`]: length-prefixed frames, request and response headers, and the
//!   incomplete / complete / invalid frame decoder.
//! - [`api`]: API keys and the version ranges this build speaks.
//! - [`error`]: the stable wire error-code enum.
//! - [`batch`]: Kafka RecordBatch v2 builder, zero-copy view and in-place stamping.
//! - [`messages`]: request and response bodies, one module per API.
//!
//! Byte order: every integer of the protocol, in frames, messages and record batches,
//! is big-endian (network byte order). The record batch layout is Kafka's and is
//! big-endian already; using the same order everywhere means one set of helpers and
//! no place where a reader has to wonder which order applies.

pub mod api;
pub mod batch;
pub mod error;
pub mod frame;
pub mod limits;
pub mod messages;
pub mod wire;

pub use api::ApiKey;
pub use batch::{BatchBuilder, Record, RecordBatch, RecordBatchError};
pub use error::ErrorCode;
pub use frame::{Decoded, RequestHeader, ResponseHeader};
pub use wire::DecodeError;
