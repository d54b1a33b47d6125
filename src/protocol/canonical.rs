//! Strict decoding of device bodies and their canonical (RFC 8785 JCS, integer-only) form.
//!
//! The signature covers the canonical bytes, so the decoder refuses everything that could
//! make two parties disagree on them: duplicate keys, fractions, exponents, nesting.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};

/// A member value of a device body: the protocol knows integers, strings and (for the
/// last will's `online`) booleans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scalar {
    Int(i64),
    Str(String),
    Bool(bool),
}

/// A decoded body: members sorted by byte order of their keys, `mac` kept apart.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Body {
    pub members: BTreeMap<String, Scalar>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    #[error("body is {0} bytes, more than the 2048 allowed")]
    TooLarge(usize),
    #[error("body is not UTF-8")]
    NotUtf8,
    #[error("body is not a flat JSON object of integers, strings and booleans: {0}")]
    Malformed(String),
}

pub const MAX_BODY_BYTES: usize = 2048;

impl Body {
    pub fn parse(bytes: &[u8]) -> Result<Body, BodyError> {
        if bytes.len() > MAX_BODY_BYTES {
            return Err(BodyError::TooLarge(bytes.len()));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| BodyError::NotUtf8)?;
        let mut de = serde_json::Deserializer::from_str(text);
        let body = de
            .deserialize_map(BodyVisitor)
            .map_err(|e| BodyError::Malformed(e.to_string()))?;
        de.end().map_err(|e| BodyError::Malformed(e.to_string()))?;
        Ok(body)
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        match self.members.get(key) {
            Some(Scalar::Int(v)) => Some(*v),
            _ => None,
        }
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        match self.members.get(key) {
            Some(Scalar::Str(v)) => Some(v),
            _ => None,
        }
    }

    pub fn bool(&self, key: &str) -> Option<bool> {
        match self.members.get(key) {
            Some(Scalar::Bool(v)) => Some(*v),
            _ => None,
        }
    }

    pub fn insert_int(&mut self, key: &str, value: i64) {
        self.members.insert(key.to_owned(), Scalar::Int(value));
    }

    pub fn insert_str(&mut self, key: &str, value: &str) {
        self.members
            .insert(key.to_owned(), Scalar::Str(value.to_owned()));
    }

    /// The canonical serialisation of every member except `mac`.
    pub fn canonical(&self) -> String {
        let mut out = String::with_capacity(128);
        out.push('{');
        let mut first = true;
        for (key, value) in self.members.iter().filter(|(k, _)| k.as_str() != "mac") {
            if !first {
                out.push(',');
            }
            first = false;
            write_string(&mut out, key);
            out.push(':');
            match value {
                Scalar::Int(v) => out.push_str(&v.to_string()),
                Scalar::Str(s) => write_string(&mut out, s),
                Scalar::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            }
        }
        out.push('}');
        out
    }

    /// The canonical body followed by its `mac`, as sent on the wire.
    pub fn with_mac(&self, mac: &str) -> String {
        let mut text = self.canonical();
        text.pop();
        if text.len() > 1 {
            text.push(',');
        }
        text.push_str("\"mac\":");
        write_string(&mut text, mac);
        text.push('}');
        text
    }
}

/// JSON string with the minimal escaping JCS prescribes.
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
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

struct BodyVisitor;

impl<'de> Visitor<'de> for BodyVisitor {
    type Value = Body;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Body, A::Error> {
        let mut body = Body::default();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value::<ScalarValue>()?.0;
            if body.members.insert(key.clone(), value).is_some() {
                return Err(de::Error::custom(format!("duplicate member `{key}`")));
            }
        }
        Ok(body)
    }
}

struct ScalarValue(Scalar);

impl<'de> serde::Deserialize<'de> for ScalarValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = ScalarValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer, a string or a boolean")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ScalarValue, E> {
        Ok(ScalarValue(Scalar::Int(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ScalarValue, E> {
        i64::try_from(v)
            .map(|v| ScalarValue(Scalar::Int(v)))
            .map_err(|_| E::custom("integer out of range"))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<ScalarValue, E> {
        Ok(ScalarValue(Scalar::Bool(v)))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<ScalarValue, E> {
        Err(E::custom("numbers must be integers"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ScalarValue, E> {
        Ok(ScalarValue(Scalar::Str(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<ScalarValue, E> {
        Ok(ScalarValue(Scalar::Str(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_heartbeat_is_its_own_canonical_form() {
        let text = r#"{"batt":87,"boot":3,"chg":0,"rssi":-71,"seq":1204,"ts":1764320000123}"#;
        assert_eq!(Body::parse(text.as_bytes()).unwrap().canonical(), text);
    }

    #[test]
    fn members_in_any_order_and_spacing_give_the_same_canonical_form() {
        let a = Body::parse(br#"{ "seq": 2, "boot": 1, "kind": "panic" }"#).unwrap();
        assert_eq!(a.canonical(), r#"{"boot":1,"kind":"panic","seq":2}"#);
    }

    #[test]
    fn the_mac_is_left_out_of_the_canonical_form() {
        let b = Body::parse(br#"{"seq":2,"mac":"ab"}"#).unwrap();
        assert_eq!(b.canonical(), r#"{"seq":2}"#);
        assert_eq!(b.with_mac("ab"), r#"{"seq":2,"mac":"ab"}"#);
    }

    #[test]
    fn strings_get_minimal_escaping() {
        let b = Body::parse(br#"{"fw":"a\"b\\c\n\u0001/\u00e5"}"#).unwrap();
        assert_eq!(b.canonical(), "{\"fw\":\"a\\\"b\\\\c\\n\\u0001/\u{e5}\"}");
    }

    #[test]
    fn fractions_exponents_nesting_and_duplicates_are_refused() {
        for bad in [
            &br#"{"a":1.5}"#[..],
            br#"{"a":1e3}"#,
            br#"{"a":{"b":1}}"#,
            br#"{"a":[1]}"#,
            br#"{"a":null}"#,
            br#"{"a":1,"a":2}"#,
            br#"[1]"#,
            br#"{"a":1} x"#,
            b"",
        ] {
            assert!(
                Body::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_body_over_2048_bytes_is_refused() {
        let big = format!(r#"{{"fw":"{}"}}"#, "x".repeat(2048));
        assert!(matches!(
            Body::parse(big.as_bytes()),
            Err(BodyError::TooLarge(_))
        ));
    }
}
