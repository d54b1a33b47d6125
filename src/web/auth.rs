//! Who is calling: argon2id passwords, session cookies, bearer tokens, roles and regions.

use std::collections::HashMap;
use std::sync::Mutex;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use axum::extract::{FromRequestParts, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult};
use super::json::Body;
use super::AppState;
use crate::domain::{now_ms, Millis};
use crate::store::{Role, StoreError, User};

pub const SESSION_COOKIE: &str = "vakt_session";

pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters")
        .to_string()
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A fresh random secret token (sessions, API tokens) and the hash that is stored.
pub fn new_token() -> (String, String) {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    let hash = token_hash(&token);
    (token, hash)
}

/// Only hashes of tokens are stored, so a leaked database opens no session.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The logged-in caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub username: String,
    pub role: Role,
    pub region: Option<String>,
    /// What the caller logged in with: a live stream checks it for as long as it runs.
    pub credential: Credential,
}

/// The secret a request came with, by its stored hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A console session cookie: ends at logout, when idle, and at its absolute limit.
    Session(String),
    /// A machine client's bearer token: ends when it is no longer stored.
    Token(String),
}

/// Logouts on this instance, by session hash, for the live streams of those sessions to
/// end at once. (A logout on another instance reaches them at their next check.)
#[derive(Clone)]
pub struct SessionEnds(tokio::sync::broadcast::Sender<String>);

impl Default for SessionEnds {
    fn default() -> Self {
        SessionEnds(tokio::sync::broadcast::channel(256).0)
    }
}

impl SessionEnds {
    pub fn end(&self, token_hash: &str) {
        // Nobody listening: no stream of any session is open.
        let _ = self.0.send(token_hash.to_owned());
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.0.subscribe()
    }
}

/// Why a credential no longer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The session is gone: only a logout, on any instance, removes one.
    LoggedOut,
    /// The idle or the absolute limit of a session passed.
    Expired,
    /// The bearer token is no longer stored.
    Revoked,
    /// The store could not be asked: nothing is sent on an unchecked credential, and the
    /// client connects again (and is asked to log in if that is what it takes).
    Unverified,
}

impl Ended {
    pub fn as_str(self) -> &'static str {
        match self {
            Ended::LoggedOut => "logged_out",
            Ended::Expired => "expired",
            Ended::Revoked => "revoked",
            Ended::Unverified => "unverified",
        }
    }
}

impl AppState {
    /// Until when the credential holds if it is not used again (`Millis::MAX` for a token),
    /// or why it no longer does. Reads without touching: asking is not using.
    pub async fn credential_holds_until(
        &self,
        credential: &Credential,
        now: Millis,
    ) -> Result<Millis, Ended> {
        match credential {
            Credential::Token(hash) => match self.store.token_user(hash).await {
                Ok(Some(_)) => Ok(Millis::MAX),
                Ok(None) => Err(Ended::Revoked),
                Err(_) => Err(Ended::Unverified),
            },
            Credential::Session(hash) => match self.store.session_times(hash).await {
                Ok(Some((created, last_seen))) => {
                    let until = (last_seen + self.config.session_idle_s as Millis * 1000)
                        .min(created + self.config.session_absolute_s as Millis * 1000);
                    if now < until {
                        Ok(until)
                    } else {
                        Err(Ended::Expired)
                    }
                }
                Ok(None) => Err(Ended::LoggedOut),
                Err(_) => Err(Ended::Unverified),
            },
        }
    }
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether this caller may see things of `region` (no region of its own: national).
    pub fn covers(&self, region: Option<&str>) -> bool {
        match (&self.region, region) {
            (None, _) => true,
            (Some(mine), Some(theirs)) => mine == theirs,
            (Some(_), None) => false,
        }
    }

    pub fn require(&self, roles: &[Role]) -> ApiResult<()> {
        if self.role == Role::Admin || roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }

