//! Mosquitto's password file and ACL, rendered from vakt's device register, and their atomic writing.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sha2::Sha512;

use super::link::backend_password;
use crate::domain::DeviceStatus;
use crate::protocol::{
    self, DeviceKey, Downlink, ProtocolError, Uplink, BACKEND_PREFIX, TOPIC_PREFIX,
};
use crate::store::DeviceRecord;

/// PBKDF2 rounds Mosquitto 2.x itself uses (`mosquitto_passwd`'s default), so the file looks
/// like one its own tool wrote. The passwords are 256-bit HMACs under random keys and a long
/// backend secret, not guessable words; more rounds would slow every device login and buy
/// nothing.
pub const PBKDF2_ITERATIONS: u32 = 101;
/// Mosquitto's salt length (bytes).
pub const SALT_LEN: usize = 12;
/// Mosquitto's hash type `7`: PBKDF2 with HMAC-SHA512, 64 bytes of output.
const HASH_TYPE: u32 = 7;
const HASH_LEN: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilesError {
    #[error("the backend's broker password is empty")]
    EmptyBackendPassword,
    #[error("backend broker username `{0}` is not a plain name (letters, digits, `_`, `-`) starting with `{BACKEND_PREFIX}`")]
    BadBackendUser(String),
    #[error("no backend broker user")]
    NoBackendUser,
}

/// Whether a device in this state may log in to the broker at all. A returned or lost device
/// is revoked: vakt drops its messages anyway, but only the broker can keep it from
/// connecting and reading its own `cfg`.
pub fn may_connect(status: DeviceStatus) -> bool {
    match status {
        DeviceStatus::InStock | DeviceStatus::Issued => true,
        DeviceStatus::Returned | DeviceStatus::Lost => false,
    }
}

/// One password-file entry in Mosquitto's own format:
/// `$7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512(password, salt)>`.
pub fn hash_password(password: &str, salt: &[u8], iterations: u32) -> String {
    let mut hash = [0u8; HASH_LEN];
    pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), salt, iterations, &mut hash);
    format!(
        "${HASH_TYPE}${iterations}${}${}",
        BASE64.encode(salt),
        BASE64.encode(hash)
    )
}

/// A rendered password file and what went into it (counts and ids, never keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordFile {
    pub text: String,
    /// Devices given a line (in stock or issued).
    pub devices: usize,
    /// Returned or lost devices, left out on purpose.
    pub revoked: usize,
    /// Devices that may connect but could not be written, with the reason.
    pub refused: Vec<(String, &'static str)>,
}

/// The password file: the backend users first (one per vakt instance, each with its password
/// derived from the backend secret), then every device that may connect, by id, with the
/// password derived from its key. `devices` carry their keys opened (64 hex characters).
///
/// `salt` supplies a fresh salt per line (the OS random source in use, fixed ones in tests).
/// Mosquitto reads no comments in this file safely (a line without `:` could become a user
/// without a password), so it holds nothing but entries.
pub fn render_password_file(
    devices: &[DeviceRecord],
    backend_users: &[&str],
    backend_secret: &str,
    mut salt: impl FnMut() -> [u8; SALT_LEN],
) -> Result<PasswordFile, FilesError> {
    check_backend_users(backend_users)?;
    if backend_secret.is_empty() {
        return Err(FilesError::EmptyBackendPassword);
    }
    let mut text = String::new();
    for user in backend_users {
        let password = backend_password(backend_secret, user);
        text.push_str(&format!(
            "{user}:{}\n",
            hash_password(&password, &salt(), PBKDF2_ITERATIONS)
        ));
    }
    let mut sorted: Vec<&DeviceRecord> = devices.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let (mut written, mut revoked, mut refused) = (0, 0, Vec::new());
    for d in sorted {
        if !may_connect(d.status) {
            revoked += 1;
            continue;
        }
        // The id becomes a username in this file and `%u` in the ACL: anything outside the
        // protocol's id alphabet (`:`, a line break, `+`, `#`) could forge a line or a rule,
        // and a device named like the backend would log in with the backend's rights and,
        // the username being the client id, take the backend's connection.
        match protocol::new_device_id(&d.id, backend_users) {
            Ok(_) => {}
            Err(ProtocolError::ReservedDeviceId) => {
                refused.push((
                    d.id.clone(),
                    "id is reserved for the backend's broker users",
                ));
                continue;
            }
            Err(_) => {
                refused.push((d.id.clone(), "id is not a protocol v1 device id"));
                continue;
            }
        }
        // Devices log in with the password derived from their key, never the key itself.
        let Some(key) = DeviceKey::from_hex(&d.key_hex) else {
            refused.push((d.id.clone(), "key is not 64 hex characters"));
            continue;
        };
        text.push_str(&format!(
            "{}:{}\n",
            d.id,
            hash_password(&key.mqtt_password(), &salt(), PBKDF2_ITERATIONS)
        ));
        written += 1;
    }
    Ok(PasswordFile {
        text,
        devices: written,
        revoked,
        refused,
    })
}

