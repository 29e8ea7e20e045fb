//! `http-log` (Kong 3.x): sends each request's log entry (Kong's log
//! serializer) to an HTTP collector, through Kong's queue: entries are
//! batched (`queue.max_batch_size`, `queue.max_coalescing_delay`), a failed
//! batch is retried with backoff for `queue.max_retry_time`, and a full queue
//! (`queue.max_entries`) drops new entries. The request path only enqueues:
//! a slow or dead collector never holds a request.

use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Uri};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::log::Pending;
use crate::schema::fields::{opt, Fields};

pub const PRIORITY: u32 = 12;

#[derive(Debug, Clone)]
struct Queue {
    max_batch_size: usize,
    max_coalescing_delay: Duration,
    max_entries: usize,
    initial_retry_delay: Duration,
    max_retry_delay: Duration,
    max_retry_time: Duration,
}

#[derive(Debug, Clone)]
struct Target {
    uri: Uri,
    method: Method,
    content_type: HeaderValue,
    timeout: Duration,
    headers: Vec<(HeaderName, HeaderValue)>,
}

#[derive(Debug)]
pub struct Config {
    target: Target,
    queue: Queue,
    sender: OnceLock<Option<mpsc::Sender<Vec<u8>>>>,
}

fn seconds(f: &mut Fields, q: &mut Map<String, Value>, name: &str, default: f64) -> f64 {
    match q.remove(name) {
        None | Some(Value::Null) => default,
        Some(v) => match v.as_f64() {
            Some(n) if n >= 0.0 => n,
            _ => {
                f.error(&format!("queue.{name}"), "expected a number of seconds");
                default
            }
        },
    }
}

