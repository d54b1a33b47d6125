//! Secrets at rest: device keys and the users' one-time-code secrets, sealed under the
//! master key (ChaCha20-Poly1305, each bound to its device or user), so a copy of the
//! database alone forges no device, reads no signature and makes no one-time code.

use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use crate::protocol::DeviceKey;

const SEALED_PREFIX: &str = "v1:";

/// Fresh bytes from the operating system's generator: the one source of every key, nonce,
/// token, salt and record id vakt makes. Without it vakt cannot make a secret at all, so a
/// failure is not an error to carry on from.
pub fn os_random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random generator");
    bytes
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the stored key of device {0} cannot be opened with this master key")]
    Open(String),
    #[error("the one-time-code secret of user {0} cannot be opened with this master key")]
    OpenTotp(String),
    #[error("master key: {0}")]
    Master(String),
}

pub struct KeyVault {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for KeyVault {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("KeyVault(..)")
    }
}

impl KeyVault {
    pub fn new(master: &[u8; 32]) -> KeyVault {
        KeyVault {
            cipher: ChaCha20Poly1305::new(&Key::from(*master)),
        }
    }

    /// The master key from configuration (64 hex characters), or else from `master.key` in
    /// the data directory, made on first use with owner-only permissions.
    pub fn load(configured: Option<&str>, data_dir: &Path) -> Result<KeyVault, KeyError> {
        let hex_key = match configured {
            Some(k) => k.trim().to_owned(),
            None => {
                let path = data_dir.join("master.key");
                match std::fs::read_to_string(&path) {
                    Ok(k) => {
                        narrow_to_owner(&path)
                            .map_err(|e| KeyError::Master(format!("{}: {e}", path.display())))?;
                        k.trim().to_owned()
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        let k = DeviceKey::generate().to_hex();
                        write_private(&path, &k)
                            .map_err(|e| KeyError::Master(format!("{}: {e}", path.display())))?;
                        k
                    }
                    Err(e) => return Err(KeyError::Master(format!("{}: {e}", path.display()))),
                }
            }
        };
        let bytes: [u8; 32] = hex::decode(&hex_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| KeyError::Master("must be 64 hex characters".into()))?;
        Ok(KeyVault::new(&bytes))
    }

    /// Seals a device key for storage.
    pub fn seal(&self, key: &DeviceKey, device_id: &str) -> String {
        self.seal_text(&key.to_hex(), device_id)
    }

    /// Opens a stored key; a plain 64-hex key (stored before sealing existed) is taken as is.
    pub fn open(&self, stored: &str, device_id: &str) -> Result<DeviceKey, KeyError> {
        if let Some(plain) = DeviceKey::from_hex(stored) {
            return Ok(plain);
        }
        let fail = || KeyError::Open(device_id.to_owned());
        self.open_text(stored, device_id)
            .ok_or_else(fail)
            .and_then(|hex| DeviceKey::from_hex(&hex).ok_or_else(fail))
    }

    /// Seals a user's one-time-code secret (base32) for storage.
    pub fn seal_totp(&self, secret: &str, username: &str) -> String {
        self.seal_text(secret, &totp_binding(username))
    }

    /// Opens a stored one-time-code secret; a plain one (stored before sealing existed, and
    /// sealed at the next start) is taken as is: base32 has no `:`, so it is never mistaken.
    pub fn open_totp(&self, stored: &str, username: &str) -> Result<String, KeyError> {
        if !stored.starts_with(SEALED_PREFIX) {
            return Ok(stored.to_owned());
        }
        self.open_text(stored, &totp_binding(username))
            .ok_or_else(|| KeyError::OpenTotp(username.to_owned()))
    }

    /// Whether a stored one-time-code secret is still in the clear.
    pub fn is_plain(stored: &str) -> bool {
        !stored.starts_with(SEALED_PREFIX)
    }

