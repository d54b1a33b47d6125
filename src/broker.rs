//! The embedded MQTT broker (rumqttd) for zero-setup runs: devices log in with their id and
//! key, the backend with a secret made at start.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

use crate::directory::Directory;

/// The username the backend's own client uses on the embedded broker.
pub const BACKEND_USER: &str = "vakt-backend";

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("embedded broker: {0}")]
    Start(String),
}

/// Picks the address to listen on: the wanted one, or (when `fallback` and it is taken) a
/// free port on the same interface.
pub fn choose_addr(wanted: SocketAddr, fallback: bool) -> Result<SocketAddr, BrokerError> {
    match TcpListener::bind(wanted) {
        Ok(l) => l.local_addr().map_err(|e| BrokerError::Bind(wanted, e)),
        Err(e) if fallback || wanted.port() == 0 => {
            let any = SocketAddr::new(wanted.ip(), 0);
            let l = TcpListener::bind(any).map_err(|_| BrokerError::Bind(wanted, e))?;
            l.local_addr().map_err(|e| BrokerError::Bind(any, e))
        }
        Err(e) => Err(BrokerError::Bind(wanted, e)),
    }
}

/// Starts rumqttd on its own thread, listening on `addr` (a concrete port, see `choose_addr`).
pub fn start(
    addr: SocketAddr,
    directory: Directory,
    backend_secret: String,
) -> Result<(), BrokerError> {
    let mut connections = ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: 4096,
        max_inflight_count: 200,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    connections.set_auth_handler(
        move |client_id: String, username: String, password: String| {
            let allowed = authenticate(
                &directory,
                &backend_secret,
                &client_id,
                &username,
                &password,
            );
            if !allowed {
                tracing::warn!(client_id, username, "embedded broker refused a connection");
            }
            async move { allowed }
        },
    );
    let server = ServerSettings {
        name: "v4-devices".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 0,
        connections,
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 1_100_000,
            max_outgoing_packet_count: 1000,
            max_segment_size: 1024 * 1024,
            max_segment_count: 10,
            ..Default::default()
        },
        v4: Some(HashMap::from([("1".to_owned(), server)])),
        ..Default::default()
    };
    let mut broker = Broker::new(config);
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded broker stopped");
            }
        })
        .map_err(|e| BrokerError::Start(e.to_string()))?;
    Ok(())
}

/// Devices log in as themselves (client id = username = device id) with their key as the
/// password (during a key rotation the next key too, since the device may switch before it
/// has been heard signing with it); returned and lost devices are refused.
fn authenticate(
    directory: &Directory,
    backend_secret: &str,
    client_id: &str,
    username: &str,
    password: &str,
) -> bool {
    if username == BACKEND_USER {
        return constant_time_eq(password.as_bytes(), backend_secret.as_bytes());
    }
    if client_id != username {
        return false;
    }
    match directory.device(username) {
        Some(d) => {
            matches!(
                d.status,
                crate::domain::DeviceStatus::InStock | crate::domain::DeviceStatus::Issued
            ) && (constant_time_eq(password.as_bytes(), d.key.to_hex().as_bytes())
                || d.next_key.as_ref().is_some_and(|(next, _)| {
                    constant_time_eq(password.as_bytes(), next.to_hex().as_bytes())
                }))
        }
        None => false,
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
