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

pub mod acl;
pub mod basic_auth;
pub mod consumers;
pub mod correlation_id;
pub mod cors;
pub mod file_log;
pub mod http_log;
pub mod ip_restriction;
pub mod key_auth;
pub mod log;
pub mod prometheus;
pub mod proxy_cache;
pub mod rate_limiting;
pub mod request_size_limiting;
pub mod request_termination;
pub mod request_transformer;
pub mod response_transformer;
#[cfg(test)]
mod tests;
pub mod transform;

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
    ("acl", acl::PRIORITY),
    ("basic-auth", basic_auth::PRIORITY),
    ("correlation-id", correlation_id::PRIORITY),
    ("cors", cors::PRIORITY),
    ("file-log", file_log::PRIORITY),
    ("http-log", http_log::PRIORITY),
    ("ip-restriction", ip_restriction::PRIORITY),
    ("key-auth", key_auth::PRIORITY),
    ("prometheus", prometheus::PRIORITY),
    ("proxy-cache", proxy_cache::PRIORITY),
    ("rate-limiting", rate_limiting::PRIORITY),
    ("request-size-limiting", request_size_limiting::PRIORITY),
    ("request-termination", request_termination::PRIORITY),
    ("request-transformer", request_transformer::PRIORITY),
    ("response-transformer", response_transformer::PRIORITY),
];

/// A plugin's typed configuration, as compiled for the request path.
#[derive(Debug)]
pub enum Config {
    Acl(acl::Config),
    BasicAuth(basic_auth::Config),
    CorrelationId(correlation_id::Config),
    Cors(cors::Config),
    FileLog(file_log::Config),
    HttpLog(http_log::Config),
    IpRestriction(ip_restriction::Config),
    KeyAuth(key_auth::Config),
    Prometheus(prometheus::Config),
    ProxyCache(proxy_cache::Config),
    RequestTransformer(request_transformer::Config),
    ResponseTransformer(response_transformer::Config),
    RateLimiting(rate_limiting::Config),
    RequestSizeLimiting(request_size_limiting::Config),
    RequestTermination(request_termination::Config),
}

