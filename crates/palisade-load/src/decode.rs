//! Typed objects from positioned trees: a serde `Deserializer` over [`Node`] that decodes as
//! the API server's JSON decoder does after kubectl's YAML→JSON step, in one linear pass.
//!
//! Every type mismatch is an error at its field path: a number, bool, list or map where a string
//! belongs, a list where a struct belongs (serde's derived structs would otherwise read a
//! sequence positionally: `destination: []` as an empty rule), a float where an integer belongs.
//! Fields the type does not know (also when null) are collected, as kubectl's strict field
//! validation does. Aliases are followed, and bounded as go-yaml bounds them.

use std::cell::{Cell, RefCell};
use std::fmt;

use palisade_core::field::FieldPath;
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Unexpected, Visitor};

use crate::tree::{Entry, Kind, Node, Span};

/// Why a value could not be decoded, and where.
#[derive(Debug)]
pub struct DecodeError {
    pub path: FieldPath,
    pub at: Span,
    pub message: String,
}

#[derive(Debug)]
pub struct Error {
    message: String,
    place: Option<(FieldPath, Span)>,
}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error { message: msg.to_string(), place: None }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl Error {
    /// Attaches the innermost place only: errors bubble up through every enclosing value.
    fn at(mut self, path: &Path, node: &Node) -> Self {
        if self.place.is_none() {
            self.place = Some((path.to_field_path(), node.at));
        }
        self
    }
}

/// A field path as a chain on the stack: nothing is allocated unless an error needs it.
pub enum Path<'p> {
    Root,
    Key(&'p Path<'p>, &'p str),
    Index(&'p Path<'p>, usize),
}

impl Path<'_> {
    fn to_field_path(&self) -> FieldPath {
        match self {
            Path::Root => FieldPath::root(),
            Path::Key(parent, k) => parent.to_field_path().key(k),
            Path::Index(parent, i) => parent.to_field_path().index(*i),
        }
    }
}

/// Per document: the alias bookkeeping go-yaml does (`decodeCount`, `aliasCount`), and the
/// fields that no type knew.
#[derive(Default)]
pub struct State {
    decodes: Cell<u64>,
    aliased: Cell<u64>,
    alias_depth: Cell<u32>,
    /// The outermost alias being expanded: where an aliasing error is shown.
    outer_alias: RefCell<Option<(FieldPath, Span)>>,
    unknown: RefCell<Vec<Unknown>>,
    /// The fields of the structs being decoded, innermost last: what an unknown key was meant to be.
    structs: RefCell<Vec<&'static [&'static str]>>,
}

/// A field the type being decoded does not have: its path, and the fields the struct it sits in
/// does have (empty where no struct is known, e.g. under a map), for "did you mean".
#[derive(Debug, Clone)]
pub struct Unknown {
    pub path: FieldPath,
    pub known: &'static [&'static str],
}

/// go-yaml's `allowedAliasRatio`: 99 % of decoded values may come from aliases in documents up
/// to 400,000 values, falling to 10 % at 4,000,000.
fn allowed_alias_ratio(decodes: u64) -> f64 {
    const LOW: f64 = 400_000.0;
    const HIGH: f64 = 4_000_000.0;
    let d = decodes as f64;
    if d <= LOW {
        0.99
    } else if d >= HIGH {
        0.10
    } else {
        0.99 - 0.89 * ((d - LOW) / (HIGH - LOW))
    }
}

impl State {
    fn count(&self) -> Result<(), Error> {
        let decodes = self.decodes.get() + 1;
        self.decodes.set(decodes);
        if self.alias_depth.get() > 0 {
            self.aliased.set(self.aliased.get() + 1);
        }
        let aliased = self.aliased.get();
        if aliased > 100 && decodes > 1000 && aliased as f64 / decodes as f64 > allowed_alias_ratio(decodes) {
            return Err(Error { place: self.outer_alias.borrow().clone(), ..de::Error::custom(format!(
                "document contains excessive aliasing: aliases expand to {aliased} of the {decodes} values decoded so far \
                 (the limit kubectl's YAML library sets)"
            )) });
        }
        Ok(())
    }

