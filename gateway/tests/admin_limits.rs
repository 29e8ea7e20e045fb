//! Bounded Admin API and declarative input, over real sockets against the
//! gateway binary: deep nesting, YAML "billion laughs", huge bodies, a
//! million keys, and the odd inputs that used to give a 500 or kill the node.
//! Each is refused with a 400 or 413 in Kong's `{"message": ...}` shape
//! within 1 s, the node's memory grows by less than 50 MiB, the configuration
//! in force is kept and the node keeps serving.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::postgres::Postgres;
use common::*;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;

/// The Admin API's body limit (Kong's `nginx_admin_client_max_body_size`).
const MAX_BODY: usize = 10 << 20;
const WITHIN: Duration = Duration::from_secs(1);
const MAX_GROWTH_MIB: u64 = 50;
const SIGHUP: i32 = 1;

/// One test at a time: each times a node and reads its memory, which other
/// nodes starting (or PostgreSQL's initdb) on the same cores would skew.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------- inputs ----------

fn deep_arrays(n: usize) -> Vec<u8> {
    "[".repeat(n).into_bytes()
}

fn deep_objects(n: usize) -> Vec<u8> {
    "{\"a\":".repeat(n).into_bytes()
}

/// 10 levels of 10 aliases: 10^10 nodes from under 1 KB.
fn billion_laughs() -> String {
    let mut s = String::from(
        "_format_version: \"3.0\"\nplugins:\n- name: cors\n  config:\n    l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for i in 1..10 {
        let refs = vec![format!("*l{}", i - 1); 10].join(", ");
        s += &format!("    l{i}: &l{i} [{refs}]\n");
    }
    s
}

/// A JSON object with `n` distinct short keys (1M keys: 9.9 MB).
fn many_keys(n: usize) -> String {
    let mut s = String::with_capacity(n * 10);
    s.push('{');
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s += &format!("\"{i:x}\":0");
    }
    s.push('}');
    s
}

fn huge_array(field: &str, n: usize) -> Vec<u8> {
    let mut s = format!("{{\"{field}\":[");
    s += &"0,".repeat(n - 1);
    s += "0]}";
    s.into_bytes()
}

/// Letters that do not compress (xorshift), so that PostgreSQL's index
/// cannot squeeze them under its row size limit.
fn random_text(n: usize) -> String {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect()
}

// ---------- requests ----------

/// A body of `n` bytes made on the fly; `sized` sends its Content-Length,
/// otherwise it goes chunked.
struct Stream {
    chunks: Chunks,
    sized: bool,
}

impl hyper::body::Body for Stream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.chunks).poll_frame(cx)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self.sized {
            true => self.chunks.size_hint(),
            false => http_body::SizeHint::default(),
        }
    }
}

/// What is sent (method, path, Content-Type and body), and the status and
/// message part expected.
type Case<'a> = (&'a str, (&'a str, &'a str, &'a str), Input, u16, &'a str);

enum Input {
    Bytes(Vec<u8>),
    Stream { len: u64, sized: bool },
}

impl From<Vec<u8>> for Input {
    fn from(v: Vec<u8>) -> Self {
        Input::Bytes(v)
    }
}

impl From<String> for Input {
    fn from(v: String) -> Self {
        Input::Bytes(v.into_bytes())
    }
}

impl From<&str> for Input {
    fn from(v: &str) -> Self {
        Input::Bytes(v.as_bytes().to_vec())
    }
}

async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    input: Input,
) -> Result<Reply, String> {
    let body: BoxBody<Bytes, Infallible> = match input {
        Input::Bytes(b) => Full::new(Bytes::from(b)).boxed(),
        Input::Stream { len, sized } => Stream {
            chunks: Chunks::new(len),
            sized,
        }
        .boxed(),
    };
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "admin.local")
        .header("content-type", content_type)
        .body(body)
        .unwrap();
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Reply {
        status: parts.status.as_u16(),
        version: parts.version,
        headers: parts.headers,
        body,
    })
}

