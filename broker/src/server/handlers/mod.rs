//! Request handlers, one module per API group. Each turns a decoded request into a
//! response frame (or none, for produce with acks=0).

mod admin;
mod fetch;
mod groups;
mod list_offsets;
mod produce;
mod produce_rules;

use std::net::SocketAddr;

use fjord_protocol::ErrorCode;
use fjord_protocol::messages::Request;
use tokio::sync::watch;

use super::handles::Handles;
use super::order::Turn;
use super::response::ResponseFrame;
use crate::metadata::Listener;

/// The answer to a request that knows leader epoch `known` of a partition now at
/// `current` (Produce, Fetch, ListOffsets): `FENCED_LEADER_EPOCH` when the request's
/// view is older, `UNKNOWN_LEADER_EPOCH` when it is newer than this broker's (this
/// broker has not learned of a leader change, or was cut off from the cluster); `None`
/// when they match, or `known` is negative (no check).
fn leader_epoch_error(known: i32, current: i32) -> Option<ErrorCode> {
    if known < 0 || known == current {
        None
    } else if known < current {
        Some(ErrorCode::FencedLeaderEpoch)
    } else {
        Some(ErrorCode::UnknownLeaderEpoch)
    }
}

/// Who sent a request: from its header and its connection.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub correlation_id: i32,
    pub client_id: Option<String>,
    pub peer: SocketAddr,
    /// The listener the connection came in on: metadata answers give brokers' addresses
    /// for that listener.
    pub listener: Listener,
    /// Turns true when the broker begins to shut down (parked fetches answer then).
    pub shutdown: watch::Receiver<bool>,
}

/// Handles one request. `turn` is its place in its connection's chain for its kind
/// (see [`super::order`]); handlers whose effects need no order just drop it.
pub async fn handle(
    handles: &Handles,
    context: &RequestContext,
    request: Request,
    turn: Turn,
) -> Option<ResponseFrame> {
    let correlation_id = context.correlation_id;
    match request {
        Request::ApiVersions(_) => Some(admin::api_versions(correlation_id)),
        Request::Metadata(request) => Some(admin::metadata(handles, context, request).await),
        Request::CreateTopics(request) => {
            Some(admin::create_topics(handles, correlation_id, request).await)
        }
        Request::DeleteTopics(request) => {
            Some(admin::delete_topics(handles, correlation_id, request).await)
        }
        Request::Produce(request) => produce::handle(handles, correlation_id, request, turn).await,
        Request::Fetch(request) => Some(fetch::handle(handles, context, request, turn).await),
        Request::ListOffsets(request) => {
            Some(list_offsets::handle(handles, correlation_id, request))
        }
        Request::FindCoordinator(request) => {
            Some(groups::find_coordinator(handles, context, request).await)
        }
        Request::ConsumerGroupHeartbeat(request) => {
            Some(groups::heartbeat(handles, context, request).await)
        }
        Request::OffsetCommit(request) => {
            Some(groups::offset_commit(handles, context, request).await)
        }
        Request::OffsetFetch(request) => Some(groups::offset_fetch(handles, context, request)),
        Request::ListGroups(request) => Some(groups::list_groups(handles, context, request)),
        Request::DescribeGroups(request) => {
            Some(groups::describe_groups(handles, context, request))
        }
    }
}
