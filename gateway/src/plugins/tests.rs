//! Unit tests of the plugin framework and plugins: schemas (defaults, Kong's
//! violations), chain compilation (scopes, precedence, priority) and each
//! plugin's phases on hand-built requests.

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue, Method, Uri};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::*;
use crate::model::{Entities, ForeignKey, Plugin};
use crate::proxy::body::ProxyBody;
use crate::schema::{self, Kind, Write};

const ID: &str = "6f9a1b6e-2c55-4c7c-9a7a-1f0a5b8f0c11";

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object: {v}"),
    }
}

/// A plugin through the Admin API schema.
fn create(v: Value) -> Result<Value, crate::schema::FieldErrors> {
    let mut b = obj(v);
    b.insert("id".into(), ID.into());
    schema::validate(Kind::Plugins, b, Write::Create, None, 1)
}

fn config_of(name: &str, config: Value) -> Value {
    create(json!({"name": name, "config": config})).unwrap()["config"].clone()
}

fn violation(name: &str, config: Value) -> (Value, String) {
    let e = create(json!({"name": name, "config": config})).unwrap_err();
    (Value::Object(e.0.clone()), e.message())
}

#[test]
fn defaults_are_filled_like_kong() {
    assert_eq!(
        config_of("request-termination", json!({})),
        json!({"status_code": 503, "message": null, "content_type": null, "body": null,
               "echo": false, "trigger": null})
    );
    assert_eq!(
        config_of("correlation-id", json!({})),
        json!({"header_name": "Kong-Request-ID", "generator": "uuid#counter", "echo_downstream": false})
    );
    assert_eq!(
        config_of("request-size-limiting", json!({})),
        json!({"allowed_payload_size": 128, "size_unit": "megabytes", "require_content_length": false})
    );
    assert_eq!(
        config_of("ip-restriction", json!({"deny": ["10.0.0.0/8"]})),
        json!({"allow": null, "deny": ["10.0.0.0/8"], "status": null, "message": null})
    );
    assert_eq!(
        config_of("cors", json!({})),
        json!({"origins": null, "headers": null, "exposed_headers": null,
               "methods": ["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT"],
               "max_age": null, "credentials": false, "private_network": false,
               "preflight_continue": false, "allow_origin_absent": true})
    );
}

#[test]
fn numbers_keep_their_shape() {
    assert_eq!(
        config_of("cors", json!({"max_age": 3600}))["max_age"],
        json!(3600)
    );
    assert_eq!(
        config_of("cors", json!({"max_age": 1.5}))["max_age"],
        json!(1.5)
    );
    let c = config_of("ip-restriction", json!({"allow": ["::1"], "status": 401}));
    assert_eq!(c["status"], json!(401));
}

#[test]
fn unknown_fields_and_bad_values_are_schema_violations() {
    let (fields, message) = violation("request-termination", json!({"status_code": 700}));
    assert_eq!(
        fields,
        json!({"config": {"status_code": "value should be between 100 and 599"}})
    );
    assert_eq!(
        message,
        "schema violation (config.status_code: value should be between 100 and 599)"
    );
    let (fields, _) = violation("cors", json!({"origin": ["*"]}));
    assert_eq!(fields, json!({"config": {"origin": "unknown field"}}));
    let (fields, _) = violation("correlation-id", json!({"generator": "random"}));
    assert_eq!(
        fields,
        json!({"config": {"generator": "expected one of: uuid, uuid#counter, tracker"}})
    );
    let (fields, _) = violation("ip-restriction", json!({"allow": ["10.0.0.1", "nope"]}));
    assert_eq!(
        fields,
        json!({"config": {"allow": [null, "invalid ip or cidr range: 'nope'"]}})
    );
    let (fields, message) = violation("ip-restriction", json!({}));
    assert_eq!(
        fields,
        json!({"@entity": ["at least one of these fields must be non-empty: 'config.allow', 'config.deny'"]})
    );
    assert_eq!(
        message,
        "schema violation (at least one of these fields must be non-empty: 'config.allow', 'config.deny')"
    );
    let (fields, _) = violation("request-termination", json!({"message": "m", "body": "b"}));
    assert_eq!(
        fields,
        json!({"config": {"@entity": ["message cannot be used with content_type or body"]}})
    );
    let (fields, _) = violation("request-size-limiting", json!({"size_unit": "gigabytes"}));
    assert_eq!(
        fields,
        json!({"config": {"size_unit": "expected one of: megabytes, kilobytes, bytes"}})
    );
    let (fields, _) = violation("cors", json!({"methods": ["GET", "FETCH"]}));
    assert_eq!(
        fields["config"]["methods"][1],
        "expected one of: GET, HEAD, PUT, PATCH, POST, DELETE, OPTIONS, TRACE, CONNECT"
    );
    let (fields, _) = violation("cors", json!({"origins": ["(unclosed"]}));
    assert_eq!(
        fields,
        json!({"config": {"origins": ["'(unclosed' is not a valid regex"]}})
    );
    let (fields, _) = violation("correlation-id", json!({"header_name": "bad name"}));
    assert_eq!(
        fields["config"]["header_name"],
        "bad header name 'bad name', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
    );
}

#[test]
fn protocols_are_narrowed_by_the_plugin_schema() {
    let e = create(json!({"name": "cors", "protocols": ["http", "tcp"]})).unwrap_err();
    assert_eq!(
        Value::Object(e.0),
        json!({"protocols": "expected one of: grpc, grpcs, http, https (got 'tcp')"})
    );
    let p = create(
        json!({"name": "ip-restriction", "protocols": ["tcp"], "config": {"allow": ["10.0.0.0/8"]}}),
    );
    assert!(p.is_ok(), "{p:?}");
    // Not implemented here: any Kong protocol.
    assert!(create(json!({"name": "response-ratelimiting", "protocols": ["tcp"]})).is_ok());
}

#[test]
fn plugins_not_implemented_keep_their_config_as_given() {
    let c = config_of(
        "response-ratelimiting",
        json!({"minute": 5, "whatever": true}),
    );
    assert_eq!(c, json!({"minute": 5, "whatever": true}));
}