// ---------- the node's memory ----------

fn status_kib(pid: i32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// RSS growth of the node from now on: its peak when the kernel lets the peak
/// be reset (`clear_refs` 5), else its RSS at the end.
struct Memory {
    pid: i32,
    before: u64,
    peak: bool,
}

impl Memory {
    fn watch(pid: i32) -> Memory {
        let peak = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
        Memory {
            pid,
            before: status_kib(pid, "VmRSS:"),
            peak,
        }
    }

    fn growth_mib(&self) -> u64 {
        let key = if self.peak { "VmHWM:" } else { "VmRSS:" };
        status_kib(self.pid, key).saturating_sub(self.before) / 1024
    }
}

/// Sends a pathological input and checks the answer: `status`, Kong's body
/// with a message containing `says`, within [`WITHIN`], less than
/// [`MAX_GROWTH_MIB`] of memory, and the node still running.
async fn refused(
    gw: &mut Gateway,
    what: &str,
    (method, path, content_type): (&str, &str, &str),
    input: impl Into<Input>,
    status: u16,
    says: &str,
) -> Value {
    let input = input.into();
    let memory = Memory::watch(gw.pid());
    let start = Instant::now();
    let reply = request(gw.admin, method, path, content_type, input)
        .await
        .unwrap_or_else(|e| panic!("{what}: no answer ({e}):\n{}", gw.log()));
    let took = start.elapsed();
    let text = String::from_utf8_lossy(&reply.body[..reply.body.len().min(600)]).into_owned();
    assert_eq!(reply.status, status, "{what}: {text}");
    assert!(took < WITHIN, "{what}: answered in {took:?}");
    let growth = memory.growth_mib();
    assert!(
        growth < MAX_GROWTH_MIB,
        "{what}: the node grew by {growth} MiB"
    );
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "{what}"
    );
    let body: Value =
        serde_json::from_slice(&reply.body).unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(says),
        "{what}: message should say `{says}`: {text}"
    );
    assert!(
        gw.child.try_wait().unwrap().is_none(),
        "{what}: the node died:\n{}",
        gw.log()
    );
    eprintln!(
        "{what}: {status} in {} ms, +{growth} MiB: {}",
        took.as_millis(),
        &message[..message.len().min(140)]
    );
    body
}

// ---------- DB-less: POST /config ----------

fn declarative_for(up: SocketAddr, path: &str) -> String {
    format!(
        "_format_version: \"3.0\"\nservices:\n- name: echo\n  url: http://{up}\n  routes:\n  - name: echo\n    paths: [\"{path}\"]\n"
    )
}

struct DbLess {
    gw: Gateway,
    proxy: SocketAddr,
    _up: Upstream,
}

async fn dbless() -> DbLess {
    let up = upstream("kept").await;
    let port = free_port();
    let gw = gateway()
        .proxy_listen(&format!("127.0.0.1:{port}"))
        .declarative(&declarative_for(up.addr, "/kept"))
        .start();
    DbLess {
        gw,
        proxy: format!("127.0.0.1:{port}").parse().unwrap(),
        _up: up,
    }
}

impl DbLess {
    async fn hash(&self) -> Value {
        self.gw.status().await["configuration_hash"].clone()
    }

