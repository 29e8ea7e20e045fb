//! ip-restriction and rate-limiting by IP act on the client address that a
//! real HAProxy (send-proxy, as the classic ELB's TCP listeners) writes in
//! its PROXY v1 header, not on HAProxy's own address. Clients are curl bound
//! to two loopback addresses.

mod common;

use common::*;

fn status(url: &str, from: &str) -> (u16, String) {
    let c = curl_i(&["--interface", from, url]);
    (c.status, c.raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_see_the_address_from_haproxys_proxy_header() {
    let up = upstream("real").await;
    let yaml = format!(
        r#"
_format_version: "3.0"
services:
- name: s
  url: http://{up}
  routes:
  - name: restricted
    paths: [/restricted]
    plugins:
    - name: ip-restriction
      config: {{deny: [127.0.0.77]}}
  - name: limited
    paths: [/limited]
    plugins:
    - name: rate-limiting
      config: {{hour: 2, limit_by: ip, policy: local}}
"#,
        up = up.addr
    );
    let (gw, backend) = start_declarative(
        &yaml,
        &[
            ("trusted_ips", "[\"127.0.0.1\"]"),
            ("real_ip_header", "\"proxy_protocol\""),
        ],
        " proxy_protocol",
    );
    let lb = haproxy(backend, "send-proxy");
    let url = |p: &str| format!("http://{}{p}", lb.addr);

    // HAProxy connects from 127.0.0.1 each time; the header names the client.
    let (code, out) = status(&url("/restricted"), "127.0.0.77");
    assert_eq!(code, 403, "{out}");
    assert!(out.contains("Your IP address is not allowed"), "{out}");
    let (code, out) = status(&url("/restricted"), "127.0.0.88");
    assert_eq!(code, 200, "{out}");

    // Two an hour per client address: .77 runs out, .88 still has its own.
    for _ in 0..2 {
        let (code, out) = status(&url("/limited"), "127.0.0.77");
        assert_eq!(code, 200, "{out}");
    }
    let (code, out) = status(&url("/limited"), "127.0.0.77");
    assert_eq!(code, 429, "{out}");
    let (code, out) = status(&url("/limited"), "127.0.0.88");
    assert_eq!(code, 200, "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("x-ratelimit-remaining-hour: 1"),
        "{out}"
    );
    drop(lb);
    drop(gw);
}
