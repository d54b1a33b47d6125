//! The in-memory index the ingest reads for every message: device → key, status and the
//! correlation context of its case (orders, zones, address). Rebuilt from the store when a
//! coordinator changes something, so the ingest never queries the database per message.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use crate::domain::correlate::DeviceContext;
use crate::domain::{Case, DeviceKind, DeviceStatus};
use crate::keys::KeyVault;
use crate::protocol::DeviceKey;
use crate::store::{DeviceRecord, SharedStore, StoreError};

#[derive(Debug, Clone)]
pub struct DeviceEntry {
    pub key: DeviceKey,
    /// While a key rotation waits for the device: the new key, and its sealed form as stored
    /// (which names the rotation when it completes).
    pub next_key: Option<(DeviceKey, String)>,
    pub kind: DeviceKind,
    pub status: DeviceStatus,
    /// Heartbeat interval set by a coordinator; wins over the device's `hello`.
    pub hb_interval_s: Option<u32>,
    pub supervision_class: String,
    /// Present when the device is issued to an open case.
    pub context: Option<Arc<DeviceContext>>,
}

#[derive(Debug, Default, Clone)]
pub struct Index {
    pub devices: HashMap<String, DeviceEntry>,
    /// Every case, open or closed, for labelling alerts without a query.
    pub cases: HashMap<String, Case>,
    /// Persons with a protected identity (a person's flag is set when they are registered).
    pub protected_persons: HashSet<String>,
}

impl Index {
    /// Whether the case is about a person with a protected identity. A case this index
    /// does not know yet (registered a moment ago, perhaps on another instance) counts as
    /// protected: what is shown of it can wait for the next reload.
    pub fn case_is_protected(&self, case_id: Option<&str>) -> bool {
        match case_id {
            None => false,
            Some(id) => self
                .cases
                .get(id)
                .is_none_or(|c| self.protected_persons.contains(&c.person_id)),
        }
    }

