//! The in-memory index the ingest reads for every message: device → key, status and the
//! correlation context of its case (orders, zones, address). A coordinator's change reads
//! again what it touched (one device, or one case and the devices issued to it) and changes
//! only those entries, so the ingest never queries the database per message and a click
//! costs the same at a million devices. A full rebuild from the store runs at start and
//! periodically, for changes made elsewhere (the command line, other instances).

mod shared;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, RwLock};

pub use shared::SharedMap;

use crate::domain::correlate::DeviceContext;
use crate::domain::{Case, DeviceKind, DeviceStatus, Order, Person};
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
    /// The case the device is issued to, open or closed.
    pub case_id: Option<String>,
    /// Present when the device is issued to an open case.
    pub context: Option<Arc<DeviceContext>>,
}

/// Cloned in constant time (every map is shared between copies) and changed in time
/// proportional to what changes: see [`SharedMap`].
#[derive(Debug, Default, Clone)]
pub struct Index {
    pub devices: SharedMap<DeviceEntry>,
    /// Every case, open or closed, for labelling alerts without a query.
    pub cases: SharedMap<Case>,
    /// Persons with a protected identity (a person's flag is set when they are registered).
    pub protected_persons: SharedMap<()>,
    /// The devices issued to each case, open or closed: what a change of the case reaches.
    devices_of_case: SharedMap<BTreeSet<String>>,
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
                .is_none_or(|c| self.protected_persons.contains_key(&c.person_id)),
        }
    }

    /// The devices issued to a case, open or closed.
    pub fn devices_of_case(&self, case_id: &str) -> impl Iterator<Item = &str> {
        self.devices_of_case
            .get(case_id)
            .into_iter()
            .flat_map(|ids| ids.iter().map(String::as_str))
    }

    /// Alarm devices of a case, for the proximity rule of tags.
    pub fn alarm_devices_of_case(&self, case_id: &str) -> Vec<String> {
        self.devices_of_case(case_id)
            .filter(|id| {
                self.devices.get(id).is_some_and(|d| {
                    d.kind == DeviceKind::Alarm
                        && d.context.as_ref().is_some_and(|c| c.case.id == case_id)
                })
            })
            .map(str::to_owned)
            .collect()
    }

    /// Puts a device's entry in (or takes it out), keeping the case → devices index.
    fn put_device(&mut self, id: &str, entry: Option<DeviceEntry>) {
        let old_case = self.devices.get(id).and_then(|e| e.case_id.clone());
        let new_case = entry.as_ref().and_then(|e| e.case_id.clone());
        if old_case != new_case {
            if let Some(c) = old_case {
                let mut ids = self.devices_of_case.get(&c).cloned().unwrap_or_default();
                ids.remove(id);
                if ids.is_empty() {
                    self.devices_of_case.remove(&c);
                } else {
                    self.devices_of_case.insert(&c, ids);
                }
            }
            if let Some(c) = new_case {
                let mut ids = self.devices_of_case.get(&c).cloned().unwrap_or_default();
                ids.insert(id.to_owned());
                self.devices_of_case.insert(&c, ids);
            }
        }
        match entry {
            Some(e) => self.devices.insert(id, e),
            None => self.devices.remove(id),
        };
    }

    fn put_person(&mut self, person: &Person) {
        if person.protected_identity {
            self.protected_persons.insert(&person.id, ());
        } else {
            self.protected_persons.remove(&person.id);
        }
    }
}

/// A case as the directory keeps it: the case, its person and its orders.
#[derive(Debug, Clone)]
pub struct CaseRecord {
    pub case: Case,
    pub person: Person,
    pub orders: Vec<Order>,
}