pub(super) fn parse(f: &mut Fields) -> (Config, Map<String, Value>) {
    let endpoint = f.required_string("http_endpoint").unwrap_or_default();
    let mut uri: Uri = Uri::from_static("http://127.0.0.1/");
    let mut basic = None;
    if !endpoint.is_empty() {
        match endpoint.parse::<Uri>() {
            Ok(u) if u.scheme_str() == Some("http") && u.authority().is_some() => {
                // Kong takes credentials in the URL as Basic authentication.
                let authority = u.authority().map(|a| a.as_str()).unwrap_or("");
                if let Some((userinfo, host)) = authority.rsplit_once('@') {
                    basic = Some(format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(userinfo)
                    ));
                    let pq = u.path_and_query().map_or("/", |p| p.as_str());
                    uri = format!("http://{host}{pq}").parse().unwrap_or(uri);
                } else {
                    uri = u;
                }
            }
            Ok(u) if u.scheme_str() == Some("https") => f.error(
                "http_endpoint",
                "https collectors are not supported by this gateway yet: use an http:// endpoint (a local collector or a TLS-terminating proxy)",
            ),
            _ => f.error("http_endpoint", "missing host in url"),
        }
    }
    let method = f.one_of("method", &["POST", "PUT", "PATCH"], "POST");
    let content_type = f.one_of(
        "content_type",
        &["application/json", "application/json; charset=utf-8"],
        "application/json",
    );
    let timeout = f.integer("timeout", 0, i64::from(u32::MAX), 10_000);
    let keepalive = f.integer("keepalive", 0, i64::from(u32::MAX), 60_000);
    let mut headers = Vec::new();
    let mut headers_out = Map::new();
    if let Some(h) = f.record("headers") {
        for (k, v) in h {
            let Some(name) = super::header_name(f, &format!("headers.{k}"), &k) else {
                continue;
            };
            let value = v.as_str().and_then(|s| HeaderValue::from_str(s).ok());
            match value {
                Some(value) => {
                    headers.push((name, value));
                    headers_out.insert(k, v);
                }
                None => f.error(&format!("headers.{k}"), "expected a string"),
            }
        }
    }
    if let Some(b) = basic.and_then(|b| HeaderValue::from_str(&b).ok()) {
        headers.push((http::header::AUTHORIZATION, b));
    }
    super::log::no_custom_fields(f);
    // Kong 3.x's deprecated top-level queue settings, read as its queue's.
    let retry_count = f.take("retry_count");
    let queue_size = f.take("queue_size");
    let flush_timeout = f.take("flush_timeout");
    let mut q = f.record("queue").unwrap_or_default();
    let max_batch_size = match q.remove("max_batch_size").or(queue_size.clone()) {
        None | Some(Value::Null) => 1,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=1_000_000).contains(&n) => n as usize,
            _ => {
                f.error(
                    "queue.max_batch_size",
                    "value should be between 1 and 1000000",
                );
                1
            }
        },
    };
    let max_entries = match q.remove("max_entries") {
        None | Some(Value::Null) => 10_000,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=1_000_000).contains(&n) => n as usize,
            _ => {
                f.error("queue.max_entries", "value should be between 1 and 1000000");
                10_000
            }
        },
    };
    let coalescing = seconds(f, &mut q, "max_coalescing_delay", 1.0);
    let coalescing = match flush_timeout.as_ref().and_then(Value::as_f64) {
        Some(s) => s,
        None => coalescing,
    };
    let max_retry_time = seconds(f, &mut q, "max_retry_time", 60.0);
    let initial_retry_delay = seconds(f, &mut q, "initial_retry_delay", 0.01);
    let max_retry_delay = seconds(f, &mut q, "max_retry_delay", 60.0);
    let max_bytes = q.remove("max_bytes").filter(|v| !v.is_null());
    let concurrency = q.remove("concurrency_limit");
    let name = q.remove("name");
    for k in q.keys() {
        f.error(&format!("queue.{k}"), "unknown field");
    }
    let mut out = Map::new();
    out.insert("http_endpoint".into(), endpoint.clone().into());
    out.insert("method".into(), method.into());
    out.insert("content_type".into(), content_type.into());
    out.insert("timeout".into(), timeout.into());
    out.insert("keepalive".into(), keepalive.into());
    out.insert("retry_count".into(), retry_count.unwrap_or(Value::Null));
    out.insert("queue_size".into(), queue_size.unwrap_or(Value::Null));
    out.insert("flush_timeout".into(), flush_timeout.unwrap_or(Value::Null));
    out.insert(
        "headers".into(),
        opt((!headers_out.is_empty()).then_some(Value::Object(headers_out))),
    );
    out.insert("custom_fields_by_lua".into(), Value::Null);
    out.insert(
        "queue".into(),
        json!({
            "max_batch_size": max_batch_size,
            "max_coalescing_delay": coalescing,
            "max_entries": max_entries,
            "max_bytes": max_bytes,
            "max_retry_time": max_retry_time,
            "initial_retry_delay": initial_retry_delay,
            "max_retry_delay": max_retry_delay,
            "concurrency_limit": concurrency.filter(|v| !v.is_null()).unwrap_or(json!(1)),
            "name": name.unwrap_or(Value::Null),
        }),
    );
    let secs = |s: f64| Duration::from_secs_f64(s.min(86_400.0));
    let config = Config {
        target: Target {
            uri,
            method: Method::from_bytes(method.as_bytes()).unwrap_or(Method::POST),
            content_type: HeaderValue::from_static(content_type),
            timeout: Duration::from_millis(timeout as u64),
            headers,
        },
        queue: Queue {
            max_batch_size,
            max_coalescing_delay: secs(coalescing),
            max_entries,
            initial_retry_delay: secs(initial_retry_delay),
            max_retry_delay: secs(max_retry_delay),
            max_retry_time: secs(max_retry_time),
        },
        sender: OnceLock::new(),
    };
    (config, out)
}

pub(super) fn schema() -> Value {
    json!([
        {"http_endpoint": {"type": "string", "required": true, "encrypted": true, "referenceable": true}},
        {"method": {"type": "string", "default": "POST", "one_of": ["POST", "PUT", "PATCH"]}},
        {"content_type": {"type": "string", "default": "application/json", "one_of": ["application/json", "application/json; charset=utf-8"]}},
        {"timeout": {"type": "number", "default": 10000}},
        {"keepalive": {"type": "number", "default": 60000}},
        {"retry_count": {"type": "integer"}},
        {"queue_size": {"type": "integer"}},
        {"flush_timeout": {"type": "number"}},
        {"headers": {"type": "map", "keys": {"type": "string"}, "values": {"type": "string"}}},
        {"queue": {"type": "record", "required": true, "fields": [
            {"max_batch_size": {"type": "integer", "default": 1}},
            {"max_coalescing_delay": {"type": "number", "default": 1}},
            {"max_entries": {"type": "integer", "default": 10000}},
            {"max_bytes": {"type": "integer"}},
            {"max_retry_time": {"type": "number", "default": 60}},
            {"initial_retry_delay": {"type": "number", "default": 0.01}},
            {"max_retry_delay": {"type": "number", "default": 60}},
            {"concurrency_limit": {"type": "integer", "default": 1}},
        ]}},
        {"custom_fields_by_lua": {"type": "map", "keys": {"type": "string"}, "values": {"type": "string"}}},
    ])
}

