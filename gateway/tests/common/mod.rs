//! Real peers for the end-to-end tests: the gateway binary as a child process,
//! an HTTP upstream, HAProxy, and a small HTTP client over raw sockets.
#![allow(dead_code)]

pub mod postgres;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Write;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// A port nothing listens on, for a server the test starts later.
///
/// It comes from below the kernel's ephemeral range (32768 and up on Linux), so
/// neither an outgoing connection nor another test's `bind(:0)` can take it
/// between this check and the server's own bind, which is how a port asked
/// of the kernel with `:0` was lost in CI ("Address already in use"). Each
/// test process starts at its own offset and never hands out a port twice.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let start = (std::process::id().wrapping_mul(2_654_435_761) >> 8) % COUNT;
    let _ = NEXT.compare_exchange(u32::MAX, start, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..COUNT {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % COUNT) as u16;
        if StdListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {FIRST} and {}", FIRST + COUNT);
}

/// Finds a program on PATH or in the sbin directories Debian puts servers in.
pub fn program(name: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    for dir in path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"])
    {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{name}` is not installed: run ./scripts/test, which installs the test peers");
}

// ---------- the gateway ----------

pub struct Gateway {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub admin: SocketAddr,
    pub conf: PathBuf,
}

pub struct GatewayBuilder {
    lines: Vec<(String, String)>,
    declarative: Option<String>,
}

pub fn gateway() -> GatewayBuilder {
    GatewayBuilder {
        lines: Vec::new(),
        declarative: None,
    }
}

impl GatewayBuilder {
    /// Sets a configuration key (the value is a TOML value, quoted as needed).
    pub fn set(mut self, key: &str, toml_value: &str) -> Self {
        self.lines.push((key.into(), toml_value.into()));
        self
    }

    pub fn set_all(mut self, lines: &[(String, String)]) -> Self {
        self.lines.extend(lines.iter().cloned());
        self
    }

    pub fn proxy_listen(self, value: &str) -> Self {
        self.set("proxy_listen", &format!("{value:?}"))
    }

    pub fn declarative(mut self, yaml: &str) -> Self {
        self.declarative = Some(yaml.into());
        self
    }

    /// Starts the node and waits until its admin listener answers.
    pub fn start(self) -> Gateway {
        let mut gw = self.spawn();
        let conf = std::fs::read_to_string(&gw.conf).unwrap();
        let admin_on = !conf.contains("admin_listen = \"off\"");
        gw.wait_until(|gw| !admin_on || std::net::TcpStream::connect(gw.admin).is_ok());
        gw
    }

    /// Starts the node without waiting for anything.
    pub fn spawn(self) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut conf = String::new();
        let has = |k: &str| self.lines.iter().any(|(key, _)| key == k);
        if !has("admin_listen") {
            conf.push_str(&format!("admin_listen = \"{admin}\"\n"));
        }
        if !has("proxy_listen") {
            conf.push_str("proxy_listen = \"off\"\n");
        }
        conf.push_str(&format!("prefix = {:?}\n", dir.path().join("prefix")));
        if !has("drain_delay") {
            conf.push_str("drain_delay = 0\n");
        }
        if let Some(yaml) = &self.declarative {
            let path = dir.path().join("kong.yml");
            std::fs::write(&path, yaml).unwrap();
            conf.push_str(&format!("declarative_config = {path:?}\n"));
        }
        for (k, v) in &self.lines {
            conf.push_str(&format!("{k} = {v}\n"));
        }
        let conf_path = dir.path().join("gateway.conf");
        std::fs::write(&conf_path, &conf).unwrap();
        let log = std::fs::File::create(dir.path().join("gateway.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["start", "--conf"])
            .arg(&conf_path)
            .env_remove("GATEWAY_CONF")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Gateway {
            child,
            dir,
            admin,
            conf: conf_path,
        }
    }
}

impl Gateway {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    pub fn wait_until(&mut self, ok: impl Fn(&Gateway) -> bool) {
        let start = Instant::now();
        while !ok(self) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("gateway exited early with {status}:\n{}", self.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "gateway did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: i32) {
        unsafe { libc_kill(self.pid(), sig) };
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            assert!(
                start.elapsed() < within,
                "gateway still running after {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The RSS high-water mark of the node, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// `GET /status` of a node that should be serving (200); it answers 503
    /// while draining or before a configuration is loaded.
    pub async fn status(&self) -> serde_json::Value {
        let r = send(self.admin, None, get("/status")).await.unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
pub const SIGTERM: i32 = 15;
pub const SIGINT: i32 = 2;

// ---------- an HTTP upstream ----------

/// An upstream that echoes what it got, and serves test helpers:
/// `/delay/<ms>`, `/bytes/<n>` (streamed), `/upload` (counts a streamed body),
/// `/status/<code>`.
pub struct Upstream {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn upstream(name: &'static str) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| echo(name, peer, req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Upstream { addr, task }
}

type EchoBody = http_body_util::Either<Full<Bytes>, Chunks>;

async fn echo(
    name: &'static str,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<EchoBody>, Infallible> {
    let path = req.uri().path().to_string();
    let json = |v: serde_json::Value| {
        Response::builder()
            .header("content-type", "application/json")
            .header("x-upstream", name)
            .body(http_body_util::Either::Left(Full::new(Bytes::from(
                v.to_string(),
            ))))
            .unwrap()
    };
    if let Some(ms) = path.strip_prefix("/delay/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        return Ok(json(serde_json::json!({"delayed_ms": ms})));
    }
    if let Some(n) = path.strip_prefix("/bytes/") {
        let n: u64 = n.parse().unwrap_or(0);
        return Ok(Response::builder()
            .header("content-length", n.to_string())
            .body(http_body_util::Either::Right(Chunks::new(n)))
            .unwrap());
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let mut r = json(serde_json::json!({"status": code}));
        *r.status_mut() = code
            .parse::<u16>()
            .ok()
            .and_then(|c| http::StatusCode::from_u16(c).ok())
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        return Ok(r);
    }
    if path.contains("/echo-body") {
        // The body as received, with its type and length headers.
        let (parts, body) = req.into_parts();
        let got = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let h = |n: &str| {
            parts
                .headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        return Ok(json(serde_json::json!({
            "method": parts.method.as_str(),
            "uri": parts.uri.to_string(),
            "content_type": h("content-type"),
            "content_length": h("content-length"),
            "body": String::from_utf8_lossy(&got),
        })));
    }
    if path == "/upload" {
        let mut body = req.into_body();
        let mut received = 0u64;
        while let Some(frame) = body.frame().await {
            if let Ok(d) = frame.map(|f| f.into_data()) {
                received += d.map(|d| d.len() as u64).unwrap_or(0);
            } else {
                break;
            }
        }
        return Ok(json(serde_json::json!({"received": received})));
    }
    let mut headers = BTreeMap::new();
    for (k, v) in req.headers() {
        headers
            .entry(k.as_str().to_string())
            .and_modify(|e: &mut String| {
                e.push_str(", ");
                e.push_str(v.to_str().unwrap_or("?"));
            })
            .or_insert_with(|| v.to_str().unwrap_or("?").to_string());
    }
    Ok(json(serde_json::json!({
        "upstream": name,
        "method": req.method().as_str(),
        "uri": req.uri().to_string(),
        "headers": headers,
        "peer": peer.to_string(),
    })))
}

/// A body of `n` bytes produced in 64 KiB frames, never held whole.
pub struct Chunks {
    left: u64,
    chunk: Bytes,
}

impl Chunks {
    pub fn new(n: u64) -> Self {
        Chunks {
            left: n,
            chunk: Bytes::from(vec![b'x'; 64 * 1024]),
        }
    }
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len() as u64) as usize;
        self.left -= n as u64;
        std::task::Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}

/// An old upstream that answers every request in HTTP/1.0 and closes.
pub async fn http10_upstream() -> Upstream {
    use tokio::io::AsyncReadExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold")
                    .await;
            });
        }
    });
    Upstream { addr, task }
}

/// Runs a `gateway` command with a configuration file made of `lines`;
/// returns the exit code and stdout + stderr.
pub fn gateway_cli(lines: &[(String, String)], args: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let conf: String = lines.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
    let path = dir.path().join("gateway.conf");
    std::fs::write(&path, conf).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .arg("--conf")
        .arg(&path)
        .env_remove("GATEWAY_CONF")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// An Admin API request with an optional JSON body and bearer token.
pub async fn admin(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
    token: Option<&str>,
) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "admin.local");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            Bytes::from(v.to_string())
        }
        None => Bytes::new(),
    };
    send(addr, None, req.body(Full::new(body)).unwrap())
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

// ---------- a small HTTP/1.1 client ----------

pub struct Reply {
    pub status: u16,
    pub version: http::Version,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", "test.local")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// Sends one request on a new connection, after `preamble` (a PROXY header).
pub async fn send(
    addr: SocketAddr,
    preamble: Option<&[u8]>,
    req: Request<Full<Bytes>>,
) -> Result<Reply, String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    if let Some(p) = preamble {
        stream.write_all(p).await.map_err(|e| e.to_string())?;
    }
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let version = resp.version();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Reply {
        status,
        version,
        headers,
        body,
    })
}

/// A PROXY v1 line claiming `client` as the source.
pub fn v1(client: &str, port: u16) -> Vec<u8> {
    format!("PROXY TCP4 {client} 127.0.0.1 40000 {port}\r\n").into_bytes()
}

// ---------- HAProxy in front, as the ELB stands in front on AWS ----------

pub struct Haproxy {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// TCP-mode HAProxy forwarding to `backend` with `send_proxy` (`send-proxy` or `send-proxy-v2`).
pub fn haproxy(backend: SocketAddr, send_proxy: &str) -> Haproxy {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = format!(
        "global\n  maxconn 256\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n\
         frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\
         backend be\n  server gw {backend} {send_proxy}\n"
    );
    let path = dir.path().join("haproxy.cfg");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(cfg.as_bytes())
        .unwrap();
    let child = Command::new(program("haproxy"))
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "haproxy did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Haproxy {
        child,
        addr,
        _dir: dir,
    }
}

/// Runs curl and returns (exit ok, stdout).
pub fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new(program("curl"))
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// TCP-mode HAProxy balancing over `nodes` (proxy address, admin address) with
/// `send-proxy`, as a classic ELB with TCP listeners does: an HTTP health check
/// of `GET /status/ready` on each node's admin port every 500 ms, a node out
/// after 2 failures and back after 2 passes. Its stats socket tells the state
/// of each server (`n1`, `n2`, ... in the order given).
pub fn haproxy_checked(nodes: &[(SocketAddr, SocketAddr)]) -> Haproxy {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let socket = dir.path().join("haproxy.sock");
    let mut cfg = format!(
        "global\n  maxconn 1024\n  stats socket {} mode 600 level admin\n\
         defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n  timeout check 1s\n  retries 3\n  option redispatch\n\
         frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\
         backend be\n  balance roundrobin\n  option httpchk\n\
         \x20 http-check send meth GET uri /status/ready ver HTTP/1.1 hdr Host lb\n\
         \x20 http-check expect status 200\n\
         \x20 default-server inter 500 fall 2 rise 2\n",
        socket.display()
    );
    for (i, (proxy, admin)) in nodes.iter().enumerate() {
        // With `port`, checks go to the admin listener without a PROXY header.
        cfg.push_str(&format!(
            "  server n{} {proxy} send-proxy check port {}\n",
            i + 1,
            admin.port()
        ));
    }
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let log = std::fs::File::create(dir.path().join("haproxy.log")).unwrap();
    let child = Command::new(program("haproxy"))
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() || !socket.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "haproxy did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Haproxy {
        child,
        addr,
        _dir: dir,
    }
}

impl Haproxy {
    /// Each backend server's name and status (`UP`, `DOWN`, `UP 1/2`, ...),
    /// from the stats socket of [`haproxy_checked`].
    pub fn servers(&self) -> Vec<(String, String)> {
        use std::io::Read;
        let path = self._dir.path().join("haproxy.sock");
        let mut s = std::os::unix::net::UnixStream::connect(&path)
            .unwrap_or_else(|e| panic!("haproxy stats socket {}: {e}", path.display()));
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"show stat\n").unwrap();
        let mut csv = String::new();
        s.read_to_string(&mut csv).unwrap();
        // # pxname,svname,...: the status is the 18th field.
        csv.lines()
            .filter(|l| l.starts_with("be,") && !l.starts_with("be,BACKEND,"))
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f[1].to_string(), f.get(17).unwrap_or(&"?").to_string())
            })
            .collect()
    }

    /// The status of backend server `name`.
    pub fn server(&self, name: &str) -> String {
        self.servers()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
            .unwrap_or_else(|| panic!("no server {name} in haproxy"))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("haproxy.log")).unwrap_or_default()
    }
}

// ---------- declarative gateways and curl ----------

/// A DB-less gateway on the declarative `yaml` with `extra` settings, its
/// proxy on a free loopback port (`listen` appended, say " proxy_protocol"),
/// returned once the proxy accepts connections.
pub fn start_declarative(
    yaml: &str,
    extra: &[(&str, &str)],
    listen: &str,
) -> (Gateway, SocketAddr) {
    let port = free_port();
    let mut b = gateway()
        .proxy_listen(&format!("127.0.0.1:{port}{listen}"))
        .declarative(yaml);
    for (k, v) in extra {
        b = b.set(k, v);
    }
    let gw = b.start();
    let proxy: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(proxy).is_err() {
        assert!(
            Instant::now() < deadline,
            "proxy never listened: {}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (gw, proxy)
}

/// A node with the settings `conf` (a database's), its proxy on a free
/// loopback port.
pub fn db_node(conf: &[(String, String)]) -> (Gateway, SocketAddr) {
    let port = free_port();
    let gw = gateway()
        .set_all(conf)
        .proxy_listen(&format!("127.0.0.1:{port}"))
        .start();
    (gw, format!("127.0.0.1:{port}").parse().unwrap())
}

/// What `curl -i` printed: the status, the head lower-cased (for header
/// lookups), the body, and all of it as printed.
pub struct Curled {
    pub status: u16,
    pub head: String,
    pub body: String,
    pub raw: String,
}

impl Curled {
    /// A header's value (names are lower-cased in `head`).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.head, name)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.raw))
    }
}

/// The value of header `name` (any case) among the lines of `text`.
pub fn header_in<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Runs `curl -i ARGS`; fails the test if curl itself fails.
pub fn curl_i(args: &[&str]) -> Curled {
    let mut all = vec!["-i"];
    all.extend_from_slice(args);
    let (ok, raw) = curl(&all);
    assert!(ok, "curl {args:?}: {raw}");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {raw}"));
    Curled {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
        raw: raw.clone(),
    }
}

/// Polls `url` (with more curl `args`) until it answers `status`: a node
/// applies an Admin API change within a moment.
pub fn curl_until(url: &str, args: &[&str], status: u16) -> Curled {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut all = vec![url];
        all.extend_from_slice(args);
        let c = curl_i(&all);
        if c.status == status {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "{url} still answers {}, not {status}: {}",
            c.status,
            c.raw
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