    /// Alarm devices of a case, for the proximity rule of tags.
    pub fn alarm_devices_of_case(&self, case_id: &str) -> Vec<String> {
        self.devices
            .iter()
            .filter(|(_, d)| {
                d.kind == DeviceKind::Alarm
                    && d.context.as_ref().is_some_and(|c| c.case.id == case_id)
            })
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// Device ids re-read and not yet taken by a slow listener; past this it misses some and
/// is told so (it then looks at every device).
const REFRESHED_BACKLOG: usize = 1024;

/// Shared handle on the index; readers never wait on the database.
#[derive(Clone)]
pub struct Directory {
    inner: Arc<RwLock<Arc<Index>>>,
    vault: Arc<KeyVault>,
    /// Bumped on every reload, so supervision knows when to look again.
    generation: Arc<std::sync::atomic::AtomicU64>,
    /// Every device read again after a change (added, issued, returned, re-keyed, its
    /// rotation completed), for whoever keeps a copy of the register elsewhere: the broker's
    /// credentials follow at once instead of at their next full reconciliation.
    refreshed: tokio::sync::broadcast::Sender<String>,
}

impl Directory {
    pub fn new(vault: Arc<KeyVault>) -> Directory {
        Directory {
            inner: Default::default(),
            vault,
            generation: Default::default(),
            refreshed: tokio::sync::broadcast::channel(REFRESHED_BACKLOG).0,
        }
    }

    /// The ids of the devices read again from here on (see `refresh_device`).
    pub fn devices_refreshed(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.refreshed.subscribe()
    }

    /// Seals and opens device keys for storage.
    pub fn vault(&self) -> &KeyVault {
        &self.vault
    }

    pub fn snapshot(&self) -> Arc<Index> {
        self.inner.read().expect("directory lock").clone()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn device(&self, id: &str) -> Option<DeviceEntry> {
        self.snapshot().devices.get(id).cloned()
    }

    /// Reads one device again (after it was added, issued, returned or changed), without
    /// reading every other device: a coordinator's click costs the same at a million devices.
    pub async fn refresh_device(&self, store: &SharedStore, id: &str) -> Result<(), StoreError> {
        let record = match store.device(id).await {
            Ok(d) => Some(d),
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e),
        };
        let mut case = None;
        let mut protected = None;
        let entry = match record {
            None => None,
            Some(d) => {
                let context = match (&d.status, &d.case_id) {
                    (DeviceStatus::Issued, Some(case_id)) => {
                        let c = store.case(case_id).await?;
                        case = Some(c.clone());
                        let person = store.person(&c.person_id).await?;
                        protected = Some((person.id.clone(), person.protected_identity));
                        if c.closed_at.is_none() {
                            let address = person.address;
                            let orders = store.orders_of_case(case_id).await?;
                            Some(Arc::new(DeviceContext {
                                device_id: d.id.clone(),
                                kind: d.kind,
                                address,
                                orders,
                                case: c,
                            }))
                        } else {
                            None
                        }
                    }
                    _ => None,
                };
                let Some(entry) = self.entry(&d, context) else {
                    return Ok(());
                };
                Some(entry)
            }
        };
        {
            let mut guard = self.inner.write().expect("directory lock");
            let index = Arc::make_mut(&mut guard);
            match entry {
                Some(e) => index.devices.insert(id.to_owned(), e),
                None => index.devices.remove(id),
            };
            if let Some(c) = case {
                index.cases.insert(c.id.clone(), c);
            }
            if let Some((person, true)) = protected {
                index.protected_persons.insert(person);
            }
        }
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        // Nobody listening (the command line) is fine.
        let _ = self.refreshed.send(id.to_owned());
        Ok(())
    }

    /// What the ingest needs of a device: its keys, settings and case context. A key this
    /// master key cannot open leaves the device out (logged): it could only ever fail
    /// signatures.
    fn entry(&self, d: &DeviceRecord, context: Option<Arc<DeviceContext>>) -> Option<DeviceEntry> {
        let (key, next_key) = self.open_keys(d)?;
        Some(DeviceEntry {
            key,
            next_key,
            kind: d.kind,
            status: d.status,
            hb_interval_s: d.hb_interval_s,
            supervision_class: d.supervision_class.clone(),
            context,
        })
    }

    /// The device's key and, during a rotation, its next key.
    fn open_keys(&self, d: &DeviceRecord) -> Option<(DeviceKey, Option<(DeviceKey, String)>)> {
        let key = match self.vault.open(&d.key_hex, &d.id) {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(device = %d.id, error = %e, "device ignored");
                return None;
            }
        };
        let next = d.key_rotation.next_key_hex.as_ref().and_then(|sealed| {
            match self.vault.open(sealed, &d.id) {
                Ok(k) => Some((k, sealed.clone())),
                Err(e) => {
                    tracing::error!(device = %d.id, error = %e, "next key ignored");
                    None
                }
            }
        });
        Some((key, next))
    }

    /// Rebuilds the whole index from the store and swaps it in at once.
    pub async fn reload(&self, store: &SharedStore) -> Result<(), StoreError> {
        let (devices, cases, persons, orders) = (
            store.devices().await?,
            store.cases().await?,
            store.persons().await?,
            store.orders().await?,
        );
        let persons: HashMap<_, _> = persons.into_iter().map(|p| (p.id.clone(), p)).collect();
        let cases: HashMap<_, _> = cases.into_iter().map(|c| (c.id.clone(), c)).collect();
        let mut orders_by_case: HashMap<String, Vec<_>> = HashMap::new();
        for order in orders {
            orders_by_case
                .entry(order.case_id.clone())
                .or_default()
                .push(order);
        }
        let mut index = Index::default();
        for d in devices {
            let context = match (&d.status, &d.case_id) {
                (DeviceStatus::Issued, Some(case_id)) => cases
                    .get(case_id)
                    .filter(|c| c.closed_at.is_none())
                    .map(|case| {
                        Arc::new(DeviceContext {
                            device_id: d.id.clone(),
                            kind: d.kind,
                            address: persons.get(&case.person_id).and_then(|p| p.address.clone()),
                            orders: orders_by_case.get(case_id).cloned().unwrap_or_default(),
                            case: case.clone(),
                        })
                    }),
                _ => None,
            };
            if let Some(entry) = self.entry(&d, context) {
                index.devices.insert(d.id.clone(), entry);
            }
        }
        index.cases = cases;
        index.protected_persons = persons
            .values()
            .filter(|p| p.protected_identity)
            .map(|p| p.id.clone())
            .collect();
        *self.inner.write().expect("directory lock") = Arc::new(index);
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Ok(())
    }
}
