//! Kong's `fields` object of a schema violation and its message.

use serde_json::{Map, Value};

/// Field -> message, nested objects for nested fields (`{"config": {"minute":
/// "..."}}`), and `"@entity"`: an array of entity-level messages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldErrors(pub Map<String, Value>);

pub const ENTITY: &str = "@entity";

impl FieldErrors {
    pub fn field(name: &str, message: impl Into<String>) -> Self {
        let mut e = FieldErrors::default();
        e.add(name, message);
        e
    }

    pub fn entity(message: impl Into<String>) -> Self {
        let mut e = FieldErrors::default();
        e.add_entity(message);
        e
    }

    /// Adds a message at a dotted path (`service.id`, `paths[1]`); the first
    /// message for a field wins. An element's message sits at its index in an
    /// array, others null, as Kong does (`{"paths": [null, "..."]}`).
    /// Paths may carry user keys (`headers.<name>`): past
    /// [`MAX_DEPTH`](crate::input_limits::MAX_DEPTH) levels the rest stays one key,
    /// so that a name with a million dots cannot nest the messages a million
    /// deep (walking them recursively would overflow the stack).
    pub fn add(&mut self, path: &str, message: impl Into<String>) {
        let mut map = &mut self.0;
        let mut parts = path.splitn(crate::input_limits::MAX_DEPTH, '.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                match split_index(part) {
                    Some((name, i)) => set_element(map, name, i, message.into()),
                    None => {
                        map.entry(part)
                            .or_insert_with(|| Value::String(message.into()));
                    }
                }
                return;
            }
            let slot = map.entry(part).or_insert_with(|| Value::Object(Map::new()));
            match slot {
                Value::Object(inner) => map = inner,
                // A message already covers the parent field.
                _ => return,
            }
        }
    }

    pub fn add_entity(&mut self, message: impl Into<String>) {
        let slot = self
            .0
            .entry(ENTITY)
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = slot {
            list.push(Value::String(message.into()));
        }
    }

    /// Whether a message is recorded for the top-level field `name`.
    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Flattened `(path, message)` pairs, entity messages first with an empty
    /// path, then fields in order (`config.minute`).
    pub fn entries(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(Value::Array(list)) = self.0.get(ENTITY) {
            for m in list {
                out.push((String::new(), text(m)));
            }
        }
        flatten("", &self.0, &mut out);
        out
    }

    /// "schema violation (host: required field missing)" or
    /// "2 schema violations (host: ...; port: ...)".
    pub fn message(&self) -> String {
        let parts: Vec<String> = self
            .entries()
            .into_iter()
            .map(|(path, m)| match path.is_empty() {
                true => m,
                false => format!("{path}: {m}"),
            })
            .collect();
        match parts.len() {
            1 => format!("schema violation ({})", parts[0]),
            n => format!("{n} schema violations ({})", parts.join("; ")),
        }
    }
}

fn flatten(prefix: &str, map: &Map<String, Value>, out: &mut Vec<(String, String)>) {
    for (k, v) in map {
        if prefix.is_empty() && k == ENTITY {
            continue;
        }
        let path = match prefix {
            "" => k.clone(),
            p => format!("{p}.{k}"),
        };
        match v {
            Value::Object(inner) => flatten(&path, inner, out),
            Value::Array(list) => {
                for (i, m) in list.iter().enumerate().filter(|(_, m)| !m.is_null()) {
                    out.push((format!("{path}[{i}]"), text(m)));
                }
            }
            other => out.push((path, text(other))),
        }
    }
}

/// `paths[1]` -> ("paths", 1).
fn split_index(part: &str) -> Option<(&str, usize)> {
    let (name, rest) = part.split_once('[')?;
    let i = rest.strip_suffix(']')?.parse().ok()?;
    // Field names can come from user input: no huge arrays.
    (i <= 65_536).then_some((name, i))
}

fn set_element(map: &mut Map<String, Value>, name: &str, i: usize, message: String) {
    let slot = map.entry(name).or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(list) = slot {
        if list.len() <= i {
            list.resize(i + 1, Value::Null);
        }
        if list[i].is_null() {
            list[i] = Value::String(message);
        }
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(list) => list.iter().map(text).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

impl std::fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for FieldErrors {}
