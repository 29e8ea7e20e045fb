//! Bodies larger than 100 MB stream both ways with flat memory.

mod common;

use std::net::SocketAddr;

use common::*;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;

const SIZE: u64 = 128 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_with_flat_memory() {
    let up = upstream("u").await;
    let port = free_port();
    let proxy: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n- name: echo\n  url: http://{}\n  routes:\n  - paths: [\"/\"]\n",
        up.addr
    );
    let gw = gateway()
        .proxy_listen(&proxy.to_string())
        .declarative(&yaml)
        .start();
    let before = gw.peak_rss_kib();

    // Download: the upstream produces 128 MiB in 64 KiB frames.
    let stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("/bytes/{SIZE}"))
        .header("host", "x")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got = 0u64;
    while let Some(frame) = body.frame().await {
        got += frame
            .unwrap()
            .into_data()
            .map(|d| d.len() as u64)
            .unwrap_or(0);
    }
    assert_eq!(got, SIZE);

    // Upload: 128 MiB with no content-length (chunked), counted by the upstream.
    let stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::post("/upload")
        .header("host", "x")
        .body(Chunks::new(SIZE))
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(j["received"], SIZE);

    let after = gw.peak_rss_kib();
    eprintln!("gateway peak RSS: {before} KiB at start, {after} KiB after 2 x 128 MiB");
    assert!(
        after < before + 32 * 1024,
        "memory grew with the body: {before} -> {after} KiB"
    );
}