/// Reads a plugin's config with its schema: the typed config and Kong's output
/// shape (defaults filled), errors recorded in `f`. `None` for a plugin that
/// is not implemented.
fn parse(name: &str, f: &mut Fields) -> Option<(Config, Map<String, Value>)> {
    Some(match name {
        "acl" => {
            let (c, out) = acl::parse(f);
            (Config::Acl(c), out)
        }
        "basic-auth" => {
            let (c, out) = basic_auth::parse(f);
            (Config::BasicAuth(c), out)
        }
        "key-auth" => {
            let (c, out) = key_auth::parse(f);
            (Config::KeyAuth(c), out)
        }
        "file-log" => {
            let (c, out) = file_log::parse(f);
            (Config::FileLog(c), out)
        }
        "http-log" => {
            let (c, out) = http_log::parse(f);
            (Config::HttpLog(c), out)
        }
        "prometheus" => {
            let (c, out) = prometheus::parse(f);
            (Config::Prometheus(c), out)
        }
        "proxy-cache" => {
            let (c, out) = proxy_cache::parse(f);
            (Config::ProxyCache(c), out)
        }
        "request-transformer" => {
            let (c, out) = request_transformer::parse(f);
            (Config::RequestTransformer(c), out)
        }
        "response-transformer" => {
            let (c, out) = response_transformer::parse(f);
            (Config::ResponseTransformer(c), out)
        }
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
        "acl" => acl::schema(),
        "basic-auth" => basic_auth::schema(),
        "key-auth" => key_auth::schema(),
        "file-log" => file_log::schema(),
        "http-log" => http_log::schema(),
        "prometheus" => prometheus::schema(),
        "proxy-cache" => proxy_cache::schema(),
        "request-transformer" => request_transformer::schema(),
        "response-transformer" => response_transformer::schema(),
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

/// How specific an instance's scope is; higher wins (Kong's order:
/// consumer+route+service, consumer+route, consumer+service, route+service,
/// consumer, route, service, global).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Specificity {
    Global = 0,
    Service = 1,
    Route = 2,
    Consumer = 3,
    RouteService = 4,
    ConsumerService = 5,
    ConsumerRoute = 6,
    ConsumerRouteService = 7,
}

/// One compiled instance and its scope.
struct Scoped {
    instance: Arc<Instance>,
    route: Option<Uuid>,
    service: Option<Uuid>,
    consumer: Option<Uuid>,
}

/// Every enabled, implemented plugin of a set of entities, compiled once and
/// shared by the chains of all routes it applies to, with the consumers and
/// credentials the authentication plugins read.
pub struct Index {
    compiled: Vec<Scoped>,
    directory: Arc<consumers::Directory>,
}

impl Index {
    /// Fails closed: a stored config the schema rejects (written by an older
    /// version that stored configs as given) stops the build rather than
    /// silently dropping, say, an ip-restriction.
    pub fn new(entities: &Entities) -> Result<Index, CompileError> {
        let mut compiled = Vec::new();
        for p in entities.plugins.iter().filter(|p| p.enabled) {
            let Some(instance) = compile(p)? else {
                continue;
            };
            compiled.push(Scoped {
                instance: Arc::new(instance),
                route: p.route.map(|r| r.id),
                service: p.service.map(|s| s.id),
                consumer: p.consumer.map(|c| c.id),
            });
        }
        let directory = Arc::new(consumers::Directory::new(entities));
        Ok(Index {
            compiled,
            directory,
        })
    }

    /// The chain of a route (of `service`, if it has one): per plugin name the
    /// most specific instance without a consumer, and the consumer-scoped
    /// candidates that may override it once a consumer is known; sorted by
    /// priority, highest first.
    pub fn chain(&self, route: Uuid, service: Option<Uuid>) -> Chain {
        if self.compiled.is_empty() {
            return Chain::default();
        }
        let mut slots: HashMap<&str, Slot> = HashMap::new();
        for p in &self.compiled {
            let on_route = match p.route {
                Some(r) if r != route => continue,
                r => r.is_some(),
            };
            let on_service = match p.service {
                Some(s) if Some(s) != service => continue,
                s => s.is_some(),
            };
            let specificity = match (p.consumer.is_some(), on_route, on_service) {
                (false, false, false) => Specificity::Global,
                (false, false, true) => Specificity::Service,
                (false, true, false) => Specificity::Route,
                (false, true, true) => Specificity::RouteService,
                (true, false, false) => Specificity::Consumer,
                (true, false, true) => Specificity::ConsumerService,
                (true, true, false) => Specificity::ConsumerRoute,
                (true, true, true) => Specificity::ConsumerRouteService,
            };
            let slot = slots.entry(p.instance.name).or_insert_with(|| Slot {
                priority: p.instance.priority,
                name: p.instance.name,
                default: None,
                by_consumer: Vec::new().into_boxed_slice(),
            });
            match p.consumer {
                Some(c) => {
                    let mut list = std::mem::take(&mut slot.by_consumer).into_vec();
                    list.push((c, specificity, p.instance.clone()));
                    slot.by_consumer = list.into_boxed_slice();
                }
                None => {
                    if slot.default.as_ref().is_none_or(|(s, _)| specificity > *s) {
                        slot.default = Some((specificity, p.instance.clone()));
                    }
                }
            }
        }
        let mut list: Vec<Slot> = slots.into_values().collect();
        for slot in &mut list {
            // Most specific first, so the first match wins.
            slot.by_consumer.sort_by_key(|c| std::cmp::Reverse(c.1));
        }
        // One slot per name; keep the order stable across builds: by
        // priority, then name.
        list.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.name.cmp(b.name)));
        let instances = || {
            list.iter().flat_map(|s| {
                s.default
                    .iter()
                    .map(|(_, i)| i)
                    .chain(s.by_consumer.iter().map(|(_, _, i)| i))
            })
        };
        let needs_client = instances()
            .any(|p| matches!(p.config, Config::IpRestriction(_) | Config::RateLimiting(_)));
        let needs_directory = instances().any(|p| {
            matches!(
                p.config,
                Config::KeyAuth(_) | Config::BasicAuth(_) | Config::Acl(_)
            )
        });
        let has_log = instances().any(|p| p.config.logs());
        let logs_headers =
            instances().any(|p| matches!(p.config, Config::HttpLog(_) | Config::FileLog(_)));
        let has_prometheus = instances().any(|p| matches!(p.config, Config::Prometheus(_)));
        Chain {
            directory: needs_directory.then(|| self.directory.clone()),
            slots: list.into_boxed_slice(),
            needs_client,
            has_log,
            logs_headers,
            has_prometheus,
            metrics: None,
            logged: None,
        }
    }
}

