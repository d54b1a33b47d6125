//! What the console asks for besides the resources: its settings and the status strip.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::auth::Caller;
use super::error::ApiResult;
use super::AppState;
use crate::store::Role;

#[derive(Serialize, ToSchema)]
pub struct ConsoleConfig {
    /// XYZ tile URL template for street maps beneath the situation map; null: geometry only.
    pub tile_url: Option<String>,
}

#[utoipa::path(get, path = "/api/console-config", tag = "console", responses((status = 200, body = ConsoleConfig)))]
pub async fn console_config(State(s): State<AppState>, _caller: Caller) -> Json<ConsoleConfig> {
    Json(ConsoleConfig {
        tile_url: s.config.map_tile_url.clone(),
    })
}

#[utoipa::path(get, path = "/api/status", tag = "console", responses((status = 200, body = super::Status)))]
pub async fn status(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<super::Status>> {
    caller.require(&[Role::Officer, Role::Coordinator])?;
    Ok(Json(super::status_for(&s, &caller).await))
}

/// The routes of this resource, each with its OpenAPI operation.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(console_config))
        .routes(routes!(status))
}
