//! `rate-limiting` (Kong 3.x, priority 910): counts requests per identifier
//! (consumer, credential, ip, service, header or path) in fixed windows
//! aligned to the start of each period (second .. year, month and year by the
//! UTC calendar), and answers `error_code` once a period's limit is reached.
//!
//! Counters live where `policy` says: this process ([`local`]), Redis
//! ([`redis`]) or PostgreSQL's `ratelimiting_metrics` shared by every node
//! ([`cluster`]). Only the remote policies await; the local one is a short
//! critical section on one shard of a process-wide map.
//!
//! Unlike Kong, which reads the usage and increments later in a timer (so
//! concurrent requests can all pass the last slot), the check and the
//! increment are one step here: the local store does both under one lock,
//! and the remote ones increment first and take back a refused request's
//! count. A refused request does not count, as in Kong.

pub mod cluster;
pub mod local;
mod numbers;
pub mod redis;
pub mod window;

use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{Request, RequestState};
use crate::proxy::body::ProxyBody;
use crate::schema::fields::{opt, Fields};
pub use window::{Period, PERIODS};

pub const PRIORITY: u32 = 910;

/// Set by a DB-less node before it loads its configuration: there, as in
/// Kong, `policy` is one of `local` and `redis` only.
static DB_LESS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn set_db_less(on: bool) {
    DB_LESS.store(on, std::sync::atomic::Ordering::Relaxed);
}

const DEFAULT_MESSAGE: &str = "API rate limit exceeded";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitBy {
    Consumer,
    Credential,
    Ip,
    Service,
    Header,
    Path,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Local,
    Cluster,
    Redis,
}

/// Kong's `config.redis` record (its shared Redis schema). `Debug` leaves
/// the password out, so that no log shows it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RedisConfig {
    pub host: Option<String>,
    pub port: u16,
    pub timeout_ms: u64,
    pub username: Option<String>,
    pub password: Option<String>,
    pub database: i64,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("timeout_ms", &self.timeout_ms)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .finish()
    }
}

#[derive(Debug)]
pub struct Config {
    /// The configured periods and their limits, shortest period first.
    pub limits: Box<[(Period, u64)]>,
    /// Each limit as a header value, made once: the limit headers of a
    /// request are then clones of a shared buffer.
    limit_values: Box<[HeaderValue]>,
    pub limit_by: LimitBy,
    pub header_name: Option<HeaderName>,
    pub path: Option<Box<str>>,
    pub policy: Policy,
    pub fault_tolerant: bool,
    pub hide_client_headers: bool,
    pub error_code: u16,
    pub error_message: Box<str>,
    pub redis: RedisConfig,
    /// The plugin's scope, as Kong keys remote counters by it (set by
    /// [`super::compile`]; nil UUIDs for a global instance).
    pub route_id: Uuid,
    pub service_id: Uuid,
}

/// What access leaves for the header filter: per period the limit and the
/// remaining count, and the most restrictive period's (Kong's `RateLimit-*`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// What remains of each configured limit, in the order of
    /// [`Config::limits`].
    remaining: [u64; 6],
    /// The index in [`Config::limits`] of the most restrictive period.
    best: usize,
    reset: u64,
}

/// A number > 0 and its value as given (an integer stays one in the output).
fn positive(f: &mut Fields, name: &str) -> Option<(f64, Value)> {
    let raw = f.take(name)?;
    match raw.as_f64() {
        Some(v) if v > 0.0 => Some((v, raw)),
        Some(_) => {
            f.error(name, "value must be greater than 0");
            None
        }
        None => {
            f.error(name, "expected a number");
            None
        }
    }
}

/// Kong's `%.1f` of the period-order message.
fn one_decimal(v: f64) -> String {
    format!("{v:.1}")
}

