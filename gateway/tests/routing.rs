//! Kong route semantics and forwarding, over real HTTP through the gateway.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::*;
use http_body_util::Full;

fn config(a: SocketAddr, b: SocketAddr, closed: u16, old: SocketAddr) -> String {
    format!(
        r#"
_format_version: "3.0"
services:
- name: echo
  url: http://{a}
  routes:
  - {{name: prefix, paths: ["/echo"]}}
  - {{name: keep, paths: ["/keep"], strip_path: false}}
  - {{name: wildcard, hosts: ["*.example.com"]}}
  - {{name: regex, paths: ["~/items/\\d+$"]}}
  - {{name: preserve, paths: ["/preserve"], preserve_host: true}}
  - {{name: post-only, methods: [POST], paths: ["/m"]}}
  - {{name: secure, protocols: [https], paths: ["/secure"]}}
- name: based
  url: http://{a}/base
  routes:
  - {{name: based, paths: ["/based"]}}
  - {{name: by-header, headers: {{x-version: [v2]}}, paths: ["/m"]}}
- name: balanced
  host: pool
  routes:
  - {{name: lb, paths: ["/lb"]}}
- name: dead
  url: http://127.0.0.1:{closed}
  retries: 2
  connect_timeout: 500
  routes:
  - {{name: dead, paths: ["/dead"]}}
- name: slow
  url: http://{a}
  read_timeout: 300
  routes:
  - {{name: slow, paths: ["/delay"], strip_path: false}}
- name: half-dead
  host: half-dead
  routes:
  - {{name: half-dead, paths: ["/half"]}}
- name: old
  url: http://{old}
  routes:
  - {{name: old, paths: ["/old"]}}
upstreams:
- name: pool
  targets:
  - {{target: "{a}", weight: 100}}
  - {{target: "{b}", weight: 100}}
- name: half-dead
  targets:
  - {{target: "{a}", weight: 100}}
  - {{target: "127.0.0.1:{closed}", weight: 100}}
"#
    )
}

struct Setup {
    gw: Gateway,
    proxy: SocketAddr,
    _a: Upstream,
    _b: Upstream,
    _old: Upstream,
}

async fn setup() -> Setup {
    let a = upstream("a").await;
    let b = upstream("b").await;
    let old = http10_upstream().await;
    let port = free_port();
    let gw = gateway()
        .proxy_listen(&format!("127.0.0.1:{port} reuseport backlog=128"))
        .declarative(&config(a.addr, b.addr, free_port(), old.addr))
        .start();
    Setup {
        gw,
        proxy: format!("127.0.0.1:{port}").parse().unwrap(),
        _a: a,
        _b: b,
        _old: old,
    }
}

