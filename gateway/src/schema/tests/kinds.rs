//! Consumers, plugins, upstreams, targets and certificates.

use serde_json::{json, Value};

use super::*;
use crate::model;

#[test]
fn consumers() {
    let c = create(Kind::Consumers, json!({"custom_id": "c1"})).unwrap();
    assert_eq!(
        c,
        json!({"id": ID, "created_at": NOW, "updated_at": NOW, "username": null,
               "custom_id": "c1", "tags": null})
    );
    let e = create(Kind::Consumers, json!({"tags": ["a"]})).unwrap_err();
    assert_eq!(
        e.message(),
        "schema violation (at least one of these fields must be non-empty: 'custom_id', 'username')"
    );
    assert_eq!(
        errors(Kind::Consumers, json!({"username": 1})),
        json!({"username": "expected a string"})
    );
}

#[test]
fn plugins() {
    let p = create(
        Kind::Plugins,
        json!({"name": "jwt", "route": {"id": OTHER}}),
    )
    .unwrap();
    assert_eq!(
        p,
        json!({"id": ID, "created_at": NOW, "updated_at": NOW, "name": "jwt",
               "instance_name": null, "config": {}, "protocols": ["grpc", "grpcs", "http", "https"],
               "enabled": true, "tags": null, "service": null, "route": {"id": OTHER},
               "consumer": null})
    );
    assert_eq!(
        errors(Kind::Plugins, json!({"name": "nope"})),
        json!({"name": "plugin 'nope' not enabled; add it to the 'plugins' configuration property"})
    );
    assert_eq!(
        errors(
            Kind::Plugins,
            json!({"config": [], "protocols": ["smtp"], "enabled": 1})
        ),
        json!({
            "name": "required field missing",
            "config": "expected a record",
            "protocols": "expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp, ws, wss (got 'smtp')",
            "enabled": "expected a boolean"
        })
    );
}

#[test]
fn upstreams() {
    let u = create(Kind::Upstreams, json!({"name": "backend"})).unwrap();
    assert_eq!(
        (
            &u["algorithm"],
            &u["slots"],
            &u["hash_on"],
            &u["use_srv_name"]
        ),
        (
            &json!("round-robin"),
            &json!(10000),
            &json!("none"),
            &json!(false)
        )
    );
    assert_eq!(u["healthchecks"], upstream::default_healthchecks());
    let u = create(
        Kind::Upstreams,
        json!({"name": "b", "healthchecks": {"active": {"http_path": "/status"}}}),
    )
    .unwrap();
    assert_eq!(u["healthchecks"]["active"]["http_path"], "/status");
    assert_eq!(u["healthchecks"]["active"]["timeout"], 1);
    assert_eq!(
        errors(
            Kind::Upstreams,
            json!({"name": "a b", "algorithm": "least-connections", "slots": 5, "hash_on": "ip"})
        ),
        json!({
            "name": "Invalid name ('a b'); must be a valid hostname",
            "algorithm": "`least-connections` is not supported yet; use `round-robin`",
            "slots": "value should be between 10 and 65536",
            "hash_on": "not supported yet"
        })
    );
    assert_eq!(
        errors(Kind::Upstreams, json!({})),
        json!({"name": "required field missing"})
    );
}

#[test]
fn targets() {
    let t = create(
        Kind::Targets,
        json!({"target": "10.0.0.1", "upstream": {"id": OTHER}}),
    )
    .unwrap();
    assert_eq!(
        t,
        json!({"id": ID, "created_at": NOW, "updated_at": NOW, "upstream": {"id": OTHER},
               "target": "10.0.0.1:8000", "weight": 100, "tags": null})
    );
    let t = create(
        Kind::Targets,
        json!({"target": "[::1]", "upstream": {"id": OTHER}}),
    )
    .unwrap();
    assert_eq!(t["target"], "[::1]:8000");
    assert_eq!(
        errors(Kind::Targets, json!({"target": "a:b:c", "weight": 70000})),
        json!({
            "upstream": "required field missing",
            "target": "`a:b:c` is not host, host:port or [ipv6]:port",
            "weight": "value should be between 0 and 65535"
        })
    );
}