fn redis_record(f: &mut Fields, policy: Policy) -> (RedisConfig, Value) {
    // Kong 3.x's deprecated flat fields (`redis_host`, ...) are shorthands
    // for `redis.*`; the record wins when both are given.
    let mut record = f.record("redis").unwrap_or_default();
    for key in [
        "host",
        "port",
        "timeout",
        "username",
        "password",
        "database",
        "ssl",
        "ssl_verify",
        "server_name",
    ] {
        if let Some(v) = f.take(&format!("redis_{key}")) {
            record.entry(key).or_insert(v);
        }
    }
    let mut r = Fields::new(record);
    let host = r.string("host");
    let port = r.integer("port", 0, 65535, 6379);
    let timeout = r.integer("timeout", 0, i32::MAX as i64, 2000);
    let username = r.string("username");
    let password = r.string("password");
    let database = r.integer("database", i32::MIN as i64, i32::MAX as i64, 0);
    let ssl = r.boolean("ssl", false);
    let ssl_verify = r.boolean("ssl_verify", false);
    let server_name = r.string("server_name");
    if ssl {
        r.error(
            "ssl",
            "TLS to Redis is not supported yet: use a local TLS tunnel (stunnel) and ssl = false",
        );
    }
    if policy == Policy::Redis && host.is_none() {
        r.error("host", "required field missing");
    }
    let errors = r.finish();
    for (path, message) in errors.entries() {
        let path = if path.is_empty() {
            "redis".to_string()
        } else {
            format!("redis.{path}")
        };
        f.error(&path, message);
    }
    let out = json!({
        "host": host,
        "port": port,
        "timeout": timeout,
        "username": username,
        "password": password,
        "database": database,
        "ssl": ssl,
        "ssl_verify": ssl_verify,
        "server_name": server_name,
    });
    let config = RedisConfig {
        host,
        port: port as u16,
        timeout_ms: timeout as u64,
        username,
        password,
        database,
    };
    (config, out)
}

pub(super) fn parse(f: &mut Fields) -> (Config, Map<String, Value>) {
    let mut out = Map::new();
    let mut limits = Vec::new();
    let mut raw = Vec::new();
    for p in PERIODS {
        let v = positive(f, p.name());
        out.insert(
            p.name().into(),
            v.as_ref().map_or(Value::Null, |(_, raw)| raw.clone()),
        );
        if let Some((v, _)) = v {
            raw.push((p, v));
            // A fractional limit counts whole requests: 2.5 lets 2 through.
            limits.push((p, v.floor() as u64));
        }
    }
    let limit_by = match f.one_of(
        "limit_by",
        &["consumer", "credential", "ip", "service", "header", "path"],
        "consumer",
    ) {
        "credential" => LimitBy::Credential,
        "ip" => LimitBy::Ip,
        "service" => LimitBy::Service,
        "header" => LimitBy::Header,
        "path" => LimitBy::Path,
        _ => LimitBy::Consumer,
    };
    let header_name_raw = f.string("header_name");
    let header_name = header_name_raw
        .as_deref()
        .and_then(|h| super::header_name(f, "header_name", h));
    let path = f.string("path");
    if let Some(p) = &path {
        if !p.starts_with('/') {
            f.error("path", "should start with: /");
        }
    }
    let policies: &[&str] = if DB_LESS.load(std::sync::atomic::Ordering::Relaxed) {
        &["local", "redis"]
    } else {
        &["local", "cluster", "redis"]
    };
    let policy = match f.one_of("policy", policies, "local") {
        "cluster" => Policy::Cluster,
        "redis" => Policy::Redis,
        _ => Policy::Local,
    };
    let fault_tolerant = f.boolean("fault_tolerant", true);
    let hide_client_headers = f.boolean("hide_client_headers", false);
    let error_code = match f.number("error_code") {
        None => 429,
        Some(n) if n.fract() == 0.0 && (100.0..=599.0).contains(&n) => n as u16,
        Some(n) if n <= 0.0 => {
            f.error("error_code", "value must be greater than 0");
            429
        }
        Some(_) => {
            f.error("error_code", "value should be between 100 and 599");
            429
        }
    };
    let error_message = f.string("error_message");
    // Kong's sync_rate batches remote increments; counters here are always
    // synchronous (-1), other values are kept and shown.
    let sync_rate = f.number("sync_rate").unwrap_or(-1.0);
    let (redis, redis_out) = redis_record(f, policy);

    // Kong's entity checks, in its order.
    if limits.is_empty() && PERIODS.iter().all(|p| !f.has_error(p.name())) {
        f.error(
            super::PLUGIN_ENTITY,
            "at least one of these fields must be non-empty: 'config.second', 'config.minute', 'config.hour', 'config.day', 'config.month', 'config.year'",
        );
    }
    if limit_by == LimitBy::Header && header_name_raw.is_none() {
        f.error("header_name", "required field missing");
    }
    if limit_by == LimitBy::Path && path.is_none() {
        f.error("path", "required field missing");
    }
    // Kong's custom validator: a longer period may not allow fewer requests.
    'order: for (i, (lower, v1)) in raw.iter().enumerate() {
        for (upper, v2) in &raw[i + 1..] {
            if v2 < v1 {
                f.entity_error(format!(
                    "The limit for {}({}) cannot be lower than the limit for {}({})",
                    upper.name(),
                    one_decimal(*v2),
                    lower.name(),
                    one_decimal(*v1)
                ));
                break 'order;
            }
        }
    }

    out.insert("limit_by".into(), limit_by_name(limit_by).into());
    out.insert("header_name".into(), opt(header_name_raw));
    out.insert("path".into(), opt(path.clone()));
    out.insert("policy".into(), policy_name(policy).into());
    out.insert("fault_tolerant".into(), fault_tolerant.into());
    out.insert("redis".into(), redis_out);
    out.insert("hide_client_headers".into(), hide_client_headers.into());
    out.insert("error_code".into(), error_code.into());
    out.insert(
        "error_message".into(),
        error_message.as_deref().unwrap_or(DEFAULT_MESSAGE).into(),
    );
    out.insert(
        "sync_rate".into(),
        serde_json::Number::from_f64(sync_rate)
            .map(|n| {
                if sync_rate.fract() == 0.0 {
                    Value::from(sync_rate as i64)
                } else {
                    Value::Number(n)
                }
            })
            .unwrap_or(Value::from(-1)),
    );
    let limit_values = limits.iter().map(|&(_, l)| numbers::lasting(l)).collect();
    let config = Config {
        limits: limits.into_boxed_slice(),
        limit_values,
        limit_by,
        header_name,
        path: path.map(Into::into),
        policy,
        fault_tolerant,
        hide_client_headers,
        error_code,
        error_message: error_message.as_deref().unwrap_or(DEFAULT_MESSAGE).into(),
        redis,
        route_id: Uuid::nil(),
        service_id: Uuid::nil(),
    };
    (config, out)
}

