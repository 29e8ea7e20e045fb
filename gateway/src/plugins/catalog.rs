//! The plugins this gateway implements: their names, priorities, protocols,
//! schemas, and the validation of a config when it is written.

use super::*;

use serde_json::{json, Map, Value};

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
pub(super) fn parse(name: &str, f: &mut Fields) -> Option<(Config, Map<String, Value>)> {
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
pub(super) fn nest_under_config(mut inner: FieldErrors) -> FieldErrors {
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

impl Config {
    /// Runs in the log phase.
    pub(super) fn logs(&self) -> bool {
        matches!(
            self,
            Config::Prometheus(_) | Config::HttpLog(_) | Config::FileLog(_)
        )
    }
}
