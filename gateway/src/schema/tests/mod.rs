//! Schema tests: helpers, services, messages, PATCH and PUT.

mod form;
mod kinds;
mod route;

use serde_json::{json, Map, Value};

use super::*;

pub(super) const ID: &str = "6f9a1b6e-2c55-4c7c-9a7a-1f0a5b8f0c11";
pub(super) const OTHER: &str = "0b3b6f0e-7d1c-4f55-8f8e-5a4a8d9d2f01";
pub(super) const NOW: i64 = 1_700_000_000;

pub(super) fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object: {v}"),
    }
}

/// Creates with `ID` unless the body has an id.
pub(super) fn create(kind: Kind, v: Value) -> Result<Value, FieldErrors> {
    let mut b = obj(v);
    b.entry("id").or_insert(ID.into());
    validate(kind, b, Write::Create, None, NOW)
}

pub(super) fn errors(kind: Kind, v: Value) -> Value {
    Value::Object(create(kind, v).unwrap_err().0)
}

#[test]
fn kinds_name_and_parse() {
    for k in Kind::ALL {
        assert_eq!(Kind::parse(k.endpoint()), Some(k));
        assert_eq!(Kind::parse_nested(k.nested_endpoint()), Some(k));
    }
    assert_eq!(Kind::parse("snis"), None);
    assert_eq!(Kind::parse("key-auth"), None);
    assert_eq!(Kind::parse("keyauth_credentials"), None);
    assert_eq!(
        Kind::parse_nested("key-auth"),
        Some(Kind::KeyauthCredentials)
    );
    assert_eq!(Kind::Consumers.endpoint_key(), Some("username"));
    assert_eq!(Kind::Routes.endpoint_key(), Some("name"));
    assert_eq!(Kind::Targets.endpoint_key(), None);
}

#[test]
fn service_defaults_in_kong_shape() {
    let s = create(Kind::Services, json!({"host": "example.com"})).unwrap();
    assert_eq!(
        s,
        json!({
            "id": ID, "created_at": NOW, "updated_at": NOW, "name": null,
            "retries": 5, "protocol": "http", "host": "example.com", "port": 80,
            "path": null, "connect_timeout": 60000, "write_timeout": 60000,
            "read_timeout": 60000, "tags": null, "client_certificate": null,
            "tls_verify": null, "tls_verify_depth": null, "ca_certificates": null,
            "enabled": true
        })
    );
    let m: crate::model::Service = serde_json::from_value(s).unwrap();
    assert!(m.tags.is_empty() && m.port == 80);
}

#[test]
fn service_url_shorthand() {
    let s = create(
        Kind::Services,
        json!({"name": "a", "url": "https://[::1]:8443/api"}),
    )
    .unwrap();
    assert_eq!(
        (&s["protocol"], &s["host"], &s["port"], &s["path"]),
        (&json!("https"), &json!("::1"), &json!(8443), &json!("/api"))
    );
    let s = create(Kind::Services, json!({"url": "http://example.com"})).unwrap();
    assert_eq!((&s["port"], &s["path"]), (&json!(80), &Value::Null));
    let e = errors(Kind::Services, json!({"url": "http://x", "port": 81}));
    assert_eq!(
        e,
        json!({"url": "cannot be combined with 'protocol', 'host', 'port' or 'path'"})
    );
    let e = errors(Kind::Services, json!({"url": "grpc://x"}));
    assert_eq!(
        e,
        json!({"url": "`grpc` is not supported; use http or https"})
    );
    assert_eq!(
        errors(Kind::Services, json!({"url": 5})),
        json!({"url": "expected a string"})
    );
}

