//! Rotated secrets reach a running node without a restart: `pg_password_file`
//! (re-read on an authentication failure and when it changes; pooled
//! connections keep working) and `admin_token_file` (the old token gets 401
//! once the file changes). Proxy traffic never fails meanwhile, and no secret
//! reaches the log.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::postgres::Postgres;
use common::*;
use serde_json::json;

/// Writes `value` to `path` as the node's refresher does: a new file renamed over the old.
fn rewrite(path: &Path, value: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, format!("{value}\n")).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Requests through the proxy until `stop`; counts answers that are not 200.
fn proxy_traffic(
    addr: std::net::SocketAddr,
    path: &'static str,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut failures = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let r = send(addr, None, get(path)).await;
            sent.fetch_add(1, Ordering::Relaxed);
            match r {
                Ok(r) if r.status == 200 => {}
                Ok(r) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    failures.push(format!(
                        "{}: {}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    ));
                }
                Err(e) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    failures.push(e);
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        failures
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_database_password_is_picked_up_without_a_restart() {
    const OLD: &str = "first-db-password-1";
    const NEW: &str = "second-db-password-2";
    let up = upstream("rotate").await;
    let pg = Postgres::start();
    pg.create_database("rotate");
    // A role of its own: the helper's superuser keeps its password for psql.
    pg.psql(
        "postgres",
        &format!("CREATE ROLE gw LOGIN SUPERUSER PASSWORD '{OLD}'"),
    );
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("pg_password");
    rewrite(&password_file, OLD);
    let conf: Vec<(String, String)> = pg
        .conf("rotate")
        .into_iter()
        .filter(|(k, _)| k != "pg_password" && k != "pg_user")
        .chain([
            ("pg_user".to_string(), "\"gw\"".to_string()),
            ("pg_password_file".to_string(), format!("{password_file:?}")),
        ])
        .collect();
    let (code, out) = gateway_cli(&conf, &["migrations", "bootstrap"]);
    assert_eq!(code, 0, "{out}");
    let (gw, proxy) = db_node(&conf);
    let a = gw.admin;

    let r = admin(
        a,
        "POST",
        "/services",
        Some(json!({"name": "s", "url": format!("http://{}", up.addr)})),
        None,
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = admin(
        a,
        "POST",
        "/services/s/routes",
        Some(json!({"name": "before", "paths": ["/before"]})),
        None,
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    curl_until(&format!("http://{proxy}/before"), &[], 200);

    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let traffic = proxy_traffic(proxy, "/before", stop.clone(), sent.clone(), failed.clone());

    // The database changes first (as ModifyDBInstance does): pooled
    // connections keep working, so reads still answer.
    pg.psql("postgres", &format!("ALTER ROLE gw PASSWORD '{NEW}'"));
    let r = admin(a, "GET", "/services/s", None, None).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    // Then the file; every session of the old password is cut, so the next
    // write must log in again, with the new password.
    rewrite(&password_file, NEW);
    pg.psql(
        "postgres",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'gw'",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut created = None;
    while Instant::now() < deadline {
        let r = admin(
            a,
            "POST",
            "/services/s/routes",
            Some(json!({"name": "after", "paths": ["/after"]})),
            None,
        )
        .await;
        // A write on a connection cut above may fail once; the next one logs in.
        if r.status == 201 || r.status == 409 {
            created = Some(r.status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        created.is_some(),
        "no admin write succeeded after the rotation:\n{}",
        gw.log()
    );
    // The node still follows configuration changes (LISTEN reconnected with the new password).
    curl_until(&format!("http://{proxy}/after"), &[], 200);
    let cluster = admin(a, "GET", "/cluster", None, None).await;
    assert_eq!(cluster.status, 200);

    stop.store(true, Ordering::Relaxed);
    let failures = traffic.await.unwrap();
    assert!(sent.load(Ordering::Relaxed) > 10, "too little traffic");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "proxied requests failed during the rotation: {failures:?}"
    );
    let log = gw.log();
    assert!(
        log.contains("pg_password_file") && log.contains("changed"),
        "{log}"
    );
    assert!(
        !log.contains(OLD) && !log.contains(NEW),
        "a password in the log:\n{log}"
    );
    // Without a new password, an authentication failure stays one (no retry loop).
    pg.psql("postgres", "ALTER ROLE gw PASSWORD 'third-unknown-3'");
    pg.psql(
        "postgres",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'gw'",
    );
    let mut r = admin(a, "GET", "/services/s", None, None).await;
    for _ in 0..5 {
        if r.status != 200 {
            break;
        }
        r = admin(a, "GET", "/services/s", None, None).await;
    }
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    // Proxying still works without the database.
    let r = send(proxy, None, get("/after")).await.unwrap();
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_admin_token_file_replaces_the_token() {
    const OLD: &str = "old-admin-token-abc";
    const NEW: &str = "new-admin-token-xyz";
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin_token");
    rewrite(&token_file, OLD);
    let gw = gateway()
        .set("admin_token_file", &format!("{token_file:?}"))
        .start();
    let a = gw.admin;
    assert_eq!(admin(a, "GET", "/", None, None).await.status, 401);
    assert_eq!(admin(a, "GET", "/", None, Some(OLD)).await.status, 200);
    assert_eq!(admin(a, "GET", "/", None, Some(NEW)).await.status, 401);
    let r = admin(a, "GET", "/", None, Some(OLD)).await;
    let shown = r.json()["configuration"].to_string();
    assert!(!shown.contains(OLD), "{shown}");

    rewrite(&token_file, NEW);
    // Checked once a second, off the request path.
    let deadline = Instant::now() + Duration::from_secs(5);
    while admin(a, "GET", "/", None, Some(OLD)).await.status == 200 {
        assert!(Instant::now() < deadline, "the old token still works");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(admin(a, "GET", "/", None, Some(OLD)).await.status, 401);
    assert_eq!(admin(a, "GET", "/", None, Some(NEW)).await.status, 200);
    // /status stays open to health checks.
    assert_ne!(admin(a, "GET", "/status", None, None).await.status, 401);

    // An empty file (a writer caught halfway) keeps the current token.
    std::fs::write(&token_file, "").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(admin(a, "GET", "/", None, Some(NEW)).await.status, 200);

    let log = gw.log();
    assert!(log.contains("admin_token_file"), "{log}");
    assert!(
        !log.contains(OLD) && !log.contains(NEW),
        "a token in the log:\n{log}"
    );
}