    /// Whether a decoding error is the alias bound's (it is shown with [`ALIAS_HELP`]).
    pub fn is_alias_error(message: &str) -> bool {
        message.starts_with("document contains excessive aliasing")
    }
}

/// What to do about an alias bomb.
pub const ALIAS_HELP: &str = "YAML aliases (*name) may repeat a value, not multiply the document: write the values out";

/// Leaves the aliases a value was reached through when it is done.
struct AliasGuard<'s>(&'s State, u32);

impl Drop for AliasGuard<'_> {
    fn drop(&mut self) {
        self.0.alias_depth.set(self.0.alias_depth.get() - self.1);
    }
}

/// Decodes `node` (the object at `path` of its document) into `T`. Returns the value and the
/// fields `T` does not have.
pub fn decode<T: DeserializeOwned>(node: &Node, state: &State) -> Result<(T, Vec<Unknown>), DecodeError> {
    state.unknown.borrow_mut().clear();
    state.structs.borrow_mut().clear();
    let root = Path::Root;
    match T::deserialize(De { node, path: &root, state }) {
        Ok(v) => Ok((v, state.unknown.take())),
        Err(e) => {
            let (path, at) = e.place.unwrap_or((FieldPath::root(), node.at));
            Err(DecodeError { path, at, message: e.message })
        }
    }
}

struct De<'a, 'p, 's> {
    node: &'a Node,
    path: &'p Path<'p>,
    state: &'s State,
}

fn unexpected(node: &Node) -> Unexpected<'_> {
    match &node.kind {
        Kind::Null => Unexpected::Unit,
        Kind::Bool(b) => Unexpected::Bool(*b),
        Kind::Int(i) => Unexpected::Signed(*i),
        Kind::Uint(u) => Unexpected::Unsigned(*u),
        Kind::Float(f) => Unexpected::Float(*f),
        Kind::Str(s) => Unexpected::Str(s),
        Kind::Seq(_) => Unexpected::Seq,
        Kind::Map(_) => Unexpected::Map,
        Kind::Anchor(n) | Kind::Alias(n) => unexpected(n),
    }
}

impl<'a, 's> De<'a, '_, 's> {
    /// The value this node stands for (through anchors and aliases), counted.
    fn enter(&self) -> Result<(&'a Node, AliasGuard<'s>), Error> {
        let mut node = self.node;
        let mut aliases = 0;
        loop {
            match &node.kind {
                Kind::Anchor(n) => node = n,
                Kind::Alias(n) => {
                    aliases += 1;
                    node = n;
                }
                _ => break,
            }
        }
        if aliases > 0 && self.state.alias_depth.get() == 0 {
            *self.state.outer_alias.borrow_mut() = Some((self.path.to_field_path(), self.node.at));
        }
        self.state.alias_depth.set(self.state.alias_depth.get() + aliases);
        let guard = AliasGuard(self.state, aliases);
        self.state.count()?;
        Ok((node, guard))
    }

    fn mismatch<V: Visitor<'a>>(node: &Node, v: &V) -> Error {
        de::Error::invalid_type(unexpected(node), v)
    }
}

macro_rules! integer {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
            let (node, _g) = self.enter()?;
            match node.kind {
                Kind::Int(i) => v.visit_i64(i),
                Kind::Uint(u) => v.visit_u64(u),
                _ => Err(de::Error::invalid_type(unexpected(node), &v)),
            }
        }
    )*};
}

