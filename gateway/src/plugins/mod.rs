//! Kong plugins on the request path.
//!
//! # Design
//! - **Compiled into the snapshot.** [`Index::new`] parses every enabled plugin
//!   instance this gateway implements once, when a [`Snapshot`](crate::snapshot::Snapshot)
//!   is built (off the request path), and [`Index::chain`] gives each route its
//!   [`Chain`]: the instances that apply to it, one per plugin name, sorted by
//!   Kong's priority. The request path reads the chain and nothing else: no
//!   locks, no database, no parsing (except rate-limiting's counters: a short
//!   shard lock for `local`, a bounded round trip for `redis` and `cluster`,
//!   the only awaits in [`Chain::access`]). A route without plugins has an empty chain
//!   (an empty boxed slice, no allocation) and the proxy checks
//!   [`Chain::is_empty`] once and does nothing more.
//! - **Enum dispatch.** A compiled instance holds a [`Config`], an enum of the
//!   implemented plugins' typed configurations; each phase is a `match`, so a
//!   request allocates nothing for dispatch.
//! - **Phases.** `access` runs before the upstream is contacted, highest
//!   priority first, and may end the request with a response, which stops the
//!   plugins after it ([`Chain::access`]). `header_filter` runs on every
//!   response of a request whose access phase ran, the plugin's own exits
//!   included, as Kong runs `header_filter` after `kong.response.exit`
//!   ([`Chain::header_filter`]). A log phase goes beside them: the proxy calls
//!   `header_filter` where the response is complete, and a `log` call belongs
//!   where `handle` ends the request.
//! - **Per-request state** lives in [`RequestState`], a fixed struct on the
//!   stack: what one plugin's access phase leaves for its header filter.
//! - **Scopes and precedence** ([`Index::chain`]): when several instances of one
//!   plugin apply, the most specific wins, in Kong's order consumer+route+service,
//!   consumer+route, consumer+service, route+service, consumer, route, service,
//!   global. The consumer scopes need a consumer, which only an authentication
//!   plugin identifies. None is implemented yet, so instances with a consumer are
//!   left out of chains today. **Hook for consumer scopes:** keep those
//!   instances in the chain as candidates tagged with their specificity; once an
//!   auth plugin (priority above every scoped plugin it must affect) has set
//!   `RequestState::consumer`, [`Chain::access`] picks, per plugin name, the
//!   most specific candidate whose consumer matches (or the consumer-less one).
//! - **Config validation** ([`validate_config`]) happens when a plugin is
//!   written (Admin API and declarative load) with Kong's schema: unknown fields
//!   and bad values are schema violations, and Kong's defaults are filled, so a
//!   GET shows the whole config. Each plugin's `parse` is the one definition
//!   of its fields, used both there and when compiling. Plugins not implemented
//!   here keep their config as given and do not run.

pub mod correlation_id;
pub mod cors;
pub mod ip_restriction;
pub mod rate_limiting;
pub mod request_size_limiting;
pub mod request_termination;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, Uri};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::model::{Entities, Plugin};
use crate::proxy::body::ProxyBody;
use crate::schema::fields::Fields;
use crate::schema::FieldErrors;

/// The plugins this gateway runs, with Kong 3.x's `PRIORITY` (higher first).
pub const IMPLEMENTED: &[(&str, u32)] = &[
    ("correlation-id", correlation_id::PRIORITY),
    ("cors", cors::PRIORITY),
    ("ip-restriction", ip_restriction::PRIORITY),
    ("rate-limiting", rate_limiting::PRIORITY),
    ("request-size-limiting", request_size_limiting::PRIORITY),
    ("request-termination", request_termination::PRIORITY),
];

/// A plugin's typed configuration, as compiled for the request path.
#[derive(Debug)]
pub enum Config {
    CorrelationId(correlation_id::Config),
    Cors(cors::Config),
    IpRestriction(ip_restriction::Config),
    RateLimiting(rate_limiting::Config),
    RequestSizeLimiting(request_size_limiting::Config),
    RequestTermination(request_termination::Config),
}