    pub fn require_region(&self, region: Option<&str>) -> ApiResult<()> {
        if self.covers(region) {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

impl Caller {
    fn new(u: User, credential: Credential) -> Caller {
        Caller {
            username: u.username,
            role: u.role,
            region: u.region,
            credential,
        }
    }
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_owned())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        let now = now_ms();
        if let Some(auth) = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            let token = auth.strip_prefix("Bearer ").ok_or(ApiError::Unauthorized)?;
            let hash = token_hash(token.trim());
            return match state.store.token_user(&hash).await? {
                Some(u) => Ok(Caller::new(u, Credential::Token(hash))),
                None => Err(ApiError::Unauthorized),
            };
        }
        let token = cookie_token(&parts.headers).ok_or(ApiError::Unauthorized)?;
        if !parts.method.is_safe() && cross_site(&parts.headers) {
            return Err(ApiError::Forbidden);
        }
        let idle_since = now - state.config.session_idle_s as Millis * 1000;
        let created_since = now - state.config.session_absolute_s as Millis * 1000;
        let hash = token_hash(&token);
        match state
            .store
            .session_user(&hash, idle_since, created_since, now)
            .await?
        {
            Some(u) => Ok(Caller::new(u, Credential::Session(hash))),
            None => Err(ApiError::Unauthorized),
        }
    }
}

/// The caller's network address, when the server knows it.
pub struct PeerAddr(pub Option<std::net::SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<PeerAddr, Self::Rejection> {
        Ok(PeerAddr(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

/// Whether a browser says the request comes from another site. A cookie-carrying change
/// from another site is a forgery attempt (SameSite=Strict stops it in current browsers;
/// this stops it in the rest). Clients that send neither header are not browsers.
pub fn cross_site(headers: &HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site") {
        return !matches!(site, "same-origin" | "none");
    }
    let Some(host) = header("host") else {
        return header("origin").is_some();
    };
    match header("origin") {
        Some("null") => true,
        Some(origin) => origin.split_once("://").map(|(_, h)| h) != Some(host),
        None => false,
    }
}

/// Failed logins per username, to slow down guessing.
#[derive(Default)]
pub struct Throttle {
    failures: Mutex<HashMap<String, Vec<Millis>>>,
    used_steps: Mutex<HashMap<String, i64>>,
}

const THROTTLE_WINDOW_MS: Millis = 15 * 60 * 1000;
const THROTTLE_MAX_FAILURES: usize = 5;

/// What the second factor said at a login.
enum SecondFactor {
    /// Neither set up nor required for this role.
    NotNeeded,
    Passed,
    /// Wrong, reused, or required but not set up.
    Failed,
    /// Set up, and no code was given: ask for it.
    Missing,
    NotChecked,
}

impl AppState {
    fn second_factor(&self, user: &User, code: Option<&str>, now: Millis) -> SecondFactor {
        let required = self.config.require_second_factor
            && matches!(user.role, Role::Admin | Role::Coordinator);
        let Some(secret) = &user.totp_secret else {
            return if required {
                SecondFactor::Failed
            } else {
                SecondFactor::NotNeeded
            };
        };
        let Some(code) = code.filter(|c| !c.trim().is_empty()) else {
            return SecondFactor::Missing;
        };
        match super::totp::matching_step(secret, code, now / 1000) {
            Some(step) if self.throttle.use_step(&user.username, step) => SecondFactor::Passed,
            _ => SecondFactor::Failed,
        }
    }
}

const ADDRESS_MAX_FAILURES: usize = 30;

impl Throttle {
    fn blocked_address(&self, key: &str, now: Millis) -> bool {
        if key.is_empty() {
            return false;
        }
        let mut map = self.failures.lock().expect("throttle lock");
        let list = map.entry(key.to_owned()).or_default();
        list.retain(|t| now - t < THROTTLE_WINDOW_MS);
        list.len() >= ADDRESS_MAX_FAILURES
    }

    /// A one-time code's time step may be used once per user: a code seen on a shoulder
    /// or in a log cannot log in again.
    fn use_step(&self, user: &str, step: i64) -> bool {
        let mut used = self.used_steps.lock().expect("throttle lock");
        match used.get(user) {
            Some(last) if *last >= step => false,
            _ => {
                used.insert(user.to_owned(), step);
                true
            }
        }
    }

    fn blocked(&self, key: &str, now: Millis) -> bool {
        let mut map = self.failures.lock().expect("throttle lock");
        let list = map.entry(key.to_owned()).or_default();
        list.retain(|t| now - t < THROTTLE_WINDOW_MS);
        list.len() >= THROTTLE_MAX_FAILURES
    }
    fn fail(&self, key: &str, now: Millis) {
        let mut map = self.failures.lock().expect("throttle lock");
        if map.len() > 100_000 {
            map.retain(|_, l| l.iter().any(|t| now - t < THROTTLE_WINDOW_MS));
        }
        map.entry(key.to_owned()).or_default().push(now);
    }
    fn clear(&self, key: &str) {
        self.failures.lock().expect("throttle lock").remove(key);
    }
}

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    /// One-time code from an authenticator app, for roles that need a second factor.
    pub totp: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    pub username: String,
    pub role: Role,
    pub region: Option<String>,
}

#[utoipa::path(post, path = "/api/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = Me, description = "Logged in; the session cookie is set"),
              (status = 400, body = super::error::Problem, content_type = "application/problem+json"), (status = 401, body = super::error::Problem, content_type = "application/problem+json"), (status = 429, body = super::error::Problem, content_type = "application/problem+json")))]
