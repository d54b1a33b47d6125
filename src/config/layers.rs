//! The configuration's layers as one tree, deserialized once: the built-in defaults, the
//! file's TOML laid over them, and the `VAKT_*` variables laid over both.
//!
//! A variable names its key by path: `VAKT_POLICY__PROXIMITY_M` is `policy.proximity_m`
//! (`__` between levels, compared without case), `VAKT_SUPERVISION__CLASSES__STRICT` an entry
//! of a map. Its text is read as whatever the field asks for (a number, a boolean, a
//! comma-separated list, nothing when empty for an optional one), so a new field of `Config`
//! can be set from the environment the moment it exists, with no code of its own, and
//! `deny_unknown_fields` refuses a misspelt variable as it refuses a misspelt file key,
//! naming the variable. `VAKT_X_FILE` gives a secret (a `Secret` field) as the path of a
//! file holding it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde::forward_to_deserialize_any;

/// What every setting's variable starts with.
pub const PREFIX: &str = "VAKT_";
/// Between the levels of a nested key in a variable's name.
const NESTING: &str = "__";
/// A variable that gives a secret as the path of a file holding it.
pub const FILE_SUFFIX: &str = "_FILE";
/// The name `Secret` deserializes under (`deserialize_newtype_struct`): the one type a
/// `VAKT_X_FILE` variable may fill.
pub const SECRET: &str = "Secret";

/// Where a key came from: it decides what an error about it names.
#[derive(Clone, Debug)]
pub enum Origin {
    Default,
    File,
    Env(String),
}

/// One level of the tree.
pub enum Node {
    Table(BTreeMap<String, (Origin, Node)>),
    /// Anything but a table, from the defaults or the file.
    Value(toml::Value),
    /// A variable's text, read as the field asks.
    Env(String),
    /// `VAKT_X_FILE`: the path of the file that holds a secret.
    EnvFile(PathBuf),
}

/// What went wrong, where: the variable (when the value came from the environment) and the
/// key's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerError {
    pub var: Option<String>,
    pub key: Vec<String>,
    pub msg: String,
}

impl LayerError {
    fn new(msg: impl fmt::Display) -> LayerError {
        LayerError {
            var: None,
            key: Vec::new(),
            msg: msg.to_string(),
        }
    }

    /// The error as seen from the table holding `key`: the key goes in front of the path,
    /// and the innermost variable involved is the one named.
    fn within(mut self, key: &str, origin: &Origin) -> LayerError {
        self.key.insert(0, key.to_owned());
        if let (None, Origin::Env(var)) = (&self.var, origin) {
            self.var = Some(var.clone());
        }
        self
    }

    pub fn key(&self) -> String {
        self.key.join(".")
    }
}

impl fmt::Display for LayerError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: {}", self.key(), self.msg)
    }
}

impl std::error::Error for LayerError {}

impl de::Error for LayerError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        LayerError::new(msg)
    }
}

impl Node {
    /// The defaults, as `Config::default()` serializes.
    pub fn defaults(value: toml::Value) -> Node {
        Node::from_toml(value, &Origin::Default)
    }

    /// A configuration file's table.
    pub fn file(table: toml::Table) -> Node {
        Node::from_toml(toml::Value::Table(table), &Origin::File)
    }

    fn from_toml(value: toml::Value, origin: &Origin) -> Node {
        match value {
            toml::Value::Table(t) => Node::Table(
                t.into_iter()
                    .map(|(k, v)| (k, (origin.clone(), Node::from_toml(v, origin))))
                    .collect(),
            ),
            v => Node::Value(v),
        }
    }

    /// Lays `top` over this tree: tables merge key by key (a map entry or a setting the file
    /// does not name keeps its default); anything else in `top` replaces what was here.
    pub fn overlay(&mut self, top: Node) {
        match (self, top) {
            (Node::Table(below), Node::Table(above)) => {
                for (key, (origin, node)) in above {
                    match below.get_mut(&key) {
                        Some((o, n)) => {
                            *o = origin;
                            n.overlay(node);
                        }
                        None => {
                            below.insert(key, (origin, node));
                        }
                    }
                }
            }
            (this, top) => *this = top,
        }
    }

