//! Who is calling: logins, session cookies, bearer tokens, roles and regions. The secrets
//! themselves (password hashes, tokens, one-time codes) are `crate::credentials`.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult};
use super::json::Body;
use super::peer::ClientAddr;
use super::AppState;
use crate::app::Actor;
use crate::credentials::{new_token, token_hash, verify_password};
use crate::domain::{now_ms, Millis};
use crate::store::{Role, StoreError, User};

/// The session cookie's name over plain HTTP.
pub const SESSION_COOKIE: &str = "vakt_session";
/// Its name when it is `Secure`: the `__Host-` prefix makes the browser take it only from
/// an HTTPS response for this very host, without `Domain` and for `Path=/`, so neither a
/// plain-HTTP page nor a sibling subdomain can plant a session of its own choosing.
pub const SECURE_SESSION_COOKIE: &str = "__Host-vakt_session";

/// The session cookie's name, and its attributes, as this configuration sets it.
fn session_cookie(secure: bool) -> (&'static str, &'static str) {
    if secure {
        (
            SECURE_SESSION_COOKIE,
            "; Path=/; HttpOnly; SameSite=Strict; Secure",
        )
    } else {
        (SESSION_COOKIE, "; Path=/; HttpOnly; SameSite=Strict")
    }
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
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Credential {
    /// A console session cookie: ends at logout, when idle, and at its absolute limit.
    Session(String),
    /// A machine client's bearer token: ends when it is no longer stored.
    Token(String),
}

/// Credentials ended on this instance (a logout, a user's new password or second factor,
/// revoked tokens), for the live streams on them to end at once. (An end on another
/// instance reaches them at their next check.)
#[derive(Clone)]
pub struct SessionEnds(tokio::sync::broadcast::Sender<Credential>);

impl Default for SessionEnds {
    fn default() -> Self {
        SessionEnds(tokio::sync::broadcast::channel(256).0)
    }
}

impl SessionEnds {
    pub fn end(&self, credential: Credential) {
        // Nobody listening: no stream of any session is open.
        let _ = self.0.send(credential);
    }

    /// Every credential an operation took out of use.
    pub fn end_all(&self, ended: crate::app::users::EndedCredentials) {
        for hash in ended.sessions {
            self.end(Credential::Session(hash));
        }
        for hash in ended.tokens {
            self.end(Credential::Token(hash));
        }
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Credential> {
        self.0.subscribe()
    }
}

/// Why a credential no longer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The session is gone: a logout removes one, on any instance, and so does a new
    /// password or second factor of its user.
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
                Ok(times) => self.session_holds_until(times, now),
                Err(_) => Err(Ended::Unverified),
            },
        }
    }

    /// [`AppState::credential_holds_until`] of many credentials, in one read of the
    /// sessions and one of the tokens, however many there are: the live streams' shared
    /// check on each status tick.
    pub async fn credentials_hold_until(
        &self,
        credentials: &[Credential],
        now: Millis,
    ) -> HashMap<Credential, Result<Millis, Ended>> {
        let (mut sessions, mut tokens) = (Vec::new(), Vec::new());
        for credential in credentials {
            match credential {
                Credential::Session(hash) => sessions.push(hash.clone()),
                Credential::Token(hash) => tokens.push(hash.clone()),
            }
        }
        let mut verdicts = HashMap::with_capacity(credentials.len());
        if !sessions.is_empty() {
            let read = self.store.sessions_times(&sessions).await;
            for hash in sessions {
                let verdict = match &read {
                    Ok(found) => self.session_holds_until(found.get(&hash).copied(), now),
                    Err(_) => Err(Ended::Unverified),
                };
                verdicts.insert(Credential::Session(hash), verdict);
            }
        }
        if !tokens.is_empty() {
            let read = self.store.tokens_held(&tokens).await;
            for hash in tokens {
                let verdict = match &read {
                    Ok(held) if held.contains(&hash) => Ok(Millis::MAX),
                    Ok(_) => Err(Ended::Revoked),
                    Err(_) => Err(Ended::Unverified),
                };
                verdicts.insert(Credential::Token(hash), verdict);
            }
        }
        verdicts
    }

    /// A session's verdict from its stored times (none: it is gone).
    fn session_holds_until(
        &self,
        times: Option<(Millis, Millis)>,
        now: Millis,
    ) -> Result<Millis, Ended> {
        let Some((created, last_seen)) = times else {
            return Err(Ended::LoggedOut);
        };
        let until = self.session_limits(created, last_seen).first_end();
        if now < until {
            Ok(until)
        } else {
            Err(Ended::Expired)
        }
    }
}

