//! Request handlers, one module per API group. Each turns a decoded request into a
//! response frame (or none, for produce with acks=0).

mod admin;
mod fetch;
mod list_offsets;
mod produce;

use std::sync::Arc;

use fjord_protocol::messages::Request;

use super::response::ResponseFrame;
use crate::broker::Broker;

pub async fn handle(
    broker: &Arc<Broker>,
    correlation_id: i32,
    request: Request,
) -> Option<ResponseFrame> {
    match request {
        Request::ApiVersions(_) => Some(admin::api_versions(correlation_id)),
        Request::Metadata(request) => Some(admin::metadata(broker, correlation_id, request).await),
        Request::CreateTopics(request) => {
            Some(admin::create_topics(broker, correlation_id, request).await)
        }
        Request::DeleteTopics(request) => {
            Some(admin::delete_topics(broker, correlation_id, request).await)
        }
        Request::Produce(request) => produce::handle(broker, correlation_id, request).await,
        Request::Fetch(request) => Some(fetch::handle(broker, correlation_id, request).await),
        Request::ListOffsets(request) => {
            Some(list_offsets::handle(broker, correlation_id, request))
        }
    }
}
