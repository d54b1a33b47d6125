//! Every setting `Config` has, found from its `Deserialize` alone: which keys are tables,
//! which are maps, which are secrets. The documentation's settings table is checked
//! against it, so a new field cannot go undocumented.

use std::cell::RefCell;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::forward_to_deserialize_any;

use super::layers::SECRET;

/// What a key holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// A table of settings (a struct): its fields.
    Table(Vec<&'static str>),
    /// A map whose keys the operator chooses (`supervision.classes`).
    Map,
    /// A `Secret`: never logged, may come from `VAKT_X_FILE`.
    Secret,
    /// One value.
    Value,
}

/// Every key below the top: tables are walked into, the rest listed with their shape.
pub fn settings<T: DeserializeOwned>() -> Vec<(Vec<&'static str>, Shape)> {
    let mut found = Vec::new();
    let mut todo = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        match shape_at::<T>(&path) {
            Shape::Table(fields) => {
                for f in fields.iter().rev() {
                    let mut p = path.clone();
                    p.push(*f);
                    todo.push(p);
                }
            }
            shape => found.push((path, shape)),
        }
    }
    found
}

/// The shape at `path`: `T` is deserialized from a probe that walks down `path`, notes how
/// the field there asks to be deserialized, and stops.
fn shape_at<T: DeserializeOwned>(path: &[&'static str]) -> Shape {
    let seen = RefCell::new(None);
    let _ = T::deserialize(Probe { path, seen: &seen });
    seen.into_inner()
        .unwrap_or_else(|| panic!("no setting at {}", path.join(".")))
}

struct Probe<'a> {
    path: &'a [&'static str],
    seen: &'a RefCell<Option<Shape>>,
}

#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("probe done")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl Probe<'_> {
    fn note(self, shape: Shape) -> Stop {
        *self.seen.borrow_mut() = Some(shape);
        Stop
    }
}

impl<'de> de::Deserializer<'de> for Probe<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Stop> {
        Err(self.note(Shape::Value))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        if self.path.is_empty() && name == SECRET {
            return Err(self.note(Shape::Secret));
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_map<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Stop> {
        Err(self.note(Shape::Map))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        match self.path.split_first() {
            None => Err(self.note(Shape::Table(fields.to_vec()))),
            Some((key, rest)) => visitor.visit_map(ProbeKey {
                key: Some(key),
                rest,
                seen: self.seen,
            }),
        }
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct enum identifier ignored_any
    }
}

/// The one key on the way down.
struct ProbeKey<'a> {
    key: Option<&'static str>,
    rest: &'a [&'static str],
    seen: &'a RefCell<Option<Shape>>,
}

impl<'de> MapAccess<'de> for ProbeKey<'_> {
    type Error = Stop;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Stop> {
        match self.key.take() {
            Some(k) => seed.deserialize(k.into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Stop> {
        seed.deserialize(Probe {
            path: self.rest,
            seen: self.seen,
        })
    }
}