fn req(
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> http::Request<Full<Bytes>> {
    let mut b = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

async fn call(s: &Setup, r: http::Request<Full<Bytes>>) -> Reply {
    send(s.proxy, None, r).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kong_route_semantics() {
    let s = setup().await;

    // Prefix, stripped; the query string survives; request id both ways.
    let r = call(&s, req("GET", "/echo/abc?x=1", "client.test", &[])).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let j = r.json();
    assert_eq!(j["uri"], "/abc?x=1");
    assert_eq!(j["headers"]["x-forwarded-prefix"], "/echo");
    assert_eq!(j["headers"]["x-forwarded-host"], "client.test");
    assert_eq!(j["headers"]["host"], s._a.addr.to_string());
    let id = r.header("x-kong-request-id").expect("request id header");
    assert_eq!(id.len(), 32);
    assert_eq!(j["headers"]["x-kong-request-id"], id);

    // A plain prefix also matches a longer word, as in Kong.
    assert_eq!(
        call(&s, req("GET", "/echoes", "h", &[])).await.json()["uri"],
        "/es"
    );
    assert_eq!(
        call(&s, req("GET", "/keep/x", "h", &[])).await.json()["uri"],
        "/keep/x"
    );
    assert_eq!(
        call(&s, req("GET", "/based/x", "h", &[])).await.json()["uri"],
        "/base/x"
    );
    assert_eq!(
        call(&s, req("GET", "/based", "h", &[])).await.json()["uri"],
        "/base"
    );

    // Wildcard host with any port; no paths means every path.
    let j = call(&s, req("GET", "/zzz", "API.example.com:8000", &[]))
        .await
        .json();
    assert_eq!(j["uri"], "/zzz");

    // Regex paths are anchored at the start; `$` anchors the end.
    assert_eq!(
        call(&s, req("GET", "/items/42", "h", &[])).await.status,
        200
    );
    let miss = call(&s, req("GET", "/items/42/x", "h", &[])).await;
    assert_eq!(miss.status, 404);
    let j = miss.json();
    assert_eq!(j["message"], "no Route matched with those values");
    assert_eq!(j["request_id"], miss.header("x-kong-request-id").unwrap());

    // preserve_host.
    let j = call(&s, req("GET", "/preserve", "my.host:1234", &[]))
        .await
        .json();
    assert_eq!(j["headers"]["host"], "my.host:1234");

    // Methods and headers pick between routes on the same path.
    assert_eq!(
        call(&s, req("POST", "/m", "h", &[])).await.json()["uri"],
        "/"
    );
    let j = call(&s, req("GET", "/m/x", "h", &[("x-version", "V2")]))
        .await
        .json();
    assert_eq!(j["uri"], "/base/x");
    assert_eq!(call(&s, req("GET", "/m", "h", &[])).await.status, 404);

    // An https-only route over http.
    let r = call(&s, req("GET", "/secure", "h", &[])).await;
    assert_eq!(r.status, 426);
    assert_eq!(r.json()["message"], "Please use HTTPS protocol");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balancing_and_upstream_errors() {
    let s = setup().await;

    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..10 {
        let r = call(&s, req("GET", "/lb", "h", &[])).await;
        assert_eq!(r.status, 200);
        *seen
            .entry(r.header("x-upstream").unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(seen.get("a"), Some(&5), "{seen:?}");
    assert_eq!(seen.get("b"), Some(&5), "{seen:?}");

    // Nothing listens: 502 after the retries, with Kong's message.
    let r = call(&s, req("GET", "/dead", "h", &[])).await;
    assert_eq!(r.status, 502);
    assert_eq!(
        r.json()["message"],
        "An invalid response was received from the upstream server"
    );
    assert!(r.header("x-kong-request-id").is_some());

    // The upstream answers after read_timeout: 504.
    let start = std::time::Instant::now();
    let r = call(&s, req("GET", "/delay/1500", "h", &[])).await;
    assert_eq!(r.status, 504);
    assert_eq!(r.json()["message"], "The upstream server is timing out");
    assert!(
        start.elapsed() < std::time::Duration::from_millis(1200),
        "{:?}",
        start.elapsed()
    );

    // A dead target: each request retries on the next one and succeeds.
    for _ in 0..6 {
        let r = call(&s, req("GET", "/half", "h", &[])).await;
        assert_eq!(r.status, 200);
    }

    // Upstream connections are kept alive: the upstream sees one peer.
    let peers: std::collections::BTreeSet<String> = upstream_peers(&s).await;
    assert_eq!(peers.len(), 1, "{peers:?}");

    // An HTTP/1.0 upstream: the client still gets an HTTP/1.1 answer.
    let r = call(&s, req("GET", "/old", "h", &[])).await;
    assert_eq!(
        (r.status, r.version, &r.body[..]),
        (200, http::Version::HTTP_11, &b"old"[..])
    );

    // The node is unharmed.
    assert_eq!(call(&s, req("GET", "/echo", "h", &[])).await.status, 200);
    let st = s.gw.status().await;
    assert!(st["server"]["total_requests"].as_u64().unwrap() >= 14);
}

async fn upstream_peers(s: &Setup) -> std::collections::BTreeSet<String> {
    let mut peers = std::collections::BTreeSet::new();
    for _ in 0..5 {
        let j = call(s, req("GET", "/keep/alive", "h", &[])).await.json();
        peers.insert(j["peer"].as_str().unwrap().to_string());
    }
    peers
}
