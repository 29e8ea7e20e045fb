//! Upstreams and their targets.

use serde_json::{json, Map, Value};

use super::fields::{opt, Fields};
use super::merge_value;
use super::net::{format_host_port, is_hostname, parse_host, split_host_port};
use crate::model;

/// Kong's default `healthchecks`: every counter at 0, so no check runs. A
/// given object is merged over it and stored; checks are not run here.
pub fn default_healthchecks() -> Value {
    json!({
        "active": {
            "type": "http",
            "timeout": 1,
            "concurrency": 10,
            "http_path": "/",
            "https_sni": null,
            "https_verify_certificate": true,
            "headers": null,
            "healthy": {"interval": 0, "http_statuses": [200, 302], "successes": 0},
            "unhealthy": {
                "interval": 0,
                "http_statuses": [429, 404, 500, 501, 502, 503, 504, 505],
                "tcp_failures": 0,
                "timeouts": 0,
                "http_failures": 0
            }
        },
        "passive": {
            "type": "http",
            "healthy": {
                "http_statuses": [200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
                                  300, 301, 302, 303, 304, 305, 306, 307, 308],
                "successes": 0
            },
            "unhealthy": {
                "http_statuses": [429, 500, 503],
                "tcp_failures": 0,
                "timeouts": 0,
                "http_failures": 0
            }
        },
        "threshold": 0
    })
}

/// Hashing fields and the only value accepted for each (round-robin only).
const HASHING: [(&str, Option<&str>); 11] = [
    ("hash_on", Some("none")),
    ("hash_fallback", Some("none")),
    ("hash_on_header", None),
    ("hash_fallback_header", None),
    ("hash_on_cookie", None),
    ("hash_on_cookie_path", Some("/")),
    ("hash_on_query_arg", None),
    ("hash_fallback_query_arg", None),
    ("hash_on_uri_capture", None),
    ("hash_fallback_uri_capture", None),
    ("client_certificate", None),
];

pub(super) fn validate(f: &mut Fields) -> Map<String, Value> {
    let mut out = Map::new();
    let name = f.required_string("name");
    if let Some(n) = &name {
        if !is_hostname(n) || n.parse::<std::net::IpAddr>().is_ok() {
            f.error(
                "name",
                format!("Invalid name ('{n}'); must be a valid hostname"),
            );
        }
    }
    out.insert("name".into(), opt(name));
    let algorithm = match f.string("algorithm") {
        None => "round-robin".to_string(),
        Some(a) if a == "round-robin" => a,
        Some(a) => {
            f.error(
                "algorithm",
                format!("`{a}` is not supported yet; use `round-robin`"),
            );
            a
        }
    };
    out.insert("algorithm".into(), algorithm.into());
    let slots = f.integer("slots", 10, 65_536, model::DEFAULT_UPSTREAM_SLOTS.into());
    out.insert("slots".into(), slots.into());
    let host_header = f.string("host_header");
    if let Some(h) = &host_header {
        if let Err(m) = parse_host(h) {
            f.error("host_header", m);
        }
    }
    out.insert("host_header".into(), opt(host_header));
    let mut checks = default_healthchecks();
    if let Some(given) = f.record("healthchecks") {
        merge_value(&mut checks, Value::Object(given));
    }
    out.insert("healthchecks".into(), checks);
    for (k, allowed) in HASHING {
        out.insert(k.into(), f.unsupported(k, opt(allowed)));
    }
    let srv = f.unsupported("use_srv_name", false.into());
    out.insert("use_srv_name".into(), srv);
    out.insert("tags".into(), f.tags());
    out
}

pub(super) fn validate_target(f: &mut Fields) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("upstream".into(), f.foreign("upstream", true));
    let target = f
        .required_string("target")
        .and_then(|t| match split_host_port(&t) {
            Ok((host, port)) => Some(format_host_port(
                &host,
                port.unwrap_or(model::DEFAULT_TARGET_PORT),
            )),
            Err(m) => {
                f.error("target", m);
                None
            }
        });
    out.insert("target".into(), opt(target));
    let weight = f.integer("weight", 0, 65_535, model::DEFAULT_TARGET_WEIGHT.into());
    out.insert("weight".into(), weight.into());
    out.insert("tags".into(), f.tags());
    out
}