/// The two ends of a console session: the idle one moves with every request, the absolute
/// one is fixed at login. A console learns both, to warn before the absolute one comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    pub idle_ends_at: Millis,
    pub ends_at: Millis,
}

impl SessionLimits {
    pub fn of(created: Millis, last_seen: Millis, idle_s: u64, absolute_s: u64) -> SessionLimits {
        SessionLimits {
            idle_ends_at: last_seen + idle_s as Millis * 1000,
            ends_at: created + absolute_s as Millis * 1000,
        }
    }

    /// The moment the session stops holding if nothing else happens.
    pub fn first_end(self) -> Millis {
        self.idle_ends_at.min(self.ends_at)
    }
}

impl AppState {
    fn session_limits(&self, created: Millis, last_seen: Millis) -> SessionLimits {
        SessionLimits::of(
            created,
            last_seen,
            self.config.session_idle_s,
            self.config.session_absolute_s,
        )
    }
}

/// Whether a login of this user takes a one-time code besides the password: when the user
/// has one set up, or when the role must have one (then a login without one fails).
pub fn needs_second_factor(require_for_roles: bool, role: Role, has_secret: bool) -> bool {
    has_secret || (require_for_roles && role.takes_second_factor())
}

impl Caller {
    /// The caller as the application sees who acts.
    pub fn actor(&self) -> Actor {
        Actor::User {
            username: self.username.clone(),
            role: self.role,
            region: self.region.clone(),
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether this caller may see things of `region` (no region of its own: national).
    /// Asked by every live stream for every change: it copies nothing.
    pub fn covers(&self, region: Option<&str>) -> bool {
        crate::app::user_covers(self.region.as_deref(), region)
    }

    pub fn require(&self, roles: &[Role]) -> ApiResult<()> {
        Ok(self.actor().require(roles)?)
    }

    pub fn require_region(&self, region: Option<&str>) -> ApiResult<()> {
        Ok(self.actor().require_region(region)?)
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

/// The session token from the cookie of the name in use (only that one: with `Secure`
/// cookies, a plain `vakt_session` may have been planted over HTTP).
fn cookie_token(headers: &HeaderMap, secure: bool) -> Option<String> {
    let (name, _) = session_cookie(secure);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
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
        let secure = state.config.cookies_secure();
        let token = cookie_token(&parts.headers, secure).ok_or(ApiError::Unauthorized)?;
        if !parts.method.is_safe() && cross_site(&parts.headers, secure) {
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

/// Whether a browser says the request comes from another site. A cookie-carrying change
/// from another site is a forgery attempt (SameSite=Strict stops it in current browsers;
/// this stops it in the rest). Clients that send neither header are not browsers.
/// `https`: the console is served over TLS (`cookies_secure`), so only an `https` origin of
/// this host is this site; a plain-`http` page on the same host is another one.
pub fn cross_site(headers: &HeaderMap, https: bool) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site") {
        return !matches!(site, "same-origin" | "none");
    }
    let Some(origin) = header("origin") else {
        return false;
    };
    let Some(host) = header("host") else {
        return true;
    };
    let scheme = if https { "https" } else { "http" };
    match origin.split_once("://") {
        Some((s, h)) => !(s.eq_ignore_ascii_case(scheme) && h.eq_ignore_ascii_case(host)),
        None => true,
    }
}

pub use super::throttle::Throttle;

/// What the second factor said at a login.
enum SecondFactor {
    /// Neither set up nor required for this role.
    NotNeeded,
    Passed,
    /// Wrong, reused, missing, or required but not set up: all answered alike, so a
    /// guesser never learns that the password was right.
    Failed,
}

impl AppState {
    async fn second_factor(
        &self,
        user: &User,
        code: Option<&str>,
        now: Millis,
    ) -> ApiResult<SecondFactor> {
        let required = needs_second_factor(self.config.require_second_factor, user.role, false);
        let Some(secret) = &user.totp_secret else {
            return Ok(if required {
                SecondFactor::Failed
            } else {
                SecondFactor::NotNeeded
            });
        };
        let Some(code) = code.filter(|c| !c.trim().is_empty()) else {
            return Ok(SecondFactor::Failed);
        };
        let secret = match self.directory.vault().open_totp(secret, &user.username) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "a login cannot check its one-time code");
                return Ok(SecondFactor::Failed);
            }
        };
        // A code's time step is good for one login of its user, on every instance: a code
        // seen on a shoulder or in a log cannot log in again.
        Ok(
            match crate::credentials::totp::matching_step(&secret, code, now / 1000) {
                Some(step) if self.store.claim_totp_step(&user.username, step).await? => {
                    SecondFactor::Passed
                }
                _ => SecondFactor::Failed,
            },
        )
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
              (status = 400, body = super::error::Problem, content_type = "application/problem+json"), (status = 401, body = super::error::Problem, content_type = "application/problem+json", description = "Wrong username, password or one-time code, or a code missing: all answered alike"),
              (status = 403, body = super::error::Problem, content_type = "application/problem+json", description = "Sent from another site"),
              (status = 429, body = super::error::Problem, content_type = "application/problem+json", description = "Too many failed attempts from this address: wait", headers(("Retry-After" = u64, description = "Seconds to wait before the next attempt")))))]
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    Body(req): Body<LoginRequest>,
) -> ApiResult<Response> {
    let now = now_ms();
    if cross_site(&headers, state.config.cookies_secure()) {
        return Err(ApiError::Forbidden);
    }
    // Slowed per user at an address and per address (see `throttle`): a guesser elsewhere
    // never slows the duty officer at the centre.
    // The counters are in the database: a guesser gets no more tries from two instances.
    let address = client.map(|a| a.to_string()).unwrap_or_default();
    let store = &*state.store;
    if let Err(wait) = state
        .throttle
        .attempt(store, &req.username, &address, now)
        .await?
    {
        return Err(ApiError::TooManyRequests {
            retry_after_s: wait.seconds(),
        });
    }
    let user = match state.store.user(&req.username).await {
        Ok(u) => Some(u),
        Err(StoreError::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    // An unknown user costs the same time as a known one (`verify_password`).
    let hash = user.as_ref().map(|u| u.password_hash.as_str());
    let ok = verify_password(&req.password, hash).await;
    let ok = match &user {
        Some(u) if ok => matches!(
            state.second_factor(u, req.totp.as_deref(), now).await?,
            SecondFactor::Passed | SecondFactor::NotNeeded
        ),
        _ => false,
    };
    let Some(user) = user.filter(|_| ok) else {
        crate::metrics::Metrics::inc(&state.metrics.logins_failed_total);
        let _ = state
            .store
            .audit(Some(&req.username), "login_failed", None, None, None, now)
            .await;
        return Err(ApiError::Unauthorized);
    };
    state
        .throttle
        .succeeded(store, &req.username, &address)
        .await?;
    let (token, hash) = new_token();
    state
        .store
        .insert_session(&hash, &user.username, now)
        .await?;
    let _ = state
        .store
        .audit(Some(&user.username), "login", None, None, None, now)
        .await;
    let (name, attributes) = session_cookie(state.config.cookies_secure());
    let cookie = format!("{name}={token}{attributes}");
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

#[utoipa::path(post, path = "/api/logout", tag = "auth", responses((status = 204),
    (status = 403, body = super::error::Problem, content_type = "application/problem+json", description = "Sent from another site")))]
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    // Another site must not end an officer's session in the middle of an alarm either.
    let secure = state.config.cookies_secure();
    if cross_site(&headers, secure) {
        return Err(ApiError::Forbidden);
    }
    if let Some(token) = cookie_token(&headers, secure) {
        let hash = token_hash(&token);
        state.store.delete_session(&hash).await?;
        // The session's live streams end now, not at their next check.
        state.session_ends.end(Credential::Session(hash));
    }
    let (name, attributes) = session_cookie(secure);
    let clear = format!("{name}={attributes}; Max-Age=0");
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

