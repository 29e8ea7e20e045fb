//! `prometheus` (Kong 3.x): request counts, latency histograms and bandwidth
//! per service and route, with Kong's metric names, exposed with the node's
//! connections, upstream target health, datastore reachability and
//! configuration hash at `/metrics` on the admin listeners.
//!
//! Each route's series live in a [`RouteMetrics`] the snapshot hands its
//! chain, so the log phase only touches atomics: status codes take one of a
//! few lock-free slots (a rare code beyond them, and `per_consumer` series,
//! go to a small locked map).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, Mutex};

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::log::Pending;
use crate::schema::fields::Fields;

pub const PRIORITY: u32 = 13;

#[derive(Debug)]
pub struct Config {
    per_consumer: bool,
    status_code_metrics: bool,
    latency_metrics: bool,
    bandwidth_metrics: bool,
    pub(super) upstream_health_metrics: bool,
}

pub(super) fn parse(f: &mut Fields) -> (Config, Map<String, Value>) {
    let c = Config {
        per_consumer: f.boolean("per_consumer", false),
        status_code_metrics: f.boolean("status_code_metrics", false),
        latency_metrics: f.boolean("latency_metrics", false),
        bandwidth_metrics: f.boolean("bandwidth_metrics", false),
        upstream_health_metrics: f.boolean("upstream_health_metrics", false),
    };
    // Kong 3.8's AI metrics: accepted off, as no AI plugin runs here.
    let ai = f.boolean("ai_metrics", false);
    if ai {
        f.error(
            "ai_metrics",
            "no AI plugin runs on this gateway: leave ai_metrics false",
        );
    }
    let mut out = Map::new();
    out.insert("per_consumer".into(), c.per_consumer.into());
    out.insert("status_code_metrics".into(), c.status_code_metrics.into());
    out.insert("ai_metrics".into(), ai.into());
    out.insert("latency_metrics".into(), c.latency_metrics.into());
    out.insert("bandwidth_metrics".into(), c.bandwidth_metrics.into());
    out.insert(
        "upstream_health_metrics".into(),
        c.upstream_health_metrics.into(),
    );
    (c, out)
}

pub(super) fn schema() -> Value {
    let flag = |n: &str| json!({n: {"type": "boolean", "required": true, "default": false}});
    json!([
        flag("per_consumer"),
        flag("status_code_metrics"),
        flag("ai_metrics"),
        flag("latency_metrics"),
        flag("bandwidth_metrics"),
        flag("upstream_health_metrics"),
    ])
}

/// Kong's buckets, in milliseconds.
const KONG_BUCKETS: &[u64] = &[
    1, 2, 5, 7, 10, 15, 20, 30, 50, 75, 100, 200, 500, 750, 1000, 3000, 6000,
];
const UPSTREAM_BUCKETS: &[u64] = &[
    25, 50, 80, 100, 250, 400, 700, 1000, 2000, 5000, 10_000, 30_000, 60_000,
];

