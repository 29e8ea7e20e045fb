//! `proxy-cache` (Kong 3.x, `strategy = memory`): answers a repeated
//! cacheable request from the node's memory. The access phase looks the
//! request up: a fresh entry is the answer (`X-Cache-Status: Hit`, with
//! `Age`); otherwise the request goes upstream (`Miss`, or `Refresh` when the
//! client's `Cache-Control` asks past the entry) and a cacheable response is
//! kept as it streams to the client, once it has ended whole. A request or
//! response the configuration does not cache is `Bypass`.
//!
//! The cache key is Kong's recipe (route or consumer, method, path, query
//! arguments, `vary_*`) hashed with SHA-256, shown as its first 32 hex digits
//! (Kong uses MD5; the key is opaque either way).

pub mod store;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{AGE, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{Request, RequestState};
use crate::proxy::body::{Observer, ProxyBody};
use crate::schema::fields::{opt, Fields};

pub const PRIORITY: u32 = 100;

static X_CACHE_STATUS: HeaderName = HeaderName::from_static("x-cache-status");
static X_CACHE_KEY: HeaderName = HeaderName::from_static("x-cache-key");

#[derive(Debug)]
pub struct Config {
    response_code: Box<[u16]>,
    request_method: Box<[Method]>,
    content_type: Box<[MediaType]>,
    cache_ttl: Duration,
    storage_ttl: Option<Duration>,
    cache_control: bool,
    ignore_uri_case: bool,
    vary_query_params: Option<Box<[String]>>,
    vary_headers: Option<Box<[HeaderName]>>,
    send_age: bool,
    send_status: bool,
    send_key: bool,
}

/// A media type from the config: `type/subtype` (either may be `*`) and
/// parameters that must match.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MediaType {
    kind: String,
    sub: String,
    params: Vec<(String, String)>,
}

fn media_type(s: &str) -> Option<MediaType> {
    let mut parts = s.split(';');
    let essence = parts.next()?.trim().to_ascii_lowercase();
    let (kind, sub) = essence.split_once('/')?;
    if kind.is_empty() || sub.is_empty() {
        return None;
    }
    let params = parts
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((
                k.trim().to_ascii_lowercase(),
                v.trim().trim_matches('"').to_ascii_lowercase(),
            ))
        })
        .collect();
    Some(MediaType {
        kind: kind.to_string(),
        sub: sub.to_string(),
        params,
    })
}

impl MediaType {
    /// Whether a response's Content-Type is this one: type and subtype equal
    /// (or `*`), and every parameter given here present there.
    fn matches(&self, response: &MediaType) -> bool {
        (self.kind == "*" || self.kind == response.kind)
            && (self.sub == "*" || self.sub == response.sub)
            && self.params.iter().all(|p| response.params.contains(p))
    }
}

fn list(f: &mut Fields, name: &str, default: &[&str]) -> Vec<String> {
    match f.take(name) {
        None => default.iter().map(|s| s.to_string()).collect(),
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(a)) => {
            let mut out = Vec::new();
            for (i, v) in a.into_iter().enumerate() {
                match v {
                    Value::String(s) => out.push(s),
                    Value::Number(n) => out.push(n.to_string()),
                    _ => f.error(&format!("{name}[{i}]"), "expected a string"),
                }
            }
            out
        }
        Some(Value::Number(n)) => vec![n.to_string()],
        Some(_) => {
            f.error(name, "expected an array");
            Vec::new()
        }
    }
}

fn seconds(f: &mut Fields, name: &str, default: Option<i64>) -> Option<i64> {
    match f.take(name) {
        None => default,
        Some(v) => match v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        {
            Some(n) if n > 0 => Some(n),
            _ => {
                f.error(name, "value must be greater than 0");
                default
            }
        },
    }
}