fn pem_pair(name: &str) -> (String, String) {
    let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    (c.cert.pem(), c.signing_key.serialize_pem())
}

#[test]
fn certificates() {
    let (cert, key) = pem_pair("example.com");
    let c = create(Kind::Certificates, json!({"cert": cert, "key": key})).unwrap();
    assert_eq!(
        (&c["snis"], &c["cert_alt"], &c["tags"]),
        (&json!([]), &Value::Null, &Value::Null)
    );
    let c = create(
        Kind::Certificates,
        json!({"cert": cert, "key": key, "snis": ["example.com", "*.example.org"]}),
    )
    .unwrap();
    assert_eq!(c["snis"], json!(["example.com", "*.example.org"]));

    let e = errors(Kind::Certificates, json!({"cert": "nope", "key": "nope"}));
    assert_eq!(e["cert"], "invalid certificate: no PEM certificate found");
    assert!(
        e["key"].as_str().unwrap().starts_with("invalid key:"),
        "{e}"
    );
    let e = errors(Kind::Certificates, json!({"cert": cert}));
    assert_eq!(e, json!({"key": "required field missing"}));

    let (_, other_key) = pem_pair("other.com");
    let e = create(Kind::Certificates, json!({"cert": cert, "key": other_key})).unwrap_err();
    assert_eq!(
        e.message(),
        "schema violation (certificate does not match key)"
    );

    let broken = cert.replace("MII", "MIX");
    let e = errors(Kind::Certificates, json!({"cert": broken, "key": key}));
    assert!(
        e["cert"]
            .as_str()
            .unwrap()
            .starts_with("invalid certificate"),
        "{e}"
    );

    let e = create(
        Kind::Certificates,
        json!({"cert": cert, "key": key, "cert_alt": cert}),
    )
    .unwrap_err();
    assert_eq!(
        e.message(),
        "schema violation (all or none of these fields must be set: 'cert_alt', 'key_alt')"
    );
    let e = errors(
        Kind::Certificates,
        json!({"cert": cert, "key": key, "snis": ["a..b", "x.com", "x.com"]}),
    );
    assert_eq!(e, json!({"snis": "invalid sni 'a..b'"}));
}

#[test]
fn outputs_read_back_into_the_model() {
    let (cert, key) = pem_pair("example.com");
    let s = create(Kind::Services, json!({"host": "h", "tags": ["a"]})).unwrap();
    let s: model::Service = serde_json::from_value(s).unwrap();
    assert_eq!(s.tags, ["a"]);
    let r = create(Kind::Routes, json!({"methods": ["GET"]})).unwrap();
    let _: model::Route = serde_json::from_value(r).unwrap();
    let u = create(Kind::Upstreams, json!({"name": "u"})).unwrap();
    let _: model::Upstream = serde_json::from_value(u).unwrap();
    let t = create(
        Kind::Targets,
        json!({"target": "a", "upstream": {"id": OTHER}}),
    )
    .unwrap();
    let t: model::Target = serde_json::from_value(t).unwrap();
    assert_eq!((t.target.as_str(), t.weight), ("a:8000", 100));
    let c = create(Kind::Consumers, json!({"username": "u"})).unwrap();
    let c: model::Consumer = serde_json::from_value(c).unwrap();
    assert_eq!(c.username.as_deref(), Some("u"));
    let p = create(
        Kind::Plugins,
        json!({"name": "response-ratelimiting", "config": {"a": 1}}),
    )
    .unwrap();
    let p: model::Plugin = serde_json::from_value(p).unwrap();
    assert_eq!(p.config, json!({"a": 1}));
    let c = create(Kind::Certificates, json!({"cert": cert, "key": key})).unwrap();
    let c: model::Certificate = serde_json::from_value(c).unwrap();
    assert!(c.snis.is_empty() && c.key_alt.is_none());
}
