//! The audit trail's tamper evidence: every entry carries a link over the one before it and
//! its own fields, so an edited or deleted entry breaks the chain at that point (`vakt audit
//! verify`). The links are HMAC-SHA256 under a key derived from the master key: someone who
//! can write to the database but does not hold the master key cannot recompute them, so
//! cannot rewrite an entry and patch up the chain after it.
//!
//! Entries written before the chain was keyed carry plain SHA-256 links; vakt checks such a
//! chain once, at the start that upgrades the database, and re-links it under the key
//! (`store::open`). A plain link is never accepted after that.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::domain::Millis;

/// What one audit entry says: who did or saw what, when and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub at: Millis,
    pub actor: Option<&'a str>,
    pub action: &'a str,
    pub subject: Option<&'a str>,
    pub case_id: Option<&'a str>,
    pub detail: Option<&'a str>,
}

/// The link before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The key the chain is linked with; only `KeyVault` derives it from the master key.
#[derive(Clone)]
pub struct ChainKey([u8; 32]);

impl ChainKey {
    pub fn from_bytes(bytes: [u8; 32]) -> ChainKey {
        ChainKey(bytes)
    }
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("ChainKey(..)")
    }
}

/// Feeds `prev ‖ fields` to a hash, every field length-prefixed so no two entries encode
/// alike.
fn encode(prev: &str, r: &Record, mut update: impl FnMut(&[u8])) {
    let mut field = |v: Option<&str>| match v {
        None => update(b"-"),
        Some(s) => {
            update(&(s.len() as u64).to_be_bytes());
            update(s.as_bytes());
        }
    };
    field(Some(prev));
    field(Some(&r.at.to_string()));
    field(r.actor);
    field(Some(r.action));
    field(r.subject);
    field(r.case_id);
    field(r.detail);
}

/// The link of an entry: `HMAC-SHA256(key, prev ‖ fields)`.
pub fn entry_link(key: &ChainKey, prev: &str, r: &Record) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&key.0).expect("HMAC takes any key length");
    encode(prev, r, |b| mac.update(b));
    hex::encode(mac.finalize().into_bytes())
}

/// The link entries had before the chain was keyed, `sha256(prev ‖ fields)`: only for
/// checking such a chain before it is re-linked under the key.
pub fn plain_link(prev: &str, r: &Record) -> String {
    let mut h = Sha256::new();
    encode(prev, r, |b| h.update(b));
    hex::encode(h.finalize())
}

/// What verifying the chain found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Verdict {
    pub entries: u64,
    /// The id of the first entry whose link does not hold, if any.
    pub first_broken: Option<i64>,
}

/// Checks `(id, prev_hash, hash, record)` rows in id order against the keyed links.
pub fn verify<'a>(
    key: &ChainKey,
    rows: impl IntoIterator<Item = (i64, &'a str, &'a str, Record<'a>)>,
) -> Verdict {
    verify_with(|prev, r| entry_link(key, prev, r), rows)
}

/// Checks a chain written before it was keyed, whose links are plain SHA-256.
pub fn verify_plain<'a>(
    rows: impl IntoIterator<Item = (i64, &'a str, &'a str, Record<'a>)>,
) -> Verdict {
    verify_with(plain_link, rows)
}

fn verify_with<'a>(
    link: impl Fn(&str, &Record) -> String,
    rows: impl IntoIterator<Item = (i64, &'a str, &'a str, Record<'a>)>,
) -> Verdict {
    let mut prev = GENESIS.to_owned();
    let mut entries = 0;
    for (id, prev_hash, hash, record) in rows {
        entries += 1;
        if prev_hash != prev || link(&prev, &record) != hash {
            return Verdict {
                entries,
                first_broken: Some(id),
            };
        }
        prev = hash.to_owned();
    }
    Verdict {
        entries,
        first_broken: None,
    }
}

/// The keyed links of entries in id order: `(id, prev_hash, hash)` for each.
pub fn relink<'a>(
    key: &ChainKey,
    records: impl IntoIterator<Item = (i64, Record<'a>)>,
) -> Vec<(i64, String, String)> {
    let mut prev = GENESIS.to_owned();
    records
        .into_iter()
        .map(|(id, record)| {
            let hash = entry_link(key, &prev, &record);
            (id, std::mem::replace(&mut prev, hash.clone()), hash)
        })
        .collect()
}

/// What a chain found at the upgrade to keyed links should become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upgrade {
    /// No entries yet: every entry will be keyed from the first.
    Empty,
    /// Its plain links hold: re-link it under the key.
    Relink,
    /// Its links already hold under the key (another instance upgraded it first).
    AlreadyKeyed,
    /// Neither holds: leave it as it is, broken at this entry, for a person to look at.
    /// Re-linking it would vouch for whatever was changed.
    Broken(i64),
}