#[test]
fn patch_revalidates_the_merged_config() {
    let old =
        create(json!({"name": "request-termination", "config": {"status_code": 403}})).unwrap();
    let body = obj(json!({"id": ID, "config": {"message": "go away"}}));
    let new = schema::validate(Kind::Plugins, body, Write::Patch, Some(&old), 2).unwrap();
    assert_eq!(new["config"]["status_code"], 403);
    assert_eq!(new["config"]["message"], "go away");
    let body = obj(json!({"id": ID, "config": {"nope": 1}}));
    let e = schema::validate(Kind::Plugins, body, Write::Patch, Some(&old), 2).unwrap_err();
    assert_eq!(e.message(), "schema violation (config.nope: unknown field)");
}

// ---------- chains ----------

fn plugin(name: &str, config: Value, route: Option<Uuid>, service: Option<Uuid>) -> Plugin {
    let filled = config_of(name, config);
    Plugin {
        id: Uuid::new_v4(),
        name: name.into(),
        instance_name: None,
        config: filled,
        protocols: vec!["http".into(), "https".into()],
        enabled: true,
        service: service.map(|id| ForeignKey { id }),
        route: route.map(|id| ForeignKey { id }),
        consumer: None,
        tags: vec![],
        created_at: 0,
        updated_at: 0,
    }
}

fn status_of(chain: &Chain) -> Option<u16> {
    let mut headers = HeaderMap::new();
    let mut state = RequestState::default();
    let uri = Uri::from_static("/");
    let id = HeaderValue::from_static("id");
    let mut req = Request {
        method: &Method::GET,
        uri: &uri,
        headers: &mut headers,
        client: "127.0.0.1".parse().unwrap(),
        https: false,
        request_id: &id,
        route: uuid::Uuid::nil(),
        service: None,
    };
    super::now_or_never(chain.access(&mut req, &mut state))
        .expect("local plugins do not wait")
        .map(|r| r.status().as_u16())
}

fn terminate(code: u16, route: Option<Uuid>, service: Option<Uuid>) -> Plugin {
    plugin(
        "request-termination",
        json!({"status_code": code}),
        route,
        service,
    )
}

#[test]
fn kong_priorities() {
    assert_eq!(
        IMPLEMENTED,
        &[
            ("acl", 950),
            ("basic-auth", 1100),
            ("correlation-id", 100_001),
            ("cors", 2000),
            ("file-log", 9),
            ("http-log", 12),
            ("ip-restriction", 990),
            ("key-auth", 1250),
            ("prometheus", 13),
            ("proxy-cache", 100),
            ("rate-limiting", 910),
            ("request-size-limiting", 951),
            ("request-termination", 2),
            ("request-transformer", 801),
            ("response-transformer", 800),
        ]
    );
}

#[test]
fn the_most_specific_instance_wins() {
    let (route, other_route, service) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let mut e = Entities::default();
    e.plugins.push(terminate(401, None, None));
    e.plugins.push(terminate(402, None, Some(service)));
    e.plugins.push(terminate(403, Some(route), None));
    e.plugins.push(terminate(404, Some(route), Some(service)));
    let index = Index::new(&e).unwrap();
    assert_eq!(status_of(&index.chain(route, Some(service))), Some(404));
    // route+service needs both.
    assert_eq!(status_of(&index.chain(route, None)), Some(403));
    assert_eq!(
        status_of(&index.chain(other_route, Some(service))),
        Some(402)
    );
    assert_eq!(status_of(&index.chain(other_route, None)), Some(401));
    // One instance per name, whatever the number that apply.
    assert_eq!(index.chain(route, Some(service)).len(), 1);
}

#[test]
fn chains_run_by_kong_priority_and_skip_disabled_and_consumer_instances() {
    let route = Uuid::new_v4();
    let mut e = Entities::default();
    e.plugins
        .push(plugin("request-termination", json!({}), None, None));
    e.plugins.push(plugin(
        "ip-restriction",
        json!({"deny": ["0.0.0.0/0"]}),
        None,
        None,
    ));
    e.plugins.push(plugin("cors", json!({}), None, None));
    e.plugins
        .push(plugin("correlation-id", json!({}), None, None));
    e.plugins
        .push(plugin("request-size-limiting", json!({}), None, None));
    let mut disabled = plugin("rate-limiting", json!({"minute": 5}), None, None);
    disabled.enabled = false;
    e.plugins.push(disabled);
    let chain = Index::new(&e).unwrap().chain(route, None);
    assert!(chain.needs_client());
    assert_eq!(
        chain.names().collect::<Vec<_>>(),
        [
            "correlation-id",
            "cors",
            "ip-restriction",
            "request-size-limiting",
            "request-termination"
        ]
    );
    // ip-restriction (990) answers before request-termination (2).
    assert_eq!(status_of(&chain), Some(403));

    let mut e = Entities::default();
    let mut off = terminate(418, None, None);
    off.enabled = false;
    e.plugins.push(off);
    let mut consumer = terminate(418, Some(route), None);
    consumer.consumer = Some(ForeignKey { id: Uuid::new_v4() });
    e.plugins.push(consumer);
    let chain = Index::new(&e).unwrap().chain(route, None);
    // The consumer's instance waits for its consumer: a request without one
    // runs nothing.
    assert_eq!(chain.len(), 1);
    assert_eq!(chain.instances().count(), 0);
    assert_eq!(status_of(&chain), None);
}

#[test]
fn a_bad_stored_config_fails_the_build_with_the_plugin_named() {
    let mut p = terminate(503, None, None);
    p.config = json!({"status_code": "x"});
    let e = Entities {
        plugins: vec![p.clone()],
        ..Entities::default()
    };
    let err = Index::new(&e).err().expect("a compile error").to_string();
    assert!(err.contains("request-termination"), "{err}");
    assert!(err.contains(&p.id.to_string()), "{err}");
    assert!(
        err.contains("config.status_code: expected an integer"),
        "{err}"
    );
}

#[test]
fn protocols_limit_where_an_instance_runs() {
    let route = Uuid::new_v4();
    let mut p = terminate(403, None, None);
    p.protocols = vec!["https".into()];
    let e = Entities {
        plugins: vec![p],
        ..Entities::default()
    };
    // status_of sends plain http.
    assert_eq!(status_of(&Index::new(&e).unwrap().chain(route, None)), None);
}

