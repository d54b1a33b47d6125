//! The `vakt` command line: serve, demo, migrate, and the operator's user, token and
//! device commands.

use std::io::Read;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use vakt::config::Config;
use vakt::domain::{now_ms, DeviceKind};
use vakt::store::{Role, User};

#[derive(Parser)]
#[command(
    name = "vakt",
    version,
    about = "Backend for police victim-support alarm devices"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything: broker link, ingest, API and console.
    Serve,
    /// Run with demo cases, orders and simulated devices, and print a login.
    Demo,
    /// Apply the database migrations and exit.
    Migrate,
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage API tokens for machine clients.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage devices.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; the password is read from standard input.
    Add {
        #[arg(long)]
        username: String,
        #[arg(long, value_parser = ["officer", "coordinator", "admin"])]
        role: String,
        /// The police region the user works in; none means national.
        #[arg(long)]
        region: Option<String>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a new bearer token for the user.
    Create {
        #[arg(long)]
        username: String,
    },
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Add a device in stock and print its key (shown once).
    Add {
        #[arg(long)]
        id: String,
        #[arg(long, default_value = "alarm", value_parser = ["alarm", "tag"])]
        kind: String,
        #[arg(long)]
        model: Option<String>,
        /// Heartbeat interval in seconds, overriding the device's own.
        #[arg(long)]
        hb: Option<u32>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line an operator can act on, causes included; no backtrace noise.
            eprintln!("vakt: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VAKT_LOG")
                .unwrap_or_else(|_| "info,rumqttd=warn,rumqttc=warn,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let config = Config::load().context("configuration")?;
    match cli.command {
        Command::Serve => serve(config, false).await,
        Command::Demo => serve(config, true).await,
        Command::Migrate => {
            vakt::open_store(&config).await?;
            println!("migrations applied to {}", redact(&config.database_url()));
            Ok(())
        }
        Command::User {
            command:
                UserCommand::Add {
                    username,
                    role,
                    region,
                },
        } => {
            let store = vakt::open_store(&config).await?;
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .context("reading the password from standard input")?;
            let password = password.trim_end_matches(['\n', '\r']);
            if password.chars().count() < 12 {
                bail!("the password must have at least 12 characters");
            }
            let user = User {
                username: username.clone(),
                role: Role::parse(&role).expect("clap checked the role"),
                region,
                password_hash: vakt::web::auth::hash_password(password),
                totp_secret: None,
            };
            store.insert_user(&user, now_ms()).await?;
            store
                .audit(
                    None,
                    "user_added",
                    Some(&username),
                    None,
                    Some(&role),
                    now_ms(),
                )
                .await?;
            println!("user {username} added as {role}");
            Ok(())
        }
        Command::Token {
            command: TokenCommand::Create { username },
        } => {
            let store = vakt::open_store(&config).await?;
            store
                .user(&username)
                .await
                .with_context(|| format!("no user {username}"))?;
            let (token, hash) = vakt::web::auth::new_token();
            store.insert_api_token(&hash, &username, now_ms()).await?;
            store
                .audit(None, "token_created", Some(&username), None, None, now_ms())
                .await?;
            println!("{token}");
            Ok(())
        }
        Command::Device {
            command:
                DeviceCommand::Add {
                    id,
                    kind,
                    model,
                    hb,
                },
        } => {
            let store = vakt::open_store(&config).await?;
            let state = offline_state(store, config);
            let req = vakt::web::api::NewDevice {
                id,
                kind: DeviceKind::parse(&kind).expect("clap checked the kind"),
                model,
                hb_interval_s: hb,
                supervision_class: None,
            };
            match vakt::web::api::add_device(&state, &req, None).await {
                Ok(out) => {
                    println!("device {} added ({}, in stock)", out.id, kind);
                    println!("key: {}", out.key);
                    println!("The key is shown this once: give it to the device now.");
                    Ok(())
                }
                Err(e) => bail!("{}", problem_text(e)),
            }
        }
    }
}

async fn serve(config: Config, demo: bool) -> anyhow::Result<()> {
    let wanted_http = config.http_addr;
    let wanted_mqtt = config.mqtt_listen;
    let external = config.mqtt_url.is_some();
    let running = vakt::start(
        config,
        vakt::StartOptions {
            fallback_ports: demo,
        },
    )
    .await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if demo {
        let (logins, devices) = vakt::demo::seed(&running.state.store).await?;
        running.state.refresh_directory().await;
        println!();
        println!("vakt demo is running.");
        if running.http_addr != wanted_http {
            println!(
                "  ({wanted_http} was taken, so HTTP moved to {})",
                running.http_addr
            );
        }
        if !external && running.mqtt_port != wanted_mqtt.port() {
            println!(
                "  ({wanted_mqtt} was taken, so the embedded MQTT broker moved to port {})",
                running.mqtt_port
            );
        }
        println!("  Console:     http://{}/", running.http_addr);
        for l in &logins {
            println!(
                "  Log in as {:<12} password {}   ({})",
                l.username,
                l.password,
                l.role.as_str()
            );
        }
        println!("  MQTT broker: {}:{}", running.mqtt_host, running.mqtt_port);
        println!(
            "  {} simulated devices; an alarm about every 30 s. Ctrl-C stops.",
            devices.len()
        );
        println!();
        tokio::spawn(vakt::demo::run_fleet(
            running.mqtt_host.clone(),
            running.mqtt_port,
            devices,
            stop_rx,
        ));
    } else {
        tracing::info!(http = %running.http_addr, mqtt = %format!("{}:{}", running.mqtt_host, running.mqtt_port), "vakt is serving");
    }
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    running.stop().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// State for commands that use API logic without serving.
fn offline_state(store: vakt::store::SharedStore, config: Config) -> vakt::web::AppState {
    vakt::web::AppState {
        store,
        directory: Default::default(),
        hub: Default::default(),
        metrics: Default::default(),
        config: std::sync::Arc::new(config),
        downlink: None,
        supervision: None,
        throttle: Default::default(),
    }
}

fn problem_text(e: vakt::web::error::ApiError) -> String {
    use vakt::web::error::ApiError::*;
    match e {
        Invalid { field, detail } => format!("{field}: {detail}"),
        BadRequest { detail, .. } | Conflict(detail) | Unavailable(detail) => detail,
        other => format!("{other:?}"),
    }
}

/// A database URL without its password, for printing.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***{}", &url[..s], &url[at..]),
        _ => url.to_owned(),
    }
}
