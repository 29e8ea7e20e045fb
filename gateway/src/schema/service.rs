//! Services.

use serde_json::{Map, Value};

use super::fields::{check_name, opt, Fields, REQUIRED};
use super::net::{parse_host, parse_protocol, parse_url};
use super::FieldErrors;
use crate::model;

const MAX_TIMEOUT: i64 = 2_147_483_646;

/// Kong's `url` shorthand: replaces itself with protocol, host, port and path.
pub(super) fn expand_url(body: &mut Map<String, Value>) -> Result<(), FieldErrors> {
    let url = match body.remove("url") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::String(u)) => u,
        Some(_) => return Err(FieldErrors::field("url", "expected a string")),
    };
    if ["protocol", "host", "port", "path"]
        .iter()
        .any(|k| body.get(*k).is_some_and(|v| !v.is_null()))
    {
        return Err(FieldErrors::field(
            "url",
            "cannot be combined with 'protocol', 'host', 'port' or 'path'",
        ));
    }
    let (protocol, host, port, path) = parse_url(&url).map_err(|m| FieldErrors::field("url", m))?;
    body.insert("protocol".into(), protocol.as_str().into());
    body.insert("host".into(), host.into());
    body.insert("port".into(), port.into());
    body.insert("path".into(), opt(path));
    Ok(())
}

pub(super) fn validate(f: &mut Fields) -> Map<String, Value> {
    let mut out = Map::new();
    let name = f.string("name");
    if let Some(n) = &name {
        check_name(f, "name", n);
    }
    out.insert("name".into(), opt(name));
    let retries = f.integer("retries", 0, 32_767, model::DEFAULT_RETRIES.into());
    out.insert("retries".into(), retries.into());
    let protocol = match f.string("protocol") {
        None => "http",
        Some(p) => match parse_protocol(&p) {
            Ok(p) => p.as_str(),
            Err(m) => {
                f.error("protocol", m);
                "http"
            }
        },
    };
    out.insert("protocol".into(), protocol.into());
    let host_set = f.is_set("host");
    let host = match f.string("host") {
        Some(h) => match parse_host(&h) {
            Ok(h) => Value::String(h),
            Err(m) => {
                f.error("host", m);
                Value::Null
            }
        },
        None if !host_set => {
            f.error("host", REQUIRED);
            Value::Null
        }
        None => Value::Null,
    };
    out.insert("host".into(), host);
    // Kong allows port 0; a service on port 0 cannot be reached, so refuse it.
    let port = f.integer("port", 1, 65_535, 80);
    out.insert("port".into(), port.into());
    let path = f.string("path");
    if let Some(p) = &path {
        if !p.starts_with('/') {
            f.error("path", "should start with: /");
        }
    }
    out.insert("path".into(), opt(path));
    for t in ["connect_timeout", "write_timeout", "read_timeout"] {
        let v = f.integer(t, 1, MAX_TIMEOUT, model::DEFAULT_TIMEOUT_MS.into());
        out.insert(t.into(), v.into());
    }
    out.insert("tags".into(), f.tags());
    for k in [
        "client_certificate",
        "tls_verify",
        "tls_verify_depth",
        "ca_certificates",
    ] {
        out.insert(k.into(), f.unsupported(k, Value::Null));
    }
    out.insert("enabled".into(), f.boolean("enabled", true).into());
    out
}