/// A console session's limits, so the console can warn before the absolute one and offer
/// to log in again without leaving the page.
#[derive(Serialize, ToSchema)]
pub struct SessionInfo {
    pub username: String,
    /// When the session ends however much it is used (RFC 3339).
    pub ends_at: String,
    /// When it ends if no request comes before then; each request moves it on.
    pub idle_ends_at: String,
    pub idle_s: u64,
    pub absolute_s: u64,
    /// Logging in again takes a one-time code besides the password.
    pub second_factor: bool,
}

#[utoipa::path(get, path = "/api/session", tag = "auth",
    responses((status = 200, body = SessionInfo, description = "The limits of the caller's console session (asking counts as use, like any request)"),
              (status = 401, body = super::error::Problem, content_type = "application/problem+json"),
              (status = 404, body = super::error::Problem, content_type = "application/problem+json", description = "Called with a bearer token: a token has no session")))]
pub async fn session(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<SessionInfo>> {
    let Credential::Session(hash) = &caller.credential else {
        return Err(ApiError::NotFound);
    };
    let (created, last_seen) = state
        .store
        .session_times(hash)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    let limits = state.session_limits(created, last_seen);
    let user = state.store.user(&caller.username).await?;
    Ok(axum::Json(SessionInfo {
        username: caller.username,
        ends_at: crate::domain::rfc3339(limits.ends_at),
        idle_ends_at: crate::domain::rfc3339(limits.idle_ends_at),
        idle_s: state.config.session_idle_s,
        absolute_s: state.config.session_absolute_s,
        second_factor: needs_second_factor(
            state.config.require_second_factor,
            user.role,
            user.totp_secret.is_some(),
        ),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn an_origin_is_this_site_only_with_the_same_host_and_scheme() {
        let own = headers(&[("host", "vakt.example"), ("origin", "http://vakt.example")]);
        assert!(!cross_site(&own, false));
        assert!(
            cross_site(&own, true),
            "plain http on a TLS-served host is another site"
        );
        let tls = headers(&[("host", "vakt.example"), ("origin", "https://vakt.example")]);
        assert!(!cross_site(&tls, true));
        assert!(cross_site(&tls, false));
        let other = headers(&[("host", "vakt.example"), ("origin", "http://evil.example")]);
        assert!(cross_site(&other, false));
        assert!(cross_site(
            &headers(&[("host", "vakt.example"), ("origin", "null")]),
            false
        ));
        assert!(cross_site(
            &headers(&[("origin", "http://vakt.example")]),
            false
        ));
        assert!(
            !cross_site(&headers(&[("host", "vakt.example")]), false),
            "not a browser"
        );
    }

    #[test]
    fn fetch_metadata_wins_over_the_origin() {
        let h = headers(&[
            ("host", "vakt.example"),
            ("origin", "http://vakt.example"),
            ("sec-fetch-site", "same-site"),
        ]);
        assert!(cross_site(&h, false));
        let h = headers(&[("sec-fetch-site", "same-origin")]);
        assert!(!cross_site(&h, false));
    }

    #[test]
    fn a_session_ends_at_its_idle_or_its_absolute_limit_whichever_comes_first() {
        let fresh = SessionLimits::of(1_000, 1_000, 900, 43_200);
        assert_eq!(fresh.idle_ends_at, 901_000);
        assert_eq!(fresh.ends_at, 43_201_000);
        assert_eq!(fresh.first_end(), 901_000);
        let late = SessionLimits::of(1_000, 43_000_000, 900, 43_200);
        assert_eq!(
            late.first_end(),
            43_201_000,
            "use never moves the absolute limit"
        );
    }

    #[test]
    fn a_one_time_code_is_needed_when_set_up_or_required_for_the_role() {
        assert!(needs_second_factor(false, Role::Officer, true));
        assert!(!needs_second_factor(true, Role::Officer, false));
        assert!(needs_second_factor(true, Role::Coordinator, false));
        assert!(needs_second_factor(true, Role::Admin, false));
        assert!(needs_second_factor(true, Role::Investigator, false));
        assert!(!needs_second_factor(false, Role::Admin, false));
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