/// Reads a plugin's config with its schema: the typed config and Kong's output
/// shape (defaults filled), errors recorded in `f`. `None` for a plugin that
/// is not implemented.
fn parse(name: &str, f: &mut Fields) -> Option<(Config, Map<String, Value>)> {
    Some(match name {
        "correlation-id" => {
            let (c, out) = correlation_id::parse(f);
            (Config::CorrelationId(c), out)
        }
        "cors" => {
            let (c, out) = cors::parse(f);
            (Config::Cors(c), out)
        }
        "ip-restriction" => {
            let (c, out) = ip_restriction::parse(f);
            (Config::IpRestriction(c), out)
        }
        "rate-limiting" => {
            let (c, out) = rate_limiting::parse(f);
            (Config::RateLimiting(c), out)
        }
        "request-size-limiting" => {
            let (c, out) = request_size_limiting::parse(f);
            (Config::RequestSizeLimiting(c), out)
        }
        "request-termination" => {
            let (c, out) = request_termination::parse(f);
            (Config::RequestTermination(c), out)
        }
        _ => return None,
    })
}

/// Validates an implemented plugin's `config` and fills Kong's defaults.
/// `None` for a plugin not implemented here (its config is stored as given).
/// Errors are at paths relative to the plugin entity: `config.<field>`,
/// `config.@entity` for checks on the config record, and `@entity` for
/// checks on the plugin (ip-restriction's "at least one of").
pub fn validate_config(
    name: &str,
    config: Map<String, Value>,
) -> Option<Result<Map<String, Value>, FieldErrors>> {
    let mut f = Fields::new(config);
    let (_, out) = parse(name, &mut f)?;
    let inner = f.finish();
    if inner.is_empty() {
        return Some(Ok(out));
    }
    Some(Err(nest_under_config(inner)))
}

/// Where a plugin's `parse` records a check on the plugin entity itself
/// (Kong's top-level `entity_checks`, like ip-restriction's "at least one
/// of"); its own `entity_error`s are checks on the config record.
pub(crate) const PLUGIN_ENTITY: &str = "@plugin";

/// Field and config-record messages move under `config`; plugin-entity
/// messages go to the entity.
fn nest_under_config(mut inner: FieldErrors) -> FieldErrors {
    let mut out = FieldErrors::default();
    if let Some(m) = inner.0.remove(PLUGIN_ENTITY) {
        out.add_entity(m.as_str().unwrap_or_default());
    }
    if !inner.0.is_empty() {
        out.0.insert("config".into(), Value::Object(inner.0));
    }
    out
}

/// Kong's `typedefs.protocols_http`: the protocols of the http subsystem.
pub const HTTP_PROTOCOLS: &[&str] = &["grpc", "grpcs", "http", "https"];

/// The protocols an implemented plugin's schema allows (`None`: not
/// implemented here). ip-restriction also runs on streams in Kong (tcp, tls),
/// which this gateway does not proxy; its instances for them are accepted
/// and stored.
pub fn protocols(name: &str) -> Option<&'static [&'static str]> {
    match name {
        "ip-restriction" => Some(&["grpc", "grpcs", "http", "https", "tcp", "tls"]),
        n if priority(n).is_some() => Some(HTTP_PROTOCOLS),
        _ => None,
    }
}

pub fn priority(name: &str) -> Option<u32> {
    IMPLEMENTED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| *p)
}

