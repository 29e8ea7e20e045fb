//! `request-termination`: answers every request itself with a fixed status and
//! body (Kong 3.x), optionally only when a `trigger` header or query argument
//! is present, or echoing the request back (`echo`).

use http::header::CONTENT_TYPE;
use http::HeaderValue;
use serde_json::{json, Map, Value};

use super::{exit_json, Request};
use crate::proxy::body::ProxyBody;
use crate::schema::fields::{opt, Fields};

pub const PRIORITY: u32 = 2;

#[derive(Debug)]
pub struct Config {
    status: u16,
    /// Kong's message: the given one, else its default text for the status.
    message: Option<String>,
    body: Option<bytes::Bytes>,
    content_type: Option<HeaderValue>,
    echo: bool,
    trigger: Option<http::HeaderName>,
}

pub(super) fn parse(f: &mut Fields) -> (Config, Map<String, Value>) {
    let status = f.integer("status_code", 100, 599, 503);
    let message = f.string("message");
    let content_type = f.string("content_type");
    let body = f.string("body");
    let echo = f.boolean("echo", false);
    let trigger = f.string("trigger");
    let trigger_name = trigger
        .as_deref()
        .and_then(|t| super::header_name(f, "trigger", t));
    let content_type_value = content_type.as_deref().and_then(|c| {
        let v = HeaderValue::from_str(c).ok();
        if v.is_none() {
            f.error("content_type", "not a valid header value");
        }
        v
    });
    // Kong's entity checks on the config record.
    if message.is_some() && (content_type.is_some() || body.is_some()) {
        f.entity_error("message cannot be used with content_type or body");
    } else if content_type.is_some() && body.is_none() {
        f.entity_error("content_type requires a body");
    } else if echo && (content_type.is_some() || body.is_some()) {
        f.entity_error("echo cannot be used with content_type and body");
    }
    let mut out = Map::new();
    out.insert("status_code".into(), status.into());
    out.insert("message".into(), opt(message.clone()));
    out.insert("content_type".into(), opt(content_type));
    out.insert("body".into(), opt(body.clone()));
    out.insert("echo".into(), echo.into());
    out.insert("trigger".into(), opt(trigger));
    let status = status as u16;
    let config = Config {
        status,
        message: message.or_else(|| default_message(status).map(String::from)),
        body: body.map(bytes::Bytes::from),
        content_type: content_type_value,
        echo,
        trigger: trigger_name,
    };
    (config, out)
}

/// Kong's `DEFAULT_RESPONSE` texts of the plugin.
fn default_message(status: u16) -> Option<&'static str> {
    Some(match status {
        401 => "Unauthorized",
        404 => "Not found",
        405 => "Method not allowed",
        500 => "An unexpected error occurred",
        502 => "Bad Gateway",
        503 => "Service unavailable",
        _ => return None,
    })
}

pub(super) fn access(c: &Config, req: &Request<'_>) -> Option<http::Response<ProxyBody>> {
    if let Some(t) = &c.trigger {
        let in_query = req.uri.query().is_some_and(|q| {
            form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k.eq_ignore_ascii_case(t.as_str()))
        });
        if !req.headers.contains_key(t) && !in_query {
            return None;
        }
    }
    if c.echo {
        return Some(exit_json(c.status, &echo(c, req)));
    }
    if let Some(body) = &c.body {
        let mut r = http::Response::new(ProxyBody::full(body.clone()));
        *r.status_mut() = status(c.status);
        if let Some(ct) = &c.content_type {
            r.headers_mut().insert(CONTENT_TYPE, ct.clone());
        }
        return Some(r);
    }
    Some(match &c.message {
        Some(m) => exit_json(c.status, &json!({ "message": m })),
        None => {
            let mut r = http::Response::new(ProxyBody::empty());
            *r.status_mut() = status(c.status);
            r
        }
    })
}

fn status(code: u16) -> http::StatusCode {
    http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::SERVICE_UNAVAILABLE)
}

/// Kong's echo body, without the parts this gateway has not read by then
/// (the request body: it streams later, or not at all here).
fn echo(c: &Config, req: &Request<'_>) -> Value {
    let mut headers = Map::new();
    for (k, v) in req.headers.iter() {
        let v = Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned());
        match headers.get_mut(k.as_str()) {
            Some(Value::Array(list)) => list.push(v),
            Some(prev) => *prev = Value::Array(vec![prev.take(), v]),
            None => {
                headers.insert(k.as_str().into(), v);
            }
        }
    }
    let mut query = Map::new();
    if let Some(q) = req.uri.query() {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            query.insert(k.into_owned(), Value::String(v.into_owned()));
        }
    }
    let host = req
        .uri
        .host()
        .map(str::to_string)
        .or_else(|| {
            req.headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(|h| h.rsplit_once(':').map_or(h, |(h, _)| h).to_string())
        })
        .unwrap_or_default();
    json!({
        "message": c.message,
        "request": {
            "scheme": if req.https { "https" } else { "http" },
            "host": host,
            "method": req.method.as_str(),
            "path": req.uri.path(),
            "query": query,
            "headers": headers,
        },
    })
}

pub(super) fn schema() -> Value {
    json!([
        {"status_code": {"type": "integer", "default": 503, "between": [100, 599]}},
        {"message": {"type": "string"}},
        {"content_type": {"type": "string"}},
        {"body": {"type": "string"}},
        {"echo": {"type": "boolean", "default": false, "required": true}},
        {"trigger": {"type": "string"}},
    ])
}
