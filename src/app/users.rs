//! Users: who may log in, in which role and region, and the tokens machine clients use in
//! their name. Admins add them, give them a new password or second factor and revoke their
//! tokens, through the API or at the command line, under the same rules; users change
//! their own password.

use serde::Deserialize;
use utoipa::ToSchema;

use super::{optional_text, region_in_list, text, Actor, AppError, AppResult, Ctx};
use crate::credentials::{self, totp};
use crate::domain::{now_ms, Millis};
use crate::store::{Audit, Role, User, UserSecret};

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

/// A user just added, and for an admin, a coordinator or an investigator the `otpauth://` URI of their
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
    password_rule("password", &req.password)?;
    let region = match optional_text("region", req.region.as_deref(), 100)? {
        Some(r) => Some(region_in_list(ctx, &r).await?),
        None => None,
    };
    // Admins, coordinators and investigators log in with a second factor; the secret is
    // shown this once.
    let totp_secret = req.role.takes_second_factor().then(totp::new_secret);
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

/// What every password must be, whoever sets it; `field` names it in the refusal.
pub fn password_rule(field: &str, password: &str) -> AppResult<()> {
    if password.chars().count() < 12 {
        return Err(AppError::invalid(field, "at least 12 characters"));
    }
    Ok(())
}

/// The credentials a change took out of use, by their stored hashes: live streams that
/// run on them end (on this instance at once when the edge tells them; on others at their
/// next check, since the store no longer holds them).
#[derive(Debug, Default)]
pub struct EndedCredentials {
    pub sessions: Vec<String>,
    pub tokens: Vec<String>,
}

/// A user's new password, set by an admin or an operator. Every session of the user ends:
/// a leaked password must leave no session open. The API tokens stay (they are no password;
/// `revoke_tokens` ends them). Audited `user_password_set`, never with the password.
pub async fn set_password(
    ctx: &Ctx,
    actor: &Actor,
    username: &str,
    password: &str,
) -> AppResult<EndedCredentials> {
    actor.require_admin()?;
    password_rule("password", password)?;
    let hash = credentials::hash_password(password).await;
    let audit = Audit::new(actor.name(), "user_password_set").subject(username);
    let sessions = ctx
        .store
        .set_user_secret(
            username,
            UserSecret::PasswordHash(&hash),
            None,
            now_ms(),
            &audit,
        )
        .await?;
    Ok(EndedCredentials {
        sessions,
        tokens: Vec::new(),
    })
}

/// A user's change of their own password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    /// At least 12 characters.
    pub new_password: String,
}

/// A user changing their own password, proving it with the current one. Their other
/// sessions end; the one they asked from (`keep_session`) stays. A wrong current password
/// is audited `password_change_failed` and refused naming `current_password`; the edge
/// paces the attempts as it paces logins. Audited `user_password_set` on success.
pub async fn change_own_password(
    ctx: &Ctx,
    actor: &Actor,
    req: &PasswordChange,
    keep_session: Option<&str>,
) -> AppResult<EndedCredentials> {
    // The operator at the command line has no password of its own here.
    let Some(username) = actor.name() else {
        return Err(AppError::Forbidden);
    };
    password_rule("new_password", &req.new_password)?;
    let user = ctx.store.user(username).await?;
    let now = now_ms();
    if !credentials::verify_password(&req.current_password, Some(&user.password_hash)).await {
        let _ = ctx
            .store
            .audit(
                Some(username),
                "password_change_failed",
                Some(username),
                None,
                None,
                now,
            )
            .await;
        return Err(AppError::invalid(
            "current_password",
            "not the current password",
        ));
    }
    let hash = credentials::hash_password(&req.new_password).await;
    let audit = Audit::new(Some(username), "user_password_set").subject(username);
    let sessions = ctx
        .store
        .set_user_secret(
            username,
            UserSecret::PasswordHash(&hash),
            keep_session,
            now,
            &audit,
        )
        .await?;
    Ok(EndedCredentials {
        sessions,
        tokens: Vec::new(),
    })
}

/// A user's second factor made anew, and the `otpauth://` URI to be shown this once.
pub struct NewSecondFactor {
    pub totp_uri: String,
    pub ended: EndedCredentials,
}

/// Gives the user a new one-time-code secret, sealed under the master key: codes of the old
/// one stop working at once, and every session of the user ends. A user without a second
/// factor (an officer) gets one, and needs its codes to log in from then on. Audited
/// `user_second_factor_reset`.
pub async fn reset_second_factor(
    ctx: &Ctx,
    actor: &Actor,
    username: &str,
) -> AppResult<NewSecondFactor> {
    actor.require_admin()?;
    let secret = totp::new_secret();
    let sealed = ctx.directory.vault().seal_totp(&secret, username);
    let audit = Audit::new(actor.name(), "user_second_factor_reset").subject(username);
    let sessions = ctx
        .store
        .set_user_secret(
            username,
            UserSecret::SealedTotp(&sealed),
            None,
            now_ms(),
            &audit,
        )
        .await?;
    Ok(NewSecondFactor {
        totp_uri: totp::uri(username, &secret),
        ended: EndedCredentials {
            sessions,
            tokens: Vec::new(),
        },
    })
}

/// Revokes every API token of the user; how many there were is in the result. Audited
/// `tokens_revoked`, also when there was none (the intent is on record).
pub async fn revoke_tokens(
    ctx: &Ctx,
    actor: &Actor,
    username: &str,
) -> AppResult<EndedCredentials> {
    actor.require_admin()?;
    ctx.store.user(username).await?;
    let audit = Audit::new(actor.name(), "tokens_revoked").subject(username);
    let tokens = ctx
        .store
        .delete_api_tokens(username, now_ms(), &audit)
        .await?;
    Ok(EndedCredentials {
        sessions: Vec::new(),
        tokens,
    })
}

/// When each API token of the user was created, oldest first (never the tokens: only their
/// hashes are kept).
pub async fn token_times(ctx: &Ctx, actor: &Actor, username: &str) -> AppResult<Vec<Millis>> {
    actor.require_admin()?;
    ctx.store.user(username).await?;
    Ok(ctx.store.api_token_times(username).await?)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_needs_twelve_characters_and_a_refusal_names_the_field_it_came_in() {
        assert!(password_rule("password", "twelve-chars").is_ok());
        assert!(
            password_rule("password", "åäöåäöåäöåäö").is_ok(),
            "characters, not bytes"
        );
        assert!(matches!(
            password_rule("new_password", "eleven-char"),
            Err(AppError::Invalid { field, .. }) if field == "new_password"
        ));
    }
}