    /// Sets the variable `var` (which starts with [`PREFIX`]) to `text`.
    pub fn set_env(&mut self, var: &str, text: String) -> Result<(), LayerError> {
        let (path, leaf) = env_key(var, text)?;
        let origin = Origin::Env(var.to_owned());
        let mut node = self;
        for (i, segment) in path.iter().enumerate() {
            let Node::Table(table) = node else {
                unreachable!("the walk only descends into tables");
            };
            let last = i + 1 == path.len();
            let entry = table
                .entry(segment.clone())
                .or_insert_with(|| (origin.clone(), Node::Table(BTreeMap::new())));
            if last {
                *entry = (origin.clone(), leaf);
                return Ok(());
            }
            // A variable reaching below a plain value makes it a table: the value is
            // overridden, and deserializing says what the setting really is.
            if !matches!(entry.1, Node::Table(_)) {
                *entry = (origin.clone(), Node::Table(BTreeMap::new()));
            }
            node = &mut entry.1;
        }
        Ok(())
    }
}

/// The key path a variable names, and its leaf.
fn env_key(var: &str, text: String) -> Result<(Vec<String>, Node), LayerError> {
    let bad = || LayerError {
        var: Some(var.to_owned()),
        ..LayerError::new("not the name of a setting (`VAKT_KEY`, `VAKT_TABLE__KEY`)")
    };
    let name = var.strip_prefix(PREFIX).ok_or_else(bad)?;
    let (name, leaf) = match name.strip_suffix(FILE_SUFFIX) {
        Some(base) => (base, Node::EnvFile(PathBuf::from(text))),
        None => (name, Node::Env(text)),
    };
    let path: Vec<String> = name.split(NESTING).map(str::to_lowercase).collect();
    if path.iter().any(|s| s.is_empty()) {
        return Err(bad());
    }
    Ok((path, leaf))
}

/// The variable of a key path (`["policy", "proximity_m"]` → `VAKT_POLICY__PROXIMITY_M`).
pub fn var_of(path: &[&str]) -> String {
    format!("{PREFIX}{}", path.join(NESTING).to_uppercase())
}

/// Reads a secret's file: its text with one trailing line break removed (what `echo` and
/// most editors add), so the file can hold the secret exactly as the variable would.
fn read_secret_file(path: &std::path::Path) -> Result<String, LayerError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| LayerError::new(format!("cannot read {}: {e}", path.display())))?;
    let text = match text.strip_suffix('\n') {
        Some(t) => t.strip_suffix('\r').unwrap_or(t),
        None => &text,
    };
    Ok(text.to_owned())
}

/// Sends each `deserialize_*` call to the deserializer of the node's kind.
macro_rules! dispatch {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, LayerError> {
                match self {
                    Node::Table(t) => TableDe(t).$method($($arg,)* visitor),
                    Node::Value(v) => v.$method($($arg,)* visitor).map_err(LayerError::new),
                    Node::Env(text) => EnvDe(text).$method($($arg,)* visitor),
                    Node::EnvFile(path) => EnvFileDe(path).$method($($arg,)* visitor),
                }
            }
        )*
    };
}

impl<'de> Deserializer<'de> for Node {
    type Error = LayerError;

    dispatch! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }
}

/// A table: a struct or a map, key by key.
struct TableDe(BTreeMap<String, (Origin, Node)>);

impl<'de> Deserializer<'de> for TableDe {
    type Error = LayerError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LayerError> {
        visitor.visit_map(TableAccess {
            entries: self.0.into_iter(),
            value: None,
        })
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LayerError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, LayerError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LayerError> {
        visitor.visit_unit()
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct enum identifier
    }
}

struct TableAccess {
    entries: std::collections::btree_map::IntoIter<String, (Origin, Node)>,
    value: Option<(String, Origin, Node)>,
}

impl<'de> MapAccess<'de> for TableAccess {
    type Error = LayerError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, LayerError> {
        let Some((key, (origin, node))) = self.entries.next() else {
            return Ok(None);
        };
        // An unknown key fails here (`deny_unknown_fields`): named with its variable.
        let k = seed
            .deserialize(key.as_str().into_deserializer())
            .map_err(|e: LayerError| e.within(&key, &origin))?;
        self.value = Some((key, origin, node));
        Ok(Some(k))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, LayerError> {
        let (key, origin, node) = self
            .value
            .take()
            .ok_or_else(|| LayerError::new("a value without its key"))?;
        seed.deserialize(node).map_err(|e| e.within(&key, &origin))
    }
}

/// A variable's text, read as the field asks for it.
struct EnvDe(String);

impl EnvDe {
    fn parse<T: std::str::FromStr>(&self, what: &str) -> Result<T, LayerError> {
        self.0
            .trim()
            .parse()
            .map_err(|_| LayerError::new(format!("`{}` is not {what}", self.0)))
    }

