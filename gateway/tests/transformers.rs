//! request-transformer and response-transformer over real HTTP, with curl:
//! headers, query strings, the upstream path and method, JSON and form
//! bodies on the way up, and headers and JSON bodies on the way back.

mod common;

use std::net::SocketAddr;

use common::*;
use serde_json::{json, Value};

fn start(yaml: &str) -> (Gateway, SocketAddr) {
    start_declarative(yaml, &[], "")
}

/// curl -i: (status, lower-cased head, body as JSON, or null).
fn call(args: &[&str]) -> (u16, String, Value) {
    let c = curl_i(args);
    let v = serde_json::from_str(&c.body).unwrap_or(Value::Null);
    (c.status, c.head, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_response_transformers_change_what_they_say() {
    let up = upstream("tx").await;
    let yaml = format!(
        r#"
_format_version: "3.0"
services:
- name: s
  url: http://{up}
  routes:
  - name: req
    paths: [/req]
    strip_path: false
    plugins:
    - name: request-transformer
      config:
        remove: {{headers: [x-secret], querystring: [drop]}}
        rename: {{headers: ["x-old:x-new"], querystring: ["q:query"], body: ["user:username"]}}
        replace: {{headers: ["x-env:prod"], body: ["role:viewer"]}}
        add: {{headers: ["x-added:yes", "x-env:never"], querystring: ["v:2"], body: ["source:gateway"]}}
        append: {{headers: ["x-multi:b"], body: ["tags:new"]}}
  - name: moved
    paths: [/moved]
    plugins:
    - name: request-transformer
      config:
        http_method: POST
        replace: {{uri: /echo-body/replaced}}
  - name: resp
    paths: [/resp]
    strip_path: false
    plugins:
    - name: response-transformer
      config:
        remove: {{headers: [x-upstream], json: [peer]}}
        rename: {{json: ["method:verb"]}}
        add: {{headers: ["x-served-by:gateway"], json: ["version:3", "beta:true", "note:hi"], json_types: [number, boolean]}}
        append: {{json: ["note:again"]}}
"#,
        up = up.addr
    );
    let (gw, proxy) = start(&yaml);
    let url = |p: &str| format!("http://{proxy}{p}");

    // Headers and query string on the way up.
    let (code, _, v) = call(&[
        &url("/req/x?drop=1&q=term&keep=yes"),
        "-H",
        "x-secret: s",
        "-H",
        "x-old: o",
        "-H",
        "x-env: dev",
        "-H",
        "x-multi: a",
    ]);
    assert_eq!(code, 200);
    let h = &v["headers"];
    assert!(h.get("x-secret").is_none(), "{h}");
    assert!(h.get("x-old").is_none());
    assert_eq!(h["x-new"], "o");
    assert_eq!(
        h["x-env"], "prod",
        "replaced, and add leaves a present header"
    );
    assert_eq!(h["x-added"], "yes");
    assert_eq!(h["x-multi"], "a, b");
    assert_eq!(v["uri"], "/req/x?query=term&keep=yes&v=2");

    // A JSON body and a form body.
    let (code, _, v) = call(&[
        &url("/req/echo-body"),
        "-H",
        "content-type: application/json",
        "--data",
        r#"{"user": "ann", "role": "admin", "tags": "old"}"#,
    ]);
    assert_eq!(code, 200, "{v}");
    let sent: Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        sent,
        json!({"username": "ann", "role": "viewer", "source": "gateway", "tags": ["old", "new"]})
    );
    assert_eq!(
        v["content_length"],
        json!(v["body"].as_str().unwrap().len().to_string())
    );
    let (code, _, v) = call(&[&url("/req/echo-body"), "--data", "user=bo&role=x"]);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["body"], "username=bo&role=viewer&source=gateway&tags=new");
    // Any other body goes as it is.
    let (_, _, v) = call(&[
        &url("/req/echo-body"),
        "-H",
        "content-type: text/plain",
        "--data",
        "user=bo",
    ]);
    assert_eq!(v["body"], "user=bo");
    // A JSON body that is not JSON goes unchanged too.
    let (_, _, v) = call(&[
        &url("/req/echo-body"),
        "-H",
        "content-type: application/json",
        "--data",
        "{not json",
    ]);
    assert_eq!(v["body"], "{not json");

    // The method and the whole upstream path.
    let (code, _, v) = call(&[&url("/moved/anything?x=1")]);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["method"], "POST");
    assert_eq!(v["uri"], "/echo-body/replaced?x=1");

    // On the way back: headers and the JSON body, with json_types.
    let (code, head, v) = call(&[&url("/resp/thing")]);
    assert_eq!(code, 200);
    assert!(!head.contains("x-upstream:"), "{head}");
    assert!(head.contains("x-served-by: gateway"), "{head}");
    assert!(v.get("peer").is_none(), "{v}");
    assert_eq!(v["verb"], "GET");
    assert!(v.get("method").is_none());
    assert_eq!(v["version"], 3);
    assert_eq!(v["beta"], true);
    assert_eq!(v["note"], json!(["hi", "again"]));
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|n| n.trim().parse().ok())
        .expect("a Content-Length");
    assert_eq!(length, v.to_string().len());
    drop(gw);
}

/// `gateway config parse` of a declarative text: (exit code, output).
fn parse(yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kong.yaml");
    std::fs::write(&file, yaml).unwrap();
    gateway_cli(&[], &["config", "parse", file.to_str().unwrap()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transformer_schemas_name_the_bad_field() {
    let up = upstream("tx2").await;
    for (config, field) in [
        (r#"{add: {headers: ["no-colon"]}}"#, "config.add.headers[0]"),
        (r#"{add: {nope: []}}"#, "config.add.nope"),
        (r#"{http_method: get}"#, "config.http_method"),
    ] {
        let yaml = format!(
            "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://{}\n  plugins:\n  - name: request-transformer\n    config: {config}\n",
            up.addr
        );
        let (code, text) = parse(&yaml);
        assert_ne!(code, 0, "{config}: {text}");
        assert!(text.contains(field), "{config}: expected {field} in {text}");
    }
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://{}\n  plugins:\n  - name: response-transformer\n    config: {{add: {{json: [\"a:1\"], json_types: [integer]}}}}\n",
        up.addr
    );
    let (code, text) = parse(&yaml);
    assert_ne!(code, 0);
    assert!(
        text.contains("config.add.json_types[0]") && text.contains("boolean, number, string"),
        "{text}"
    );
}