// ---------- plugins ----------

fn compiled(name: &str, config: Value) -> Instance {
    compile(&plugin(name, config, None, None)).unwrap().unwrap()
}

fn one(name: &str, config: Value) -> Chain {
    let e = Entities {
        plugins: vec![plugin(name, config, None, None)],
        ..Entities::default()
    };
    Index::new(&e).unwrap().chain(Uuid::nil(), None)
}

struct Run {
    exit: Option<http::Response<ProxyBody>>,
    state: RequestState,
    upstream_headers: HeaderMap,
}

fn run(chain: &Chain, method: Method, uri: &str, headers: &[(&str, &str)], client: &str) -> Run {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let uri: Uri = uri.parse().unwrap();
    let id = HeaderValue::from_static("0123");
    let mut state = RequestState::default();
    let exit = super::now_or_never(chain.access(
        &mut Request {
            method: &method,
            uri: &uri,
            headers: &mut h,
            client: client.parse::<IpAddr>().unwrap(),
            https: false,
            request_id: &id,
            route: uuid::Uuid::nil(),
            service: None,
        },
        &mut state,
    ))
    .expect("local plugins do not wait");
    Run {
        exit: exit.map(|r| *r),
        state,
        upstream_headers: h,
    }
}

fn body_of(r: http::Response<ProxyBody>) -> Value {
    match r.into_body() {
        ProxyBody::Full { data } => {
            serde_json::from_slice(&data.unwrap_or_default()).unwrap_or(Value::Null)
        }
        ProxyBody::Upstream { .. } | ProxyBody::Observed { .. } => panic!("not a local body"),
    }
}

#[test]
fn request_termination_answers_like_kong() {
    let r = run(
        &one("request-termination", json!({})),
        Method::GET,
        "/",
        &[],
        "1.2.3.4",
    );
    let exit = r.exit.unwrap();
    assert_eq!(exit.status(), 503);
    assert_eq!(body_of(exit), json!({"message": "Service unavailable"}));

    let chain = one(
        "request-termination",
        json!({"status_code": 418, "body": "<teapot/>", "content_type": "text/xml"}),
    );
    let exit = run(&chain, Method::GET, "/", &[], "1.2.3.4").exit.unwrap();
    assert_eq!(exit.status(), 418);
    assert_eq!(exit.headers()["content-type"], "text/xml");

    // With a trigger, only requests carrying it (header or query) end.
    let chain = one("request-termination", json!({"trigger": "x-stop"}));
    assert!(run(&chain, Method::GET, "/", &[], "1.2.3.4").exit.is_none());
    assert!(run(&chain, Method::GET, "/", &[("x-stop", "1")], "1.2.3.4")
        .exit
        .is_some());
    assert!(run(&chain, Method::GET, "/?x-stop", &[], "1.2.3.4")
        .exit
        .is_some());

    let chain = one(
        "request-termination",
        json!({"echo": true, "status_code": 200}),
    );
    let exit = run(&chain, Method::POST, "/p?a=1", &[("x-y", "z")], "1.2.3.4")
        .exit
        .unwrap();
    let j = body_of(exit);
    assert_eq!(j["request"]["method"], "POST");
    assert_eq!(j["request"]["path"], "/p");
    assert_eq!(j["request"]["query"]["a"], "1");
    assert_eq!(j["request"]["headers"]["x-y"], "z");
}

#[test]
fn ip_restriction_deny_wins_over_allow() {
    let c = compiled(
        "ip-restriction",
        json!({"allow": ["10.0.0.0/8"], "deny": ["10.1.0.0/16"]}),
    );
    let Config::IpRestriction(c) = &c.config else {
        panic!()
    };
    assert!(!c.blocks("10.2.3.4".parse().unwrap()));
    assert!(c.blocks("10.1.2.3".parse().unwrap()));
    assert!(c.blocks("192.168.0.1".parse().unwrap()));
    // IPv4-mapped addresses from dual-stack sockets compare as IPv4.
    assert!(!c.blocks("::ffff:10.2.3.4".parse().unwrap()));

    let chain = one(
        "ip-restriction",
        json!({"deny": ["1.2.3.4"], "status": 401, "message": "nope"}),
    );
    let exit = run(&chain, Method::GET, "/", &[], "1.2.3.4").exit.unwrap();
    assert_eq!(exit.status(), 401);
    assert_eq!(
        body_of(exit),
        json!({"message": "nope", "request_id": "0123"})
    );
    assert!(run(&chain, Method::GET, "/", &[], "1.2.3.5").exit.is_none());
}

#[test]
fn request_size_limiting_checks_content_length_or_limits_the_stream() {
    let chain = one(
        "request-size-limiting",
        json!({"allowed_payload_size": 10, "size_unit": "bytes"}),
    );
    let exit = run(
        &chain,
        Method::POST,
        "/",
        &[("content-length", "11")],
        "1.2.3.4",
    )
    .exit
    .unwrap();
    assert_eq!(exit.status(), 413);
    assert_eq!(
        body_of(exit),
        json!({"message": "Request size limit exceeded", "request_id": "0123"})
    );
    let exit = run(
        &chain,
        Method::POST,
        "/",
        &[("content-length", "11"), ("expect", "100-continue")],
        "1.2.3.4",
    )
    .exit
    .unwrap();
    assert_eq!(exit.status(), 417);
    let r = run(
        &chain,
        Method::POST,
        "/",
        &[("content-length", "10")],
        "1.2.3.4",
    );
    assert!(r.exit.is_none());
    assert_eq!(r.state.body_limit, None);
    // Chunked: limited while streaming.
    let r = run(
        &chain,
        Method::POST,
        "/",
        &[("transfer-encoding", "chunked")],
        "1.2.3.4",
    );
    assert!(r.exit.is_none());
    assert_eq!(r.state.body_limit, Some(10));

    let chain = one(
        "request-size-limiting",
        json!({"allowed_payload_size": 2, "require_content_length": true}),
    );
    let exit = run(&chain, Method::POST, "/", &[], "1.2.3.4").exit.unwrap();
    assert_eq!(exit.status(), 411);
    let r = run(
        &chain,
        Method::POST,
        "/",
        &[("content-length", "2097152")],
        "1.2.3.4",
    );
    assert!(r.exit.is_none(), "2 MiB is within 2 megabytes");
}