    /// The route of the configuration in force still answers.
    async fn serves(&self, path: &str) {
        let r = send(self.proxy, None, get(path)).await.unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("x-upstream"), Some("kept"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_refuses_pathological_input_and_keeps_the_configuration() {
    let _serial = SERIAL.lock().await;
    let mut n = dbless().await;
    let hash = n.hash().await;
    n.serves("/kept").await;
    let post = |ct| ("POST", "/config", ct);
    let (json, yaml) = ("application/json", "application/yaml");
    let depth = "nesting depth limit exceeded";

    let cases: Vec<Case> = vec![
        (
            "100k `[`",
            post(json),
            deep_arrays(100_000).into(),
            400,
            depth,
        ),
        (
            "100k `{\"a\":`",
            post(json),
            deep_objects(100_000).into(),
            400,
            depth,
        ),
        (
            "10 MiB of `[`",
            post(yaml),
            deep_arrays(MAX_BODY).into(),
            400,
            depth,
        ),
        (
            "100k `- ` (block YAML)",
            post(yaml),
            ("- ".repeat(100_000) + "x\n").into(),
            400,
            depth,
        ),
        (
            "100 levels of indentation",
            post(yaml),
            (0..100)
                .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
                .collect::<String>()
                .into(),
            400,
            depth,
        ),
        (
            "billion laughs",
            post(yaml),
            billion_laughs().into(),
            400,
            "YAML alias limit exceeded",
        ),
        (
            "a recursive alias",
            post(yaml),
            "_format_version: \"3.0\"\nplugins: &p [*p]\n".into(),
            400,
            "recursive aliases",
        ),
        (
            "1M keys",
            post(json),
            many_keys(1_000_000).into(),
            400,
            "more than 10000 keys",
        ),
        (
            "5M-element array",
            post(json),
            huge_array("services", 5_000_000).into(),
            400,
            "more than 2000000 values",
        ),
        (
            "100 MB with Content-Length",
            post(yaml),
            Input::Stream {
                len: 100 << 20,
                sized: true,
            },
            413,
            "Payload too large",
        ),
        (
            "100 MB chunked",
            post(yaml),
            Input::Stream {
                len: 100 << 20,
                sized: false,
            },
            413,
            "Payload too large",
        ),
        (
            "10 MiB + 1 byte",
            post(yaml),
            vec![b'#'; MAX_BODY + 1].into(),
            413,
            "10485760 bytes",
        ),
    ];
    for (what, route, input, status, says) in cases {
        let body = refused(&mut n.gw, what, route, input, status, says).await;
        if status == 400 {
            // Kong's declarative error.
            assert_eq!(body["name"], "invalid declarative configuration", "{what}");
        }
        assert_eq!(n.hash().await, hash, "{what}: the configuration changed");
        n.serves("/kept").await;
    }

    // A body of exactly the limit is read (and found to hold no configuration).
    let r = request(
        n.gw.admin,
        "POST",
        "/config",
        yaml,
        vec![b'#'; MAX_BODY].into(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));

    // The node still takes a good configuration.
    let up = n._up.addr;
    let r = request(
        n.gw.admin,
        "POST",
        "/config",
        yaml,
        declarative_for(up, "/new").into(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_ne!(n.hash().await, hash);
    n.serves("/new").await;
}

// ---------- the entity endpoints, on PostgreSQL ----------

async fn call(gw: &Gateway, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let r = admin(gw.admin, method, path, body, None).await;
    let v = if r.body.is_empty() {
        Value::Null
    } else {
        r.json()
    };
    (r.status, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entity_endpoints_refuse_pathological_input() {
    let _serial = SERIAL.lock().await;
    let pg = Postgres::start();
    pg.create_database("limits");
    let conf = pg.conf("limits");
    let (code, out) = gateway_cli(&conf, &["migrations", "bootstrap"]);
    assert_eq!(code, 0, "{out}");
    let mut gw = gateway().set_all(&conf).start();

    let (code, kept) = call(
        &gw,
        "POST",
        "/services",
        Some(json!({"name": "kept", "url": "http://127.0.0.1:9/kept"})),
    )
    .await;
    assert_eq!(code, 201, "{kept}");

    let json = "application/json";
    let form = "application/x-www-form-urlencoded";
    let depth = "nesting depth limit exceeded";
    let too_large = "Payload too large";
    let cannot_store = "the database cannot store a value";
    // Under nginx's 8 KiB request line (`large_client_header_buffers`).
    let dots = "a.".repeat(100_000);
    let long_name = format!("/services/{}", "n".repeat(7_000));
    let big_stream = |sized| Input::Stream {
        len: 100 << 20,
        sized,
    };
    let cases: Vec<Case> = vec![
        (
            "100k `[`",
            ("POST", "/services", json),
            deep_arrays(100_000).into(),
            400,
            depth,
        ),
        (
            "100k `{\"a\":`",
            ("POST", "/services", json),
            deep_objects(100_000).into(),
            400,
            depth,
        ),
        (
            "PUT 100k `[`",
            ("PUT", "/services/kept", json),
            deep_arrays(100_000).into(),
            400,
            depth,
        ),
        (
            "PATCH 100k `{\"a\":`",
            ("PATCH", "/services/kept", json),
            deep_objects(100_000).into(),
            400,
            depth,
        ),
        (
            "plugin config 70 deep",
            ("POST", "/plugins", json),
            format!(
                "{{\"name\":\"cors\",\"config\":{}1{}}}",
                "{\"a\":".repeat(70),
                "}".repeat(70)
            )
            .into(),
            400,
            depth,
        ),
        (
            "1M keys in a plugin config",
            ("POST", "/plugins", json),
            format!("{{\"name\":\"cors\",\"config\":{}}}", many_keys(1_000_000)).into(),
            400,
            "more than 10000 keys",
        ),
        (
            "1M keys",
            ("POST", "/services", json),
            many_keys(1_000_000).into(),
            400,
            "more than 10000 keys",
        ),
        (
            "5M-element array",
            ("POST", "/services", json),
            huge_array("tags", 5_000_000).into(),
            400,
            "more than 100000 values",
        ),
        (
            "100 MB with Content-Length",
            ("POST", "/services", json),
            big_stream(true),
            413,
            too_large,
        ),
        (
            "100 MB chunked",
            ("POST", "/services", json),
            big_stream(false),
            413,
            too_large,
        ),
        (
            "PATCH 100 MB",
            ("PATCH", "/services/kept", json),
            big_stream(true),
            413,
            too_large,
        ),
        // Content-Length: hyper's client does not send a chunked GET body.
        (
            "GET with 100 MB",
            ("GET", "/services", json),
            big_stream(true),
            413,
            too_large,
        ),
        (
            "form key 100k deep",
            ("POST", "/plugins", form),
            format!("name=cors&config{}=1", "[a]".repeat(100_000)).into(),
            400,
            depth,
        ),
        (
            "form key 300 deep (dotted)",
            ("POST", "/plugins", form),
            format!("name=cors&config{}=1", ".a".repeat(300)).into(),
            400,
            depth,
        ),
        (
            "form 200k pairs",
            ("POST", "/services", form),
            "tags=a&".repeat(200_000).into(),
            400,
            "more than 100000 values",
        ),
        (
            "NUL in a plugin config",
            ("POST", "/plugins", json),
            r#"{"name":"jwt","config":{"x":"a\u0000b"}}"#.into(),
            400,
            cannot_store,
        ),
        (
            "NUL in a key",
            ("POST", "/consumers", json),
            r#"{"username":"a\u0000b"}"#.into(),
            400,
            cannot_store,
        ),
        (
            "a 20 000-character username",
            ("POST", "/consumers", json),
            format!("{{\"username\":\"{}\"}}", random_text(20_000)).into(),
            400,
            cannot_store,
        ),
        (
            "a 20 000-character name in the URL",
            ("PUT", "/consumers/x", json),
            format!("{{\"custom_id\":\"{}\"}}", random_text(20_000)).into(),
            400,
            cannot_store,
        ),
        (
            "90 000 SNIs",
            ("POST", "/certificates", json),
            format!(
                "{{\"snis\":[{}]}}",
                (0..90_000)
                    .map(|i| format!("\"h{i}.example\""))
                    .collect::<Vec<_>>()
                    .join(",")
            )
            .into(),
            400,
            "schema violation",
        ),
        (
            "90 000 protocols",
            ("POST", "/routes", json),
            format!(
                "{{\"paths\":[\"/\"],\"protocols\":[{}]}}",
                (0..90_000)
                    .map(|i| format!("\"p{i}\""))
                    .collect::<Vec<_>>()
                    .join(",")
            )
            .into(),
            400,
            "schema violation",
        ),
        (
            "a regex path that compiles too big",
            ("POST", "/routes", json),
            r#"{"paths":["~/(((a{100}){100}){100})"]}"#.into(),
            400,
            "schema violation",
        ),
        (
            "a regex path nested 10 000 deep",
            ("POST", "/routes", json),
            format!(
                "{{\"paths\":[\"~/{}a{}\"]}}",
                "(".repeat(10_000),
                ")".repeat(10_000)
            )
            .into(),
            400,
            "schema violation",
        ),
        (
            "a header name with 100k dots",
            ("POST", "/routes", json),
            format!("{{\"paths\":[\"/\"],\"headers\":{{\"{dots}\":1}}}}").into(),
            400,
            "schema violation",
        ),
        (
            "a foreign key with a 100k-dot key",
            ("POST", "/routes", json),
            format!("{{\"paths\":[\"/\"],\"service\":{{\"{dots}\":1}}}}").into(),
            400,
            "schema violation",
        ),
        (
            "invalid UTF-8 (JSON)",
            ("POST", "/services", json),
            b"{\"name\":\"\xff\"}".to_vec().into(),
            400,
            "Cannot parse JSON body",
        ),
        (
            "invalid UTF-8 (form)",
            ("POST", "/services", form),
            b"name=%FF&host=\xfe".to_vec().into(),
            400,
            "schema violation",
        ),
        (
            "port 1e400",
            ("POST", "/services", json),
            r#"{"host":"h","port":1e400}"#.into(),
            400,
            "number out of range",
        ),
        (
            "port 1e20",
            ("POST", "/services", json),
            r#"{"host":"h","port":1e20}"#.into(),
            400,
            "port",
        ),
        (
            "not an object",
            ("POST", "/services", json),
            "[1]".into(),
            400,
            "must be an object",
        ),
        (
            "a NUL in the URL",
            ("GET", "/services/a%00b", json),
            "".into(),
            404,
            "Not found",
        ),
        (
            "invalid UTF-8 in the URL",
            ("GET", "/services/%FF", json),
            "".into(),
            400,
            "UTF-8",
        ),
        (
            "a 7 000-character key in the URL",
            ("GET", &long_name, json),
            "".into(),
            404,
            "Not found",
        ),
        (
            "?size= huge",
            ("GET", "/services?size=99999999999999999999", json),
            "".into(),
            400,
            "size",
        ),
        (
            "?size= negative",
            ("GET", "/services?size=-1", json),
            "".into(),
            400,
            "size",
        ),
        (
            "?size= not UTF-8",
            ("GET", "/services?size=%FF", json),
            "".into(),
            400,
            "size",
        ),
        (
            "?offset= garbage",
            ("GET", "/services?offset=abc", json),
            "".into(),
            400,
            "offset",
        ),
        (
            "?offset= negative",
            ("GET", "/services?offset=-5", json),
            "".into(),
            400,
            "offset",
        ),
        (
            "a method /status lacks",
            ("PUT", "/status", json),
            "".into(),
            405,
            "Method not allowed",
        ),
    ];
    for (what, route, input, status, says) in cases {
        refused(&mut gw, what, route, input, status, says).await;
    }

    // Huge and odd but valid paging answers.
    let (code, page) = call(&gw, "GET", "/services?offset=9223372036854775807", None).await;
    assert_eq!((code, page["data"].clone()), (200, json!([])));

    // Nothing was written, the service is as it was, and the node serves.
    let (code, now) = call(&gw, "GET", "/services/kept", None).await;
    assert_eq!((code, &now), (200, &kept));
    for kind in ["plugins", "consumers", "certificates", "routes"] {
        let (code, list) = call(&gw, "GET", &format!("/{kind}"), None).await;
        assert_eq!((code, list["data"].clone()), (200, json!([])), "{kind}");
    }
    let (code, list) = call(&gw, "GET", "/services", None).await;
    assert_eq!(
        (code, list["data"].as_array().map(Vec::len)),
        (200, Some(1))
    );
    gw.status().await;
    let (code, _) = call(&gw, "PATCH", "/services/kept", Some(json!({"retries": 3}))).await;
    assert_eq!(code, 200);
}

// ---------- the declarative file: start-up and SIGHUP ----------

#[test]
fn a_pathological_declarative_file_fails_the_start_with_the_reason() {
    let _serial = SERIAL.blocking_lock();
    let files: [(&str, String, &str); 4] = [
        (
            "billion laughs",
            billion_laughs(),
            "YAML alias limit exceeded",
        ),
        (
            "deep nesting",
            String::from_utf8(deep_arrays(1_000_000)).unwrap(),
            "nesting depth limit exceeded",
        ),
        (
            "a million keys",
            many_keys(1_000_000),
            "more than 10000 keys",
        ),
        ("11 MiB", "#".repeat(11 << 20), "size limit exceeded"),
    ];
    for (what, text, says) in files {
        let start = Instant::now();
        let mut gw = gateway().declarative(&text).spawn();
        let code = gw.wait_exit(Duration::from_secs(20));
        let log = gw.log();
        assert!(
            matches!(code, Some(c) if c != 0),
            "{what}: exit {code:?}\n{log}"
        );
        assert!(log.contains(says), "{what}: {log}");
        assert!(
            log.contains("kong.yml") && log.contains("not a valid declarative config")
                || log.contains("cannot read declarative_config"),
            "{what}: {log}"
        );
        eprintln!(
            "{what}: exit {code:?} after {} ms: {}",
            start.elapsed().as_millis(),
            log.lines().last().unwrap_or_default()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_pathological_file_keeps_the_configuration() {
    let _serial = SERIAL.lock().await;
    let n = dbless().await;
    let hash = n.hash().await;
    let path = n.gw.dir.path().join("kong.yml");
    let kept = "SIGHUP: keeping the current configuration";
    let files: [(&str, String, &str); 3] = [
        (
            "billion laughs",
            billion_laughs(),
            "YAML alias limit exceeded",
        ),
        (
            "10 MiB of `[`",
            String::from_utf8(deep_arrays(MAX_BODY)).unwrap(),
            "nesting depth limit exceeded",
        ),
        ("11 MiB", "#".repeat(11 << 20), "size limit exceeded"),
    ];
    for (i, (what, text, says)) in files.into_iter().enumerate() {
        std::fs::write(&path, text).unwrap();
        let memory = Memory::watch(n.gw.pid());
        let start = Instant::now();
        n.gw.signal(SIGHUP);
        while n.gw.log().matches(kept).count() <= i {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{what}: no reload message:\n{}",
                n.gw.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let took = start.elapsed();
        assert!(took < WITHIN, "{what}: refused after {took:?}");
        let growth = memory.growth_mib();
        assert!(growth < MAX_GROWTH_MIB, "{what}: grew by {growth} MiB");
        let line =
            n.gw.log()
                .lines()
                .filter(|l| l.contains(kept))
                .nth(i)
                .unwrap()
                .to_string();
        assert!(line.contains(says), "{what}: {line}");
        assert_eq!(n.hash().await, hash, "{what}");
        n.serves("/kept").await;
        eprintln!("{what}: refused in {} ms, +{growth} MiB", took.as_millis());
    }

    // A good file still reloads.
    let up = n._up.addr;
    std::fs::write(&path, declarative_for(up, "/reloaded")).unwrap();
    n.gw.signal(SIGHUP);
    let start = Instant::now();
    while n.hash().await == hash {
        assert!(start.elapsed() < Duration::from_secs(10), "{}", n.gw.log());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    n.serves("/reloaded").await;
}
