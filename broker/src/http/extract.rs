//! Extractors: axum's `Json`, `Path` and `Query`, with their rejections turned into
//! the API's JSON errors, and [`Ready`], which answers 503 until the broker is ready.
//!
//! axum answers input it cannot read with plain-text bodies and, for JSON of the wrong
//! shape, 422; wrapping the extractors is the one place where every handler gets the
//! API's error shape and statuses instead.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::{ApiError, ErrorCode};
use super::json::ObjectBody;
use super::state::{ApiHandles, HttpState};

/// A JSON request body; it must be an object (see [`super::json`]).
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(ObjectBody(value)) =
            axum::Json::<ObjectBody<T>>::from_request(request, state).await?;
        Ok(Self(value))
    }
}

/// Path parameters.
#[derive(Debug, Clone)]
pub struct PathParameters<T>(pub T);

impl<T, S> FromRequestParts<S> for PathParameters<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// Query-string parameters.
#[derive(Debug, Clone)]
pub struct QueryParameters<T>(pub T);

impl<T, S> FromRequestParts<S> for QueryParameters<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// The handles of the broker's services, once it is ready; before that (and while it
/// shuts down) every handler that takes them answers 503 with the reason.
#[derive(Debug, Clone)]
pub struct Ready(pub Arc<ApiHandles>);

impl FromRequestParts<HttpState> for Ready {
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut Parts, state: &HttpState) -> Result<Self, ApiError> {
        state
            .ready()
            .map(Self)
            .map_err(|reason| ApiError::new(ErrorCode::NotReady, format!("not ready: {reason}")))
    }
}
