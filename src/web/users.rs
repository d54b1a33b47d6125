//! Users, for admins.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::auth::Caller;
use super::error::{ApiResult, Problem};
use super::json::Body;
use super::AppState;
use crate::app::users::{self, NewUser};
use crate::store::Role;

#[derive(Serialize, ToSchema)]
pub struct UserOut {
    pub username: String,
    pub role: Role,
    pub region: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct NewUserOut {
    pub username: String,
    pub role: Role,
    pub region: Option<String>,
    /// For admins and coordinators: the `otpauth://` URI of their second factor, shown once.
    pub totp_uri: Option<String>,
}

#[utoipa::path(get, path = "/api/users", tag = "users", responses((status = 200, body = [UserOut]), (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn list_users(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<UserOut>>> {
    let list = users::list(&s.app(), &caller.actor()).await?;
    Ok(Json(
        list.into_iter()
            .map(|u| UserOut {
                username: u.username,
                role: u.role,
                region: u.region,
            })
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = UserOut), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn create_user(
    State(s): State<AppState>,
    caller: Caller,
    Body(req): Body<NewUser>,
) -> ApiResult<(StatusCode, Json<NewUserOut>)> {
    let added = users::add(&s.app(), &caller.actor(), &req).await?;
    Ok((
        StatusCode::CREATED,
        Json(NewUserOut {
            username: added.user.username,
            role: added.user.role,
            region: added.user.region,
            totp_uri: added.totp_uri,
        }),
    ))
}

/// The routes of this resource, each with its OpenAPI operation.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_users, create_user))
}