#[test]
fn service_errors_are_all_collected() {
    let e = errors(
        Kind::Services,
        json!({
            "name": "bad name", "host": "a.b:80", "port": "80", "retries": 40000,
            "protocol": "grpc", "path": "api", "connect_timeout": 0, "enabled": "yes",
            "tags": "x", "tls_verify": true, "nme": 1
        }),
    );
    assert_eq!(
        e,
        json!({
            "name": "invalid value 'bad name': it must only contain alphanumeric and '., -, _, ~' characters",
            "host": "must not have a port",
            "port": "expected an integer",
            "retries": "value should be between 0 and 32767",
            "protocol": "`grpc` is not supported; use http or https",
            "path": "should start with: /",
            "connect_timeout": "value should be between 1 and 2147483646",
            "enabled": "expected a boolean",
            "tags": "expected an array",
            "tls_verify": "not supported yet",
            "nme": "unknown field"
        })
    );
    assert_eq!(
        errors(Kind::Services, json!({"host": "", "port": 0})),
        json!({"host": "length must be at least 1", "port": "value should be between 1 and 65535"})
    );
    assert_eq!(
        errors(Kind::Services, json!({"host": "a b"})),
        json!({"host": "invalid value: a b"})
    );
    assert_eq!(
        errors(Kind::Services, json!({"host": "x", "tags": ["a,b"]})),
        json!({"tags": "invalid tag 'a,b': expected printable characters except ',' and '/'"})
    );
    assert_eq!(
        errors(Kind::Services, json!({"host": "x", "id": "nope"})),
        json!({"id": "expected a valid UUID"})
    );
}

#[test]
fn messages_like_kong() {
    let e = create(Kind::Services, json!({})).unwrap_err();
    assert_eq!(e, FieldErrors::field("host", "required field missing"));
    assert_eq!(
        e.message(),
        "schema violation (host: required field missing)"
    );
    let e = create(Kind::Services, json!({"port": "x"})).unwrap_err();
    assert_eq!(
        e.message(),
        "2 schema violations (host: required field missing; port: expected an integer)"
    );
    let mut e = FieldErrors::field("config.minute", "expected a number");
    e.add_entity("at least one of these fields must be non-empty");
    e.add("paths[1]", "bad");
    assert_eq!(
        Value::Object(e.0.clone()),
        json!({
            "@entity": ["at least one of these fields must be non-empty"],
            "config": {"minute": "expected a number"},
            "paths": [null, "bad"]
        })
    );
    assert_eq!(
        e.message(),
        "3 schema violations (at least one of these fields must be non-empty; \
         config.minute: expected a number; paths[1]: bad)"
    );
    assert!(FieldErrors::default().is_empty());
}

#[test]
fn patch_merges_over_the_stored_entity() {
    let old = create(
        Kind::Services,
        json!({"name": "s", "host": "a", "tags": ["t"]}),
    )
    .unwrap();
    let body = obj(json!({"id": ID, "port": 8080, "name": null}));
    let new = validate(Kind::Services, body, Write::Patch, Some(&old), NOW + 5).unwrap();
    assert_eq!(new["host"], "a");
    assert_eq!(new["port"], 8080);
    assert_eq!(new["name"], Value::Null);
    assert_eq!(new["tags"], json!(["t"]));
    assert_eq!(
        (new["created_at"].as_i64(), new["updated_at"].as_i64()),
        (Some(NOW), Some(NOW + 5))
    );
    // The url shorthand is expanded before the merge.
    let body = obj(json!({"id": ID, "url": "https://b/x"}));
    let new = validate(Kind::Services, body, Write::Patch, Some(&old), NOW).unwrap();
    assert_eq!(
        (&new["host"], &new["port"], &new["path"]),
        (&json!("b"), &json!(443), &json!("/x"))
    );
    // A PATCH that breaks the entity is refused.
    let body = obj(json!({"id": ID, "host": null}));
    let e = validate(Kind::Services, body, Write::Patch, Some(&old), NOW).unwrap_err();
    assert_eq!(e, FieldErrors::field("host", "required field missing"));
}