/// One plugin name's instances for a route.
#[derive(Debug)]
struct Slot {
    priority: u32,
    name: &'static str,
    /// The most specific instance without a consumer.
    default: Option<(Specificity, Arc<Instance>)>,
    /// Instances scoped to a consumer, most specific first; empty (and no
    /// cost) unless a consumer has this plugin.
    by_consumer: Box<[(Uuid, Specificity, Arc<Instance>)]>,
}

impl Slot {
    /// Kong's precedence for the request's consumer, if any.
    fn resolve(&self, consumer: Option<Uuid>) -> Option<&Arc<Instance>> {
        if let Some(c) = consumer {
            let floor = self.default.as_ref().map(|(s, _)| *s);
            for (id, specificity, instance) in self.by_consumer.iter() {
                if *id == c && floor.is_none_or(|f| *specificity > f) {
                    return Some(instance);
                }
            }
        }
        self.default.as_ref().map(|(_, i)| i)
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
    slots: Box<[Slot]>,
    /// A plugin reads the client address: worth working out the real one.
    needs_client: bool,
    /// The snapshot's consumers, for a chain with auth or acl plugins.
    directory: Option<Arc<consumers::Directory>>,
    /// A plugin runs in the log phase (prometheus, http-log, file-log).
    has_log: bool,
    /// A plugin logs the request and response headers.
    logs_headers: bool,
    has_prometheus: bool,
    /// The route's prometheus series ([`Chain::attach_metrics`]).
    metrics: Option<Arc<prometheus::RouteMetrics>>,
    /// The route and service as the log entry writes them
    /// ([`Chain::attach_logged`]).
    logged: Option<Box<log::Logged>>,
}

impl Config {
    /// Runs in the log phase.
    fn logs(&self) -> bool {
        matches!(
            self,
            Config::Prometheus(_) | Config::HttpLog(_) | Config::FileLog(_)
        )
    }
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
/// It lives in the future of a request whose route has plugins (a route
/// without them never makes one): what is large and set by few plugins is
/// boxed, so the future stays small.
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
    /// The credential it was identified by (`limit_by = credential`); none
    /// for the anonymous consumer.
    pub credential: Option<Uuid>,
    /// The request's URI as a plugin rewrote it (key-auth's
    /// `hide_credentials` in the query string); the upstream's is built
    /// from it.
    pub uri: Option<Box<Uri>>,
    /// request-transformer's `replace.uri`: the upstream's path, whatever
    /// the route and service would make of the client's.
    pub upstream_path: Option<Box<str>>,
    /// request-transformer's `http_method`.
    pub method: Option<Method>,
    /// request-transformer's body changes, applied by the proxy to a JSON or
    /// form body, which it then reads whole.
    pub body_changes: Option<Arc<transform::Fieldset>>,
    /// response-transformer's JSON body changes, applied by the proxy to a
    /// JSON response, which it then reads whole.
    pub response_json: Option<Arc<transform::Fieldset>>,
    /// proxy-cache's decision and key, for its headers and the proxy.
    pub proxy_cache: Option<proxy_cache::Pending>,
    /// rate-limiting's usage, for its headers on the upstream's response
    /// (not boxed: a request without plugins has no request state, and
    /// one with rate-limiting then allocates nothing for it).
    pub rate_limit: Option<rate_limiting::Usage>,
    /// Which slots ran `access` (bit i for the chain's i-th plugin name;
    /// chains are short, and 64 plugins is more than Kong bundles per route).
    ran: u64,
    /// Which of them were resolved with a consumer known, so the header
    /// filter runs the same instance.
    with_consumer: u64,
}

/// The directory of a chain without authentication plugins (which is then
/// not read): made once, not on every request.
static NO_DIRECTORY: std::sync::LazyLock<consumers::Directory> =
    std::sync::LazyLock::new(consumers::Directory::default);

impl Chain {
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Whether a plugin runs in the log phase: the proxy then keeps what the
    /// phase reads ([`log::Pending`]).
    pub fn has_log(&self) -> bool {
        self.has_log
    }