struct Histogram {
    buckets: Box<[AtomicU64]>,
    bounds: &'static [u64],
    sum: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [u64]) -> Self {
        Histogram {
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            bounds,
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, ms: u64) {
        // Non-cumulative here; the exposition adds them up.
        if let Some(i) = self.bounds.iter().position(|b| ms <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.sum.fetch_add(ms, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (b, n) in self.bounds.iter().zip(self.buckets.iter()) {
            cumulative += n.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b:05}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum.load(Relaxed));
    }
}

const CODE_SLOTS: usize = 16;

/// A status code, its source, and the consumer when counted per consumer.
type CodeKey = (u16, &'static str, Option<Box<str>>);

/// A route's id and its service's and its own names.
type RouteKey = (Uuid, Box<str>, Box<str>);

/// One route's series.
pub struct RouteMetrics {
    service: Box<str>,
    route: Box<str>,
    /// (status code, source) packed as code * 4 + source, 0 when free.
    slots: [(AtomicU16, AtomicU64); CODE_SLOTS],
    /// Codes beyond the slots, and per-consumer counts: (code, source,
    /// consumer) -> count.
    others: Mutex<HashMap<CodeKey, u64>>,
    kong_latency: Histogram,
    upstream_latency: Histogram,
    request_latency: Histogram,
    ingress: AtomicU64,
    egress: AtomicU64,
    per_consumer_bandwidth: Mutex<HashMap<Box<str>, (u64, u64)>>,
}

impl std::fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteMetrics")
            .field("service", &self.service)
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

fn source_code(s: super::log::Source) -> u16 {
    match s {
        super::log::Source::Service => 1,
        super::log::Source::Kong => 2,
        super::log::Source::Error => 3,
    }
}

fn source_name(code: u16) -> &'static str {
    match code {
        1 => "service",
        2 => "kong",
        _ => "error",
    }
}

impl RouteMetrics {
    fn new(service: &str, route: &str) -> Self {
        RouteMetrics {
            service: service.into(),
            route: route.into(),
            slots: std::array::from_fn(|_| (AtomicU16::new(0), AtomicU64::new(0))),
            others: Mutex::default(),
            kong_latency: Histogram::new(KONG_BUCKETS),
            upstream_latency: Histogram::new(UPSTREAM_BUCKETS),
            request_latency: Histogram::new(UPSTREAM_BUCKETS),
            ingress: AtomicU64::new(0),
            egress: AtomicU64::new(0),
            per_consumer_bandwidth: Mutex::default(),
        }
    }

    fn count(&self, code: u16, source: super::log::Source, consumer: Option<&str>) {
        if let Some(c) = consumer {
            let mut m = self.others.lock().unwrap_or_else(|e| e.into_inner());
            *m.entry((code, source.as_str(), Some(c.into())))
                .or_default() += 1;
            return;
        }
        let key = code.saturating_mul(4) + source_code(source);
        for (slot, n) in &self.slots {
            let current = slot.load(Relaxed);
            if current == key {
                n.fetch_add(1, Relaxed);
                return;
            }
            if current == 0
                && slot
                    .compare_exchange(0, key, Relaxed, Relaxed)
                    .map_or_else(|found| found == key, |_| true)
            {
                n.fetch_add(1, Relaxed);
                return;
            }
        }
        let mut m = self.others.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((code, source.as_str(), None)).or_default() += 1;
    }
}

/// Every route's series since the node started, by route and its names
/// (a rename starts new series, as a new label set does in Prometheus).
#[derive(Default)]
pub struct Registry {
    routes: Mutex<HashMap<RouteKey, Arc<RouteMetrics>>>,
}

pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::default);

impl Registry {
    /// The series of a route; called when a snapshot is built.
    pub fn route(&self, id: Uuid, service: &str, route: &str) -> Arc<RouteMetrics> {
        let mut m = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        m.entry((id, service.into(), route.into()))
            .or_insert_with(|| Arc::new(RouteMetrics::new(service, route)))
            .clone()
    }
}

/// The log phase of one prometheus instance.
pub(super) fn log(c: &Config, metrics: &RouteMetrics, p: &Pending) {
    let consumer_name;
    let consumer = if c.per_consumer {
        consumer_name = p.consumer.and_then(|id| {
            p.snapshot
                .entities
                .consumers
                .iter()
                .find(|x| x.id == id)
                .map(|x| x.username.clone().unwrap_or_else(|| id.to_string()))
        });
        consumer_name.as_deref()
    } else {
        None
    };
    if c.status_code_metrics {
        metrics.count(p.status, p.source, consumer);
    }
    if c.latency_metrics {
        metrics.request_latency.observe(p.request_latency_ms());
        metrics.kong_latency.observe(p.kong_latency_ms);
        if let Some(u) = p.upstream_latency_ms {
            metrics.upstream_latency.observe(u);
        }
    }
    if c.bandwidth_metrics {
        let egress = p.head_size + p.sent;
        match consumer {
            Some(name) => {
                let mut m = metrics
                    .per_consumer_bandwidth
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                let e = m.entry(name.into()).or_default();
                e.0 += p.request_size;
                e.1 += egress;
            }
            None => {
                metrics.ingress.fetch_add(p.request_size, Relaxed);
                metrics.egress.fetch_add(egress, Relaxed);
            }
        }
    }
}