pub(super) fn parse(f: &mut Fields) -> (Config, Map<String, Value>) {
    let codes = list(f, "response_code", &["200", "301", "404"]);
    let mut response_code = Vec::new();
    for (i, c) in codes.iter().enumerate() {
        match c.parse::<u16>() {
            Ok(n) if (100..=900).contains(&n) => response_code.push(n),
            _ => f.error(
                &format!("response_code[{i}]"),
                "value should be between 100 and 900",
            ),
        }
    }
    let methods = list(f, "request_method", &["GET", "HEAD"]);
    let mut request_method = Vec::new();
    for (i, m) in methods.iter().enumerate() {
        match m.as_str() {
            "GET" | "HEAD" | "POST" | "PATCH" | "PUT" => {
                request_method.push(Method::from_bytes(m.as_bytes()).expect("a known method"))
            }
            _ => f.error(
                &format!("request_method[{i}]"),
                "expected one of: HEAD, GET, POST, PATCH, PUT",
            ),
        }
    }
    let types = list(f, "content_type", &["text/plain", "application/json"]);
    let mut content_type = Vec::new();
    for (i, t) in types.iter().enumerate() {
        match media_type(t) {
            Some(m) => content_type.push(m),
            None => f.error(&format!("content_type[{i}]"), "invalid value"),
        }
    }
    let cache_ttl = seconds(f, "cache_ttl", Some(300)).unwrap_or(300);
    let strategy = f.take("strategy");
    match strategy.as_ref().and_then(Value::as_str) {
        Some("memory") => {}
        None if strategy.is_none() => f.error("strategy", "required field missing"),
        // Kong OSS bundles only the memory strategy.
        _ => f.error("strategy", "expected one of: memory"),
    }
    let cache_control = f.boolean("cache_control", false);
    let ignore_uri_case = f.boolean("ignore_uri_case", false);
    let storage_ttl = seconds(f, "storage_ttl", None);
    let memory = f.record("memory").unwrap_or_default();
    let dictionary = memory
        .get("dictionary_name")
        .and_then(Value::as_str)
        .unwrap_or("kong_db_cache")
        .to_string();
    for k in memory.keys().filter(|k| *k != "dictionary_name") {
        f.error(&format!("memory.{k}"), "unknown field");
    }
    let vary_query_params = f.take("vary_query_params").map(|v| match v {
        Value::String(s) => vec![s],
        v => serde_json::from_value::<Vec<String>>(v).unwrap_or_default(),
    });
    let vary_headers_given = f.take("vary_headers").map(|v| match v {
        Value::String(s) => vec![s],
        v => serde_json::from_value::<Vec<String>>(v).unwrap_or_default(),
    });
    let vary_headers = vary_headers_given.as_ref().map(|list| {
        list.iter()
            .filter_map(|h| super::header_name(f, "vary_headers", &h.to_ascii_lowercase()))
            .collect::<Box<[_]>>()
    });
    let mut rh = f.record("response_headers").unwrap_or_default();
    let mut flag = |name: &str| match rh.remove(name) {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => b,
        Some(_) => {
            f.error(&format!("response_headers.{name}"), "expected a boolean");
            true
        }
    };
    let send_age = flag("age");
    let send_status = flag("X-Cache-Status");
    let send_key = flag("X-Cache-Key");
    for k in rh.keys() {
        f.error(&format!("response_headers.{k}"), "unknown field");
    }
    let mut out = Map::new();
    out.insert("response_code".into(), json!(response_code));
    out.insert("request_method".into(), json!(methods));
    out.insert("content_type".into(), json!(types));
    out.insert("cache_ttl".into(), cache_ttl.into());
    out.insert("strategy".into(), "memory".into());
    out.insert("cache_control".into(), cache_control.into());
    out.insert("ignore_uri_case".into(), ignore_uri_case.into());
    out.insert("storage_ttl".into(), opt(storage_ttl));
    out.insert("memory".into(), json!({"dictionary_name": dictionary}));
    out.insert(
        "vary_query_params".into(),
        opt(vary_query_params.clone().map(Value::from)),
    );
    out.insert(
        "vary_headers".into(),
        opt(vary_headers_given.map(Value::from)),
    );
    out.insert(
        "response_headers".into(),
        json!({"age": send_age, "X-Cache-Status": send_status, "X-Cache-Key": send_key}),
    );
    let config = Config {
        response_code: response_code.into(),
        request_method: request_method.into(),
        content_type: content_type.into(),
        cache_ttl: Duration::from_secs(cache_ttl as u64),
        storage_ttl: storage_ttl.map(|s| Duration::from_secs(s as u64)),
        cache_control,
        ignore_uri_case,
        vary_query_params: vary_query_params.map(Into::into),
        vary_headers,
        send_age,
        send_status,
        send_key,
    };
    (config, out)
}

