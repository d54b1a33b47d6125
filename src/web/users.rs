//! Users, for admins: adding them, their new passwords and second factors, their tokens;
//! and a user's change of their own password.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::auth::{Caller, Credential};
use super::error::{ApiError, ApiResult, Problem};
use super::json::Body;
use super::peer::ClientAddr;
use super::AppState;
use crate::app::users::{self, NewUser, PasswordChange};
use crate::domain::{now_ms, rfc3339};
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
    /// For admins, coordinators and investigators: the `otpauth://` URI of their second
    /// factor, shown once.
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    /// At least 12 characters.
    pub password: String,
}

/// Gives a user a new password; every session of the user ends (their live streams with
/// `session_end` `logged_out`). API tokens stay: `DELETE /api/users/{username}/tokens`.
#[utoipa::path(post, path = "/api/users/{username}/password", tag = "users", params(("username" = String, Path)), request_body = NewPassword,
    responses((status = 204, description = "Set; the user's sessions ended"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn set_password(
    State(s): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
    Body(req): Body<NewPassword>,
) -> ApiResult<StatusCode> {
    let ended = users::set_password(&s.app(), &caller.actor(), &username, &req.password).await?;
    s.session_ends.end_all(ended);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct SecondFactorOut {
    pub username: String,
    /// The `otpauth://` URI of the new second factor, shown this once.
    pub totp_uri: String,
}

/// Gives a user a new second factor: the old one's codes stop working at once, and every
/// session of the user ends. A user without one (an officer) gets one, and needs its codes
/// from then on.
#[utoipa::path(post, path = "/api/users/{username}/second-factor", tag = "users", params(("username" = String, Path)),
    responses((status = 200, body = SecondFactorOut), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn reset_second_factor(
    State(s): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
) -> ApiResult<Json<SecondFactorOut>> {
    let reset = users::reset_second_factor(&s.app(), &caller.actor(), &username).await?;
    s.session_ends.end_all(reset.ended);
    Ok(Json(SecondFactorOut {
        username,
        totp_uri: reset.totp_uri,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct TokensOut {
    pub count: usize,
    /// When each token was created (RFC 3339), oldest first. The tokens themselves are not
    /// kept, only their hashes.
    pub created_at: Vec<String>,
}

#[utoipa::path(get, path = "/api/users/{username}/tokens", tag = "users", params(("username" = String, Path)),
    responses((status = 200, body = TokensOut), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn list_tokens(
    State(s): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
) -> ApiResult<Json<TokensOut>> {
    let times = users::token_times(&s.app(), &caller.actor(), &username).await?;
    Ok(Json(TokensOut {
        count: times.len(),
        created_at: times.into_iter().map(rfc3339).collect(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct TokensRevokedOut {
    pub revoked: usize,
}

/// Revokes every API token of the user: each is refused from now on (401), and a live
/// stream on one ends with `session_end` `revoked`.
#[utoipa::path(delete, path = "/api/users/{username}/tokens", tag = "users", params(("username" = String, Path)),
    responses((status = 200, body = TokensRevokedOut), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn revoke_tokens(
    State(s): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
) -> ApiResult<Json<TokensRevokedOut>> {
    let ended = users::revoke_tokens(&s.app(), &caller.actor(), &username).await?;
    let revoked = ended.tokens.len();
    s.session_ends.end_all(ended);
    Ok(Json(TokensRevokedOut { revoked }))
}

/// The caller changes their own password, giving the current one. Paced like a login, on
/// the same counters: a wrong current password counts as a failed login. The caller's
/// other sessions end; the session this came with stays.
#[utoipa::path(post, path = "/api/me/password", tag = "auth", request_body = PasswordChange,
    responses((status = 204, description = "Changed; the caller's other sessions ended"),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json", description = "Sent from another site"),
              (status = 422, body = Problem, content_type = "application/problem+json", description = "`current_password` is not the current password, or `new_password` is too short"),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 429, body = Problem, content_type = "application/problem+json", description = "Too many failed attempts: wait", headers(("Retry-After" = u64, description = "Seconds to wait before the next attempt")))))]
pub async fn change_own_password(
    State(s): State<AppState>,
    caller: Caller,
    ClientAddr(client): ClientAddr,
    Body(req): Body<PasswordChange>,
) -> ApiResult<StatusCode> {
    // A new password the rule refuses costs no attempt: it says nothing of the current one.
    users::password_rule("new_password", &req.new_password)?;
    let address = client.map(|a| a.to_string()).unwrap_or_default();
    let store = &*s.store;
    if let Err(wait) = s
        .throttle
        .attempt(store, &caller.username, &address, now_ms())
        .await?
    {
        return Err(ApiError::TooManyRequests {
            retry_after_s: wait.seconds(),
        });
    }
    let keep = match &caller.credential {
        Credential::Session(hash) => Some(hash.as_str()),
        Credential::Token(_) => None,
    };
    let ended = users::change_own_password(&s.app(), &caller.actor(), &req, keep).await?;
    s.throttle
        .succeeded(store, &caller.username, &address)
        .await?;
    s.session_ends.end_all(ended);
    Ok(StatusCode::NO_CONTENT)
}

/// The routes of this resource, each with its OpenAPI operation.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(set_password))
        .routes(routes!(reset_second_factor))
        .routes(routes!(list_tokens, revoke_tokens))
        .routes(routes!(change_own_password))
}
