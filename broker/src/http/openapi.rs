//! The OpenAPI 3.1 document of the admin API, served at `GET /openapi.json`.
//!
//! It is generated from the handlers' `#[utoipa::path]` attributes, which are also what
//! registers each route with the router ([`super::api_router`]), and from the request
//! and response types' `ToSchema` derives, so the document cannot drift from what is
//! served. Responses that routes give for the same reason (on `/v1` routes: 503 before
//! the broker is ready and 500 when storage fails; 400 for unreadable parameters or
//! bodies; 413 and 415 for bodies) are added here, once, from what each operation
//! takes, instead of being repeated on every handler.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};

use super::error::{ErrorBody, ErrorCode, ErrorDetail};

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Fjord admin API",
        description = "Administration and observation of a Fjord broker: cluster, brokers, \
            topics, record peek, consumer groups, health probes and Prometheus metrics. Every error is \
            `{\"error\": {\"code\": \"...\", \"message\": \"...\"}}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "cluster", description = "The cluster and its brokers."),
        (name = "topics", description = "Topics, their config, partitions and records."),
        (name = "groups", description = "Consumer groups, their members, committed offsets and lag."),
        (name = "health", description = "Probes, metrics and this document."),
    ),
    components(schemas(ErrorBody, ErrorDetail, ErrorCode)),
)]
pub struct ApiDoc;

/// The complete document: routes, schemas and the common responses.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = super::api_router().into_openapi();
    for (path, item) in document.paths.paths.iter_mut() {
        let resource = path.starts_with("/v1/");
        for operation in operations(item) {
            add_common_responses(operation, resource);
        }
    }
    document
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

fn add_common_responses(operation: &mut Operation, resource: bool) {
    let has_parameters = operation
        .parameters
        .as_ref()
        .is_some_and(|parameters| !parameters.is_empty());
    let has_body = operation.request_body.is_some();
    let mut common = Vec::new();
    if resource {
        common.push(("500", "The broker failed; the message says what failed."));
        common.push(("503", "The broker is not ready; the message says why."));
    }
    if has_parameters || has_body {
        common.push((
            "400",
            "The input cannot be read or is invalid; the message says what is wrong.",
        ));
    }
    if has_body {
        common.push(("413", "The request body is too large."));
        common.push(("415", "The request body is not `application/json`."));
    }
    for (status, description) in common {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| error_response(description));
    }
}

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("ErrorBody"))),
        )
        .build()
        .into()
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "health",
    responses((status = OK, description = "The OpenAPI 3.1 document of this API.",
        content_type = "application/json", body = Object))
)]
pub async fn openapi_json() -> impl IntoResponse {
    // Built once: the document is fixed for the life of the process.
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let json = DOCUMENT.get_or_init(|| {
        document()
            .to_json()
            .expect("the OpenAPI document serializes")
    });
    ([(header::CONTENT_TYPE, "application/json")], json.as_str())
}
