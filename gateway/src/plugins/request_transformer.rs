//! `request-transformer` (Kong 3.x): changes the request before it goes
//! upstream: headers, query string, the upstream path (`replace.uri`), the
//! method (`http_method`), and JSON or form bodies, each by remove, rename,
//! replace, add and append, in that order. Kong's `$(...)` templates are not
//! evaluated: values are sent as written.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Uri};
use serde_json::{json, Map, Value};

use super::transform::{self, Fieldset, Headers};
use super::{Request, RequestState};
use crate::schema::fields::{opt, Fields};

pub const PRIORITY: u32 = 801;

const RECORDS: [&str; 5] = ["remove", "rename", "replace", "add", "append"];

#[derive(Debug)]
pub struct Config {
    method: Option<Method>,
    headers: Headers,
    query: Fieldset,
    uri: Option<Box<str>>,
    body: Option<Arc<Fieldset>>,
}

pub(super) fn parse(f: &mut Fields) -> (Config, Map<String, Value>) {
    let method = f.string("http_method");
    let parsed_method = method.as_deref().and_then(|m| {
        let ok = m.bytes().all(|b| b.is_ascii_uppercase());
        if !ok {
            f.error("http_method", "invalid value: must be uppercase letters");
            return None;
        }
        Method::from_bytes(m.as_bytes()).ok()
    });
    let mut out = Map::new();
    out.insert("http_method".into(), opt(method));
    let mut lists: Vec<Vec<Vec<String>>> = Vec::new();
    let mut uri = None;
    for rec in RECORDS {
        let also: &[&str] = if rec == "replace" { &["uri"] } else { &[] };
        let r = transform::record(f, rec, &["body", "headers", "querystring"], also);
        let (o, l) = (r.out, r.lists);
        if let Some(v) = r.extra.into_iter().flatten().next() {
            match v {
                Value::String(s) if !s.is_empty() => uri = Some(s),
                _ => f.error("replace.uri", "expected a string"),
            }
        }
        out.insert(rec.into(), Value::Object(o));
        lists.push(l);
    }
    let field = |i: usize| transform::column(&lists, i);
    let body = Fieldset::parse(f, "body", field(0));
    let headers = Headers::parse(f, field(1));
    let query = Fieldset::parse(f, "querystring", field(2));
    let config = Config {
        method: parsed_method,
        headers,
        query,
        uri: uri.map(Into::into),
        body: (!body.is_empty()).then(|| Arc::new(body)),
    };
    (config, out)
}

pub(super) fn schema() -> Value {
    let lists = |names: &[&str]| -> Vec<Value> {
        names
            .iter()
            .map(|n| json!({*n: {"type": "array", "default": [], "required": true, "elements": {"type": "string"}}}))
            .collect()
    };
    let mut replace = lists(&["body", "headers", "querystring"]);
    replace.push(json!({"uri": {"type": "string"}}));
    json!([
        {"http_method": {"type": "string"}},
        {"remove": {"type": "record", "required": true, "fields": lists(&["body", "headers", "querystring"])}},
        {"rename": {"type": "record", "required": true, "fields": lists(&["body", "headers", "querystring"])}},
        {"replace": {"type": "record", "required": true, "fields": replace}},
        {"add": {"type": "record", "required": true, "fields": lists(&["body", "headers", "querystring"])}},
        {"append": {"type": "record", "required": true, "fields": lists(&["body", "headers", "querystring"])}},
    ])
}

pub(super) fn access(c: &Config, req: &mut Request<'_>, state: &mut RequestState) {
    c.headers.apply(req.headers);
    if !c.query.is_empty() {
        let current = state.uri.as_deref().unwrap_or(req.uri);
        let mut pairs: Vec<(String, String)> = current
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        c.query.apply_pairs(&mut pairs);
        state.uri = Some(Box::new(with_query(current, &pairs)));
    }
    if let Some(u) = &c.uri {
        state.upstream_path = Some(u.clone());
    }
    if let Some(m) = &c.method {
        state.method = Some(m.clone());
    }
    if let Some(b) = &c.body {
        state.body_changes = Some(b.clone());
    }
}

fn with_query(uri: &Uri, pairs: &[(String, String)]) -> Uri {
    let pq = if pairs.is_empty() {
        uri.path().to_string()
    } else {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            s.append_pair(k, v);
        }
        format!("{}?{}", uri.path(), s.finish())
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = pq.parse().ok();
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

/// What kind of body the changes apply to, from its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Form,
}

pub fn body_kind(headers: &HeaderMap) -> Option<BodyKind> {
    let ct = headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Some(BodyKind::Json)
    } else if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Some(BodyKind::Form)
    } else {
        None
    }
}

/// Reads a JSON or form body whole and changes it, setting its new
/// Content-Length; `Ok(None)` leaves any other body to stream as it is.
pub async fn read_and_change(
    changes: &Fieldset,
    headers: &mut HeaderMap,
    body: &mut hyper::body::Incoming,
    limit: u64,
    timeout: std::time::Duration,
) -> Result<Option<Bytes>, crate::proxy::body::ClientBodyError> {
    let Some(kind) = body_kind(headers) else {
        return Ok(None);
    };
    let read = crate::proxy::body::read_all(body, limit, timeout).await?;
    let changed = transform_body(changes, kind, &read).unwrap_or(read);
    headers.remove(http::header::TRANSFER_ENCODING);
    headers.insert(http::header::CONTENT_LENGTH, changed.len().into());
    Ok(Some(changed))
}

/// Applies body changes; `None` when the body is not what its
/// Content-Type says (Kong then sends it unchanged).
pub fn transform_body(changes: &Fieldset, kind: BodyKind, body: &[u8]) -> Option<Bytes> {
    match kind {
        BodyKind::Json => {
            let mut v: Value = if body.iter().all(u8::is_ascii_whitespace) {
                Value::Object(Map::new())
            } else {
                serde_json::from_slice(body).ok()?
            };
            let Value::Object(o) = &mut v else {
                return None;
            };
            changes.apply_json(o);
            Some(Bytes::from(v.to_string()))
        }
        BodyKind::Form => {
            let mut pairs: Vec<(String, String)> =
                form_urlencoded::parse(body).into_owned().collect();
            changes.apply_pairs(&mut pairs);
            let mut s = form_urlencoded::Serializer::new(String::new());
            for (k, v) in &pairs {
                s.append_pair(k, v);
            }
            Some(Bytes::from(s.finish()))
        }
    }
}
