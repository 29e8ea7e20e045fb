//! The request path: route lookup in the current snapshot, upstream pick,
//! forwarding headers, pooled upstream connection, streamed bodies.

pub mod balancer;
pub mod body;
pub mod forwarded;
pub mod pool;
mod request_id;
pub mod strict;
mod upstream_path;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;

use crate::config::Limits;
use crate::model::Protocol;
use crate::plugins::{self, RequestState};
use crate::router::RouteRequest;
use crate::snapshot::{RouteEntry, ServiceEntry, Snapshot};
use crate::status::Status;
use body::{ClientBodyError, Progress, ProxyBody, RequestBody};
use forwarded::{ConnectionInfo, Forwarding};
use pool::Conn;

pub use request_id::REQUEST_ID;

/// What every proxy connection shares.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub status: Arc<Status>,
    pub forwarding: Forwarding,
    pub limits: Limits,
}

pub async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnectionInfo>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let _guard = shared.status.request();
    let id = request_id::next();
    let version = req.version();
    let has_body = !hyper::body::Body::is_end_stream(req.body());
    let mut resp = proxy(&shared, &conn, req, &id).await;
    // An answer made here to a request whose body was never read (no route,
    // refused): close rather than read on through the body. hyper 1.12 can
    // interleave its own 400 with a queued response when a broken body
    // follows (found by fuzzing, `artifacts/crashes/http_connection`).
    if has_body && resp.body().is_local() {
        resp = closing(resp);
    }
    resp.headers_mut().insert(&REQUEST_ID, id);
    // Answer in the client's HTTP version, whatever the upstream spoke. For
    // HTTP/1.0, hyper answers in 1.0 anyway, and keeps the connection (adding
    // `Connection: keep-alive`) only when the response says 1.1.
    *resp.version_mut() = if version == Version::HTTP_10 {
        Version::HTTP_11
    } else {
        version
    };
    Ok(resp)
}

async fn proxy(
    shared: &Shared,
    conn: &ConnectionInfo,
    mut req: Request<Incoming>,
    id: &HeaderValue,
) -> Response<ProxyBody> {
    // Refused before its body is read: the connection closes after the
    // answer, as nginx does, instead of reading on through a body and a next
    // request from a client already known to misbehave.
    if let Err(r) = strict::check(&mut req, &shared.limits) {
        return closing(error(r.status, r.message, id));
    }
    let max_body = shared.limits.client_max_body_size;
    if max_body > 0 && hyper::body::Body::size_hint(req.body()).lower() > max_body {
        return closing(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Payload too large",
            id,
        ));
    }
    let snapshot = shared.snapshot.load_full();
    // Cheap clones (shared buffers) so the request can be changed below.
    let uri = req.uri().clone();
    let host_header = req.headers().get(header::HOST).cloned();
    let host = match uri.authority() {
        Some(a) => a.as_str(),
        None => host_header
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .unwrap_or(""),
    };
    let path = uri.path();
    let found = snapshot.router.find(&RouteRequest {
        method: req.method(),
        host,
        path,
        headers: req.headers(),
    });
    let Some(found) = found else {
        return error(
            StatusCode::NOT_FOUND,
            "no Route matched with those values",
            id,
        );
    };
    let route = &snapshot.routes[found.route];
    let https = conn.scheme == Protocol::Https;
    if !(if https { route.https } else { route.http }) {
        return protocol_mismatch(route, &req, id);
    }
    // A route without plugins goes upstream on this one check, with nothing
    // of the plugins' machinery in its way.
    let plugins = &route.plugins;
    let matched = found.matched_path_len;
    if plugins.is_empty() {
        return upstream(
            shared,
            conn,
            req,
            &uri,
            host,
            &host_header,
            matched,
            route,
            None,
            id,
        )
        .await;
    }
    // The plugins' access phase, then the upstream; the header filter on
    // whatever answers, and the log phase's record.
    let route_index = found.route;
    let mut state = RequestState::default();
    // What the log phase reads, for a chain with log plugins only; boxed,
    // as the body's observer will be.
    let mut pending = plugins.has_log().then(|| {
        log_start(
            &snapshot,
            route_index,
            &req,
            conn.client,
            plugins.logs_headers(),
        )
    });
    let method = req.method().clone();
    let client = if plugins.needs_client() {
        forwarded::client_ip(req.headers(), conn, &shared.forwarding)
    } else {
        conn.client
    };
    if let Some(p) = pending.as_mut() {
        p.client = client;
    }
    let mut view = plugins::Request {
        method: &method,
        uri: &uri,
        headers: req.headers_mut(),
        client,
        https,
        request_id: id,
        route: route.id,
        service: route.service.as_ref().map(|s| s.id),
    };
    let exit = plugins.access(&mut view, &mut state).await;
    let asked = pending.as_ref().map(|_| std::time::Instant::now());
    let plugin_answered = exit.is_some();
    let mut resp = match exit {
        Some(r) => *r,
        None => {
            upstream(
                shared,
                conn,
                req,
                &uri,
                host,
                &host_header,
                matched,
                route,
                Some(&mut state),
                id,
            )
            .await
        }
    };
    // The upstream's answer, not the gateway's own error.
    let from_upstream = !plugin_answered && !resp.body().is_local();
    if let Some(changes) = state.response_json.take() {
        if plugins::response_transformer::is_json(resp.headers()) {
            resp = change_json_response(resp, &changes, id).await;
        }
    }
    plugins.header_filter(&state, resp.headers_mut());
    // After the header filters, as Kong's proxy-cache decides in its own
    // (priority 100, after response-transformer's): the headers it sees
    // are the ones the client gets.
    if from_upstream && state.proxy_cache.is_some() {
        resp = plugins.on_response(&mut state, resp);
    }
    if let Some(mut p) = pending {
        p.consumer = state.consumer;
        p.status = resp.status().as_u16();
        p.source = match (resp.body().is_local(), plugin_answered) {
            (false, _) => plugins::log::Source::Service,
            (true, true) => plugins::log::Source::Kong,
            (true, false) if resp.status().is_server_error() => plugins::log::Source::Error,
            (true, false) => plugins::log::Source::Kong,
        };
        if let Some(asked) = asked {
            p.kong_latency_ms = asked.duration_since(p.started).as_millis() as u64;
            if !plugin_answered && !resp.body().is_local() {
                p.upstream_latency_ms = Some(asked.elapsed().as_millis() as u64);
            }
        }
        p.head_size = head_size(resp.headers());
        if p.request_headers.is_some() {
            p.response_headers = Some(resp.headers().clone());
        }
        resp = resp.map(|b| b.observed(p));
    }
    resp
}