/// Kong's `GET /schemas/plugins/{name}` body, `None` for an unknown plugin.
/// A bundled plugin not implemented here shows its common fields and a
/// `config` record without fields: its config is stored as given.
pub fn schema_json(name: &str) -> Option<Value> {
    if !crate::schema::BUNDLED_PLUGINS.contains(&name) {
        return None;
    }
    let config_fields = match name {
        "correlation-id" => correlation_id::schema(),
        "cors" => cors::schema(),
        "ip-restriction" => ip_restriction::schema(),
        "rate-limiting" => rate_limiting::schema(),
        "request-size-limiting" => request_size_limiting::schema(),
        "request-termination" => request_termination::schema(),
        _ => json!([]),
    };
    let foreign = |reference: &str| json!({"type": "foreign", "reference": reference, "eq": null, "default": null, "on_delete": "cascade"});
    Some(json!({
        "fields": [
            {"id": {"type": "string", "uuid": true, "auto": true}},
            {"name": {"type": "string", "required": true}},
            {"instance_name": {"type": "string"}},
            {"created_at": {"type": "integer", "timestamp": true, "auto": true}},
            {"updated_at": {"type": "integer", "timestamp": true, "auto": true}},
            {"consumer": foreign("consumers")},
            {"service": foreign("services")},
            {"route": foreign("routes")},
            {"protocols": {
                "type": "set", "required": true,
                "default": ["grpc", "grpcs", "http", "https"],
                "elements": {"type": "string", "one_of": protocols(name).unwrap_or(&crate::schema::net::KONG_PROTOCOLS)},
            }},
            {"enabled": {"type": "boolean", "default": true}},
            {"tags": {"type": "set", "elements": {"type": "string"}}},
            {"config": {"type": "record", "required": true, "fields": config_fields}},
        ]
    }))
}

/// The Kong type (`string`, `integer`, `number`, `boolean`, `array`) of a
/// config field of an implemented plugin, for coercing form-encoded bodies
/// as Kong does from the schema. `None` when unknown.
pub fn config_field_type(plugin: &str, field: &str) -> Option<String> {
    priority(plugin)?;
    let schema = schema_json(plugin)?;
    let config = schema["fields"]
        .as_array()?
        .iter()
        .find_map(|f| f.get("config"))?;
    config["fields"]
        .as_array()?
        .iter()
        .find_map(|f| f.get(field))
        .and_then(|f| f["type"].as_str())
        .map(String::from)
}

/// Why a snapshot cannot be built from a stored plugin.
#[derive(Debug, thiserror::Error)]
#[error("plugin `{name}` ({id}): {errors}; fix it through the Admin API (PATCH /plugins/{id}) or the declarative file")]
pub struct CompileError {
    pub name: String,
    pub id: Uuid,
    pub errors: FieldErrors,
}

/// One compiled plugin instance.
#[derive(Debug)]
pub struct Instance {
    pub id: Uuid,
    pub name: &'static str,
    pub priority: u32,
    http: bool,
    https: bool,
    pub config: Config,
}

/// How specific an instance's scope is; higher wins (Kong's order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Specificity {
    Global = 0,
    Service = 1,
    Route = 2,
    // Consumer = 3, ConsumerService = 5, ConsumerRoute = 6,
    // ConsumerRouteService = 7: see the module doc's hook.
    RouteService = 4,
}

/// Every enabled, implemented plugin of a set of entities, compiled once and
/// shared by the chains of all routes it applies to.
pub struct Index {
    compiled: Vec<(Arc<Instance>, Option<Uuid>, Option<Uuid>)>,
}

impl Index {
    /// Fails closed: a stored config the schema rejects (written by an older
    /// version that stored configs as given) stops the build rather than
    /// silently dropping, say, an ip-restriction.
    pub fn new(entities: &Entities) -> Result<Index, CompileError> {
        let mut compiled = Vec::new();
        for p in entities.plugins.iter().filter(|p| p.enabled) {
            // Consumer-scoped instances wait for authentication plugins.
            if p.consumer.is_some() {
                continue;
            }
            let Some(instance) = compile(p)? else {
                continue;
            };
            compiled.push((
                Arc::new(instance),
                p.route.map(|r| r.id),
                p.service.map(|s| s.id),
            ));
        }
        Ok(Index { compiled })
    }

