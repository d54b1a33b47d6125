//! What vakt wants Mosquitto's dynamic-security plugin to hold, from the device register,
//! and the commands that take the plugin there from what it holds: pure, so every rule is
//! table-tested without a broker.
//!
//! vakt owns on the broker only what it made, and marks it so (the `textname` of each
//! client and role): a client and a role per device that may connect, named after the
//! device; this instance's backend user; and the one role all backend users share.
//! Everything else there (the administrator, other applications) it never changes; a
//! client or role it needs under a name somebody else took is a conflict, reported and
//! left alone.
//!
//! Mosquitto 2.0's plugin has no `%u` in its topic rules, so the per-device rights of the
//! ACL file (`mosquitto::render_acl`) become one role per device with that device's topics
//! written out. A device's client may log in only under its own id as client id (the
//! plugin's `clientid`), which does for it what `use_username_as_clientid` does with the
//! password file: no device can log in under a backend's client id.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::domain::DeviceStatus;
use crate::mqtt::mosquitto::may_connect;
use crate::protocol::{self, Downlink, ProtocolError, Uplink, TOPIC_PREFIX, UPLINK_FILTER};

/// The `textname` of a device's client and role: vakt made them and keeps them.
pub const DEVICE_MARK: &str = "vakt device";
/// The `textname` of a backend user and of the backend users' role.
pub const BACKEND_MARK: &str = "vakt backend";
/// The role every backend user has: every device's uplink, and their answers.
pub const BACKEND_ROLE: &str = "vakt-backends";
const DEVICE_ROLE_PREFIX: &str = "vakt-device-";

/// The role holding one device's rights. Device ids never start with the backend prefix, so
/// this name is never a device's own and never the backend users' role.
pub fn device_role(id: &str) -> String {
    format!("{DEVICE_ROLE_PREFIX}{id}")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AclType {
    PublishClientSend,
    PublishClientReceive,
    SubscribeLiteral,
    SubscribePattern,
    UnsubscribeLiteral,
    UnsubscribePattern,
    /// A kind a later plugin knows; vakt writes none, so a role holding one differs.
    #[serde(other)]
    Other,
}

/// One rule of a role. Rules of higher `priority` are checked first.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Acl {
    pub acltype: AclType,
    pub topic: String,
    #[serde(default)]
    pub priority: i64,
    pub allow: bool,
}

fn allow(acltype: AclType, topic: String) -> Acl {
    Acl {
        acltype,
        topic,
        priority: 1,
        allow: true,
    }
}

/// Whatever the rules above do not allow is denied, whatever the broker's default access
/// (which is the administrator's to set, and lets every client receive by default). `#`
/// matches no `$`-topic; those the broker refuses unless granted.
fn deny_the_rest() -> [Acl; 3] {
    [
        AclType::PublishClientSend,
        AclType::PublishClientReceive,
        AclType::SubscribePattern,
    ]
    .map(|acltype| Acl {
        acltype,
        topic: "#".into(),
        priority: 0,
        allow: false,
    })
}

/// A device's rights, as the ACL file's `pattern` rules give them: publish on its own
/// uplink topics, subscribe to and receive its own `ack` and `cfg`, nothing else.
pub fn device_acls(id: &str) -> Vec<Acl> {
    let own = |leaf: &str| format!("{TOPIC_PREFIX}{id}/{leaf}");
    let mut acls: Vec<Acl> = Uplink::ALL
        .iter()
        .map(|up| allow(AclType::PublishClientSend, own(up.name())))
        .collect();
    for down in Downlink::ALL {
        acls.push(allow(AclType::SubscribeLiteral, own(down.name())));
        acls.push(allow(AclType::PublishClientReceive, own(down.name())));
    }
    acls.extend(deny_the_rest());
    acls.sort();
    acls
}

/// The backend users' rights, as the ACL file gives them: read every uplink (directly or
/// through a shared subscription, which Mosquitto 2.0 checks as written, `$share/…`
/// included), and publish the answers, `ack` and `cfg`.
pub fn backend_acls() -> Vec<Acl> {
    let mut acls = vec![
        allow(AclType::SubscribePattern, UPLINK_FILTER.to_owned()),
        allow(
            AclType::SubscribePattern,
            format!("$share/+/{UPLINK_FILTER}"),
        ),
        allow(AclType::PublishClientReceive, UPLINK_FILTER.to_owned()),
    ];
    for down in Downlink::ALL {
        acls.push(allow(
            AclType::PublishClientSend,
            format!("{TOPIC_PREFIX}+/{}", down.name()),
        ));
    }
    acls.extend(deny_the_rest());
    acls.sort();
    acls
}