#[test]
fn correlation_id_generates_keeps_and_echoes() {
    let chain = one(
        "correlation-id",
        json!({"generator": "uuid", "echo_downstream": true}),
    );
    let r = run(&chain, Method::GET, "/", &[], "1.2.3.4");
    let sent = r.upstream_headers["kong-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(Uuid::parse_str(&sent).is_ok(), "{sent}");
    let mut resp = HeaderMap::new();
    chain.header_filter(&r.state, &mut resp);
    assert_eq!(resp["kong-request-id"], sent.as_str());

    // A client's id is kept.
    let r = run(
        &chain,
        Method::GET,
        "/",
        &[("kong-request-id", "mine")],
        "1.2.3.4",
    );
    assert_eq!(r.upstream_headers["kong-request-id"], "mine");

    let chain = one("correlation-id", json!({"header_name": "X-Trace"}));
    let a = run(&chain, Method::GET, "/", &[], "1.2.3.4");
    let b = run(&chain, Method::GET, "/", &[], "1.2.3.4");
    let (a, b) = (
        a.upstream_headers["x-trace"].to_str().unwrap().to_string(),
        b.upstream_headers["x-trace"].to_str().unwrap().to_string(),
    );
    let (ua, na) = a.split_once('#').unwrap();
    let (ub, nb) = b.split_once('#').unwrap();
    assert_eq!(ua, ub, "one uuid per worker");
    assert_eq!(nb.parse::<u64>().unwrap(), na.parse::<u64>().unwrap() + 1);
    // Not echoed by default.
    let mut resp = HeaderMap::new();
    chain.header_filter(&RequestState::default(), &mut resp);
    assert!(resp.is_empty());
}

#[test]
fn cors_preflight_and_actual_requests() {
    let chain = one(
        "cors",
        json!({"origins": ["http://a.test", "https://.*\\.b\\.test(:443)?", ".*\\.c\\.test"], "methods": ["GET", "POST"],
               "headers": ["x-one", "x-two"], "exposed_headers": ["x-out"], "max_age": 3600,
               "credentials": true}),
    );
    let r = run(
        &chain,
        Method::OPTIONS,
        "/",
        &[
            ("origin", "http://a.test"),
            ("access-control-request-method", "POST"),
        ],
        "1.2.3.4",
    );
    let exit = r.exit.unwrap();
    assert_eq!(exit.status(), 200);
    let h = exit.headers();
    assert_eq!(h["access-control-allow-origin"], "http://a.test");
    assert_eq!(h["access-control-allow-methods"], "GET,POST");
    assert_eq!(h["access-control-allow-headers"], "x-one,x-two");
    assert_eq!(h["access-control-max-age"], "3600");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["vary"], "Origin");

    // An actual request: headers in the header filter, regex origins.
    let r = run(
        &chain,
        Method::GET,
        "/",
        &[("origin", "https://x.b.test")],
        "1.2.3.4",
    );
    assert!(r.exit.is_none());
    let mut resp = HeaderMap::new();
    chain.header_filter(&r.state, &mut resp);
    assert_eq!(resp["access-control-allow-origin"], "https://x.b.test");
    assert_eq!(resp["access-control-expose-headers"], "x-out");
    assert_eq!(resp["access-control-allow-credentials"], "true");
    // A regex without `:` matches the origin's host; the default port goes.
    let r = run(
        &chain,
        Method::GET,
        "/",
        &[("origin", "http://y.c.test:80")],
        "1.2.3.4",
    );
    let mut resp = HeaderMap::new();
    chain.header_filter(&r.state, &mut resp);
    assert_eq!(resp["access-control-allow-origin"], "http://y.c.test");

    // Not an allowed origin: Vary, but no Allow-Origin.
    let r = run(
        &chain,
        Method::GET,
        "/",
        &[("origin", "http://evil.test")],
        "1.2.3.4",
    );
    let mut resp = HeaderMap::new();
    chain.header_filter(&r.state, &mut resp);
    assert!(resp.get("access-control-allow-origin").is_none());
    assert_eq!(resp["vary"], "Origin");

    // One plain origin is sent as configured.
    let chain = one("cors", json!({"origins": ["https://only.test"]}));
    let r = run(
        &chain,
        Method::GET,
        "/",
        &[("origin", "http://other.test")],
        "1.2.3.4",
    );
    let mut resp = HeaderMap::new();
    chain.header_filter(&r.state, &mut resp);
    assert_eq!(resp["access-control-allow-origin"], "https://only.test");

    // Every origin: `*`, or the origin itself with credentials; the request's
    // headers are echoed when none are configured.
    let chain = one("cors", json!({}));
    let r = run(
        &chain,
        Method::OPTIONS,
        "/",
        &[
            ("origin", "http://z.test"),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "x-asked"),
        ],
        "1.2.3.4",
    );
    let exit = r.exit.unwrap();
    assert_eq!(exit.headers()["access-control-allow-origin"], "*");
    assert_eq!(exit.headers()["access-control-allow-headers"], "x-asked");
    assert_eq!(
        exit.headers()["access-control-allow-methods"],
        "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT"
    );

    // preflight_continue: proxied, and the header filter adds nothing.
    let chain = one("cors", json!({"preflight_continue": true}));
    let r = run(
        &chain,
        Method::OPTIONS,
        "/",
        &[
            ("origin", "http://z.test"),
            ("access-control-request-method", "GET"),
        ],
        "1.2.3.4",
    );
    assert!(r.exit.is_none());
    let mut resp = HeaderMap::new();
    chain.header_filter(&r.state, &mut resp);
    assert!(resp.is_empty());
}