    /// A TOML value written in the variable (`[…]` or `{ … }`), for lists and tables that a
    /// comma list or one variable per key cannot say.
    fn toml(&self) -> Result<Option<toml::Value>, LayerError> {
        let t = self.0.trim_start();
        if !(t.starts_with('[') || t.starts_with('{')) {
            return Ok(None);
        }
        let doc: toml::Table =
            format!("v = {}", self.0)
                .parse()
                .map_err(|e: toml::de::Error| {
                    LayerError::new(format!("not a TOML value: {}", e.message()))
                })?;
        Ok(doc.get("v").cloned())
    }
}

macro_rules! env_numbers {
    ($($method:ident $visit:ident $ty:ty, $what:literal;)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LayerError> {
                visitor.$visit(self.parse::<$ty>($what)?)
            }
        )*
    };
}

impl<'de> Deserializer<'de> for EnvDe {
    type Error = LayerError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LayerError> {
        visitor.visit_string(self.0)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LayerError> {
        visitor.visit_bool(self.parse("`true` or `false`")?)
    }

    env_numbers! {
        deserialize_i8 visit_i8 i8, "a whole number";
        deserialize_i16 visit_i16 i16, "a whole number";
        deserialize_i32 visit_i32 i32, "a whole number";
        deserialize_i64 visit_i64 i64, "a whole number";
        deserialize_u8 visit_u8 u8, "a whole number from 0 to 255";
        deserialize_u16 visit_u16 u16, "a whole number from 0 to 65535";
        deserialize_u32 visit_u32 u32, "a whole number from 0 to 4294967295";
        deserialize_u64 visit_u64 u64, "a whole number of at least 0";
        deserialize_f32 visit_f32 f32, "a number";
        deserialize_f64 visit_f64 f64, "a number";
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LayerError> {
        // An empty variable is an unset one: `VAKT_MQTT_URL=` in a compose file.
        if self.0.is_empty() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, LayerError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LayerError> {
        if let Some(value) = self.toml()? {
            return value.deserialize_seq(visitor).map_err(LayerError::new);
        }
        // `a, b, c`; an empty variable is an empty list.
        let items: Vec<String> = self
            .0
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        visitor.visit_seq(EnvList(items.into_iter()))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, LayerError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, LayerError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LayerError> {
        match self.toml()? {
            Some(value) => Node::from_toml(value, &Origin::File).deserialize_map(visitor),
            None => Err(LayerError::new(
                "this setting is a table: set each of its keys as VAKT_TABLE__KEY, \
                 or give a TOML inline table `{ key = value }`",
            )),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, LayerError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, LayerError> {
        visitor.visit_enum(self.0.trim().to_owned().into_deserializer())
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LayerError> {
        visitor.visit_unit()
    }

    forward_to_deserialize_any! {
        i128 u128 char str string bytes byte_buf unit unit_struct identifier
    }
}

/// The items of a comma-separated variable.
struct EnvList(std::vec::IntoIter<String>);

impl<'de> SeqAccess<'de> for EnvList {
    type Error = LayerError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, LayerError> {
        self.0
            .next()
            .map(|item| seed.deserialize(EnvDe(item)))
            .transpose()
    }
}

/// `VAKT_X_FILE`: only a secret may be read from a file.
struct EnvFileDe(PathBuf);

impl EnvFileDe {
    fn not_a_secret() -> LayerError {
        LayerError::new(
            "only a secret can be read from a file, and this setting is not one: \
             give it without `_FILE`",
        )
    }
}

impl<'de> Deserializer<'de> for EnvFileDe {
    type Error = LayerError;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, LayerError> {
        Err(EnvFileDe::not_a_secret())
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LayerError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, LayerError> {
        if name != SECRET {
            return Err(EnvFileDe::not_a_secret());
        }
        visitor.visit_newtype_struct(EnvDe(read_secret_file(&self.0)?))
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}
