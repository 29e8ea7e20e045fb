//! Start-up, `/status`, readiness, drain, `gateway quit` / `health`, config
//! errors, TLS listeners.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::Full;

fn yaml_for(up: SocketAddr) -> String {
    format!("_format_version: \"3.0\"\nservices:\n- name: echo\n  url: http://{up}\n  routes:\n  - paths: [\"/\"]\n")
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gateway"));
    c.env_remove("GATEWAY_CONF");
    c
}

/// Kong's `/status` body, which it keeps whatever its status code.
fn assert_kong_status(st: &serde_json::Value) {
    for key in [
        "connections_accepted",
        "connections_active",
        "connections_handled",
        "connections_reading",
        "connections_writing",
        "connections_waiting",
        "total_requests",
    ] {
        assert!(st["server"][key].is_u64(), "{key} missing in {st}");
    }
    assert!(st["database"]["reachable"].is_boolean(), "{st}");
    assert!(st["configuration_hash"].is_string(), "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shape_and_readiness() {
    let gw = gateway().start();

    // No configuration yet: not ready. `/status`, the ELB's health check, says
    // so too, with Kong's body.
    let r = send(gw.admin, None, get("/status")).await.unwrap();
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert_kong_status(&r.json());
    assert_eq!(r.json()["database"]["reachable"], true);
    let r = send(gw.admin, None, get("/status/ready")).await.unwrap();
    assert_eq!(r.status, 503);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("no configuration"));

    // Kong's DB-less POST /config: a bad one is refused with the field named...
    let up = upstream("u").await;
    let post = |body: String| {
        http::Request::post("/config")
            .header("host", "admin")
            .header("content-type", "application/x-yaml")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    let r = send(
        gw.admin,
        None,
        post("_format_version: \"3.0\"\nservices:\n- {name: x, hots: y}\n".into()),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400);
    assert!(
        r.json()["message"].as_str().unwrap().contains("hots"),
        "{}",
        r.json()
    );
    // ...and a good one makes the node ready.
    let r = send(gw.admin, None, post(yaml_for(up.addr))).await.unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let hash = r.json()["configuration_hash"].as_str().unwrap().to_string();
    let r = send(gw.admin, None, get("/status/ready")).await.unwrap();
    assert_eq!(
        (r.status, r.json()["message"].as_str().unwrap()),
        (200, "ready")
    );
    let st = gw.status().await;
    assert_kong_status(&st);
    assert_eq!(st["configuration_hash"], hash.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests() {
    drains_in_flight_requests("auto").await;
}

/// One worker runs every connection, the admin API and the drain on one thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_with_one_worker_thread() {
    drains_in_flight_requests("1").await;
}

async fn drains_in_flight_requests(worker_threads: &str) {
    let up = upstream("u").await;
    let port = free_port();
    let proxy: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let workers = if worker_threads == "auto" {
        "\"auto\"".to_string()
    } else {
        worker_threads.to_string()
    };
    let mut gw = gateway()
        .proxy_listen(&proxy.to_string())
        .set("worker_threads", &workers)
        .set("drain_delay", "1")
        .set("drain_timeout", "10")
        .declarative(&yaml_for(up.addr))
        .start();
    assert_eq!(
        send(gw.admin, None, get("/status/ready"))
            .await
            .unwrap()
            .status,
        200
    );
    assert_kong_status(&gw.status().await);

    // A request that takes 2.5 s, under way when the signal comes.
    let slow = tokio::spawn(async move { send(proxy, None, get("/delay/2500")).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let signalled = Instant::now();
    gw.signal(SIGTERM);
    tokio::time::sleep(Duration::from_millis(100)).await;

    // 1. Readiness turns 503 at once, on `/status` (the ELB's health check,
    // still with Kong's body) as on `/status/ready`; 2. traffic is still served.
    let r = send(gw.admin, None, get("/status")).await.unwrap();
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert_kong_status(&r.json());
    let r = send(gw.admin, None, get("/status/ready")).await.unwrap();
    assert_eq!(
        (r.status, r.json()["message"].as_str().unwrap()),
        (503, "draining")
    );
    assert_eq!(
        send(proxy, None, get("/during-drain"))
            .await
            .unwrap()
            .status,
        200
    );

    // 3. After drain_delay, no new connections.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        tokio::net::TcpStream::connect(proxy).await.is_err(),
        "still accepting after drain_delay"
    );

    // 4. The in-flight request completes; 5. the node exits 0.
    let r = slow.await.unwrap().expect("in-flight request completed");
    assert_eq!(r.status, 200);
    assert_eq!(
        gw.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        gw.log()
    );
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(5), "drain took {took:?}");
    assert!(!gw.dir.path().join("prefix/pids/gateway.pid").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quit_and_health_commands() {
    let up = upstream("u").await;
    let mut gw = gateway().declarative(&yaml_for(up.addr)).start();
    let health = bin()
        .args(["health", "--conf"])
        .arg(&gw.conf)
        .output()
        .unwrap();
    assert!(
        health.status.success(),
        "{}",
        String::from_utf8_lossy(&health.stdout)
    );
    assert!(String::from_utf8_lossy(&health.stdout).contains("ready"));

    let quit = bin()
        .args(["quit", "--conf"])
        .arg(&gw.conf)
        .output()
        .unwrap();
    assert!(
        quit.status.success(),
        "{}",
        String::from_utf8_lossy(&quit.stderr)
    );
    assert_eq!(gw.wait_exit(Duration::from_secs(5)), Some(0));

    let health = bin()
        .args(["health", "--conf"])
        .arg(&gw.conf)
        .output()
        .unwrap();
    assert!(!health.status.success());
    let quit = bin()
        .args(["quit", "--conf"])
        .arg(&gw.conf)
        .output()
        .unwrap();
    assert!(!quit.status.success());
    assert!(String::from_utf8_lossy(&quit.stderr).contains("no gateway is running"));
}

#[test]
fn bad_configuration_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("gateway.conf");
    std::fs::write(
        &conf,
        "proxy_listen = \"127.0.0.1:1 proxy_protocol\"\nadmin_lisen = \"x\"\n",
    )
    .unwrap();
    let out = bin().args(["start", "--conf"]).arg(&conf).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`admin_lisen`") && err.contains("unknown configuration key"),
        "{err}"
    );

    let out = bin()
        .args(["start", "--conf"])
        .arg(&conf)
        .env("GATEWAY_ADMIN_LISEN", "x")
        .env("GATEWAY_PROXY_LISTEN", "127.0.0.1:99999")
        .output()
        .unwrap();
    assert!(!out.status.success());

    // A bad declarative file names the entity and field.
    let yaml = dir.path().join("kong.yml");
    std::fs::write(&yaml, "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://x\n  routes:\n  - paths: [\"nope\"]\n").unwrap();
    let out = bin().args(["config", "parse"]).arg(&yaml).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("services[0] (name=s).routes[0].paths[0]") && err.contains("nope"),
        "{err}"
    );
    std::fs::write(&yaml, "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://x\n  routes:\n  - paths: [\"/ok\"]\n").unwrap();
    let out = bin().args(["config", "parse"]).arg(&yaml).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("parse successful: 1 services, 1 routes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_with_self_signed_certificate_http2_and_proxy_protocol() {
    let up = upstream("u").await;
    let (plain, pp) = (free_port(), free_port());
    let gw = gateway()
        .proxy_listen(&format!(
            "127.0.0.1:{plain} ssl http2, 127.0.0.1:{pp} ssl proxy_protocol"
        ))
        .declarative(&yaml_for(up.addr))
        .start();
    let (ok, out) = curl(&[
        "-k",
        "--http2",
        "-w",
        "\n%{http_version}",
        &format!("https://127.0.0.1:{plain}/tls"),
    ]);
    assert!(ok, "{out}\n{}", gw.log());
    assert!(out.trim_end().ends_with("\n2"), "not HTTP/2: {out}");
    assert!(out.contains("\"x-forwarded-proto\":\"https\""), "{out}");

    // PROXY header first, then the TLS handshake (as behind an ELB on 443).
    let (ok, out) = curl(&[
        "-k",
        "--haproxy-protocol",
        "--interface",
        "127.0.0.6",
        &format!("https://127.0.0.1:{pp}/tls"),
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("\"x-real-ip\":\"127.0.0.6\""), "{out}");
    // Without http2 on the listener, ALPN offers only HTTP/1.1.
    let (ok, out) = curl(&[
        "-k",
        "--http2",
        "--haproxy-protocol",
        "-w",
        "\n%{http_version}",
        &format!("https://127.0.0.1:{pp}/tls"),
    ]);
    assert!(ok && out.trim_end().ends_with("1.1"), "{out}");
}
