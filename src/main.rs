//! The `vakt` command line: serve, demo, migrate, export and import, and the operator's
//! user, token, device and master-key commands.

use std::io::Read;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use vakt::app::devices::NewDevice;
use vakt::app::users::NewUser;
use vakt::app::{self, Actor, AppError};
use vakt::config::Config;
use vakt::domain::DeviceKind;
use vakt::store::Role;

#[derive(Parser)]
#[command(
    name = "vakt",
    version,
    about = "Backend for police victim-support alarm devices"
)]
struct Cli {
    /// The configuration file; without it, `vakt.toml` in the working directory if there is
    /// one. The environment's `VAKT_*` settings win over it.
    #[arg(long, global = true, env = "VAKT_CONFIG", value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything: broker link, ingest, API and console.
    Serve,
    /// Run with demo cases, orders and simulated devices, and print a login.
    Demo,
    /// Ask the running vakt whether it is ready (`/readyz`); exits non-zero with the reason
    /// when it is not. For container health checks.
    Health {
        /// Only whether it is alive (`/healthz`), not whether it can take alarms in.
        #[arg(long)]
        live: bool,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
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
    /// Check the audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Manage devices.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Check the police regions of the stored data.
    Regions {
        #[command(subcommand)]
        command: RegionsCommand,
    },
    /// Configure an external broker from the device register.
    Broker {
        #[command(subcommand)]
        command: BrokerCommand,
    },
    /// Write the whole database into a new directory: a JSON Lines file per table and a
    /// manifest with counts and SHA-256 checksums (docs/export.md). Sealed secrets stay
    /// sealed; the master key is not written and is moved apart (docs/export.md).
    Export {
        /// The directory to write into; made if missing, and refused if not empty.
        #[arg(long, value_name = "DIR")]
        out: std::path::PathBuf,
    },
    /// Read an export into the configured database, which must be new and empty (it is
    /// migrated first). Every file's count and checksum is checked before anything is
    /// written; all rows go in one transaction. Needs the master key of the exported
    /// database; the audit chain is verified afterwards.
    Import {
        /// The directory `vakt export` wrote.
        #[arg(value_name = "DIR")]
        dir: std::path::PathBuf,
    },
    /// Make a master key, or replace the one in use (docs/operations.md, "Rotating the
    /// master key").
    MasterKey {
        #[command(subcommand)]
        command: MasterKeyCommand,
    },
}

#[derive(Subcommand)]
enum MasterKeyCommand {
    /// Print a new master key (64 hex characters).
    ///
    /// Write it where only you can read it: (umask 077; vakt master-key new > new-master-key)
    New,
    /// Replace the master key in use by a new one. Stop every vakt instance first.
    ///
    /// The key in use is the configured one (master_key, VAKT_MASTER_KEY, VAKT_MASTER_KEY_FILE,
    /// or master.key in the data directory). In one transaction, every device key, next
    /// device key and one-time-code secret is sealed again and the audit chain re-linked
    /// under the new key, its fingerprint stored, and the entry master_key_rotated added;
    /// nothing changes if any step fails. A broken audit chain is refused, naming the entry.
    ///
    /// Run it with EVERY vakt instance of the deployment stopped, after a backup: an
    /// instance left running would go on sealing and linking under the old key (on
    /// PostgreSQL a running instance is noticed and refused; on SQLite nothing shows it).
    /// Afterwards every instance and admin command needs the new key, and backups made
    /// before need the old one.
    Rotate {
        /// The new key: 64 hex characters and at most one line break, as `vakt master-key
        /// new` prints it.
        #[arg(long, value_name = "FILE")]
        new_key_file: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
enum BrokerCommand {
    /// Write Mosquitto's password file and ACL (DIR/passwd, DIR/acl) for the devices in
    /// stock or issued and the backend users; then make Mosquitto reload: kill -HUP.
    MosquittoFiles {
        /// The directory to write `passwd` and `acl` into; it must exist.
        #[arg(long, value_name = "DIR")]
        out: std::path::PathBuf,
        /// A vakt instance's broker user (repeat for each instance; each is its client id
        /// too). Default: VAKT_MQTT_USERNAME, or `vakt-backend`.
        #[arg(long = "backend-user", value_name = "NAME")]
        backend_users: Vec<String>,
        /// Give the files to this owner (UID:GID), e.g. 1883:1883 for the
        /// eclipse-mosquitto image: Mosquitto reads them after dropping privileges.
        #[arg(long, value_name = "UID:GID", value_parser = vakt::mqtt::mosquitto::parse_owner)]
        owner: Option<(u32, u32)>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; the password is read from standard input.
    Add {
        #[arg(long)]
        username: String,
        #[arg(long, value_parser = ["officer", "coordinator", "investigator", "admin"])]
        role: String,
        /// The police region the user works in, one of the list (by name or code, ignoring
        /// case); none means national.
        #[arg(long)]
        region: Option<String>,
    },
    /// Give a user a new password, read from standard input; ends all of the user's
    /// sessions.
    SetPassword {
        #[arg(long)]
        username: String,
    },
    /// Give a user a new second factor, printed once; the old codes stop working and all
    /// of the user's sessions end.
    ResetSecondFactor {
        #[arg(long)]
        username: String,
    },
}

#[derive(Subcommand)]
enum RegionsCommand {
    /// List persons, cases and users whose region is not in the list of regions in force,
    /// and cases in another region than their person; exits non-zero when there is any.
    Check,
    /// Give every person, case, user and alert whose region names a region of the list in
    /// another case (`nord`) the list's spelling (`Nord`), and print what changed; each
    /// correction goes to the audit log. Other findings of `check` stay for a person to decide.
    FixSpelling,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a new bearer token for the user.
    Create {
        #[arg(long)]
        username: String,
    },
    /// Revoke every bearer token of the user.
    Revoke {
        #[arg(long)]
        username: String,
    },
    /// How many bearer tokens the user has, and when each was created.
    List {
        #[arg(long)]
        username: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute the audit log's hash chain; exits non-zero at the first broken entry.
    Verify,
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
    /// Give a device a new key. A running vakt tells the device in a signed cfg within
    /// seconds; the old key stays valid until the device signs with the new one.
    RotateKey {
        #[arg(long)]
        id: String,
    },
    /// Take an issued device back, handed in or (with --lost) lost: vakt drops its messages
    /// at once, and a running vakt that manages the broker's logins puts it out there.
    Return {
        #[arg(long)]
        id: String,
        /// Why, for the audit log (1 to 500 characters).
        #[arg(long)]
        reason: String,
        #[arg(long)]
        lost: bool,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // One crypto provider for every TLS link of the process, before any is set up.
    vakt::tls::install_provider();
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
    init_logging()?;
    let cli = Cli::parse();
    if let Command::MasterKey {
        command: MasterKeyCommand::New,
    } = cli.command
    {
        // Needs no configuration: it is also how a new deployment gets its key.
        println!("{}", vakt::keys::new_master_key());
        return Ok(());
    }
    let config = Config::load(cli.config.as_deref()).context("configuration")?;
    match cli.command {
        Command::Serve => serve(config).await,
        Command::Health { live, timeout } => {
            let probe = if live {
                vakt::health::Probe::Live
            } else {
                vakt::health::Probe::Ready
            };
            let answer =
                vakt::health::check(&config, probe, std::time::Duration::from_secs(timeout))
                    .await?;
            println!("{answer}");
            Ok(())
        }
        #[cfg(feature = "demo")]
        Command::Demo => demo(config).await,
        #[cfg(not(feature = "demo"))]
        Command::Demo => anyhow::bail!(
            "this build of vakt has no demo: it was built without the `demo` feature (cargo build --features demo)"
        ),
        Command::Migrate => {
            vakt::open_store_for_command(&config).await?;
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
            let ctx = command_ctx(&config).await?;
            let req = NewUser {
                username,
                password: password_from_stdin()?,
                role: Role::parse(&role).expect("clap checked the role"),
                region,
            };
            let added = app::users::add(&ctx, &Actor::Operator, &req).await?;
            println!("user {} added as {role}", added.user.username);
            if let Some(uri) = added.totp_uri {
                println!("second factor (add it to an authenticator app now; shown once):");
                println!("{uri}");
            }
            Ok(())
        }
        Command::User {
            command: UserCommand::SetPassword { username },
        } => {
            let ctx = command_ctx(&config).await?;
            let password = password_from_stdin()?;
            let ended = app::users::set_password(&ctx, &Actor::Operator, &username, &password)
                .await
                .map_err(|e| no_user(e, &username))?;
            println!(
                "user {username}: new password set; {} session(s) ended",
                ended.sessions.len()
            );
            Ok(())
        }
        Command::User {
            command: UserCommand::ResetSecondFactor { username },
        } => {
            let ctx = command_ctx(&config).await?;
            let reset = app::users::reset_second_factor(&ctx, &Actor::Operator, &username)
                .await
                .map_err(|e| no_user(e, &username))?;
            println!(
                "user {username}: new second factor; the old codes no longer work; {} session(s) ended",
                reset.ended.sessions.len()
            );
            println!("second factor (add it to an authenticator app now; shown once):");
            println!("{}", reset.totp_uri);
            Ok(())
        }
        Command::Token {
            command: TokenCommand::Revoke { username },
        } => {
            let ctx = command_ctx(&config).await?;
            let ended = app::users::revoke_tokens(&ctx, &Actor::Operator, &username)
                .await
                .map_err(|e| no_user(e, &username))?;
            println!(
                "user {username}: {} token(s) revoked",
                ended.tokens.len()
            );
            Ok(())
        }
        Command::Token {
            command: TokenCommand::List { username },
        } => {
            let ctx = command_ctx(&config).await?;
            let times = app::users::token_times(&ctx, &Actor::Operator, &username)
                .await
                .map_err(|e| no_user(e, &username))?;
            println!("user {username}: {} token(s)", times.len());
            for at in times {
                println!("created {}", vakt::domain::rfc3339(at));
            }
            Ok(())
        }
        Command::Token {
            command: TokenCommand::Create { username },
        } => {
            let ctx = command_ctx(&config).await?;
            match app::users::create_token(&ctx, &Actor::Operator, &username).await {
                Ok(token) => {
                    println!("{token}");
                    Ok(())
                }
                Err(AppError::NotFound) => bail!("no user {username}"),
                Err(e) => Err(e.into()),
            }
        }
        Command::Audit {
            command: AuditCommand::Verify,
        } => {
            let store = vakt::open_store_for_command(&config).await?;
            let verdict = store.verify_audit().await?;
            match verdict.first_broken {
                None => {
                    println!("audit log intact: {} entries, chain verified", verdict.entries);
                    Ok(())
                }
                Some(id) => bail!(
                    "audit log broken at entry {id} (of {} read): an entry was edited or deleted there",
                    verdict.entries
                ),
            }
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
            let ctx = command_ctx(&config).await?;
            let req = NewDevice {
                id,
                kind: DeviceKind::parse(&kind).expect("clap checked the kind"),
                model,
                hb_interval_s: hb,
                supervision_class: None,
            };
            let (d, key) = app::devices::add(&ctx, &Actor::Operator, &req).await?;
            println!("device {} added ({}, in stock)", d.id, kind);
            println!("key: {}", key.to_hex());
            println!("The key is shown this once: give it to the device now.");
            Ok(())
        }
        Command::Device {
            command: DeviceCommand::RotateKey { id },
        } => {
            let ctx = command_ctx(&config).await?;
            match app::devices::rotate_key(&ctx, &Actor::Operator, &id).await {
                Ok((_, key)) => {
                    println!("device {id}: new key {}", key.to_hex());
                    println!("The key is shown this once. A running vakt sends it to the device in a signed cfg within seconds;");
                    println!("the old key stays valid until the device signs a message with the new one.");
                    Ok(())
                }
                Err(AppError::NotFound) => bail!("no device {id}"),
                Err(e) => Err(e.into()),
            }
        }
        Command::Device {
            command: DeviceCommand::Return { id, reason, lost },
        } => {
            let ctx = command_ctx(&config).await?;
            let req = app::devices::ReturnRequest { reason, lost };
            match app::devices::take_back(&ctx, &Actor::Operator, &id, &req).await {
                Ok(d) => {
                    println!("device {id}: {}", d.status.as_str());
                    Ok(())
                }
                Err(AppError::NotFound) => bail!("no device {id}"),
                Err(e) => Err(e.into()),
            }
        }
        Command::Regions {
            command: RegionsCommand::Check,
        } => {
            let ctx = command_ctx(&config).await?;
            let findings = app::regions::check(&ctx, &Actor::Operator).await?;
            for f in &findings {
                println!("{f}");
            }
            if findings.is_empty() {
                println!(
                    "regions consistent: every person, case and user is in a region of the list"
                );
                Ok(())
            } else {
                bail!(
                    "{} region finding(s): `vakt regions fix-spelling` corrects regions spelt in another case; the others need a decision (docs/operations.md, \"Regions\")",
                    findings.len()
                )
            }
        }
        Command::Regions {
            command: RegionsCommand::FixSpelling,
        } => {
            let ctx = command_ctx(&config).await?;
            let fixes = app::regions::fix_spelling(&ctx, &Actor::Operator).await?;
            for f in &fixes {
                println!(
                    "region \"{}\" to \"{}\": {} record(s)",
                    f.from, f.to, f.records
                );
            }
            if fixes.is_empty() {
                println!("no region to respell");
            }
            println!("run `vakt regions check` for what is left; a running vakt sees the change within 30 s");
            Ok(())
        }
        Command::Broker {
            command:
                BrokerCommand::MosquittoFiles {
                    out,
                    backend_users,
                    owner,
                },
        } => mosquitto_files(config, &out, backend_users, owner).await,
        Command::Export { out } => {
            let url = config.database_url();
            let manifest = vakt::store::export(&url, &out).await?;
            let rows: u64 = manifest.tables.iter().map(|t| t.rows).sum();
            println!(
                "exported {} tables, {rows} rows, of schema version {} from {} into {}",
                manifest.tables.len(),
                manifest.schema_version,
                redact(&url),
                out.display()
            );
            for t in &manifest.tables {
                println!("  {:<24} {:>10}", t.table, t.rows);
            }
            println!("The master key is not in the export: move it apart (docs/export.md).");
            Ok(())
        }
        Command::Import { dir } => {
            let url = config.database_url();
            let configured = config.master_key.as_ref().map(|k| k.0.as_str());
            let vault = vakt::keys::KeyVault::load_existing(configured, &config.data_dir)
                .context("the master key of the exported database (docs/export.md)")?;
            let (imported, verdict) = vakt::store::import(&url, &dir, &vault).await?;
            let rows: u64 = imported.iter().map(|(_, n)| n).sum();
            println!(
                "imported {} tables, {rows} rows, from {} into {}",
                imported.len(),
                dir.display(),
                redact(&url)
            );
            for (table, n) in &imported {
                println!("  {table:<24} {n:>10}");
            }
            match verdict.first_broken {
                None => println!("audit log intact: {} entries, chain verified", verdict.entries),
                Some(id) => bail!(
                    "imported, but the audit log is broken at entry {id} (of {} read): it was so in the exported database, or the export was edited and its checksums made again",
                    verdict.entries
                ),
            }
            Ok(())
        }
        Command::MasterKey {
            command: MasterKeyCommand::New,
        } => unreachable!("printed before the configuration is read"),
        Command::MasterKey {
            command: MasterKeyCommand::Rotate { new_key_file },
        } => rotate_master_key(&config, &new_key_file).await,
    }
}

/// `vakt master-key rotate`: the new key from its file, the old one as configured, and what
/// the operator does next.
async fn rotate_master_key(config: &Config, new_key_file: &std::path::Path) -> anyhow::Result<()> {
    let named = || format!("--new-key-file {}", new_key_file.display());
    let text = std::fs::read_to_string(new_key_file).with_context(named)?;
    let new = vakt::keys::KeyVault::from_key_file(&text).with_context(named)?;
    let configured = config.master_key.as_ref().map(|k| k.0.as_str());
    let old = vakt::keys::KeyVault::load_existing(configured, &config.data_dir)
        .context("the master key in use")?;
    let url = config.database_url();
    let done = vakt::store::rotate_master_key(&url, &old, &new).await?;
    println!("master key rotated in {}:", redact(&url));
    println!(
        "  sealed again under the new key: {} device keys, {} next device keys (of key rotations under way), {} one-time-code secrets",
        done.device_keys, done.next_device_keys, done.totp_secrets
    );
    println!(
        "  re-linked under the new key: {} audit entries, and the entry master_key_rotated added",
        done.audit_entries
    );
    for place in &done.not_opened {
        eprintln!("vakt: left as it was: {place} does not open under the old key (put in the clear or damaged behind vakt's back); vakt refuses it under either key");
    }
    println!("Next:");
    match configured {
        None => println!(
            "  1. Replace {} with the new key (owner-only, vakt's user), and give it to every admin command too.",
            config.data_dir.join("master.key").display()
        ),
        Some(_) => println!(
            "  1. Put the new key in place of the old one wherever an instance or admin command reads it (master_key, VAKT_MASTER_KEY or\n     VAKT_MASTER_KEY_FILE): docker compose deploy/secrets/master-key, systemd /etc/vakt/secrets/master-key."
        ),
    }
    println!("  2. Start the instances; they refuse the old key. Check the chain with the new key: vakt audit verify");
    println!("  3. Keep the old key, apart from the new one, for as long as backups made before now are kept: they need it. Then destroy it.");
    Ok(())
}

/// A password from standard input: all of it, trailing line breaks removed.
fn password_from_stdin() -> anyhow::Result<String> {
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .context("reading the password from standard input")?;
    Ok(password.trim_end_matches(['\n', '\r']).to_owned())
}

/// An operation on a user, worded for the operator when the user does not exist.
fn no_user(e: AppError, username: &str) -> anyhow::Error {
    match e {
        AppError::NotFound => anyhow::anyhow!("no user {username}"),
        e => e.into(),
    }
}

/// Logs to standard error, as text or, with `VAKT_LOG_FORMAT=json`, one JSON object a line
/// for a log collector; `VAKT_LOG` filters.
fn init_logging() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VAKT_LOG")
        .unwrap_or_else(|_| "info,rumqttc=warn,sqlx=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match std::env::var("VAKT_LOG_FORMAT").as_deref() {
        Err(_) | Ok("" | "text") => builder.init(),
        Ok("json") => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        Ok(other) => bail!("VAKT_LOG_FORMAT `{other}`: expected `text` or `json`"),
    }
    Ok(())
}

/// `vakt broker mosquitto-files`: renders both files from the register and replaces them.
async fn mosquitto_files(
    config: Config,
    out: &std::path::Path,
    mut backend_users: Vec<String>,
    owner: Option<(u32, u32)>,
) -> anyhow::Result<()> {
    use vakt::mqtt::mosquitto::{render_acl, render_password_file, write_atomically, SALT_LEN};
    let Some(password) = config.mqtt_password.as_ref().filter(|p| !p.0.is_empty()) else {
        bail!("no backend broker password: set VAKT_MQTT_PASSWORD (or mqtt_password)");
    };
    if backend_users.is_empty() {
        backend_users.push(
            config
                .mqtt_username
                .clone()
                .unwrap_or_else(|| vakt::mqtt::BACKEND_USER.to_owned()),
        );
    }
    let users: Vec<&str> = backend_users.iter().map(String::as_str).collect();
    let store = vakt::open_store_for_command(&config).await?;
    let vault = config.key_vault()?;
    // The broker checks the keys in its own hashed form: open the sealed ones here.
    let mut devices = store.devices().await?;
    for d in &mut devices {
        match vault.open(&d.key_hex, &d.id) {
            Ok(key) => d.key_hex = key.to_hex(),
            Err(e) => eprintln!("vakt: {e}"),
        }
    }
    let salt = vakt::keys::os_random::<SALT_LEN>;
    let passwd = render_password_file(&devices, &users, &password.0, salt)?;
    let acl = render_acl(&users)?;
    let write = |name, text: &str| {
        write_atomically(out, name, text, 0o600, owner)
            .with_context(|| format!("writing {}", out.join(name).display()))
    };
    let passwd_path = write("passwd", &passwd.text)?;
    let acl_path = write("acl", &acl)?;
    println!(
        "wrote {}: {} and {} devices (in stock or issued); {} returned or lost left out",
        passwd_path.display(),
        users.join(", "),
        passwd.devices,
        passwd.revoked
    );
    println!("wrote {}", acl_path.display());
    for (id, why) in &passwd.refused {
        eprintln!("vakt: device {id:?} not written: {why}");
    }
    println!("Make Mosquitto read them: kill -HUP <its pid> (compose: docker compose kill -s HUP mosquitto).");
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let running = vakt::start(config, vakt::StartOptions::default()).await?;
    let scheme = if running.state.config.https_enabled() {
        "https"
    } else {
        "http"
    };
    let http = format!("{scheme}://{}", running.http_addr);
    let mqtt = format!("{}:{}", running.mqtt_host, running.mqtt_port);
    match running.mqtt_tls_port {
        Some(tls) => tracing::info!(%http, %mqtt, mqtt_tls = tls, "vakt is serving"),
        None => tracing::info!(%http, %mqtt, "vakt is serving"),
    }
    shutdown_signal().await;
    stop(running).await;
    Ok(())
}

/// `vakt serve` with the seeded first look and a simulated fleet.
#[cfg(feature = "demo")]
async fn demo(mut config: Config) -> anyhow::Result<()> {
    // A first look on one's own machine: the printed logins work without an app.
    config.require_second_factor = false;
    let wanted_http = config.http_addr;
    let wanted_mqtt = config.mqtt_listen;
    let external = config.mqtt_url.is_some();
    let running = vakt::start(
        config,
        vakt::StartOptions {
            fallback_ports: true,
        },
    )
    .await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (logins, devices) = vakt::demo::seed(&running.state.app()).await?;
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
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    stop(running).await;
    Ok(())
}

async fn stop(running: vakt::Running) {
    // Consoles end their streams at the stop; anything still hanging after that is cut.
    if tokio::time::timeout(std::time::Duration::from_secs(5), running.stop())
        .await
        .is_err()
    {
        tracing::warn!("shutdown took longer than 5 s; stopping anyway");
    }
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

/// What a command acts on: the store, and no broker link (a running vakt tells the devices).
async fn command_ctx(config: &Config) -> anyhow::Result<app::Ctx> {
    let store = vakt::open_store_for_command(config).await?;
    Ok(app::Ctx {
        store,
        directory: vakt::directory::Directory::new(std::sync::Arc::new(config.key_vault()?)),
        config: std::sync::Arc::new(config.clone()),
        metrics: Default::default(),
        // Nobody watches alerts from a command: its hub has no listener.
        hub: Default::default(),
        devices: app::DeviceLink::Offline,
    })
}

/// A database URL without its password, for printing.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***{}", &url[..s], &url[at..]),
        _ => url.to_owned(),
    }
}