impl CaseRecord {
    /// Reads a case and what goes with it; `None` when there is no such case.
    async fn read(store: &SharedStore, case_id: &str) -> Result<Option<CaseRecord>, StoreError> {
        let case = match store.case(case_id).await {
            Ok(c) => c,
            Err(StoreError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let person = store.person(&case.person_id).await?;
        let orders = store.orders_of_case(case_id).await?;
        Ok(Some(CaseRecord {
            case,
            person,
            orders,
        }))
    }

    /// The correlation context of a device issued to this case, while it is open.
    fn context_for(&self, device_id: &str, kind: DeviceKind) -> Option<Arc<DeviceContext>> {
        self.case.closed_at.is_none().then(|| {
            Arc::new(DeviceContext {
                device_id: device_id.to_owned(),
                kind,
                address: self.person.address.clone(),
                orders: self.orders.clone(),
                case: self.case.clone(),
            })
        })
    }
}

/// Everything the whole index is built from, as read from the store.
#[derive(Debug, Default)]
pub struct Register {
    pub devices: Vec<DeviceRecord>,
    pub cases: Vec<Case>,
    pub persons: Vec<Person>,
    pub orders: Vec<Order>,
}

/// What changed in the index, for whoever follows it (supervision).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// One device was read again.
    Device(String),
    /// One case was read again, and the entries of the devices issued to it changed.
    Case {
        case_id: String,
        devices: Arc<[String]>,
    },
    /// The whole index was rebuilt: anything may have changed.
    Reloaded,
}

/// What was read again while a full reload was reading the store: its swap would undo it,
/// so it is read once more after.
#[derive(Debug)]
enum Touched {
    Device(String),
    Case(String),
}

/// Device ids re-read and not yet taken by a slow listener; past this it misses some and
/// is told so (it then looks at every device). The same for changes.
const REFRESHED_BACKLOG: usize = 1024;

/// Shared handle on the index; readers never wait on the database.
#[derive(Clone)]
pub struct Directory {
    inner: Arc<RwLock<Arc<Index>>>,
    vault: Arc<KeyVault>,
    /// Bumped on every change.
    generation: Arc<std::sync::atomic::AtomicU64>,
    /// Every device read again after a change (added, issued, returned, re-keyed, its
    /// rotation completed), for whoever keeps a copy of the register elsewhere: the broker's
    /// credentials follow at once instead of at their next full reconciliation.
    refreshed: tokio::sync::broadcast::Sender<String>,
    /// Every change, for supervision to follow the devices it touched.
    changes: tokio::sync::broadcast::Sender<Change>,
    /// While a full reload reads the store: what was read again meanwhile.
    touched_during_reload: Arc<Mutex<Option<Vec<Touched>>>>,
    /// One full reload at a time.
    reload_turn: Arc<tokio::sync::Mutex<()>>,
}

impl Directory {
    pub fn new(vault: Arc<KeyVault>) -> Directory {
        Directory {
            inner: Default::default(),
            vault,
            generation: Default::default(),
            refreshed: tokio::sync::broadcast::channel(REFRESHED_BACKLOG).0,
            changes: tokio::sync::broadcast::channel(REFRESHED_BACKLOG).0,
            touched_during_reload: Default::default(),
            reload_turn: Default::default(),
        }
    }

    /// The ids of the devices read again from here on (see `refresh_device`).
    pub fn devices_refreshed(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.refreshed.subscribe()
    }

    /// Every change from here on.
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.changes.subscribe()
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

    /// Changes the index in place: only what `change` touches is copied, even while readers
    /// hold snapshots. A full reload under way is told, so its swap does not undo this.
    fn change(&self, touched: Touched, change: impl FnOnce(&mut Index)) {
        let mut guard = self.inner.write().expect("directory lock");
        change(Arc::make_mut(&mut guard));
        if let Some(list) = self
            .touched_during_reload
            .lock()
            .expect("reload lock")
            .as_mut()
        {
            list.push(touched);
        }
        drop(guard);
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Reads one device again (after it was added, issued, returned or changed), without
    /// reading every other device: a coordinator's click costs the same at a million devices.
    pub async fn refresh_device(&self, store: &SharedStore, id: &str) -> Result<(), StoreError> {
        let record = match store.device(id).await {
            Ok(d) => Some(d),
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e),
        };
        let case = match &record {
            Some(DeviceRecord {
                status: DeviceStatus::Issued,
                case_id: Some(case_id),
                ..
            }) => CaseRecord::read(store, case_id).await?,
            _ => None,
        };
        self.apply_device(id, record, case);
        Ok(())
    }

