//! `request-size-limiting`: refuses request bodies larger than a limit
//! (Kong 3.x). A Content-Length over it is answered 413 (417 to
//! `Expect: 100-continue`) before anything is read; a body without one is
//! limited while it streams upstream, by the same mechanism as
//! `client_max_body_size` ([`crate::proxy::body::RequestBody`]), and answered
//! 413 "Request size limit exceeded" once it crosses the limit.

use http::header::{CONTENT_LENGTH, EXPECT};
use serde_json::{json, Map, Value};

use super::{Request, RequestState};
use crate::proxy::body::ProxyBody;
use crate::schema::fields::Fields;

pub const PRIORITY: u32 = 951;

pub const MESSAGE: &str = "Request size limit exceeded";

#[derive(Debug)]
pub struct Config {
    /// The limit in bytes.
    pub limit: u64,
    require_content_length: bool,
}

pub(super) fn parse(f: &mut Fields) -> (Config, Map<String, Value>) {
    let size = f.integer("allowed_payload_size", 0, i64::MAX, 128);
    let unit = f.one_of(
        "size_unit",
        &["megabytes", "kilobytes", "bytes"],
        "megabytes",
    );
    let require_content_length = f.boolean("require_content_length", false);
    let factor: u64 = match unit {
        "bytes" => 1,
        "kilobytes" => 1 << 10,
        _ => 1 << 20,
    };
    let mut out = Map::new();
    out.insert("allowed_payload_size".into(), size.into());
    out.insert("size_unit".into(), unit.into());
    out.insert(
        "require_content_length".into(),
        require_content_length.into(),
    );
    let config = Config {
        limit: (size.max(0) as u64).saturating_mul(factor),
        require_content_length,
    };
    (config, out)
}

pub(super) fn access(
    c: &Config,
    req: &Request<'_>,
    state: &mut RequestState,
) -> Option<http::Response<ProxyBody>> {
    let length = req
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match length {
        Some(n) if n > c.limit => {
            let expects_continue = req.headers.get(EXPECT).is_some_and(|v| {
                v.as_bytes()
                    .trim_ascii()
                    .eq_ignore_ascii_case(b"100-continue")
            });
            let status = if expects_continue { 417 } else { 413 };
            Some(super::error(status, MESSAGE, req.request_id))
        }
        Some(_) => None,
        None if c.require_content_length => Some(super::error(
            411,
            "A valid Content-Length header is required",
            req.request_id,
        )),
        None => {
            // The smallest limit wins should two ever apply.
            state.body_limit = Some(state.body_limit.map_or(c.limit, |l| l.min(c.limit)));
            None
        }
    }
}

pub(super) fn schema() -> Value {
    json!([
        {"allowed_payload_size": {"type": "integer", "default": 128, "required": true}},
        {"size_unit": {"type": "string", "default": "megabytes", "required": true,
                       "one_of": ["megabytes", "kilobytes", "bytes"]}},
        {"require_content_length": {"type": "boolean", "default": false, "required": true}},
    ])
}