pub(super) fn schema() -> Value {
    json!([
        {"response_code": {"type": "array", "default": [200, 301, 404], "required": true, "len_min": 1,
            "elements": {"type": "integer", "between": [100, 900]}}},
        {"request_method": {"type": "array", "default": ["GET", "HEAD"], "required": true,
            "elements": {"type": "string", "one_of": ["HEAD", "GET", "POST", "PATCH", "PUT"]}}},
        {"content_type": {"type": "array", "default": ["text/plain", "application/json"], "required": true,
            "elements": {"type": "string"}}},
        {"cache_ttl": {"type": "integer", "default": 300, "gt": 0}},
        {"strategy": {"type": "string", "required": true, "one_of": ["memory"]}},
        {"cache_control": {"type": "boolean", "default": false, "required": true}},
        {"ignore_uri_case": {"type": "boolean", "default": false, "required": false}},
        {"storage_ttl": {"type": "integer"}},
        {"memory": {"type": "record", "required": true, "fields": [
            {"dictionary_name": {"type": "string", "required": true, "default": "kong_db_cache"}}]}},
        {"vary_query_params": {"type": "array", "elements": {"type": "string"}}},
        {"vary_headers": {"type": "array", "elements": {"type": "string"}}},
        {"response_headers": {"type": "record", "required": true, "fields": [
            {"age": {"type": "boolean", "default": true}},
            {"X-Cache-Status": {"type": "boolean", "default": true}},
            {"X-Cache-Key": {"type": "boolean", "default": true}}]}},
    ])
}

/// What the access phase decided, for the header filter and the proxy.
#[derive(Debug)]
pub struct Pending {
    plugin: Uuid,
    key: Arc<str>,
    status: &'static str,
    /// Store the response if it turns out cacheable (Miss, Refresh).
    store: bool,
}

/// The `Cache-Control` directives that matter here.
#[derive(Default)]
struct Directives {
    no_store: bool,
    no_cache: bool,
    private: bool,
    max_age: Option<u64>,
    s_maxage: Option<u64>,
}

fn directives(h: &HeaderMap) -> Directives {
    let mut d = Directives::default();
    for v in h.get_all(CACHE_CONTROL) {
        let Ok(v) = v.to_str() else { continue };
        for part in v.split(',') {
            let part = part.trim().to_ascii_lowercase();
            let (name, value) = match part.split_once('=') {
                Some((n, v)) => (
                    n.trim().to_string(),
                    Some(v.trim().trim_matches('"').to_string()),
                ),
                None => (part.clone(), None),
            };
            let n = value.and_then(|v| v.parse().ok());
            match name.as_str() {
                "no-store" => d.no_store = true,
                "no-cache" => d.no_cache = true,
                "private" => d.private = true,
                "max-age" => d.max_age = n,
                "s-maxage" => d.s_maxage = n,
                _ => {}
            }
        }
    }
    d
}

/// Kong's key recipe, hashed.
fn cache_key(c: &Config, req: &Request<'_>, consumer: Option<Uuid>) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let prefix = consumer.unwrap_or(req.route);
    ctx.update(prefix.as_bytes());
    ctx.update(b"|");
    ctx.update(req.method.as_str().as_bytes());
    ctx.update(b"|");
    let path = req.uri.path();
    if c.ignore_uri_case {
        ctx.update(path.to_ascii_lowercase().as_bytes());
    } else {
        ctx.update(path.as_bytes());
    }
    ctx.update(b"|");
    let mut args: Vec<(String, String)> = req
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    if let Some(keep) = &c.vary_query_params {
        args.retain(|(k, _)| keep.contains(k));
    }
    args.sort();
    for (k, v) in &args {
        ctx.update(k.as_bytes());
        ctx.update(b"=");
        ctx.update(v.as_bytes());
        ctx.update(b"&");
    }
    ctx.update(b"|");
    if let Some(headers) = &c.vary_headers {
        let mut sorted: Vec<&HeaderName> = headers.iter().collect();
        sorted.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        for h in sorted {
            ctx.update(h.as_str().as_bytes());
            ctx.update(b"=");
            for v in req.headers.get_all(h) {
                ctx.update(v.as_bytes());
                ctx.update(b",");
            }
            ctx.update(b"&");
        }
    }
    let digest = ctx.finish();
    digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(super) fn access(
    c: &Config,
    plugin: Uuid,
    req: &mut Request<'_>,
    state: &mut RequestState,
) -> Option<Response<ProxyBody>> {
    let key: Arc<str> = cache_key(c, req, state.consumer).into();
    let bypass = |state: &mut RequestState, key: Arc<str>| {
        state.proxy_cache = Some(Pending {
            plugin,
            key,
            status: "Bypass",
            store: false,
        });
        None
    };
    if !c.request_method.contains(req.method) {
        return bypass(state, key);
    }
    let request = directives(req.headers);
    // Kong: with cache_control, a client saying no-store or no-cache, or
    // sending credentials, is not served from (nor stored to) the cache.
    if c.cache_control
        && (request.no_store
            || request.no_cache
            || req.headers.contains_key(http::header::AUTHORIZATION))
    {
        return bypass(state, key);
    }
    let mut status = "Miss";
    if let Some(entry) = store::STORE.get(plugin, &key) {
        // The client may ask for a younger answer than the entry is.
        let too_old = c.cache_control && request.max_age.is_some_and(|m| entry.age().as_secs() > m);
        if entry.is_fresh() && !too_old {
            return Some(hit(c, &entry, &key));
        }
        if too_old {
            status = "Refresh";
        }
    }
    state.proxy_cache = Some(Pending {
        plugin,
        key,
        status,
        store: true,
    });
    None
}

fn hit(c: &Config, entry: &store::Entry, key: &str) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::full(entry.body.clone()));
    *r.status_mut() = entry.status;
    *r.headers_mut() = entry.headers.clone();
    let h = r.headers_mut();
    if c.send_age {
        h.insert(AGE, entry.age().as_secs().into());
    }
    if c.send_status {
        h.insert(&X_CACHE_STATUS, HeaderValue::from_static("Hit"));
    }
    if c.send_key {
        if let Ok(v) = HeaderValue::from_str(key) {
            h.insert(&X_CACHE_KEY, v);
        }
    }
    r
}

