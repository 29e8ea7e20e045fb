//! Kong plugins on the request path, over real sockets: precedence of scopes,
//! priority order, disabled instances, each implemented plugin's behaviour,
//! and their schemas through the Admin API (on PostgreSQL) and `/schemas`.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::postgres::Postgres;
use common::*;
use http_body_util::Full;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn req(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &'static [u8],
) -> http::Request<Full<Bytes>> {
    let mut b = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "plugins.test");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::from_static(body))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_precedence_priority_and_disabled_instances() {
    let up = upstream("up").await;
    let u = up.addr;
    let yaml = format!(
        r#"
_format_version: "3.0"
services:
- name: svc
  url: http://{u}
  plugins:
  - name: request-termination
    config: {{status_code: 402, message: service}}
  routes:
  - name: r-route
    paths: [/route]
    plugins:
    - name: request-termination
      config: {{status_code: 403, message: route}}
  - name: r-service
    paths: [/service]
  - name: r-disabled
    paths: [/disabled]
    plugins:
    - name: request-termination
      enabled: false
      config: {{status_code: 410, message: disabled}}
  - name: r-both
    paths: [/both]
    plugins:
    - name: request-termination
      config: {{status_code: 405, message: route only}}
  - name: r-priority
    paths: [/priority]
    plugins:
    - name: ip-restriction
      config: {{deny: [127.0.0.1]}}
    - name: cors
      config: {{origins: ["http://app.test"]}}
    - name: correlation-id
      config: {{echo_downstream: true}}
- name: other
  url: http://{u}
  routes:
  - name: r-global
    paths: [/global]
plugins:
- name: request-termination
  config: {{status_code: 418, message: global}}
- name: request-termination
  service: svc
  route: r-both
  config: {{status_code: 409, message: route and service}}
"#
    );
    let (_gw, proxy) = start_declarative(&yaml, &[], "");
    let call = |path: &'static str| async move {
        let r = send(proxy, None, req("GET", path, &[], b"")).await.unwrap();
        (r.status, r.json())
    };

    // Kong's order: route+service > route > service > global.
    assert_eq!(
        call("/both").await,
        (409, json!({"message": "route and service"}))
    );
    assert_eq!(call("/route").await, (403, json!({"message": "route"})));
    assert_eq!(call("/service").await, (402, json!({"message": "service"})));
    assert_eq!(call("/global").await, (418, json!({"message": "global"})));
    // A disabled instance does not run; the next most specific one does.
    assert_eq!(
        call("/disabled").await,
        (402, json!({"message": "service"}))
    );

    // Priority: cors (2000) answers a preflight before ip-restriction (990)
    // denies, and before request-termination (2).
    let r = send(
        proxy,
        None,
        req(
            "OPTIONS",
            "/priority",
            &[
                ("origin", "http://app.test"),
                ("access-control-request-method", "GET"),
            ],
            b"",
        ),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://app.test")
    );
    assert!(r.body.is_empty());
    // ip-restriction (990) before request-termination (2); the header filters
    // of the plugins that ran before it still apply to its answer.
    let r = send(
        proxy,
        None,
        req("GET", "/priority", &[("origin", "http://app.test")], b""),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 403);
    let j = r.json();
    assert_eq!(j["message"], "Your IP address is not allowed");
    assert_eq!(j["request_id"], r.header("x-kong-request-id").unwrap());
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://app.test")
    );
    let correlation = r.header("kong-request-id").expect("echo_downstream");
    assert!(correlation.contains('#'), "uuid#counter: {correlation}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_behave_like_kong() {
    let up = upstream("up").await;
    let u = up.addr;
    let yaml = format!(
        r#"
_format_version: "3.0"
services:
- name: svc
  url: http://{u}
  routes:
  - name: plain
    paths: [/plain]
  - name: correlated
    paths: [/correlated]
    plugins:
    - name: correlation-id
      config: {{header_name: X-Trace-Id, generator: uuid, echo_downstream: true}}
  - name: restricted
    paths: [/restricted]
    plugins:
    - name: ip-restriction
      config: {{deny: [203.0.113.0/24], status: 401, message: Go away}}
  - name: allow-listed
    paths: [/allow]
    plugins:
    - name: ip-restriction
      config: {{allow: [198.51.100.0/24]}}
  - name: limited
    paths: [/limited]
    plugins:
    - name: request-size-limiting
      config: {{allowed_payload_size: 1, size_unit: kilobytes}}
  - name: must-say
    paths: [/must-say]
    plugins:
    - name: request-size-limiting
      config: {{require_content_length: true}}
  - name: cors
    paths: [/cors]
    plugins:
    - name: cors
      config:
        origins: ["http://app.test", "https://.*\\.app\\.test"]
        methods: [GET, POST]
        headers: [X-One]
        exposed_headers: [X-Upstream]
        credentials: true
        max_age: 600
  - name: terminated
    paths: [/terminated]
    plugins:
    - name: request-termination
      config: {{status_code: 200, body: "<ok/>", content_type: application/xml}}
  - name: triggered
    paths: [/triggered]
    plugins:
    - name: request-termination
      config: {{trigger: x-maintenance}}
"#
    );
    // PROXY protocol in front, and a trusted load balancer's
    // X-Forwarded-For believed: ip-restriction sees the real client.
    let (gw, proxy) = start_declarative(
        &yaml,
        &[
            ("trusted_ips", "[\"198.51.100.0/24\"]"),
            ("real_ip_header", "\"X-Forwarded-For\""),
        ],
        " proxy_protocol",
    );
    let port = proxy.port();
    let from = |client: &str| v1(client, port);
    let lb = from("198.51.100.1");
    let call = |r: http::Request<Full<Bytes>>| {
        let lb = lb.clone();
        async move { send(proxy, Some(&lb), r).await.unwrap() }
    };

    // A route without plugins: untouched.
    let r = call(req("GET", "/plain", &[("origin", "http://app.test")], b"")).await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert!(j["headers"].get("kong-request-id").is_none(), "{j}");
    assert!(r.header("access-control-allow-origin").is_none());

    // correlation-id: generated, sent upstream, echoed; a client's id kept.
    let r = call(req("GET", "/correlated", &[], b"")).await;
    let sent = r.json()["headers"]["x-trace-id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(uuid::Uuid::parse_str(&sent).is_ok(), "{sent}");
    assert_eq!(r.header("x-trace-id"), Some(sent.as_str()));
    let r = call(req("GET", "/correlated", &[("x-trace-id", "abc")], b"")).await;
    assert_eq!(r.json()["headers"]["x-trace-id"], "abc");
    assert_eq!(r.header("x-trace-id"), Some("abc"));

    // ip-restriction on the address after PROXY protocol...
    let denied = send(
        proxy,
        Some(&from("203.0.113.7")),
        req("GET", "/restricted", &[], b""),
    )
    .await
    .unwrap();
    assert_eq!(denied.status, 401);
    assert_eq!(denied.json()["message"], "Go away");
    let ok = send(
        proxy,
        Some(&from("192.0.2.1")),
        req("GET", "/restricted", &[], b""),
    )
    .await
    .unwrap();
    assert_eq!(ok.status, 200);
    // ... and after the trusted balancer's X-Forwarded-For.
    let r = call(req(
        "GET",
        "/restricted",
        &[("x-forwarded-for", "203.0.113.9")],
        b"",
    ))
    .await;
    assert_eq!(r.status, 401);
    // An untrusted client cannot claim an address.
    let r = send(
        proxy,
        Some(&from("192.0.2.1")),
        req("GET", "/allow", &[("x-forwarded-for", "198.51.100.2")], b""),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["message"], "Your IP address is not allowed");
    assert_eq!(call(req("GET", "/allow", &[], b"")).await.status, 200);

    // request-size-limiting: by Content-Length, before reading...
    let r = call(req("POST", "/limited/upload", &[], &[b'x'; 1025])).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["message"], "Request size limit exceeded");
    let r = call(req("POST", "/limited/upload", &[], &[b'x'; 1024])).await;
    assert_eq!((r.status, r.json()["received"].clone()), (200, json!(1024)));
    // ... and a chunked body while it streams.
    let head = "POST /limited/upload HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n";
    let over = raw(proxy, &lb, head, &[600, 600]).await;
    assert!(over.starts_with("HTTP/1.1 413"), "{over}");
    assert!(over.contains("Request size limit exceeded"), "{over}");
    let under = raw(proxy, &lb, head, &[500, 500]).await;
    assert!(under.starts_with("HTTP/1.1 200"), "{under}");
    assert!(under.contains("\"received\":1000"), "{under}");
    // require_content_length.
    let no_length = raw(proxy, &lb, &head.replace("/limited", "/must-say"), &[10]).await;
    assert!(no_length.starts_with("HTTP/1.1 411"), "{no_length}");

    // cors: a preflight answered here, headers on actual responses.
    let r = call(req(
        "OPTIONS",
        "/cors",
        &[
            ("origin", "https://x.app.test"),
            ("access-control-request-method", "POST"),
        ],
        b"",
    ))
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://x.app.test")
    );
    assert_eq!(r.header("access-control-allow-methods"), Some("GET,POST"));
    assert_eq!(r.header("access-control-allow-headers"), Some("X-One"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    let r = call(req("GET", "/cors", &[("origin", "http://app.test")], b"")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["upstream"], "up");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://app.test")
    );
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("X-Upstream")
    );
    assert_eq!(r.header("vary"), Some("Origin"));
    let r = call(req("GET", "/cors", &[("origin", "http://evil.test")], b"")).await;
    assert!(r.header("access-control-allow-origin").is_none());
    // OPTIONS without Access-Control-Request-Method is not a preflight.
    let r = call(req(
        "OPTIONS",
        "/cors",
        &[("origin", "http://app.test")],
        b"",
    ))
    .await;
    assert_eq!(r.json()["method"], "OPTIONS");

    // request-termination with a body, and with a trigger.
    let r = call(req("GET", "/terminated", &[], b"")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/xml"));
    assert_eq!(&r.body[..], b"<ok/>");
    assert_eq!(call(req("GET", "/triggered", &[], b"")).await.status, 200);
    let r = call(req("GET", "/triggered", &[("x-maintenance", "1")], b"")).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json(), json!({"message": "Service unavailable"}));

    // The plugin endpoints work without a database.
    let r = admin(gw.admin, "GET", "/plugins/enabled", None, None).await;
    let enabled = r.json()["enabled_plugins"].clone();
    assert!(enabled
        .as_array()
        .unwrap()
        .contains(&json!("ip-restriction")));
    let r = admin(
        gw.admin,
        "GET",
        "/schemas/plugins/request-size-limiting",
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let fields = r.json()["fields"].clone();
    let config = fields
        .as_array()
        .unwrap()
        .iter()
        .find_map(|f| f.get("config"))
        .unwrap()
        .clone();
    assert_eq!(
        config["fields"][1]["size_unit"]["one_of"],
        json!(["megabytes", "kilobytes", "bytes"])
    );
    let r = admin(
        gw.admin,
        "POST",
        "/schemas/plugins/validate",
        Some(json!({"name": "cors", "config": {"max_age": "long"}})),
        None,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "schema violation (config.max_age: expected a number)"
    );
    let r = admin(
        gw.admin,
        "POST",
        "/schemas/plugins/validate",
        Some(json!({"name": "cors", "config": {"max_age": 60}})),
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"message": "schema validation successful"}))
    );
    let r = admin(gw.admin, "GET", "/schemas/plugins/nope", None, None).await;
    assert_eq!(
        (r.status, r.json()),
        (404, json!({"message": "No plugin named 'nope'"}))
    );
}

