//! What request-transformer and response-transformer share: Kong's
//! `remove`, `rename`, `replace`, `add` and `append` records of header,
//! query string and JSON body changes, parsed once, and their application in
//! Kong's order (remove, rename, replace, add, append).

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Map, Value};

use crate::schema::fields::Fields;

/// A list that may be given as one string (form bodies, Kong's coercion of
/// a single value to an array).
pub(super) fn list(f: &mut Fields, path: &str, v: Option<Value>) -> Vec<String> {
    match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(a)) => {
            let mut out = Vec::with_capacity(a.len());
            for (i, item) in a.into_iter().enumerate() {
                match item {
                    Value::String(s) => out.push(s),
                    _ => f.error(&format!("{path}[{i}]"), "expected a string"),
                }
            }
            out
        }
        Some(_) => {
            f.error(path, "expected an array");
            Vec::new()
        }
    }
}

/// `name:value` pairs (Kong's `colon_strings`).
pub(super) fn pairs(f: &mut Fields, path: &str, items: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item.split_once(':') {
            Some((k, v)) if !k.is_empty() => out.push((k.to_string(), v.to_string())),
            _ => f.error(
                &format!("{path}[{i}]"),
                format!("invalid value: {item}: expected a name and a value separated by ':'"),
            ),
        }
    }
    out
}

/// One of Kong's records read by [`record`].
pub(super) struct Record {
    /// Kong's output, defaults filled.
    pub out: Map<String, Value>,
    /// The lists, in the order of the fields asked for.
    pub lists: Vec<Vec<String>>,
    /// The other values asked for, in order.
    pub extra: Vec<Option<Value>>,
}

/// One of Kong's records (`remove`, `add`, ...) with the fields `fields`
/// (each an array of strings, default `[]`) and `also` (any value), read
/// from the config record `name`.
pub(super) fn record(f: &mut Fields, name: &str, fields: &[&str], also: &[&str]) -> Record {
    let mut given = f.record(name).unwrap_or_default();
    let mut out = Map::new();
    let mut lists = Vec::with_capacity(fields.len());
    for field in fields {
        let l = list(f, &format!("{name}.{field}"), given.remove(*field));
        out.insert((*field).to_string(), json!(l));
        lists.push(l);
    }
    let mut extra = Vec::with_capacity(also.len());
    for field in also {
        let v = given.remove(*field).filter(|v| !v.is_null());
        out.insert((*field).to_string(), v.clone().unwrap_or(Value::Null));
        extra.push(v);
    }
    for k in given.keys() {
        f.error(&format!("{name}.{k}"), "unknown field");
    }
    Record { out, lists, extra }
}

/// The `i`-th field's list in each of the five records (remove, rename,
/// replace, add, append), as the records were read in that order.
pub(super) fn column(records: &[Vec<Vec<String>>], i: usize) -> [&[String]; 5] {
    std::array::from_fn(|r| records[r][i].as_slice())
}

/// Header changes in Kong's order.
#[derive(Debug, Default)]
pub struct Headers {
    remove: Box<[HeaderName]>,
    rename: Box<[(HeaderName, HeaderName)]>,
    replace: Box<[(HeaderName, HeaderValue)]>,
    add: Box<[(HeaderName, HeaderValue)]>,
    append: Box<[(HeaderName, HeaderValue)]>,
}

fn name(f: &mut Fields, path: &str, n: &str) -> Option<HeaderName> {
    super::header_name(f, path, n)
}

fn value(f: &mut Fields, path: &str, v: &str) -> Option<HeaderValue> {
    let parsed = HeaderValue::from_str(v).ok();
    if parsed.is_none() {
        f.error(path, format!("invalid header value: {v}"));
    }
    parsed
}

impl Headers {
    /// From the `headers` lists of the five records.
    pub(super) fn parse(f: &mut Fields, lists: [&[String]; 5]) -> Headers {
        let [remove, rename, replace, add, append] = lists;
        let named = |f: &mut Fields, rec: &str, items: &[String]| {
            let path = format!("{rec}.headers");
            pairs(f, &path, items)
                .into_iter()
                .filter_map(|(k, v)| Some((name(f, &path, &k)?, value(f, &path, &v)?)))
                .collect::<Box<[_]>>()
        };
        Headers {
            remove: remove
                .iter()
                .filter_map(|n| name(f, "remove.headers", n))
                .collect(),
            rename: pairs(f, "rename.headers", rename)
                .into_iter()
                .filter_map(|(a, b)| {
                    Some((
                        name(f, "rename.headers", &a)?,
                        name(f, "rename.headers", &b)?,
                    ))
                })
                .collect(),
            replace: named(f, "replace", replace),
            add: named(f, "add", add),
            append: named(f, "append", append),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.replace.is_empty()
            && self.add.is_empty()
            && self.append.is_empty()
    }

    pub fn apply(&self, h: &mut HeaderMap) {
        for n in self.remove.iter() {
            h.remove(n);
        }
        for (from, to) in self.rename.iter() {
            let values: Vec<HeaderValue> = h.get_all(from).iter().cloned().collect();
            if values.is_empty() {
                continue;
            }
            h.remove(from);
            for v in values {
                h.append(to, v);
            }
        }
        for (n, v) in self.replace.iter() {
            if h.contains_key(n) {
                h.insert(n, v.clone());
            }
        }
        for (n, v) in self.add.iter() {
            if !h.contains_key(n) {
                h.insert(n, v.clone());
            }
        }
        for (n, v) in self.append.iter() {
            h.append(n, v.clone());
        }
    }
}

/// Key/value changes of a query string or a body (form or JSON), in Kong's
/// order.
#[derive(Debug, Default)]
pub struct Fieldset {
    pub remove: Box<[String]>,
    pub rename: Box<[(String, String)]>,
    pub replace: Box<[(String, String)]>,
    pub add: Box<[(String, String)]>,
    pub append: Box<[(String, String)]>,
    /// response-transformer's `json_types` of replace, add and append, by
    /// position (a value without one is a string).
    pub types: [Box<[JsonType]>; 3],
}

/// Kong's `json_types`: what a JSON value written by a transformer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonType {
    String,
    Number,
    Boolean,
}

