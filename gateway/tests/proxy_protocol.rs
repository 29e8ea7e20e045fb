//! PROXY protocol listeners: real peers (curl, HAProxy v1 and v2) and raw
//! sockets sending malformed, partial, oversized, slow and missing headers.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Setup {
    gw: Gateway,
    proxy: SocketAddr,
    _up: Upstream,
}

async fn setup() -> Setup {
    let up = upstream("echo").await;
    let port = free_port();
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n- name: echo\n  url: http://{}\n  routes:\n  - paths: [\"/\"]\n",
        up.addr
    );
    let gw = gateway()
        .proxy_listen(&format!("127.0.0.1:{port} proxy_protocol"))
        .set("proxy_protocol_timeout", "1")
        .declarative(&yaml)
        .start();
    Setup {
        gw,
        proxy: format!("127.0.0.1:{port}").parse().unwrap(),
        _up: up,
    }
}

fn echoed(body: &str) -> serde_json::Value {
    let start = body
        .find('{')
        .unwrap_or_else(|| panic!("no JSON in: {body}"));
    serde_json::from_str(&body[start..]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_peers_carry_the_client_address() {
    let s = setup().await;
    let url = format!("http://{}/who", s.proxy);

    // curl sends a PROXY v1 line with its own addresses.
    let (ok, out) = curl(&["--haproxy-protocol", "--interface", "127.0.0.5", &url]);
    assert!(ok, "{out}");
    let j = echoed(&out);
    assert_eq!(j["headers"]["x-real-ip"], "127.0.0.5");
    assert_eq!(j["headers"]["x-forwarded-for"], "127.0.0.5");

    // HAProxy in TCP mode, as the load balancer: v1, then v2. The client
    // connects from 127.0.0.7; HAProxy reaches the node from 127.0.0.1.
    for mode in ["send-proxy", "send-proxy-v2"] {
        let lb = haproxy(s.proxy, mode);
        let (ok, out) = curl(&[
            "--interface",
            "127.0.0.7",
            &format!("http://{}/who", lb.addr),
        ]);
        assert!(ok, "{mode}: {out}");
        let j = echoed(&out);
        assert_eq!(j["headers"]["x-real-ip"], "127.0.0.7", "{mode}");
        assert_eq!(j["headers"]["x-forwarded-for"], "127.0.0.7", "{mode}");
        assert_eq!(
            j["headers"]["x-forwarded-port"],
            lb.addr.port().to_string(),
            "{mode}"
        );
    }

    // A raw v1 header naming a public client.
    let r = send(s.proxy, Some(&v1("203.0.113.7", 80)), get("/raw"))
        .await
        .unwrap();
    let j = r.json();
    assert_eq!(j["headers"]["x-real-ip"], "203.0.113.7");
    assert_eq!(j["headers"]["x-forwarded-port"], "80");
    assert_eq!(j["headers"]["x-forwarded-proto"], "http");

    // v2 LOCAL (a health check): the socket address is the client.
    let r = send(s.proxy, Some(&v2_local()), get("/local"))
        .await
        .unwrap();
    assert_eq!(r.json()["headers"]["x-real-ip"], "127.0.0.1");

    // v2 PROXY with a good CRC32C TLV.
    let r = send(
        s.proxy,
        Some(&v2_ipv4([198, 51, 100, 4], true, false)),
        get("/crc"),
    )
    .await
    .unwrap();
    assert_eq!(r.json()["headers"]["x-real-ip"], "198.51.100.4");
}

/// Sends `bytes` and returns what came back before the node closed, and when.
async fn rejected(addr: SocketAddr, bytes: &[u8], then_wait: bool) -> (Vec<u8>, Duration) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    stream.write_all(bytes).await.unwrap();
    if !then_wait {
        // Half-close: a partial header followed by EOF.
        stream.shutdown().await.unwrap();
    }
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got)).await;
    match read {
        Ok(Ok(_)) => {}
        // A reset is also a close.
        Ok(Err(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        Err(_) => panic!(
            "connection not closed for {:?}",
            String::from_utf8_lossy(bytes)
        ),
    }
    (got, start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_headers_close_the_connection_and_nothing_else() {
    let s = setup().await;
    let mut too_long = b"PROXY TCP4 ".to_vec();
    too_long.extend(std::iter::repeat_n(b'1', 120));
    too_long.extend_from_slice(b"\r\n");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("missing", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("bad family", b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n".to_vec()),
        ("missing fields", b"PROXY TCP4 1.2.3.4\r\n".to_vec()),
        (
            "LF only",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\nGET / HTTP/1.1\r\n\r\n".to_vec(),
        ),
        ("family mismatch", b"PROXY TCP4 ::1 ::1 1 2\r\n".to_vec()),
        (
            "port out of range",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n".to_vec(),
        ),
        ("oversized v1", too_long),
        ("v2 bad version", {
            let mut h = v2_ipv4([1, 2, 3, 4], false, false);
            h[12] = 0x31;
            h
        }),
        ("v2 bad crc", v2_ipv4([1, 2, 3, 4], true, true)),
    ];
    for (name, bytes) in &cases {
        let mut bytes = bytes.clone();
        if !name.starts_with("missing") || *name == "missing fields" {
            bytes.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        }
        let (got, _) = rejected(s.proxy, &bytes, true).await;
        assert!(
            got.is_empty(),
            "{name}: the node answered: {}",
            String::from_utf8_lossy(&got)
        );
    }

    // Partial header, then EOF.
    let (got, _) = rejected(s.proxy, b"PROXY TCP4 1.2.3.4 ", false).await;
    assert!(got.is_empty());

    // Slow: the header never completes; closed after proxy_protocol_timeout (1 s).
    let (got, waited) = rejected(s.proxy, b"PROXY TCP4 1.2.3.4 ", true).await;
    assert!(got.is_empty());
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );

    // Slow but in time: one byte every 10 ms is fine.
    let mut stream = TcpStream::connect(s.proxy).await.unwrap();
    for b in v1("203.0.113.9", 80) {
        stream.write_all(&[b]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stream
        .write_all(b"GET /slow-ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("203.0.113.9"));

    // Everyone else is still served, and the closes were counted.
    let r = send(s.proxy, Some(&v1("203.0.113.1", 80)), get("/after"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let st = s.gw.status().await;
    let pp = &st["proxy_protocol"];
    assert_eq!(pp["rejected_missing"], 1, "{st}");
    assert_eq!(pp["rejected_timeout"], 1, "{st}");
    // Every case but `missing` is malformed; the partial one ended in EOF.
    assert_eq!(
        pp["rejected_malformed"].as_u64().unwrap(),
        cases.len() as u64 - 1,
        "{st}"
    );
    assert_eq!(pp["rejected_closed"], 1, "{st}");
}

fn v2_local() -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    h
}

/// A v2 PROXY header for TCP over IPv4, optionally with a CRC32C TLV (and a wrong one).
fn v2_ipv4(src: [u8; 4], crc: bool, corrupt: bool) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    let tlv_len = if crc { 7 } else { 0 };
    h.extend_from_slice(&[0x21, 0x11]);
    h.extend_from_slice(&(12u16 + tlv_len).to_be_bytes());
    h.extend_from_slice(&src);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&40000u16.to_be_bytes());
    h.extend_from_slice(&443u16.to_be_bytes());
    if crc {
        h.extend_from_slice(&[0x03, 0x00, 0x04, 0, 0, 0, 0]);
        let sum = crc32c::crc32c(&h);
        let at = h.len() - 4;
        h[at..].copy_from_slice(&sum.to_be_bytes());
        if corrupt {
            h[at] ^= 0xff;
        }
    }
    h
}
