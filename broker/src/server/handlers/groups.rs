//! FindCoordinator, ConsumerGroupHeartbeat, OffsetCommit, OffsetFetch, ListGroups and
//! DescribeGroups: each is answered by the broker's [`GroupService`](crate::group::GroupService).

use std::sync::Arc;

use fjord_protocol::messages::{
    ConsumerGroupHeartbeatRequest, DescribeGroupsRequest, FindCoordinatorRequest,
    ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest,
};

use super::RequestContext;
use crate::broker::Broker;
use crate::server::response::ResponseFrame;

pub async fn find_coordinator(
    broker: &Arc<Broker>,
    context: &RequestContext,
    request: FindCoordinatorRequest,
) -> ResponseFrame {
    let response = broker.groups.find_coordinator(&request).await;
    ResponseFrame::message(context.correlation_id, &response)
}

pub async fn heartbeat(
    broker: &Arc<Broker>,
    context: &RequestContext,
    request: ConsumerGroupHeartbeatRequest,
) -> ResponseFrame {
    let response = broker
        .groups
        .heartbeat(
            context.client_id.as_deref(),
            context.peer.ip().to_string(),
            &request,
        )
        .await;
    ResponseFrame::message(context.correlation_id, &response)
}

pub async fn offset_commit(
    broker: &Arc<Broker>,
    context: &RequestContext,
    request: OffsetCommitRequest,
) -> ResponseFrame {
    let response = broker.groups.commit_offsets(&request).await;
    ResponseFrame::message(context.correlation_id, &response)
}

pub fn offset_fetch(
    broker: &Arc<Broker>,
    context: &RequestContext,
    request: OffsetFetchRequest,
) -> ResponseFrame {
    let response = broker.groups.fetch_offsets(&request);
    ResponseFrame::message(context.correlation_id, &response)
}

pub fn list_groups(
    broker: &Arc<Broker>,
    context: &RequestContext,
    request: ListGroupsRequest,
) -> ResponseFrame {
    let response = broker.groups.list_groups(&request);
    ResponseFrame::message(context.correlation_id, &response)
}

pub fn describe_groups(
    broker: &Arc<Broker>,
    context: &RequestContext,
    request: DescribeGroupsRequest,
) -> ResponseFrame {
    let response = broker.groups.describe_groups(&request);
    ResponseFrame::message(context.correlation_id, &response)
}
