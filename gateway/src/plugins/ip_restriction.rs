//! `ip-restriction`: allows or denies requests by the client's address
//! (Kong 3.x). The address is the one after PROXY protocol and the
//! `trusted_ips` / `real_ip_header` handling, nginx's `$remote_addr` in Kong.
//! `deny` wins over `allow`.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{json, Map, Value};

use super::Request;
use crate::config::trusted::canonical;
use crate::proxy::body::ProxyBody;
use crate::schema::fields::{opt, Fields};

pub const PRIORITY: u32 = 990;

const DEFAULT_MESSAGE: &str = "Your IP address is not allowed";

#[derive(Debug)]
pub struct Config {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    status: u16,
    message: Box<str>,
}

/// Kong's `typedefs.ip_or_cidr`.
fn nets(f: &mut Fields, field: &str) -> (Vec<IpNet>, Value) {
    let Some(list) = f.strings(field) else {
        return (Vec::new(), Value::Null);
    };
    let mut nets = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let net = item
            .parse::<IpNet>()
            .ok()
            .or_else(|| item.parse::<IpAddr>().ok().map(IpNet::from));
        match net {
            Some(n) => nets.push(n.trunc()),
            None => f.error(
                &format!("{field}[{i}]"),
                format!("invalid ip or cidr range: '{item}'"),
            ),
        }
    }
    (nets, Value::from(list))
}

pub(super) fn parse(f: &mut Fields) -> (Config, Map<String, Value>) {
    let (allow, allow_out) = nets(f, "allow");
    let (deny, deny_out) = nets(f, "deny");
    let status = match f.number("status") {
        None => None,
        Some(n) if n.fract() == 0.0 && (100.0..=599.0).contains(&n) => Some(n as u16),
        Some(_) => {
            f.error("status", "value should be between 100 and 599");
            None
        }
    };
    let message = f.string("message");
    if allow.is_empty() && deny.is_empty() && !f.has_error("allow") && !f.has_error("deny") {
        f.error(
            super::PLUGIN_ENTITY,
            "at least one of these fields must be non-empty: 'config.allow', 'config.deny'",
        );
    }
    let mut out = Map::new();
    out.insert("allow".into(), allow_out);
    out.insert("deny".into(), deny_out);
    out.insert("status".into(), opt(status));
    out.insert("message".into(), opt(message.clone()));
    let config = Config {
        allow,
        deny,
        status: status.unwrap_or(403),
        message: message.as_deref().unwrap_or(DEFAULT_MESSAGE).into(),
    };
    (config, out)
}

impl Config {
    /// Kong's rule: denied if in `deny`; else, with an `allow` list, denied
    /// unless in it.
    pub fn blocks(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if self.deny.iter().any(|n| n.contains(&ip)) {
            return true;
        }
        !self.allow.is_empty() && !self.allow.iter().any(|n| n.contains(&ip))
    }
}

pub(super) fn access(c: &Config, req: &Request<'_>) -> Option<http::Response<ProxyBody>> {
    c.blocks(req.client)
        .then(|| super::error(c.status, &c.message, req.request_id))
}

pub(super) fn schema() -> Value {
    json!([
        {"allow": {"type": "array", "elements": {"type": "string", "description": "ip or cidr"}}},
        {"deny": {"type": "array", "elements": {"type": "string", "description": "ip or cidr"}}},
        {"status": {"type": "number", "required": false}},
        {"message": {"type": "string", "required": false}},
    ])
}
