//! `correlation-id`: gives each request an id in a header sent upstream
//! (kept when the client sent one), and back to the client with
//! `echo_downstream` (Kong 3.x).

use std::cell::Cell;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Map, Value};

use super::{header_name, Request, RequestState};
use crate::schema::fields::Fields;

pub const PRIORITY: u32 = 100_001;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generator {
    Uuid,
    UuidCounter,
    Tracker,
}

#[derive(Debug)]
pub struct Config {
    header: HeaderName,
    generator: Generator,
    echo_downstream: bool,
}

pub(super) fn parse(f: &mut Fields) -> (Config, Map<String, Value>) {
    let name = f
        .string("header_name")
        .unwrap_or_else(|| "Kong-Request-ID".into());
    let header = header_name(f, "header_name", &name)
        .unwrap_or_else(|| HeaderName::from_static("kong-request-id"));
    let generator = f.one_of(
        "generator",
        &["uuid", "uuid#counter", "tracker"],
        "uuid#counter",
    );
    let echo_downstream = f.boolean("echo_downstream", false);
    let mut out = Map::new();
    out.insert("header_name".into(), name.into());
    out.insert("generator".into(), generator.into());
    out.insert("echo_downstream".into(), echo_downstream.into());
    let config = Config {
        header,
        generator: match generator {
            "uuid" => Generator::Uuid,
            "tracker" => Generator::Tracker,
            _ => Generator::UuidCounter,
        },
        echo_downstream,
    };
    (config, out)
}

thread_local! {
    /// uuid#counter: a uuid per worker thread and a counter, as Kong keeps
    /// one per nginx worker.
    static WORKER: (String, Cell<u64>) = (uuid::Uuid::new_v4().to_string(), Cell::new(0));
}

fn generate(g: Generator, req: &Request<'_>) -> HeaderValue {
    let text = match g {
        Generator::Uuid => uuid::Uuid::new_v4().to_string(),
        Generator::UuidCounter => WORKER.with(|(id, n)| {
            n.set(n.get() + 1);
            format!("{id}#{}", n.get())
        }),
        // Kong's is server_addr-server_port-pid-connection-requests-time; this
        // gateway has no nginx connection numbers, so the request id stands
        // for the connection part (unique per node just the same).
        Generator::Tracker => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            format!(
                "{}-{}-{}.{:03}",
                std::process::id(),
                req.request_id.to_str().unwrap_or("0"),
                now.as_secs(),
                now.subsec_millis()
            )
        }
    };
    HeaderValue::from_str(&text).unwrap_or_else(|_| req.request_id.clone())
}

pub(super) fn access(c: &Config, req: &mut Request<'_>, state: &mut RequestState) {
    let value = match req.headers.get(&c.header) {
        Some(v) => v.clone(),
        None => {
            let v = generate(c.generator, req);
            req.headers.insert(c.header.clone(), v.clone());
            v
        }
    };
    state.correlation_id = Some(value);
}

pub(super) fn header_filter(c: &Config, state: &RequestState, headers: &mut HeaderMap) {
    if !c.echo_downstream {
        return;
    }
    if let Some(v) = &state.correlation_id {
        headers.insert(c.header.clone(), v.clone());
    }
}

pub(super) fn schema() -> Value {
    json!([
        {"header_name": {"type": "string", "default": "Kong-Request-ID"}},
        {"generator": {"type": "string", "default": "uuid#counter", "required": true,
                       "one_of": ["uuid", "uuid#counter", "tracker"]}},
        {"echo_downstream": {"type": "boolean", "default": false, "required": true}},
    ])
}