pub async fn login(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    Body(req): Body<LoginRequest>,
) -> ApiResult<Response> {
    let now = now_ms();
    if cross_site(&headers) {
        return Err(ApiError::Forbidden);
    }
    // Guessing is slowed per user and per address, so neither many users from one place
    // nor one user from many places gets far.
    let address = peer.map(|p| format!("ip:{}", p.ip())).unwrap_or_default();
    if state.throttle.blocked(&req.username, now) || state.throttle.blocked_address(&address, now) {
        return Err(ApiError::TooManyRequests);
    }
    let user = match state.store.user(&req.username).await {
        Ok(u) => Some(u),
        Err(StoreError::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    let ok = match &user {
        Some(u) => verify_password(&req.password, &u.password_hash),
        None => {
            // Spend the same time on unknown users, so timing does not tell who exists.
            verify_password(&req.password, DUMMY_HASH.as_str());
            false
        }
    };
    let second_factor = match &user {
        Some(u) if ok => state.second_factor(u, req.totp.as_deref(), now),
        _ => SecondFactor::NotChecked,
    };
    if let SecondFactor::Missing = second_factor {
        return Err(ApiError::invalid(
            "totp",
            "a one-time code from your authenticator app is required",
        ));
    }
    let ok = ok
        && matches!(
            second_factor,
            SecondFactor::Passed | SecondFactor::NotNeeded
        );
    let Some(user) = user.filter(|_| ok) else {
        state.throttle.fail(&req.username, now);
        state.throttle.fail(&address, now);
        crate::metrics::Metrics::inc(&state.metrics.logins_failed_total);
        let _ = state
            .store
            .audit(Some(&req.username), "login_failed", None, None, None, now)
            .await;
        return Err(ApiError::Unauthorized);
    };
    state.throttle.clear(&req.username);
    let (token, hash) = new_token();
    state
        .store
        .insert_session(&hash, &user.username, now)
        .await?;
    let _ = state
        .store
        .audit(Some(&user.username), "login", None, None, None, now)
        .await;
    let secure = if state.config.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}");
    let me = Me {
        username: user.username,
        role: user.role,
        region: user.region,
    };
    let mut resp = (StatusCode::OK, axum::Json(me)).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|_| ApiError::Internal)?,
    );
    Ok(resp)
}

static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| hash_password("not a password"));

#[utoipa::path(post, path = "/api/logout", tag = "auth", responses((status = 204)))]
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(token) = cookie_token(&headers) {
        let hash = token_hash(&token);
        state.store.delete_session(&hash).await?;
        // The session's live streams end now, not at their next check.
        state.session_ends.end(&hash);
    }
    let clear = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&clear).map_err(|_| ApiError::Internal)?,
    );
    Ok(resp)
}

#[utoipa::path(get, path = "/api/me", tag = "auth", responses((status = 200, body = Me), (status = 401, body = super::error::Problem, content_type = "application/problem+json")))]
pub async fn me(caller: Caller) -> axum::Json<Me> {
    axum::Json(Me {
        username: caller.username,
        role: caller.role,
        region: caller.region,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_own_hash_only() {
        let h = hash_password("correct horse");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
    }

    #[test]
    fn a_national_caller_covers_every_region_and_a_regional_one_only_its_own() {
        let national = Caller {
            username: "n".into(),
            role: Role::Officer,
            region: None,
            credential: Credential::Token("n".into()),
        };
        let local = Caller {
            username: "l".into(),
            role: Role::Officer,
            region: Some("Syd".into()),
            credential: Credential::Token("l".into()),
        };
        assert!(national.covers(Some("Syd")) && national.covers(None));
        assert!(
            local.covers(Some("Syd")) && !local.covers(Some("Stockholm")) && !local.covers(None)
        );
    }
}
