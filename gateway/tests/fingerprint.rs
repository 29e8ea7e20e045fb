//! `gateway config db_fingerprint` against a real, throw-away PostgreSQL
//! server: the hash a node reports, counts and ids, no secret, read-only.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::postgres::{Postgres, PASSWORD};
use common::{admin, gateway, gateway_cli, Gateway};
use serde_json::{json, Value};

/// Runs `gateway config db_fingerprint`; returns the exit code, stdout (which
/// must be the JSON alone) and stderr.
fn fingerprint(conf: &[(String, String)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let text: String = conf.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
    let path = dir.path().join("gateway.conf");
    std::fs::write(&path, text).unwrap();
    run(&path)
}

fn run(conf: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["config", "db_fingerprint", "--conf"])
        .arg(conf)
        .env_remove("GATEWAY_CONF")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fingerprint_json(conf: &[(String, String)]) -> Value {
    let (code, out, err) = fingerprint(conf);
    assert_eq!(code, 0, "{out}{err}");
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {out}"))
}

async fn post(gw: &Gateway, path: &str, body: Value) -> Value {
    let r = admin(gw.admin, "POST", path, Some(body), None).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

/// The node's `/status` hash, once it equals `want` (it follows changes
/// through NOTIFY); panics with what it last saw otherwise.
async fn wait_for_hash(gw: &Gateway, want: &str) {
    let start = Instant::now();
    loop {
        let seen = gw.status().await["configuration_hash"].clone();
        if seen == json!(want) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "/status reports {seen}, the fingerprint {want}:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ids(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hash_is_the_nodes_and_no_secret_is_printed() {
    let pg = Postgres::start();
    pg.create_database("fp");
    let conf = pg.conf("fp");
    let (code, out) = gateway_cli(&conf, &["migrations", "bootstrap"]);
    assert_eq!(code, 0, "{out}");

    // Bootstrapped and empty: zero counts, the empty configuration's hash.
    let empty = fingerprint_json(&conf);
    assert_eq!(
        empty["counts"],
        json!({"services": 0, "routes": 0, "upstreams": 0, "targets": 0,
               "consumers": 0, "plugins": 0, "certificates": 0,
               "keyauth_credentials": 0, "basicauth_credentials": 0, "acls": 0})
    );
    assert_eq!(
        empty["configuration_hash"],
        json!(gateway::snapshot::configuration_hash(
            &gateway::model::Entities::default()
        ))
    );
    assert_eq!(empty["entities"]["services"], json!([]));
    assert_eq!(empty["newest_change_at"], Value::Null);
    assert_eq!(
        empty["cluster"],
        json!({"newest_heartbeat_at": null, "nodes": 0})
    );
    assert_eq!(
        empty["migrations"],
        json!({"bootstrapped": true, "executed": ["000_base", "001_auth_credentials", "002_ratelimiting"], "pending": [], "new": []})
    );

    let gw = gateway().set_all(&conf).start();
    wait_for_hash(&gw, empty["configuration_hash"].as_str().unwrap()).await;

    let service = post(
        &gw,
        "/services",
        json!({"name": "billing", "url": "http://billing.internal:8080/v1"}),
    )
    .await;
    let route = post(
        &gw,
        "/services/billing/routes",
        json!({"name": "invoices", "paths": ["/invoices", "/bills"]}),
    )
    .await;
    let upstream = post(&gw, "/upstreams", json!({"name": "billing.upstream"})).await;
    let target = post(
        &gw,
        "/upstreams/billing.upstream/targets",
        json!({"target": "10.0.0.5:8000"}),
    )
    .await;
    let consumer = post(&gw, "/consumers", json!({"username": "alice"})).await;
    let plugin_secret = "plugin-config-secret-93b1";
    let plugin = post(
        &gw,
        "/consumers/alice/plugins",
        json!({"name": "rate-limiting", "config": {"minute": 5, "redis_password": plugin_secret}}),
    )
    .await;
    let made = rcgen::generate_simple_self_signed(vec!["api.example.com".to_string()]).unwrap();
    let key_pem = made.signing_key.serialize_pem();
    let certificate = post(
        &gw,
        "/certificates",
        json!({"cert": made.cert.pem(), "key": key_pem, "snis": ["api.example.com"]}),
    )
    .await;

    let (code, out, err) = fingerprint(&conf);
    assert_eq!(code, 0, "{out}{err}");
    let fp: Value = serde_json::from_str(&out).unwrap();

    // The very hash the node reports once it has the same data.
    let hash = fp["configuration_hash"].as_str().unwrap();
    assert_ne!(hash, empty["configuration_hash"].as_str().unwrap());
    wait_for_hash(&gw, hash).await;

    assert_eq!(
        fp["counts"],
        json!({"services": 1, "routes": 1, "upstreams": 1, "targets": 1,
               "consumers": 1, "plugins": 1, "certificates": 1,
               "keyauth_credentials": 0, "basicauth_credentials": 0, "acls": 0})
    );
    let e = &fp["entities"];
    for (kind, made) in [
        ("services", &service),
        ("routes", &route),
        ("upstreams", &upstream),
        ("targets", &target),
        ("consumers", &consumer),
        ("plugins", &plugin),
        ("certificates", &certificate),
    ] {
        assert_eq!(ids(&e[kind]), [made["id"].as_str().unwrap()], "{kind}");
        assert_eq!(e[kind][0]["created_at"], made["created_at"], "{kind}");
        assert_eq!(e[kind][0]["updated_at"], made["updated_at"], "{kind}");
    }
    assert_eq!(
        e["services"][0],
        json!({"id": service["id"], "name": "billing",
               "created_at": service["created_at"], "updated_at": service["updated_at"]})
    );
    assert_eq!(e["routes"][0]["name"], "invoices");
    assert_eq!(e["routes"][0]["paths"], json!(["/invoices", "/bills"]));
    assert_eq!(e["consumers"][0]["name"], "alice");
    assert_eq!(e["plugins"][0]["name"], "rate-limiting");
    assert_eq!(e["certificates"][0]["name"], Value::Null);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let changed = fp["newest_change_at"]
        .as_i64()
        .expect("a change was recorded");
    assert!((now - changed).abs() < 120, "{changed} vs now {now}");
    assert_eq!(fp["cluster"]["nodes"], 1, "{fp}");
    let heartbeat = fp["cluster"]["newest_heartbeat_at"].as_i64().unwrap();
    assert!((now - heartbeat).abs() < 120, "{heartbeat} vs now {now}");

    // No secret: not the key (nor any line of it), not the plugin's config,
    // not the database password; not on stdout, not on stderr.
    let printed = format!("{out}{err}");
    for line in key_pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(
            !printed.contains(line),
            "a line of the key leaked: {printed}"
        );
    }
    for secret in ["PRIVATE KEY", "CERTIFICATE", plugin_secret, PASSWORD] {
        assert!(!printed.contains(secret), "`{secret}` leaked: {printed}");
    }

    // With the node gone nothing changes any more: the fingerprint is stable,
    // and it only reads, so it works unchanged on a read-only database (a
    // hot standby, or a restored copy someone protected).
    drop(gw);
    let before = fingerprint_json(&conf);
    pg.psql(
        "postgres",
        "ALTER DATABASE fp SET default_transaction_read_only = on",
    );
    let read_only = fingerprint_json(&conf);
    assert_eq!(before, read_only);
    assert_eq!(before["configuration_hash"], fp["configuration_hash"]);
    assert_eq!(before["entities"], fp["entities"]);
}

#[test]
fn an_unreachable_or_unbootstrapped_database() {
    let pg = Postgres::start();
    pg.create_database("fresh");

    let mut conf = pg.conf("fresh");
    conf.retain(|(k, _)| k != "pg_port");
    conf.push(("pg_port".into(), common::free_port().to_string()));
    let (code, out, err) = fingerprint(&conf);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(out, "", "nothing on stdout when there is no fingerprint");
    assert!(err.contains("cannot reach the database"), "{err}");

    let mut conf = pg.conf("fresh");
    conf.retain(|(k, _)| k != "pg_password");
    conf.push(("pg_password".into(), "\"wrong-password\"".into()));
    let (code, out, err) = fingerprint(&conf);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("cannot reach the database") && err.contains("pg_password"),
        "{err}"
    );
    assert!(!err.contains("wrong-password"), "{err}");

    // Reachable, but without the gateway's tables: a note, and no hash to
    // match any configured database.
    let fp = fingerprint_json(&pg.conf("fresh"));
    assert_eq!(fp["configuration_hash"], Value::Null);
    assert_eq!(fp["counts"], Value::Null);
    assert_eq!(fp["migrations"]["bootstrapped"], false);
    assert!(
        fp["migrations"]["note"]
            .as_str()
            .unwrap()
            .contains("gateway migrations bootstrap"),
        "{fp}"
    );
    // And it created nothing.
    assert_eq!(
        pg.psql(
            "fresh",
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ),
        "0"
    );
}