#[test]
fn schemas_for_implemented_bundled_and_unknown_plugins() {
    let s = schema_json("cors").unwrap();
    let config = s["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|f| f.get("config"))
        .unwrap();
    assert!(config["fields"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f.get("preflight_continue").is_some()));
    let s = schema_json("acl").unwrap();
    assert!(s["fields"].as_array().unwrap().len() > 5);
    assert!(schema_json("nope").is_none());
}

// ---------- authentication, acl and consumer scopes ----------

const ALICE: Uuid = Uuid::from_u128(0xa11ce);
const BOB: Uuid = Uuid::from_u128(0xb0b);
const ANON: Uuid = Uuid::from_u128(0xa707);

/// alice (key `alice-key`, basic alice:secret, group admins), bob (key
/// `bob-key`, no groups) and an anonymous consumer.
fn people() -> Entities {
    use crate::model::{Acl, BasicauthCredential, Consumer, KeyauthCredential};
    let consumer = |id, name: &str| Consumer {
        id,
        username: Some(name.into()),
        custom_id: None,
        tags: vec![],
        created_at: 1,
        updated_at: 1,
    };
    let key = |n: u128, c: Uuid, k: &str| KeyauthCredential {
        id: Uuid::from_u128(n),
        consumer: ForeignKey { id: c },
        key: k.into(),
        ttl: None,
        tags: vec![],
        created_at: 1,
    };
    Entities {
        consumers: vec![
            consumer(ALICE, "alice"),
            consumer(BOB, "bob"),
            consumer(ANON, "anonymous"),
        ],
        keyauth_credentials: vec![key(1, ALICE, "alice-key"), key(2, BOB, "bob-key")],
        basicauth_credentials: vec![BasicauthCredential {
            id: Uuid::from_u128(3),
            consumer: ForeignKey { id: ALICE },
            username: "alice".into(),
            password: schema::password_hash("secret", &ALICE.to_string()),
            tags: vec![],
            created_at: 1,
        }],
        acls: vec![Acl {
            id: Uuid::from_u128(4),
            consumer: ForeignKey { id: ALICE },
            group: "admins".into(),
            tags: vec![],
            created_at: 1,
        }],
        ..Entities::default()
    }
}

fn chain_of(mut e: Entities, plugins: Vec<Plugin>, route: Uuid) -> Chain {
    e.plugins = plugins;
    Index::new(&e).unwrap().chain(route, None)
}

fn header<'a>(r: &'a Run, name: &str) -> Option<&'a str> {
    r.upstream_headers.get(name).map(|v| v.to_str().unwrap())
}

#[test]
fn key_auth_identifies_the_consumer_or_answers_401() {
    let chain = chain_of(
        people(),
        vec![plugin("key-auth", json!({}), None, None)],
        Uuid::nil(),
    );
    let r = run(&chain, Method::GET, "/", &[], "10.0.0.1");
    let exit = r.exit.expect("401 without a key");
    assert_eq!(exit.status(), 401);
    assert_eq!(exit.headers()["www-authenticate"], "Key");
    assert_eq!(body_of(exit)["message"], "No API key found in request");

    let r = run(&chain, Method::GET, "/", &[("apikey", "nope")], "10.0.0.1");
    let exit = r.exit.expect("401 with a wrong key");
    assert_eq!(body_of(exit)["message"], "Unauthorized");

    // A client cannot name itself a consumer: its header is replaced.
    let r = run(
        &chain,
        Method::GET,
        "/?apikey=alice-key",
        &[
            ("x-consumer-username", "root"),
            ("x-anonymous-consumer", "true"),
        ],
        "10.0.0.1",
    );
    assert!(r.exit.is_none());
    assert_eq!(r.state.consumer, Some(ALICE));
    assert_eq!(
        header(&r, "x-consumer-id"),
        Some(ALICE.to_string().as_str())
    );
    assert_eq!(header(&r, "x-consumer-username"), Some("alice"));
    assert_eq!(
        header(&r, "x-credential-identifier"),
        Some(Uuid::from_u128(1).to_string().as_str())
    );
    assert_eq!(header(&r, "x-anonymous-consumer"), None);
    assert_eq!(r.state.uri, None, "the key stays unless hide_credentials");

    let r = run(
        &chain,
        Method::GET,
        "/",
        &[("apikey", "a"), ("apikey", "b")],
        "10.0.0.1",
    );
    assert_eq!(
        body_of(r.exit.unwrap())["message"],
        "Duplicate API key found"
    );
}

#[test]
fn key_auth_hides_credentials_and_honours_key_names_and_sources() {
    let config = json!({"hide_credentials": true, "key_names": ["x-key", "k"], "realm": "gw"});
    let chain = chain_of(
        people(),
        vec![plugin("key-auth", config, None, None)],
        Uuid::nil(),
    );
    let r = run(&chain, Method::GET, "/p?a=1&k=bob-key&b=2", &[], "10.0.0.1");
    assert!(r.exit.is_none());
    assert_eq!(r.state.consumer, Some(BOB));
    assert_eq!(r.state.uri.unwrap().to_string(), "/p?a=1&b=2");
    let r = run(
        &chain,
        Method::GET,
        "/p",
        &[("x-key", "bob-key")],
        "10.0.0.1",
    );
    assert!(r.exit.is_none());
    assert_eq!(header(&r, "x-key"), None);
    let r = run(&chain, Method::GET, "/p", &[], "10.0.0.1");
    assert_eq!(
        r.exit.unwrap().headers()["www-authenticate"],
        "Key realm=\"gw\""
    );

    let config = json!({"key_in_query": false});
    let chain = chain_of(
        people(),
        vec![plugin("key-auth", config, None, None)],
        Uuid::nil(),
    );
    let r = run(&chain, Method::GET, "/?apikey=bob-key", &[], "10.0.0.1");
    assert_eq!(r.exit.unwrap().status(), 401);
    let config = json!({"run_on_preflight": false});
    let chain = chain_of(
        people(),
        vec![plugin("key-auth", config, None, None)],
        Uuid::nil(),
    );
    assert!(run(&chain, Method::OPTIONS, "/", &[], "10.0.0.1")
        .exit
        .is_none());
}

