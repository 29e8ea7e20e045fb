//! The rate-limiting plugin over real sockets: Kong's Get started flow
//! through the Admin API with form bodies on PostgreSQL, `limit_by = ip`
//! behind PROXY protocol, the `cluster` policy shared by two nodes on one
//! PostgreSQL, and the `redis` policy against a real redis-server, killed
//! to check `fault_tolerant`.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::postgres::Postgres;
use common::*;
use http_body_util::Full;
use serde_json::Value;

fn req(path: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(path)
        .header("host", "rl.test")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// An Admin API POST with a form body, as `curl --data` sends.
async fn post_form(admin: SocketAddr, path: &str, form: &str) -> (u16, Value) {
    let r = http::Request::post(path)
        .header("host", "admin.local")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(form.to_string())))
        .unwrap();
    let r = send(admin, None, r).await.unwrap();
    let v = if r.body.is_empty() {
        Value::Null
    } else {
        r.json()
    };
    (r.status, v)
}

/// Waits until at least `margin` seconds remain in the current minute, so
/// that a sequence of requests falls in one minute window.
async fn same_minute(margin: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let into = now.as_secs() % 60;
    if 60 - into < margin {
        let wait = Duration::from_secs(60 - into) - Duration::from_nanos(now.subsec_nanos() as u64);
        tokio::time::sleep(wait + Duration::from_millis(50)).await;
    }
}

