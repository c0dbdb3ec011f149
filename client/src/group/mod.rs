//! Consumer groups: members of a group share the partitions of the topics they
//! subscribe to, as the group's coordinator (a broker) assigns them, and store how far
//! they got as committed offsets.
//!
//! - `config`: [`GroupConsumerConfig`].
//! - `event`: [`RebalanceEvent`], what the rebalance listener hears.
//! - `coordinator`: finding the group's coordinator and sending it requests.
//! - `membership`: the background heartbeat task and the state it shares.
//! - `commit`: committing and fetching offsets, with their retries.
//! - `consumer`: [`GroupConsumer`], acting on assignments inside `poll`.
//! - `admin`: group operations of [`Admin`](crate::Admin): list, describe, offsets,
//!   reset.
//!
//! The protocol (ConsumerGroupHeartbeat and friends, incremental rebalancing) is
//! described in `docs/protocol.md`, section 5.8.

mod admin;
mod commit;
mod config;
mod consumer;
mod coordinator;
mod event;
mod membership;

pub use admin::{GroupDescription, GroupListing, GroupMember, OffsetReset as GroupOffsetReset};
pub use config::GroupConsumerConfig;
pub use consumer::{CommitHandle, GroupConsumer};
pub use event::RebalanceEvent;
