//! The log phase: what a request leaves behind for the plugins that run after
//! its response has gone (prometheus, http-log, file-log), and Kong's log
//! serializer. A request of a route whose chain has such a plugin carries a
//! [`Pending`] on its response body; when the body ends, fails, or is dropped
//! because the client went away, the `Drop` of `Pending` runs the phase.
//! Nothing in it waits: counters are atomics and log entries go to bounded
//! queues that background tasks empty.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, Method, Uri};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::proxy::body::Observer;
use crate::snapshot::Snapshot;

/// Where a response came from (Kong's `kong.response.get_source()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The upstream answered.
    Service,
    /// A plugin or the gateway answered (a 401, a 429, no route...).
    Kong,
    /// The upstream could not be reached or failed (502, 504).
    Error,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Service => "service",
            Source::Kong => "kong",
            Source::Error => "error",
        }
    }
}

/// One request on its way to the log phase.
pub struct Pending {
    /// Keeps the route's chain (and its plugins' state) alive.
    pub snapshot: Arc<Snapshot>,
    pub route_index: usize,
    pub started: Instant,
    /// Unix time in milliseconds (Kong's `started_at`).
    pub started_at: u64,
    pub client: IpAddr,
    pub consumer: Option<Uuid>,
    pub method: Method,
    pub uri: Uri,
    /// Only when a plugin logs them (http-log, file-log).
    pub request_headers: Option<HeaderMap>,
    pub response_headers: Option<HeaderMap>,
    pub request_size: u64,
    pub status: u16,
    pub source: Source,
    /// From the start to the upstream's response head, when it answered.
    pub upstream_latency_ms: Option<u64>,
    /// Time spent in the gateway before the upstream was asked.
    pub kong_latency_ms: u64,
    pub upstream_uri: Option<String>,
    /// Response body bytes sent so far.
    pub sent: u64,
    /// Response head bytes (estimated as written).
    pub head_size: u64,
}

impl Pending {
    pub fn now_ms() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    /// Total time from the request's arrival to now, in milliseconds.
    pub fn request_latency_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Kong's log serializer (`kong.log.serialize()`), in its 3.x shape, as
    /// a JSON value (http-log batches them).
    pub fn serialize(&self) -> Value {
        serde_json::to_value(self.entry()).unwrap_or(Value::Null)
    }

    /// The same entry as one line of JSON (file-log), written straight from
    /// the record: no value tree in between.
    pub fn serialize_line(&self) -> Vec<u8> {
        let mut line = Vec::with_capacity(1024);
        // Writing to a Vec fails only on a Serialize error, which these
        // types do not have; an entry cut short is then dropped by the caller.
        if serde_json::to_writer(&mut line, &self.entry()).is_err() {
            line.clear();
        }
        line
    }

    fn entry(&self) -> Entry<'_> {
        let route_entry = self.snapshot.routes.get(self.route_index);
        let entities = &self.snapshot.entities;
        let route = route_entry.and_then(|r| entities.routes.get(r.entity));
        let service = route_entry
            .and_then(|r| r.service_entity)
            .and_then(|i| entities.services.get(i));
        let consumer = self
            .consumer
            .and_then(|c| entities.consumers.iter().find(|e| e.id == c));
        let querystring = self
            .uri
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).collect())
            .unwrap_or_default();
        let host = self
            .request_headers
            .as_ref()
            .and_then(|h| h.get(http::header::HOST))
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let uri = self.uri.path_and_query().map_or("/", |p| p.as_str());
        Entry {
            client_ip: self.client,
            consumer,
            latencies: Latencies {
                kong: self.kong_latency_ms,
                proxy: self.upstream_latency_ms.unwrap_or(0),
                request: self.request_latency_ms(),
            },
            request: RequestPart {
                headers: Headers(self.request_headers.as_ref()),
                method: self.method.as_str(),
                querystring,
                size: self.request_size,
                uri,
                url: format!("http://{host}{uri}"),
            },
            response: ResponsePart {
                headers: Headers(self.response_headers.as_ref()),
                size: self.head_size + self.sent,
                status: self.status,
            },
            route,
            service,
            source: self.source.as_str(),
            started_at: self.started_at,
            tries: [],
            upstream_uri: self.upstream_uri.as_deref(),
        }
    }
}

/// Kong's log entry. Fields are in the order of the keys' names, as the
/// value tree this replaced wrote them.
#[derive(Serialize)]
struct Entry<'a> {
    client_ip: IpAddr,
    consumer: Option<&'a crate::model::Consumer>,
    latencies: Latencies,
    request: RequestPart<'a>,
    response: ResponsePart<'a>,
    route: Option<&'a crate::model::Route>,
    service: Option<&'a crate::model::Service>,
    source: &'static str,
    started_at: u64,
    tries: [(); 0],
    upstream_uri: Option<&'a str>,
}

#[derive(Serialize)]
struct Latencies {
    kong: u64,
    proxy: u64,
    request: u64,
}

#[derive(Serialize)]
struct RequestPart<'a> {
    headers: Headers<'a>,
    method: &'a str,
    /// Each argument once (the last one given wins), by name.
    querystring: BTreeMap<Cow<'a, str>, Cow<'a, str>>,
    size: u64,
    uri: &'a str,
    url: String,
}

#[derive(Serialize)]
struct ResponsePart<'a> {
    headers: Headers<'a>,
    size: u64,
    status: u16,
}

