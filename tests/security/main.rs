//! The security suite: each attack a review found, carried out against the real `vakt`
//! binary, embedded (its own broker, SQLite) and behind Mosquitto with PostgreSQL, as an
//! attacker would: with one stolen device key, or an officer's or coordinator's login.
//! A test here fails when its attack works again.
//!
//! `cargo test --test security` runs the embedded half; with `VAKT_TEST_POSTGRES` set (as
//! `.ci/run` does) the Mosquitto-and-PostgreSQL half runs too. docs/operations.md,
//! "Security at a glance", says what these attacks can and cannot do.

#[path = "../common/mod.rs"]
mod common;
mod target;

mod abuse;
mod auth;
mod baseline;
mod broker_rights;
mod protected;
