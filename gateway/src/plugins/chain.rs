//! A route's compiled chain and its phases on the request path: access,
//! header filter, the response hooks, and the log phase.

use super::*;

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, Uri};
use serde_json::Value;
use uuid::Uuid;

use crate::proxy::body::ProxyBody;
use crate::schema::fields::Fields;

/// The plugins of one route, highest priority first.
#[derive(Debug, Default)]
pub struct Chain {
    pub(super) slots: Box<[Slot]>,
    /// A plugin reads the client address: worth working out the real one.
    pub(super) needs_client: bool,
    /// The snapshot's consumers, for a chain with auth or acl plugins.
    pub(super) directory: Option<Arc<consumers::Directory>>,
    /// A plugin runs in the log phase (prometheus, http-log, file-log).
    pub(super) has_log: bool,
    /// A plugin logs the request and response headers.
    pub(super) logs_headers: bool,
    pub(super) has_prometheus: bool,
    /// The route's prometheus series ([`Chain::attach_metrics`]).
    pub(super) metrics: Option<Arc<prometheus::RouteMetrics>>,
    /// The route and service as the log entry writes them
    /// ([`Chain::attach_logged`]).
    pub(super) logged: Option<Box<log::Logged>>,
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

    /// Where a consumer is in the snapshot's entities, for a chain that logs
    /// entries (it keeps the snapshot's directory of consumers).
    pub fn consumer_entity(&self, id: Uuid) -> Option<usize> {
        self.directory.as_deref()?.consumer(id).map(|c| c.entity)
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