/// The request upstream: its URI, forwarding headers and body, with what
/// the plugins' access phase changed (`state`; `None` without plugins).
#[allow(clippy::too_many_arguments)]
async fn upstream(
    shared: &Shared,
    conn: &ConnectionInfo,
    mut req: Request<Incoming>,
    uri: &http::Uri,
    host: &str,
    host_header: &Option<HeaderValue>,
    matched: usize,
    route: &RouteEntry,
    mut state: Option<&mut RequestState>,
    id: &HeaderValue,
) -> Response<ProxyBody> {
    let Some(service) = route.service.as_deref() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no Service found with those values",
            id,
        );
    };
    // A plugin's rewrite (key-auth hiding its key) keeps the path, so
    // the route's match length still holds.
    let rewritten = state.as_mut().and_then(|s| s.uri.take());
    let client_uri = rewritten.as_deref().unwrap_or(uri);
    let Some(mut upstream_uri) = upstream_path::build(client_uri, matched, route, service) else {
        return error(StatusCode::BAD_REQUEST, "Bad request", id);
    };
    if let Some(p) = state.as_mut().and_then(|s| s.upstream_path.take()) {
        upstream_uri = upstream_path::with_path(&upstream_uri, &p);
    }
    let path = uri.path();
    let stripped = route.strip_path.then(|| &path[..matched.min(path.len())]);
    // Only preserve_host needs the client's Host later: the URI's in the
    // absolute form (RFC 9112 3.2.2) and in HTTP/2, else the Host header.
    let original_host = match (route.preserve_host, uri.authority()) {
        (false, _) => None,
        (true, Some(a)) => HeaderValue::from_str(a.as_str()).ok(),
        (true, None) => host_header.clone(),
    };

    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    forwarded::apply(
        headers,
        conn,
        &shared.forwarding,
        host_without_port(host),
        path,
        stripped,
    );
    headers.insert(&REQUEST_ID, id.clone());
    *req.uri_mut() = upstream_uri;
    *req.version_mut() = Version::HTTP_11;
    if let Some(m) = state.as_mut().and_then(|s| s.method.take()) {
        *req.method_mut() = m;
    }

    let max_body = shared.limits.client_max_body_size;
    let body_limit = state.as_ref().and_then(|s| s.body_limit);
    let (mut parts, mut body) = req.into_parts();
    let changed = match state.as_mut().and_then(|s| s.body_changes.take()) {
        None => None,
        Some(changes) => {
            let limit = changed_body_limit(max_body, body_limit);
            let timeout = shared.limits.client_body_timeout;
            // Boxed: rare, and the future of every other request stays small.
            match Box::pin(plugins::request_transformer::read_and_change(
                &changes,
                &mut parts.headers,
                &mut body,
                limit,
                timeout,
            ))
            .await
            {
                Ok(b) => b,
                Err(e) => return client_body_error(e, id),
            }
        }
    };
    let progress =
        (changed.is_none() && !hyper::body::Body::is_end_stream(&body)).then(Progress::new);
    let mut body = RequestBody::new(
        body,
        progress.clone(),
        max_body,
        shared.limits.client_body_timeout,
    )
    .with_plugin_limit(body_limit);
    if let Some(b) = changed {
        body = body.replaced(b);
    }
    let req = Request::from_parts(parts, body);
    forward(service, req, original_host, progress, id).await
}