impl<'de, 'a: 'de> de::Deserializer<'de> for De<'a, '_, '_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let (node, _g) = self.enter()?;
        match &node.kind {
            Kind::Null => v.visit_unit(),
            Kind::Bool(b) => v.visit_bool(*b),
            Kind::Int(i) => v.visit_i64(*i),
            Kind::Uint(u) => v.visit_u64(*u),
            Kind::Float(f) if f.is_finite() => v.visit_f64(*f),
            Kind::Float(_) => Err(de::Error::custom("not a finite number (.inf and .nan have no JSON form)")),
            Kind::Str(s) => v.visit_str(s),
            Kind::Seq(items) => v.visit_seq(Items { items, next: 0, path: self.path, state: self.state }),
            Kind::Map(entries) => v.visit_map(Entries { entries, next: 0, path: self.path, state: self.state }),
            Kind::Anchor(_) | Kind::Alias(_) => unreachable!("enter resolves anchors and aliases"),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let (node, _g) = self.enter()?;
        match node.kind {
            Kind::Bool(b) => v.visit_bool(b),
            _ => Err(De::mismatch(node, &v)),
        }
    }

    integer!(deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_u8 deserialize_u16
        deserialize_u32 deserialize_u64 deserialize_i128 deserialize_u128);

    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_f64(v)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let (node, _g) = self.enter()?;
        match node.kind {
            Kind::Int(i) => v.visit_i64(i),
            Kind::Uint(u) => v.visit_u64(u),
            Kind::Float(f) if f.is_finite() => v.visit_f64(f),
            Kind::Float(_) => Err(de::Error::custom("not a finite number")),
            _ => Err(De::mismatch(node, &v)),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let (node, _g) = self.enter()?;
        match &node.kind {
            Kind::Str(s) => v.visit_str(s),
            _ => Err(De::mismatch(node, &v)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let (node, _g) = self.enter()?;
        match node.kind {
            Kind::Null => v.visit_none(),
            _ => v.visit_some(De { node, path: self.path, state: self.state }),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let (node, _g) = self.enter()?;
        match node.kind {
            Kind::Null => v.visit_unit(),
            _ => Err(De::mismatch(node, &v)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, v: V) -> Result<V::Value, Error> {
        self.deserialize_unit(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, v: V) -> Result<V::Value, Error> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let (node, _g) = self.enter()?;
        match &node.kind {
            Kind::Seq(items) => v.visit_seq(Items { items, next: 0, path: self.path, state: self.state }),
            _ => Err(De::mismatch(node, &v)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, Error> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        v: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(v)
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let (node, _g) = self.enter()?;
        match &node.kind {
            Kind::Map(entries) => v.visit_map(Entries { entries, next: 0, path: self.path, state: self.state }),
            _ => Err(De::mismatch(node, &v)),
        }
    }

    /// Only a mapping: a sequence never fills a struct's fields by position.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        let state = self.state;
        state.structs.borrow_mut().push(fields);
        let decoded = self.deserialize_map(v);
        state.structs.borrow_mut().pop();
        decoded
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        let (node, _g) = self.enter()?;
        match &node.kind {
            Kind::Str(s) => v.visit_enum(s.as_ref().into_deserializer()),
            _ => Err(De::mismatch(node, &v)),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    /// A field the type does not have (also when its value is null): noted, not decoded.
    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let known = self.state.structs.borrow().last().copied().unwrap_or_default();
        self.state.unknown.borrow_mut().push(Unknown { path: self.path.to_field_path(), known });
        v.visit_unit()
    }
}

struct Items<'a, 'p, 's> {
    items: &'a [Node],
    next: usize,
    path: &'p Path<'p>,
    state: &'s State,
}

impl<'de, 'a: 'de> SeqAccess<'de> for Items<'a, '_, '_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        let Some(node) = self.items.get(self.next) else { return Ok(None) };
        let path = Path::Index(self.path, self.next);
        self.next += 1;
        seed.deserialize(De { node, path: &path, state: self.state }).map(Some).map_err(|e| e.at(&path, node))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len() - self.next)
    }
}

struct Entries<'a, 'p, 's> {
    entries: &'a [Entry],
    next: usize,
    path: &'p Path<'p>,
    state: &'s State,
}

impl<'de, 'a: 'de> MapAccess<'de> for Entries<'a, '_, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        let Some(entry) = self.entries.get(self.next) else { return Ok(None) };
        let key: &'de str = &entry.key;
        seed.deserialize(de::value::BorrowedStrDeserializer::new(key)).map(Some).map_err(|e: Error| {
            let path = Path::Key(self.path, &entry.key);
            e.at(&path, &Node { kind: Kind::Null, at: entry.key_at })
        })
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let entry = &self.entries[self.next];
        self.next += 1;
        let path = Path::Key(self.path, &entry.key);
        seed.deserialize(De { node: &entry.value, path: &path, state: self.state })
            .map_err(|e| e.at(&path, &entry.value))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len() - self.next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(serde::Deserialize, Debug, Default)]
    #[allow(dead_code)] // read through Debug only
    struct Rule {
        #[serde(default)]
        action: String,
        #[serde(default)]
        destination: Option<Entity>,
    }

    #[derive(serde::Deserialize, Debug, Default)]
    #[allow(dead_code)]
    struct Entity {
        #[serde(default)]
        nets: Option<Vec<String>>,
    }

    fn yaml<T: DeserializeOwned>(text: &str) -> Result<(T, Vec<Unknown>), DecodeError> {
        let doc = &crate::yaml::parse(text).unwrap()[0];
        decode(doc, &State::default())
    }

    #[test]
    fn a_sequence_never_fills_a_struct() {
        let e = yaml::<Rule>("action: Allow\ndestination: []\n").unwrap_err();
        assert_eq!(e.path.to_string(), "destination");
        assert!(e.message.contains("sequence"), "{}", e.message);
        assert_eq!((e.at.line, e.at.column), (2, 14));
    }

    #[test]
    fn only_strings_fill_string_fields() {
        for (text, path, found) in [
            ("app: [db]\n", "app", "sequence"),
            ("app: {x: y}\n", "app", "map"),
            ("version: 1\n", "version", "integer `1`"),
            ("version: 1.0\n", "version", "floating point"),
            ("enabled: yes\n", "enabled", "boolean"),
            ("x: null\n", "x", "unit"),
        ] {
            let e = yaml::<BTreeMap<String, String>>(text).unwrap_err();
            assert_eq!(e.path.to_string(), path, "{text}");
            assert!(e.message.contains(found) && e.message.contains("expected a string"), "{text}: {}", e.message);
        }
        let (m, _) = yaml::<BTreeMap<String, String>>("a: \"1\"\nb: x\n").unwrap();
        assert_eq!(m["a"], "1");
    }

    #[test]
    fn unknown_fields_are_collected_also_when_null() {
        let (_, unknown) =
            yaml::<Rule>("action: Allow\nactoin: Deny\nextra: null\ndestination: {nots: [x]}\n").unwrap();
        let shown: Vec<String> = unknown.iter().map(|u| u.path.to_string()).collect();
        assert_eq!(shown, ["actoin", "extra", "destination.nots"]);
        // Each knows the fields of the struct it sits in.
        assert!(unknown[0].known.contains(&"action"), "{:?}", unknown[0].known);
        assert!(unknown[2].known.contains(&"nets"), "{:?}", unknown[2].known);
    }

    #[test]
    fn alias_expansion_is_bounded_as_go_yaml_bounds_it() {
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let prev = (b'a' + i - 1) as char;
            let this = (b'a' + i) as char;
            bomb += &format!("{this}: &{this} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n");
        }
        let e = yaml::<serde_json::Value>(&bomb).unwrap_err();
        assert!(State::is_alias_error(&e.message), "{}", e.message);
        // A few aliases, as people use them, decode.
        let (v, _) = yaml::<serde_json::Value>("a: &l {app: web}\nb: *l\nc: *l\n").unwrap();
        assert_eq!(v["c"]["app"], "web");
    }
}
