//! The application: every operation made on someone's behalf, one module per aggregate, as
//! functions over a [`Ctx`] and an [`Actor`]. The rules live here (what is valid, who may,
//! what is audited, what the devices must hear); the edges (HTTP in `web`, the command
//! line, the demo) parse their input, call these, and word the result.

pub mod alerts;
pub mod assessments;
pub mod audit;
pub mod cases;
pub mod devices;
pub mod orders;
pub mod persons;
pub mod regions;
pub mod users;

use std::sync::Arc;

use crate::config::Config;
use crate::directory::Directory;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::mqtt::Downlink;
use crate::protocol::Feedback;
use crate::store::{Role, SharedStore, StoreError};

/// What the operations act on.
#[derive(Clone)]
pub struct Ctx {
    pub store: SharedStore,
    pub directory: Directory,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    /// The consoles' live streams.
    pub hub: Hub,
    pub devices: DeviceLink,
}

/// How what a device must learn from an operation (its signed configuration) reaches it.
#[derive(Clone)]
pub enum DeviceLink {
    /// This process talks to the broker: it goes out at once.
    Broker(Downlink),
    /// The command line has no broker link: it waits in the store, and a running vakt
    /// sends it within seconds (`devices::announce_key_rotations`).
    Offline,
}

impl DeviceLink {
    /// Publishes the device's signed configuration; whether it went out.
    pub async fn config(&self, device_id: &str) -> bool {
        match self {
            DeviceLink::Broker(downlink) => downlink.config(device_id).await,
            DeviceLink::Offline => false,
        }
    }

    /// Tells a device what became of the alert its message `origin` raised.
    pub async fn feedback(&self, device_id: &str, origin: (u32, u32), st: Feedback) {
        if let DeviceLink::Broker(downlink) = self {
            downlink.feedback(device_id, origin, st).await;
        }
    }
}

impl Ctx {
    /// After a change to one device: the ingest's directory reads its entry again, here
    /// and on the other instances.
    pub async fn refresh_device(&self, id: &str) {
        if let Err(e) = self.directory.refresh_device(&self.store, id).await {
            tracing::error!(error = %e, "could not refresh the device in the directory");
        }
        self.announce(&format!("device:{id}")).await;
    }

    /// After a change to a case or its orders: the directory reads that case again, and
    /// the devices issued to it take the change; nothing else is read. The other instances
    /// do the same.
    pub async fn refresh_case(&self, id: &str) {
        if let Err(e) = self.directory.refresh_case(&self.store, id).await {
            tracing::error!(error = %e, "could not refresh the case in the directory");
        }
        self.announce(&format!("case:{id}")).await;
    }

    /// Tells the other instances what to read again; one missed is read at their next
    /// periodic reload.
    async fn announce(&self, what: &str) {
        if let Err(e) = self.store.announce_directory_change(what).await {
            tracing::warn!(error = %e, what, "could not announce a change to other instances");
        }
    }

    /// After a change that reaches every case (a region renamed): the ingest's directory
    /// reads everything again.
    pub async fn refresh_directory(&self) {
        if let Err(e) = self.directory.reload(&self.store).await {
            tracing::error!(error = %e, "could not refresh the device directory");
        }
    }
}

/// Who acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A logged-in user, within their role and region (`None`: national).
    User {
        username: String,
        role: Role,
        region: Option<String>,
    },
    /// An operator at the server's command line: every right; on the audit trail without
    /// a name.
    Operator,
}

/// Whether a user of region `own` (none: national) may see things of `region`: a national
/// user everything, a regional one only its own region's (not what has no region).
pub fn user_covers(own: Option<&str>, region: Option<&str>) -> bool {
    match (own, region) {
        (None, _) => true,
        (Some(mine), Some(theirs)) => mine == theirs,
        (Some(_), None) => false,
    }
}

impl Actor {
    /// The name the audit trail records.
    pub fn name(&self) -> Option<&str> {
        match self {
            Actor::User { username, .. } => Some(username),
            Actor::Operator => None,
        }
    }

    /// Whether this actor may see things of `region`.
    pub fn covers(&self, region: Option<&str>) -> bool {
        match self {
            Actor::Operator => true,
            Actor::User { region: own, .. } => user_covers(own.as_deref(), region),
        }
    }

    /// Admins and operators may do everything; others what `roles` name.
    pub fn require(&self, roles: &[Role]) -> Result<(), AppError> {
        match self {
            Actor::Operator => Ok(()),
            Actor::User { role, .. } if *role == Role::Admin || roles.contains(role) => Ok(()),
            Actor::User { .. } => Err(AppError::Forbidden),
        }
    }

    pub fn require_admin(&self) -> Result<(), AppError> {
        self.require(&[])
    }

    pub fn require_region(&self, region: Option<&str>) -> Result<(), AppError> {
        if self.covers(region) {
            Ok(())
        } else {
            Err(AppError::Forbidden)
        }
    }

    /// The actor's own region; `None` for national users and the operator.
    pub fn home_region(&self) -> Option<&str> {
        match self {
            Actor::User { region, .. } => region.as_deref(),
            Actor::Operator => None,
        }
    }

    /// Whether the actor sees a person's details, and what points to them (see `web::mask`),
    /// only for a stated reason, which is then on the audit trail: a protected person's for
    /// everyone; every person's for an investigator, whose reads serve a legal process and
    /// must each say why.
    pub fn needs_reason(&self, protected: bool) -> bool {
        protected
            || matches!(
                self,
                Actor::User {
                    role: Role::Investigator,
                    ..
                }
            )
    }

