//! `gateway migrations ...` against a real, throw-away PostgreSQL server.

mod common;

use std::time::Duration;

use common::postgres::{Postgres, PASSWORD};
use common::{gateway, gateway_cli};

#[test]
fn from_an_empty_database_to_ready_and_back() {
    let pg = Postgres::start();
    pg.create_database("m1");
    let conf = pg.conf("m1");

    let (code, out) = gateway_cli(&conf, &["migrations", "list"]);
    assert_eq!(code, 3, "list on an empty database exits 3: {out}");
    assert!(out.contains("gateway migrations bootstrap"), "{out}");

    // A node refuses to start, naming the command to run.
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("{:?}", dir.path());
    let mut start_conf = conf.clone();
    start_conf.push(("prefix".into(), prefix));
    start_conf.push(("admin_listen".into(), "\"127.0.0.1:0\"".into()));
    start_conf.push(("proxy_listen".into(), "\"off\"".into()));
    let (code, out) = gateway_cli(&start_conf, &["start"]);
    assert_ne!(code, 0, "start must fail before bootstrap: {out}");
    assert!(
        out.contains("not bootstrapped") && out.contains("gateway migrations bootstrap"),
        "{out}"
    );

    let (code, out) = gateway_cli(&conf, &["migrations", "bootstrap"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("database bootstrapped"), "{out}");
    let (code, out) = gateway_cli(&conf, &["migrations", "bootstrap"]);
    assert_eq!(code, 0, "a second bootstrap is a no-op: {out}");
    assert!(out.contains("already bootstrapped"), "{out}");
    let (code, out) = gateway_cli(&conf, &["migrations", "up"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("up-to-date"), "{out}");
    let (code, out) = gateway_cli(&conf, &["migrations", "finish"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = gateway_cli(&conf, &["migrations", "list"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("executed: 000_base"), "{out}");
    let (code, out) = gateway_cli(&conf, &["migrations", "status"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("3 executed, 0 pending, 0 new"), "{out}");
    assert_eq!(
        pg.psql("m1", "SELECT count(*) FROM pg_tables WHERE tablename IN ('services','routes','plugins','cluster_events','cluster_nodes','ratelimiting_metrics')"),
        "6"
    );

    // reset asks for --yes when nobody is at a terminal.
    let (code, out) = gateway_cli(&conf, &["migrations", "reset"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("--yes"), "{out}");
    assert_eq!(gateway_cli(&conf, &["migrations", "list"]).0, 0);
    let (code, out) = gateway_cli(&conf, &["migrations", "reset", "--yes"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(gateway_cli(&conf, &["migrations", "list"]).0, 3);
    assert!(!out.contains(PASSWORD));
}

#[test]
fn three_nodes_bootstrapping_at_once() {
    let pg = Postgres::start();
    pg.create_database("m3");
    let conf = pg.conf("m3");
    let runs: Vec<_> = (0..3)
        .map(|_| {
            let conf = conf.clone();
            std::thread::spawn(move || {
                let (code, out) = gateway_cli(&conf, &["migrations", "bootstrap"]);
                let (code2, out2) = gateway_cli(&conf, &["migrations", "up"]);
                (code, out, code2, out2)
            })
        })
        .collect();
    let results: Vec<_> = runs.into_iter().map(|r| r.join().unwrap()).collect();
    for (code, out, code2, out2) in &results {
        assert_eq!(*code, 0, "{out}");
        assert_eq!(*code2, 0, "{out2}");
    }
    let winners = results
        .iter()
        .filter(|r| r.1.contains("database bootstrapped"))
        .count();
    let losers = results
        .iter()
        .filter(|r| r.1.contains("already bootstrapped; nothing to do"))
        .count();
    assert_eq!((winners, losers), (1, 2), "{results:?}");
    // One row per migration, however many nodes ran them.
    assert_eq!(
        pg.psql("m3", "SELECT count(*) FROM schema_meta"),
        gateway::store::migrations::MIGRATIONS.len().to_string()
    );
}

#[test]
fn bad_credentials_and_an_absent_server_give_clear_errors() {
    let pg = Postgres::start();
    pg.create_database("m4");
    let mut conf = pg.conf("m4");
    conf.retain(|(k, _)| k != "pg_password");
    conf.push(("pg_password".into(), "\"wrong-password\"".into()));
    let (code, out) = gateway_cli(&conf, &["migrations", "bootstrap"]);
    assert_ne!(code, 0);
    assert!(
        out.contains("cannot reach the database") && out.contains("pg_password"),
        "{out}"
    );
    assert!(
        !out.contains("wrong-password"),
        "the password must not be printed: {out}"
    );

    let mut conf = pg.conf("m4");
    conf.retain(|(k, _)| k != "pg_port");
    conf.push(("pg_port".into(), common::free_port().to_string()));
    let (code, out) = gateway_cli(&conf, &["migrations", "list"]);
    assert_ne!(code, 0);
    assert!(out.contains("cannot reach the database"), "{out}");
}

/// A node started while the database is down waits, logging each attempt,
/// and serves once it comes up; it does not exit.
#[test]
fn start_waits_for_the_database() {
    let pg = Postgres::start();
    pg.create_database("m5");
    let mut conf = pg.conf("m5");
    assert_eq!(gateway_cli(&conf, &["migrations", "bootstrap"]).0, 0);
    // The password comes from a file here, and must never reach the log.
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pg.pw");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    conf.retain(|(k, _)| k != "pg_password");
    conf.push(("pg_password_file".into(), format!("{pw:?}")));
    pg.halt();
    let mut gw = gateway()
        .set_all(&conf)
        .set("log_level", "\"debug\"")
        .spawn();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while gw.log().matches("cannot reach the database").count() < 2 {
        assert!(std::time::Instant::now() < deadline, "{}", gw.log());
        assert!(gw.child.try_wait().unwrap().is_none(), "{}", gw.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(gw.log().contains("attempt=2"), "{}", gw.log());
    pg.resume();
    gw.wait_until(|gw| std::net::TcpStream::connect(gw.admin).is_ok());
    rt.block_on(async {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let r = common::admin(gw.admin, "GET", "/status/ready", None, None).await;
            if r.status == 200 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{}", gw.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let status = gw.status().await;
        assert_eq!(status["database"]["reachable"], true);
    });
    gw.signal(15);
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(!gw.log().contains(PASSWORD), "{}", gw.log());
}

/// `pg_ssl` and `pg_ssl_verify` against a server with its own certificate,
/// as RDS has one from its own CA.
#[test]
fn tls_to_the_database() {
    let (pg, cert) = Postgres::start_with_tls();
    pg.create_database("tls");
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, cert).unwrap();
    let mut conf = pg.conf("tls");
    let (code, out) = gateway_cli(&conf, &["migrations", "bootstrap"]);
    assert_ne!(code, 0, "the server refuses plain TCP: {out}");
    conf.push(("pg_ssl".into(), "\"on\"".into()));
    let (code, out) = gateway_cli(&conf, &["migrations", "bootstrap"]);
    assert_eq!(code, 0, "pg_ssl without verification: {out}");

    conf.push(("pg_ssl_verify".into(), "\"on\"".into()));
    let (code, out) = gateway_cli(&conf, &["migrations", "list"]);
    assert_ne!(
        code, 0,
        "a certificate from an unknown CA must be refused: {out}"
    );
    assert!(out.contains("cannot reach the database"), "{out}");

    conf.push(("pg_ssl_root_cert".into(), format!("{ca:?}")));
    let (code, out) = gateway_cli(&conf, &["migrations", "list"]);
    assert_eq!(code, 0, "verified against the given CA: {out}");
}