impl JsonType {
    pub(super) fn parse(f: &mut Fields, path: &str, items: &[String]) -> Box<[JsonType]> {
        items
            .iter()
            .enumerate()
            .map(|(i, t)| match t.as_str() {
                "string" => JsonType::String,
                "number" => JsonType::Number,
                "boolean" => JsonType::Boolean,
                _ => {
                    f.error(
                        &format!("{path}[{i}]"),
                        "expected one of: boolean, number, string",
                    );
                    JsonType::String
                }
            })
            .collect()
    }

    /// The value as this type; a value that is not one stays a string, as
    /// Kong's cjson would fail it rather than guess.
    fn value(self, v: &str) -> Value {
        match self {
            JsonType::String => Value::String(v.to_string()),
            JsonType::Number => serde_json::from_str::<serde_json::Number>(v)
                .map(Value::Number)
                .unwrap_or_else(|_| Value::String(v.to_string())),
            JsonType::Boolean => match v {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => Value::String(v.to_string()),
            },
        }
    }
}

fn typed(types: &[JsonType], i: usize, v: &str) -> Value {
    types.get(i).copied().unwrap_or(JsonType::String).value(v)
}

impl Fieldset {
    pub(super) fn parse(f: &mut Fields, field: &str, lists: [&[String]; 5]) -> Fieldset {
        let [remove, rename, replace, add, append] = lists;
        Fieldset {
            remove: remove.to_vec().into_boxed_slice(),
            rename: pairs(f, &format!("rename.{field}"), rename).into(),
            replace: pairs(f, &format!("replace.{field}"), replace).into(),
            add: pairs(f, &format!("add.{field}"), add).into(),
            append: pairs(f, &format!("append.{field}"), append).into(),
            types: Default::default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.replace.is_empty()
            && self.add.is_empty()
            && self.append.is_empty()
    }

    /// On ordered pairs (a query string or a form body); `append` adds one
    /// more pair of the name.
    pub fn apply_pairs(&self, pairs: &mut Vec<(String, String)>) {
        pairs.retain(|(k, _)| !self.remove.contains(k));
        for (from, to) in self.rename.iter() {
            for (k, _) in pairs.iter_mut().filter(|(k, _)| k == from) {
                *k = to.clone();
            }
        }
        for (k, v) in self.replace.iter() {
            for (_, old) in pairs.iter_mut().filter(|(n, _)| n == k) {
                *old = v.clone();
            }
        }
        for (k, v) in self.add.iter() {
            if !pairs.iter().any(|(n, _)| n == k) {
                pairs.push((k.clone(), v.clone()));
            }
        }
        for (k, v) in self.append.iter() {
            pairs.push((k.clone(), v.clone()));
        }
    }

    /// On a JSON object's top-level keys; `append` makes an array. Values
    /// are strings unless `json_types` says otherwise.
    pub fn apply_json(&self, o: &mut Map<String, Value>) {
        let [replace_types, add_types, append_types] = &self.types;
        for k in self.remove.iter() {
            o.remove(k);
        }
        for (from, to) in self.rename.iter() {
            if let Some(v) = o.remove(from) {
                o.insert(to.clone(), v);
            }
        }
        for (i, (k, v)) in self.replace.iter().enumerate() {
            if let Some(old) = o.get_mut(k) {
                *old = typed(replace_types, i, v);
            }
        }
        for (i, (k, v)) in self.add.iter().enumerate() {
            o.entry(k.clone()).or_insert_with(|| typed(add_types, i, v));
        }
        for (i, (k, v)) in self.append.iter().enumerate() {
            let slot = o.entry(k.clone()).or_insert(Value::Null);
            let new = typed(append_types, i, v);
            *slot = match slot.take() {
                Value::Null => new,
                Value::Array(mut a) => {
                    a.push(new);
                    Value::Array(a)
                }
                old => Value::Array(vec![old, new]),
            };
        }
    }
}
