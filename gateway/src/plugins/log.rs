//! The log phase: what a request leaves behind for the plugins that run after
//! its response has gone (prometheus, http-log, file-log), and Kong's log
//! serializer. A request of a route whose chain has such a plugin carries a
//! [`Pending`] on its response body; when the body ends, fails, or is dropped
//! because the client went away, the `Drop` of `Pending` runs the phase.
//! Nothing in it waits: counters are atomics and log entries go to bounded
//! queues that background tasks empty.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, Method, Uri};
use serde_json::{json, Map, Value};
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

    /// Kong's log serializer (`kong.log.serialize()`), in its 3.x shape.
    pub fn serialize(&self) -> Value {
        let route_entry = self.snapshot.routes.get(self.route_index);
        let entities = &self.snapshot.entities;
        let route = route_entry.and_then(|r| entities.routes.get(r.entity));
        let service = route_entry
            .and_then(|r| r.service_entity)
            .and_then(|i| entities.services.get(i));
        let consumer = self
            .consumer
            .and_then(|c| entities.consumers.iter().find(|e| e.id == c));
        let headers = |h: &Option<HeaderMap>| -> Value {
            let mut m = Map::new();
            for (k, v) in h.iter().flatten() {
                let name = k.as_str();
                // Kong redacts the credentials it knows of.
                let value = if name == "authorization" || name == "proxy-authorization" {
                    "REDACTED".to_string()
                } else {
                    String::from_utf8_lossy(v.as_bytes()).into_owned()
                };
                match m.get_mut(name) {
                    Some(Value::Array(a)) => a.push(value.into()),
                    Some(old) => *old = json!([old.take(), value]),
                    None => {
                        m.insert(name.to_string(), value.into());
                    }
                }
            }
            Value::Object(m)
        };
        let query: Map<String, Value> = self
            .uri
            .query()
            .map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                    .collect()
            })
            .unwrap_or_default();
        let host = self
            .request_headers
            .as_ref()
            .and_then(|h| h.get(http::header::HOST))
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let request_latency = self.request_latency_ms();
        let proxy = self.upstream_latency_ms.unwrap_or(0);
        json!({
            "request": {
                "method": self.method.as_str(),
                "uri": self.uri.path_and_query().map_or("/", |p| p.as_str()),
                "url": format!("http://{host}{}", self.uri.path_and_query().map_or("/", |p| p.as_str())),
                "querystring": query,
                "headers": headers(&self.request_headers),
                "size": self.request_size,
            },
            "response": {
                "status": self.status,
                "headers": headers(&self.response_headers),
                "size": self.head_size + self.sent,
            },
            "latencies": {
                "request": request_latency,
                "kong": self.kong_latency_ms,
                "proxy": proxy,
            },
            "upstream_uri": self.upstream_uri,
            "client_ip": self.client.to_string(),
            "started_at": self.started_at,
            "source": self.source.as_str(),
            "route": route,
            "service": service,
            "consumer": consumer,
            "tries": [],
        })
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