/// The log phase's record of a request, started when its route is found.
fn log_start(
    snapshot: &Arc<Snapshot>,
    route_index: usize,
    req: &Request<Incoming>,
    client: std::net::IpAddr,
    with_headers: bool,
) -> Box<plugins::log::Pending> {
    let body = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let line = req.method().as_str().len() + target_len(req.uri()) + 11;
    Box::new(plugins::log::Pending {
        snapshot: snapshot.clone(),
        route_index,
        started: std::time::Instant::now(),
        started_at: plugins::log::Pending::now_ms(),
        client,
        consumer: None,
        method: req.method().clone(),
        uri: req.uri().clone(),
        request_headers: with_headers.then(|| req.headers().clone()),
        response_headers: None,
        request_size: line as u64 + head_size(req.headers()) + body,
        status: 0,
        source: plugins::log::Source::Kong,
        upstream_latency_ms: None,
        kong_latency_ms: 0,
        upstream_uri: None,
        sent: 0,
        head_size: 0,
    })
}

/// The length of the request target as `Uri` displays it, without
/// writing it out.
fn target_len(uri: &http::Uri) -> usize {
    uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path().len()
        + uri.query().map_or(0, |q| q.len() + 1)
}

/// The bytes of a head's header lines, as written on the wire.
fn head_size(h: &HeaderMap) -> u64 {
    h.iter()
        .map(|(k, v)| (k.as_str().len() + v.len() + 4) as u64)
        .sum::<u64>()
        + 2
}

/// The most of a response body read whole to be changed by a plugin.
const CHANGED_RESPONSE_LIMIT: usize = 8 << 20;

/// response-transformer's JSON changes: the body is read whole (a body
/// larger than [`CHANGED_RESPONSE_LIMIT`] by its Content-Length streams
/// unchanged; one found larger while read is a 502, as it can no longer be
/// sent whole).
async fn change_json_response(
    resp: Response<ProxyBody>,
    changes: &plugins::transform::Fieldset,
    id: &HeaderValue,
) -> Response<ProxyBody> {
    use http_body_util::BodyExt;
    let declared = hyper::body::Body::size_hint(resp.body()).exact();
    if declared.is_some_and(|n| n > CHANGED_RESPONSE_LIMIT as u64) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let mut body = std::pin::pin!(body);
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.as_mut().frame().await {
        let Ok(frame) = frame else {
            return error(
                StatusCode::BAD_GATEWAY,
                "An invalid response was received from the upstream server",
                id,
            );
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > CHANGED_RESPONSE_LIMIT {
                tracing::warn!(request_id = ?id, "response-transformer: a JSON body without Content-Length is larger than {CHANGED_RESPONSE_LIMIT} bytes");
                return error(
                    StatusCode::BAD_GATEWAY,
                    "An invalid response was received from the upstream server",
                    id,
                );
            }
            buf.extend_from_slice(&data);
        }
    }
    let read = buf.freeze();
    let changed = plugins::response_transformer::change(changes, &read).unwrap_or(read);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, changed.len().into());
    Response::from_parts(parts, ProxyBody::full(changed))
}

