//! proxy-cache (memory strategy) over real HTTP: Miss then Hit without the
//! upstream, Bypass for what the configuration does not cache, expiry,
//! the client's Cache-Control, and the Admin API's purge endpoints.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// curl -i: (status, lower-cased head, body).
fn call(args: &[&str]) -> (u16, String, String) {
    let c = curl_i(args);
    (c.status, c.head, c.body)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    header_in(head, name)
}

fn start(yaml: &str) -> (Gateway, SocketAddr) {
    start_declarative(yaml, &[], "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_cache_hits_bypasses_expires_and_purges() {
    let up = upstream("pc").await;
    let yaml = format!(
        r#"
_format_version: "3.0"
services:
- name: s
  url: http://{up}
  routes:
  - name: cached
    paths: [/cached]
    plugins:
    - name: proxy-cache
      config: {{strategy: memory, content_type: [application/json], request_method: [GET, HEAD]}}
  - name: honours
    paths: [/cc]
    plugins:
    - name: proxy-cache
      config: {{strategy: memory, content_type: [application/json], cache_control: true}}
    # Seen by proxy-cache as the upstream's own (Kong runs header filters
    # by priority: response-transformer's 800 before proxy-cache's 100).
    - name: response-transformer
      config: {{add: {{headers: ["Cache-Control:max-age=60"]}}}}
  - name: silent
    paths: [/silent]
    plugins:
    - name: proxy-cache
      config: {{strategy: memory, content_type: [application/json], cache_control: true}}
  - name: short
    paths: [/short]
    plugins:
    - name: proxy-cache
      config: {{strategy: memory, content_type: [application/json], cache_ttl: 1}}
"#,
        up = up.addr
    );
    let (gw, proxy) = start(&yaml);
    let url = |p: &str| format!("http://{proxy}{p}");
    let admin = |p: &str| format!("http://{}{p}", gw.admin);

    let (code, first, body1) = call(&[&url("/cached/a?x=1&y=2")]);
    assert_eq!(code, 200);
    assert_eq!(header(&first, "x-cache-status"), Some("miss"), "{first}");
    let key = header(&first, "x-cache-key").unwrap().to_string();
    assert_eq!(key.len(), 32);
    // The upstream's JSON carries the first request's id: a Hit repeats it.
    let (code, second, body2) = call(&[&url("/cached/a?y=2&x=1")]);
    assert_eq!(code, 200);
    assert_eq!(header(&second, "x-cache-status"), Some("hit"), "{second}");
    assert_eq!(
        header(&second, "x-cache-key"),
        Some(key.as_str()),
        "argument order is not part of the key"
    );
    assert_eq!(body2, body1, "answered from the cache, not the upstream");
    assert!(header(&second, "age").is_some(), "{second}");
    let v: Value = serde_json::from_str(&body2).unwrap();
    assert_eq!(v["uri"], "/a?x=1&y=2");
    // Another path is another entry.
    let (_, other, _) = call(&[&url("/cached/b")]);
    assert_eq!(header(&other, "x-cache-status"), Some("miss"));

    // Bypass: a method not listed, a response type not listed.
    let (_, post, _) = call(&["-X", "POST", &url("/cached/a?x=1&y=2")]);
    assert_eq!(header(&post, "x-cache-status"), Some("bypass"), "{post}");
    let (_, bytes, _) = call(&[&url("/cached/bytes/10")]);
    assert_eq!(header(&bytes, "x-cache-status"), Some("bypass"), "{bytes}");
    let (_, again, _) = call(&[&url("/cached/bytes/10")]);
    assert_eq!(
        header(&again, "x-cache-status"),
        Some("bypass"),
        "never stored"
    );

    // cache_control: the response's max-age makes it cacheable, none does
    // not; the client's no-cache or credentials bypass the cache, and its
    // max-age asks for a younger answer (Refresh).
    let (_, m, _) = call(&[&url("/cc/a")]);
    assert_eq!(header(&m, "x-cache-status"), Some("miss"), "{m}");
    let (_, h, _) = call(&[&url("/cc/a")]);
    assert_eq!(header(&h, "x-cache-status"), Some("hit"), "{h}");
    assert_eq!(header(&h, "cache-control"), Some("max-age=60"));
    for _ in 0..2 {
        let (_, b, _) = call(&[&url("/silent/a")]);
        assert_eq!(
            header(&b, "x-cache-status"),
            Some("bypass"),
            "no max-age: {b}"
        );
    }
    let (_, nocache, _) = call(&[&url("/cc/a"), "-H", "Cache-Control: no-cache"]);
    assert_eq!(
        header(&nocache, "x-cache-status"),
        Some("bypass"),
        "{nocache}"
    );
    let (_, auth, _) = call(&[&url("/cc/a"), "-H", "Authorization: Bearer x"]);
    assert_eq!(header(&auth, "x-cache-status"), Some("bypass"), "{auth}");
    std::thread::sleep(Duration::from_millis(1100));
    let (_, refresh, _) = call(&[&url("/cc/a"), "-H", "Cache-Control: max-age=0"]);
    assert_eq!(
        header(&refresh, "x-cache-status"),
        Some("refresh"),
        "{refresh}"
    );

    // Expiry after cache_ttl.
    let (_, m, _) = call(&[&url("/short/z")]);
    assert_eq!(header(&m, "x-cache-status"), Some("miss"));
    let (_, h, _) = call(&[&url("/short/z")]);
    assert_eq!(header(&h, "x-cache-status"), Some("hit"));
    std::thread::sleep(Duration::from_millis(1200));
    let (_, m, _) = call(&[&url("/short/z")]);
    assert_eq!(
        header(&m, "x-cache-status"),
        Some("miss"),
        "expired after cache_ttl"
    );

    // The Admin API: look up, delete one, purge all.
    let (code, _, body) = call(&[&admin(&format!("/proxy-cache/{key}"))]);
    assert_eq!(code, 200, "{body}");
    let entry: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(entry["status"], 200);
    let plugin = entry["plugin_id"].as_str().unwrap().to_string();
    let (code, _, _) = call(&[&admin(&format!("/proxy-cache/{plugin}/caches/{key}"))]);
    assert_eq!(code, 200);
    let (code, _, _) = call(&[
        "-X",
        "DELETE",
        &admin(&format!("/proxy-cache/{plugin}/caches/{key}")),
    ]);
    assert_eq!(code, 204);
    let (code, _, body) = call(&[&admin(&format!("/proxy-cache/{key}"))]);
    assert_eq!(code, 404, "{body}");
    let (_, m, _) = call(&[&url("/cached/a?x=1&y=2")]);
    assert_eq!(header(&m, "x-cache-status"), Some("miss"), "deleted");
    let (_, h, _) = call(&[&url("/cached/a?x=1&y=2")]);
    assert_eq!(header(&h, "x-cache-status"), Some("hit"));
    let (code, _, _) = call(&["-X", "DELETE", &admin("/proxy-cache")]);
    assert_eq!(code, 204);
    let (_, m, _) = call(&[&url("/cached/a?x=1&y=2")]);
    assert_eq!(header(&m, "x-cache-status"), Some("miss"), "purged");
    let (code, _, _) = call(&[
        "-X",
        "DELETE",
        &admin("/proxy-cache/0123456789abcdef0123456789abcdef"),
    ]);
    assert_eq!(code, 404);
    drop(gw);
}