/// A broker password: goes into the commands that set it, and nowhere else.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(password: String) -> Password {
        Password(password)
    }

    /// What the client's `textdescription` carries: the plugin never tells a password (nor
    /// its hash) back, so this is how a later reconciliation, of any instance, knows the
    /// password is the right one without setting it again, which would end the device's
    /// connection. 64 bits of a hash of a 256-bit secret: it tells nothing of the password.
    fn description(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(b"vakt broker password fingerprint\n");
        hash.update(self.0.as_bytes());
        format!(
            "managed by vakt; password {}",
            hex::encode(&hash.finalize()[..8])
        )
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

impl Serialize for Password {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// A device as the register has it, for the broker.
#[derive(Debug, Clone)]
pub struct RegisterDevice {
    pub id: String,
    pub status: DeviceStatus,
    /// Its MQTT password (`DeviceKey::mqtt_password`), when it may connect; `None` when its
    /// stored key cannot be opened here.
    pub password: Option<Password>,
}

/// This instance's own login on the broker.
#[derive(Debug, Clone)]
pub struct BackendUser {
    pub username: String,
    pub password: Password,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedClient {
    pub mark: &'static str,
    pub password: Password,
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedRole {
    pub mark: &'static str,
    pub acls: Vec<Acl>,
}

/// What vakt wants on the broker, by client and role name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    pub clients: BTreeMap<String, WantedClient>,
    pub roles: BTreeMap<String, WantedRole>,
    /// Devices this instance cannot judge (their key does not open with its master key):
    /// their client and role stay as they are, so one misconfigured instance cannot put the
    /// whole fleet out.
    pub unknown: BTreeSet<String>,
    /// Devices given nothing on purpose, and why (never a secret).
    pub refused: Vec<(String, &'static str)>,
}

impl Wanted {
    /// Everything vakt wants: the backend users' role, this instance's backend user (if it
    /// logs in with one), and a client and role for every device that may connect.
    /// `reserved` are the backend's names, which no device can have.
    pub fn everything(
        devices: &[RegisterDevice],
        backend: Option<&BackendUser>,
        reserved: &[&str],
    ) -> Wanted {
        let mut wanted = Wanted::default();
        wanted.roles.insert(
            BACKEND_ROLE.to_owned(),
            WantedRole {
                mark: BACKEND_MARK,
                acls: backend_acls(),
            },
        );
        if let Some(b) = backend {
            wanted.clients.insert(
                b.username.clone(),
                WantedClient {
                    mark: BACKEND_MARK,
                    password: b.password.clone(),
                    role: BACKEND_ROLE.to_owned(),
                },
            );
        }
        for d in devices {
            wanted.add_device(d, reserved);
        }
        wanted
    }

    /// One device only (`None`: the register does not know it), for the check that follows
    /// a change of that device.
    pub fn device(device: Option<&RegisterDevice>, reserved: &[&str]) -> Wanted {
        let mut wanted = Wanted::default();
        if let Some(d) = device {
            wanted.add_device(d, reserved);
        }
        wanted
    }

    fn add_device(&mut self, d: &RegisterDevice, reserved: &[&str]) {
        if !may_connect(d.status) {
            return;
        }
        // The id becomes a username, a client id, a role name and topics in rules: only the
        // protocol's alphabet, and never one of the backend's names.
        match protocol::new_device_id(&d.id, reserved) {
            Ok(_) => {}
            Err(ProtocolError::ReservedDeviceId) => {
                self.refused.push((
                    d.id.clone(),
                    "id is reserved for the backend's broker users",
                ));
                return;
            }
            Err(_) => {
                self.refused
                    .push((d.id.clone(), "id is not a protocol v1 device id"));
                return;
            }
        }
        let Some(password) = &d.password else {
            self.refused.push((
                d.id.clone(),
                "key cannot be opened with this master key; its broker login is left as it is",
            ));
            self.unknown.insert(d.id.clone());
            return;
        };
        let role = device_role(&d.id);
        self.clients.insert(
            d.id.clone(),
            WantedClient {
                mark: DEVICE_MARK,
                password: password.clone(),
                role: role.clone(),
            },
        );
        self.roles.insert(
            role,
            WantedRole {
                mark: DEVICE_MARK,
                acls: device_acls(&d.id),
            },
        );
    }
}

/// A role named in a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleName {
    pub rolename: String,
}

/// A client as the plugin lists it (`listClients`/`getClient`, verbose).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HeldClient {
    pub username: String,
    #[serde(default)]
    pub clientid: Option<String>,
    #[serde(default)]
    pub textname: Option<String>,
    #[serde(default)]
    pub textdescription: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub roles: Vec<RoleName>,
}

/// A role as the plugin lists it (`listRoles`/`getRole`, verbose).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HeldRole {
    pub rolename: String,
    #[serde(default)]
    pub textname: Option<String>,
    #[serde(default)]
    pub acls: Vec<Acl>,
}

/// What the plugin holds: everything, or (for a check of one device) that device's client
/// and role only. Nothing absent from here is ever removed.
#[derive(Debug, Clone, Default)]
pub struct Held {
    pub clients: BTreeMap<String, HeldClient>,
    pub roles: BTreeMap<String, HeldRole>,
}

impl Held {
    pub fn new(clients: Vec<HeldClient>, roles: Vec<HeldRole>) -> Held {
        Held {
            clients: clients
                .into_iter()
                .map(|c| (c.username.clone(), c))
                .collect(),
            roles: roles.into_iter().map(|r| (r.rolename.clone(), r)).collect(),
        }
    }
}

/// A dynamic-security command (`$CONTROL/dynamic-security/v1`), as the plugin reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "command", rename_all = "camelCase")]
pub enum Command {
    CreateRole {
        rolename: String,
        textname: String,
        acls: Vec<Acl>,
    },
    /// Replaces the role's rules, in place: the clients that have it keep it.
    ModifyRole {
        rolename: String,
        acls: Vec<Acl>,
    },
    DeleteRole {
        rolename: String,
    },
    /// Without roles: Mosquitto 2.0.11 does not link a role given here to the client, and
    /// deleting the role later leaves the client pointing at freed memory. `addClientRole`
    /// links it properly.
    CreateClient {
        username: String,
        password: Password,
        clientid: String,
        textname: String,
        textdescription: String,
    },
    AddClientRole {
        username: String,
        rolename: String,
    },
    /// Sets every field vakt keeps; the plugin ends the client's connections, which then
    /// log in again under what it holds now.
    ModifyClient {
        username: String,
        password: Password,
        clientid: String,
        textname: String,
        textdescription: String,
        roles: Vec<RoleName>,
    },
    EnableClient {
        username: String,
    },
    /// Also ends the client's connections.
    DeleteClient {
        username: String,
    },
    ListClients {
        verbose: bool,
        count: i64,
        offset: i64,
    },
    ListRoles {
        verbose: bool,
        count: i64,
        offset: i64,
    },
    GetClient {
        username: String,
    },
    GetRole {
        rolename: String,
    },
}

impl Command {
    /// The command's name and what it names, for logs: never a password.
    pub fn summary(&self) -> String {
        match self {
            Command::CreateRole { rolename, .. } => format!("createRole {rolename}"),
            Command::ModifyRole { rolename, .. } => format!("modifyRole {rolename}"),
            Command::DeleteRole { rolename } => format!("deleteRole {rolename}"),
            Command::CreateClient { username, .. } => format!("createClient {username}"),
            Command::AddClientRole { username, rolename } => {
                format!("addClientRole {username} {rolename}")
            }
            Command::ModifyClient { username, .. } => format!("modifyClient {username}"),
            Command::EnableClient { username } => format!("enableClient {username}"),
            Command::DeleteClient { username } => format!("deleteClient {username}"),
            Command::ListClients { offset, .. } => format!("listClients from {offset}"),
            Command::ListRoles { offset, .. } => format!("listRoles from {offset}"),
            Command::GetClient { username } => format!("getClient {username}"),
            Command::GetRole { rolename } => format!("getRole {rolename}"),
        }
    }

    /// Whether an error the plugin answers with means the command was not needed: another
    /// instance, reconciling at the same moment, got there first.
    pub fn already_done(&self, error: &str) -> bool {
        matches!(
            (self, error),
            (Command::CreateRole { .. }, "Role already exists")
                | (Command::CreateClient { .. }, "Client already exists")
                | (Command::DeleteRole { .. }, "Role not found")
                | (Command::DeleteClient { .. }, "Client not found")
        )
    }
}

/// The commands that take the plugin from what it holds to what vakt wants, in an order it
/// can carry out one after another (roles before the clients that get them, clients
/// removed before their roles), and the names vakt needs that somebody else took.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub commands: Vec<Command>,
    pub conflicts: Vec<String>,
}