/// Headers as Kong logs them: by name, a repeated one as an array, the
/// credentials Kong knows of redacted.
struct Headers<'a>(Option<&'a HeaderMap>);

impl Serialize for Headers<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Some(h) = self.0 else {
            return s.serialize_map(Some(0))?.end();
        };
        // By name, as the value tree wrote them.
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        let mut map = s.serialize_map(Some(names.len()))?;
        for name in names {
            let redacted = name == "authorization" || name == "proxy-authorization";
            let text = |v: &'_ http::HeaderValue| -> Cow<'static, str> {
                if redacted {
                    Cow::Borrowed("REDACTED")
                } else {
                    Cow::Owned(String::from_utf8_lossy(v.as_bytes()).into_owned())
                }
            };
            let values: Vec<Cow<'static, str>> = h.get_all(name).iter().map(text).collect();
            match values.as_slice() {
                [one] => map.serialize_entry(name, one)?,
                all => map.serialize_entry(name, all)?,
            }
        }
        map.end()
    }
}

/// The log plugins' `custom_fields_by_lua`: Lua is not run here, so a
/// config that sets fields is refused rather than logged without them.
pub(super) fn no_custom_fields(f: &mut crate::schema::fields::Fields) {
    let custom = f.take("custom_fields_by_lua");
    if custom
        .as_ref()
        .is_some_and(|v| v.as_object().is_some_and(|o| !o.is_empty()))
    {
        f.error(
            "custom_fields_by_lua",
            "Lua is not run by this gateway: remove custom_fields_by_lua",
        );
    }
}

impl Observer for Pending {
    fn sent(&mut self, bytes: usize) {
        self.sent += bytes as u64;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let snapshot = self.snapshot.clone();
        if let Some(route) = snapshot.routes.get(self.route_index) {
            route.plugins.log(self);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn pending() -> Pending {
        let pools = crate::proxy::pool::Pools::new(crate::proxy::pool::PoolSettings {
            max_idle: 0,
            idle_timeout: std::time::Duration::ZERO,
            max_requests: 0,
        });
        let snapshot = Snapshot::from_declarative(
            "_format_version: \"3.0\"\nservices:\n- name: svc\n  url: http://127.0.0.1:9\n  routes:\n  - name: open\n    paths: [/open]\nconsumers:\n- username: mia\n",
            &pools,
        )
        .unwrap();
        let consumer = snapshot.entities.consumers[0].id;
        let mut request = HeaderMap::new();
        request.insert("host", HeaderValue::from_static("example.test"));
        request.insert("authorization", HeaderValue::from_static("Basic bWlhOnM="));
        request.append("x-many", HeaderValue::from_static("one"));
        request.append("x-many", HeaderValue::from_static("two"));
        let mut response = HeaderMap::new();
        response.insert("content-type", HeaderValue::from_static("text/plain"));
        Pending {
            snapshot: Arc::new(snapshot),
            route_index: 0,
            started: Instant::now(),
            started_at: 1_700_000_000_000,
            client: "127.0.0.1".parse().unwrap(),
            consumer: Some(consumer),
            method: Method::GET,
            uri: "/open/x?a=1&b=2&a=3".parse().unwrap(),
            request_headers: Some(request),
            response_headers: Some(response),
            request_size: 120,
            status: 200,
            source: Source::Service,
            upstream_latency_ms: Some(3),
            kong_latency_ms: 1,
            upstream_uri: Some("/open/x?a=1&b=2&a=3".into()),
            sent: 3,
            head_size: 40,
        }
    }

    #[test]
    fn the_entry_is_kongs_shape_as_a_value_and_as_a_line() {
        let p = pending();
        let v = p.serialize();
        let line: Value = serde_json::from_slice(&p.serialize_line()).unwrap();
        assert_eq!(v, line);
        assert_eq!(v["request"]["method"], "GET");
        assert_eq!(v["request"]["uri"], "/open/x?a=1&b=2&a=3");
        assert_eq!(
            v["request"]["url"],
            "http://example.test/open/x?a=1&b=2&a=3"
        );
        // Each argument once, the last one given.
        assert_eq!(
            v["request"]["querystring"],
            serde_json::json!({"a": "3", "b": "2"})
        );
        assert_eq!(v["request"]["headers"]["authorization"], "REDACTED");
        assert_eq!(
            v["request"]["headers"]["x-many"],
            serde_json::json!(["one", "two"])
        );
        assert_eq!(v["request"]["size"], 120);
        assert_eq!(v["response"]["headers"]["content-type"], "text/plain");
        assert_eq!(v["response"]["size"], 43);
        assert_eq!(v["response"]["status"], 200);
        assert_eq!(v["latencies"]["kong"], 1);
        assert_eq!(v["latencies"]["proxy"], 3);
        assert!(v["latencies"]["request"].is_u64());
        assert_eq!(v["route"]["name"], "open");
        assert_eq!(v["service"]["name"], "svc");
        assert_eq!(v["consumer"]["username"], "mia");
        assert_eq!(v["client_ip"], "127.0.0.1");
        assert_eq!(v["source"], "service");
        assert_eq!(v["started_at"], 1_700_000_000_000u64);
        assert_eq!(v["tries"], serde_json::json!([]));
        assert_eq!(v["upstream_uri"], "/open/x?a=1&b=2&a=3");
    }
}
