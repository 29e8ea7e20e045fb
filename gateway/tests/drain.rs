//! Issue 16: a node drains behind a TCP-mode load balancer (a classic ELB with
//! TCP listeners and the PROXY protocol; HAProxy stands in for it here) with
//! zero failed requests. Two nodes behind HAProxy, which health-checks
//! `GET /status/ready` on their admin ports; a load generator with keep-alive
//! connections runs through HAProxy while one node gets SIGTERM. The drained
//! node's readiness turns 503, HAProxy takes it out, its HTTP/1 clients get
//! `Connection: close` and its HTTP/2 clients GOAWAY, so every client moves to
//! the other node without one failed request; the node then exits 0.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// How long the load runs, and when into it the node gets SIGTERM.
const LOAD: Duration = Duration::from_secs(8);
const SIGTERM_AFTER: Duration = Duration::from_secs(2);
/// The nodes' `drain_delay`: HAProxy must see readiness fail well within it.
const DRAIN_DELAY: Duration = Duration::from_secs(3);

/// The two cases share the 2 cores: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Cluster {
    /// `a` is drained; `b` carries on.
    a: Gateway,
    b: Gateway,
    lb: Haproxy,
    up: Ledger,
}

/// The upstream behind both nodes: answers 200 and counts each path it was
/// asked for, so that the test knows which requests reached it, and how often.
struct Ledger {
    addr: SocketAddr,
    seen: Arc<std::sync::Mutex<HashMap<String, u32>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Ledger {
    fn times(&self, path: &str) -> u32 {
        self.seen.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

async fn ledger() -> Ledger {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(HashMap::new()));
    let counts = seen.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counts = counts.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let path = req.uri().path().to_string();
                    *counts.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
                    let body = serde_json::json!({ "upstream": "ledger", "path": path });
                    async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(Bytes::from(body.to_string())),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ledger { addr, seen, task }
}

async fn cluster(http2: bool) -> Cluster {
    let up = ledger().await;
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n- name: ledger\n  url: http://{}\n  routes:\n  - paths: [\"/\"]\n",
        up.addr
    );
    let flags = if http2 {
        "proxy_protocol http2"
    } else {
        "proxy_protocol"
    };
    let node = |port: u16| {
        gateway()
            .proxy_listen(&format!("127.0.0.1:{port} {flags}"))
            .set("trusted_ips", "[\"127.0.0.1\"]")
            .set("drain_delay", &DRAIN_DELAY.as_secs().to_string())
            .set("drain_timeout", "10")
            .set("log_level", "\"debug\"")
            .declarative(&yaml)
            .start()
    };
    let (pa, pb) = (free_port(), free_port());
    let (a, b) = (node(pa), node(pb));
    for gw in [&a, &b] {
        wait_for(Duration::from_secs(10), "the node to be ready", || async {
            send(gw.admin, None, get("/status/ready"))
                .await
                .is_ok_and(|r| r.status == 200)
        })
        .await;
    }
    let addr = |p: u16| -> SocketAddr { format!("127.0.0.1:{p}").parse().unwrap() };
    let lb = haproxy_checked(&[(addr(pa), a.admin), (addr(pb), b.admin)]);
    wait_for(
        Duration::from_secs(10),
        "haproxy to see both nodes up",
        || async { lb.servers().iter().filter(|(_, s)| s == "UP").count() == 2 },
    )
    .await;
    Cluster { a, b, lb, up }
}

/// Polls `ok` every 50 ms until it holds; panics after `within`.
async fn wait_for<F, Fut>(within: Duration, what: &str, ok: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !ok().await {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The part of a node's debug log that tells about its drain: everything but
/// HTTP/2 frames, the last 200 lines of it.
fn drain_log(gw: &Gateway) -> String {
    let log = gw.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| !l.contains(" frame=") && !l.contains("applying Settings"))
        .collect();
    lines[lines.len().saturating_sub(200)..].join("\n")
}

/// A node's proxied request count, from `/status` (whose body is the same
/// while it drains and answers 503).
async fn total_requests(gw: &Gateway) -> u64 {
    let r = send(gw.admin, None, get("/status")).await.unwrap();
    r.json()["server"]["total_requests"].as_u64().unwrap()
}

/// What the drain looked like from outside, while the load ran.
struct Drain {
    /// Node a's requests when it got SIGTERM.
    a_at_sigterm: u64,
    /// When HAProxy took node a out, after the signal.
    out_after: Duration,
    /// Node a's requests half a second after HAProxy took it out, and just
    /// before it stopped accepting.
    a_settled: u64,
    a_late: u64,
    /// Node b's requests when node a had exited.
    b_at_a_exit: u64,
    /// When node a exited, after the signal.
    exited_after: Duration,
}

/// With the load under way (started at `load_started`), drains node a: SIGTERM,
/// HAProxy takes it out, its clients move off, it exits 0.
async fn drain_a(c: &mut Cluster, load_started: Instant) -> Drain {
    tokio::time::sleep_until((load_started + SIGTERM_AFTER).into()).await;
    let a_at_sigterm = total_requests(&c.a).await;
    c.a.signal(SIGTERM);
    let signalled = Instant::now();

    // Readiness fails; HAProxy takes the node out (2 failed checks 500 ms
    // apart) well before drain_delay is over.
    let lb = &c.lb;
    wait_for(
        Duration::from_secs(2),
        "haproxy to take node a out",
        || async { lb.server("n1").starts_with("DOWN") },
    )
    .await;
    let out_after = signalled.elapsed();
    assert_eq!(lb.server("n2"), "UP");
    // From then on no new connection reaches the node, and the ones it has
    // leave at their next response (HTTP/1) or at once (GOAWAY): it serves
    // nothing more, so that stopping to accept, when drain_delay is over,
    // cuts no one off.
    tokio::time::sleep_until((signalled + out_after + Duration::from_millis(500)).into()).await;
    let a_settled = total_requests(&c.a).await;
    tokio::time::sleep_until((signalled + DRAIN_DELAY - Duration::from_millis(300)).into()).await;
    let a_late = total_requests(&c.a).await;

    // The node exits 0 once its connections are gone (drain_delay, then
    // in-flight requests), long before drain_timeout.
    let a = &mut c.a;
    let code = loop {
        if let Some(s) = a.child.try_wait().unwrap() {
            break s.code();
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(12),
            "node a still running 12 s after SIGTERM:\n{}",
            drain_log(a)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let exited_after = signalled.elapsed();
    assert_eq!(code, Some(0), "node a:\n{}", drain_log(a));
    assert!(
        a.log().contains("drained; exiting"),
        "node a did not drain cleanly:\n{}",
        drain_log(a)
    );
    let b_at_a_exit = total_requests(&c.b).await;
    assert!(
        load_started.elapsed() + Duration::from_secs(1) < LOAD,
        "node a exited {exited_after:?} after SIGTERM, too late to see node b carry the load alone"
    );
    Drain {
        a_at_sigterm,
        out_after,
        a_settled,
        a_late,
        b_at_a_exit,
        exited_after,
    }
}

/// Checks what every case must show besides zero failures.
async fn assert_handover(c: &Cluster, d: &Drain, client_requests: u64, min_requests: u64) {
    assert!(
        client_requests >= min_requests,
        "only {client_requests} requests: the load did not run"
    );
    // Both nodes carried the load before the signal...
    assert!(
        d.a_at_sigterm > 100,
        "node a served {} requests before SIGTERM",
        d.a_at_sigterm
    );
    // Node a's clients had all moved off well before it stopped accepting...
    assert_eq!(
        d.a_late,
        d.a_settled,
        "node a served {} requests between half a second after haproxy took it out \
         and the end of drain_delay",
        d.a_late - d.a_settled
    );
    // ...to node b, alone after node a exited, with no request failing meanwhile.
    let b_end = total_requests(&c.b).await;
    assert!(
        b_end > d.b_at_a_exit + 100,
        "node b served {} requests after node a exited",
        b_end - d.b_at_a_exit
    );
    eprintln!(
        "{client_requests} requests; node a: {} before SIGTERM, out of haproxy after {:?}, \
         {} half a second later, {} near the end of drain_delay, exited after {:?}; \
         node b: {} when a exited, {b_end} at the end",
        d.a_at_sigterm, d.out_after, d.a_settled, d.a_late, d.exited_after, d.b_at_a_exit
    );
}

// ---------- HTTP/1.1: wrk with keep-alive ----------

/// What wrk reported.
#[derive(Debug)]
struct Wrk {
    requests: u64,
    /// connect, read, write, timeout.
    socket_errors: [u64; 4],
    non_2xx_3xx: u64,
    output: String,
}

fn parse_wrk(output: &str) -> Wrk {
    let requests = output
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk's output:\n{output}"));
    let mut socket_errors = [0; 4];
    if let Some(l) = output.lines().find(|l| l.contains("Socket errors:")) {
        // "Socket errors: connect 0, read 3, write 0, timeout 0"
        let counts: Vec<u64> = l
            .split(',')
            .map(|part| {
                part.split_whitespace()
                    .last()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("cannot read wrk's `{l}`"))
            })
            .collect();
        socket_errors.copy_from_slice(&counts[..4]);
    }
    let non_2xx_3xx = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .map(|n| n.trim().parse().unwrap())
        .unwrap_or(0);
    Wrk {
        requests,
        socket_errors,
        non_2xx_3xx,
        output: output.to_string(),
    }
}

#[test]
fn wrk_output_is_read() {
    let clean = "Running 8s test @ http://127.0.0.1:1/\n  2 threads and 20 connections\n  45678 requests in 8.00s, 12.34MB read\nRequests/sec:   5709.75\n";
    let w = parse_wrk(clean);
    assert_eq!(
        (w.requests, w.socket_errors, w.non_2xx_3xx),
        (45678, [0; 4], 0)
    );
    let bad = "  1200 requests in 8.01s, 1.00MB read\n  Socket errors: connect 1, read 3, write 0, timeout 2\n  Non-2xx or 3xx responses: 5\n";
    let w = parse_wrk(bad);
    assert_eq!(
        (w.requests, w.socket_errors, w.non_2xx_3xx),
        (1200, [1, 3, 0, 2], 5)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_keepalive_clients_lose_nothing_when_a_node_drains() {
    let _one_at_a_time = SERIAL.lock().await;
    let mut c = cluster(false).await;
    let url = format!("http://{}/wrk", c.lb.addr);
    let started = Instant::now();
    // wrk keeps its 20 connections alive, reconnecting when a response says
    // `Connection: close`; any reset, early close or 5xx shows in its summary.
    let wrk = Command::new(program("wrk"))
        .args(["-t2", "-c20", "--timeout", "5s"])
        .arg(format!("-d{}s", LOAD.as_secs()))
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wrk (Debian package `wrk`) is not installed: run ./scripts/test");
    let wrk = tokio::task::spawn_blocking(move || wrk.wait_with_output().unwrap());
    let drain = drain_a(&mut c, started).await;
    let out = wrk.await.unwrap();
    let output =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "wrk failed:\n{output}");
    let w = parse_wrk(&output);
    assert_eq!(
        w.socket_errors,
        [0; 4],
        "socket errors (connect, read, write, timeout) while a node drained:\n{}\nnode a:\n{}",
        w.output,
        drain_log(&c.a)
    );
    assert_eq!(w.non_2xx_3xx, 0, "failed responses:\n{}", w.output);
    assert_handover(&c, &drain, w.requests, 2000).await;
    // And a request after it all goes through.
    let (ok, out) = curl(&[&format!("http://{}/after", c.lb.addr)]);
    assert!(ok && out.contains("\"path\":\"/after\""), "{out}");
    assert_eq!(c.up.times("/after"), 1);
}

// ---------- HTTP/2: h2c with prior knowledge, hyper-util's client ----------

/// What the HTTP/2 clients saw.
#[derive(Default)]
struct H2Load {
    ok: AtomicU64,
    failed: AtomicU64,
    errors: std::sync::Mutex<Vec<String>>,
    /// Requests sent again after GOAWAY refused them, by path.
    retried: std::sync::Mutex<Vec<String>>,
}

/// Whether `e` is a graceful GOAWAY from the server that the request met
/// before it had an answer.
fn refused_by_goaway(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(e) = source {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return h2.is_go_away() && h2.is_remote() && h2.reason() == Some(h2::Reason::NO_ERROR);
        }
        source = e.source();
    }
    false
}

/// `clients` HTTP/2 clients (one connection each, as separate processes
/// would have), each with `streams` requests in flight, until `until`; every
/// request has its own path. hyper-util's client reconnects once GOAWAY has
/// closed a connection, and sends again by itself a request that hyper hands
/// back unsent; but a request it had already given to a connection that
/// GOAWAY reached at that moment fails with that GOAWAY (hyper's h2 client
/// does not hand it back: hyperium/hyper#2500). Such a request is sent again
/// once here, as Go's and curl's HTTP/2 clients do; the test then checks with
/// the upstream's ledger that the refused attempt had not reached it.
/// Anything else is a failure.
async fn h2_load(addr: SocketAddr, clients: usize, streams: usize, until: Instant) -> Arc<H2Load> {
    let stats = Arc::new(H2Load::default());
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http();
        for s in 0..streams {
            let (client, stats) = (client.clone(), stats.clone());
            tasks.spawn(async move {
                let mut n = 0u64;
                while Instant::now() < until {
                    n += 1;
                    let path = format!("/h2/{c}-{s}-{n}");
                    let once = || async {
                        let req = http::Request::get(format!("http://{addr}{path}"))
                            .body(Empty::new())
                            .unwrap();
                        let resp = match client.request(req).await {
                            Ok(r) => r,
                            Err(e) if refused_by_goaway(&e) => return Err(None),
                            Err(e) => return Err(Some(format!("{path}: {e:?}"))),
                        };
                        let (status, version) = (resp.status(), resp.version());
                        let body = resp
                            .into_body()
                            .collect()
                            .await
                            .map_err(|e| Some(format!("{path}: body: {e:?}")))?
                            .to_bytes();
                        if status != 200 || version != http::Version::HTTP_2 {
                            return Err(Some(format!(
                                "{path}: {version:?} {status}: {}",
                                String::from_utf8_lossy(&body)
                            )));
                        }
                        Ok(())
                    };
                    let one = async {
                        match once().await {
                            Err(None) => {
                                stats.retried.lock().unwrap().push(path.clone());
                                once().await.map_err(|e| {
                                    e.unwrap_or_else(|| format!("{path}: GOAWAY twice"))
                                })
                            }
                            r => r.map_err(Option::unwrap),
                        }
                    };
                    match tokio::time::timeout(Duration::from_secs(5), one).await {
                        Ok(Ok(())) => {
                            stats.ok.fetch_add(1, Relaxed);
                        }
                        Ok(Err(e)) => {
                            stats.failed.fetch_add(1, Relaxed);
                            stats.errors.lock().unwrap().push(e);
                        }
                        Err(_) => {
                            stats.failed.fetch_add(1, Relaxed);
                            stats
                                .errors
                                .lock()
                                .unwrap()
                                .push(format!("{path}: timed out after 5 s"));
                        }
                    }
                }
            });
        }
    }
    while tasks.join_next().await.is_some() {}
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_lose_nothing_when_a_node_drains() {
    let _one_at_a_time = SERIAL.lock().await;
    let mut c = cluster(true).await;
    let started = Instant::now();
    let load = tokio::spawn(h2_load(c.lb.addr, 8, 4, started + LOAD));
    let drain = drain_a(&mut c, started).await;
    let stats = load.await.unwrap();
    let (ok, failed) = (stats.ok.load(Relaxed), stats.failed.load(Relaxed));
    let errors = stats.errors.lock().unwrap().clone();
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed while a node drained; first errors: {:#?}\nnode a:\n{}",
        ok + failed,
        &errors[..errors.len().min(5)],
        drain_log(&c.a)
    );
    // A request sent again after GOAWAY had not reached the upstream the
    // first time: the node refused it unprocessed, as GOAWAY says.
    let retried = stats.retried.lock().unwrap().clone();
    let twice: Vec<&String> = retried.iter().filter(|p| c.up.times(p) != 1).collect();
    assert!(
        twice.is_empty(),
        "requests refused by GOAWAY had reached the upstream: {twice:?}"
    );
    eprintln!(
        "{} requests refused by GOAWAY and sent again",
        retried.len()
    );
    assert_handover(&c, &drain, ok, 2000).await;
}
