//! A JSON body into a `serde_json::Value`, counting as it goes: deeper than
//! [`MAX_DEPTH`], an object with more than [`MAX_OBJECT_KEYS`] keys or more
//! than `max_nodes` values in all stop the parse at once, before the rest is
//! allocated.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::{Exceeded, MAX_DEPTH, MAX_OBJECT_KEYS};

#[derive(Debug)]
pub enum JsonError {
    /// A limit, and where in the text (line, column) it was hit.
    Limit(Exceeded, usize, usize),
    Syntax(serde_json::Error),
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::Limit(e, line, column) => write!(f, "{e} (line {line} column {column})"),
            JsonError::Syntax(e) => e.fmt(f),
        }
    }
}

/// Parses `text` as one JSON value within the limits.
pub fn parse_json(text: &[u8], max_nodes: usize) -> Result<Value, JsonError> {
    let mut budget = Budget {
        nodes_left: max_nodes,
        max_nodes,
        hit: None,
    };
    let mut de = serde_json::Deserializer::from_slice(text);
    let parsed = Seed {
        budget: &mut budget,
        depth: 0,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    parsed.map_err(|e| match budget.hit.take() {
        Some(hit) => JsonError::Limit(hit, e.line(), e.column()),
        None => JsonError::Syntax(e),
    })
}

struct Budget {
    nodes_left: usize,
    max_nodes: usize,
    /// The limit that stopped the parse; serde_json adds the position.
    hit: Option<Exceeded>,
}

impl Budget {
    fn refuse<E: de::Error>(&mut self, e: Exceeded) -> E {
        let message = e.to_string();
        self.hit = Some(e);
        E::custom(message)
    }

    fn charge<E: de::Error>(&mut self) -> Result<(), E> {
        match self.nodes_left.checked_sub(1) {
            Some(left) => {
                self.nodes_left = left;
                Ok(())
            }
            None => Err(self.refuse(Exceeded::Nodes(self.max_nodes as u64))),
        }
    }
}

/// One value at `depth` (the number of arrays and objects around it).
struct Seed<'b> {
    budget: &'b mut Budget,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl Seed<'_> {
    /// Charges one value; for an array or object, also checks its depth.
    fn enter<E: de::Error>(&mut self, collection: bool) -> Result<(), E> {
        if collection && self.depth >= MAX_DEPTH {
            return Err(self.budget.refuse(Exceeded::Depth));
        }
        self.budget.charge()
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(mut self, v: bool) -> Result<Value, E> {
        self.enter(false)?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(mut self, v: i64) -> Result<Value, E> {
        self.enter(false)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(mut self, v: u64) -> Result<Value, E> {
        self.enter(false)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(mut self, v: f64) -> Result<Value, E> {
        self.enter(false)?;
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<Value, E> {
        self.enter(false)?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(mut self, v: String) -> Result<Value, E> {
        self.enter(false)?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(mut self) -> Result<Value, E> {
        self.enter(false)?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Value, A::Error> {
        self.enter(true)?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Seed {
            budget: &mut *self.budget,
            depth: self.depth + 1,
        })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Value, A::Error> {
        self.enter(true)?;
        let mut out = Map::new();
        let mut keys = 0usize;
        while let Some(key) = map.next_key::<String>()? {
            keys += 1;
            if keys > MAX_OBJECT_KEYS {
                return Err(self.budget.refuse(Exceeded::ObjectKeys));
            }
            self.budget.charge()?;
            let v = map.next_value_seed(Seed {
                budget: &mut *self.budget,
                depth: self.depth + 1,
            })?;
            // A repeated key: the last one wins, as in serde_json and Kong.
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}