    /// Puts in a device as read from the store (`None`: it is gone), with the case it is
    /// issued to; only its own entry changes.
    pub fn apply_device(&self, id: &str, record: Option<DeviceRecord>, case: Option<CaseRecord>) {
        let entry = match &record {
            None => None,
            Some(d) => {
                let issued_to = match (&d.status, &d.case_id) {
                    (DeviceStatus::Issued, Some(case_id)) => Some(case_id),
                    _ => None,
                };
                let context = case
                    .as_ref()
                    .filter(|c| issued_to == Some(&c.case.id))
                    .and_then(|c| c.context_for(&d.id, d.kind));
                let Some(entry) = self.entry(d, context) else {
                    return;
                };
                Some(entry)
            }
        };
        self.change(Touched::Device(id.to_owned()), |index| {
            index.put_device(id, entry);
            if let Some(c) = &case {
                index.cases.insert(&c.case.id, c.case.clone());
                index.put_person(&c.person);
            }
        });
        // Nobody listening (the command line) is fine.
        let _ = self.refreshed.send(id.to_owned());
        let _ = self.changes.send(Change::Device(id.to_owned()));
    }

    /// Reads one case again (after it was opened, changed or closed, or one of its orders
    /// was), with its person and orders, and gives the devices issued to it their new
    /// context: the rest of the index is not touched.
    pub async fn refresh_case(&self, store: &SharedStore, case_id: &str) -> Result<(), StoreError> {
        let case = CaseRecord::read(store, case_id).await?;
        self.apply_case(case_id, case);
        Ok(())
    }