    fn seal_text(&self, plain: &str, bound_to: &str) -> String {
        let nonce: [u8; 12] = os_random();
        let sealed = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: bound_to.as_bytes(),
                },
            )
            .expect("sealing a short secret cannot fail");
        format!(
            "{SEALED_PREFIX}{}{}",
            hex::encode(nonce),
            hex::encode(sealed)
        )
    }

    fn open_text(&self, stored: &str, bound_to: &str) -> Option<String> {
        let bytes = hex::decode(stored.strip_prefix(SEALED_PREFIX)?).ok()?;
        if bytes.len() < 12 {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(12);
        let nonce = Nonce::try_from(nonce).ok()?;
        let plain = self
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: sealed,
                    aad: bound_to.as_bytes(),
                },
            )
            .ok()?;
        String::from_utf8(plain).ok()
    }
}

/// What a one-time-code secret is bound to: never a device id, which has no `:`.
fn totp_binding(username: &str) -> String {
    format!("totp:{username}")
}

/// A key file that others may read (copied in by hand, say) is made the owner's only.
fn narrow_to_owner(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if std::fs::metadata(path)?.permissions().mode() & 0o077 != 0 {
            tracing::warn!(file = %path.display(), "the master key file was readable by others; now the owner's only");
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        crate::private_dir(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    use std::io::Write;
    options.open(path)?.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_sealed_by_an_earlier_build_still_opens() {
        // ChaCha20-Poly1305 under master key 07…07, nonce 00…0b, bound to `dev-001`, made by
        // another implementation (Python's `cryptography`): what is stored stays readable
        // whatever crate version opens it.
        let stored = "v1:000102030405060708090a0b4d1790410df9ce4e761460a8de781a1780b485938658b11d6fb4d19620024a8c4d826016fc72b6a248eb64e4209c11d8b1878d4250782ed4b27445aebc915099dbb8d4490ec5920c5bfbda17b11e0ad2";
        let vault = KeyVault::new(&[7; 32]);
        let key = vault.open(stored, "dev-001").unwrap();
        assert_eq!(key.to_hex(), "ab".repeat(32));
        assert!(vault.open(stored, "dev-002").is_err());
    }

    #[test]
    fn a_sealed_key_opens_with_the_same_master_key_and_device_only() {
        let vault = KeyVault::new(&[7; 32]);
        let key = DeviceKey::generate();
        let sealed = vault.seal(&key, "dev-1");
        assert!(sealed.starts_with("v1:") && !sealed.contains(&key.to_hex()));
        assert_eq!(vault.open(&sealed, "dev-1").unwrap(), key);
        assert!(vault.open(&sealed, "dev-2").is_err(), "bound to its device");
        assert!(KeyVault::new(&[8; 32]).open(&sealed, "dev-1").is_err());
    }

    #[test]
    fn a_sealed_one_time_code_secret_opens_for_its_own_user_only() {
        let vault = KeyVault::new(&[7; 32]);
        let secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
        let sealed = vault.seal_totp(secret, "anna");
        assert!(sealed.starts_with("v1:") && !sealed.contains(secret));
        assert!(!KeyVault::is_plain(&sealed) && KeyVault::is_plain(secret));
        assert_eq!(vault.open_totp(&sealed, "anna").unwrap(), secret);
        assert!(vault.open_totp(&sealed, "bo").is_err(), "bound to its user");
        assert!(KeyVault::new(&[8; 32]).open_totp(&sealed, "anna").is_err());
        assert_eq!(
            vault.open_totp(secret, "anna").unwrap(),
            secret,
            "a plain one as is"
        );
        // Neither kind of sealed secret opens as the other.
        let as_device = vault.seal(&DeviceKey::generate(), "totp-anna");
        assert!(vault.open_totp(&as_device, "anna").is_err());
    }

    #[test]
    fn two_seals_of_one_key_differ() {
        let vault = KeyVault::new(&[7; 32]);
        let key = DeviceKey::generate();
        assert_ne!(vault.seal(&key, "d"), vault.seal(&key, "d"));
    }

    #[test]
    fn a_master_key_file_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let key = DeviceKey::generate();
        let sealed = KeyVault::load(None, dir.path()).unwrap().seal(&key, "d");
        assert_eq!(
            KeyVault::load(None, dir.path())
                .unwrap()
                .open(&sealed, "d")
                .unwrap(),
            key
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("master.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            let file = dir.path().join("master.key");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            KeyVault::load(None, dir.path()).unwrap();
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "a file others could read is narrowed");
        }
        assert!(KeyVault::load(Some("abc"), dir.path()).is_err());
    }
}