#[test]
fn patch_merges_plugin_config_recursively() {
    let old = create(
        Kind::Plugins,
        json!({"name": "rate-limiting", "config": {"minute": 5, "redis": {"host": "r", "port": 1}}}),
    )
    .unwrap();
    let body = obj(json!({"id": ID, "config": {"hour": 100, "redis": {"port": 2}}}));
    let new = validate(Kind::Plugins, body, Write::Patch, Some(&old), NOW).unwrap();
    // rate-limiting's defaults are filled around the merged fields.
    let c = &new["config"];
    assert_eq!(
        (
            &c["minute"],
            &c["hour"],
            &c["redis"]["host"],
            &c["redis"]["port"]
        ),
        (&json!(5), &json!(100), &json!("r"), &json!(2))
    );
    assert_eq!(c["redis"]["timeout"], 2000);
    // Arrays and other fields replace.
    let body = obj(json!({"id": ID, "protocols": ["http"]}));
    let new = validate(Kind::Plugins, body, Write::Patch, Some(&old), NOW).unwrap();
    assert_eq!(new["protocols"], json!(["http"]));
}

#[test]
fn put_keeps_only_created_at() {
    let old = create(
        Kind::Services,
        json!({"host": "a", "port": 81, "retries": 1}),
    )
    .unwrap();
    let mut old_at = old.clone();
    old_at["created_at"] = json!(10);
    let body = obj(json!({"id": ID, "host": "b", "created_at": 99, "updated_at": 99}));
    let new = validate(Kind::Services, body, Write::Replace, Some(&old_at), NOW).unwrap();
    assert_eq!(
        (&new["host"], &new["port"], &new["retries"]),
        (&json!("b"), &json!(80), &json!(5))
    );
    assert_eq!(
        (new["created_at"].as_i64(), new["updated_at"].as_i64()),
        (Some(10), Some(NOW))
    );
}

#[test]
fn no_panic_on_any_value() {
    let values = [
        json!(null),
        json!(-1),
        json!(1.5),
        json!(1e300),
        json!(""),
        json!("x"),
        json!(true),
        json!([]),
        json!([1, null]),
        json!({}),
        json!({"id": 1}),
        json!({"a": {"b": []}}),
        json!("~(("),
        json!(["~(("]),
        json!({"x": ["~*(("]}),
        json!(u64::MAX),
    ];
    let fields = [
        "id",
        "name",
        "host",
        "port",
        "url",
        "protocols",
        "paths",
        "hosts",
        "methods",
        "headers",
        "service",
        "route",
        "consumer",
        "upstream",
        "config",
        "cert",
        "key",
        "cert_alt",
        "snis",
        "target",
        "weight",
        "healthchecks",
        "tags",
        "username",
        "regex_priority",
        "path_handling",
        "algorithm",
        "x.y[99999999999]",
    ];
    for kind in Kind::ALL {
        for f in fields {
            for v in &values {
                let mut b = Map::new();
                b.insert("id".into(), ID.into());
                b.insert(f.into(), v.clone());
                let _ = validate(kind, b.clone(), Write::Create, None, 0).map_err(|e| e.message());
                let old = json!({"id": ID, "config": {"a": 1}, "created_at": "x"});
                let _ = validate(kind, b, Write::Patch, Some(&old), 0);
            }
        }
    }
}

#[test]
fn error_paths_from_user_keys_nest_at_most_max_depth() {
    let name = "a.".repeat(1_000_000);
    let mut e = FieldErrors::default();
    e.add(&format!("headers.{name}"), "expected a string");
    let mut depth = 0;
    let mut v = &Value::Object(e.0.clone());
    while let Some(inner) = v.as_object().and_then(|o| o.values().next()) {
        depth += 1;
        v = inner;
    }
    assert_eq!(depth, crate::input_limits::MAX_DEPTH);
    assert!(e.message().starts_with("schema violation (headers.a.a."));
    // Through validation, as a route's header name.
    let mut body = serde_json::Map::new();
    body.insert("id".into(), uuid::Uuid::nil().to_string().into());
    body.insert("paths".into(), serde_json::json!(["/"]));
    body.insert("headers".into(), serde_json::json!({ name: 1 }));
    let e = validate(Kind::Routes, body, Write::Create, None, 0).unwrap_err();
    assert!(
        e.message().contains("expected an array"),
        "{}",
        &e.message()[..100]
    );
}
