//! `response-transformer` (Kong 3.x): changes the response on its way to the
//! client: headers (in the header filter), and the top-level keys of a JSON
//! body (`json`, with `json_types`), by remove, rename, replace, add and
//! append, in that order. A JSON body is read whole to be changed; any other
//! body streams untouched.

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;
use serde_json::{json, Map, Value};

use super::transform::{self, Fieldset, Headers, JsonType};
use super::RequestState;
use crate::schema::fields::Fields;

pub const PRIORITY: u32 = 800;

const RECORDS: [&str; 5] = ["remove", "rename", "replace", "add", "append"];

#[derive(Debug)]
pub struct Config {
    headers: Headers,
    json: Option<Arc<Fieldset>>,
}

pub(super) fn parse(f: &mut Fields) -> (Config, Map<String, Value>) {
    let mut out = Map::new();
    let mut lists: Vec<Vec<Vec<String>>> = Vec::new();
    for rec in RECORDS {
        // json_types only where values are written.
        let fields: &[&str] = match rec {
            "remove" | "rename" => &["json", "headers"],
            _ => &["json", "json_types", "headers"],
        };
        let r = transform::record(f, rec, fields, &[]);
        let (o, mut l) = (r.out, r.lists);
        if l.len() == 2 {
            l.insert(1, Vec::new());
        }
        out.insert(rec.into(), Value::Object(o));
        lists.push(l);
    }
    let field = |i: usize| transform::column(&lists, i);
    let mut json = Fieldset::parse(f, "json", field(0));
    json.types = [
        JsonType::parse(f, "replace.json_types", &lists[2][1]),
        JsonType::parse(f, "add.json_types", &lists[3][1]),
        JsonType::parse(f, "append.json_types", &lists[4][1]),
    ];
    let headers = Headers::parse(f, field(2));
    let config = Config {
        headers,
        json: (!json.is_empty()).then(|| Arc::new(json)),
    };
    (config, out)
}

pub(super) fn schema() -> Value {
    let strings =
        json!({"type": "array", "default": [], "required": true, "elements": {"type": "string"}});
    let types = json!({"type": "array", "default": [], "required": true,
        "elements": {"type": "string", "one_of": ["boolean", "number", "string"]}});
    let plain = json!([{"json": strings}, {"headers": strings}]);
    let written = json!([{"json": strings}, {"json_types": types}, {"headers": strings}]);
    json!([
        {"remove": {"type": "record", "required": true, "fields": plain}},
        {"rename": {"type": "record", "required": true, "fields": plain}},
        {"replace": {"type": "record", "required": true, "fields": written}},
        {"add": {"type": "record", "required": true, "fields": written}},
        {"append": {"type": "record", "required": true, "fields": written}},
    ])
}

pub(super) fn access(c: &Config, state: &mut RequestState) {
    if let Some(j) = &c.json {
        state.response_json = Some(j.clone());
    }
}

pub(super) fn header_filter(c: &Config, headers: &mut HeaderMap) {
    c.headers.apply(headers);
}

/// Whether a response's Content-Type is JSON (Kong's `is_json_body`).
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        })
}

/// The changed body, or `None` when it is not a JSON object (sent as it
/// came, as Kong does when it cannot decode it).
pub fn change(changes: &Fieldset, body: &[u8]) -> Option<Bytes> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let Value::Object(o) = &mut v else {
        return None;
    };
    changes.apply_json(o);
    Some(Bytes::from(v.to_string()))
}
