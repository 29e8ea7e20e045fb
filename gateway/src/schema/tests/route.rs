//! Route schema tests.

use serde_json::{json, Value};

use super::*;

#[test]
fn route_defaults_in_kong_shape() {
    let r = create(
        Kind::Routes,
        json!({"paths": ["/a"], "service": {"id": OTHER}}),
    )
    .unwrap();
    assert_eq!(
        r,
        json!({
            "id": ID, "created_at": NOW, "updated_at": NOW, "name": null,
            "protocols": ["http", "https"], "methods": null, "hosts": null,
            "paths": ["/a"], "headers": null, "https_redirect_status_code": 426,
            "regex_priority": 0, "strip_path": true, "path_handling": "v0",
            "preserve_host": false, "request_buffering": true, "response_buffering": true,
            "snis": null, "sources": null, "destinations": null, "tags": null,
            "service": {"id": OTHER}
        })
    );
    let m: crate::model::Route = serde_json::from_value(r).unwrap();
    assert_eq!(m.service.unwrap().id.to_string(), OTHER);
    assert!(m.hosts.is_empty() && m.headers.is_empty());
}

#[test]
fn route_headers_normalised() {
    let r = create(
        Kind::Routes,
        json!({"headers": {"X-Version": "v1", "x-b": ["1", "2"]}, "protocols": ["https"]}),
    )
    .unwrap();
    assert_eq!(
        r["headers"],
        json!({"x-version": ["v1"], "x-b": ["1", "2"]})
    );
    let e = errors(Kind::Routes, json!({"headers": {"x": 5}}));
    assert_eq!(e, json!({"headers": {"x": "expected an array"}}));
    let e = errors(Kind::Routes, json!({"headers": ["x"]}));
    assert_eq!(e, json!({"headers": "expected a map"}));
}

#[test]
fn route_needs_one_matching_field() {
    let e = create(Kind::Routes, json!({"hosts": [], "name": "r"})).unwrap_err();
    assert_eq!(
        e.message(),
        "schema violation (must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'https' or 'http')"
    );
    assert_eq!(
        Value::Object(e.0)["@entity"].as_array().map(Vec::len),
        Some(1)
    );
}

#[test]
fn route_field_errors() {
    let e = errors(
        Kind::Routes,
        json!({
            "paths": ["/a"], "protocols": ["grpc"], "https_redirect_status_code": 400,
            "service": {"id": "nope"}, "path_handling": "v2", "strip_path": "no",
            "hosts": "a.com", "snis": ["x"], "regex_priority": "1"
        }),
    );
    assert_eq!(
        e,
        json!({
            "protocols": "`grpc` is not supported; use http or https",
            "https_redirect_status_code": "expected one of: 426, 301, 302, 307, 308",
            "service": {"id": "expected a valid UUID"},
            "path_handling": "expected one of: v0, v1",
            "strip_path": "expected a boolean",
            "hosts": "expected an array",
            "snis": "not supported yet",
            "regex_priority": "expected an integer"
        })
    );
    assert_eq!(
        errors(Kind::Routes, json!({"paths": ["/a"], "service": "s"})),
        json!({"service": "expected a record"})
    );
    assert_eq!(
        errors(
            Kind::Routes,
            json!({"paths": ["/a"], "service": {"name": "s"}})
        ),
        json!({"service": {"id": "required field missing", "name": "unknown field"}})
    );
    assert_eq!(
        errors(Kind::Routes, json!({"paths": [1]})),
        json!({"paths": "expected a string"})
    );
}

#[test]
fn route_that_does_not_compile_is_refused() {
    let e = errors(Kind::Routes, json!({"paths": ["/ok", "~/(unclosed"]}));
    let msg = e["paths"][1].as_str().unwrap();
    assert!(msg.starts_with("invalid regex `~/(unclosed`"), "{msg}");
    assert_eq!(e["paths"][0], Value::Null);
    let e = errors(Kind::Routes, json!({"paths": ["nope"]}));
    assert!(
        e["paths"][0].as_str().unwrap().contains("must start with"),
        "{e}"
    );
    let e = errors(Kind::Routes, json!({"hosts": ["a.*.com"]}));
    assert!(e["hosts"][0].as_str().unwrap().contains("wildcard"), "{e}");
    let e = errors(Kind::Routes, json!({"methods": ["get"]}));
    assert!(
        e["methods"][0].as_str().unwrap().contains("upper-case"),
        "{e}"
    );
    let e = create(Kind::Routes, json!({"headers": {"host": "a"}})).unwrap_err();
    assert!(
        e.message().starts_with("schema violation (headers.host:"),
        "{}",
        e.message()
    );
    let e = errors(Kind::Routes, json!({"headers": {"x-a": ["~*("]}}));
    assert!(
        e["headers"]["x-a"][0].as_str().unwrap().contains("regex"),
        "{e}"
    );
}
