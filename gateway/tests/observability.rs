//! The log-phase plugins over real HTTP: prometheus (read with
//! `promtool check metrics`, its counts matching the requests sent), file-log
//! and http-log (to a real HTTP collector, batched), and a dead or stalled
//! collector never slowing the requests.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn start(yaml: &str) -> (Gateway, SocketAddr) {
    start_declarative(yaml, &[], "")
}

/// A collector: answers every request 200 after `delay` and keeps the bodies.
async fn collector(delay: Duration) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let keep = keep.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 65536];
                // Read the head, then Content-Length bytes of body.
                loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        tokio::time::sleep(delay).await;
                        keep.lock().unwrap().push(body[..len].to_string());
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                            .await;
                        return;
                    }
                }
            });
        }
    });
    (addr, got)
}

fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new(program("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The value of the one sample whose line starts with `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_file_log_and_http_log_see_every_request() {
    let up = upstream("obs").await;
    let (collector_addr, collected) = collector(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("requests.log");
    let yaml = format!(
        r#"
_format_version: "3.0"
services:
- name: svc
  url: http://{up}
  routes:
  - name: open
    paths: [/open]
    plugins:
    - name: file-log
      config: {{path: {log}}}
  - name: locked
    paths: [/locked]
    plugins:
    - name: key-auth
upstreams:
- name: pool
  targets:
  - target: {up}
plugins:
- name: prometheus
  config: {{status_code_metrics: true, latency_metrics: true, bandwidth_metrics: true, upstream_health_metrics: true}}
- name: http-log
  config:
    http_endpoint: http://user:pw@{collector_addr}/logs
    queue: {{max_batch_size: 4, max_coalescing_delay: 0.2}}
"#,
        up = up.addr,
        log = log_path.display(),
    );
    let (gw, proxy) = start(&yaml);
    for _ in 0..5 {
        let r = send(proxy, None, get("/open/x?a=1")).await.unwrap();
        assert_eq!(r.status, 200);
    }
    for _ in 0..3 {
        let r = send(proxy, None, get("/locked")).await.unwrap();
        assert_eq!(r.status, 401);
    }

    // Prometheus, through a real reader of the format.
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let r = send(gw.admin, None, get("/metrics")).await.unwrap();
        assert_eq!(r.status, 200);
        assert!(r
            .header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4"));
        let text = String::from_utf8_lossy(&r.body).into_owned();
        let l = "kong_http_requests_total{service=\"svc\",route=\"locked\",workspace=\"default\",code=\"401\",source=\"kong\",consumer=\"\"}";
        if sample(&text, l) == Some(3.0) || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // promtool parses the whole text with Prometheus' own parser, then
    // lints names. Kong's names break four style rules (dashboards written
    // for Kong need them as they are); anything else fails the test.
    let (_, out) = promtool_check(&text);
    assert!(!out.contains("error while linting"), "{out}\n{text}");
    let mut findings: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    findings.sort_unstable();
    assert_eq!(
        findings,
        [
            "kong_bandwidth_bytes counter metrics should have \"_total\" suffix",
            "kong_kong_latency_ms metric names should not contain abbreviated units",
            "kong_nginx_connections_total non-counter metrics should not have \"_total\" suffix",
            "kong_nginx_requests_total non-counter metrics should not have \"_total\" suffix",
            "kong_request_latency_ms metric names should not contain abbreviated units",
            "kong_upstream_latency_ms metric names should not contain abbreviated units",
        ],
        "promtool check metrics:\n{out}\n{text}"
    );
    // Without Kong's names the text is clean: the format itself is right.
    let renamed = text
        .replace("kong_bandwidth_bytes", "kong_bandwidth_bytes_total")
        .replace("_latency_ms", "_latency_seconds")
        .replace("kong_nginx_connections_total", "kong_nginx_connections")
        .replace("kong_nginx_requests_total", "kong_nginx_requests");
    let (ok, out) = promtool_check(&renamed);
    assert!(ok, "promtool check metrics: {out}\n{renamed}");
    let l = "service=\"svc\",route=\"open\",workspace=\"default\"";
    assert_eq!(
        sample(
            &text,
            &format!(
                "kong_http_requests_total{{{l},code=\"200\",source=\"service\",consumer=\"\"}}"
            )
        ),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "kong_http_requests_total{service=\"svc\",route=\"locked\",workspace=\"default\",code=\"401\",source=\"kong\",consumer=\"\"}"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("kong_request_latency_ms_count{{{l}}}")),
        Some(5.0)
    );
    assert_eq!(
        sample(&text, &format!("kong_upstream_latency_ms_count{{{l}}}")),
        Some(5.0)
    );
    assert_eq!(
        sample(
            &text,
            &format!("kong_request_latency_ms_bucket{{{l},le=\"+Inf\"}}")
        ),
        Some(5.0)
    );
    assert!(
        sample(
            &text,
            &format!("kong_bandwidth_bytes{{{l},direction=\"egress\",consumer=\"\"}}")
        )
        .unwrap()
            > 500.0
    );
    assert!(
        sample(
            &text,
            &format!("kong_bandwidth_bytes{{{l},direction=\"ingress\",consumer=\"\"}}")
        )
        .unwrap()
            > 100.0
    );
    assert_eq!(sample(&text, "kong_datastore_reachable"), Some(1.0));
    assert!(text.contains(&format!(
        "kong_upstream_target_health{{upstream=\"pool\",target=\"{}\",address=\"{}\",state=\"healthchecks_off\",subsystem=\"http\"}} 1",
        up.addr, up.addr
    )), "{text}");
    let hash = gw.status().await["configuration_hash"]
        .as_str()
        .unwrap()
        .to_string();
    let numeric = u64::from_str_radix(&hash[..16], 16).unwrap() as f64;
    let line = text
        .lines()
        .find(|l| l.starts_with("kong_data_plane_config_hash{"))
        .unwrap();
    let got: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(got, numeric, "{line}");
    assert!(sample(&text, "kong_nginx_connections_total{").is_some());

    // file-log: one JSON line per request of its route, in Kong's shape.
    let deadline = Instant::now() + Duration::from_secs(5);
    let lines = loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= 5 || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(lines.len(), 5, "{lines:?}");
    let first = &lines[0];
    assert_eq!(first["request"]["method"], "GET");
    assert_eq!(first["request"]["uri"], "/open/x?a=1");
    assert_eq!(first["request"]["querystring"]["a"], "1");
    assert_eq!(first["response"]["status"], 200);
    assert_eq!(first["route"]["name"], "open");
    assert_eq!(first["service"]["name"], "svc");
    assert_eq!(first["client_ip"], "127.0.0.1");
    assert!(first["latencies"]["request"].is_u64());
    assert!(first["response"]["size"].as_u64().unwrap() > 0);

    // http-log: every request, batched by four, with the URL's credentials
    // as Basic authentication (checked by the count reaching the collector).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let entries: usize = collected
            .lock()
            .unwrap()
            .iter()
            .map(|b| match serde_json::from_str::<Value>(b) {
                Ok(Value::Array(a)) => a.len(),
                Ok(_) => 1,
                Err(e) => panic!("not JSON ({e}): {b}"),
            })
            .sum();
        if entries == 8 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the collector got {entries} entries of 8"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let batches = collected.lock().unwrap().clone();
    assert!(batches.iter().all(|b| b.starts_with('[')), "{batches:?}");
    assert!(batches.len() < 8, "entries were batched: {}", batches.len());
    drop(gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_or_stalled_collector_never_slows_requests() {
    let up = upstream("obs2").await;
    // A port nobody listens on, and a collector that takes 5 s per batch.
    let dead = free_port();
    let (slow, _) = collector(Duration::from_secs(5)).await;
    let yaml = format!(
        r#"
_format_version: "3.0"
services:
- name: s
  url: http://{up}
  routes:
  - name: dead
    paths: [/dead]
    plugins:
    - name: http-log
      config: {{http_endpoint: "http://127.0.0.1:{dead}/", queue: {{max_retry_time: 2}}}}
  - name: slow
    paths: [/slow]
    plugins:
    - name: http-log
      config: {{http_endpoint: "http://{slow}/", timeout: 10000}}
"#,
        up = up.addr
    );
    let (gw, proxy) = start(&yaml);
    for path in ["/dead", "/slow"] {
        let started = Instant::now();
        for _ in 0..50 {
            let r = send(proxy, None, get(path)).await.unwrap();
            assert_eq!(r.status, 200);
        }
        let took = started.elapsed();
        // 50 requests to a local upstream take well under a second; a
        // request waiting on the collector would take seconds each.
        assert!(
            took < Duration::from_secs(3),
            "{path}: 50 requests took {took:?}"
        );
    }
    assert!(
        gw.log().contains("http-log"),
        "the failures are logged: {}",
        gw.log()
    );
    drop(gw);
}