fn limit_by_name(l: LimitBy) -> &'static str {
    match l {
        LimitBy::Consumer => "consumer",
        LimitBy::Credential => "credential",
        LimitBy::Ip => "ip",
        LimitBy::Service => "service",
        LimitBy::Header => "header",
        LimitBy::Path => "path",
    }
}

fn policy_name(p: Policy) -> &'static str {
    match p {
        Policy::Local => "local",
        Policy::Cluster => "cluster",
        Policy::Redis => "redis",
    }
}

/// Who is counted: Kong's `get_identifier`, falling back to the client
/// address when the chosen attribute is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Identifier<'a> {
    Id(Uuid),
    Ip(IpAddr),
    Text(&'a [u8]),
}

impl std::fmt::Display for Identifier<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identifier::Id(id) => id.fmt(f),
            Identifier::Ip(ip) => ip.fmt(f),
            Identifier::Text(t) => f.write_str(&String::from_utf8_lossy(t)),
        }
    }
}

pub fn identifier<'a>(c: &'a Config, req: &'a Request<'_>, state: &RequestState) -> Identifier<'a> {
    let found = match c.limit_by {
        LimitBy::Consumer => state.consumer.or(state.credential).map(Identifier::Id),
        LimitBy::Credential => state.credential.map(Identifier::Id),
        LimitBy::Service => req.service.map(Identifier::Id),
        LimitBy::Header => c
            .header_name
            .as_ref()
            .and_then(|h| req.headers.get(h))
            .map(|v| Identifier::Text(v.as_bytes())),
        LimitBy::Path => c
            .path
            .as_deref()
            .filter(|p| req.uri.path() == *p)
            .map(|p| Identifier::Text(p.as_bytes())),
        LimitBy::Ip => None,
    };
    found.unwrap_or(Identifier::Ip(crate::config::trusted::canonical(
        req.client,
    )))
}