pub fn plan(wanted: &Wanted, held: &Held) -> Plan {
    let mut plan = Plan::default();
    let mut usable = BTreeSet::new();
    for (name, role) in &wanted.roles {
        match held.roles.get(name) {
            None => plan.commands.push(Command::CreateRole {
                rolename: name.clone(),
                textname: role.mark.to_owned(),
                acls: role.acls.clone(),
            }),
            Some(h) if h.textname.as_deref() != Some(role.mark) => {
                plan.conflicts.push(format!("role {name} is not vakt's"));
                continue;
            }
            Some(h) => {
                let mut acls = h.acls.clone();
                acls.sort();
                if acls != role.acls {
                    plan.commands.push(Command::ModifyRole {
                        rolename: name.clone(),
                        acls: role.acls.clone(),
                    });
                }
            }
        }
        usable.insert(name.as_str());
    }
    for (name, client) in &wanted.clients {
        let held_client = held.clients.get(name);
        if held_client.is_some_and(|h| h.textname.as_deref() != Some(client.mark)) {
            plan.conflicts.push(format!("client {name} is not vakt's"));
            continue;
        }
        // A login without its rights would be no use: wait until the role is vakt's.
        if !usable.contains(client.role.as_str()) {
            continue;
        }
        let description = client.password.description();
        match held_client {
            None => {
                plan.commands.push(Command::CreateClient {
                    username: name.clone(),
                    password: client.password.clone(),
                    clientid: name.clone(),
                    textname: client.mark.to_owned(),
                    textdescription: description,
                });
                plan.commands.push(Command::AddClientRole {
                    username: name.clone(),
                    rolename: client.role.clone(),
                });
            }
            Some(h) => {
                let roles = [RoleName {
                    rolename: client.role.clone(),
                }];
                let fits = h.clientid.as_deref() == Some(name.as_str())
                    && h.textdescription.as_deref() == Some(description.as_str())
                    && h.roles == roles;
                if !fits {
                    plan.commands.push(Command::ModifyClient {
                        username: name.clone(),
                        password: client.password.clone(),
                        clientid: name.clone(),
                        textname: client.mark.to_owned(),
                        textdescription: description,
                        roles: roles.into(),
                    });
                }
                if h.disabled {
                    plan.commands.push(Command::EnableClient {
                        username: name.clone(),
                    });
                }
            }
        }
    }
    // Only devices' clients and roles go: backend users are each instance's own, and a
    // stopped instance's must stay so the supervision leader can drain its session.
    let leaving = |name: &str, mark: Option<&str>| {
        mark == Some(DEVICE_MARK)
            && !wanted.clients.contains_key(name)
            && !wanted.unknown.contains(name)
    };
    let mut removed = BTreeSet::new();
    for (name, h) in &held.clients {
        if leaving(name, h.textname.as_deref()) {
            plan.commands.push(Command::DeleteClient {
                username: name.clone(),
            });
            removed.insert(name.as_str());
        }
    }
    // A role still held by a client that stays is left: removing it would take that
    // client's rights away under it.
    let in_use: BTreeSet<&str> = held
        .clients
        .values()
        .filter(|c| !removed.contains(c.username.as_str()))
        .flat_map(|c| c.roles.iter().map(|r| r.rolename.as_str()))
        .collect();
    for (name, h) in &held.roles {
        let device = name.strip_prefix(DEVICE_ROLE_PREFIX);
        if h.textname.as_deref() == Some(DEVICE_MARK)
            && !wanted.roles.contains_key(name)
            && device.is_some_and(|d| !wanted.unknown.contains(d))
            && !in_use.contains(name.as_str())
        {
            plan.commands.push(Command::DeleteRole {
                rolename: name.clone(),
            });
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESERVED: &[&str] = &["vakt-1"];

    fn device(id: &str, status: DeviceStatus, password: Option<&str>) -> RegisterDevice {
        RegisterDevice {
            id: id.into(),
            status,
            password: password.map(|p| Password::new(p.into())),
        }
    }

    fn backend() -> BackendUser {
        BackendUser {
            username: "vakt-1".into(),
            password: Password::new("backend-pw".into()),
        }
    }

    /// The plugin holding exactly what `wanted` asks for, as vakt would have made it.
    fn held_as(wanted: &Wanted) -> Held {
        let clients = wanted
            .clients
            .iter()
            .map(|(name, c)| HeldClient {
                username: name.clone(),
                clientid: Some(name.clone()),
                textname: Some(c.mark.into()),
                textdescription: Some(c.password.description()),
                disabled: false,
                roles: vec![RoleName {
                    rolename: c.role.clone(),
                }],
            })
            .collect();
        let roles = wanted
            .roles
            .iter()
            .map(|(name, r)| HeldRole {
                rolename: name.clone(),
                textname: Some(r.mark.into()),
                // The plugin lists rules in its own order.
                acls: r.acls.iter().rev().cloned().collect(),
            })
            .collect();
        Held::new(clients, roles)
    }

    fn summaries(plan: &Plan) -> Vec<String> {
        plan.commands.iter().map(Command::summary).collect()
    }

    fn admin() -> HeldClient {
        HeldClient {
            username: "admin".into(),
            clientid: None,
            textname: Some("Dynsec admin user".into()),
            textdescription: None,
            disabled: false,
            roles: vec![RoleName {
                rolename: "admin".into(),
            }],
        }
    }

    #[test]
    fn a_device_may_publish_its_uplink_and_read_its_own_answers_and_nothing_else() {
        let acls = device_acls("dev-1");
        let rules: Vec<(AclType, &str, i64, bool)> = acls
            .iter()
            .map(|a| (a.acltype, a.topic.as_str(), a.priority, a.allow))
            .collect();
        use AclType::*;
        assert_eq!(
            rules,
            [
                (PublishClientSend, "#", 0, false),
                (PublishClientSend, "vakt/v1/dev/dev-1/alarm", 1, true),
                (PublishClientSend, "vakt/v1/dev/dev-1/hb", 1, true),
                (PublishClientSend, "vakt/v1/dev/dev-1/hello", 1, true),
                (PublishClientSend, "vakt/v1/dev/dev-1/pos", 1, true),
                (PublishClientSend, "vakt/v1/dev/dev-1/state", 1, true),
                (PublishClientReceive, "#", 0, false),
                (PublishClientReceive, "vakt/v1/dev/dev-1/ack", 1, true),
                (PublishClientReceive, "vakt/v1/dev/dev-1/cfg", 1, true),
                (SubscribeLiteral, "vakt/v1/dev/dev-1/ack", 1, true),
                (SubscribeLiteral, "vakt/v1/dev/dev-1/cfg", 1, true),
                (SubscribePattern, "#", 0, false),
            ]
        );
        // Every uplink kind the protocol has is the device's to publish.
        let sends = rules
            .iter()
            .filter(|r| r.0 == PublishClientSend && r.3)
            .count();
        assert_eq!(sends, Uplink::ALL.len());
    }

    #[test]
    fn the_backend_users_read_every_uplink_and_write_every_answer() {
        let acls = backend_acls();
        let rules: Vec<(AclType, &str, bool)> = acls
            .iter()
            .map(|a| (a.acltype, a.topic.as_str(), a.allow))
            .collect();
        use AclType::*;
        assert_eq!(
            rules,
            [
                (PublishClientSend, "#", false),
                (PublishClientSend, "vakt/v1/dev/+/ack", true),
                (PublishClientSend, "vakt/v1/dev/+/cfg", true),
                (PublishClientReceive, "#", false),
                (PublishClientReceive, "vakt/v1/dev/+/+", true),
                (SubscribePattern, "#", false),
                (SubscribePattern, "$share/+/vakt/v1/dev/+/+", true),
                (SubscribePattern, "vakt/v1/dev/+/+", true),
            ]
        );
    }

    #[test]
    fn devices_in_stock_or_issued_are_wanted_and_returned_lost_or_odd_ones_are_not() {
        let devices = [
            device("dev-stock", DeviceStatus::InStock, Some("p1")),
            device("dev-issued", DeviceStatus::Issued, Some("p2")),
            device("dev-back", DeviceStatus::Returned, Some("p3")),
            device("dev-lost", DeviceStatus::Lost, None),
            device("dev-sealed", DeviceStatus::Issued, None),
            device("vakt-1", DeviceStatus::Issued, Some("p4")),
            device("evil+#", DeviceStatus::Issued, Some("p5")),
        ];
        let wanted = Wanted::everything(&devices, Some(&backend()), RESERVED);
        let clients: Vec<&str> = wanted.clients.keys().map(String::as_str).collect();
        assert_eq!(clients, ["dev-issued", "dev-stock", "vakt-1"]);
        let roles: Vec<&str> = wanted.roles.keys().map(String::as_str).collect();
        assert_eq!(
            roles,
            [
                "vakt-backends",
                "vakt-device-dev-issued",
                "vakt-device-dev-stock"
            ]
        );
        assert_eq!(wanted.clients["vakt-1"].role, BACKEND_ROLE);
        assert_eq!(wanted.clients["vakt-1"].mark, BACKEND_MARK);
        assert_eq!(wanted.clients["dev-stock"].role, "vakt-device-dev-stock");
        assert_eq!(
            wanted.unknown.iter().collect::<Vec<_>>(),
            ["dev-sealed"],
            "a key this instance cannot open"
        );
        let refused: Vec<&str> = wanted.refused.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(refused, ["dev-sealed", "vakt-1", "evil+#"]);
    }

    #[test]
    fn on_an_empty_broker_the_roles_come_first_then_each_client_with_its_role() {
        let devices = [device(
            "dev-a",
            DeviceStatus::Issued,
            Some("secret-of-dev-a"),
        )];
        let wanted = Wanted::everything(&devices, Some(&backend()), RESERVED);
        let plan = plan(&wanted, &Held::new(vec![admin()], vec![]));
        assert_eq!(
            summaries(&plan),
            [
                "createRole vakt-backends",
                "createRole vakt-device-dev-a",
                "createClient dev-a",
                "addClientRole dev-a vakt-device-dev-a",
                "createClient vakt-1",
                "addClientRole vakt-1 vakt-backends",
            ]
        );
        assert!(plan.conflicts.is_empty());
        let Command::CreateClient {
            clientid,
            password,
            textname,
            textdescription,
            ..
        } = &plan.commands[2]
        else {
            panic!("{:?}", plan.commands[2])
        };
        assert_eq!(
            (clientid.as_str(), textname.as_str()),
            ("dev-a", DEVICE_MARK)
        );
        assert_eq!(password, &Password::new("secret-of-dev-a".into()));
        assert!(!textdescription.contains("secret"));
    }

    #[test]
    fn a_broker_that_holds_what_is_wanted_gets_no_command() {
        let devices = [
            device("dev-a", DeviceStatus::Issued, Some("pa")),
            device("dev-b", DeviceStatus::InStock, Some("pb")),
        ];
        let wanted = Wanted::everything(&devices, Some(&backend()), RESERVED);
        let mut held = held_as(&wanted);
        held.clients.insert("admin".into(), admin());
        assert_eq!(plan(&wanted, &held), Plan::default());
    }

    #[test]
    fn a_new_key_a_disabled_client_a_changed_role_or_a_client_id_are_put_right() {
        let devices = [
            device("dev-a", DeviceStatus::Issued, Some("pa")),
            device("dev-b", DeviceStatus::Issued, Some("pb")),
            device("dev-c", DeviceStatus::Issued, Some("pc")),
            device("dev-d", DeviceStatus::Issued, Some("pd")),
        ];
        let wanted = Wanted::everything(&devices, None, RESERVED);
        let mut held = held_as(&wanted);
        // dev-a's key was rotated: the broker still has the old key's password.
        held.clients.get_mut("dev-a").unwrap().textdescription =
            Some(Password::new("old".into()).description());
        held.clients.get_mut("dev-b").unwrap().disabled = true;
        held.clients.get_mut("dev-c").unwrap().clientid = None;
        held.roles
            .get_mut("vakt-device-dev-d")
            .unwrap()
            .acls
            .retain(|a| a.allow);
        let plan = plan(&wanted, &held);
        assert_eq!(
            summaries(&plan),
            [
                "modifyRole vakt-device-dev-d",
                "modifyClient dev-a",
                "enableClient dev-b",
                "modifyClient dev-c",
            ]
        );
        let Command::ModifyClient {
            password, roles, ..
        } = &plan.commands[1]
        else {
            panic!()
        };
        assert_eq!(password, &Password::new("pa".into()));
        assert_eq!(
            roles,
            &[RoleName {
                rolename: "vakt-device-dev-a".into()
            }]
        );
    }

    #[test]
    fn returned_lost_and_unknown_devices_lose_their_client_then_their_role() {
        let before = [
            device("dev-a", DeviceStatus::Issued, Some("pa")),
            device("dev-b", DeviceStatus::Issued, Some("pb")),
            device("dev-c", DeviceStatus::Issued, Some("pc")),
        ];
        let held = held_as(&Wanted::everything(&before, None, RESERVED));
        let after = [
            device("dev-a", DeviceStatus::Returned, Some("pa")),
            device("dev-b", DeviceStatus::Lost, Some("pb")),
            // dev-c is gone from the register altogether.
        ];
        let plan = plan(&Wanted::everything(&after, None, RESERVED), &held);
        assert_eq!(
            summaries(&plan),
            [
                "deleteClient dev-a",
                "deleteClient dev-b",
                "deleteClient dev-c",
                "deleteRole vakt-device-dev-a",
                "deleteRole vakt-device-dev-b",
                "deleteRole vakt-device-dev-c",
            ]
        );
    }

    #[test]
    fn what_vakt_did_not_make_is_never_touched_and_a_taken_name_is_a_conflict() {
        let devices = [
            device("dev-a", DeviceStatus::Issued, Some("pa")),
            device("dev-b", DeviceStatus::Issued, Some("pb")),
        ];
        let wanted = Wanted::everything(&devices, Some(&backend()), RESERVED);
        let mut held = held_as(&wanted);
        // The administrator, another application, and a hand-made client and role under
        // the names of vakt's devices.
        held.clients.insert("admin".into(), admin());
        let stranger = HeldClient {
            username: "other-app".into(),
            disabled: true,
            textname: None,
            ..admin()
        };
        held.clients.insert("other-app".into(), stranger);
        let hand_made = HeldClient {
            username: "dev-a".into(),
            textname: Some("made by hand".into()),
            ..admin()
        };
        held.clients.insert("dev-a".into(), hand_made);
        held.roles.get_mut("vakt-device-dev-b").unwrap().textname = None;
        held.roles.insert(
            "admin".into(),
            HeldRole {
                rolename: "admin".into(),
                textname: None,
                acls: vec![],
            },
        );
        let plan = plan(&wanted, &held);
        assert_eq!(summaries(&plan), Vec::<String>::new());
        assert_eq!(
            plan.conflicts,
            [
                "role vakt-device-dev-b is not vakt's",
                "client dev-a is not vakt's"
            ]
        );
    }

    #[test]
    fn another_instances_backend_user_and_a_device_this_instance_cannot_judge_are_left() {
        let devices = [device("dev-sealed", DeviceStatus::Issued, None)];
        let other = Wanted::everything(
            &[device("dev-sealed", DeviceStatus::Issued, Some("ps"))],
            Some(&BackendUser {
                username: "vakt-2".into(),
                password: Password::new("other".into()),
            }),
            RESERVED,
        );
        let held = held_as(&other);
        let plan = plan(
            &Wanted::everything(&devices, Some(&backend()), RESERVED),
            &held,
        );
        assert_eq!(
            summaries(&plan),
            ["createClient vakt-1", "addClientRole vakt-1 vakt-backends"]
        );
    }

    #[test]
    fn a_role_still_held_by_a_client_that_stays_is_not_removed() {
        let before = [device("dev-a", DeviceStatus::Issued, Some("pa"))];
        let mut held = held_as(&Wanted::everything(&before, None, RESERVED));
        // The administrator gave dev-a's role to a client of their own as well.
        held.clients.insert(
            "watcher".into(),
            HeldClient {
                username: "watcher".into(),
                textname: None,
                roles: vec![RoleName {
                    rolename: "vakt-device-dev-a".into(),
                }],
                ..admin()
            },
        );
        let after = [device("dev-a", DeviceStatus::Lost, Some("pa"))];
        let plan = plan(&Wanted::everything(&after, None, RESERVED), &held);
        assert_eq!(summaries(&plan), ["deleteClient dev-a"]);
    }

    #[test]
    fn one_devices_check_sees_only_that_device() {
        let d = device("dev-a", DeviceStatus::Issued, Some("pa"));
        let wanted = Wanted::device(Some(&d), RESERVED);
        assert!(!wanted.roles.contains_key(BACKEND_ROLE));
        let empty = plan(&wanted, &Held::default());
        assert_eq!(
            summaries(&empty),
            [
                "createRole vakt-device-dev-a",
                "createClient dev-a",
                "addClientRole dev-a vakt-device-dev-a",
            ]
        );
        // Returned: the same check removes what it finds of it.
        let returned = RegisterDevice {
            status: DeviceStatus::Returned,
            ..d
        };
        let held = held_as(&wanted);
        assert_eq!(
            summaries(&plan(&Wanted::device(Some(&returned), RESERVED), &held)),
            ["deleteClient dev-a", "deleteRole vakt-device-dev-a"]
        );
        assert_eq!(
            summaries(&plan(&Wanted::device(None, RESERVED), &held)),
            ["deleteClient dev-a", "deleteRole vakt-device-dev-a"]
        );
    }

    #[test]
    fn commands_read_as_the_plugin_expects_and_show_no_password() {
        let create = Command::CreateClient {
            username: "dev-a".into(),
            password: Password::new("secret-pw".into()),
            clientid: "dev-a".into(),
            textname: DEVICE_MARK.into(),
            textdescription: Password::new("secret-pw".into()).description(),
        };
        let json = serde_json::to_value(&create).unwrap();
        assert_eq!(json["command"], "createClient");
        assert_eq!(json["password"], "secret-pw");
        assert_eq!(json["clientid"], "dev-a");
        assert!(!format!("{create:?}").contains("secret-pw"));
        assert!(!create.summary().contains("secret-pw"));
        let role = serde_json::to_value(Command::CreateRole {
            rolename: "r".into(),
            textname: DEVICE_MARK.into(),
            acls: device_acls("dev-a")[..1].to_vec(),
        })
        .unwrap();
        assert_eq!(
            role,
            serde_json::json!({"command": "createRole", "rolename": "r", "textname": "vakt device",
                "acls": [{"acltype": "publishClientSend", "topic": "#", "priority": 0, "allow": false}]})
        );
        let list = serde_json::to_value(Command::ListClients {
            verbose: true,
            count: 100,
            offset: 0,
        })
        .unwrap();
        assert_eq!(list["command"], "listClients");
        // As the plugin lists a client and a role (Mosquitto 2.0.11).
        let client: HeldClient = serde_json::from_str(
            r#"{"username":"dev1","clientid":"dev1","textname":"vakt device","textdescription":"x","disabled":true,"roles":[{"rolename":"vakt-device-dev1"}],"groups":[]}"#,
        )
        .unwrap();
        assert!(client.disabled);
        let role: HeldRole = serde_json::from_str(
            r##"{"rolename":"admin","acls":[{"acltype":"unsubscribePattern","topic":"#","priority":0,"allow":true},{"acltype":"somethingNew","topic":"x","allow":true}]}"##,
        )
        .unwrap();
        assert_eq!(role.acls[1].acltype, AclType::Other);
    }

    #[test]
    fn the_description_changes_with_the_password_and_does_not_contain_it() {
        let a = Password::new("a".repeat(64)).description();
        assert_ne!(a, Password::new("b".repeat(64)).description());
        assert_eq!(a, Password::new("a".repeat(64)).description());
        assert!(!a.contains(&"a".repeat(16)));
    }
}