pub(super) fn log(c: &Config, p: &Pending) {
    let sender = c.sender.get_or_init(|| {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let (tx, rx) = mpsc::channel(c.queue.max_entries);
        handle.spawn(run(c.target.clone(), c.queue.clone(), rx));
        Some(tx)
    });
    let Some(tx) = sender else {
        return;
    };
    let entry = p.serialize_line();
    if entry.is_empty() {
        return;
    }
    if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(entry) {
        tracing::warn!(
            "http-log: the queue for {} is full ({} entries); an entry was dropped",
            c.target.uri,
            c.queue.max_entries
        );
    }
}

/// The queue's consumer: batches, sends, retries; ends when the plugin
/// instance is gone (its snapshot replaced) and the queue is empty.
async fn run(target: Target, q: Queue, mut rx: mpsc::Receiver<Vec<u8>>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + q.max_coalescing_delay;
        while batch.len() < q.max_batch_size {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(v)) => batch.push(v),
                Ok(None) | Err(_) => break,
            }
        }
        let body = Bytes::from(batch_body(q.max_batch_size, batch));
        let started = tokio::time::Instant::now();
        let mut delay = q.initial_retry_delay;
        loop {
            match send(&target, body.clone()).await {
                Ok(()) => break,
                Err(e) if started.elapsed() + delay > q.max_retry_time => {
                    tracing::error!(
                        "http-log: {}: {e}; giving up on a batch after {:?}",
                        target.uri,
                        q.max_retry_time
                    );
                    break;
                }
                Err(e) => {
                    tracing::warn!("http-log: {}: {e}; retrying in {delay:?}", target.uri);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(q.max_retry_delay);
                }
            }
        }
    }
}

/// The request body of a batch of serialized entries: one entry is sent as
/// an object, several as an array (Kong's), joined without parsing them again.
fn batch_body(max_batch_size: usize, batch: Vec<Vec<u8>>) -> Vec<u8> {
    if max_batch_size == 1 {
        return batch.into_iter().next().unwrap_or_default();
    }
    let mut body = Vec::with_capacity(batch.iter().map(|e| e.len() + 1).sum::<usize>() + 2);
    body.push(b'[');
    for (i, entry) in batch.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(entry);
    }
    body.push(b']');
    body
}

async fn send(t: &Target, body: Bytes) -> Result<(), String> {
    let work = async {
        let authority = t.uri.authority().ok_or("no host")?.as_str();
        let addr = if authority.contains(':') && !authority.ends_with(']') {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let stream = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = http::Request::builder()
            .method(t.method.clone())
            .uri(t.uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(http::header::HOST, authority)
            .header(http::header::CONTENT_TYPE, t.content_type.clone())
            .header(http::header::CONTENT_LENGTH, body.len());
        for (k, v) in &t.headers {
            req = req.header(k, v);
        }
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the collector answered {status}"))
        }
    };
    tokio::time::timeout(t.timeout, work)
        .await
        .map_err(|_| format!("no answer within {:?}", t.timeout))?
}

#[cfg(test)]
mod tests {
    use super::batch_body;

    #[test]
    fn a_batch_is_one_object_or_an_array_of_the_entries() {
        let entries = || vec![br#"{"a":1}"#.to_vec(), br#"{"b":[2]}"#.to_vec()];
        assert_eq!(batch_body(1, vec![br#"{"a":1}"#.to_vec()]), br#"{"a":1}"#);
        let body = batch_body(10, entries());
        assert_eq!(body, br#"[{"a":1},{"b":[2]}]"#);
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed, serde_json::json!([{"a": 1}, {"b": [2]}]));
        assert_eq!(batch_body(10, entries()[..1].to_vec()), br#"[{"a":1}]"#);
    }
}
