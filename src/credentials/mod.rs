//! The secrets people log in with, apart from how they travel: argon2id password hashes,
//! random tokens (sessions, API tokens) stored only as hashes, and the one-time codes of
//! the second factor ([`totp`]). The API checks them at a login; the application issues
//! them when it adds a user or a token.

pub mod totp;

use argon2::password_hash::{phc::PasswordHash, PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use sha2::{Digest, Sha256};

pub fn hash_password(password: &str) -> String {
    let salt: [u8; 16] = crate::keys::os_random();
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
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

    #[test]
    fn a_password_verifies_against_its_own_hash_only() {
        let h = hash_password("correct horse");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
    }

    #[test]
    fn a_password_hash_stored_before_an_upgrade_of_the_hashing_crate_still_verifies() {
        // argon2id with the default parameters, made by another implementation
        // (argon2-cffi): the stored PHC strings stay readable whatever crate version hashes.
        let stored = "$argon2id$v=19$m=19456,t=2,p=1$Ufg5dEUVvHgKDPRhKiFAgA$KyLA0q+E3zfShUqTrzDTim4qVa/DQ4YrE7QCdNd1ISM";
        assert!(verify_password("correct horse", stored));
        assert!(!verify_password("correct horsf", stored));
    }
}
