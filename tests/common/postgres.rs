//! A private PostgreSQL cluster for the tests that restart or kill the database server: its
//! own data directory, a free port, trust authentication and the default `fsync = on`. The
//! machine's own server is never touched.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::free_port;

pub struct PgCluster {
    /// Holds the data directory; readable by the `postgres` user when the test runs as root.
    _dir: tempfile::TempDir,
    data: PathBuf,
    pub port: u16,
    /// PostgreSQL refuses to run as root: then every command runs as `postgres`.
    as_postgres: bool,
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w"]);
    }
}

/// `initdb` and `pg_ctl`: on PATH, or where Debian keeps them.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.push("/usr/local/bin".into());
    if let Ok(versions) = std::fs::read_dir("/usr/lib/postgresql") {
        dirs.extend(versions.flatten().map(|v| v.path().join("bin")));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PgCluster {
    /// A new cluster, started; `Err` says why `initdb` or the first start failed.
    pub fn start() -> Result<PgCluster, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let data = dir.path().join("data");
        let as_postgres = is_root();
        std::fs::create_dir(&data).map_err(|e| e.to_string())?;
        if as_postgres {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .map_err(|e| e.to_string())?;
            let chown = Command::new("chown")
                .args(["postgres:"])
                .arg(&data)
                .output()
                .map_err(|e| e.to_string())?;
            if !chown.status.success() {
                return Err(format!(
                    "chown postgres: {}",
                    String::from_utf8_lossy(&chown.stderr)
                ));
            }
        }
        let cluster = PgCluster {
            _dir: dir,
            data,
            port: free_port(),
            as_postgres,
        };
        let data = cluster.data.to_string_lossy().into_owned();
        let init = cluster.run(
            &tool("initdb"),
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        )?;
        if !init.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&init.stderr)
            ));
        }
        cluster.start_server()?;
        Ok(cluster)
    }

    /// `postgres://postgres@127.0.0.1:port`, as `VAKT_TEST_POSTGRES` names a server.
    pub fn server_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    fn run(&self, program: &Path, args: &[&str]) -> Result<Output, String> {
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        cmd.args(args)
            .output()
            .map_err(|e| format!("{}: {e}", program.display()))
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<Output, String> {
        let data = self.data.to_string_lossy().into_owned();
        let log = self.data.join("server.log").to_string_lossy().into_owned();
        let options = format!(
            "-p {} -k {data} -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200",
            self.port
        );
        let mut all = vec!["-D", &data, "-l", &log, "-o", &options];
        all.extend_from_slice(args);
        self.run(&tool("pg_ctl"), &all)
    }

    fn start_server(&self) -> Result<(), String> {
        // After a kill -9 of the postmaster, its orphaned backends hold the shared memory
        // until they notice; the start is refused until then.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.pg_ctl(&["start", "-w", "-t", "30"])?;
            if out.status.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "pg_ctl start failed: {}{}\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr),
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `pg_ctl restart -m fast`: every session is ended, the server checkpoints and starts
    /// again.
    pub fn restart_fast(&self) {
        let out = self
            .pg_ctl(&["restart", "-m", "fast", "-w", "-t", "60"])
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl restart failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// SIGKILL to the postmaster: no checkpoint, the next start recovers from the WAL.
    pub fn kill_9(&self) {
        let pid = std::fs::read_to_string(self.data.join("postmaster.pid"))
            .expect("the server runs")
            .lines()
            .next()
            .unwrap()
            .trim()
            .to_owned();
        let status = Command::new("kill").args(["-9", &pid]).status().unwrap();
        assert!(status.success());
    }

    /// Starts the server again after `kill_9`.
    pub fn start_again(&self) {
        self.start_server().unwrap();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default()
    }
}
