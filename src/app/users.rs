//! Users: who may log in, in which role and region, and the tokens machine clients use in
//! their name. Admins add them, through the API or at the command line, under the same
//! rules.

use serde::Deserialize;
use utoipa::ToSchema;

use super::{optional_text, region_in_list, text, Actor, AppError, AppResult, Ctx};
use crate::credentials::{self, totp};
use crate::domain::now_ms;
use crate::store::{Audit, Role, User};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    /// At least 12 characters.
    pub password: String,
    pub role: Role,
    /// None: national. Otherwise one of `GET /api/regions`, by name or code, ignoring case.
    pub region: Option<String>,
}

/// A user just added, and for an admin or a coordinator the `otpauth://` URI of their
/// second factor, to be shown this once.
pub struct AddedUser {
    pub user: User,
    pub totp_uri: Option<String>,
}

pub async fn list(ctx: &Ctx, actor: &Actor) -> AppResult<Vec<User>> {
    actor.require_admin()?;
    Ok(ctx.store.users().await?)
}

pub async fn add(ctx: &Ctx, actor: &Actor, req: &NewUser) -> AppResult<AddedUser> {
    actor.require_admin()?;
    let username = text("username", &req.username, 64)?;
    if !username
        .chars()
        .all(|c| c.is_alphanumeric() || "._-@".contains(c))
    {
        return Err(AppError::invalid(
            "username",
            "letters, digits and . _ - @ only",
        ));
    }
    if req.password.chars().count() < 12 {
        return Err(AppError::invalid("password", "at least 12 characters"));
    }
    let region = match optional_text("region", req.region.as_deref(), 100)? {
        Some(r) => Some(region_in_list(ctx, &r).await?),
        None => None,
    };
    // Admins and coordinators log in with a second factor; the secret is shown this once.
    let totp_secret = matches!(req.role, Role::Admin | Role::Coordinator).then(totp::new_secret);
    let user = User {
        username: username.clone(),
        role: req.role,
        region,
        password_hash: credentials::hash_password(&req.password).await,
        totp_secret: totp_secret
            .as_ref()
            .map(|t| ctx.directory.vault().seal_totp(t, &username)),
    };
    let audit = Audit::new(actor.name(), "user_added")
        .subject(&username)
        .detail(req.role.as_str());
    ctx.store.insert_user(&user, now_ms(), &audit).await?;
    Ok(AddedUser {
        totp_uri: totp_secret.map(|s| totp::uri(&username, &s)),
        user,
    })
}

/// A new bearer token for a machine client acting as `username`; the token is shown this
/// once, only its hash is kept. Audited in the token's own transaction.
pub async fn create_token(ctx: &Ctx, actor: &Actor, username: &str) -> AppResult<String> {
    actor.require_admin()?;
    ctx.store.user(username).await?;
    let (token, hash) = credentials::new_token();
    let audit = Audit::new(actor.name(), "token_created").subject(username);
    ctx.store
        .insert_api_token(&hash, username, now_ms(), &audit)
        .await?;
    Ok(token)
}

/// Gives a login a fresh random password (16 hex digits, returned), creating the user if
/// it does not exist, national and without a second factor. Only the demo does this, on
/// every start, so the logins it prints work; no edge of a real deployment offers it.
#[cfg(feature = "demo")]
pub async fn reset_demo_login(
    ctx: &Ctx,
    actor: &Actor,
    username: &str,
    role: Role,
) -> AppResult<String> {
    actor.require_admin()?;
    let password = credentials::new_token().0[..16].to_owned();
    let user = User {
        username: username.to_owned(),
        role,
        region: None,
        password_hash: credentials::hash_password(&password).await,
        totp_secret: None,
    };
    ctx.store.upsert_user(&user, now_ms()).await?;
    Ok(password)
}