    /// The chain of a route (of `service`, if it has one): per plugin name the
    /// most specific instance, sorted by priority, highest first.
    pub fn chain(&self, route: Uuid, service: Option<Uuid>) -> Chain {
        if self.compiled.is_empty() {
            return Chain::default();
        }
        let mut best: HashMap<&str, (Specificity, &Arc<Instance>)> = HashMap::new();
        for (instance, r, s) in &self.compiled {
            let specificity = match (r, s) {
                (Some(r), Some(s)) if *r == route && Some(*s) == service => {
                    Specificity::RouteService
                }
                (Some(r), None) if *r == route => Specificity::Route,
                (None, Some(s)) if Some(*s) == service => Specificity::Service,
                (None, None) => Specificity::Global,
                _ => continue,
            };
            let slot = best.entry(instance.name).or_insert((specificity, instance));
            if specificity > slot.0 {
                *slot = (specificity, instance);
            }
        }
        let mut list: Vec<Arc<Instance>> = best.into_values().map(|(_, i)| i.clone()).collect();
        // Ties cannot happen between names (one instance per name), but keep
        // the order stable across builds: by priority, then name.
        list.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.name.cmp(b.name)));
        let needs_client = list
            .iter()
            .any(|p| matches!(p.config, Config::IpRestriction(_) | Config::RateLimiting(_)));
        Chain {
            plugins: list.into_boxed_slice(),
            needs_client,
        }
    }
}

/// Compiles one stored plugin; `None` when it is not implemented here.
pub fn compile(p: &Plugin) -> Result<Option<Instance>, CompileError> {
    let Some((name, priority)) = IMPLEMENTED.iter().find(|(n, _)| *n == p.name) else {
        return Ok(None);
    };
    let config = match &p.config {
        Value::Object(m) => m.clone(),
        Value::Null => Map::new(),
        _ => {
            return Err(CompileError {
                name: p.name.clone(),
                id: p.id,
                errors: FieldErrors::field("config", "expected a record"),
            })
        }
    };
    let mut f = Fields::new(config);
    let Some((mut config, _)) = parse(name, &mut f) else {
        return Ok(None);
    };
    let errors = f.finish();
    if !errors.is_empty() {
        return Err(CompileError {
            name: p.name.clone(),
            id: p.id,
            errors: nest_under_config(errors),
        });
    }
    // rate-limiting keys remote counters by the instance's scope, as Kong.
    if let Config::RateLimiting(c) = &mut config {
        c.route_id = p.route.map_or(Uuid::nil(), |r| r.id);
        c.service_id = p.service.map_or(Uuid::nil(), |s| s.id);
    }
    let has = |proto: &str| p.protocols.iter().any(|x| x == proto);
    Ok(Some(Instance {
        id: p.id,
        name,
        priority: *priority,
        http: has("http") || has("grpc"),
        https: has("https") || has("grpcs"),
        config,
    }))
}

/// The plugins of one route, highest priority first.
#[derive(Debug, Default)]
pub struct Chain {
    plugins: Box<[Arc<Instance>]>,
    /// A plugin reads the client address: worth working out the real one.
    needs_client: bool,
}

/// What the access phase sees of a request.
pub struct Request<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a mut HeaderMap,
    /// The client address after PROXY protocol and `trusted_ips`/real-IP
    /// handling: nginx's `$remote_addr` in Kong.
    pub client: IpAddr,
    pub https: bool,
    pub request_id: &'a HeaderValue,
    /// The matched route and its service (rate-limiting's `limit_by`,
    /// proxy-cache's key).
    pub route: Uuid,
    pub service: Option<Uuid>,
}

/// What plugins leave during `access` for later phases and for the proxy.
#[derive(Debug, Default)]
pub struct RequestState {
    /// correlation-id's value, echoed downstream when configured.
    pub correlation_id: Option<HeaderValue>,
    /// The client's Origin, for cors' header filter.
    pub cors_origin: Option<HeaderValue>,
    /// A preflight: cors' headers are made in access (or by the upstream).
    pub cors_skip: bool,
    /// request-size-limiting's limit in bytes for a body without
    /// Content-Length, enforced while it streams upstream.
    pub body_limit: Option<u64>,
    /// The consumer an authentication plugin identified (Kong's
    /// `kong.client.get_consumer()`), or the anonymous consumer: picks the
    /// consumer-scoped instances and rate-limiting's `limit_by = consumer`.
    pub consumer: Option<Uuid>,
    /// The credential it was identified by (`limit_by = credential`).
    pub credential: Option<Uuid>,
    /// rate-limiting's usage, for its headers on the upstream's response.
    pub rate_limit: Option<rate_limiting::Usage>,
    /// Which instances ran `access` (bit i for the chain's i-th plugin;
    /// chains are short, and 64 plugins is more than Kong bundles per route).
    ran: u64,
}

