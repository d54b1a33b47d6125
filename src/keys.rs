//! Device keys at rest: sealed under the master key (ChaCha20-Poly1305, bound to the
//! device id), so a copy of the database alone forges no device and reads no signature.

use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use crate::protocol::DeviceKey;

const SEALED_PREFIX: &str = "v1:";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the stored key of device {0} cannot be opened with this master key")]
    Open(String),
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
            cipher: ChaCha20Poly1305::new(Key::from_slice(master)),
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
        use rand::RngCore;
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let nonce = &nonce;
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: key.to_hex().as_bytes(),
                    aad: device_id.as_bytes(),
                },
            )
            .expect("sealing a short key cannot fail");
        format!(
            "{SEALED_PREFIX}{}{}",
            hex::encode(nonce),
            hex::encode(sealed)
        )
    }

    /// Opens a stored key; a plain 64-hex key (stored before sealing existed) is taken as is.
    pub fn open(&self, stored: &str, device_id: &str) -> Result<DeviceKey, KeyError> {
        if let Some(plain) = DeviceKey::from_hex(stored) {
            return Ok(plain);
        }
        let fail = || KeyError::Open(device_id.to_owned());
        let body = stored.strip_prefix(SEALED_PREFIX).ok_or_else(fail)?;
        let bytes = hex::decode(body).map_err(|_| fail())?;
        if bytes.len() < 12 {
            return Err(fail());
        }
        let (nonce, sealed) = bytes.split_at(12);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: device_id.as_bytes(),
                },
            )
            .map_err(|_| fail())?;
        std::str::from_utf8(&plain)
            .ok()
            .and_then(DeviceKey::from_hex)
            .ok_or_else(fail)
    }
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
