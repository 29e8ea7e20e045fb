//! key-auth, basic-auth and acl over real HTTP: the consumer credential
//! endpoints on PostgreSQL (form bodies with curl, as Kong's docs write them),
//! the consumer headers the upstream sees, consumer-scoped precedence, and
//! credentials in the declarative format and through db_export/db_import.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::postgres::Postgres;
use common::*;
use serde_json::{json, Value};

/// curl -i: (status, all it printed).
fn curl_i(args: &[&str]) -> (u16, String) {
    let c = common::curl_i(args);
    (c.status, c.raw)
}

fn body_json(out: &str) -> Value {
    let body = out.split("\r\n\r\n").last().unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn header<'a>(out: &'a str, name: &str) -> Option<&'a str> {
    header_in(out, name)
}

fn until_status(url: &str, extra: &[&str], status: u16) -> String {
    curl_until(url, extra, status).raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_endpoints_and_auth_plugins_on_postgres() {
    let up = upstream("auth").await;
    let pg = Postgres::start();
    let conf = pg.bootstrapped("auth");
    let (gw, proxy_addr) = db_node(&conf);
    let port = proxy_addr.port();
    let admin = format!("http://{}", gw.admin);
    let proxy = format!("http://127.0.0.1:{port}");
    let a = |path: &str| format!("{admin}{path}");

    // Kong's "Get started" key-auth steps, form bodies as its docs send them.
    let (code, out) = curl_i(&[
        "-X",
        "POST",
        &a("/services"),
        "--data",
        "name=example_service",
        "--data",
        &format!("url=http://{}", up.addr),
    ]);
    assert_eq!(code, 201, "{out}");
    let (code, out) = curl_i(&[
        "-X",
        "POST",
        &a("/services/example_service/routes"),
        "--data",
        "paths[]=/mock",
        "--data",
        "name=example_route",
    ]);
    assert_eq!(code, 201, "{out}");
    let (code, out) = curl_i(&["-X", "POST", &a("/consumers/"), "--data", "username=luka"]);
    assert_eq!(code, 201, "{out}");
    let luka = body_json(&out)["id"].as_str().unwrap().to_string();
    let (code, out) = curl_i(&[
        "-X",
        "POST",
        &a("/consumers/luka/key-auth"),
        "--data",
        "key=top-secret-key",
    ]);
    assert_eq!(code, 201, "{out}");
    let cred = body_json(&out);
    assert_eq!(cred["key"], "top-secret-key");
    assert_eq!(cred["consumer"], json!({"id": luka}));
    let (code, out) = curl_i(&[
        "-X",
        "POST",
        &a("/plugins/"),
        "--data",
        "name=key-auth",
        "--data",
        "config.key_names=apikey",
    ]);
    assert_eq!(code, 201, "{out}");
    assert_eq!(body_json(&out)["config"]["key_names"], json!(["apikey"]));

    let out = until_status(&format!("{proxy}/mock/anything"), &[], 401);
    // `GET /` lists what the node runs and what is configured, as Kong.
    let (code, root) = curl_i(&[&a("/")]);
    assert_eq!(code, 200);
    let info = body_json(&root);
    assert_eq!(
        info["plugins"]["available_on_server"]["key-auth"]["priority"],
        1250
    );
    assert_eq!(info["plugins"]["enabled_in_cluster"], json!(["key-auth"]));
    assert_eq!(body_json(&out)["message"], "No API key found in request");
    assert_eq!(header(&out, "www-authenticate"), Some("Key"));
    let (code, out) = curl_i(&[
        &format!("{proxy}/mock/anything"),
        "--header",
        "apikey: wrong",
    ]);
    assert_eq!(code, 401, "{out}");
    assert_eq!(body_json(&out)["message"], "Unauthorized");
    let (code, out) = curl_i(&[
        &format!("{proxy}/mock/anything"),
        "--header",
        "apikey: top-secret-key",
        "--header",
        "x-consumer-username: admin",
    ]);
    assert_eq!(code, 200, "{out}");
    let seen = body_json(&out)["headers"].clone();
    assert_eq!(seen["x-consumer-id"], json!(luka));
    assert_eq!(
        seen["x-consumer-username"], "luka",
        "the client's own is replaced"
    );
    assert_eq!(seen["x-credential-identifier"], cred["id"]);
    assert_eq!(seen["apikey"], "top-secret-key");
    assert!(seen.get("x-anonymous-consumer").is_none());
    // The key in the query string works too.
    let (code, _) = curl_i(&[&format!("{proxy}/mock/anything?apikey=top-secret-key")]);
    assert_eq!(code, 200);

    // The credential endpoints: nested, top-level by id or key, and unique keys.
    let (code, out) = curl_i(&[&a("/consumers/luka/key-auth")]);
    assert_eq!(code, 200);
    assert_eq!(body_json(&out)["data"][0]["key"], "top-secret-key");
    let (code, out) = curl_i(&[&a("/key-auths/top-secret-key")]);
    assert_eq!(code, 200, "{out}");
    assert_eq!(body_json(&out)["id"], cred["id"]);
    let (code, out) = curl_i(&[&a("/key-auths")]);
    assert_eq!(code, 200);
    assert_eq!(body_json(&out)["data"].as_array().unwrap().len(), 1);
    let (code, out) = curl_i(&["-X", "POST", &a("/consumers"), "--data", "username=mia"]);
    assert_eq!(code, 201, "{out}");
    let (code, out) = curl_i(&[
        "-X",
        "POST",
        &a("/consumers/mia/key-auth"),
        "--data",
        "key=top-secret-key",
    ]);
    assert_eq!(code, 409, "{out}");
    assert_eq!(body_json(&out)["name"], "unique constraint violation");
    let (code, out) = curl_i(&["-X", "POST", &a("/consumers/mia/key-auth")]);
    assert_eq!(code, 201, "a key is generated: {out}");
    let mia_key = body_json(&out)["key"].as_str().unwrap().to_string();
    assert_eq!(mia_key.len(), 32);
    let (code, out) = curl_i(&["-X", "POST", &a("/consumers/nobody/key-auth")]);
    assert_eq!(code, 404, "{out}");
    let (code, out) = curl_i(&[
        "-X",
        "POST",
        &a("/key-auths"),
        "--data",
        "key=k2",
        "--data",
        "consumer.id=00000000-0000-0000-0000-000000000001",
    ]);
    assert_eq!(code, 400, "{out}");
    assert_eq!(body_json(&out)["name"], "foreign key violation");

    // basic-auth: the password is stored and shown hashed, never in the clear.
    let (code, out) = curl_i(&[
        "-X",
        "POST",
        &a("/consumers/mia/basic-auth"),
        "--data",
        "username=mia",
        "--data",
        "password=pa55word",
    ]);
    assert_eq!(code, 201, "{out}");
    assert!(!out.contains("pa55word"), "{out}");
    let stored = body_json(&out)["password"].as_str().unwrap().to_string();
    assert_eq!(stored.len(), 40);
    let (code, out) = curl_i(&[&a("/basic-auths/mia")]);
    assert_eq!(code, 200, "{out}");
    assert!(!out.contains("pa55word"));
    // A PATCH without a password keeps the hash; with one, hashes it.
    let (code, out) = curl_i(&["-X", "PATCH", &a("/basic-auths/mia"), "--data", "tags[]=t"]);
    assert_eq!(code, 200, "{out}");
    assert_eq!(body_json(&out)["password"], json!(stored));
    let dump = pg.psql("auth", "SELECT entity::text FROM basicauth_credentials");
    assert!(!dump.contains("pa55word"), "{dump}");

    // acl groups, and plugins scoped to a route and to a consumer.
    let (code, out) = curl_i(&[
        "-X",
        "POST",
        &a("/consumers/luka/acls"),
        "--data",
        "group=gold",
    ]);
    assert_eq!(code, 201, "{out}");
    let (code, out) = curl_i(&[
        "-X",
        "POST",
        &a("/consumers/luka/acls"),
        "--data",
        "group=gold",
    ]);
    assert_eq!(code, 409, "{out}");
    let (code, out) = curl_i(&[&a("/consumers/luka/acls/gold")]);
    assert_eq!(code, 200, "{out}");
    let (code, out) = curl_i(&[
        "-X",
        "POST",
        &a("/routes/example_route/plugins"),
        "--data",
        "name=acl",
        "--data",
        "config.allow=gold",
    ]);
    assert_eq!(code, 201, "{out}");
    assert_eq!(body_json(&out)["config"]["allow"], json!(["gold"]));
    let out = until_status(
        &format!("{proxy}/mock/x"),
        &["--header", &format!("apikey: {mia_key}")],
        403,
    );
    assert_eq!(
        body_json(&out)["message"],
        "You cannot consume this service"
    );
    let (code, out) = curl_i(&[
        &format!("{proxy}/mock/x"),
        "--header",
        "apikey: top-secret-key",
    ]);
    assert_eq!(code, 200, "{out}");
    assert_eq!(body_json(&out)["headers"]["x-consumer-groups"], "gold");

    // Precedence: a global request-termination (503), the route's (403) over
    // it, and mia's own (418) over the route's; mia joins gold to pass acl.
    let (code, out) = curl_i(&[
        "-X",
        "POST",
        &a("/consumers/mia/acls"),
        "--data",
        "group=gold",
    ]);
    assert_eq!(code, 201, "{out}");
    for (path, status) in [
        ("/plugins", "503"),
        ("/routes/example_route/plugins", "403"),
        ("/consumers/mia/plugins", "418"),
    ] {
        let (code, out) = curl_i(&[
            "-X",
            "POST",
            &a(path),
            "--data",
            "name=request-termination",
            "--data",
            &format!("config.status_code={status}"),
        ]);
        assert_eq!(code, 201, "{path}: {out}");
    }
    until_status(
        &format!("{proxy}/mock/x"),
        &["--header", &format!("apikey: {mia_key}")],
        418,
    );
    let (code, _) = curl_i(&[
        &format!("{proxy}/mock/x"),
        "--header",
        "apikey: top-secret-key",
    ]);
    assert_eq!(code, 403, "the route's instance over the global one");
    let (code, out) = curl_i(&[
        "-X",
        "POST",
        &a("/services"),
        "--data",
        "name=other",
        "--data",
        &format!("url=http://{}", up.addr),
    ]);
    assert_eq!(code, 201, "{out}");
    let (code, _) = curl_i(&[
        "-X",
        "POST",
        &a("/services/other/routes"),
        "--data",
        "paths[]=/other",
    ]);
    assert_eq!(code, 201);
    until_status(
        &format!("{proxy}/other"),
        &["--header", "apikey: top-secret-key"],
        503,
    );

    // Deleting a consumer takes its credentials with it.
    let (code, _) = curl_i(&["-X", "DELETE", &a("/consumers/mia")]);
    assert_eq!(code, 204);
    let (code, out) = curl_i(&[&a("/basic-auths/mia")]);
    assert_eq!(code, 404, "{out}");
    until_status(
        &format!("{proxy}/mock/x"),
        &["--header", &format!("apikey: {mia_key}")],
        401,
    );

    // db_export writes the credentials with the hash, and says so
    // (`_transform: false`); db_import of that file keeps them as they are.
    let (code, out) = curl_i(&[
        "-X",
        "POST",
        &a("/consumers/luka/basic-auth"),
        "--data",
        "username=luka",
        "--data",
        "password=s3cret",
    ]);
    assert_eq!(code, 201, "{out}");
    let hash = body_json(&out)["password"].as_str().unwrap().to_string();
    let file = gw.dir.path().join("export.yaml");
    let (code, out) = gateway_cli(&conf, &["config", "db_export", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("_transform: false"), "{text}");
    assert!(text.contains(&hash) && !text.contains("s3cret"), "{text}");
    assert!(
        text.contains("keyauth_credentials") && text.contains("acls"),
        "{text}"
    );
    pg.create_database("auth2");
    let conf2 = pg.conf("auth2");
    assert_eq!(gateway_cli(&conf2, &["migrations", "bootstrap"]).0, 0);
    let (code, out) = gateway_cli(&conf2, &["config", "db_import", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let port2 = free_port();
    let gw2 = gateway()
        .set_all(&conf2)
        .proxy_listen(&format!("127.0.0.1:{port2}"))
        .start();
    let (code, out) = curl_i(&[&format!("http://{}/basic-auths/luka", gw2.admin)]);
    assert_eq!(code, 200, "{out}");
    assert_eq!(body_json(&out)["password"], json!(hash));
    let url = format!("http://127.0.0.1:{port2}/mock/x");
    until_status(&url, &["--header", "apikey: top-secret-key"], 403);
    drop(gw2);
    drop(gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declarative_credentials_basic_auth_and_anonymous() {
    let up = upstream("decl").await;
    let yaml = format!(
        r#"
_format_version: "3.0"
services:
- name: s
  url: http://{up}
  routes:
  - name: basic
    paths: [/basic]
    plugins:
    - name: basic-auth
      config: {{hide_credentials: true}}
  - name: open
    paths: [/open]
    plugins:
    - name: key-auth
      config: {{anonymous: guest}}
    - name: acl
      config: {{deny: [blocked]}}
consumers:
- username: ana
  basicauth_credentials:
  - username: ana
    password: "correct horse"
  keyauth_credentials:
  - key: ana-key
- username: guest
- username: bad
  keyauth_credentials:
  - key: bad-key
  acls:
  - group: blocked
"#,
        up = up.addr
    );
    let port = free_port();
    let gw = gateway()
        .proxy_listen(&format!("127.0.0.1:{port}"))
        .declarative(&yaml)
        .start();
    let proxy: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(proxy).is_err() {
        assert!(Instant::now() < deadline, "{}", gw.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = |p: &str| format!("http://{proxy}{p}");

    let (code, out) = curl_i(&[&url("/basic")]);
    assert_eq!(code, 401, "{out}");
    assert_eq!(
        header(&out, "www-authenticate"),
        Some("Basic realm=\"service\"")
    );
    let (code, _) = curl_i(&[&url("/basic"), "-u", "ana:wrong"]);
    assert_eq!(code, 401);
    let (code, out) = curl_i(&[&url("/basic"), "-u", "ana:correct horse"]);
    assert_eq!(code, 200, "{out}");
    let seen = body_json(&out)["headers"].clone();
    assert_eq!(seen["x-consumer-username"], "ana");
    assert_eq!(seen["x-credential-identifier"], "ana");
    assert!(
        seen.get("authorization").is_none(),
        "hide_credentials: {seen}"
    );

    // anonymous: no key is the guest, a key is its consumer, and acl's deny
    // list still applies to the one identified.
    let (code, out) = curl_i(&[&url("/open")]);
    assert_eq!(code, 200, "{out}");
    let seen = body_json(&out)["headers"].clone();
    assert_eq!(seen["x-consumer-username"], "guest");
    assert_eq!(seen["x-anonymous-consumer"], "true");
    let (code, out) = curl_i(&[&url("/open?apikey=ana-key")]);
    assert_eq!(code, 200, "{out}");
    assert_eq!(body_json(&out)["headers"]["x-consumer-username"], "ana");
    let (code, _) = curl_i(&[&url("/open"), "-H", "apikey: bad-key"]);
    assert_eq!(code, 403);

    drop(gw);
}
