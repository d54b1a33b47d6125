//! Private Mosquitto processes for the tests that start, kill and restart a broker of their
//! own, with the durability settings vakt ships.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{find_mosquitto, free_port};

/// The durability settings vakt ships, as `deploy/mosquitto/mosquitto.conf` has them, with
/// the database in `data`.
fn shipped_durability_settings(data: &Path) -> String {
    const KEYS: [&str; 9] = [
        "persistence",
        "persistence_location",
        "autosave_interval",
        "autosave_on_changes",
        "max_queued_messages",
        "max_queued_bytes",
        "max_inflight_messages",
        "persistent_client_expiration",
        "queue_qos0_messages",
    ];
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/mosquitto/mosquitto.conf"
    ))
    .unwrap();
    let mut out = String::new();
    for key in KEYS {
        let line = shipped
            .lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("deploy/mosquitto/mosquitto.conf does not set {key}"));
        if key == "persistence_location" {
            out.push_str(&format!("persistence_location {}/\n", data.display()));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(out.contains("persistence true\n"), "{out}");
    out
}

/// A private Mosquitto on a free port, started and stopped as the test says.
pub struct Mosquitto {
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// With the shipped durability settings; otherwise `persistence false`.
    pub persistent: bool,
    /// Lines after the durability settings, which override them.
    pub extra: String,
    child: Option<Child>,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill_9();
    }
}

impl Mosquitto {
    pub async fn start(persistent: bool) -> Mosquitto {
        let mut broker = Mosquitto {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            persistent,
            extra: String::new(),
            child: None,
        };
        broker.run().await;
        broker
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> PathBuf {
        self.dir.path().join("mosquitto.log")
    }

    /// Starts the broker process (again) on the same port and waits until it listens.
    pub async fn run(&mut self) {
        assert!(self.child.is_none(), "already running");
        let data = self.dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let durability = if self.persistent {
            shipped_durability_settings(&data)
        } else {
            "persistence false\n".to_owned()
        } + &self.extra;
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {} 127.0.0.1\n\
                 allow_anonymous true\n\
                 # Started as root, Mosquitto would switch to a user that cannot write the\n\
                 # temporary directory; as anyone else it ignores this.\n\
                 user root\n\
                 {durability}\
                 log_dest stderr\n\
                 log_type error\n\
                 log_type warning\n\
                 log_type notice\n\
                 log_type information\n",
                self.port
            ),
        )
        .unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        let mut child = Command::new(find_mosquitto())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mosquitto starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "mosquitto exited ({status}):\n{}",
                    std::fs::read_to_string(self.log()).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "mosquitto does not listen");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.child = Some(child);
    }

    /// SIGKILL: Mosquitto saves nothing.
    pub fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM: Mosquitto saves its database and exits.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let status = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
            child.wait().unwrap();
        }
    }
}