/// Escapes a label value (text exposition format).
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// What the node knows beyond the routes' series.
pub struct NodeFacts<'a> {
    pub node_id: &'a str,
    pub hostname: &'a str,
    pub version: &'a str,
    pub status: &'a Value,
    pub database_reachable: bool,
    pub config_hash: &'a str,
    /// Unix seconds of the configuration's last load.
    pub config_loaded_at: u64,
    /// Upstream targets: (upstream, target, state).
    pub targets: Vec<(String, String, &'static str)>,
}

/// The text exposition of every series (Prometheus 0.0.4).
pub fn render(node: &NodeFacts<'_>) -> String {
    let mut out = String::with_capacity(8 << 10);
    let node_id = esc(node.node_id);
    let _ = writeln!(
        out,
        "# HELP kong_node_info Kong Node metadata information\n# TYPE kong_node_info gauge"
    );
    let _ = writeln!(
        out,
        "kong_node_info{{node_id=\"{node_id}\",version=\"{}\"}} 1",
        esc(node.version)
    );
    let _ = writeln!(out, "# HELP kong_datastore_reachable Datastore reachable from Kong, 0 is unreachable\n# TYPE kong_datastore_reachable gauge");
    let _ = writeln!(
        out,
        "kong_datastore_reachable {}",
        u8::from(node.database_reachable)
    );
    let server = &node.status["server"];
    let _ = writeln!(out, "# HELP kong_nginx_connections_total Number of connections by subsystem\n# TYPE kong_nginx_connections_total gauge");
    for state in [
        "accepted", "active", "handled", "reading", "waiting", "writing",
    ] {
        let v = server[format!("connections_{state}")].as_u64().unwrap_or(0);
        let _ = writeln!(out, "kong_nginx_connections_total{{node_id=\"{node_id}\",subsystem=\"http\",state=\"{state}\"}} {v}");
    }
    let total = server["total_requests"].as_u64().unwrap_or(0);
    let _ = writeln!(out, "# HELP kong_nginx_requests_total Number of requests total\n# TYPE kong_nginx_requests_total gauge");
    let _ = writeln!(
        out,
        "kong_nginx_requests_total{{node_id=\"{node_id}\",subsystem=\"http\"}} {total}"
    );
    // Kong's data planes report the hash as a number: its first 64 bits.
    let hash = u64::from_str_radix(node.config_hash.get(..16).unwrap_or("0"), 16).unwrap_or(0);
    let labels = format!("node_id=\"{node_id}\",hostname=\"{}\"", esc(node.hostname));
    let _ = writeln!(out, "# HELP kong_data_plane_config_hash Config hash numeric value of the data plane\n# TYPE kong_data_plane_config_hash gauge");
    let _ = writeln!(
        out,
        "kong_data_plane_config_hash{{{labels}}} {}",
        hash as f64
    );
    let _ = writeln!(out, "# HELP kong_data_plane_last_seen Last time the data plane loaded its configuration (Unix seconds)\n# TYPE kong_data_plane_last_seen gauge");
    let _ = writeln!(
        out,
        "kong_data_plane_last_seen{{{labels}}} {}",
        node.config_loaded_at
    );
    if !node.targets.is_empty() {
        let _ = writeln!(out, "# HELP kong_upstream_target_health Health status of targets of upstream. States = healthchecks_off|healthy|unhealthy|dns_error, value is 1 when state is populated.\n# TYPE kong_upstream_target_health gauge");
        for (upstream, target, state) in &node.targets {
            for s in ["healthchecks_off", "healthy", "unhealthy", "dns_error"] {
                let _ = writeln!(
                    out,
                    "kong_upstream_target_health{{upstream=\"{}\",target=\"{}\",address=\"{}\",state=\"{s}\",subsystem=\"http\"}} {}",
                    esc(upstream),
                    esc(target),
                    esc(target),
                    u8::from(*state == s)
                );
            }
        }
    }
    let routes: Vec<Arc<RouteMetrics>> = {
        let m = REGISTRY.routes.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = m.values().cloned().collect();
        v.sort_by(|a, b| (&a.service, &a.route).cmp(&(&b.service, &b.route)));
        v
    };
    let labels = |r: &RouteMetrics| {
        format!(
            "service=\"{}\",route=\"{}\",workspace=\"default\"",
            esc(&r.service),
            esc(&r.route)
        )
    };
    let _ = writeln!(out, "# HELP kong_http_requests_total HTTP status codes per consumer/service/route in Kong\n# TYPE kong_http_requests_total counter");
    for r in &routes {
        let l = labels(r);
        for (slot, n) in &r.slots {
            let key = slot.load(Relaxed);
            if key == 0 {
                continue;
            }
            let _ = writeln!(
                out,
                "kong_http_requests_total{{{l},code=\"{}\",source=\"{}\",consumer=\"\"}} {}",
                key / 4,
                source_name(key % 4),
                n.load(Relaxed)
            );
        }
        let others = r.others.lock().unwrap_or_else(|e| e.into_inner());
        let mut sorted: Vec<_> = others.iter().collect();
        sorted.sort();
        for ((code, source, consumer), n) in sorted {
            let _ = writeln!(
                out,
                "kong_http_requests_total{{{l},code=\"{code}\",source=\"{source}\",consumer=\"{}\"}} {n}",
                esc(consumer.as_deref().unwrap_or(""))
            );
        }
    }
    for (name, help, pick) in [
        (
            "kong_kong_latency_ms",
            "Latency added by Kong and enabled plugins for each service/route in Kong",
            0,
        ),
        (
            "kong_upstream_latency_ms",
            "Latency added by upstream response for each service/route in Kong",
            1,
        ),
        (
            "kong_request_latency_ms",
            "Total latency incurred during requests for each service/route in Kong",
            2,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for r in &routes {
            let h = match pick {
                0 => &r.kong_latency,
                1 => &r.upstream_latency,
                _ => &r.request_latency,
            };
            if h.count.load(Relaxed) > 0 {
                h.write(&mut out, name, &labels(r));
            }
        }
    }
    let _ = writeln!(out, "# HELP kong_bandwidth_bytes Total bandwidth (ingress/egress) throughput in bytes\n# TYPE kong_bandwidth_bytes counter");
    for r in &routes {
        let l = labels(r);
        let (i, e) = (r.ingress.load(Relaxed), r.egress.load(Relaxed));
        if i + e > 0 {
            let _ = writeln!(
                out,
                "kong_bandwidth_bytes{{{l},direction=\"ingress\",consumer=\"\"}} {i}"
            );
            let _ = writeln!(
                out,
                "kong_bandwidth_bytes{{{l},direction=\"egress\",consumer=\"\"}} {e}"
            );
        }
        let per = r
            .per_consumer_bandwidth
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut sorted: Vec<_> = per.iter().collect();
        sorted.sort();
        for (c, (i, e)) in sorted {
            let c = esc(c);
            let _ = writeln!(
                out,
                "kong_bandwidth_bytes{{{l},direction=\"ingress\",consumer=\"{c}\"}} {i}"
            );
            let _ = writeln!(
                out,
                "kong_bandwidth_bytes{{{l},direction=\"egress\",consumer=\"{c}\"}} {e}"
            );
        }
    }
    out
}