/// The most of a body read whole to be changed by a plugin: the smaller of
/// the configured limits, and 8 MiB at most, as a body nginx would buffer in
/// memory rather than spool to disk.
fn changed_body_limit(max_body: u64, plugin_limit: Option<u64>) -> u64 {
    const CAP: u64 = 8 << 20;
    [max_body, plugin_limit.unwrap_or(0), CAP]
        .into_iter()
        .filter(|l| *l > 0)
        .min()
        .unwrap_or(CAP)
}

/// Sends the request upstream, retrying other targets while nothing was sent.
async fn forward(
    service: &ServiceEntry,
    req: Request<RequestBody>,
    original_host: Option<HeaderValue>,
    progress: Option<Arc<Progress>>,
    id: &HeaderValue,
) -> Response<ProxyBody> {
    // The request moves into hyper, which gives it back if it sent nothing.
    let mut pending = Some(req);
    let mut timed_out = false;
    let mut tries = 0;
    while tries <= service.retries {
        let Some(target) = service.balancer.next() else {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "failure to get a peer from the ring-balancer",
                id,
            );
        };
        let mut conn = match target.pool.checkout(service.connect_timeout).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(request_id = ?id, "{e}");
                timed_out = e.is_timeout();
                tries += 1;
                continue;
            }
        };
        let mut r = pending.take().expect("request present until sent");
        let host = match (&original_host, &service.host_header) {
            (Some(h), _) | (None, Some(h)) => h.clone(),
            (None, None) => target.host_header.clone(),
        };
        r.headers_mut().insert(header::HOST, host);
        match send(&mut conn, r, service, progress.as_deref()).await {
            Attempt::Response(resp) => {
                return response(resp, target.pool.clone(), conn, service.read_timeout)
            }
            Attempt::Unsent(r) => {
                // A pooled connection closed under us: not the upstream's fault.
                if !conn.reused {
                    tries += 1;
                }
                pending = Some(r);
            }
            Attempt::Failed(_) | Attempt::TimedOut
                if progress
                    .as_ref()
                    .is_some_and(|p| p.client_error().is_some()) =>
            {
                let why = progress.and_then(|p| p.client_error());
                return client_body_error(why.expect("checked above"), id);
            }
            Attempt::Failed(e) => {
                tracing::warn!(request_id = ?id, "upstream request failed: {e}");
                return error(
                    StatusCode::BAD_GATEWAY,
                    "An invalid response was received from the upstream server",
                    id,
                );
            }
            Attempt::TimedOut => {
                return error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "The upstream server is timing out",
                    id,
                );
            }
        }
    }
    if timed_out {
        error(
            StatusCode::GATEWAY_TIMEOUT,
            "The upstream server is timing out",
            id,
        )
    } else {
        error(
            StatusCode::BAD_GATEWAY,
            "An invalid response was received from the upstream server",
            id,
        )
    }
}

/// How one attempt at the upstream ended.
// Boxing the unsent request would cost an allocation on every request; this
// value only lives on the stack of `forward`.
#[allow(clippy::large_enum_variant)]
enum Attempt {
    Response(Response<Incoming>),
    Unsent(Request<RequestBody>),
    Failed(hyper::Error),
    TimedOut,
}

/// Waits for the response head: `read_timeout` once the body is sent, and
/// while it is being sent, `write_timeout` without progress.
async fn send(
    conn: &mut Conn,
    req: Request<RequestBody>,
    service: &ServiceEntry,
    progress: Option<&Progress>,
) -> Attempt {
    let fut = conn.sender().try_send_request(req);
    tokio::pin!(fut);
    let sleep = tokio::time::sleep(wait_for(service, progress));
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            r = &mut fut => return match r {
                Ok(resp) => Attempt::Response(resp),
                Err(mut e) => match e.take_message() {
                    Some(req) => Attempt::Unsent(req),
                    None => Attempt::Failed(e.into_error()),
                },
            },
            () = &mut sleep => {
                match progress {
                    Some(p) if !p.is_done() && p.idle() < service.write_timeout => {
                        let next = tokio::time::Instant::now() + wait_for(service, progress);
                        sleep.as_mut().reset(next);
                    }
                    _ => return Attempt::TimedOut,
                }
            }
        }
    }
}

fn wait_for(service: &ServiceEntry, progress: Option<&Progress>) -> Duration {
    match progress {
        Some(p) if !p.is_done() => service
            .write_timeout
            .saturating_sub(p.idle())
            .max(Duration::from_millis(1)),
        _ => service.read_timeout,
    }
}