/// The ACL: each device on its own topics only (by `pattern` rules, so the file does not
/// change when devices come and go), each backend user on every device's.
pub fn render_acl(backend_users: &[&str]) -> Result<String, FilesError> {
    check_backend_users(backend_users)?;
    let mut acl = String::from(
        "# Mosquitto ACL for vakt device protocol v1 (docs/protocol.md), written by\n\
         # `vakt broker mosquitto-files`: edits here are lost at its next run.\n\
         #\n\
         # Mosquitto reads `#` only at the start of a line as a comment. A client may do\n\
         # only what a rule below allows. `pattern` lines apply to every user, with %u\n\
         # replaced by the username; for a device the username is its device id.\n\
         \n\
         # Devices: publish only on their own uplink topics. `state` is the last will; the\n\
         # broker publishes it on the device's behalf under the same rule, so a will naming\n\
         # another device's topic is dropped.\n",
    );
    for up in Uplink::ALL {
        acl.push_str(&format!("pattern write {TOPIC_PREFIX}%u/{}\n", up.name()));
    }
    acl.push_str(
        "\n\
         # Devices: read only the answers meant for them. No device may read another\n\
         # device's topics: alarm and pos bodies carry where a protected person is.\n",
    );
    for down in Downlink::ALL {
        acl.push_str(&format!("pattern read {TOPIC_PREFIX}%u/{}\n", down.name()));
    }
    acl.push_str(&format!(
        "\n\
         # The vakt instances, one user each (the broker makes a user's name its client id,\n\
         # so each keeps a persistent session of its own), read every uplink through the\n\
         # shared subscription `$share/<group>/{TOPIC_PREFIX}+/+`. Mosquitto 2.0 checks each\n\
         # delivered message against its real topic (first rule); the second lets a broker\n\
         # that checks the subscription filter as written, `$share/` prefix included, accept\n\
         # it, and grants nothing more because delivery is still checked by the first rule.\n\
         # They answer devices: signed `ack` feedback and the retained, signed `cfg`.\n"
    ));
    for user in backend_users {
        acl.push_str(&format!(
            "user {user}\n\
             topic read {TOPIC_PREFIX}+/+\n\
             topic read $share/#\n"
        ));
        for down in Downlink::ALL {
            acl.push_str(&format!("topic write {TOPIC_PREFIX}+/{}\n", down.name()));
        }
    }
    Ok(acl)
}

/// Backend users stand before `:` in the password file and after `user ` in the ACL, and
/// must carry the prefix no device id may have, so no device can ever be one of them.
fn check_backend_users(users: &[&str]) -> Result<(), FilesError> {
    if users.is_empty() {
        return Err(FilesError::NoBackendUser);
    }
    for user in users {
        let plain = (1..=64).contains(&user.len())
            && user
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !plain || !protocol::is_backend_identity(user) {
            return Err(FilesError::BadBackendUser((*user).to_owned()));
        }
    }
    Ok(())
}