#[test]
fn basic_auth_checks_the_password_against_its_hash() {
    use base64::Engine;
    let chain = chain_of(
        people(),
        vec![plugin("basic-auth", json!({}), None, None)],
        Uuid::nil(),
    );
    let basic = |s: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    };
    let r = run(&chain, Method::GET, "/", &[], "10.0.0.1");
    let exit = r.exit.unwrap();
    assert_eq!(exit.status(), 401);
    assert_eq!(
        exit.headers()["www-authenticate"],
        "Basic realm=\"service\""
    );
    for wrong in ["alice:nope", "alice:", "eve:secret", "alicesecret"] {
        let r = run(
            &chain,
            Method::GET,
            "/",
            &[("authorization", &basic(wrong))],
            "10.0.0.1",
        );
        assert_eq!(
            r.exit.map(|e| e.status()),
            Some(http::StatusCode::UNAUTHORIZED),
            "{wrong}"
        );
    }
    let r = run(
        &chain,
        Method::GET,
        "/",
        &[("authorization", &basic("alice:secret"))],
        "10.0.0.1",
    );
    assert!(r.exit.is_none());
    assert_eq!(r.state.consumer, Some(ALICE));
    assert_eq!(header(&r, "x-credential-identifier"), Some("alice"));
    assert!(
        header(&r, "authorization").is_some(),
        "kept unless hide_credentials"
    );
}

#[test]
fn anonymous_lets_requests_through_as_that_consumer() {
    let plugins = vec![
        plugin("key-auth", json!({"anonymous": "anonymous"}), None, None),
        plugin(
            "basic-auth",
            json!({"anonymous": ANON.to_string()}),
            None,
            None,
        ),
    ];
    let chain = chain_of(people(), plugins, Uuid::nil());
    let r = run(&chain, Method::GET, "/", &[], "10.0.0.1");
    assert!(r.exit.is_none());
    assert_eq!(r.state.consumer, Some(ANON));
    assert_eq!(header(&r, "x-anonymous-consumer"), Some("true"));
    assert_eq!(header(&r, "x-consumer-username"), Some("anonymous"));
    // Either credential gets in: basic-auth does not undo key-auth's consumer.
    let r = run(
        &chain,
        Method::GET,
        "/",
        &[("apikey", "bob-key")],
        "10.0.0.1",
    );
    assert_eq!(r.state.consumer, Some(BOB));
    assert_eq!(header(&r, "x-anonymous-consumer"), None);

    let chain = chain_of(
        people(),
        vec![plugin(
            "key-auth",
            json!({"anonymous": "ghost"}),
            None,
            None,
        )],
        Uuid::nil(),
    );
    let r = run(&chain, Method::GET, "/", &[], "10.0.0.1");
    assert_eq!(r.exit.unwrap().status(), 500);
}

#[test]
fn acl_allows_and_denies_by_group() {
    let allow = vec![
        plugin("key-auth", json!({}), None, None),
        plugin("acl", json!({"allow": ["admins"]}), None, None),
    ];
    let chain = chain_of(people(), allow, Uuid::nil());
    let r = run(
        &chain,
        Method::GET,
        "/",
        &[("apikey", "alice-key")],
        "10.0.0.1",
    );
    assert!(r.exit.is_none());
    assert_eq!(header(&r, "x-consumer-groups"), Some("admins"));
    let r = run(
        &chain,
        Method::GET,
        "/",
        &[("apikey", "bob-key")],
        "10.0.0.1",
    );
    let exit = r.exit.unwrap();
    assert_eq!(exit.status(), 403);
    assert_eq!(body_of(exit)["message"], "You cannot consume this service");

    let deny = vec![
        plugin("key-auth", json!({}), None, None),
        plugin(
            "acl",
            json!({"deny": ["admins"], "hide_groups_header": true}),
            None,
            None,
        ),
    ];
    let chain = chain_of(people(), deny, Uuid::nil());
    assert_eq!(
        run(
            &chain,
            Method::GET,
            "/",
            &[("apikey", "alice-key")],
            "10.0.0.1"
        )
        .exit
        .map(|e| e.status().as_u16()),
        Some(403)
    );
    let r = run(
        &chain,
        Method::GET,
        "/",
        &[("apikey", "bob-key")],
        "10.0.0.1",
    );
    assert!(r.exit.is_none());
    assert_eq!(header(&r, "x-consumer-groups"), None);

    // Without an authentication plugin there is no consumer: 401.
    let chain = chain_of(
        people(),
        vec![plugin("acl", json!({"allow": ["x"]}), None, None)],
        Uuid::nil(),
    );
    assert_eq!(
        run(&chain, Method::GET, "/", &[], "10.0.0.1")
            .exit
            .unwrap()
            .status(),
        401
    );

    let (_, m) = violation("acl", json!({"allow": ["a"], "deny": ["b"]}));
    assert!(
        m.contains("only one of these fields must be non-empty"),
        "{m}"
    );
    let (_, m) = violation("acl", json!({}));
    assert!(
        m.contains("at least one of these fields must be non-empty"),
        "{m}"
    );
}

#[test]
fn a_consumers_instance_overrides_the_routes_which_overrides_the_global_one() {
    let route = Uuid::new_v4();
    let service = Uuid::new_v4();
    let mut for_alice = terminate(418, None, None);
    for_alice.consumer = Some(ForeignKey { id: ALICE });
    let plugins = vec![
        plugin("key-auth", json!({}), None, None),
        terminate(401, None, None),
        terminate(403, Some(route), None),
        for_alice,
    ];
    let mut e = people();
    e.plugins = plugins.clone();
    let index = Index::new(&e).unwrap();
    let chain = index.chain(route, Some(service));
    let status = |key: &str| {
        run(&chain, Method::GET, "/", &[("apikey", key)], "10.0.0.1")
            .exit
            .map(|r| r.status().as_u16())
    };
    assert_eq!(status("alice-key"), Some(418), "consumer beats route");
    assert_eq!(status("bob-key"), Some(403), "route beats global");
    // Another route: alice's instance still beats the global one.
    let other = index.chain(Uuid::new_v4(), None);
    let r = run(
        &other,
        Method::GET,
        "/",
        &[("apikey", "alice-key")],
        "10.0.0.1",
    );
    assert_eq!(r.exit.map(|r| r.status().as_u16()), Some(418));
    // route+service beats consumer alone; consumer+route beats route+service.
    let mut e = people();
    let mut alice_route = terminate(451, Some(route), None);
    alice_route.consumer = Some(ForeignKey { id: ALICE });
    let mut alice_only = terminate(418, None, None);
    alice_only.consumer = Some(ForeignKey { id: ALICE });
    e.plugins = vec![
        plugin("key-auth", json!({}), None, None),
        terminate(409, Some(route), Some(service)),
        alice_only,
    ];
    let chain = Index::new(&e).unwrap().chain(route, Some(service));
    let r = run(
        &chain,
        Method::GET,
        "/",
        &[("apikey", "alice-key")],
        "10.0.0.1",
    );
    assert_eq!(r.exit.map(|r| r.status().as_u16()), Some(409));
    e.plugins.push(alice_route);
    let chain = Index::new(&e).unwrap().chain(route, Some(service));
    let r = run(
        &chain,
        Method::GET,
        "/",
        &[("apikey", "alice-key")],
        "10.0.0.1",
    );
    assert_eq!(r.exit.map(|r| r.status().as_u16()), Some(451));
}