/// Waits until `path` answers `status` on `proxy`: the snapshot with every
/// plugin written before the one that makes it so is live.
async fn wait_status(proxy: SocketAddr, path: &str, status: u16, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = send(proxy, None, req(path)).await {
            if r.status == status {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{path} never answered {status}: {}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_allowed(r: &Reply, limit: u64, remaining: u64) {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.header("x-ratelimit-limit-minute"),
        Some(limit.to_string().as_str())
    );
    assert_eq!(
        r.header("x-ratelimit-remaining-minute"),
        Some(remaining.to_string().as_str())
    );
    assert_eq!(
        r.header("ratelimit-limit"),
        Some(limit.to_string().as_str())
    );
    assert_eq!(
        r.header("ratelimit-remaining"),
        Some(remaining.to_string().as_str())
    );
    let reset: u64 = r.header("ratelimit-reset").unwrap().parse().unwrap();
    assert!((1..=60).contains(&reset), "{reset}");
}

fn assert_refused(r: &Reply, limit: u64) {
    assert_eq!(r.status, 429, "{}", String::from_utf8_lossy(&r.body));
    let body = r.json();
    assert_eq!(body["message"], "API rate limit exceeded");
    assert!(body["request_id"].is_string(), "{body}");
    assert_eq!(
        r.header("x-ratelimit-limit-minute"),
        Some(limit.to_string().as_str())
    );
    assert_eq!(r.header("x-ratelimit-remaining-minute"), Some("0"));
    assert_eq!(r.header("ratelimit-remaining"), Some("0"));
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
}

fn bootstrapped(pg: &Postgres, db: &str) -> Vec<(String, String)> {
    let mut conf = pg.bootstrapped(db);
    conf.push(("db_update_frequency".into(), "1".into()));
    conf
}

fn node(conf: &[(String, String)]) -> (Gateway, SocketAddr) {
    db_node(conf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kong_get_started_flow_with_form_bodies() {
    let up = upstream("up").await;
    let pg = Postgres::start();
    let conf = bootstrapped(&pg, "rl_started");
    let (gw, proxy) = node(&conf);
    let a = gw.admin;

    // Kong's guide, step by step, as curl --data sends it.
    let (code, s) = post_form(
        a,
        "/services",
        &format!("name=example_service&url=http://{}", up.addr),
    )
    .await;
    assert_eq!(code, 201, "{s}");
    let (code, r) = post_form(
        a,
        "/services/example_service/routes",
        "name=example_route&paths[]=/mock",
    )
    .await;
    assert_eq!(code, 201, "{r}");
    let (code, p) = post_form(
        a,
        "/services/example_service/plugins",
        "name=rate-limiting&config.minute=5&config.policy=local",
    )
    .await;
    assert_eq!(code, 201, "{p}");
    assert_eq!(p["config"]["minute"], 5);
    assert_eq!(p["config"]["policy"], "local");
    assert_eq!(p["config"]["limit_by"], "consumer");
    assert_eq!(p["config"]["error_code"], 429);
    assert_eq!(p["config"]["redis"]["port"], 6379);
    let (code, got) = post_form(a, "/services", "name=probe&url=http://127.0.0.1:9").await;
    assert_eq!(code, 201, "{got}");
    // Written after the rate-limiting instance: once it runs, that does too.
    post_form(a, "/services/probe/routes", "name=probe&paths[]=/probe").await;
    let (code, _) = post_form(
        a,
        "/services/probe/plugins",
        "name=request-termination&config.status_code=418&config.message=probe",
    )
    .await;
    assert_eq!(code, 201);
    wait_status(proxy, "/probe", 418, || gw.log()).await;

    same_minute(10).await;
    for remaining in (0..5).rev() {
        let r = send(proxy, None, req("/mock/anything")).await.unwrap();
        assert_allowed(&r, 5, remaining);
        assert_eq!(r.header("x-upstream"), Some("up"));
    }
    for _ in 0..2 {
        let r = send(proxy, None, req("/mock/anything")).await.unwrap();
        assert_refused(&r, 5);
    }

    // Invalid configs are refused with Kong's messages.
    let (code, e) = post_form(a, "/plugins", "name=rate-limiting&config.policy=local").await;
    assert_eq!(code, 400, "{e}");
    assert_eq!(
        e["message"],
        "schema violation (at least one of these fields must be non-empty: 'config.second', 'config.minute', 'config.hour', 'config.day', 'config.month', 'config.year')"
    );
    let (code, e) = post_form(
        a,
        "/plugins",
        "name=rate-limiting&config.second=2&config.minute=1",
    )
    .await;
    assert_eq!(code, 400, "{e}");
    assert_eq!(
        e["fields"]["config"]["@entity"][0],
        "The limit for minute(1.0) cannot be lower than the limit for second(2.0)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_by_ip_counts_the_client_behind_proxy_protocol() {
    let up = upstream("up").await;
    let u = up.addr;
    let yaml = format!(
        r#"
_format_version: "3.0"
services:
- name: svc
  url: http://{u}
  routes:
  - name: limited
    paths: [/limited]
    plugins:
    - name: rate-limiting
      config: {{minute: 2, hour: 3, limit_by: ip}}
"#
    );
    let (_gw, proxy) = start_declarative(&yaml, &[], " proxy_protocol");
    let from = |client: &str| v1(client, proxy.port());
    let a = from("203.0.113.7");
    let b = from("203.0.113.8");
    same_minute(10).await;
    for (minute, hour) in [("1", "2"), ("0", "1")] {
        let r = send(proxy, Some(&a), req("/limited")).await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-ratelimit-remaining-minute"), Some(minute));
        assert_eq!(r.header("x-ratelimit-remaining-hour"), Some(hour));
        assert_eq!(r.header("x-ratelimit-limit-hour"), Some("3"));
        // RateLimit-* follow the most restrictive period: the minute.
        assert_eq!(r.header("ratelimit-limit"), Some("2"));
        assert_eq!(r.header("ratelimit-remaining"), Some(minute));
    }
    let r = send(proxy, Some(&a), req("/limited")).await.unwrap();
    assert_eq!(r.status, 429);
    assert_eq!(r.header("x-ratelimit-remaining-minute"), Some("0"));
    // The refused request did not count against the hour.
    assert_eq!(r.header("x-ratelimit-remaining-hour"), Some("1"));
    // Another client behind the same balancer has its own count.
    let r = send(proxy, Some(&b), req("/limited")).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ratelimit-remaining-minute"), Some("1"));
    assert_eq!(r.json()["headers"]["x-real-ip"], "203.0.113.8");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_policy_is_one_limit_across_nodes() {
    let up = upstream("up").await;
    let pg = Postgres::start();
    let conf = bootstrapped(&pg, "rl_cluster");
    let (gw1, p1) = node(&conf);
    let (gw2, p2) = node(&conf);
    let a = gw1.admin;
    let (code, _) = post_form(a, "/services", &format!("name=svc&url=http://{}", up.addr)).await;
    assert_eq!(code, 201);
    post_form(a, "/services/svc/routes", "name=r&paths[]=/shared").await;
    let (code, p) = post_form(
        a,
        "/services/svc/plugins",
        "name=rate-limiting&config.minute=4&config.policy=cluster&config.fault_tolerant=false",
    )
    .await;
    assert_eq!(code, 201, "{p}");
    post_form(a, "/services", "name=probe&url=http://127.0.0.1:9").await;
    post_form(a, "/services/probe/routes", "name=probe&paths[]=/probe").await;
    post_form(
        a,
        "/services/probe/plugins",
        "name=request-termination&config.status_code=418",
    )
    .await;
    wait_status(p1, "/probe", 418, || gw1.log()).await;
    wait_status(p2, "/probe", 418, || gw2.log()).await;

    same_minute(10).await;
    // Alternating nodes, one count: 4 through, then both refuse.
    for (i, remaining) in (0..4u64).rev().enumerate() {
        let proxy = if i % 2 == 0 { p1 } else { p2 };
        let r = send(proxy, None, req("/shared")).await.unwrap();
        assert_allowed(&r, 4, remaining);
    }
    assert_refused(&send(p1, None, req("/shared")).await.unwrap(), 4);
    assert_refused(&send(p2, None, req("/shared")).await.unwrap(), 4);
    // Kong's table holds the count (refused requests are not counted).
    let v = pg.psql(
        "rl_cluster",
        "SELECT value FROM ratelimiting_metrics WHERE period = 'minute'",
    );
    assert_eq!(v, "4");
}

struct Redis {
    child: Child,
    port: u16,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis_server(password: &str) -> Redis {
    // `program` fails with how to install it when redis-server is missing.
    let bin = program("redis-server");
    let port = free_port();
    let child = Command::new(bin)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args([
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            password,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    Redis { child, port }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_policy_counts_in_redis_and_fails_open_or_closed() {
    let up = upstream("up").await;
    let u = up.addr;
    // A password: the gateway authenticates, and never logs it.
    let mut redis = redis_server("foobared-3141");
    let rp = redis.port;
    let yaml = format!(
        r#"
_format_version: "3.0"
services:
- name: svc
  url: http://{u}
  routes:
  - name: tolerant
    paths: [/tolerant]
    plugins:
    - name: rate-limiting
      config: {{minute: 3, policy: redis, redis: {{host: 127.0.0.1, port: {rp}, timeout: 300, password: foobared-3141}}}}
  - name: strict
    paths: [/strict]
    plugins:
    - name: rate-limiting
      config: {{minute: 3, policy: redis, fault_tolerant: false, redis_host: 127.0.0.1, redis_port: {rp}, redis_timeout: 300, redis_password: foobared-3141}}
"#
    );
    let (gw, proxy) = start_declarative(&yaml, &[], "");

    same_minute(10).await;
    for remaining in (0..3).rev() {
        let r = send(proxy, None, req("/tolerant")).await.unwrap();
        assert_allowed(&r, 3, remaining);
    }
    assert_refused(&send(proxy, None, req("/tolerant")).await.unwrap(), 3);
    // Kong's keys: ratelimit:<route>:<service>:<identifier>:<window ms>:<period>,
    // here the count of 127.0.0.1 on the tolerant route (refusals not counted).
    if let Ok(cli) = std::panic::catch_unwind(|| program("redis-cli")) {
        let out = Command::new(cli)
            .args([
                "-p",
                &rp.to_string(),
                "-a",
                "foobared-3141",
                "--no-auth-warning",
            ])
            .args(["--scan", "--pattern", "ratelimit:*:127.0.0.1:*:minute"])
            .output()
            .unwrap();
        let keys = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(keys.lines().count(), 1, "{keys}");
        // The refused request's increment is taken back in the background.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let out = Command::new(program("redis-cli"))
                .args([
                    "-p",
                    &rp.to_string(),
                    "-a",
                    "foobared-3141",
                    "--no-auth-warning",
                ])
                .args(["GET", keys.trim()])
                .output()
                .unwrap();
            let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if v == "3" {
                break;
            }
            assert!(Instant::now() < deadline, "count {v}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let r = send(proxy, None, req("/strict")).await.unwrap();
    assert_allowed(&r, 3, 2);

    // Redis goes away: the tolerant route lets requests through without
    // headers, the strict one answers 500, both within the timeout.
    redis.child.kill().unwrap();
    redis.child.wait().unwrap();
    let started = Instant::now();
    let r = send(proxy, None, req("/tolerant")).await.unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.header("x-ratelimit-limit-minute").is_none());
    let r = send(proxy, None, req("/strict")).await.unwrap();
    assert_eq!(r.status, 500, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["message"], "An unexpected error occurred");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(!gw.log().contains("foobared-3141"), "{}", gw.log());
}

#[test]
fn db_less_nodes_refuse_the_cluster_policy() {
    let yaml = r#"
_format_version: "3.0"
plugins:
- name: rate-limiting
  config: {minute: 5, policy: cluster}
"#;
    let mut gw = gateway().declarative(yaml).spawn();
    let code = gw.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(1), "{}", gw.log());
    assert!(
        gw.log()
            .contains("plugins[0].config.policy: expected one of: local, redis"),
        "{}",
        gw.log()
    );
}
