//! The admin API's one error type, and the axum rejections turned into it.
//!
//! The rule: every error the API returns is JSON with its real status,
//! `{"error": "...", "status": 404}` (plus `diagnostics` for a refused reload), and a 401
//! names the scheme in `WWW-Authenticate`; a handler never answers an error any other way.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::route::QueryError;

/// An API error: a status and a message, as JSON.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    details: Option<serde_json::Value>,
}

/// What a JSON handler returns.
pub(super) type ApiResult<T> = Result<axum::Json<T>, ApiError>;

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            details: None,
        }
    }

    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(super) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// This error with a `diagnostics` list beside the message.
    pub(super) fn with_diagnostics(mut self, list: Vec<String>) -> Self {
        self.details = Some(json!(list));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.message, "status": self.status.as_u16()});
        if let Some(d) = self.details {
            body["diagnostics"] = d;
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"meridian\""),
            );
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = match &r {
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            JsonRejection::BytesRejection(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, r.body_text())
    }
}

/// A body that could not be read. (The router reads every body whole before a handler runs
/// and refuses one over [`super::MAX_BODY`] there, with 413.)
impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        ApiError::new(r.status(), r.body_text())
    }
}

/// A path parameter that does not decode (not UTF-8, say).
impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::new(r.status(), r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::bad_request(r.body_text())
    }
}

/// A route question that cannot be answered: 400 for what does not parse, 404 for a name
/// that is not there.
impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Client(_) => ApiError::bad_request(format!("client {e}")),
            QueryError::Name { .. } => ApiError::bad_request(format!("name {e}")),
            QueryError::NoZone(_) => ApiError::not_found(e.to_string()),
            // Kept as the API has always said it; `meridian route` also lists the steered names.
            QueryError::NotSteered { name, .. } => {
                ApiError::not_found(format!("{name} is not a steered name"))
            }
        }
    }
}