#[test]
fn credentials_validate_as_kong_and_basic_auth_passwords_are_hashed() {
    let v = |kind, body: Value| {
        let mut b = obj(body);
        b.insert("id".into(), ID.into());
        schema::validate(kind, b, Write::Create, None, 5)
    };
    let consumer = json!({"id": ALICE.to_string()});
    let k = v(Kind::KeyauthCredentials, json!({"consumer": consumer})).unwrap();
    assert_eq!(
        k["key"].as_str().map(str::len),
        Some(32),
        "a key is generated: {k}"
    );
    assert!(k.get("updated_at").is_none());
    let e = v(Kind::KeyauthCredentials, json!({"key": "x"})).unwrap_err();
    assert_eq!(
        e.message(),
        "schema violation (consumer: required field missing)"
    );
    let e = v(Kind::Acls, json!({"consumer": consumer})).unwrap_err();
    assert_eq!(
        e.message(),
        "schema violation (group: required field missing)"
    );
    let mut body = obj(json!({"consumer": consumer, "username": "alice", "password": "secret"}));
    schema::hash_password(&mut body, None);
    let b = v(Kind::BasicauthCredentials, Value::Object(body)).unwrap();
    assert_eq!(
        b["password"],
        schema::password_hash("secret", &ALICE.to_string())
    );
    assert_ne!(b["password"], "secret");
    // Kong's sha1(password .. consumer_id), so credentials moved from Kong
    // work (the value is Python's hashlib.sha1).
    assert_eq!(
        schema::password_hash("secret", "00000000-0000-0000-0000-0000000a11ce"),
        "7e1c447c5730b4213e0822f853ace663796d8c9e"
    );
}

#[test]
fn transformers_fill_kong_defaults_and_take_single_values_as_lists() {
    let empty = json!({"body": [], "headers": [], "querystring": []});
    let mut replace = empty.clone();
    replace["uri"] = Value::Null;
    assert_eq!(
        config_of("request-transformer", json!({})),
        json!({"http_method": null, "remove": empty, "rename": empty, "replace": replace,
               "add": empty, "append": empty})
    );
    // A form body's `config.add.headers=x:1` arrives as one string.
    let c = config_of("request-transformer", json!({"add": {"headers": "x:1"}}));
    assert_eq!(c["add"]["headers"], json!(["x:1"]));
    let plain = json!({"json": [], "headers": []});
    let written = json!({"json": [], "json_types": [], "headers": []});
    assert_eq!(
        config_of("response-transformer", json!({})),
        json!({"remove": plain, "rename": plain, "replace": written, "add": written,
               "append": written})
    );
}

// ---------- rate-limiting ----------

mod rate_limiting_tests {
    use super::*;
    use crate::plugins::rate_limiting::window::{civil_from_days, days_from_civil, start_ms};
    use crate::plugins::rate_limiting::{header_names, Period, PERIODS};

    /// 2024-02-29T13:45:30.250Z, in a leap year.
    const T: i64 = 1_709_214_330_250;

