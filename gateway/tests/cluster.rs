//! Nodes sharing one real PostgreSQL: changes made on one node reach the
//! others' routers, an outage of the database loses no request, and
//! `GET /cluster` tells active, left and failed nodes apart.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::postgres::Postgres;
use common::{admin, free_port, gateway, gateway_cli, get, send, upstream, Gateway};
use serde_json::{json, Value};

struct Node {
    gw: Gateway,
    proxy: SocketAddr,
}

fn database(pg: &Postgres, db: &str) -> Vec<(String, String)> {
    pg.create_database(db);
    let mut conf = pg.conf(db);
    let (code, out) = gateway_cli(&conf, &["migrations", "bootstrap"]);
    assert_eq!(code, 0, "{out}");
    conf.push(("db_update_frequency".into(), "1".into()));
    conf.push(("cluster_ttl_on_failure".into(), "2".into()));
    conf
}

fn node(conf: &[(String, String)]) -> Node {
    let port = free_port();
    let gw = gateway()
        .set_all(conf)
        .proxy_listen(&format!("127.0.0.1:{port}"))
        .start();
    Node {
        gw,
        proxy: format!("127.0.0.1:{port}").parse().unwrap(),
    }
}

async fn status_of(n: &Node, path: &str) -> u16 {
    match send(n.proxy, None, get(path)).await {
        Ok(r) => r.status,
        Err(_) => 0,
    }
}