/// `UID:GID` (numbers) for `--owner`: Mosquitto reads these files after dropping its
/// privileges, so they must belong to its user, not to whoever ran vakt.
pub fn parse_owner(s: &str) -> Result<(u32, u32), String> {
    let (uid, gid) = s.split_once(':').unwrap_or((s, s));
    match (uid.parse(), gid.parse()) {
        (Ok(u), Ok(g)) => Ok((u, g)),
        _ => Err(format!("`{s}` is not UID:GID (numbers)")),
    }
}

/// Replaces `dir/name` with `contents` in one step: a reloading broker sees the old file or
/// the new one, never half of one. The file is created with `mode` (and handed to `owner`)
/// before anything is written to it, so password hashes are never readable by others.
pub fn write_atomically(
    dir: &Path,
    name: &str,
    contents: &str,
    mode: u32,
    owner: Option<(u32, u32)>,
) -> std::io::Result<PathBuf> {
    let target = dir.join(name);
    let tmp = dir.join(format!(".{name}.vakt-{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = open_new(&tmp, mode)?;
        #[cfg(unix)]
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
        }
        #[cfg(not(unix))]
        let _ = owner;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        // The rename itself survives a crash only once the directory is synced.
        #[cfg(unix)]
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| target)
}

fn open_new(path: &Path, mode: u32) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    match options.open(path) {
        // Left over from a run that died between create and rename: ours, so replace it.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(path)?;
            options.open(path)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DeviceKind;

    const KEY_A: &str = "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f";

    fn device(id: &str, status: DeviceStatus, key_hex: &str) -> DeviceRecord {
        DeviceRecord {
            status,
            ..DeviceRecord::in_stock(id, DeviceKind::Alarm, key_hex.into(), 0)
        }
    }

    fn password_of(key_hex: &str) -> String {
        DeviceKey::from_hex(key_hex).unwrap().mqtt_password()
    }

    fn fixed_salt() -> [u8; SALT_LEN] {
        *b"saltsaltsalt"
    }

    fn users(text: &str) -> Vec<&str> {
        text.lines().map(|l| l.split_once(':').unwrap().0).collect()
    }

    #[test]
    fn a_hash_matches_one_mosquitto_passwd_made() {
        // `mosquitto_passwd -b -c f user pass` (Mosquitto 2.0.11) wrote this line; its salt
        // fixes what our hash must be.
        let line = "user:$7$101$Rscy3jZ/XIq4ghNi$wOEtYfOgwIFe6lzMBQhyY4+rDFQWwf95pBCWXqvayjCjOuCj4qA46TJXcagVaRyb2ucJwiyWUYn3wWfH9gUnig==";
        let salt = BASE64.decode("Rscy3jZ/XIq4ghNi").unwrap();
        assert_eq!(format!("user:{}", hash_password("pass", &salt, 101)), line);
    }

    #[test]
    fn devices_in_stock_or_issued_may_connect_and_returned_or_lost_ones_may_not() {
        assert!(may_connect(DeviceStatus::InStock));
        assert!(may_connect(DeviceStatus::Issued));
        assert!(!may_connect(DeviceStatus::Returned));
        assert!(!may_connect(DeviceStatus::Lost));
    }

    #[test]
    fn the_password_file_has_the_backend_and_each_device_that_may_connect_sorted_by_id() {
        let devices = [
            device("dev-b", DeviceStatus::Issued, KEY_A),
            device("dev-lost", DeviceStatus::Lost, KEY_A),
            device("dev-a", DeviceStatus::InStock, KEY_A),
            device("dev-back", DeviceStatus::Returned, KEY_A),
        ];
        let file = render_password_file(&devices, &["vakt-backend"], "secret", fixed_salt).unwrap();
        assert_eq!(users(&file.text), ["vakt-backend", "dev-a", "dev-b"]);
        assert_eq!((file.devices, file.revoked), (2, 2));
        assert!(file.refused.is_empty());
        let salt = fixed_salt();
        assert!(file.text.contains(&format!(
            "dev-a:{}\n",
            hash_password(&password_of(KEY_A), &salt, PBKDF2_ITERATIONS)
        )));
        assert!(file.text.starts_with(&format!(
            "vakt-backend:{}\n",
            hash_password(
                &backend_password("secret", "vakt-backend"),
                &salt,
                PBKDF2_ITERATIONS
            )
        )));
    }

    #[test]
    fn the_password_file_holds_no_key_in_clear() {
        let devices = [device("dev-a", DeviceStatus::Issued, KEY_A)];
        let file = render_password_file(&devices, &["vakt-backend"], "secret", fixed_salt).unwrap();
        assert!(!file.text.contains(KEY_A));
        assert!(!file.text.contains(&password_of(KEY_A)));
        assert!(!file.text.contains("secret"));
    }

    #[test]
    fn a_device_gets_the_password_derived_from_its_key_and_never_the_key() {
        let upper = KEY_A.to_uppercase();
        let devices = [device("dev-a", DeviceStatus::Issued, &upper)];
        let file = render_password_file(&devices, &["vakt-backend"], "secret", fixed_salt).unwrap();
        assert!(file.text.contains(&hash_password(
            &password_of(KEY_A),
            &fixed_salt(),
            PBKDF2_ITERATIONS
        )));
        assert!(!file
            .text
            .contains(&hash_password(KEY_A, &fixed_salt(), PBKDF2_ITERATIONS)));
    }

    #[test]
    fn every_line_gets_a_salt_of_its_own() {
        let devices = [
            device("dev-a", DeviceStatus::Issued, KEY_A),
            device("dev-b", DeviceStatus::Issued, KEY_A),
        ];
        let mut n = 0u8;
        let file = render_password_file(&devices, &["vakt-backend"], "secret", || {
            n += 1;
            [n; SALT_LEN]
        })
        .unwrap();
        let salts: std::collections::BTreeSet<&str> = file
            .text
            .lines()
            .map(|l| l.split('$').nth(3).unwrap())
            .collect();
        assert_eq!(salts.len(), 3);
    }

    #[test]
    fn devices_that_could_forge_a_line_or_pose_as_the_backend_are_refused_not_written() {
        let devices = [
            device("evil:x\nvakt-backend", DeviceStatus::Issued, KEY_A),
            device("dev-+", DeviceStatus::Issued, KEY_A),
            device("vakt-backend", DeviceStatus::Issued, KEY_A),
            device("vakt-2", DeviceStatus::Issued, KEY_A),
            device("Vakt-ingest", DeviceStatus::InStock, KEY_A),
            device("dev-badkey", DeviceStatus::Issued, "not hex"),
            device("dev-ok", DeviceStatus::Issued, KEY_A),
        ];
        let file =
            render_password_file(&devices, &["vakt-1", "vakt-2"], "secret", fixed_salt).unwrap();
        assert_eq!(users(&file.text), ["vakt-1", "vakt-2", "dev-ok"]);
        assert_eq!(file.devices, 1);
        let refused: Vec<(&str, &str)> = file
            .refused
            .iter()
            .map(|(id, why)| (id.as_str(), *why))
            .collect();
        let reserved = "id is reserved for the backend's broker users";
        let bad = "id is not a protocol v1 device id";
        assert_eq!(
            refused,
            [
                ("Vakt-ingest", reserved),
                ("dev-+", bad),
                ("dev-badkey", "key is not 64 hex characters"),
                ("evil:x\nvakt-backend", bad),
                ("vakt-2", reserved),
                ("vakt-backend", reserved),
            ]
        );
    }

    #[test]
    fn every_vakt_instance_gets_its_own_backend_user_with_its_own_password() {
        let file = render_password_file(&[], &["vakt-1", "vakt-2"], "secret", fixed_salt).unwrap();
        let salt = fixed_salt();
        let line = |user: &str| {
            format!(
                "{user}:{}\n",
                hash_password(&backend_password("secret", user), &salt, PBKDF2_ITERATIONS)
            )
        };
        assert_eq!(file.text, line("vakt-1") + &line("vakt-2"));
    }

    #[test]
    fn no_password_file_is_made_without_a_backend_password_or_with_an_odd_backend_name() {
        assert_eq!(
            render_password_file(&[], &["vakt-backend"], "", fixed_salt),
            Err(FilesError::EmptyBackendPassword)
        );
        assert!(matches!(
            render_password_file(&[], &["vakt backend"], "secret", fixed_salt),
            Err(FilesError::BadBackendUser(_))
        ));
        assert!(matches!(
            render_acl(&["vakt-a:b\nuser x"]),
            Err(FilesError::BadBackendUser(_))
        ));
        // A backend user a device id could equal: the device could take its client id.
        assert_eq!(
            render_acl(&["vakt-1", "ingest"]),
            Err(FilesError::BadBackendUser("ingest".into()))
        );
        assert_eq!(render_acl(&[]), Err(FilesError::NoBackendUser));
    }

    #[test]
    fn the_acl_confines_devices_to_their_own_topics_by_pattern_rules() {
        let acl = render_acl(&["vakt-1", "vakt-2"]).unwrap();
        let rules: Vec<&str> = acl
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        assert_eq!(
            rules,
            [
                "pattern write vakt/v1/dev/%u/hello",
                "pattern write vakt/v1/dev/%u/hb",
                "pattern write vakt/v1/dev/%u/alarm",
                "pattern write vakt/v1/dev/%u/pos",
                "pattern write vakt/v1/dev/%u/state",
                "pattern read vakt/v1/dev/%u/ack",
                "pattern read vakt/v1/dev/%u/cfg",
                "user vakt-1",
                "topic read vakt/v1/dev/+/+",
                "topic read $share/#",
                "topic write vakt/v1/dev/+/ack",
                "topic write vakt/v1/dev/+/cfg",
                "user vakt-2",
                "topic read vakt/v1/dev/+/+",
                "topic read $share/#",
                "topic write vakt/v1/dev/+/ack",
                "topic write vakt/v1/dev/+/cfg",
            ]
        );
        // Every uplink kind the protocol has, and nothing else, is a device's to write.
        let writes = rules
            .iter()
            .filter(|r| r.starts_with("pattern write"))
            .count();
        assert_eq!(writes, Uplink::ALL.len());
    }

    #[test]
    fn the_acl_in_the_repository_is_the_one_vakt_writes() {
        // deploy/mosquitto/acl is there to be read (and for hand-kept setups); this keeps it
        // from drifting away from what `vakt broker mosquitto-files` writes for the two
        // instances of docker-compose.yml.
        assert_eq!(
            include_str!("../../deploy/mosquitto/acl"),
            render_acl(&["vakt-1", "vakt-2"]).unwrap()
        );
    }

    #[test]
    fn an_owner_is_two_numbers_or_one_for_both() {
        assert_eq!(parse_owner("1883:1883"), Ok((1883, 1883)));
        assert_eq!(parse_owner("1883"), Ok((1883, 1883)));
        assert_eq!(parse_owner("0:10001"), Ok((0, 10001)));
        assert!(parse_owner("mosquitto").is_err());
        assert!(parse_owner("1883:").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_file_is_replaced_whole_with_the_mode_asked_for_and_no_temporary_left() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("passwd"), "old\n").unwrap();
        let path = write_atomically(dir.path(), "passwd", "new\n", 0o600, None).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["passwd"]);
    }
}
