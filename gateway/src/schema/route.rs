//! Routes. A route that validates also compiles, so that a bad one can never
//! reach the store and break every node's router.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::fields::{check_name, opt, Fields};
use super::net::parse_protocol;
use crate::model;
use crate::router::Router;

const REDIRECT_CODES: [i64; 5] = [426, 301, 302, 307, 308];

pub(super) const MUST_SET_ONE: &str =
    "must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'https' or 'http'";

pub(super) fn validate(f: &mut Fields) -> Map<String, Value> {
    let mut out = Map::new();
    let name = f.string("name");
    if let Some(n) = &name {
        check_name(f, "name", n);
    }
    out.insert("name".into(), opt(name));
    let protocols = match f.strings("protocols") {
        None if f.has_error("protocols") => vec![],
        None => vec!["http".to_string(), "https".to_string()],
        Some(list) if list.is_empty() => {
            f.error("protocols", "length must be at least 1");
            list
        }
        Some(list) => {
            if let Some(m) = list.iter().find_map(|p| parse_protocol(p).err()) {
                f.error("protocols", m);
            }
            dedup(list)
        }
    };
    out.insert("protocols".into(), protocols.into());
    for k in ["methods", "hosts", "paths"] {
        let v = f.strings(k);
        out.insert(k.into(), opt(v));
    }
    out.insert("headers".into(), headers(f));
    let code = f.integer("https_redirect_status_code", 0, 999, 426);
    if !REDIRECT_CODES.contains(&code) {
        f.error(
            "https_redirect_status_code",
            "expected one of: 426, 301, 302, 307, 308",
        );
    }
    out.insert("https_redirect_status_code".into(), code.into());
    let prio = f.integer("regex_priority", i64::MIN, i64::MAX, 0);
    out.insert("regex_priority".into(), prio.into());
    out.insert("strip_path".into(), f.boolean("strip_path", true).into());
    let handling = match f.take("path_handling") {
        None => "v0".to_string(),
        Some(Value::String(s)) if s == "v0" || s == "v1" => s,
        Some(_) => {
            f.error("path_handling", "expected one of: v0, v1");
            "v0".into()
        }
    };
    out.insert("path_handling".into(), handling.into());
    out.insert(
        "preserve_host".into(),
        f.boolean("preserve_host", false).into(),
    );
    for k in ["request_buffering", "response_buffering"] {
        out.insert(k.into(), f.boolean(k, true).into());
    }
    for k in ["snis", "sources", "destinations"] {
        out.insert(k.into(), f.unsupported(k, Value::Null));
    }
    out.insert("tags".into(), f.tags());
    out.insert("service".into(), f.foreign("service", false));

    let empty = |k: &str| match out.get(k) {
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        _ => true,
    };
    let fields = ["methods", "hosts", "headers", "paths"];
    if fields.iter().all(|k| empty(k) && !f.has_error(k)) {
        f.entity_error(MUST_SET_ONE);
    }
    if f.errors.is_empty() {
        compile(f, &out);
    }
    out
}

/// Keeps the first of each, in order (a set: a body may hold 100 000).
fn dedup(list: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::with_capacity(list.len());
    list.into_iter()
        .filter(|s| seen.insert(s.clone()))
        .collect()
}

/// Header name -> values; a single string is a one-value list. Names are
/// lower-cased, as HTTP header names are case-insensitive.
fn headers(f: &mut Fields) -> Value {
    let Some(map) = f.record("headers") else {
        if f.has_error("headers") {
            f.errors.0.insert("headers".into(), "expected a map".into());
        }
        return Value::Null;
    };
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, v) in map {
        let values = match v {
            Value::String(s) => vec![s],
            Value::Array(list) => {
                let strings: Option<Vec<String>> = list
                    .into_iter()
                    .map(|v| match v {
                        Value::String(s) => Some(s),
                        _ => None,
                    })
                    .collect();
                match strings {
                    Some(s) => s,
                    None => {
                        f.error(&format!("headers.{name}"), "expected a string");
                        continue;
                    }
                }
            }
            _ => {
                f.error(&format!("headers.{name}"), "expected an array");
                continue;
            }
        };
        out.entry(name.to_ascii_lowercase())
            .or_default()
            .extend(values);
    }
    serde_json::to_value(out).unwrap_or(Value::Null)
}

/// Builds the model route and compiles it alone; router errors land on their
/// field (`paths[1]`, `headers.x-a[0]`).
fn compile(f: &mut Fields, out: &Map<String, Value>) {
    let mut v = out.clone();
    v.insert("id".into(), uuid::Uuid::nil().to_string().into());
    v.insert("created_at".into(), 0.into());
    v.insert("updated_at".into(), 0.into());
    let route: model::Route = match serde_json::from_value(Value::Object(v)) {
        Ok(r) => r,
        Err(e) => {
            f.entity_error(format!("invalid route: {e}"));
            return;
        }
    };
    if let Err(e) = Router::build(std::slice::from_ref(&route)) {
        if e.field == "@entity" {
            f.entity_error(e.message);
        } else {
            f.error(&e.field, e.message);
        }
    }
}
