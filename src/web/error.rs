//! The one HTTP error type: RFC 9457 problem+json, naming the field for bad input, never
//! leaking internals.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::app::AppError;
use crate::store::StoreError;

#[derive(Debug)]
pub enum ApiError {
    /// 400: the body is not the JSON it should be.
    BadRequest {
        detail: String,
        field: Option<String>,
    },
    /// 422: well-formed, but a value is not acceptable.
    Invalid {
        field: String,
        detail: String,
    },
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict(String),
    /// 429, with how many seconds to wait before the next try.
    TooManyRequests {
        retry_after_s: u64,
    },
    Unavailable(String),
    Internal,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    pub fn invalid(field: &str, detail: impl Into<String>) -> ApiError {
        ApiError::Invalid {
            field: field.to_owned(),
            detail: detail.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound => ApiError::NotFound,
            StoreError::Conflict(what) => ApiError::Conflict(what),
            other => {
                tracing::error!(error = %other, "store error behind an API call");
                ApiError::Internal
            }
        }
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> ApiError {
        match e {
            AppError::Invalid { field, detail } => ApiError::Invalid { field, detail },
            AppError::NotFound => ApiError::NotFound,
            AppError::Forbidden => ApiError::Forbidden,
            AppError::Conflict(what) => ApiError::Conflict(what),
            AppError::Store(e) => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut retry_after = None;
        let (status, title, detail, field) = match self {
            ApiError::BadRequest { detail, field } => {
                (StatusCode::BAD_REQUEST, "Bad request", detail, field)
            }
            ApiError::Invalid { field, detail } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid value",
                format!("{field}: {detail}"),
                Some(field),
            ),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "log in first".into(),
                None,
            ),
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                "Forbidden",
                "your role or region does not allow this".into(),
                None,
            ),
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "no such resource".into(),
                None,
            ),
            ApiError::Conflict(d) => (StatusCode::CONFLICT, "Conflict", d, None),
            ApiError::TooManyRequests { retry_after_s } => {
                retry_after = Some(retry_after_s);
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many requests",
                    format!("too many failed attempts: try again in {retry_after_s} s"),
                    None,
                )
            }
            ApiError::Unavailable(d) => (StatusCode::SERVICE_UNAVAILABLE, "Unavailable", d, None),
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error",
                "the error was logged".into(),
                None,
            ),
        };
        let problem = Problem {
            kind: "about:blank".into(),
            title: title.into(),
            status: status.as_u16(),
            detail,
            field,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut resp = (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response();
        if let Some(s) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(s));
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
