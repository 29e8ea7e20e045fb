//! The gateway as an attacker meets it, over real sockets: header and body
//! limits with their status codes, silent connections closed on time (plain,
//! TLS, h2c, HTTP/2, keep-alive), an upstream that stalls mid-body, strict
//! HTTP/1 (Host, framing, underscores), HTTP/2 floods, and memory under a
//! thousand slow clients.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Node {
    gw: Gateway,
    proxy: SocketAddr,
    _up: Upstream,
}

/// A node with one echo service on `/` (and `preserve_host` on `/keep`),
/// plus the given extra configuration lines.
async fn node(extra: &[(&str, &str)], listen_flags: &str) -> Node {
    let up = upstream("echo").await;
    let port = free_port();
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n- name: echo\n  url: http://{}\n  routes:\n  - paths: [\"/\"]\n  - paths: [\"/keep\"]\n    preserve_host: true\n    strip_path: false\n",
        up.addr
    );
    let mut b = gateway()
        .proxy_listen(&format!("127.0.0.1:{port} {listen_flags}"))
        .declarative(&yaml);
    for (k, v) in extra {
        b = b.set(k, v);
    }
    let gw = b.start();
    Node {
        gw,
        proxy: format!("127.0.0.1:{port}").parse().unwrap(),
        _up: up,
    }
}

/// Writes `bytes` and reads until the server closes (or `within` passes).
/// Returns what was read and how long until the close, if it closed.
async fn exchange(addr: SocketAddr, bytes: &[u8], within: Duration) -> (String, Option<Duration>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    s.write_all(bytes).await.unwrap();
    read_until_closed(&mut s, start, within).await
}

async fn read_until_closed(
    s: &mut TcpStream,
    start: Instant,
    within: Duration,
) -> (String, Option<Duration>) {
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let left = within.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&out).into(), None),
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (String::from_utf8_lossy(&out).into(), Some(start.elapsed()))
            }
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