    /// Whether the log phase needs the request and response headers.
    pub fn logs_headers(&self) -> bool {
        self.logs_headers
    }

    /// Gives a chain with prometheus its route's series (labelled with the
    /// service's and route's names, or ids when unnamed), when the snapshot
    /// is built.
    pub fn attach_metrics(&mut self, route: Uuid, service_name: &str, route_name: &str) {
        if self.has_prometheus {
            self.metrics = Some(prometheus::REGISTRY.route(route, service_name, route_name));
        }
    }

    pub fn wants_metrics(&self) -> bool {
        self.has_prometheus
    }

    /// Gives a chain that logs entries (http-log, file-log) its route and
    /// service serialized once, when the snapshot is built, rather than on
    /// every request.
    pub fn attach_logged(
        &mut self,
        route: &crate::model::Route,
        service: Option<&crate::model::Service>,
    ) {
        if self.logs_headers {
            self.logged = log::Logged::new(route, service).map(Box::new);
        }
    }

    pub fn logged(&self) -> Option<&log::Logged> {
        self.logged.as_deref()
    }

    /// The log phase: every log plugin of the chain, for the instance that
    /// applies to the request's consumer. Kong runs it whatever answered, a
    /// plugin's 401 or 429 included.
    pub fn log(&self, p: &log::Pending) {
        for slot in self.slots.iter() {
            let Some(instance) = slot.resolve(p.consumer) else {
                continue;
            };
            match &instance.config {
                Config::Prometheus(c) => {
                    if let Some(m) = &self.metrics {
                        prometheus::log(c, m, p);
                    }
                }
                Config::HttpLog(c) => http_log::log(c, p),
                Config::FileLog(c) => file_log::log(c, p),
                _ => {}
            }
        }
    }

    /// Whether a plugin reads [`Request::client`]; when none does, the
    /// connection's address will do and no header is parsed for it.
    pub fn needs_client(&self) -> bool {
        self.needs_client
    }

    /// How many plugin names the chain has.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.slots.iter().map(|s| s.name)
    }

