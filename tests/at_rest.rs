//! What vakt leaves on disk: owner-only files and directories, and secrets sealed.

mod common;

use common::*;

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_database_wal_and_master_key_are_the_owners_only() {
    let app = TestApp::start_with(|c| {
        c.data_dir = c.data_dir.join("data");
        c.database_url = None;
    })
    .await;
    // A write, so the write-ahead log and its index exist.
    app.issued_device("Stockholm").await;
    let data = app.dir.path().join("data");
    assert_eq!(mode(&data), 0o700);
    for file in ["vakt.db", "vakt.db-wal", "vakt.db-shm", "master.key"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
}

#[cfg(unix)]
#[tokio::test]
async fn a_database_file_others_could_read_is_narrowed_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vakt.db");
    let url = format!("sqlite://{}", file.display());
    let store = vakt::store::open(&url).await.unwrap();
    drop(store);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _store = vakt::store::open(&url).await.unwrap();
    assert_eq!(mode(&file), 0o600);
}
