//! find() at 1, 1,000 and 10,000 routes: (a) distinct path prefixes without
//! hosts, (b) distinct exact hosts. A hit in the middle of the table, a miss.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use gateway::model::{PathHandling, Protocol, Route};
use gateway::router::{RouteRequest, Router};
use http::{HeaderMap, Method};
use uuid::Uuid;

fn route(i: usize, hosts: Vec<String>, paths: Vec<String>) -> Route {
    Route {
        id: Uuid::from_u128(i as u128 + 1),
        name: Some(format!("route-{i}")),
        protocols: vec![Protocol::Http, Protocol::Https],
        methods: vec![],
        hosts,
        paths,
        headers: BTreeMap::new(),
        https_redirect_status_code: 426,
        regex_priority: 0,
        strip_path: true,
        path_handling: PathHandling::V0,
        preserve_host: false,
        request_buffering: true,
        response_buffering: true,
        service: None,
        tags: vec![],
        created_at: i as i64,
        updated_at: i as i64,
    }
}

fn bench(c: &mut Criterion) {
    let headers = HeaderMap::new();
    let method = Method::GET;
    for n in [1, 1_000, 10_000] {
        let mid = n / 2;
        let prefix: Vec<Route> = (0..n)
            .map(|i| route(i, vec![], vec![format!("/svc-{i}/")]))
            .collect();
        let host: Vec<Route> = (0..n)
            .map(|i| route(i, vec![format!("host-{i}.example.com")], vec![]))
            .collect();
        let hit_path = format!("/svc-{mid}/items/42");
        let hit_host = format!("host-{mid}.example.com:8000");
        let cases = [
            (
                "prefix",
                &prefix,
                "hit",
                "gw.example.com",
                hit_path.as_str(),
                Some(mid),
            ),
            (
                "prefix",
                &prefix,
                "miss",
                "gw.example.com",
                "/nothing/here",
                None,
            ),
            (
                "host",
                &host,
                "hit",
                hit_host.as_str(),
                "/api/v1/users",
                Some(mid),
            ),
            (
                "host",
                &host,
                "miss",
                "unknown.example.org",
                "/api/v1/users",
                None,
            ),
        ];
        for (shape, routes, kind, host, path, expect) in cases {
            let router = Router::build(routes).unwrap();
            let req = RouteRequest {
                method: &method,
                host,
                path,
                headers: &headers,
            };
            assert_eq!(router.find(&req).map(|m| m.route), expect);
            c.bench_function(&format!("{shape}/{kind}/{n}"), |b| {
                b.iter(|| router.find(black_box(&req)))
            });
        }
    }
}

/// Regex paths cost more. 1,000 routes: `lit` regexes start with distinct
/// literals (indexed like prefixes), `set` ones do not (run as `RegexSet`s).
fn bench_regex(c: &mut Criterion) {
    let headers = HeaderMap::new();
    for (shape, pattern) in [("lit", r"~/r{}/\d+$"), ("set", r"~(?:/r{})/\d+$")] {
        let routes: Vec<Route> = (0..1_000)
            .map(|i| route(i, vec![], vec![pattern.replace("{}", &i.to_string())]))
            .collect();
        let router = Router::build(&routes).unwrap();
        for (kind, path, expect) in [("hit", "/r500/42", Some(500)), ("miss", "/r500/x", None)] {
            let req = RouteRequest {
                method: &Method::GET,
                host: "",
                path,
                headers: &headers,
            };
            assert_eq!(router.find(&req).map(|m| m.route), expect);
            c.bench_function(&format!("regex-{shape}/{kind}/1000"), |b| {
                b.iter(|| router.find(black_box(&req)))
            });
        }
    }
}

fn bench_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("build");
    group.sample_size(10);
    let prefix: Vec<Route> = (0..10_000)
        .map(|i| route(i, vec![], vec![format!("/svc-{i}/")]))
        .collect();
    let host: Vec<Route> = (0..10_000)
        .map(|i| route(i, vec![format!("h{i}.example.com")], vec![]))
        .collect();
    let regex: Vec<Route> = (0..1_000)
        .map(|i| route(i, vec![], vec![format!(r"~/r{i}/\d+$")]))
        .collect();
    for (name, routes) in [
        ("prefix/10000", &prefix),
        ("host/10000", &host),
        ("regex/1000", &regex),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| Router::build(black_box(routes)).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench, bench_regex, bench_build);
criterion_main!(benches);