    /// The instance of each plugin name that runs for a request without a
    /// consumer.
    pub fn instances(&self) -> impl Iterator<Item = &Arc<Instance>> + '_ {
        self.slots.iter().filter_map(|s| s.resolve(None))
    }

    /// Runs the access phase in priority order; a plugin's response ends the
    /// request and the plugins after it do not run. Each plugin name's
    /// instance is picked when its turn comes, so a consumer identified by
    /// an authentication plugin selects the consumer-scoped instances of
    /// the plugins after it. Only a remote-counter rate-limiting (redis,
    /// cluster) awaits; every other plugin completes on the first poll.
    /// A plugin's answer is boxed: it is rare, and the `None` of every
    /// other request then moves as one word.
    pub async fn access(
        &self,
        req: &mut Request<'_>,
        state: &mut RequestState,
    ) -> Option<Box<Response<ProxyBody>>> {
        let directory = self.directory.as_deref().unwrap_or(&NO_DIRECTORY);
        for (i, slot) in self.slots.iter().enumerate() {
            let Some(p) = slot.resolve(state.consumer) else {
                continue;
            };
            if !(if req.https { p.https } else { p.http }) {
                continue;
            }
            let bit = 1u64 << (i % 64);
            state.ran |= bit;
            if state.consumer.is_some() {
                state.with_consumer |= bit;
            }
            let exit = match &p.config {
                Config::Acl(c) => acl::access(c, directory, req, state),
                Config::BasicAuth(c) => basic_auth::access(c, directory, req, state),
                Config::CorrelationId(c) => {
                    correlation_id::access(c, req, state);
                    None
                }
                Config::Cors(c) => cors::access(c, req, state),
                Config::IpRestriction(c) => ip_restriction::access(c, req),
                Config::KeyAuth(c) => key_auth::access(c, directory, req, state),
                Config::RequestTransformer(c) => {
                    request_transformer::access(c, req, state);
                    None
                }
                Config::ResponseTransformer(c) => {
                    response_transformer::access(c, state);
                    None
                }
                Config::Prometheus(_) | Config::HttpLog(_) | Config::FileLog(_) => None,
                Config::ProxyCache(c) => proxy_cache::access(c, p.id, req, state),
                Config::RateLimiting(c) if !rate_limiting::is_remote(c) => {
                    rate_limiting::access_local(c, p.id, req, state)
                }
                Config::RateLimiting(c) => rate_limiting::access(c, p.id, req, state).await,
                Config::RequestSizeLimiting(c) => request_size_limiting::access(c, req, state),
                Config::RequestTermination(c) => request_termination::access(c, req),
            };
            if let Some(r) = exit {
                return Some(Box::new(r));
            }
        }
        None
    }

    /// The upstream's response, after the header filters: proxy-cache
    /// keeps a cacheable one as it streams.
    pub fn on_response(
        &self,
        state: &mut RequestState,
        resp: Response<ProxyBody>,
    ) -> Response<ProxyBody> {
        if state.proxy_cache.is_none() {
            return resp;
        }
        for slot in self.slots.iter() {
            if let Some(p) = slot.resolve(state.consumer) {
                if let Config::ProxyCache(c) = &p.config {
                    return proxy_cache::on_response(c, state, resp);
                }
            }
        }
        resp
    }

    /// Runs the header filter of every plugin whose access phase ran.
    pub fn header_filter(&self, state: &RequestState, headers: &mut HeaderMap) {
        for (i, slot) in self.slots.iter().enumerate() {
            let bit = 1u64 << (i % 64);
            if state.ran & bit == 0 {
                continue;
            }
            let consumer = (state.with_consumer & bit != 0)
                .then_some(state.consumer)
                .flatten();
            let Some(p) = slot.resolve(consumer) else {
                continue;
            };
            match &p.config {
                Config::CorrelationId(c) => correlation_id::header_filter(c, state, headers),
                Config::Cors(c) => cors::header_filter(c, state, headers),
                Config::ResponseTransformer(c) => response_transformer::header_filter(c, headers),
                Config::RateLimiting(c) => rate_limiting::header_filter(c, state, headers),
                Config::ProxyCache(c) => proxy_cache::header_filter(c, state, headers),
                Config::Acl(_)
                | Config::Prometheus(_)
                | Config::HttpLog(_)
                | Config::FileLog(_)
                | Config::BasicAuth(_)
                | Config::IpRestriction(_)
                | Config::KeyAuth(_)
                | Config::RequestTransformer(_)
                | Config::RequestSizeLimiting(_)
                | Config::RequestTermination(_) => {}
            }
        }
    }
}

/// Kong's `anonymous` fallback of an authentication plugin: the request goes
/// on as that consumer, marked `X-Anonymous-Consumer: true`. A configured
/// anonymous consumer that does not exist is a configuration error Kong
/// answers with 500.
pub(crate) fn anonymous(
    directory: &consumers::Directory,
    key: &str,
    req: &mut Request<'_>,
    state: &mut RequestState,
) -> Option<Response<ProxyBody>> {
    match directory.anonymous(key) {
        Some(c) => {
            consumers::set_consumer(req.headers, c, None);
            state.consumer = Some(c.id);
            None
        }
        None => {
            tracing::error!(
                request_id = ?req.request_id,
                "anonymous consumer {key} is configured but doesn't exist: create it or change the plugin's `anonymous`"
            );
            Some(error(500, "An unexpected error occurred", req.request_id))
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