/// Decides the upgrade from the chain's verdicts under the key and as plain links. Where
/// both break, the reading that holds for longer is the one the chain was written in, so
/// its break is the one reported.
pub fn upgrade(keyed: &Verdict, plain: &Verdict) -> Upgrade {
    if keyed.entries == 0 {
        return Upgrade::Empty;
    }
    match (keyed.first_broken, plain.first_broken) {
        (None, _) => Upgrade::AlreadyKeyed,
        (_, None) => Upgrade::Relink,
        (Some(k), Some(p)) => Upgrade::Broken(k.max(p)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ChainKey {
        ChainKey::from_bytes([7; 32])
    }

    fn record(action: &str) -> Record<'_> {
        Record {
            at: 1,
            actor: Some("anna"),
            action,
            subject: Some("p_1"),
            case_id: None,
            detail: Some("call-back"),
        }
    }

    type Row = (i64, String, String, Record<'static>);

    /// A chain linked by `link`, as the store would hold it.
    fn chain_with(actions: &[&'static str], link: impl Fn(&str, &Record) -> String) -> Vec<Row> {
        let mut prev = GENESIS.to_owned();
        let mut out = Vec::new();
        for (i, a) in actions.iter().enumerate() {
            let r = record(a);
            let h = link(&prev, &r);
            out.push((i as i64 + 1, prev.clone(), h.clone(), r));
            prev = h;
        }
        out
    }

    fn chain(actions: &[&'static str]) -> Vec<Row> {
        chain_with(actions, |p, r| entry_link(&key(), p, r))
    }

    fn rows<'a>(rows: &'a [Row]) -> impl Iterator<Item = (i64, &'a str, &'a str, Record<'a>)> {
        rows.iter()
            .map(|(id, p, h, r)| (*id, p.as_str(), h.as_str(), r.clone()))
    }

    fn check(chain: &[Row]) -> Verdict {
        verify(&key(), rows(chain))
    }

    #[test]
    fn an_untouched_chain_verifies() {
        assert_eq!(
            check(&chain(&["login", "person_viewed", "logout"])).first_broken,
            None
        );
    }

    #[test]
    fn an_edited_entry_breaks_the_chain_at_that_entry() {
        let mut rows = chain(&["login", "person_viewed", "logout"]);
        rows[1].3.detail = Some("nothing to see");
        assert_eq!(check(&rows).first_broken, Some(2));
    }

    #[test]
    fn a_deleted_entry_breaks_the_chain_at_the_next_one() {
        let mut rows = chain(&["login", "person_viewed", "logout"]);
        rows.remove(1);
        assert_eq!(check(&rows).first_broken, Some(3));
    }

    #[test]
    fn an_entry_rewritten_with_its_plain_links_recomputed_breaks_the_keyed_chain() {
        let mut rows = chain(&["login", "person_viewed", "logout"]);
        rows[1].3.detail = Some("nothing to see");
        // The attacker recomputes every link from the edited entry on, as SHA-256 could be.
        for i in 1..rows.len() {
            let prev = rows[i - 1].2.clone();
            rows[i].1 = prev.clone();
            rows[i].2 = plain_link(&prev, &rows[i].3);
        }
        assert_eq!(check(&rows).first_broken, Some(2));
        // A whole chain of plain links is no keyed chain either.
        let plain = chain_with(&["login", "logout"], plain_link);
        assert_eq!(check(&plain).first_broken, Some(1));
    }

    #[test]
    fn a_chain_linked_under_another_key_does_not_verify() {
        let other = ChainKey::from_bytes([8; 32]);
        let rows = chain_with(&["login"], |p, r| entry_link(&other, p, r));
        assert_eq!(check(&rows).first_broken, Some(1));
    }

    #[test]
    fn fields_cannot_be_shifted_between_each_other() {
        let a = Record {
            actor: Some("ab"),
            subject: Some("c"),
            ..record("x")
        };
        let b = Record {
            actor: Some("a"),
            subject: Some("bc"),
            ..record("x")
        };
        assert_ne!(
            entry_link(&key(), GENESIS, &a),
            entry_link(&key(), GENESIS, &b)
        );
        assert_ne!(plain_link(GENESIS, &a), plain_link(GENESIS, &b));
    }

    #[test]
    fn a_plain_chain_is_relinked_into_one_that_verifies_under_the_key() {
        let plain = chain_with(&["login", "person_viewed", "logout"], plain_link);
        let keyed = verify(&key(), rows(&plain));
        let as_plain = verify_plain(rows(&plain));
        assert_eq!(upgrade(&keyed, &as_plain), Upgrade::Relink);
        let links = relink(&key(), plain.iter().map(|(id, _, _, r)| (*id, r.clone())));
        let relinked: Vec<Row> = plain
            .iter()
            .zip(links)
            .map(|((id, _, _, r), (lid, p, h))| {
                assert_eq!(*id, lid);
                (lid, p, h, r.clone())
            })
            .collect();
        assert_eq!(relinked, chain(&["login", "person_viewed", "logout"]));
        assert_eq!(check(&relinked).first_broken, None);
    }

    #[test]
    fn the_upgrade_relinks_only_an_intact_plain_chain_and_leaves_a_broken_one_alone() {
        let empty = Verdict {
            entries: 0,
            first_broken: None,
        };
        assert_eq!(upgrade(&empty, &empty), Upgrade::Empty);
        let keyed = chain(&["a", "b"]);
        assert_eq!(
            upgrade(&check(&keyed), &verify_plain(rows(&keyed))),
            Upgrade::AlreadyKeyed
        );
        let mut plain = chain_with(&["a", "b", "c", "d"], plain_link);
        plain[2].3.detail = Some("edited");
        assert_eq!(
            upgrade(&check(&plain), &verify_plain(rows(&plain))),
            Upgrade::Broken(3),
            "where the plain chain breaks, not where the keyed reading does"
        );
    }
}