/// A 64-bit digest of (instance, identifier) for the local store's key.
fn digest(instance: Uuid, id: &Identifier<'_>) -> u64 {
    let mut h = foldhash::fast::FixedState::with_seed(0x7261_7465_6c69_6d69).build_hasher();
    instance.hash(&mut h);
    id.hash(&mut h);
    h.finish()
}

/// Whether access must await (a remote policy).
pub fn is_remote(c: &Config) -> bool {
    c.policy != Policy::Local
}

/// Per configured period, the count including this request.
pub(crate) type Counts = [u64; 6];

/// What a counter store answered.
pub(crate) enum Outcome {
    /// Counted (all periods under their limits): the counts with this request.
    Allowed(Counts),
    /// A period was at its limit: the counts without this request (which did
    /// not count).
    Refused(Counts),
}

/// The local policy: no await, so the access phase of a chain without a
/// remote policy is one synchronous pass.
pub(super) fn access_local(
    c: &Config,
    instance: Uuid,
    req: &Request<'_>,
    state: &mut RequestState,
) -> Option<http::Response<ProxyBody>> {
    let now_ms = window::now_ms();
    let id = identifier(c, req, state);
    let outcome = local::STORE.hit(digest(instance, &id), &c.limits, now_ms);
    finish(c, outcome, now_ms, req, state)
}

pub(super) async fn access(
    c: &Config,
    instance: Uuid,
    req: &Request<'_>,
    state: &mut RequestState,
) -> Option<http::Response<ProxyBody>> {
    let now_ms = window::now_ms();
    let id = identifier(c, req, state);
    let outcome = match c.policy {
        Policy::Local => Ok(local::STORE.hit(digest(instance, &id), &c.limits, now_ms)),
        // Boxed so that the proxy's future stays small for everyone else.
        Policy::Redis => Box::pin(redis::hit(c, &id, now_ms))
            .await
            .map_err(|e| e.to_string()),
        Policy::Cluster => Box::pin(cluster::hit(c, &id, now_ms))
            .await
            .map_err(|e| e.to_string()),
    };
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            if !c.fault_tolerant {
                tracing::error!(request_id = ?req.request_id, "rate-limiting: {e}");
                return Some(super::error(
                    500,
                    "An unexpected error occurred",
                    req.request_id,
                ));
            }
            // Kong lets the request through without headers.
            tracing::warn!(request_id = ?req.request_id, "rate-limiting: failed to get usage: {e}");
            return None;
        }
    };
    finish(c, outcome, now_ms, req, state)
}

/// The answer to a counted request: Kong's error with the headers when
/// refused, else the usage for the header filter.
fn finish(
    c: &Config,
    outcome: Outcome,
    now_ms: i64,
    req: &Request<'_>,
    state: &mut RequestState,
) -> Option<http::Response<ProxyBody>> {
    let (counts, refused) = match outcome {
        Outcome::Allowed(c) => (c, false),
        Outcome::Refused(c) => (c, true),
    };
    let usage = usage(c, &counts, now_ms);
    if refused {
        let mut r = super::error(c.error_code, &c.error_message, req.request_id);
        if !c.hide_client_headers {
            set_headers(c, &usage, r.headers_mut());
            r.headers_mut()
                .insert(http::header::RETRY_AFTER, numbers::num(usage.reset));
        }
        // The header filter runs on this answer too; the headers are set.
        return Some(r);
    }
    if !c.hide_client_headers {
        state.rate_limit = Some(usage);
    }
    None
}

/// Kong's header values: per period the limit and what remains after this
/// request; `RateLimit-*` for the period with the least remaining (the
/// longer one on a tie), and the seconds until its window ends.
pub fn usage(c: &Config, counts: &Counts, now_ms: i64) -> Usage {
    let mut u = Usage::default();
    let mut best: Option<(u64, u64)> = None; // (remaining, window seconds)
    for (i, &(p, limit)) in c.limits.iter().enumerate() {
        let remaining = limit.saturating_sub(counts[i]);
        u.remaining[i] = remaining;
        let secs = p.expiration();
        let better = match best {
            None => true,
            Some((r, w)) => remaining < r || (remaining == r && secs > w),
        };
        if better {
            best = Some((remaining, secs));
            u.best = i;
            let elapsed = ((now_ms - window::start_ms(p, now_ms)) / 1000) as u64;
            u.reset = secs.saturating_sub(elapsed).max(1);
        }
    }
    u
}

