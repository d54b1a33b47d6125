//! Secrets at rest: device keys and the users' one-time-code secrets, sealed under the
//! master key (ChaCha20-Poly1305, each bound to its device or user), so a copy of the
//! database alone forges no device, reads no signature and makes no one-time code; and the
//! key the audit chain is linked with, derived from the master key, so that someone who can
//! write to the database cannot extend or rewrite the chain. A value stored in the clear
//! is refused: the start-up upgrade (`store::open`) seals those an older version left, once.
//! A rotation of the master key (`store::rotate_master_key`) opens each sealed value under
//! the old key and seals it again under the new one ([`KeyVault::reseal`]).

use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use crate::audit::ChainKey;
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
    #[error("the stored {0} is not sealed under the master key (a value written in the clear behind vakt's back): refused")]
    Unsealed(String),
    #[error("master key: {0}")]
    Master(String),
}

/// A fresh master key, 64 hex characters: what a first start writes to `master.key` and
/// `vakt master-key new` prints.
pub fn new_master_key() -> String {
    hex::encode(os_random::<32>())
}

/// Whose a sealed secret is: what it is bound to when sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretOf<'a> {
    /// A device's key (or its next key, during a key rotation).
    Device(&'a str),
    /// A user's one-time-code secret.
    User(&'a str),
}

pub struct KeyVault {
    cipher: ChaCha20Poly1305,
    chain_key: ChainKey,
    fingerprint: String,
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
            chain_key: ChainKey::from_bytes(derive(master, AUDIT_CHAIN_LABEL)),
            fingerprint: hex::encode(derive(master, FINGERPRINT_LABEL)),
        }
    }

    /// What the database keeps to recognise this master key (`store::open` refuses another):
    /// a value derived from it that tells nothing of it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The key the audit chain is linked with.
    pub fn audit_chain_key(&self) -> &ChainKey {
        &self.chain_key
    }

    /// The master key from configuration (64 hex characters), or else from `master.key` in
    /// the data directory, made on first use with owner-only permissions.
    pub fn load(configured: Option<&str>, data_dir: &Path) -> Result<KeyVault, KeyError> {
        Self::load_or(configured, data_dir, true)
    }

    /// As [`KeyVault::load`], but a missing `master.key` is an error rather than made: for
    /// replacing the key, which must be the one the database already has.
    pub fn load_existing(configured: Option<&str>, data_dir: &Path) -> Result<KeyVault, KeyError> {
        Self::load_or(configured, data_dir, false)
    }

    fn load_or(
        configured: Option<&str>,
        data_dir: &Path,
        make_if_missing: bool,
    ) -> Result<KeyVault, KeyError> {
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
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && make_if_missing => {
                        let k = new_master_key();
                        write_private(&path, &k)
                            .map_err(|e| KeyError::Master(format!("{}: {e}", path.display())))?;
                        k
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(KeyError::Master(format!(
                            "none configured (master_key, VAKT_MASTER_KEY or VAKT_MASTER_KEY_FILE) and no {}",
                            path.display()
                        )))
                    }
                    Err(e) => return Err(KeyError::Master(format!("{}: {e}", path.display()))),
                }
            }
        };
        from_hex(&hex_key)
            .map(|bytes| KeyVault::new(&bytes))
            .ok_or_else(|| KeyError::Master("must be 64 hex characters".into()))
    }

    /// A master key from a file of its own, as `vakt master-key new` writes it: 64 hex
    /// characters and at most one line break after them. Stricter than the configured key
    /// (trimmed): a file with more in it was not made for this, and which part of it is the
    /// key is not a thing to guess.
    pub fn from_key_file(text: &str) -> Result<KeyVault, KeyError> {
        let key = match text.strip_suffix('\n') {
            Some(t) => t.strip_suffix('\r').unwrap_or(t),
            None => text,
        };
        from_hex(key).map(|bytes| KeyVault::new(&bytes)).ok_or_else(|| {
            KeyError::Master(
                "the file must hold 64 hex characters and nothing else but one line break after them".into(),
            )
        })
    }

    /// Seals a device key for storage.
    pub fn seal(&self, key: &DeviceKey, device_id: &str) -> String {
        self.seal_text(&key.to_hex(), device_id)
    }

    /// Opens a stored key; one stored in the clear is refused.
    pub fn open(&self, stored: &str, device_id: &str) -> Result<DeviceKey, KeyError> {
        if !is_sealed(stored) {
            return Err(KeyError::Unsealed(format!("key of device {device_id}")));
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

    /// Opens a stored one-time-code secret; one stored in the clear is refused.
    pub fn open_totp(&self, stored: &str, username: &str) -> Result<String, KeyError> {
        if !is_sealed(stored) {
            return Err(KeyError::Unsealed(format!(
                "one-time-code secret of user {username}"
            )));
        }
        self.open_text(stored, &totp_binding(username))
            .ok_or_else(|| KeyError::OpenTotp(username.to_owned()))
    }

    /// Opens a sealed device key or one-time-code secret under this master key and seals it
    /// again under `new`, bound to the same device or user: for replacing the master key.
    /// One that does not open (in the clear, or not sealed under this key) is an error.
    pub fn reseal(&self, stored: &str, of: SecretOf, new: &KeyVault) -> Result<String, KeyError> {
        Ok(match of {
            SecretOf::Device(id) => new.seal(&self.open(stored, id)?, id),
            SecretOf::User(username) => new.seal_totp(&self.open_totp(stored, username)?, username),
        })
    }

    /// Whether a stored device key or one-time-code secret opens under this master key.
    pub fn opens(&self, stored: &str, of: SecretOf) -> bool {
        match of {
            SecretOf::Device(id) => self.open(stored, id).is_ok(),
            SecretOf::User(username) => self.open_totp(stored, username).is_ok(),
        }
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

/// Whether a stored device key or one-time-code secret is sealed; neither hex nor base32,
/// the forms they have in the clear, has a `:`, so a clear one is never taken for sealed.
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_PREFIX)
}

/// 32 bytes from exactly 64 hex characters.
fn from_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    hex::decode(text).ok()?.try_into().ok()
}