    #[test]
    fn windows_start_at_the_period_start_in_utc() {
        assert_eq!(start_ms(Period::Second, T), 1_709_214_330_000);
        assert_eq!(start_ms(Period::Minute, T), 1_709_214_300_000);
        assert_eq!(start_ms(Period::Hour, T), 1_709_211_600_000);
        assert_eq!(start_ms(Period::Day, T), 1_709_164_800_000);
        // 2024-02-01T00:00:00Z and 2024-01-01T00:00:00Z.
        assert_eq!(start_ms(Period::Month, T), 1_706_745_600_000);
        assert_eq!(start_ms(Period::Year, T), 1_704_067_200_000);
        // The first millisecond of a month is its own window's start.
        assert_eq!(
            start_ms(Period::Month, 1_706_745_600_000),
            1_706_745_600_000
        );
        assert_eq!(
            start_ms(Period::Month, 1_706_745_599_999),
            1_704_067_200_000
        );
        for d in [-800_000, -1, 0, 59, 60, 11_016, 19_782, 2_932_896] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn header_names_are_kongs() {
        let names: Vec<_> = PERIODS
            .iter()
            .map(|p| {
                let (l, r) = header_names(*p);
                (l.as_str(), r.as_str())
            })
            .collect();
        assert_eq!(
            names[0],
            ("x-ratelimit-limit-second", "x-ratelimit-remaining-second")
        );
        assert_eq!(
            names[1],
            ("x-ratelimit-limit-minute", "x-ratelimit-remaining-minute")
        );
        assert_eq!(
            names[5],
            ("x-ratelimit-limit-year", "x-ratelimit-remaining-year")
        );
    }

    #[test]
    fn defaults_fill_the_whole_config() {
        assert_eq!(
            config_of("rate-limiting", json!({"minute": 5})),
            json!({
                "second": null, "minute": 5, "hour": null, "day": null, "month": null, "year": null,
                "limit_by": "consumer", "header_name": null, "path": null, "policy": "local",
                "fault_tolerant": true, "hide_client_headers": false, "error_code": 429,
                "error_message": "API rate limit exceeded", "sync_rate": -1,
                "redis": {"host": null, "port": 6379, "timeout": 2000, "username": null,
                          "password": null, "database": 0, "ssl": false, "ssl_verify": false,
                          "server_name": null},
            })
        );
        // Kong 3.x's flat redis_* shorthands land in the record.
        let c = config_of(
            "rate-limiting",
            json!({"second": 1, "policy": "redis", "redis_host": "127.0.0.1", "redis_port": 6380}),
        );
        assert_eq!(c["redis"]["host"], "127.0.0.1");
        assert_eq!(c["redis"]["port"], 6380);
        assert!(c.get("redis_host").is_none());
    }

    #[test]
    fn schema_errors_are_kongs() {
        let (fields, _) = violation("rate-limiting", json!({}));
        assert_eq!(
            fields,
            json!({"@entity": ["at least one of these fields must be non-empty: 'config.second', 'config.minute', 'config.hour', 'config.day', 'config.month', 'config.year'"]})
        );
        let (fields, _) = violation("rate-limiting", json!({"second": 2, "minute": 1}));
        assert_eq!(
            fields,
            json!({"config": {"@entity": ["The limit for minute(1.0) cannot be lower than the limit for second(2.0)"]}})
        );
        let (fields, _) = violation("rate-limiting", json!({"minute": 0}));
        assert_eq!(
            fields,
            json!({"config": {"minute": "value must be greater than 0"}})
        );
        let (fields, _) = violation("rate-limiting", json!({"minute": 1, "limit_by": "header"}));
        assert_eq!(
            fields,
            json!({"config": {"header_name": "required field missing"}})
        );
        let (fields, _) = violation("rate-limiting", json!({"minute": 1, "limit_by": "path"}));
        assert_eq!(
            fields,
            json!({"config": {"path": "required field missing"}})
        );
        let (fields, _) = violation("rate-limiting", json!({"minute": 1, "policy": "redis"}));
        assert_eq!(
            fields,
            json!({"config": {"redis": {"host": "required field missing"}}})
        );
        let (fields, _) = violation("rate-limiting", json!({"minute": 1, "policy": "nope"}));
        assert_eq!(
            fields,
            json!({"config": {"policy": "expected one of: local, cluster, redis"}})
        );
    }

    #[test]
    fn form_fields_are_typed_by_the_schema() {
        assert_eq!(
            config_field_type("rate-limiting", "minute").as_deref(),
            Some("number")
        );
        assert_eq!(
            config_field_type("rate-limiting", "fault_tolerant").as_deref(),
            Some("boolean")
        );
        let body = b"name=rate-limiting&config.minute=5&config.policy=local";
        let v = crate::schema::from_form(Kind::Plugins, body).unwrap();
        assert_eq!(v["config"], json!({"minute": 5, "policy": "local"}));
    }

    fn hit(chain: &Chain, client: &str) -> Run {
        run(chain, Method::GET, "/", &[], client)
    }

    #[test]
    fn local_counts_and_refuses_with_kongs_headers() {
        let chain = one(
            "rate-limiting",
            json!({"minute": 3, "hour": 10, "limit_by": "ip"}),
        );
        for remaining in [2u64, 1, 0] {
            let r = hit(&chain, "10.1.1.1");
            assert!(r.exit.is_none());
            let mut h = HeaderMap::new();
            chain.header_filter(&r.state, &mut h);
            assert_eq!(h["x-ratelimit-limit-minute"], "3");
            assert_eq!(
                h["x-ratelimit-remaining-minute"],
                remaining.to_string().as_str()
            );
            assert_eq!(h["x-ratelimit-limit-hour"], "10");
            assert_eq!(h["ratelimit-limit"], "3");
            assert_eq!(h["ratelimit-remaining"], remaining.to_string().as_str());
            let reset: u64 = h["ratelimit-reset"].to_str().unwrap().parse().unwrap();
            assert!((1..=60).contains(&reset));
        }
        let r = hit(&chain, "10.1.1.1");
        let exit = r.exit.expect("the fourth request is refused");
        assert_eq!(exit.status(), 429);
        assert_eq!(exit.headers()["x-ratelimit-remaining-minute"], "0");
        assert_eq!(exit.headers()["x-ratelimit-remaining-hour"], "7");
        assert!(exit.headers().contains_key("retry-after"));
        assert_eq!(body_of(exit)["message"], "API rate limit exceeded");
        // Another client has its own count.
        assert!(hit(&chain, "10.1.1.2").exit.is_none());
    }

    #[test]
    fn hidden_headers_and_custom_error() {
        let chain = one(
            "rate-limiting",
            json!({"second": 1, "minute": 1, "limit_by": "ip", "hide_client_headers": true,
                   "error_code": 503, "error_message": "slow down"}),
        );
        let r = hit(&chain, "10.2.2.2");
        let mut h = HeaderMap::new();
        chain.header_filter(&r.state, &mut h);
        assert!(h.is_empty());
        let exit = hit(&chain, "10.2.2.2").exit.unwrap();
        assert_eq!(exit.status(), 503);
        assert!(!exit.headers().contains_key("retry-after"));
        assert_eq!(body_of(exit)["message"], "slow down");
    }

    #[test]
    fn local_store_drops_ended_windows() {
        let store = crate::plugins::rate_limiting::local::Store::new();
        let limits = [(Period::Second, 5)];
        for k in 0..100u64 {
            store.hit(k << 58 | k, &limits, T);
        }
        assert_eq!(store.len(), 100);
        // Past the sweep interval every shard drops its old windows on its
        // next use.
        for k in 0..64u64 {
            store.hit(k << 58, &limits, T + 10_000);
        }
        assert_eq!(store.len(), 64);
    }
}

#[test]
fn rate_limiting_by_consumer_counts_each_consumer_apart() {
    let plugins = vec![
        plugin("key-auth", json!({}), None, None),
        plugin(
            "rate-limiting",
            json!({"hour": 1, "limit_by": "consumer"}),
            None,
            None,
        ),
    ];
    let chain = chain_of(people(), plugins, Uuid::new_v4());
    let status = |key: &str| {
        run(&chain, Method::GET, "/", &[("apikey", key)], "10.0.0.1")
            .exit
            .map(|r| r.status().as_u16())
    };
    // Same address, two consumers: each has its own hour.
    assert_eq!(status("alice-key"), None);
    assert_eq!(status("alice-key"), Some(429));
    assert_eq!(status("bob-key"), None);
    assert_eq!(status("bob-key"), Some(429));
}