pub(super) fn header_filter(c: &Config, state: &RequestState, headers: &mut HeaderMap) {
    let Some(p) = &state.proxy_cache else {
        return;
    };
    if c.send_status && !headers.contains_key(&X_CACHE_STATUS) {
        headers.insert(&X_CACHE_STATUS, HeaderValue::from_static(p.status));
    }
    if c.send_key && !headers.contains_key(&X_CACHE_KEY) {
        if let Ok(v) = HeaderValue::from_str(&p.key) {
            headers.insert(&X_CACHE_KEY, v);
        }
    }
}

/// After the upstream answered and the header filters ran: a cacheable
/// response is kept as it streams (its X-Cache-Status stays Miss or
/// Refresh); one that is not becomes Bypass.
pub fn on_response(
    c: &Config,
    state: &mut RequestState,
    mut resp: Response<ProxyBody>,
) -> Response<ProxyBody> {
    let Some(p) = state.proxy_cache.as_mut() else {
        return resp;
    };
    if !p.store {
        return resp;
    }
    let Some(ttl) = cacheable(c, resp.status(), resp.headers()) else {
        p.status = "Bypass";
        if c.send_status {
            resp.headers_mut()
                .insert(&X_CACHE_STATUS, HeaderValue::from_static("Bypass"));
        }
        return resp;
    };
    let declared = hyper::body::Body::size_hint(resp.body()).upper();
    if declared.is_some_and(|n| n > store::MAX_BODY as u64) {
        return resp;
    }
    let keep = c.storage_ttl.unwrap_or(ttl);
    let (parts, body) = resp.into_parts();
    let mut headers = owned_copy(&parts.headers);
    // What a hit must not repeat: the connection's, the request's own, and
    // what a hit sets anew.
    for h in [
        http::header::CONNECTION,
        http::header::TRANSFER_ENCODING,
        http::header::DATE,
        AGE,
        HeaderName::from_static("x-kong-request-id"),
        X_CACHE_STATUS.clone(),
        X_CACHE_KEY.clone(),
    ] {
        headers.remove(h);
    }
    let tee = Tee {
        plugin: p.plugin,
        key: p.key.clone(),
        status: parts.status,
        headers,
        ttl,
        keep,
        buf: BytesMut::new(),
        too_big: false,
        stored: false,
    };
    Response::from_parts(parts, body.observed(Box::new(tee)))
}

/// Headers with values of their own, for an entry that may be kept for
/// hours: a response's values are slices of the upstream connection's read
/// buffer (and rate-limiting's of a buffer shared by many values), which the
/// entry would otherwise keep whole, unseen by the cache's size.
fn owned_copy(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let mut copy = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        out.append(name.clone(), copy);
    }
    out
}

/// The response's time to live, if it may be stored.
fn cacheable(c: &Config, status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    if !c.response_code.contains(&status.as_u16()) {
        return None;
    }
    let ct = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(media_type)?;
    if !c.content_type.iter().any(|m| m.matches(&ct)) {
        return None;
    }
    if !c.cache_control {
        return Some(c.cache_ttl);
    }
    // Kong's resource_ttl: without s-maxage or max-age the response says
    // nothing of how long it stays fresh, and is not kept. (`Expires` is
    // not read here.)
    let d = directives(headers);
    if d.no_store || d.no_cache || d.private {
        return None;
    }
    match d.s_maxage.or(d.max_age) {
        Some(0) | None => None,
        Some(s) => Some(Duration::from_secs(s)),
    }
}