    /// Puts in a case as read from the store (`None`: it is gone); the devices issued to it
    /// are given their context anew, a closed case's lose theirs.
    pub fn apply_case(&self, case_id: &str, case: Option<CaseRecord>) {
        let mut devices = Vec::new();
        self.change(Touched::Case(case_id.to_owned()), |index| {
            devices = index.devices_of_case(case_id).map(str::to_owned).collect();
            for id in &devices {
                let Some(old) = index.devices.get(id) else {
                    continue;
                };
                let context = case.as_ref().and_then(|c| c.context_for(id, old.kind));
                let entry = DeviceEntry {
                    context,
                    ..old.clone()
                };
                index.devices.insert(id, entry);
            }
            match &case {
                Some(c) => {
                    index.cases.insert(case_id, c.case.clone());
                    index.put_person(&c.person);
                }
                None => {
                    index.cases.remove(case_id);
                }
            }
        });
        let _ = self.changes.send(Change::Case {
            case_id: case_id.to_owned(),
            devices: devices.into(),
        });
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
            case_id: match (&d.status, &d.case_id) {
                (DeviceStatus::Issued, Some(case_id)) => Some(case_id.clone()),
                _ => None,
            },
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

    /// Rebuilds the whole index from the store and swaps it in at once. What was read again
    /// while the store was being read is read once more after the swap, so a coordinator's
    /// change during a reload is not undone by it.
    pub async fn reload(&self, store: &SharedStore) -> Result<(), StoreError> {
        let _turn = self.reload_turn.lock().await;
        *self.touched_during_reload.lock().expect("reload lock") = Some(Vec::new());
        let read = async {
            Ok::<_, StoreError>(Register {
                devices: store.devices().await?,
                cases: store.cases().await?,
                persons: store.persons().await?,
                orders: store.orders().await?,
            })
        }
        .await;
        let touched = match read {
            Ok(register) => self.replace(register),
            Err(e) => {
                self.touched_during_reload
                    .lock()
                    .expect("reload lock")
                    .take();
                return Err(e);
            }
        };
        for t in touched {
            match t {
                Touched::Device(id) => self.refresh_device(store, &id).await?,
                Touched::Case(id) => self.refresh_case(store, &id).await?,
            }
        }
        Ok(())
    }

    /// Builds the whole index from `register` and swaps it in; gives back what was changed
    /// in place since the reload began.
    fn replace(&self, register: Register) -> Vec<Touched> {
        let index = self.index_of(register);
        let touched = {
            let mut guard = self.inner.write().expect("directory lock");
            *guard = Arc::new(index);
            self.touched_during_reload
                .lock()
                .expect("reload lock")
                .take()
        };
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let _ = self.changes.send(Change::Reloaded);
        touched.unwrap_or_default()
    }

    /// Builds the whole index from `register` and swaps it in (what a reload does once it
    /// has read the store), e.g. to measure a directory of a million devices.
    pub fn load(&self, register: Register) {
        self.replace(register);
    }

    fn index_of(&self, register: Register) -> Index {
        let Register {
            devices,
            cases,
            persons,
            orders,
        } = register;
        let persons: std::collections::HashMap<_, _> =
            persons.into_iter().map(|p| (p.id.clone(), p)).collect();
        let cases: std::collections::HashMap<_, _> =
            cases.into_iter().map(|c| (c.id.clone(), c)).collect();
        let mut orders_by_case: std::collections::HashMap<String, Vec<_>> = Default::default();
        for order in orders {
            orders_by_case
                .entry(order.case_id.clone())
                .or_default()
                .push(order);
        }
        let mut devices_of_case: std::collections::HashMap<String, BTreeSet<String>> =
            Default::default();
        let mut entries = Vec::with_capacity(devices.len());
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
                if let Some(case_id) = &entry.case_id {
                    devices_of_case
                        .entry(case_id.clone())
                        .or_default()
                        .insert(d.id.clone());
                }
                entries.push((d.id, entry));
            }
        }
        Index {
            devices: entries.into_iter().collect(),
            protected_persons: persons
                .values()
                .filter(|p| p.protected_identity)
                .map(|p| (p.id.as_str(), ()))
                .collect(),
            cases: cases.into_iter().collect(),
            devices_of_case: devices_of_case.into_iter().collect(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::{OrderKind, Restrained, Risk};

    pub fn vault() -> Arc<KeyVault> {
        Arc::new(KeyVault::new(&[7; 32]))
    }

    pub fn device(
        vault: &KeyVault,
        id: &str,
        kind: DeviceKind,
        case: Option<&str>,
    ) -> DeviceRecord {
        let key = DeviceKey::generate();
        let mut d = DeviceRecord::in_stock(id, kind, vault.seal(&key, id), 0);
        if let Some(case) = case {
            d.status = DeviceStatus::Issued;
            d.case_id = Some(case.to_owned());
        }
        d
    }

    pub fn person(id: &str) -> Person {
        Person {
            id: id.into(),
            name: "Anna Berg".into(),
            phone: None,
            address: None,
            protected_identity: false,
            region: Some("Stockholm".into()),
        }
    }

    pub fn case(id: &str, person: &str) -> Case {
        Case {
            id: id.into(),
            reference: format!("ref-{id}"),
            person_id: person.into(),
            risk: Risk::High,
            region: "Stockholm".into(),
            response_plan: None,
            relatives: vec![],
            closed_at: None,
        }
    }

    pub fn order(id: &str, case: &str, restrained: &str) -> Order {
        Order {
            id: id.into(),
            case_id: case.into(),
            kind: OrderKind::ContactBan,
            restrained: Restrained {
                name: restrained.into(),
                description: None,
                vehicle: None,
                photo_ref: None,
            },
            valid_from: 0,
            valid_to: 2_000_000_000_000,
            zones: vec![],
            tag_device_id: None,
        }
    }

    /// Case c1 (person p1) with alarm d1 and tag d2, case c2 (person p2) with alarm d3, and
    /// d4 in stock.
    pub fn directory() -> Directory {
        let vault = vault();
        let register = Register {
            devices: vec![
                device(&vault, "d1", DeviceKind::Alarm, Some("c1")),
                device(&vault, "d2", DeviceKind::Tag, Some("c1")),
                device(&vault, "d3", DeviceKind::Alarm, Some("c2")),
                device(&vault, "d4", DeviceKind::Alarm, None),
            ],
            cases: vec![case("c1", "p1"), case("c2", "p2")],
            persons: vec![person("p1"), person("p2")],
            orders: vec![order("o1", "c1", "Erik"), order("o2", "c2", "Olof")],
        };
        let directory = Directory::new(vault);
        directory.load(register);
        directory
    }

    pub fn record_of_c1(orders: Vec<Order>) -> CaseRecord {
        CaseRecord {
            case: case("c1", "p1"),
            person: person("p1"),
            orders,
        }
    }

    fn restrained(index: &Index, device: &str) -> Vec<String> {
        let context = index.devices.get(device).unwrap().context.as_ref().unwrap();
        context
            .orders
            .iter()
            .map(|o| o.restrained.name.clone())
            .collect()
    }

    #[test]
    fn after_an_order_change_only_that_cases_devices_see_the_new_orders() {
        let directory = directory();
        let before = directory.snapshot();
        directory.apply_case(
            "c1",
            Some(record_of_c1(vec![
                order("o1", "c1", "Erik"),
                order("o3", "c1", "Nils"),
            ])),
        );
        let after = directory.snapshot();
        for d in ["d1", "d2"] {
            assert_eq!(restrained(&after, d), ["Erik", "Nils"]);
        }
        // The other case's device and the stock device are the very same entries.
        for d in ["d3", "d4"] {
            assert!(Arc::ptr_eq(
                before.devices.get_shared(d).unwrap(),
                after.devices.get_shared(d).unwrap()
            ));
        }
        // A reader holding the older snapshot still sees what it saw.
        assert_eq!(restrained(&before, "d1"), ["Erik"]);
    }

    #[test]
    fn a_closed_cases_devices_lose_their_context_and_stay_its_devices() {
        let directory = directory();
        let mut closed = record_of_c1(vec![order("o1", "c1", "Erik")]);
        closed.case.closed_at = Some(1_000);
        directory.apply_case("c1", Some(closed));
        let index = directory.snapshot();
        for d in ["d1", "d2"] {
            let entry = index.devices.get(d).unwrap();
            assert!(entry.context.is_none());
            assert_eq!(entry.case_id.as_deref(), Some("c1"));
        }
        assert!(index.alarm_devices_of_case("c1").is_empty());
        assert!(index.cases.get("c1").unwrap().closed_at.is_some());
        assert!(index.devices.get("d3").unwrap().context.is_some());
    }

    #[test]
    fn a_case_gone_from_the_store_leaves_its_devices_without_context() {
        let directory = directory();
        directory.apply_case("c1", None);
        let index = directory.snapshot();
        assert!(index.devices.get("d1").unwrap().context.is_none());
        assert!(index.cases.get("c1").is_none());
        assert!(
            index.case_is_protected(Some("c1")),
            "unknown counts as protected"
        );
    }

    #[test]
    fn a_device_moved_to_another_case_takes_its_context_and_leaves_the_first() {
        let directory = directory();
        let vault = vault();
        // The same master key: the directory opens what this vault sealed.
        let moved = device(&vault, "d1", DeviceKind::Alarm, Some("c2"));
        let c2 = CaseRecord {
            case: case("c2", "p2"),
            person: person("p2"),
            orders: vec![order("o2", "c2", "Olof")],
        };
        directory.apply_device("d1", Some(moved), Some(c2));
        let index = directory.snapshot();
        assert_eq!(restrained(&index, "d1"), ["Olof"]);
        let mut of_c2: Vec<_> = index.devices_of_case("c2").collect();
        of_c2.sort();
        assert_eq!(of_c2, ["d1", "d3"]);
        assert_eq!(index.devices_of_case("c1").collect::<Vec<_>>(), ["d2"]);
        assert_eq!(index.alarm_devices_of_case("c2").len(), 2);

        // A change to its first case no longer reaches it.
        directory.apply_case("c1", Some(record_of_c1(vec![])));
        assert_eq!(restrained(&directory.snapshot(), "d1"), ["Olof"]);
    }

    #[test]
    fn a_returned_device_leaves_its_case_and_a_removed_one_the_directory() {
        let directory = directory();
        let vault = vault();
        directory.apply_device(
            "d1",
            Some(device(&vault, "d1", DeviceKind::Alarm, None)),
            None,
        );
        directory.apply_device("d3", None, None);
        let index = directory.snapshot();
        assert!(index.devices.get("d1").unwrap().context.is_none());
        assert_eq!(index.devices_of_case("c1").collect::<Vec<_>>(), ["d2"]);
        assert!(index.devices.get("d3").is_none());
        assert_eq!(index.devices_of_case("c2").count(), 0);
        assert_eq!(index.devices.len(), 3);
    }

    #[test]
    fn a_re_keyed_device_gets_its_new_key_and_keeps_its_context() {
        let directory = directory();
        let vault = vault();
        let before = directory.snapshot();
        let key = DeviceKey::generate();
        let mut rekeyed = device(&vault, "d1", DeviceKind::Alarm, Some("c1"));
        rekeyed.key_hex = vault.seal(&key, "d1");
        directory.apply_device("d1", Some(rekeyed), Some(record_of_c1(vec![])));
        let index = directory.snapshot();
        let entry = index.devices.get("d1").unwrap();
        assert_eq!(entry.key.to_hex(), key.to_hex());
        assert!(entry.context.is_some());
        assert!(Arc::ptr_eq(
            before.devices.get_shared("d3").unwrap(),
            index.devices.get_shared("d3").unwrap()
        ));
    }

    #[test]
    fn the_changes_name_the_devices_a_case_change_reached() {
        let directory = directory();
        let mut changes = directory.changes();
        let generation = directory.generation();
        directory.apply_case("c1", Some(record_of_c1(vec![])));
        directory.apply_device(
            "d4",
            Some(device(&vault(), "d4", DeviceKind::Alarm, None)),
            None,
        );
        assert_eq!(
            changes.try_recv().unwrap(),
            Change::Case {
                case_id: "c1".into(),
                devices: vec!["d1".to_owned(), "d2".to_owned()].into(),
            }
        );
        assert_eq!(changes.try_recv().unwrap(), Change::Device("d4".into()));
        assert_eq!(directory.generation(), generation + 2);
    }

    #[test]
    fn what_changes_while_a_reload_reads_the_store_is_read_again_after_its_swap() {
        let directory = directory();
        *directory.touched_during_reload.lock().unwrap() = Some(Vec::new());
        directory.apply_case("c1", Some(record_of_c1(vec![])));
        directory.apply_device("d4", None, None);
        let touched = directory.replace(Register::default());
        assert!(matches!(
            touched.as_slice(),
            [Touched::Case(c), Touched::Device(d)] if c == "c1" && d == "d4"
        ));
        // Nothing is recorded once the reload is done.
        directory.apply_case("c1", None);
        assert!(directory.touched_during_reload.lock().unwrap().is_none());
    }

    #[test]
    fn a_person_with_a_protected_identity_makes_their_case_protected_when_it_is_read_again() {
        let directory = directory();
        assert!(!directory.snapshot().case_is_protected(Some("c1")));
        let mut record = record_of_c1(vec![]);
        record.person.protected_identity = true;
        directory.apply_case("c1", Some(record));
        assert!(directory.snapshot().case_is_protected(Some("c1")));
        assert!(!directory.snapshot().case_is_protected(Some("c2")));
    }
}
