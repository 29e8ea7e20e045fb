//! The plugin chain on the request path: an empty chain (a route without
//! plugins, which the proxy skips on `is_empty`), and the access phase plus
//! header filter of a chain of correlation-id, cors, ip-restriction and
//! request-size-limiting on an ordinary GET, and rate-limiting's local policy
//! (one count per request, headers on the response).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use gateway::model::{Entities, Plugin};
use gateway::plugins::{Index, Request, RequestState};
use http::{HeaderMap, HeaderValue, Method, Uri};
use serde_json::json;
use uuid::Uuid;

fn plugin(i: u128, name: &str, config: serde_json::Value) -> Plugin {
    Plugin {
        id: Uuid::from_u128(i),
        name: name.into(),
        instance_name: None,
        config,
        protocols: vec!["http".into(), "https".into()],
        enabled: true,
        service: None,
        route: None,
        consumer: None,
        tags: vec![],
        created_at: 0,
        updated_at: 0,
    }
}

fn bench(c: &mut Criterion) {
    let route = Uuid::from_u128(100);
    let empty = Index::new(&Entities::default())
        .expect("no plugins compile")
        .chain(route, None);
    let entities = Entities {
        plugins: vec![
            plugin(1, "correlation-id", json!({})),
            plugin(2, "cors", json!({"origins": ["https://app.example.com"]})),
            plugin(
                3,
                "ip-restriction",
                json!({"allow": ["10.0.0.0/8", "192.168.0.0/16"]}),
            ),
            plugin(4, "request-size-limiting", json!({})),
        ],
        ..Entities::default()
    };
    let four = Index::new(&entities)
        .expect("valid configs compile")
        .chain(route, None);
    let uri = Uri::from_static("/orders/42?x=1");
    let id = HeaderValue::from_static("0123456789abcdef0123456789abcdef");
    let mut base = HeaderMap::new();
    base.insert(
        "origin",
        HeaderValue::from_static("https://app.example.com"),
    );
    base.insert("user-agent", HeaderValue::from_static("bench"));

    c.bench_function("chain/empty", |b| b.iter(|| black_box(&empty).is_empty()));
    c.bench_function("chain/4 plugins access+header_filter", |b| {
        b.iter(|| {
            let mut headers = base.clone();
            let mut state = RequestState::default();
            let mut req = Request {
                method: &Method::GET,
                uri: &uri,
                headers: &mut headers,
                client: "10.1.2.3".parse().expect("an address"),
                https: false,
                request_id: &id,
                route: uuid::Uuid::nil(),
                service: None,
            };
            let exit = gateway::plugins::now_or_never(four.access(&mut req, &mut state)).flatten();
            let mut resp = HeaderMap::new();
            four.header_filter(&state, &mut resp);
            black_box((exit.is_some(), resp))
        })
    });
    let limited = Index::new(&Entities {
        plugins: vec![plugin(
            5,
            "rate-limiting",
            json!({"second": 1e12, "hour": 1e12, "limit_by": "ip"}),
        )],
        ..Entities::default()
    })
    .expect("valid configs compile")
    .chain(route, None);
    c.bench_function("chain/rate-limiting local access+header_filter", |b| {
        b.iter(|| {
            let mut headers = base.clone();
            let mut state = RequestState::default();
            let mut req = Request {
                method: &Method::GET,
                uri: &uri,
                headers: &mut headers,
                client: "10.1.2.3".parse().expect("an address"),
                https: false,
                request_id: &id,
                route: uuid::Uuid::nil(),
                service: None,
            };
            let exit =
                gateway::plugins::now_or_never(limited.access(&mut req, &mut state)).flatten();
            let mut resp = HeaderMap::new();
            limited.header_filter(&state, &mut resp);
            black_box((exit.is_some(), resp))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