fn vm_rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn assert_closed_between(what: &str, closed: Option<Duration>, low: f64, high: f64) {
    let t = closed.unwrap_or_else(|| panic!("{what}: still open after {high} s"));
    assert!(
        t.as_secs_f64() >= low && t.as_secs_f64() <= high,
        "{what}: closed after {t:?}, expected {low}-{high} s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_and_body_limits_answer_414_431_413() {
    let n = node(
        &[
            ("large_client_header_buffers", "\"4 8k\""),
            ("client_max_body_size", "\"1k\""),
        ],
        "",
    )
    .await;
    let p = n.proxy;
    let within = Duration::from_secs(5);

    // A request line longer than one buffer: 414, never forwarded.
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "u".repeat(9000));
    let (r, _) = exchange(p, long_uri.as_bytes(), within).await;
    assert_eq!(status_of(&r), 414, "{r}");
    assert!(r.contains("URI too long"), "{r}");

    // One header line longer than one buffer: 431.
    let cookie = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nCookie: {}\r\n\r\n",
        "c".repeat(9000)
    );
    let (r, _) = exchange(p, cookie.as_bytes(), within).await;
    assert_eq!(status_of(&r), 431, "{r}");

    // Lines that each fit, but more than all four buffers together: 431 (and
    // the connection is closed: hyper stops reading such a head).
    let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..6 {
        many.push_str(&format!("X-Pad-{i}: {}\r\n", "p".repeat(7000)));
    }
    many.push_str("\r\n");
    let (r, closed) = exchange(p, many.as_bytes(), within).await;
    assert_eq!(status_of(&r), 431, "{r}");
    assert!(closed.is_some());

    // Just under the limits: served.
    let fits = format!(
        "GET /{} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        "u".repeat(7000)
    );
    let (r, _) = exchange(p, fits.as_bytes(), within).await;
    assert_eq!(status_of(&r), 200, "{r}");

    // client_max_body_size: by Content-Length before anything is sent
    // upstream, and by counting a chunked body.
    let big = format!(
        "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 2048\r\n\r\n{}",
        "b".repeat(2048)
    );
    let (r, _) = exchange(p, big.as_bytes(), within).await;
    assert_eq!(status_of(&r), 413, "{r}");
    assert!(r.contains("Payload too large"), "{r}");
    let chunk = "b".repeat(600);
    let chunked = format!(
        "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let (r, _) = exchange(p, chunked.as_bytes(), within).await;
    assert_eq!(status_of(&r), 413, "{r}");
    let small =
        "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    let (r, _) = exchange(p, small.as_bytes(), within).await;
    assert_eq!(status_of(&r), 200, "{r}");
    assert!(r.contains("\"received\":5"), "{r}");
    drop(n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_on_time() {
    let n = node(
        &[
            ("client_header_timeout", "1"),
            ("keepalive_timeout", "2"),
            ("client_body_timeout", "1"),
            ("ssl_handshake_timeout", "1"),
        ],
        "http2",
    )
    .await;
    let p = n.proxy;
    let within = Duration::from_secs(6);

    // Connects and sends nothing: client_header_timeout (ticks of 1/8 s).
    let (_, closed) = exchange(p, b"", within).await;
    assert_closed_between("silent connection", closed, 0.9, 1.6);

    // h2c without its preface (half of it, then silence): the same.
    let (_, closed) = exchange(p, b"PRI * HTTP/2.0\r\n", within).await;
    assert_closed_between("h2c without a preface", closed, 0.9, 1.6);

    // A head started and never finished.
    let (_, closed) = exchange(p, b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow:", within).await;
    assert_closed_between("unfinished head", closed, 0.9, 1.6);

    // Keep-alive: served, then idle for keepalive_timeout (2 s, longer than
    // the header timeout, which must not cut an idle connection).
    let mut s = TcpStream::connect(p).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let got = s.read(&mut buf).await.unwrap();
    assert_eq!(status_of(&String::from_utf8_lossy(&buf[..got])), 200);
    let idle_from = Instant::now();
    let (_, closed) = read_until_closed(&mut s, idle_from, within).await;
    assert_closed_between("idle keep-alive", closed, 1.9, 2.7);

    // A second head started after a served request: the header timeout.
    let mut s = TcpStream::connect(p).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let _ = s.read(&mut buf).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
    let (_, closed) = read_until_closed(&mut s, Instant::now(), within).await;
    assert_closed_between("second unfinished head", closed, 0.9, 1.6);

    // A body that stops arriving: 408 after client_body_timeout.
    let mut s = TcpStream::connect(p).await.unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        .await
        .unwrap();
    let (r, closed) = read_until_closed(&mut s, Instant::now(), within).await;
    assert_eq!(status_of(&r), 408, "{r}");
    assert!(r.contains("Request timeout"), "{r}");
    assert_closed_between("stalled body", closed, 0.9, 2.0);

    // HTTP/2: served, then idle: GOAWAY and close after keepalive_timeout.
    let stream = TcpStream::connect(p).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::get(format!("http://{p}/h2"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let _ = resp.into_body().collect().await.unwrap();
    let idle_from = Instant::now();
    let ended = tokio::time::timeout(within, conn).await;
    assert!(
        ended.is_ok(),
        "idle HTTP/2 connection still open after {within:?}"
    );
    let t = idle_from.elapsed().as_secs_f64();
    assert!((1.9..=2.7).contains(&t), "idle HTTP/2 closed after {t} s");
    drop(n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshake_and_silence_after_it_are_timed() {
    let n = node(
        &[
            ("client_header_timeout", "1"),
            ("ssl_handshake_timeout", "1"),
        ],
        "ssl http2",
    )
    .await;
    // No ClientHello at all: ssl_handshake_timeout.
    let (_, closed) = exchange(n.proxy, b"", Duration::from_secs(5)).await;
    assert_closed_between("no TLS handshake", closed, 0.9, 1.6);

    // A full handshake (Python's ssl, a real TLS client), then silence.
    let script = format!(
        "import socket,ssl,time\n\
         c=ssl.create_default_context(); c.check_hostname=False; c.verify_mode=ssl.CERT_NONE\n\
         s=c.wrap_socket(socket.create_connection(('127.0.0.1',{})))\n\
         t=time.time(); s.settimeout(5)\n\
         try:\n  d=s.recv(1)\nexcept Exception as e:\n  d=repr(e)\n\
         print(round(time.time()-t,2), d)\n",
        n.proxy.port()
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let secs: f64 = text
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("python: {text} {}", String::from_utf8_lossy(&out.stderr)));
    assert!(
        (0.8..=1.6).contains(&secs),
        "closed {secs} s after the handshake: {text}"
    );
    drop(n);
}

/// An upstream that answers every request with `steps`: each is written after
/// its delay (an empty one only waits), then the connection stays open a while.
async fn scripted_upstream(
    steps: Vec<(Duration, &'static [u8])>,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let steps = steps.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                for (delay, bytes) in steps {
                    tokio::time::sleep(delay).await;
                    if s.write_all(bytes).await.is_err() {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_stalling_mid_body_is_cut_after_read_timeout() {
    // Its head and part of a body, then nothing.
    let (up, task) = scripted_upstream(vec![(
        Duration::ZERO,
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst-part",
    )])
    .await;
    let port = free_port();
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n- name: stall\n  url: http://{up}\n  read_timeout: 700\n  routes:\n  - paths: [\"/\"]\n"
    );
    let gw = gateway()
        .proxy_listen(&format!("127.0.0.1:{port}"))
        .declarative(&yaml)
        .start();
    let p: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (r, closed) = exchange(
        p,
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&r), 200, "{r}");
    assert!(r.ends_with("first-part"), "{r}");
    // The client sees a truncated body and a close, as from nginx.
    assert_closed_between("stalled upstream body", closed, 0.6, 1.5);
    assert!(
        gw.log().contains("sent nothing for read_timeout"),
        "{}",
        gw.log()
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_http1_host_framing_and_underscores() {
    let n = node(&[("trusted_ips", "[\"0.0.0.0/0\"]")], "").await;
    let p = n.proxy;
    let within = Duration::from_secs(5);
    let status = |req: &'static str| async move {
        let (r, _) = exchange(p, req.as_bytes(), within).await;
        (status_of(&r), r)
    };

    // Host: two of them, none in HTTP/1.1, userinfo in the absolute form.
    assert_eq!(
        status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
            .await
            .0,
        400
    );
    assert_eq!(status("GET / HTTP/1.1\r\n\r\n").await.0, 400);
    assert_eq!(
        status("GET http://user:pw@a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .await
            .0,
        400
    );
    // HTTP/1.0 needs no Host.
    assert_eq!(status("GET / HTTP/1.0\r\n\r\n").await.0, 200);
    // Absolute form: the Host comes from the URI, not the header.
    let (code, r) = status(
        "GET http://uri.test/keep HTTP/1.1\r\nHost: header.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(code, 200, "{r}");
    assert!(r.contains("\"host\":\"uri.test\""), "{r}");

    // Framing: conflicting lengths, both framings, broken chunks. Each is the
    // client's error (400), never the upstream's (502).
    assert_eq!(
        status("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd").await.0,
        400
    );
    // Both framings: read by the chunks alone (RFC 9112 6.1), and the
    // connection closes after the response, so nothing can be smuggled
    // behind it.
    let (r, closed) = exchange(
        p,
        b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        within,
    )
    .await;
    assert_eq!(status_of(&r), 200, "{r}");
    assert!(r.contains("\"received\":6"), "{r}");
    assert_eq!(r.matches("HTTP/1.1 ").count(), 1, "{r}");
    assert!(closed.is_some());
    let (code, r) = status("POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n").await;
    assert_eq!(code, 400, "{r}");
    let (code, r) = status("POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n").await;
    assert_eq!(code, 400, "{r}");
    assert!(
        !n.gw.log().contains("upstream request failed"),
        "{}",
        n.gw.log()
    );

    // Underscores: dropped, so X_Forwarded_For cannot pass for X-Forwarded-For
    // even from a trusted peer.
    let (code, r) = status("GET / HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 6.6.6.6\r\nX-Real_IP: 6.6.6.6\r\nConnection: close\r\n\r\n").await;
    assert_eq!(code, 200, "{r}");
    assert!(!r.contains("6.6.6.6"), "{r}");
    assert!(r.contains("\"x-forwarded-for\":\"127.0.0.1\""), "{r}");
    drop(n);

    // ... unless underscores_in_headers allows them.
    let n = node(&[("underscores_in_headers", "\"on\"")], "").await;
    let (r, _) = exchange(
        n.proxy,
        b"GET / HTTP/1.1\r\nHost: a\r\nMy_Header: kept\r\nConnection: close\r\n\r\n",
        within,
    )
    .await;
    assert!(r.contains("\"my_header\":\"kept\""), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_keep_alive_is_honoured() {
    let n = node(&[], "").await;
    let mut s = TcpStream::connect(n.proxy).await.unwrap();
    let mut buf = vec![0u8; 8192];
    for i in 0..2 {
        s.write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let r = String::from_utf8_lossy(&buf[..got]).to_ascii_lowercase();
        assert!(r.starts_with("http/1.0 200"), "request {i}: {r}");
        assert!(r.contains("connection: keep-alive"), "request {i}: {r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_slow_clients_cost_tens_of_mib_and_others_are_served() {
    let n = node(&[("worker_threads", "2")], "").await;
    // Warm the node up: one request, so lazily built state is counted as idle.
    let (r, _) = exchange(n.proxy, b"GET / HTTP/1.0\r\n\r\n", Duration::from_secs(5)).await;
    assert_eq!(status_of(&r), 200);
    let idle = vm_rss_kib(n.gw.pid());

    // Each client sends 16 KiB of an unfinished head, then waits.
    let head = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: {}",
        "p".repeat(16 * 1024)
    );
    let mut clients = Vec::new();
    for _ in 0..1000 {
        let mut s = TcpStream::connect(n.proxy).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        clients.push(s);
    }
    // Let the node read what was sent.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let held = vm_rss_kib(n.gw.pid());
    let grown_mib = held.saturating_sub(idle) as f64 / 1024.0;
    eprintln!("RSS idle {idle} KiB, with 1000 slow clients {held} KiB (+{grown_mib:.1} MiB)");
    assert!(
        grown_mib < 64.0,
        "1000 slow clients cost {grown_mib:.1} MiB"
    );

    // Meanwhile others are served promptly.
    let t = Instant::now();
    let (r, _) = exchange(n.proxy, b"GET / HTTP/1.0\r\n\r\n", Duration::from_secs(5)).await;
    assert_eq!(status_of(&r), 200);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    drop(clients);
}

// ---------- HTTP/2 floods, in raw frames ----------

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK for `GET http://a/`: three static-table entries and a literal :authority.
const GET_BLOCK: &[u8] = &[0x82, 0x86, 0x84, 0x41, 0x01, b'a'];

/// Reads frames until the server closes; returns the GOAWAY error code, if any.
async fn goaway_code(s: &mut TcpStream, within: Duration) -> Option<u32> {
    let start = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let mut code = None;
    while start.elapsed() < within {
        match tokio::time::timeout(within - start.elapsed(), s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => break,
        }
        while buf.len() >= 9 {
            let len =
                (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            if buf[3] == 7 && len >= 8 {
                code = Some(u32::from_be_bytes([buf[13], buf[14], buf[15], buf[16]]));
            }
            buf.drain(..9 + len);
        }
    }
    code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_floods_end_with_goaway_and_bounded_memory() {
    let n = node(&[("http2_max_concurrent_streams", "16")], "http2").await;
    let (r, _) = exchange(n.proxy, b"GET / HTTP/1.0\r\n\r\n", Duration::from_secs(5)).await;
    assert_eq!(status_of(&r), 200);
    let idle = vm_rss_kib(n.gw.pid());

    // The SETTINGS the node sends carry http2_max_concurrent_streams (id 3).
    let mut s = TcpStream::connect(n.proxy).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    s.write_all(&frame(4, 0, 0, &[])).await.unwrap();
    let mut head = [0u8; 9];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(head[3], 4, "first frame is SETTINGS");
    let len = (usize::from(head[1]) << 8) | usize::from(head[2]);
    let mut settings = vec![0u8; len];
    s.read_exact(&mut settings).await.unwrap();
    let streams = settings
        .chunks(6)
        .find(|c| c[..2] == [0, 3])
        .map(|c| u32::from_be_bytes([c[2], c[3], c[4], c[5]]));
    assert_eq!(streams, Some(16), "SETTINGS: {settings:?}");
    drop(s);

    // Rapid reset (CVE-2023-44487): open and cancel streams as fast as possible.
    let mut s = TcpStream::connect(n.proxy).await.unwrap();
    let mut flood = PREFACE.to_vec();
    flood.extend(frame(4, 0, 0, &[]));
    for i in 0..20_000u32 {
        let id = 2 * i + 1;
        flood.extend(frame(1, 0x4 | 0x1, id, GET_BLOCK));
        flood.extend(frame(3, 0, id, &8u32.to_be_bytes()));
    }
    let _ = s.write_all(&flood).await;
    let code = goaway_code(&mut s, Duration::from_secs(10)).await;
    eprintln!("rapid reset: GOAWAY code {code:?}");
    assert!(code.is_some(), "no GOAWAY after 20,000 cancelled streams");

    // CONTINUATION flood (CVE-2024-27316 and kin): one header block that
    // never ends. The node must stop buffering at the header-list limit.
    let mut s = TcpStream::connect(n.proxy).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    s.write_all(&frame(4, 0, 0, &[])).await.unwrap();
    s.write_all(&frame(1, 0, 1, GET_BLOCK)).await.unwrap();
    // Literal header fields without indexing, 16 KiB at a time, up to 64 MiB.
    let mut field = vec![0x00, 0x03, b'x', b'-', b'y', 0x7f, 0x81, 0x7f];
    field.extend(std::iter::repeat_n(b'v', 16 * 1024 - field.len()));
    let cont = frame(9, 0, 1, &field);
    let start = Instant::now();
    let mut sent = 0usize;
    while sent < 64 << 20 && start.elapsed() < Duration::from_secs(10) {
        if s.write_all(&cont).await.is_err() {
            break;
        }
        sent += cont.len();
    }
    let code = goaway_code(&mut s, Duration::from_secs(5)).await;
    eprintln!(
        "CONTINUATION flood: {} KiB sent, GOAWAY code {code:?}",
        sent / 1024
    );
    assert!(
        sent < 64 << 20,
        "the node swallowed 64 MiB of one header block"
    );

    let grown = vm_rss_kib(n.gw.pid()).saturating_sub(idle) / 1024;
    assert!(grown < 50, "the floods grew the node by {grown} MiB");
    // And the node still serves.
    let (r, _) = exchange(n.proxy, b"GET / HTTP/1.0\r\n\r\n", Duration::from_secs(5)).await;
    assert_eq!(status_of(&r), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_still_streaming_is_never_cut_by_the_idle_timeouts() {
    // 12 chunks 250 ms apart: 3 s, three times keepalive_timeout.
    let mut steps = vec![(
        Duration::ZERO,
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
    )];
    steps.extend([(Duration::from_millis(250), &b"5\r\ntick.\r\n"[..]); 12]);
    steps.push((Duration::ZERO, b"0\r\n\r\n"));
    let (up, task) = scripted_upstream(steps).await;
    let port = free_port();
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n- name: slow\n  url: http://{up}\n  routes:\n  - paths: [\"/\"]\n"
    );
    let _gw = gateway()
        .proxy_listen(&format!("127.0.0.1:{port}"))
        .set("keepalive_timeout", "1")
        .set("client_header_timeout", "1")
        .declarative(&yaml)
        .start();
    let p: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (r, _) = exchange(
        p,
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(status_of(&r), 200, "{r}");
    assert_eq!(r.matches("tick.").count(), 12, "the download was cut: {r}");
    task.abort();
}
