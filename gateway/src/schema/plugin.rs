//! Plugins. The `config` of a plugin this gateway implements is validated
//! with its Kong schema ([`crate::plugins::validate_config`]); others are
//! stored as given.

use serde_json::{Map, Value};

use super::fields::{check_name, opt, Fields};
use super::net::KONG_PROTOCOLS;

/// Kong's bundled plugins that may be configured (Kong 3.x, AI plugins aside).
pub const BUNDLED_PLUGINS: &[&str] = &[
    "acl",
    "acme",
    "aws-lambda",
    "azure-functions",
    "basic-auth",
    "bot-detection",
    "correlation-id",
    "cors",
    "datadog",
    "file-log",
    "grpc-gateway",
    "grpc-web",
    "hmac-auth",
    "http-log",
    "ip-restriction",
    "jwt",
    "key-auth",
    "ldap-auth",
    "loggly",
    "oauth2",
    "opentelemetry",
    "post-function",
    "pre-function",
    "prometheus",
    "proxy-cache",
    "rate-limiting",
    "request-size-limiting",
    "request-termination",
    "request-transformer",
    "response-ratelimiting",
    "response-transformer",
    "session",
    "statsd",
    "syslog",
    "tcp-log",
    "udp-log",
    "zipkin",
    "redirect",
];

pub(super) fn validate(f: &mut Fields) -> Map<String, Value> {
    let mut out = Map::new();
    let name = f.required_string("name");
    if let Some(n) = &name {
        if !BUNDLED_PLUGINS.contains(&n.as_str()) {
            f.error(
                "name",
                format!("plugin '{n}' not enabled; add it to the 'plugins' configuration property"),
            );
        }
    }
    out.insert("name".into(), opt(name.clone()));
    let instance = f.string("instance_name");
    if let Some(n) = &instance {
        check_name(f, "instance_name", n);
    }
    out.insert("instance_name".into(), opt(instance));
    let mut config = f.record("config").unwrap_or_default();
    if let Some(n) = name
        .as_deref()
        .filter(|n| crate::plugins::priority(n).is_some())
    {
        match crate::plugins::validate_config(n, std::mem::take(&mut config)) {
            Some(Ok(filled)) => config = filled,
            Some(Err(errors)) => {
                for (k, v) in errors.0 {
                    match (k.as_str(), v) {
                        (super::ENTITY, Value::Array(list)) => {
                            for m in list {
                                f.entity_error(m.as_str().unwrap_or_default());
                            }
                        }
                        (_, v) => {
                            f.errors.0.insert(k, v);
                        }
                    }
                }
            }
            None => {}
        }
    }
    out.insert("config".into(), Value::Object(config));
    // An implemented plugin's schema narrows the protocols it runs on.
    let allowed = name
        .as_deref()
        .and_then(crate::plugins::protocols)
        .unwrap_or(&KONG_PROTOCOLS);
    let protocols = match f.strings("protocols") {
        None => ["grpc", "grpcs", "http", "https"]
            .map(String::from)
            .to_vec(),
        Some(list) => {
            if list.is_empty() {
                f.error("protocols", "length must be at least 1");
            } else if let Some(p) = list.iter().find(|p| !allowed.contains(&p.as_str())) {
                f.error(
                    "protocols",
                    format!("expected one of: {} (got '{p}')", allowed.join(", ")),
                );
            }
            list
        }
    };
    out.insert("protocols".into(), protocols.into());
    out.insert("enabled".into(), f.boolean("enabled", true).into());
    out.insert("tags".into(), f.tags());
    for k in ["service", "route", "consumer"] {
        let fk = f.foreign(k, false);
        out.insert(k.into(), fk);
    }
    out
}