async fn wait_for(n: &Node, path: &str, code: u16, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if status_of(n, path).await == code {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{path} did not answer {code} within {within:?}:\n{}",
            n.gw.log()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn post(n: &Node, path: &str, body: Value) -> Value {
    let r = admin(n.gw.admin, "POST", path, Some(body), None).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_node_reaches_the_others_fast() {
    let pg = Postgres::start();
    let conf = database(&pg, "propagation");
    let nodes: Vec<Node> = (0..3).map(|_| node(&conf)).collect();
    let up = upstream("up").await;
    let url = format!("http://{}", up.addr);
    post(&nodes[0], "/services", json!({"name": "svc", "url": url})).await;

    let mut delays = Vec::new();
    for i in 0..20 {
        let path = format!("/change-{i}");
        let start = Instant::now();
        post(&nodes[0], "/services/svc/routes", json!({"paths": [path]})).await;
        let write = start.elapsed();
        let (b, c) = tokio::join!(
            wait_for(&nodes[1], &path, 200, Duration::from_secs(5)),
            wait_for(&nodes[2], &path, 200, Duration::from_secs(5)),
        );
        delays.push(write + b.max(c));
    }
    delays.sort();
    let (p50, p99) = (percentile(&delays, 0.5), percentile(&delays, 0.99));
    println!(
        "propagation from the write on node A to serving on B and C over {} changes: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        delays.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        delays.last().unwrap().as_secs_f64() * 1e3
    );
    assert!(p99 < Duration::from_millis(1000), "{delays:?}");

    // All three end up with the same configuration (A applies its own change
    // through the same events as B and C).
    let start = Instant::now();
    loop {
        let mut hashes = Vec::new();
        for n in &nodes {
            hashes.push(n.gw.status().await["configuration_hash"].clone());
        }
        if hashes.windows(2).all(|w| w[0] == w[1]) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(3), "{hashes:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_loses_no_request_and_nodes_catch_up() {
    let pg = Postgres::start();
    let conf = database(&pg, "outage");
    let a = node(&conf);
    let mut b = node(&conf);
    let up = upstream("up").await;
    post(
        &a,
        "/services",
        json!({"name": "svc", "url": format!("http://{}", up.addr)}),
    )
    .await;
    post(&a, "/services/svc/routes", json!({"paths": ["/live"]})).await;
    wait_for(&a, "/live", 200, Duration::from_secs(5)).await;
    wait_for(&b, "/live", 200, Duration::from_secs(5)).await;

    // Traffic to both nodes all through the outage.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let targets = [a.proxy, b.proxy];
    let traffic = tokio::spawn(async move {
        let (mut ok, mut failed) = (0u32, Vec::new());
        while !*stop_rx.borrow() {
            for addr in targets {
                match send(addr, None, get("/live")).await {
                    Ok(r) if r.status == 200 => ok += 1,
                    Ok(r) => failed.push(format!("{addr}: {}", r.status)),
                    Err(e) => failed.push(format!("{addr}: {e}")),
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (ok, failed)
    });

    tokio::time::sleep(Duration::from_millis(300)).await;
    pg.halt();
    for n in [&a, &b] {
        let start = Instant::now();
        while n.gw.status().await["database"]["reachable"] != json!(false) {
            assert!(start.elapsed() < Duration::from_secs(10), "{}", n.gw.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // `/status` is the ELB's health check, `/status/ready` the same decision.
        for path in ["/status", "/status/ready"] {
            let r = admin(n.gw.admin, "GET", path, None, None).await;
            assert_eq!(
                r.status, 200,
                "{path}: a database outage must not make nodes unready"
            );
        }
    }
    let w = admin(
        a.gw.admin,
        "POST",
        "/services",
        Some(json!({"name": "new", "host": "h"})),
        None,
    )
    .await;
    assert_eq!(w.status, 503, "{}", String::from_utf8_lossy(&w.body));
    assert!(w.json()["message"]
        .as_str()
        .unwrap()
        .contains("database is unreachable"));
    let r = admin(a.gw.admin, "GET", "/services", None, None).await;
    assert_eq!(r.status, 503);
    tokio::time::sleep(Duration::from_millis(500)).await;

    pg.resume();
    for n in [&a, &b] {
        let start = Instant::now();
        while n.gw.status().await["database"]["reachable"] != json!(true) {
            assert!(start.elapsed() < Duration::from_secs(15), "{}", n.gw.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // A change right after the restart reaches B, whether or not B's LISTEN
    // connection is back yet: it catches up from the events table.
    post(
        &a,
        "/services/svc/routes",
        json!({"paths": ["/after-outage"]}),
    )
    .await;
    wait_for(&b, "/after-outage", 200, Duration::from_secs(5)).await;

    // A node that is down during a change has it when it comes back.
    b.gw.signal(common::SIGTERM);
    assert_eq!(b.gw.wait_exit(Duration::from_secs(10)), Some(0));
    post(
        &a,
        "/services/svc/routes",
        json!({"paths": ["/while-b-was-down"]}),
    )
    .await;
    let b2 = node(&conf);
    wait_for(&b2, "/while-b-was-down", 200, Duration::from_secs(5)).await;

    stop_tx.send(true).unwrap();
    let (ok, failed) = traffic.await.unwrap();
    // Requests to B after it stopped are expected to fail to connect; count
    // only failures while both nodes were up.
    let failed: Vec<_> = failed
        .into_iter()
        .filter(|f| !f.starts_with(&b.proxy.to_string()))
        .collect();
    println!(
        "requests served during the outage test: {ok}, failed on node A: {}",
        failed.len()
    );
    assert!(ok > 100, "too little traffic to tell: {ok}");
    assert!(failed.is_empty(), "{failed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_lists_active_left_and_failed_nodes() {
    let pg = Postgres::start();
    let conf = database(&pg, "members");
    let a = node(&conf);
    let mut b = node(&conf);
    let mut c = node(&conf);
    let list = || async {
        let r = admin(a.gw.admin, "GET", "/cluster", None, None).await;
        assert_eq!(r.status, 200);
        r.json()["data"].as_array().unwrap().clone()
    };
    let start = Instant::now();
    while list().await.len() < 3 {
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let nodes = list().await;
    assert!(nodes.iter().all(|n| n["status"] == "active"), "{nodes:?}");
    for field in ["id", "hostname", "address", "last_seen"] {
        assert!(!nodes[0][field].is_null(), "{field} in {:?}", nodes[0]);
    }
    let status_of = |nodes: &[Value], pid_node: &Gateway| {
        let id = admin_node_id(pid_node);
        nodes
            .iter()
            .find(|n| n["id"] == id)
            .map(|n| n["status"].as_str().unwrap().to_string())
    };

    c.gw.signal(common::SIGTERM);
    assert_eq!(c.gw.wait_exit(Duration::from_secs(10)), Some(0));
    assert_eq!(status_of(&list().await, &c.gw).as_deref(), Some("left"));

    b.gw.signal(9);
    b.gw.wait_exit(Duration::from_secs(5));
    let start = Instant::now();
    while status_of(&list().await, &b.gw).as_deref() != Some("failed") {
        assert!(
            start.elapsed() < Duration::from_secs(6),
            "{:?}",
            list().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A failed node is cleared by hand (the clustering reference's way); an active one
    // is refused, since it would register again at its next heartbeat.
    let del = |id: Value| async move {
        let path = format!("/cluster/nodes/{}", id.as_str().unwrap());
        admin(a.gw.admin, "DELETE", &path, None, None).await
    };
    let r = del(admin_node_id(&a.gw)).await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert!(r.json()["message"].as_str().unwrap().contains("is active"));
    assert_eq!(del(admin_node_id(&b.gw)).await.status, 204);
    assert_eq!(status_of(&list().await, &b.gw), None);
    assert_eq!(del(admin_node_id(&b.gw)).await.status, 404);

    // After twice the TTL, the rest are dropped; A stays active.
    let start = Instant::now();
    loop {
        let nodes = list().await;
        if nodes.len() == 1 {
            assert_eq!(nodes[0]["status"], "active");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{nodes:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Node ids are in `GET /` of each node; remembered before a node stops.
fn admin_node_id(gw: &Gateway) -> Value {
    let log = gw.log();
    let id = log
        .split("node_id=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no node_id in the log:\n{log}"));
    json!(id)
}
