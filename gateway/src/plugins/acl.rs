//! `acl` (Kong 3.x): lets a consumer through by its groups (`/consumers/{c}/acls`),
//! with an allow or a deny list. Needs a consumer, which an authentication
//! plugin of higher priority identifies.

use http::Response;
use serde_json::{json, Map, Value};

use super::consumers::{Directory, CONSUMER_GROUPS};
use super::{Request, RequestState};
use crate::proxy::body::ProxyBody;
use crate::schema::fields::Fields;

pub const PRIORITY: u32 = 950;

const FORBIDDEN: &str = "You cannot consume this service";

#[derive(Debug)]
pub struct Config {
    allow: Box<[Box<str>]>,
    deny: Box<[Box<str>]>,
    hide_groups_header: bool,
}

pub(super) fn parse(f: &mut Fields) -> (Config, Map<String, Value>) {
    let allow = f.strings("allow");
    let deny = f.strings("deny");
    let hide_groups_header = f.boolean("hide_groups_header", false);
    let always_use_authenticated_groups = f.boolean("always_use_authenticated_groups", false);
    let include_consumer_groups = f.boolean("include_consumer_groups", false);
    let set = |l: &Option<Vec<String>>| l.as_ref().is_some_and(|l| !l.is_empty());
    if !f.has_error("allow") && !f.has_error("deny") {
        if set(&allow) && set(&deny) {
            f.error(
                super::PLUGIN_ENTITY,
                "only one of these fields must be non-empty: 'config.allow', 'config.deny'",
            );
        } else if !set(&allow) && !set(&deny) {
            f.error(
                super::PLUGIN_ENTITY,
                "at least one of these fields must be non-empty: 'config.allow', 'config.deny'",
            );
        }
    }
    let mut out = Map::new();
    out.insert("allow".into(), json!(allow));
    out.insert("deny".into(), json!(deny));
    out.insert("hide_groups_header".into(), hide_groups_header.into());
    out.insert(
        "always_use_authenticated_groups".into(),
        always_use_authenticated_groups.into(),
    );
    out.insert(
        "include_consumer_groups".into(),
        include_consumer_groups.into(),
    );
    let boxed = |l: Option<Vec<String>>| {
        l.unwrap_or_default()
            .into_iter()
            .map(Into::into)
            .collect::<Box<[Box<str>]>>()
    };
    let config = Config {
        allow: boxed(allow),
        deny: boxed(deny),
        hide_groups_header,
    };
    (config, out)
}

pub(super) fn schema() -> Value {
    json!([
        {"allow": {"type": "array", "elements": {"type": "string"}}},
        {"deny": {"type": "array", "elements": {"type": "string"}}},
        {"hide_groups_header": {"type": "boolean", "required": true, "default": false}},
        {"always_use_authenticated_groups": {"type": "boolean", "required": true, "default": false}},
        {"include_consumer_groups": {"type": "boolean", "required": true, "default": false}},
    ])
}

impl Config {
    /// Kong's rule: with `allow`, a consumer in none of its groups is
    /// refused; with `deny`, one in any of them.
    pub fn blocks(&self, groups: &[Box<str>]) -> bool {
        let member = |list: &[Box<str>]| list.iter().any(|g| groups.contains(g));
        if !self.allow.is_empty() {
            return !member(&self.allow);
        }
        member(&self.deny)
    }
}

pub(super) fn access(
    c: &Config,
    directory: &Directory,
    req: &mut Request<'_>,
    state: &RequestState,
) -> Option<Response<ProxyBody>> {
    let Some(consumer) = state.consumer.and_then(|id| directory.consumer(id)) else {
        return Some(super::error(401, "Unauthorized", req.request_id));
    };
    if c.blocks(&consumer.groups) {
        return Some(super::error(403, FORBIDDEN, req.request_id));
    }
    if !c.hide_groups_header {
        match &consumer.groups_header {
            Some(v) => req.headers.insert(&CONSUMER_GROUPS, v.clone()),
            None => req.headers.remove(&CONSUMER_GROUPS),
        };
    }
    None
}
