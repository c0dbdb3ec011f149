//! FindCoordinator, ConsumerGroupHeartbeat, OffsetCommit, OffsetFetch, ListGroups and
//! DescribeGroups: each is answered by the [`GroupService`](crate::group::GroupService).

use fjord_protocol::messages::{
    ConsumerGroupHeartbeatRequest, DescribeGroupsRequest, FindCoordinatorRequest,
    ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest,
};

use super::RequestContext;
use crate::server::handles::Handles;
use crate::server::response::ResponseFrame;

pub async fn find_coordinator(
    handles: &Handles,
    context: &RequestContext,
    request: FindCoordinatorRequest,
) -> ResponseFrame {
    let response = handles
        .groups
        .find_coordinator(&request, context.listener)
        .await;
    ResponseFrame::message(context.correlation_id, &response)
}

pub async fn heartbeat(
    handles: &Handles,
    context: &RequestContext,
    request: ConsumerGroupHeartbeatRequest,
) -> ResponseFrame {
    let response = handles
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
    handles: &Handles,
    context: &RequestContext,
    request: OffsetCommitRequest,
) -> ResponseFrame {
    let response = handles.groups.commit_offsets(&request).await;
    ResponseFrame::message(context.correlation_id, &response)
}

pub fn offset_fetch(
    handles: &Handles,
    context: &RequestContext,
    request: OffsetFetchRequest,
) -> ResponseFrame {
    let response = handles.groups.fetch_offsets(&request);
    ResponseFrame::message(context.correlation_id, &response)
}

pub fn list_groups(
    handles: &Handles,
    context: &RequestContext,
    request: ListGroupsRequest,
) -> ResponseFrame {
    let response = handles.groups.list_groups(&request);
    ResponseFrame::message(context.correlation_id, &response)
}

pub fn describe_groups(
    handles: &Handles,
    context: &RequestContext,
    request: DescribeGroupsRequest,
) -> ResponseFrame {
    let response = handles.groups.describe_groups(&request);
    ResponseFrame::message(context.correlation_id, &response)
}