    pub fn is_officer(&self) -> bool {
        matches!(
            self,
            Actor::User {
                role: Role::Officer,
                ..
            }
        )
    }
}

/// Why an operation was not done.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A value of the request is not acceptable: which field, and why.
    #[error("{field}: {detail}")]
    Invalid { field: String, detail: String },
    #[error("no such resource")]
    NotFound,
    #[error("your role or region does not allow this")]
    Forbidden,
    #[error("{0}")]
    Conflict(String),
    #[error("database: {0}")]
    Store(StoreError),
}

impl AppError {
    pub fn invalid(field: &str, detail: impl Into<String>) -> AppError {
        AppError::Invalid {
            field: field.to_owned(),
            detail: detail.into(),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> AppError {
        match e {
            StoreError::NotFound => AppError::NotFound,
            StoreError::Conflict(what) => AppError::Conflict(what),
            other => AppError::Store(other),
        }
    }
}

pub type AppResult<T> = Result<T, AppError>;

/// A new record id: the kind's prefix and 16 random hex digits.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", hex::encode(crate::keys::os_random::<8>()))
}

/// A required text: trimmed, not empty, at most `max` characters.
pub fn text(field: &str, v: &str, max: usize) -> AppResult<String> {
    let t = v.trim();
    if t.is_empty() {
        return Err(AppError::invalid(field, "must not be empty"));
    }
    if t.chars().count() > max {
        return Err(AppError::invalid(
            field,
            format!("at most {max} characters"),
        ));
    }
    Ok(t.to_owned())
}

/// An optional text: absent or blank is none, else as [`text`].
pub fn optional_text(field: &str, v: Option<&str>, max: usize) -> AppResult<Option<String>> {
    match v.map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => text(field, t, max).map(Some),
    }
}

/// Tells "absent" (`None`) from "null" (`Some(None)`) in the fields of a change.
pub(crate) fn present<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

/// The region list's spelling of a region typed by name or code, any case.
pub async fn region_in_list(ctx: &Ctx, typed: &str) -> AppResult<String> {
    let list = ctx.store.regions().await?;
    match crate::regions::canonical(&list, typed) {
        Some(r) => Ok(r.name.clone()),
        None => Err(AppError::invalid(
            "region",
            format!(
                "\"{}\" is not a region; the regions are: {}",
                typed.trim(),
                crate::regions::names_in_force(&list)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(role: Role, region: Option<&str>) -> Actor {
        Actor::User {
            username: "kim".into(),
            role,
            region: region.map(Into::into),
        }
    }

    #[test]
    fn a_regional_user_covers_only_their_region_and_nothing_unplaced() {
        let nord = user(Role::Officer, Some("Nord"));
        assert!(nord.covers(Some("Nord")));
        assert!(!nord.covers(Some("Syd")));
        assert!(!nord.covers(None));
    }

    #[test]
    fn a_national_user_and_the_operator_cover_every_region() {
        for actor in [user(Role::Officer, None), Actor::Operator] {
            assert!(actor.covers(Some("Syd")));
            assert!(actor.covers(None));
        }
    }

    #[test]
    fn admins_and_the_operator_may_do_what_any_role_may() {
        assert!(user(Role::Admin, None).require(&[Role::Officer]).is_ok());
        assert!(Actor::Operator.require_admin().is_ok());
        assert!(matches!(
            user(Role::Coordinator, None).require(&[Role::Officer]),
            Err(AppError::Forbidden)
        ));
        assert!(matches!(
            user(Role::Coordinator, None).require_admin(),
            Err(AppError::Forbidden)
        ));
    }

    #[test]
    fn an_investigator_needs_a_reason_for_every_person_and_the_others_only_for_a_protected_one() {
        let investigator = user(Role::Investigator, Some("Nord"));
        assert!(investigator.needs_reason(false));
        assert!(investigator.needs_reason(true));
        for actor in [
            user(Role::Officer, None),
            user(Role::Coordinator, Some("Nord")),
            user(Role::Admin, None),
            Actor::Operator,
        ] {
            assert!(!actor.needs_reason(false), "{actor:?}");
            assert!(actor.needs_reason(true), "{actor:?}");
        }
    }

    #[test]
    fn an_investigator_is_refused_what_officers_and_coordinators_do() {
        let investigator = user(Role::Investigator, None);
        for roles in [&[Role::Officer][..], &[Role::Coordinator], &[]] {
            assert!(matches!(
                investigator.require(roles),
                Err(AppError::Forbidden)
            ));
        }
        assert!(investigator.require(&[Role::Investigator]).is_ok());
    }

    #[test]
    fn the_operator_is_on_the_audit_trail_without_a_name() {
        assert_eq!(Actor::Operator.name(), None);
        assert_eq!(user(Role::Officer, None).name(), Some("kim"));
    }

    #[test]
    fn a_text_is_trimmed_and_a_blank_optional_one_is_none() {
        assert_eq!(text("name", "  Anna ", 10).unwrap(), "Anna");
        assert!(matches!(
            text("name", "   ", 10),
            Err(AppError::Invalid { field, .. }) if field == "name"
        ));
        assert_eq!(optional_text("phone", Some("  "), 10).unwrap(), None);
        assert!(optional_text("phone", Some("12345678901"), 10).is_err());
    }
}