static LIMIT_NAMES: [HeaderName; 6] = [
    HeaderName::from_static("x-ratelimit-limit-second"),
    HeaderName::from_static("x-ratelimit-limit-minute"),
    HeaderName::from_static("x-ratelimit-limit-hour"),
    HeaderName::from_static("x-ratelimit-limit-day"),
    HeaderName::from_static("x-ratelimit-limit-month"),
    HeaderName::from_static("x-ratelimit-limit-year"),
];
static REMAINING_NAMES: [HeaderName; 6] = [
    HeaderName::from_static("x-ratelimit-remaining-second"),
    HeaderName::from_static("x-ratelimit-remaining-minute"),
    HeaderName::from_static("x-ratelimit-remaining-hour"),
    HeaderName::from_static("x-ratelimit-remaining-day"),
    HeaderName::from_static("x-ratelimit-remaining-month"),
    HeaderName::from_static("x-ratelimit-remaining-year"),
];
static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// The header names of a period, Kong's `X-RateLimit-Limit-<Period>` and
/// `X-RateLimit-Remaining-<Period>` (HTTP/1 sends them lowercase; names are
/// case-insensitive).
pub fn header_names(p: Period) -> (&'static HeaderName, &'static HeaderName) {
    (&LIMIT_NAMES[p as usize], &REMAINING_NAMES[p as usize])
}

fn set_headers(c: &Config, u: &Usage, headers: &mut HeaderMap) {
    // Room for them all (and the request id after them) at once, rather
    // than the map growing on the way.
    headers.reserve(2 * c.limits.len() + 4);
    let mut best_remaining = None;
    for (i, &(p, _)) in c.limits.iter().enumerate() {
        let (ln, rn) = header_names(p);
        let remaining = numbers::num(u.remaining[i]);
        if i == u.best {
            // The same count twice: one value, shared.
            best_remaining = Some(remaining.clone());
        }
        headers.insert(ln, c.limit_values[i].clone());
        headers.insert(rn, remaining);
    }
    headers.insert(&RATELIMIT_LIMIT, c.limit_values[u.best].clone());
    let remaining = best_remaining.unwrap_or_else(|| numbers::num(u.remaining[u.best]));
    headers.insert(&RATELIMIT_REMAINING, remaining);
    headers.insert(&RATELIMIT_RESET, numbers::num(u.reset));
}

pub(super) fn header_filter(c: &Config, state: &RequestState, headers: &mut HeaderMap) {
    if let Some(u) = &state.rate_limit {
        set_headers(c, u, headers);
    }
}

pub(super) fn schema() -> Value {
    let period = || json!({"type": "number", "gt": 0});
    json!([
        {"second": period()},
        {"minute": period()},
        {"hour": period()},
        {"day": period()},
        {"month": period()},
        {"year": period()},
        {"limit_by": {"type": "string", "default": "consumer", "one_of": ["consumer", "credential", "ip", "service", "header", "path"]}},
        {"header_name": {"type": "string"}},
        {"path": {"type": "string", "starts_with": "/"}},
        {"policy": {"type": "string", "default": "local", "len_min": 0, "one_of": ["local", "cluster", "redis"]}},
        {"fault_tolerant": {"type": "boolean", "required": true, "default": true}},
        {"redis": {"type": "record", "required": true, "fields": [
            {"host": {"type": "string"}},
            {"port": {"type": "integer", "default": 6379, "between": [0, 65535]}},
            {"timeout": {"type": "integer", "default": 2000, "between": [0, 2147483646]}},
            {"username": {"type": "string", "referenceable": true}},
            {"password": {"type": "string", "referenceable": true, "encrypted": true}},
            {"database": {"type": "integer", "default": 0}},
            {"ssl": {"type": "boolean", "required": false, "default": false}},
            {"ssl_verify": {"type": "boolean", "required": false, "default": false}},
            {"server_name": {"type": "string", "required": false}},
        ]}},
        {"hide_client_headers": {"type": "boolean", "required": true, "default": false}},
        {"error_code": {"type": "number", "default": 429, "gt": 0}},
        {"error_message": {"type": "string", "default": DEFAULT_MESSAGE}},
        {"sync_rate": {"type": "number", "required": true, "default": -1}},
    ])
}
