//! The secrets people log in with, apart from how they travel: argon2id password hashes,
//! random tokens (sessions, API tokens) stored only as hashes, and the one-time codes of
//! the second factor ([`totp`]). The API checks them at a login; the application issues
//! them when it adds a user or a token.

pub mod totp;

use argon2::password_hash::{phc::PasswordHash, PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use sha2::{Digest, Sha256};

/// An argon2id hash of `password`. Hashing takes tens of milliseconds of CPU on purpose: it
/// runs on the blocking pool, never on the async workers that carry alarms.
pub async fn hash_password(password: &str) -> String {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || hash_now(&password))
        .await
        .expect("argon2 hashing does not panic")
}

/// Whether `password` matches `hash`; `None` (no such user) spends the same time on a
/// hash of its own and fails, so the answer's timing does not tell who exists. On the
/// blocking pool, as hashing is.
pub async fn verify_password(password: &str, hash: Option<&str>) -> bool {
    let (password, hash) = (password.to_owned(), hash.map(str::to_owned));
    tokio::task::spawn_blocking(move || match hash {
        Some(hash) => verify_now(&password, &hash),
        None => {
            verify_now(&password, &NO_SUCH_USER);
            false
        }
    })
    .await
    .expect("argon2 verification does not panic")
}

/// A hash nobody's password is checked against, made the first time it is needed (on the
/// blocking pool, as every hash is).
static NO_SUCH_USER: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| hash_now("not a password"));

fn hash_now(password: &str) -> String {
    let salt: [u8; 16] = crate::keys::os_random();
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .expect("argon2 with default parameters")
        .to_string()
}

fn verify_now(password: &str, hash: &str) -> bool {
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
    let token = hex::encode(crate::keys::os_random::<32>());
    let hash = token_hash(&token);
    (token, hash)
}

/// Only hashes of tokens are stored, so a leaked database opens no session.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_password_verifies_against_its_own_hash_only() {
        let h = hash_password("correct horse").await;
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", Some(&h)).await);
        assert!(!verify_password("wrong horse", Some(&h)).await);
        assert!(
            !verify_password("not a password", None).await,
            "no user, no login"
        );
    }

    /// On a runtime with one async worker, a login's argon2 would stop everything else for
    /// its whole duration; on the blocking pool the worker stays free.
    #[tokio::test(flavor = "current_thread")]
    async fn hashing_leaves_the_async_worker_free() {
        let hashing = tokio::spawn(async {
            for _ in 0..3 {
                hash_password("correct horse").await;
            }
        });
        let mut ticks = 0;
        while !hashing.is_finished() {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            ticks += 1;
        }
        assert!(ticks >= 3, "the worker was held: {ticks} ticks");
    }

    #[tokio::test]
    async fn a_password_hash_stored_before_an_upgrade_of_the_hashing_crate_still_verifies() {
        // argon2id with the default parameters, made by another implementation
        // (argon2-cffi): the stored PHC strings stay readable whatever crate version hashes.
        let stored = "$argon2id$v=19$m=19456,t=2,p=1$Ufg5dEUVvHgKDPRhKiFAgA$KyLA0q+E3zfShUqTrzDTim4qVa/DQ4YrE7QCdNd1ISM";
        assert!(verify_password("correct horse", Some(stored)).await);
        assert!(!verify_password("correct horsf", Some(stored)).await);
    }
}