/// Sends a raw HTTP/1.1 request after `preamble`, with a chunked body of
/// the given chunk sizes, and returns the whole answer as text.
async fn raw(addr: SocketAddr, preamble: &[u8], head: &str, chunks: &[usize]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(preamble).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    for n in chunks {
        // The gateway may answer (and close) before taking every chunk.
        let chunk = format!("{n:x}\r\n{}\r\n", "y".repeat(*n));
        if s.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let read = tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            // Keep-alive: the answer is complete when nothing more comes.
            Err(_) if !out.is_empty() => break,
            Err(_) => assert!(Instant::now() < deadline, "no answer"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------- the Admin API on PostgreSQL ----------

async fn call(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let r = admin(addr, method, path, body, None).await;
    let v = if r.body.is_empty() {
        Value::Null
    } else {
        r.json()
    };
    (r.status, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_validates_configs_fills_defaults_and_runs_them() {
    let pg = Postgres::start();
    let conf = pg.bootstrapped("plugins");
    let (gw, proxy_addr) = db_node(&conf);
    let port = proxy_addr.port();
    let a = gw.admin;
    let proxy: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // Kong's schema violation, the field named.
    let (code, e) = call(
        a,
        "POST",
        "/plugins",
        Some(json!({"name": "request-termination", "config": {"status_code": 99}})),
    )
    .await;
    assert_eq!(code, 400, "{e}");
    assert_eq!(
        e,
        json!({
            "code": 2,
            "name": "schema violation",
            "message": "schema violation (config.status_code: value should be between 100 and 599)",
            "fields": {"config": {"status_code": "value should be between 100 and 599"}},
        })
    );
    let (code, e) = call(
        a,
        "POST",
        "/plugins",
        Some(json!({"name": "cors", "config": {"origin": "*"}})),
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(e["fields"], json!({"config": {"origin": "unknown field"}}));
    let (code, e) = call(
        a,
        "POST",
        "/plugins",
        Some(json!({"name": "ip-restriction", "config": {}})),
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(
        e["message"],
        "schema violation (at least one of these fields must be non-empty: 'config.allow', 'config.deny')"
    );

    // Defaults filled, as GET shows them.
    let (code, s) = call(
        a,
        "POST",
        "/services",
        Some(json!({"name": "s", "url": "http://127.0.0.1:9"})),
    )
    .await;
    assert_eq!(code, 201, "{s}");
    let (code, r) = call(
        a,
        "POST",
        "/services/s/routes",
        Some(json!({"name": "r", "paths": ["/r"]})),
    )
    .await;
    assert_eq!(code, 201, "{r}");
    let (code, p) = call(
        a,
        "POST",
        "/routes/r/plugins",
        Some(json!({"name": "request-termination", "config": {"status_code": 418}})),
    )
    .await;
    assert_eq!(code, 201, "{p}");
    let id = p["id"].as_str().unwrap().to_string();
    let (code, got) = call(a, "GET", &format!("/plugins/{id}"), None).await;
    assert_eq!(code, 200);
    assert_eq!(
        got["config"],
        json!({"status_code": 418, "message": null, "content_type": null, "body": null,
               "echo": false, "trigger": null})
    );
    // PATCH merges into the filled config and validates the result.
    let (code, e) = call(
        a,
        "PATCH",
        &format!("/plugins/{id}"),
        Some(json!({"config": {"body": "x", "message": "m"}})),
    )
    .await;
    assert_eq!(code, 400, "{e}");
    assert_eq!(
        e["fields"],
        json!({"config": {"@entity": ["message cannot be used with content_type or body"]}})
    );
    let (code, _) = call(
        a,
        "PATCH",
        &format!("/plugins/{id}"),
        Some(json!({"config": {"message": "teapot"}})),
    )
    .await;
    assert_eq!(code, 200);

    // The node rebuilds its snapshot and runs the plugin.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = send(proxy, None, req("GET", "/r", &[], b"")).await.unwrap();
        // The PATCHed message: the version before it answers 418 without a body.
        if r.status == 418 && !r.body.is_empty() {
            assert_eq!(r.json(), json!({"message": "teapot"}));
            break;
        }
        assert!(Instant::now() < deadline, "never applied: {}", r.status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