impl Chain {
    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }

    /// Whether a plugin reads [`Request::client`]; when none does, the
    /// connection's address will do and no header is parsed for it.
    pub fn needs_client(&self) -> bool {
        self.needs_client
    }

    pub fn len(&self) -> usize {
        self.plugins.len()
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.plugins.iter().map(|p| p.name)
    }

    pub fn instances(&self) -> &[Arc<Instance>] {
        &self.plugins
    }

    /// Runs the access phase in priority order; a plugin's response ends the
    /// request and the plugins after it do not run. Only a remote-counter
    /// rate-limiting (redis, cluster) awaits; every other plugin completes
    /// on the first poll.
    pub async fn access(
        &self,
        req: &mut Request<'_>,
        state: &mut RequestState,
    ) -> Option<Response<ProxyBody>> {
        for (i, p) in self.plugins.iter().enumerate() {
            if !(if req.https { p.https } else { p.http }) {
                continue;
            }
            state.ran |= 1u64 << (i % 64);
            let exit = match &p.config {
                Config::CorrelationId(c) => {
                    correlation_id::access(c, req, state);
                    None
                }
                Config::Cors(c) => cors::access(c, req, state),
                Config::IpRestriction(c) => ip_restriction::access(c, req),
                Config::RateLimiting(c) => rate_limiting::access(c, p.id, req, state).await,
                Config::RequestSizeLimiting(c) => request_size_limiting::access(c, req, state),
                Config::RequestTermination(c) => request_termination::access(c, req),
            };
            if exit.is_some() {
                return exit;
            }
        }
        None
    }

    /// Runs the header filter of every plugin whose access phase ran.
    pub fn header_filter(&self, state: &RequestState, headers: &mut HeaderMap) {
        for (i, p) in self.plugins.iter().enumerate() {
            if state.ran & (1u64 << (i % 64)) == 0 {
                continue;
            }
            match &p.config {
                Config::CorrelationId(c) => correlation_id::header_filter(c, state, headers),
                Config::Cors(c) => cors::header_filter(c, state, headers),
                Config::RateLimiting(_) => rate_limiting::header_filter(state, headers),
                Config::IpRestriction(_)
                | Config::RequestSizeLimiting(_)
                | Config::RequestTermination(_) => {}
            }
        }
    }
}

/// Kong's `typedefs.header_name` check.
pub(crate) fn header_name(f: &mut Fields, field: &str, value: &str) -> Option<HeaderName> {
    let ok = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    match ok
        .then(|| HeaderName::from_bytes(value.as_bytes()).ok())
        .flatten()
    {
        Some(n) => Some(n),
        None => {
            f.error(
                field,
                format!(
                    "bad header name '{value}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
                ),
            );
            None
        }
    }
}

/// `kong.response.exit(status, {message = ...})`: JSON, no request id.
pub(crate) fn exit_json(status: u16, body: &Value) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::full(bytes::Bytes::from(body.to_string())));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

/// `kong.response.error(status, message)`: Kong's error body with the request id.
pub(crate) fn error(status: u16, message: &str, id: &HeaderValue) -> Response<ProxyBody> {
    let status = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::FORBIDDEN);
    crate::proxy::error(status, message, id)
}

/// Drives a future that completes without waiting, as [`Chain::access`] does
/// for chains without a remote-counter rate-limiting: for tests and benches
/// that call it outside a runtime. `None` if it would wait.
pub fn now_or_never<F: std::future::Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}
