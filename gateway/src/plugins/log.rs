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

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use serde::Serialize;
use serde_json::value::RawValue;
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

/// A route and its service as Kong's log entry has them. They change only
/// with the snapshot, so they are serialized when it is built: written on
/// every request, they were most of an entry's cost.
#[derive(Debug)]
pub struct Logged {
    route: Box<RawValue>,
    service: Option<Box<RawValue>>,
}

impl Logged {
    /// `None` only if a model failed to serialize, which these types
    /// cannot (their maps have string keys).
    pub fn new(
        route: &crate::model::Route,
        service: Option<&crate::model::Service>,
    ) -> Option<Logged> {
        fn raw<T: Serialize>(v: &T) -> Option<Box<RawValue>> {
            serde_json::value::to_raw_value(v).ok()
        }
        Some(Logged {
            route: raw(route)?,
            service: match service {
                Some(s) => Some(raw(s)?),
                None => None,
            },
        })
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

    /// Kong's log serializer (`kong.log.serialize()`), in its 3.x shape: the
    /// entry as one line of JSON (file-log's line, one of http-log's batch),
    /// written straight from the record, with no value tree in between.
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
        let chain = self
            .snapshot
            .routes
            .get(self.route_index)
            .map(|r| &r.plugins);
        let logged = chain.and_then(|c| c.logged());
        let consumer = self
            .consumer
            .and_then(|id| chain?.consumer_entity(id))
            .and_then(|i| self.snapshot.entities.consumers.get(i));
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
                url: Url { host, uri },
            },
            response: ResponsePart {
                headers: Headers(self.response_headers.as_ref()),
                size: self.head_size + self.sent,
                status: self.status,
            },
            route: logged.map(|l| &*l.route),
            service: logged.and_then(|l| l.service.as_deref()),
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
    route: Option<&'a RawValue>,
    service: Option<&'a RawValue>,
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
    url: Url<'a>,
}

/// `http://{host}{uri}`, written into the entry without a string of its own.
struct Url<'a> {
    host: &'a str,
    uri: &'a str,
}

impl Serialize for Url<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("http://{}{}", self.host, self.uri))
    }
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
        // The map yields a name's values one after another; a stable sort by
        // name keeps them so, in the order they came, without looking any
        // name up again.
        let mut lines: Vec<(&HeaderName, &HeaderValue)> = h.iter().collect();
        lines.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        let mut map = s.serialize_map(Some(h.keys_len()))?;
        for group in lines.chunk_by(|a, b| a.0 == b.0) {
            let name = group[0].0.as_str();
            let values = Values {
                lines: group,
                redacted: name == "authorization" || name == "proxy-authorization",
            };
            match group {
                [(_, one)] => map.serialize_entry(name, &values.text(one))?,
                _ => map.serialize_entry(name, &values)?,
            }
        }
        map.end()
    }
}

/// One header's values, as an array.
struct Values<'a> {
    lines: &'a [(&'a HeaderName, &'a HeaderValue)],
    redacted: bool,
}

impl<'a> Values<'a> {
    fn text(&self, v: &'a HeaderValue) -> Cow<'a, str> {
        if self.redacted {
            Cow::Borrowed("REDACTED")
        } else {
            // The common case, checked a word at a time; the lossy form
            // only for a value that is not UTF-8.
            std::str::from_utf8(v.as_bytes())
                .map_or_else(|_| String::from_utf8_lossy(v.as_bytes()), Cow::Borrowed)
        }
    }
}

impl Serialize for Values<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.lines.iter().map(|(_, v)| self.text(v)))
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
    use serde_json::Value;

    fn pending(log_path: &std::path::Path) -> Pending {
        let pools = crate::proxy::pool::Pools::new(crate::proxy::pool::PoolSettings {
            max_idle: 0,
            idle_timeout: std::time::Duration::ZERO,
            max_requests: 0,
        });
        let snapshot = Snapshot::from_declarative(
            &format!(
                "_format_version: \"3.0\"\nservices:\n- name: svc\n  url: http://127.0.0.1:9\n  routes:\n  - name: open\n    paths: [/open]\n    plugins:\n    - name: file-log\n      config: {{path: {}}}\nconsumers:\n- username: mia\n",
                log_path.display()
            ),
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
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file.log");
        let p = pending(&path);
        let v: Value = serde_json::from_slice(&p.serialize_line()).unwrap();
        // The route and service, serialized with the snapshot, are the
        // models' own serialization.
        let entities = &p.snapshot.entities;
        assert_eq!(
            v["route"],
            serde_json::to_value(&entities.routes[0]).unwrap()
        );
        assert_eq!(
            v["service"],
            serde_json::to_value(&entities.services[0]).unwrap()
        );
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

        // The log phase (the record's drop) hands file-log the same line.
        drop(p);
        let start = Instant::now();
        let mut text = String::new();
        while !text.ends_with('\n') {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(5),
                "no line in {path:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
            text = std::fs::read_to_string(&path).unwrap_or_default();
        }
        let logged: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(logged["route"], v["route"]);
        assert_eq!(logged["request"], v["request"]);
        assert_eq!(logged["consumer"], v["consumer"]);
    }
}