/// What the audit chain's key is derived under: a label of its own, so it is never a key
/// used for anything else.
const AUDIT_CHAIN_LABEL: &str = "vakt/v1/audit-chain";
const FINGERPRINT_LABEL: &str = "vakt/v1/master-key-fingerprint";

/// A key derived from the master key for one use: HMAC-SHA256(master, label). The master
/// key is uniformly random, so HMAC under it is a pseudo-random function of the label (as
/// HKDF's expand step with a single block).
fn derive(master: &[u8; 32], label: &str) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(master)
        .expect("HMAC takes any key length");
    mac.update(label.as_bytes());
    mac.finalize().into_bytes().into()
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
        assert!(is_sealed(&sealed) && !is_sealed(secret));
        assert_eq!(vault.open_totp(&sealed, "anna").unwrap(), secret);
        assert!(vault.open_totp(&sealed, "bo").is_err(), "bound to its user");
        assert!(KeyVault::new(&[8; 32]).open_totp(&sealed, "anna").is_err());
        // Neither kind of sealed secret opens as the other.
        let as_device = vault.seal(&DeviceKey::generate(), "totp-anna");
        assert!(vault.open_totp(&as_device, "anna").is_err());
    }

    #[test]
    fn a_value_in_the_clear_is_refused_with_an_error_saying_so() {
        let vault = KeyVault::new(&[7; 32]);
        let key = DeviceKey::generate();
        let err = vault.open(&key.to_hex(), "dev-1").unwrap_err().to_string();
        assert!(
            err.contains("device dev-1") && err.contains("not sealed"),
            "{err}"
        );
        let err = vault
            .open_totp("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "anna")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("user anna") && err.contains("not sealed"),
            "{err}"
        );
    }

    #[test]
    fn the_audit_chain_key_comes_from_the_master_key_and_from_nothing_else() {
        let record = crate::audit::Record {
            at: 1,
            actor: None,
            action: "login",
            subject: None,
            case_id: None,
            detail: None,
        };
        let link = |master: [u8; 32]| {
            let vault = KeyVault::new(&master);
            crate::audit::entry_link(vault.audit_chain_key(), crate::audit::GENESIS, &record)
        };
        assert_eq!(link([7; 32]), link([7; 32]));
        assert_ne!(link([7; 32]), link([8; 32]));
        // Not the master key itself: a key for one purpose only.
        assert_ne!(
            link([7; 32]),
            crate::audit::entry_link(
                &ChainKey::from_bytes([7; 32]),
                crate::audit::GENESIS,
                &record
            )
        );
    }

    #[test]
    fn the_fingerprint_tells_master_keys_apart_and_is_none_of_the_keys() {
        let vault = KeyVault::new(&[7; 32]);
        assert_eq!(vault.fingerprint(), KeyVault::new(&[7; 32]).fingerprint());
        assert_ne!(vault.fingerprint(), KeyVault::new(&[8; 32]).fingerprint());
        assert_ne!(vault.fingerprint(), hex::encode([7u8; 32]));
        assert_eq!(vault.fingerprint().len(), 64);
    }

    #[test]
    fn a_resealed_secret_opens_under_the_new_master_key_only_and_for_its_own_device_or_user() {
        let (old, new) = (KeyVault::new(&[7; 32]), KeyVault::new(&[8; 32]));
        let key = DeviceKey::generate();
        let sealed = old.seal(&key, "dev-1");
        let resealed = old
            .reseal(&sealed, SecretOf::Device("dev-1"), &new)
            .unwrap();
        assert_eq!(new.open(&resealed, "dev-1").unwrap(), key);
        assert!(old.open(&resealed, "dev-1").is_err());
        assert!(
            new.open(&resealed, "dev-2").is_err(),
            "still bound to its device"
        );
        assert!(new.opens(&resealed, SecretOf::Device("dev-1")));
        assert!(!old.opens(&resealed, SecretOf::Device("dev-1")));

        let secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
        let sealed = old.seal_totp(secret, "anna");
        let resealed = old.reseal(&sealed, SecretOf::User("anna"), &new).unwrap();
        assert_eq!(new.open_totp(&resealed, "anna").unwrap(), secret);
        assert!(
            new.open_totp(&resealed, "bo").is_err(),
            "still bound to its user"
        );
        assert!(!old.opens(&resealed, SecretOf::User("anna")));
    }

    #[test]
    fn what_does_not_open_under_the_old_master_key_is_not_resealed() {
        let (old, new) = (KeyVault::new(&[7; 32]), KeyVault::new(&[8; 32]));
        let in_the_clear = DeviceKey::generate().to_hex();
        let err = old.reseal(&in_the_clear, SecretOf::Device("dev-1"), &new);
        assert!(err.unwrap_err().to_string().contains("not sealed"));
        let under_another = KeyVault::new(&[9; 32]).seal_totp("JBSWY3DPEHPK3PXP", "anna");
        let err = old.reseal(&under_another, SecretOf::User("anna"), &new);
        assert!(err.unwrap_err().to_string().contains("user anna"));
    }

    #[test]
    fn a_new_key_file_holds_64_hex_characters_and_at_most_one_line_break() {
        let key = new_master_key();
        assert_eq!(key.len(), 64);
        assert_ne!(key, new_master_key());
        let bytes: [u8; 32] = hex::decode(&key).unwrap().try_into().unwrap();
        let fingerprint = KeyVault::new(&bytes).fingerprint().to_owned();
        for text in [key.clone(), format!("{key}\n"), format!("{key}\r\n")] {
            let vault = KeyVault::from_key_file(&text).unwrap();
            assert_eq!(vault.fingerprint(), fingerprint, "{text:?}");
        }
        for text in [
            String::new(),
            format!("{key}\n\n"),
            format!(" {key}"),
            format!("{key} "),
            key[..63].to_owned(),
            format!("{key}0"),
            format!("{}g", &key[..63]),
            format!("export VAKT_MASTER_KEY={key}"),
        ] {
            let err = KeyVault::from_key_file(&text).unwrap_err().to_string();
            assert!(err.contains("64 hex characters"), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_key_in_use_is_loaded_but_never_made_for_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let err = KeyVault::load_existing(None, dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("master.key") && err.contains("VAKT_MASTER_KEY"),
            "{err}"
        );
        assert!(!dir.path().join("master.key").exists(), "none made");
        let made = KeyVault::load(None, dir.path()).unwrap();
        let loaded = KeyVault::load_existing(None, dir.path()).unwrap();
        assert_eq!(made.fingerprint(), loaded.fingerprint());
        let configured = KeyVault::load_existing(Some(&"07".repeat(32)), dir.path()).unwrap();
        assert_eq!(
            configured.fingerprint(),
            KeyVault::new(&[7; 32]).fingerprint()
        );
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
