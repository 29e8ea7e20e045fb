//! Kong's Admin API on PostgreSQL, over real HTTP: CRUD with Kong's shapes
//! and status codes, pagination, validation errors, and `admin_token`.

mod common;

use std::net::SocketAddr;

use common::postgres::Postgres;
use common::{admin, gateway, gateway_cli, Gateway};
use serde_json::{json, Value};

fn node(pg: &Postgres, db: &str, extra: &[(&str, &str)]) -> Gateway {
    pg.create_database(db);
    let conf = pg.conf(db);
    let (code, out) = gateway_cli(&conf, &["migrations", "bootstrap"]);
    assert_eq!(code, 0, "{out}");
    let mut b = gateway().set_all(&conf);
    for (k, v) in extra {
        b = b.set(k, v);
    }
    b.start()
}

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
async fn services_and_routes_crud() {
    let pg = Postgres::start();
    let gw = node(&pg, "crud", &[]);
    let a = gw.admin;

    let (code, s) = call(
        a,
        "POST",
        "/services",
        Some(json!({"name": "billing", "url": "http://billing.internal:8080/v1"})),
    )
    .await;
    assert_eq!(code, 201, "{s}");
    assert_eq!(s["protocol"], "http");
    assert_eq!(s["host"], "billing.internal");
    assert_eq!(s["port"], 8080);
    assert_eq!(s["path"], "/v1");
    assert_eq!(s["retries"], 5);
    assert_eq!(s["connect_timeout"], 60000);
    assert!(s["created_at"].as_i64().unwrap() > 1_700_000_000);
    let id = s["id"].as_str().unwrap().to_string();

    let (code, by_name) = call(a, "GET", "/services/billing", None).await;
    assert_eq!((code, &by_name["id"]), (200, &json!(id)));
    let (code, by_id) = call(a, "GET", &format!("/services/{id}"), None).await;
    assert_eq!((code, &by_id["name"]), (200, &json!("billing")));

    let (code, dup) = call(
        a,
        "POST",
        "/services",
        Some(json!({"name": "billing", "host": "x"})),
    )
    .await;
    assert_eq!(code, 409, "{dup}");
    assert_eq!(dup["code"], 5);
    assert_eq!(dup["name"], "unique constraint violation");
    assert_eq!(dup["fields"]["name"], "billing");

    let (code, bad) = call(
        a,
        "POST",
        "/services",
        Some(json!({"name": "nohost", "port": "eighty"})),
    )
    .await;
    assert_eq!(code, 400, "{bad}");
    assert_eq!(bad["code"], 2);
    assert_eq!(bad["name"], "schema violation");
    assert!(bad["fields"]["host"].is_string(), "{bad}");
    assert!(bad["fields"]["port"].is_string(), "{bad}");
    assert!(
        bad["message"]
            .as_str()
            .unwrap()
            .contains("schema violation"),
        "{bad}"
    );

    let (code, p) = call(a, "PATCH", "/services/billing", Some(json!({"retries": 2}))).await;
    assert_eq!(code, 200, "{p}");
    assert_eq!(
        (p["retries"].clone(), p["host"].clone()),
        (json!(2), json!("billing.internal"))
    );

    // PUT creates under a name, then replaces.
    let (code, put) = call(
        a,
        "PUT",
        "/services/search",
        Some(json!({"host": "search.internal"})),
    )
    .await;
    assert_eq!(code, 200, "{put}");
    assert_eq!(put["name"], "search");
    let (code, put2) = call(
        a,
        "PUT",
        "/services/search",
        Some(json!({"host": "search2.internal"})),
    )
    .await;
    assert_eq!(code, 200, "{put2}");
    assert_eq!(put2["id"], put["id"]);
    assert_eq!(put2["created_at"], put["created_at"]);
    assert_eq!(put2["host"], "search2.internal");

    // Nested routes take their service from the URL.
    let (code, r) = call(
        a,
        "POST",
        "/services/billing/routes",
        Some(json!({"name": "invoices", "paths": ["/invoices"]})),
    )
    .await;
    assert_eq!(code, 201, "{r}");
    assert_eq!(r["service"]["id"], json!(id));
    assert_eq!(r["strip_path"], true);
    let (code, list) = call(a, "GET", "/services/billing/routes", None).await;
    assert_eq!(code, 200);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let (code, list) = call(a, "GET", "/services/search/routes", None).await;
    assert_eq!((code, list["data"].as_array().unwrap().len()), (200, 0));

    // A route pointing nowhere, and a service still referenced.
    let ghost = "6f1c6a55-2a7a-4a35-9c0b-2c0e4c2f0f55";
    let (code, fk) = call(
        a,
        "POST",
        "/routes",
        Some(json!({"paths": ["/x"], "service": {"id": ghost}})),
    )
    .await;
    assert_eq!(code, 400, "{fk}");
    assert_eq!(fk["code"], 4);
    assert_eq!(fk["name"], "foreign key violation");
    let (code, referenced) = call(a, "DELETE", "/services/billing", None).await;
    assert_eq!(code, 400, "{referenced}");
    assert!(
        referenced["message"].as_str().unwrap().contains("'routes'"),
        "{referenced}"
    );

    let (code, _) = call(a, "DELETE", "/routes/invoices", None).await;
    assert_eq!(code, 204);
    let (code, _) = call(a, "DELETE", "/services/billing", None).await;
    assert_eq!(code, 204);
    let (code, gone) = call(a, "GET", "/services/billing", None).await;
    assert_eq!((code, gone), (404, json!({"message": "Not found"})));
    let (code, _) = call(a, "DELETE", "/services/billing", None).await;
    assert_eq!(code, 204, "deleting what is not there is 204, as in Kong");
    let (code, _) = call(a, "GET", "/nonsense", None).await;
    assert_eq!(code, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_targets_consumers_plugins_certificates() {
    let pg = Postgres::start();
    let gw = node(&pg, "kinds", &[]);
    let a = gw.admin;

    let (code, u) = call(
        a,
        "POST",
        "/upstreams",
        Some(json!({"name": "billing.upstream"})),
    )
    .await;
    assert_eq!(code, 201, "{u}");
    let (code, t) = call(
        a,
        "POST",
        "/upstreams/billing.upstream/targets",
        Some(json!({"target": "10.0.0.5"})),
    )
    .await;
    assert_eq!(code, 201, "{t}");
    assert_eq!(t["target"], "10.0.0.5:8000");
    assert_eq!(t["weight"], 100);
    assert_eq!(t["upstream"]["id"], u["id"]);
    let (code, dup) = call(
        a,
        "POST",
        "/upstreams/billing.upstream/targets",
        Some(json!({"target": "10.0.0.5:8000"})),
    )
    .await;
    assert_eq!(code, 409, "{dup}");
    let (code, t2) = call(
        a,
        "GET",
        "/upstreams/billing.upstream/targets/10.0.0.5:8000",
        None,
    )
    .await;
    assert_eq!((code, &t2["id"]), (200, &t["id"]));

    let (code, c) = call(
        a,
        "POST",
        "/consumers",
        Some(json!({"username": "alice", "custom_id": "a-1", "tags": ["team-a"]})),
    )
    .await;
    assert_eq!(code, 201, "{c}");
    let (code, bad) = call(a, "POST", "/consumers", Some(json!({"tags": ["x"]}))).await;
    assert_eq!(code, 400, "{bad}");
    let (code, p) = call(
        a,
        "POST",
        "/consumers/alice/plugins",
        Some(json!({"name": "rate-limiting", "config": {"minute": 5}})),
    )
    .await;
    assert_eq!(code, 201, "{p}");
    assert_eq!(p["consumer"]["id"], c["id"]);
    assert_eq!(p["config"]["minute"], 5);
    assert_eq!(p["enabled"], true);
    let (code, unknown) = call(
        a,
        "POST",
        "/plugins",
        Some(json!({"name": "no-such-plugin"})),
    )
    .await;
    assert_eq!(code, 400, "{unknown}");

    let (code, bad_cert) = call(
        a,
        "POST",
        "/certificates",
        Some(json!({"cert": "not pem", "key": "not pem"})),
    )
    .await;
    assert_eq!(code, 400, "{bad_cert}");
    assert!(bad_cert["fields"]["cert"].is_string(), "{bad_cert}");

    // Deleting the consumer takes its plugins along, as in Kong.
    let (code, _) = call(a, "DELETE", "/consumers/alice", None).await;
    assert_eq!(code, 204);
    let (code, plugins) = call(a, "GET", "/plugins", None).await;
    assert_eq!((code, plugins["data"].as_array().unwrap().len()), (200, 0));
    // And the upstream its targets.
    let (code, _) = call(a, "DELETE", "/upstreams/billing.upstream", None).await;
    assert_eq!(code, 204);
    assert_eq!(pg.psql("kinds", "SELECT count(*) FROM targets"), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_tags_and_form_bodies() {
    let pg = Postgres::start();
    let gw = node(&pg, "pages", &[]);
    let a = gw.admin;
    for i in 0..25 {
        let tags = if i % 2 == 0 {
            json!(["even", "all"])
        } else {
            json!(["odd", "all"])
        };
        let (code, v) = call(
            a,
            "POST",
            "/consumers",
            Some(json!({"username": format!("user-{i:02}"), "tags": tags})),
        )
        .await;
        assert_eq!(code, 201, "{v}");
    }
    let mut seen = Vec::new();
    let mut path = "/consumers?size=10".to_string();
    let mut pages = 0;
    loop {
        let (code, page) = call(a, "GET", &path, None).await;
        assert_eq!(code, 200, "{page}");
        pages += 1;
        for c in page["data"].as_array().unwrap() {
            seen.push(c["username"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(next) => path = next.to_string(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..25).map(|i| format!("user-{i:02}")).collect();
    assert_eq!(seen, expected, "every entity once, in creation order");

    let (_, even) = call(a, "GET", "/consumers?tags=even", None).await;
    assert_eq!(even["data"].as_array().unwrap().len(), 13);
    let (_, both) = call(a, "GET", "/consumers?tags=even,odd", None).await;
    assert_eq!(both["data"].as_array().unwrap().len(), 0);
    let (_, either) = call(a, "GET", "/consumers?tags=even/odd&size=5", None).await;
    assert_eq!(either["data"].as_array().unwrap().len(), 5);
    assert!(
        either["next"].as_str().unwrap().contains("tags=even%2Fodd"),
        "{either}"
    );
    let (code, bad) = call(a, "GET", "/consumers?size=0", None).await;
    assert_eq!(code, 400, "{bad}");
    let (code, bad) = call(a, "GET", "/consumers?offset=zzz", None).await;
    assert_eq!(code, 400, "{bad}");

    // Kong's curl examples post forms.
    let url = format!("http://{a}");
    let (ok, out) = common::curl(&[
        "-X",
        "POST",
        &format!("{url}/services"),
        "--data",
        "name=form-svc",
        "--data",
        "url=http://form.internal:9000",
        "-w",
        "\n%{http_code}",
    ]);
    assert!(ok && out.ends_with("201"), "{out}");
    let (ok, out) = common::curl(&[
        "-X",
        "POST",
        &format!("{url}/services/form-svc/routes"),
        "--data",
        "paths[]=/a",
        "--data",
        "paths[]=/b",
        "--data",
        "strip_path=false",
        "-w",
        "\n%{http_code}",
    ]);
    assert!(ok && out.ends_with("201"), "{out}");
    let route: Value = serde_json::from_str(out.rsplit_once('\n').unwrap().0).unwrap();
    assert_eq!(route["paths"], json!(["/a", "/b"]));
    assert_eq!(route["strip_path"], false);
    let (code, s) = call(a, "GET", "/services/form-svc", None).await;
    assert_eq!((code, &s["port"]), (200, &json!(9000)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_guards_everything_but_status() {
    let pg = Postgres::start();
    let gw = node(&pg, "token", &[("admin_token", "\"t0ken-abc\"")]);
    let a = gw.admin;
    for path in ["/", "/services", "/cluster", "/services/x"] {
        let r = admin(a, "GET", path, None, None).await;
        assert_eq!(r.status, 401, "{path}");
        let r = admin(a, "GET", path, None, Some("wrong")).await;
        assert_eq!(r.status, 401, "{path}");
    }
    let r = admin(
        a,
        "POST",
        "/services",
        Some(json!({"name": "s", "host": "h"})),
        None,
    )
    .await;
    assert_eq!(r.status, 401);
    let r = admin(
        a,
        "POST",
        "/services",
        Some(json!({"name": "s", "host": "h"})),
        Some("t0ken-abc"),
    )
    .await;
    assert_eq!(r.status, 201);
    let r = admin(a, "GET", "/services", None, Some("t0ken-abc")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"][0]["name"], "s");
    for path in ["/status", "/status/ready"] {
        assert_eq!(
            admin(a, "GET", path, None, None).await.status,
            200,
            "{path}"
        );
    }
    assert!(!gw.log().contains("t0ken-abc"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_export_then_db_import_into_another_database() {
    let pg = Postgres::start();
    let gw = node(&pg, "source", &[]);
    let a = gw.admin;
    for (path, body) in [
        (
            "/services",
            json!({"name": "billing", "url": "http://billing.internal:8080/v1", "tags": ["t1"]}),
        ),
        (
            "/services/billing/routes",
            json!({"name": "r1", "paths": ["/bill"], "methods": ["GET"]}),
        ),
        ("/upstreams", json!({"name": "up.internal"})),
        (
            "/upstreams/up.internal/targets",
            json!({"target": "10.0.0.1:80", "weight": 50}),
        ),
        ("/consumers", json!({"username": "alice"})),
        ("/services/billing/plugins", json!({"name": "cors"})),
    ] {
        let (code, v) = call(a, "POST", path, Some(body)).await;
        assert_eq!(code, 201, "{path}: {v}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.yml");
    let file_arg = file.to_str().unwrap();
    let (code, out) = gateway_cli(&pg.conf("source"), &["config", "db_export", file_arg]);
    assert_eq!(code, 0, "{out}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("_format_version") && text.contains("billing"),
        "{text}"
    );
    let (code, out) = gateway_cli(&[], &["config", "parse", file_arg]);
    assert_eq!(code, 0, "the export is a valid declarative file: {out}");

    pg.create_database("copy");
    let conf = pg.conf("copy");
    let (code, out) = gateway_cli(&conf, &["config", "db_import", file_arg]);
    assert_ne!(
        code, 0,
        "importing into a database that is not bootstrapped: {out}"
    );
    assert!(out.contains("migrations bootstrap"), "{out}");
    assert_eq!(gateway_cli(&conf, &["migrations", "bootstrap"]).0, 0);
    let copy = gateway().set_all(&conf).start();
    let empty_hash = copy.status().await["configuration_hash"].clone();
    let (code, out) = gateway_cli(&conf, &["config", "db_import", file_arg]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("imported 6 entities"), "{out}");
    for kind in [
        "services",
        "routes",
        "upstreams",
        "targets",
        "consumers",
        "plugins",
    ] {
        let (_, src) = call(a, "GET", &format!("/{kind}"), None).await;
        let (_, dst) = call(copy.admin, "GET", &format!("/{kind}"), None).await;
        let ids = |v: &Value| {
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&src), ids(&dst), "{kind}");
        assert_eq!(ids(&src).len(), 1, "{kind}");
    }
    // The running node picked the import up.
    let start = std::time::Instant::now();
    while copy.status().await["configuration_hash"] == empty_hash {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "{}",
            copy.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
