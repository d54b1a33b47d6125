//! The audit trail's tamper evidence: every entry carries the hash of the one before it,
//! so an edited or deleted entry breaks the chain at that point (`vakt audit verify`).

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

/// The hash before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// `sha256(prev ‖ fields)`, every field length-prefixed so no two entries encode alike.
pub fn entry_hash(prev: &str, r: &Record) -> String {
    let mut h = Sha256::new();
    let mut field = |v: Option<&str>| match v {
        None => h.update(b"-"),
        Some(s) => {
            h.update((s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        }
    };
    field(Some(prev));
    field(Some(&r.at.to_string()));
    field(r.actor);
    field(Some(r.action));
    field(r.subject);
    field(r.case_id);
    field(r.detail);
    hex::encode(h.finalize())
}

/// What verifying the chain found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Verdict {
    pub entries: u64,
    /// The id of the first entry whose link or hash does not hold, if any.
    pub first_broken: Option<i64>,
}

/// Checks `(id, prev_hash, hash, record)` rows in id order.
pub fn verify<'a>(rows: impl IntoIterator<Item = (i64, &'a str, &'a str, Record<'a>)>) -> Verdict {
    let mut prev = GENESIS.to_owned();
    let mut entries = 0;
    for (id, prev_hash, hash, record) in rows {
        entries += 1;
        if prev_hash != prev || entry_hash(&prev, &record) != hash {
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

#[cfg(test)]
mod tests {
    use super::*;

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

    fn chain(actions: &[&'static str]) -> Vec<(i64, String, String, Record<'static>)> {
        let mut prev = GENESIS.to_owned();
        let mut out = Vec::new();
        for (i, a) in actions.iter().enumerate() {
            let r = record(a);
            let h = entry_hash(&prev, &r);
            out.push((i as i64 + 1, prev.clone(), h.clone(), r));
            prev = h;
        }
        out
    }

    fn check(rows: &[(i64, String, String, Record<'static>)]) -> Verdict {
        verify(
            rows.iter()
                .map(|(id, p, h, r)| (*id, p.as_str(), h.as_str(), r.clone())),
        )
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
        assert_ne!(entry_hash(GENESIS, &a), entry_hash(GENESIS, &b));
    }
}
