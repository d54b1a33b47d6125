//! A JSON body extractor whose every refusal is problem+json naming the field.

use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Like `axum::Json`, but bad bodies say which field is wrong.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json") || v.contains("+json"));
        if !is_json {
            return Err(ApiError::BadRequest {
                detail: "expected Content-Type: application/json".into(),
                field: None,
            });
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::BadRequest {
                detail: e.body_text(),
                field: None,
            })?;
        parse(&bytes).map(Body)
    }
}

/// Parses a JSON body, naming the offending field in the error.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde would take an array for a struct, member by position: bodies are objects.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::BadRequest {
            detail: "the body must be a JSON object".into(),
            field: None,
        });
    }
    // Every string of every body, before any request type sees it (web/text.rs).
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) {
        super::text::check_json(&value)?;
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if path == "." {
            missing_field(&inner.to_string())
        } else {
            Some(path)
        };
        ApiError::BadRequest {
            detail: match &field {
                Some(f) => format!("{f}: {inner}"),
                None => inner.to_string(),
            },
            field,
        }
    })
}

/// serde reports a missing field at the parent's path; pull its name out of the message.
fn missing_field(message: &str) -> Option<String> {
    let start = message.find("missing field `")? + "missing field `".len();
    let end = message[start..].find('`')?;
    Some(message[start..start + end].to_owned())
}
