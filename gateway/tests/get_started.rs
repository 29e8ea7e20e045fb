//! Kong's "Get started" guide, run as its pages write it: curl with form
//! bodies against the Admin API (on PostgreSQL) and the proxy. Services and
//! routes, rate limiting (the 6th and 7th requests answered 429 with Kong's
//! headers), proxy caching (Miss, then Hit), key authentication (401 without
//! a key, 200 with it) and load balancing over an upstream's two targets.
//! The guide's upstreams on the internet are two local echo servers.

mod common;

use std::time::{Duration, Instant};

use common::postgres::Postgres;
use common::*;
use serde_json::Value;

/// curl -i: (status, lower-cased head, body).
fn curl_i(args: &[&str]) -> (u16, String, String) {
    let c = common::curl_i(args);
    (c.status, c.head, c.body)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    header_in(head, name)
}

fn until(url: &str, extra: &[&str], status: u16) -> (String, String) {
    let c = curl_until(url, extra, status);
    (c.head, c.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kongs_get_started_guide() {
    let httpbin = upstream("httpbin").await;
    let httpbun = upstream("httpbun").await;
    let pg = Postgres::start();
    let conf = pg.bootstrapped("get_started");
    let (gw, proxy_addr) = db_node(&conf);
    let port = proxy_addr.port();
    let admin = |p: &str| format!("http://{}{p}", gw.admin);
    let proxy = |p: &str| format!("http://127.0.0.1:{port}{p}");

    // Services and routes.
    let (code, _, body) = curl_i(&[
        "-s",
        "-X",
        "POST",
        &admin("/services"),
        "--data",
        "name=example_service",
        "--data",
        &format!("url=http://{}", httpbin.addr),
    ]);
    assert_eq!(code, 201, "{body}");
    let (code, _, body) = curl_i(&[
        "-X",
        "POST",
        &admin("/services/example_service/routes"),
        "--data",
        "paths[]=/mock",
        "--data",
        "name=example_route",
    ]);
    assert_eq!(code, 201, "{body}");
    let (_, body) = until(&proxy("/mock/anything"), &[], 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["upstream"], "httpbin");

    // Rate limiting: 5 a minute, the 6th and 7th refused. A minute boundary
    // between the requests would reset the window: start early in one.
    let (code, _, body) = curl_i(&[
        "-X",
        "POST",
        &admin("/plugins"),
        "--data",
        "name=rate-limiting",
        "--data",
        "config.minute=5",
        "--data",
        "config.policy=local",
    ]);
    assert_eq!(code, 201, "{body}");
    let limiter: Value = serde_json::from_str(&body).unwrap();
    let limiter_id = limiter["id"].as_str().unwrap().to_string();
    // The plugin is live once its headers appear.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !curl_i(&[&proxy("/mock/anything")])
        .1
        .contains("x-ratelimit-limit-minute")
    {
        assert!(Instant::now() < deadline, "rate-limiting never applied");
        std::thread::sleep(Duration::from_millis(100));
    }
    let second = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            % 60
    };
    // Seven requests take well under a second; keep them in one window.
    while second() >= 55 {
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut seen = Vec::new();
    for _ in 0..7 {
        let (code, head, body) = curl_i(&["-s", &proxy("/mock/anything")]);
        seen.push((code, head, body));
    }
    let statuses: Vec<u16> = seen.iter().map(|s| s.0).collect();
    // The window may already hold the probe requests of this minute.
    let first_429 = statuses.iter().position(|c| *c == 429).expect("a 429");
    assert!(first_429 <= 5, "{statuses:?}");
    assert!(
        statuses[first_429..].iter().all(|c| *c == 429),
        "{statuses:?}"
    );
    assert_eq!(statuses[5], 429, "the 6th: {statuses:?}");
    assert_eq!(statuses[6], 429, "the 7th: {statuses:?}");
    let (_, head, body) = &seen[6];
    assert_eq!(
        serde_json::from_str::<Value>(body).unwrap()["message"],
        "API rate limit exceeded"
    );
    assert_eq!(header(head, "x-ratelimit-limit-minute"), Some("5"));
    assert_eq!(header(head, "x-ratelimit-remaining-minute"), Some("0"));
    assert_eq!(header(head, "ratelimit-limit"), Some("5"));
    assert_eq!(header(head, "ratelimit-remaining"), Some("0"));
    assert!(header(head, "ratelimit-reset").is_some(), "{head}");
    assert!(header(head, "retry-after").is_some(), "{head}");
    let (_, head, _) = &seen[0];
    assert_eq!(header(head, "x-ratelimit-limit-minute"), Some("5"));
    // The guide moves on; so does this test, with the limiter off.
    let (code, _, body) = curl_i(&[
        "-X",
        "PATCH",
        &admin(&format!("/plugins/{limiter_id}")),
        "--data",
        "enabled=false",
    ]);
    assert_eq!(code, 200, "{body}");
    until(&proxy("/mock/anything"), &[], 200);

    // Proxy caching.
    let (code, _, body) = curl_i(&[
        "-X",
        "POST",
        &admin("/plugins"),
        "--data",
        "name=proxy-cache",
        "--data",
        "config.request_method=GET",
        "--data",
        "config.response_code=200",
        "--data",
        "config.content_type=application/json",
        "--data",
        "config.cache_ttl=30",
        "--data",
        "config.strategy=memory",
    ]);
    assert_eq!(code, 201, "{body}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let first = loop {
        let (_, head, _) = curl_i(&["-s", "-X", "GET", &proxy("/mock/cached")]);
        if header(&head, "x-cache-status").is_some() {
            break head;
        }
        assert!(Instant::now() < deadline, "proxy-cache never applied");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(header(&first, "x-cache-status"), Some("miss"), "{first}");
    let (_, again, _) = curl_i(&["-s", "-X", "GET", &proxy("/mock/cached")]);
    assert_eq!(header(&again, "x-cache-status"), Some("hit"), "{again}");
    assert_eq!(header(&again, "x-cache-key"), header(&first, "x-cache-key"));

    // Key authentication.
    let (code, _, body) = curl_i(&[
        "-X",
        "POST",
        &admin("/consumers/"),
        "--data",
        "username=luka",
    ]);
    assert_eq!(code, 201, "{body}");
    let (code, _, body) = curl_i(&[
        "-X",
        "POST",
        &admin("/consumers/luka/key-auth"),
        "--data",
        "key=top-secret-key",
    ]);
    assert_eq!(code, 201, "{body}");
    let (code, _, body) = curl_i(&[
        "-X",
        "POST",
        &admin("/plugins/"),
        "--data",
        "name=key-auth",
        "--data",
        "config.key_names=apikey",
    ]);
    assert_eq!(code, 201, "{body}");
    let (head, body) = until(&proxy("/mock/anything"), &[], 401);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["message"],
        "No API key found in request"
    );
    assert!(header(&head, "www-authenticate").is_some());
    let (code, _, body) = curl_i(&[
        &proxy("/mock/anything"),
        "--header",
        "apikey: top-secret-key",
    ]);
    assert_eq!(code, 200, "{body}");

    // Load balancing: an upstream with two targets, the service pointed at it.
    let (code, _, body) = curl_i(&[
        "-X",
        "POST",
        &admin("/upstreams"),
        "--data",
        "name=example_upstream",
    ]);
    assert_eq!(code, 201, "{body}");
    for target in [httpbun.addr, httpbin.addr] {
        let (code, _, body) = curl_i(&[
            "-X",
            "POST",
            &admin("/upstreams/example_upstream/targets"),
            "--data",
            &format!("target={target}"),
        ]);
        assert_eq!(code, 201, "{body}");
    }
    let (code, _, body) = curl_i(&[
        "-X",
        "PATCH",
        &admin("/services/example_service"),
        "--data",
        "host=example_upstream",
    ]);
    assert_eq!(code, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut by = std::collections::BTreeMap::new();
    let mut n = 0;
    while by.len() < 2 || n < 10 {
        // A distinct query each time: a cached answer would hide the balancer.
        let (code, _, body) = curl_i(&[
            &proxy(&format!("/mock/headers?n={n}")),
            "--header",
            "apikey: top-secret-key",
        ]);
        assert_eq!(code, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        *by.entry(v["upstream"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
        n += 1;
        assert!(Instant::now() < deadline, "only {by:?} after {n} requests");
    }
    assert!(by.get("httpbun").copied().unwrap_or(0) >= 3, "{by:?}");
    assert!(by.get("httpbin").copied().unwrap_or(0) >= 3, "{by:?}");
    drop(gw);
}