fn response(
    resp: Response<Incoming>,
    pool: Arc<pool::Pool>,
    conn: Conn,
    read_timeout: Duration,
) -> Response<ProxyBody> {
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, ProxyBody::upstream(body, pool, conn, read_timeout))
}

/// The upload failed because of the client: nginx's answer, and the
/// connection closes (hyper will not read a broken body further).
fn client_body_error(why: ClientBodyError, id: &HeaderValue) -> Response<ProxyBody> {
    tracing::info!(request_id = ?id, "request body: {why}");
    let (status, message) = match why {
        ClientBodyError::Malformed => (StatusCode::BAD_REQUEST, "Bad request"),
        ClientBodyError::Timeout => (StatusCode::REQUEST_TIMEOUT, "Request timeout"),
        ClientBodyError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "Payload too large"),
        ClientBodyError::SizeLimit => (
            StatusCode::PAYLOAD_TOO_LARGE,
            crate::plugins::request_size_limiting::MESSAGE,
        ),
    };
    closing(error(status, message, id))
}

fn closing(mut r: Response<ProxyBody>) -> Response<ProxyBody> {
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// The Host the client asked for: HTTP/2's :authority or HTTP/1's Host.
fn request_host<B>(req: &Request<B>) -> Option<&str> {
    if let Some(a) = req.uri().authority() {
        return Some(a.as_str());
    }
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
}

fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

static HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Where `name` is in [`HOP_BY_HOP`]: by length first, so that most names
/// cost one comparison (names are lowercase).
fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    let s = name.as_str();
    match s.len() {
        2 if s == "te" => Some(3),
        7 if s == "trailer" => Some(4),
        7 if s == "upgrade" => Some(6),
        10 if s == "connection" => Some(0),
        10 if s == "keep-alive" => Some(1),
        16 if s == "proxy-connection" => Some(2),
        17 if s == "transfer-encoding" => Some(5),
        _ => None,
    }
}

/// Removes hop-by-hop headers and the ones `Connection` names. One pass over
/// the names finds them, so a message without any costs no hashing.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = 0u8;
    for name in headers.keys() {
        if let Some(i) = hop_by_hop_index(name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    if present & 1 != 0 {
        let listed = headers.get(header::CONNECTION).cloned();
        if let Some(list) = listed.as_ref().and_then(|v| v.to_str().ok()) {
            for name in list.split(',') {
                let name = name.trim();
                if !name.eq_ignore_ascii_case("close") && !name.eq_ignore_ascii_case("keep-alive") {
                    headers.remove(name);
                }
            }
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

fn protocol_mismatch<B>(
    route: &RouteEntry,
    req: &Request<B>,
    id: &HeaderValue,
) -> Response<ProxyBody> {
    let code = route.https_redirect_status_code;
    if code == 426 {
        let mut r = error(
            StatusCode::UPGRADE_REQUIRED,
            "Please use HTTPS protocol",
            id,
        );
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        r.headers_mut().insert(
            header::UPGRADE,
            HeaderValue::from_static("TLS/1.2, HTTP/1.1"),
        );
        return r;
    }
    let host = host_without_port(request_host(req).unwrap_or("localhost"));
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = format!("https://{host}{target}");
    let mut r = Response::new(ProxyBody::empty());
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::MOVED_PERMANENTLY);
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// A JSON error in Kong's shape: `{"message": ..., "request_id": ...}`.
pub fn error(status: StatusCode, message: &str, id: &HeaderValue) -> Response<ProxyBody> {
    let body = serde_json::json!({
        "message": message,
        "request_id": id.to_str().unwrap_or(""),
    });
    let mut r = Response::new(ProxyBody::full(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_length_is_that_of_the_uri_written_out() {
        for uri in [
            "/",
            "/a/b?x=1&y",
            "/a?",
            "*",
            "http://example.test/p?q=1",
            "https://user@example.test:8443/",
            "example.test:443",
        ] {
            let parsed: http::Uri = uri.parse().unwrap();
            assert_eq!(target_len(&parsed), parsed.to_string().len(), "{uri}");
        }
    }

    #[test]
    fn hop_by_hop_index_finds_each_name_and_no_other() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(name), Some(i), "{name}");
        }
        for other in [
            "host",
            "tx",
            "trailers",
            "upgrades",
            "connections",
            "x-keep-alive",
        ] {
            let name = HeaderName::from_static(other);
            assert_eq!(hop_by_hop_index(&name), None, "{other}");
        }
    }

    #[test]
    fn strip_hop_by_hop_removes_listed_and_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-kept"]);
    }
}
