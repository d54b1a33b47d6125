//! Canonical JSON: the exact bytes a body's signature covers (protocol v1, "Signature").

use std::fmt::{self, Write as _};

use serde_json::{Map, Value};

/// Why a value has no canonical form under protocol v1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CanonicalError {
    /// The protocol allows integers only; a fraction or exponent would need
    /// JCS's floating point rules, which v1 deliberately leaves out.
    NotAnInteger(String),
    /// Two members with the same name make the signed bytes ambiguous.
    DuplicateMember(String),
}

impl fmt::Display for CanonicalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnInteger(n) => write!(f, "number {n} is not an integer"),
            Self::DuplicateMember(k) => write!(f, "member {k:?} appears twice"),
        }
    }
}

impl std::error::Error for CanonicalError {}

/// Serialises the object made of `members`: keys sorted by byte order, no
/// white space, integers as plain decimals, minimal string escaping.
pub fn canonical_json(members: &[(&str, Value)]) -> Result<String, CanonicalError> {
    let mut sorted: Vec<(&str, &Value)> = members.iter().map(|(k, v)| (*k, v)).collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    if let Some(pair) = sorted.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        return Err(CanonicalError::DuplicateMember(pair[0].0.to_owned()));
    }
    let mut out = String::new();
    write_object(&mut out, sorted)?;
    Ok(out)
}

/// The canonical form of a received body: every member except `mac`.
pub fn canonical_without_mac(body: &Map<String, Value>) -> Result<String, CanonicalError> {
    let members: Vec<(&str, Value)> = body
        .iter()
        .filter(|(k, _)| k.as_str() != "mac")
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    canonical_json(&members)
}

fn write_object(out: &mut String, sorted: Vec<(&str, &Value)>) -> Result<(), CanonicalError> {
    out.push('{');
    for (i, (key, value)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, key);
        out.push(':');
        write_value(out, value)?;
    }
    out.push('}');
    Ok(())
}

fn write_value(out: &mut String, value: &Value) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            // serde_json keeps integers exact, so their decimal text is the JCS form.
            if !(n.is_i64() || n.is_u64()) {
                return Err(CanonicalError::NotAnInteger(n.to_string()));
            }
            out.push_str(&n.to_string());
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            // Never trust the map's own order: serde_json's `preserve_order`
            // feature may be switched on by another crate in the build.
            let mut sorted: Vec<(&str, &Value)> =
                map.iter().map(|(k, v)| (k.as_str(), v)).collect();
            sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            write_object(out, sorted)?;
        }
    }
    Ok(())
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_spec_heartbeat_body_is_byte_identical_when_given_unsorted() {
        let members = [
            ("ts", json!(1_764_320_000_123_i64)),
            ("seq", json!(1204)),
            ("rssi", json!(-71)),
            ("chg", json!(0)),
            ("boot", json!(3)),
            ("batt", json!(87)),
        ];
        assert_eq!(
            canonical_json(&members).unwrap(),
            r#"{"batt":87,"boot":3,"chg":0,"rssi":-71,"seq":1204,"ts":1764320000123}"#
        );
    }

    #[test]
    fn keys_are_sorted_by_bytes_not_by_letters() {
        let members = [
            ("b", json!(1)),
            ("B", json!(2)),
            ("a", json!(3)),
            ("_", json!(4)),
        ];
        assert_eq!(
            canonical_json(&members).unwrap(),
            r#"{"B":2,"_":4,"a":3,"b":1}"#
        );
    }

    #[test]
    fn strings_get_only_the_minimal_escapes() {
        let s = "q\" b\\ \u{8}\u{c}\n\r\t \u{0}\u{1f} / \u{7f} é \u{2028} 🚨";
        let members = [("s", json!(s))];
        assert_eq!(
            canonical_json(&members).unwrap(),
            "{\"s\":\"q\\\" b\\\\ \\b\\f\\n\\r\\t \\u0000\\u001f / \u{7f} é \u{2028} 🚨\"}"
        );
    }

    #[test]
    fn the_canonical_text_parses_back_to_the_same_value() {
        let members = [
            ("kind", json!("pa\"nic\u{1}")),
            ("lat", json!(593_293_000)),
            ("online", json!(false)),
            ("max", json!(u64::MAX)),
            ("min", json!(i64::MIN)),
        ];
        let text = canonical_json(&members).unwrap();
        let parsed: Map<String, Value> = serde_json::from_str(&text).unwrap();
        for (k, v) in &members {
            assert_eq!(&parsed[*k], v);
        }
    }

    #[test]
    fn nested_objects_and_arrays_are_canonical_too() {
        let members = [("cfg", json!({"z": [1, {"y": "x", "a": null}], "a": true}))];
        assert_eq!(
            canonical_json(&members).unwrap(),
            r#"{"cfg":{"a":true,"z":[1,{"a":null,"y":"x"}]}}"#
        );
    }

    #[test]
    fn a_fraction_has_no_canonical_form() {
        let err = canonical_json(&[("acc", json!(1.5))]).unwrap_err();
        assert_eq!(err, CanonicalError::NotAnInteger("1.5".into()));
    }

    #[test]
    fn a_repeated_member_has_no_canonical_form() {
        let err = canonical_json(&[("seq", json!(1)), ("seq", json!(2))]).unwrap_err();
        assert_eq!(err, CanonicalError::DuplicateMember("seq".into()));
    }

    #[test]
    fn a_received_body_is_canonicalised_without_its_mac() {
        let body: Map<String, Value> =
            serde_json::from_str(r#"{"seq":2,"mac":"00","boot":1}"#).unwrap();
        assert_eq!(
            canonical_without_mac(&body).unwrap(),
            r#"{"boot":1,"seq":2}"#
        );
    }
}