/// Keeps a copy of a response as it goes to the client; stores it once the
/// body has ended whole.
struct Tee {
    plugin: Uuid,
    key: Arc<str>,
    status: StatusCode,
    headers: HeaderMap,
    ttl: Duration,
    keep: Duration,
    buf: BytesMut,
    too_big: bool,
    stored: bool,
}

impl Observer for Tee {
    fn sent(&mut self, _bytes: usize) {}

    fn data(&mut self, d: &Bytes) {
        if self.too_big {
            return;
        }
        if self.buf.len() + d.len() > store::MAX_BODY {
            self.too_big = true;
            self.buf = BytesMut::new();
            return;
        }
        self.buf.extend_from_slice(d);
    }

    fn finished(&mut self) {
        if self.too_big || self.stored {
            return;
        }
        self.stored = true;
        let body = std::mem::take(&mut self.buf).freeze();
        let entry = store::Entry::new(
            self.status,
            std::mem::take(&mut self.headers),
            body,
            self.ttl,
            self.keep,
        );
        store::STORE.put(self.plugin, &self.key, entry);
    }
}

/// Kong's Admin API view of an entry.
pub fn entry_json(plugin: Uuid, key: &str, e: &store::Entry) -> Value {
    let headers: Map<String, Value> = e
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            )
        })
        .collect();
    json!({
        "plugin_id": plugin,
        "cache_key": key,
        "status": e.status.as_u16(),
        "headers": headers,
        "body_len": e.body.len(),
        "timestamp": e.timestamp,
        "ttl": e.ttl.as_secs(),
        "age": e.age().as_secs(),
        "version": 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_headers_are_copies_with_every_value_in_order() {
        let buffer = bytes::Bytes::from_static(b"text/plain;a=1;b=2");
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_maybe_shared(buffer.slice(0..10)).unwrap(),
        );
        h.append("x-many", HeaderValue::from_static("one"));
        h.append("x-many", HeaderValue::from_static("two"));
        let mut secret = HeaderValue::from_static("s");
        secret.set_sensitive(true);
        h.insert("x-secret", secret);
        let copy = owned_copy(&h);
        assert_eq!(copy, h);
        assert_ne!(copy[CONTENT_TYPE].as_bytes().as_ptr(), buffer.as_ptr());
        let many: Vec<_> = copy.get_all("x-many").iter().collect();
        assert_eq!(many, ["one", "two"]);
        assert!(copy["x-secret"].is_sensitive());
    }

    #[test]
    fn content_types_match_as_kong() {
        let m = |c: &str, r: &str| media_type(c).unwrap().matches(&media_type(r).unwrap());
        assert!(m("application/json", "application/json"));
        assert!(m("application/json", "application/json; charset=utf-8"));
        assert!(!m("application/json; charset=utf-8", "application/json"));
        assert!(m(
            "application/json; charset=utf-8",
            "Application/JSON; Charset=UTF-8"
        ));
        assert!(m("*/*", "image/png"));
        assert!(m("text/*", "text/html"));
        assert!(!m("text/plain", "text/html"));
    }

    #[test]
    fn cache_control_decides_when_asked_to() {
        let mut f = Fields::new(
            json!({"strategy": "memory", "cache_control": true})
                .as_object()
                .unwrap()
                .clone(),
        );
        let (c, _) = parse(&mut f);
        assert!(f.finish().is_empty());
        let h = |cc: &str| {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            if !cc.is_empty() {
                h.insert(CACHE_CONTROL, HeaderValue::from_str(cc).unwrap());
            }
            h
        };
        assert_eq!(
            cacheable(&c, StatusCode::OK, &h("")),
            None,
            "without max-age a response is not kept"
        );
        assert_eq!(
            cacheable(&c, StatusCode::OK, &h("max-age=7")),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            cacheable(&c, StatusCode::OK, &h("max-age=7, s-maxage=9")),
            Some(Duration::from_secs(9))
        );
        assert_eq!(cacheable(&c, StatusCode::OK, &h("private")), None);
        assert_eq!(cacheable(&c, StatusCode::OK, &h("no-store")), None);
        assert_eq!(cacheable(&c, StatusCode::CREATED, &h("")), None);
    }
}
