//! Kong's declarative configuration format (`_format_version: "3.0"`), read from
//! YAML or JSON into [`Entities`]. Errors point to the entity and the field.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Deserialize;
use uuid::Uuid;

use crate::model::{self, Entities, ForeignKey, PathHandling, Protocol};

#[derive(Debug, thiserror::Error)]
#[error("{at}: {message}")]
pub struct DeclarativeError {
    /// Where: `services[0] (name=example).routes[1].paths` or a line and column.
    pub at: String,
    pub message: String,
}

fn err(at: impl Into<String>, message: impl Into<String>) -> DeclarativeError {
    DeclarativeError {
        at: at.into(),
        message: message.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(rename = "_format_version")]
    format_version: String,
    #[serde(rename = "_transform", default)]
    _transform: Option<bool>,
    #[serde(default)]
    services: Vec<DService>,
    #[serde(default)]
    routes: Vec<DRoute>,
    #[serde(default)]
    upstreams: Vec<DUpstream>,
    #[serde(default)]
    targets: Vec<DTarget>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DService {
    id: Option<Uuid>,
    name: Option<String>,
    url: Option<String>,
    protocol: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    path: Option<String>,
    retries: Option<u32>,
    connect_timeout: Option<u32>,
    read_timeout: Option<u32>,
    write_timeout: Option<u32>,
    enabled: Option<bool>,
    tags: Option<Vec<String>>,
    #[serde(default)]
    routes: Vec<DRoute>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DRoute {
    id: Option<Uuid>,
    name: Option<String>,
    protocols: Option<Vec<String>>,
    methods: Option<Vec<String>>,
    hosts: Option<Vec<String>>,
    paths: Option<Vec<String>>,
    headers: Option<BTreeMap<String, OneOrMany>>,
    https_redirect_status_code: Option<u16>,
    regex_priority: Option<i64>,
    strip_path: Option<bool>,
    path_handling: Option<PathHandling>,
    preserve_host: Option<bool>,
    request_buffering: Option<bool>,
    response_buffering: Option<bool>,
    tags: Option<Vec<String>>,
    service: Option<ServiceRef>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Kong accepts `service: name-or-id` and `service: {id: ..}` / `{name: ..}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum ServiceRef {
    Key(String),
    Object {
        id: Option<Uuid>,
        name: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DUpstream {
    id: Option<Uuid>,
    name: String,
    algorithm: Option<String>,
    slots: Option<u32>,
    host_header: Option<String>,
    tags: Option<Vec<String>>,
    /// Accepted so that Kong exports load; active and passive checks are not run.
    #[serde(default, rename = "healthchecks")]
    _healthchecks: Option<serde_json::Value>,
    #[serde(default)]
    targets: Vec<DTarget>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DTarget {
    id: Option<Uuid>,
    target: String,
    weight: Option<u32>,
    tags: Option<Vec<String>>,
    /// Only on top-level targets: the upstream's name or id.
    upstream: Option<String>,
}

/// Parsed entities, and where each route stood in the file.
#[derive(Debug)]
pub struct Document {
    pub entities: Entities,
    /// Route name or id -> `services[0] (name=x).routes[1]`.
    route_locations: HashMap<String, String>,
}

impl Document {
    /// Where the route known by `key` (its name, else its id) is in the file.
    pub fn route_location(&self, key: &str) -> Option<&str> {
        self.route_locations.get(key).map(String::as_str)
    }
}

/// Parses YAML (or JSON, which is YAML) text.
pub fn parse(text: &str) -> Result<Document, DeclarativeError> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let file: File = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let at = match (path.as_str(), inner.location()) {
            (".", Some(l)) => format!("line {} column {}", l.line(), l.column()),
            (p, Some(l)) => format!("{p} (line {} column {})", l.line(), l.column()),
            (p, None) => p.to_string(),
        };
        // serde_yaml_ng appends the location itself; keep the message short.
        let message = inner.to_string();
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .to_string();
        err(at, message)
    })?;
    Builder::default().build(file)
}

#[derive(Default)]
struct Builder {
    out: Entities,
    service_keys: HashMap<String, Uuid>,
    upstream_keys: HashMap<String, Uuid>,
    seen_ids: HashMap<Uuid, String>,
    route_locations: HashMap<String, String>,
}

struct Where(String);

impl fmt::Display for Where {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn label(kind: &str, index: usize, name: Option<&str>) -> Where {
    match name {
        Some(n) => Where(format!("{kind}[{index}] (name={n})")),
        None => Where(format!("{kind}[{index}]")),
    }
}

impl Builder {
    fn build(mut self, file: File) -> Result<Document, DeclarativeError> {
        if file.format_version != "3.0" {
            return Err(err(
                "_format_version",
                format!(
                    "`{}` is not supported; use \"3.0\" (convert older files with `deck file convert`)",
                    file.format_version
                ),
            ));
        }
        let mut pending_routes = Vec::new();
        for (i, s) in file.services.into_iter().enumerate() {
            let at = label("services", i, s.name.as_deref());
            let id = self.service(&at, i, &s)?;
            for (j, r) in s.routes.into_iter().enumerate() {
                let at = Where(format!("{at}.{}", label("routes", j, r.name.as_deref())));
                if r.service.is_some() {
                    return Err(err(
                        at.0,
                        "service: a nested route already belongs to its service",
                    ));
                }
                pending_routes.push((at, r, Some(id)));
            }
        }
        for (i, r) in file.routes.into_iter().enumerate() {
            let at = label("routes", i, r.name.as_deref());
            let service = match &r.service {
                None => None,
                Some(key) => Some(self.resolve_service(&at, key)?),
            };
            pending_routes.push((at, r, service));
        }
        for (at, r, service) in pending_routes {
            self.route(&at, r, service)?;
        }
        for (i, u) in file.upstreams.into_iter().enumerate() {
            let at = label("upstreams", i, Some(&u.name));
            let id = self.upstream(&at, &u)?;
            for (j, t) in u.targets.into_iter().enumerate() {
                let at = Where(format!("{at}.targets[{j}]"));
                if t.upstream.is_some() {
                    return Err(err(
                        at.0,
                        "upstream: a nested target already belongs to its upstream",
                    ));
                }
                self.target(&at, t, id)?;
            }
        }
        for (i, t) in file.targets.into_iter().enumerate() {
            let at = Where(format!("targets[{i}]"));
            let Some(key) = t.upstream.clone() else {
                return Err(err(at.0, "upstream: required for a top-level target"));
            };
            let id = self.lookup(&self.upstream_keys, &key).ok_or_else(|| {
                err(
                    format!("{at}.upstream"),
                    format!("no upstream named `{key}`"),
                )
            })?;
            self.target(&at, t, id)?;
        }
        Ok(Document {
            entities: self.out,
            route_locations: self.route_locations,
        })
    }

    fn claim_id(&mut self, at: &Where, id: Uuid) -> Result<(), DeclarativeError> {
        if let Some(other) = self.seen_ids.insert(id, at.0.clone()) {
            return Err(err(
                format!("{at}.id"),
                format!("id {id} is also used by {other}"),
            ));
        }
        Ok(())
    }

    /// `keys` holds names and id strings alike.
    fn lookup(&self, keys: &HashMap<String, Uuid>, key: &str) -> Option<Uuid> {
        keys.get(key).copied()
    }

    fn resolve_service(&self, at: &Where, key: &ServiceRef) -> Result<Uuid, DeclarativeError> {
        let found = match key {
            ServiceRef::Key(k) => self.lookup(&self.service_keys, k),
            ServiceRef::Object { id: Some(id), .. } => {
                self.lookup(&self.service_keys, &id.to_string())
            }
            ServiceRef::Object { name: Some(n), .. } => self.lookup(&self.service_keys, n),
            ServiceRef::Object { .. } => None,
        };
        found.ok_or_else(|| err(format!("{at}.service"), "no such service in this file"))
    }

    fn service(
        &mut self,
        at: &Where,
        index: usize,
        s: &DService,
    ) -> Result<Uuid, DeclarativeError> {
        let field = |f: &str| format!("{at}.{f}");
        let (mut protocol, mut host, mut port, mut path) = (None, None, None, None);
        if let Some(url) = &s.url {
            if s.protocol.is_some() || s.host.is_some() || s.port.is_some() || s.path.is_some() {
                return Err(err(
                    field("url"),
                    "set either `url` or protocol/host/port/path, not both",
                ));
            }
            let (p, h, po, pa) = parse_url(url).map_err(|m| err(field("url"), m))?;
            (protocol, host, port, path) = (Some(p), Some(h), Some(po), pa);
        }
        if let Some(p) = &s.protocol {
            protocol = Some(parse_protocol(p).map_err(|m| err(field("protocol"), m))?);
        }
        let protocol = protocol.unwrap_or(Protocol::Http);
        host = host.or_else(|| s.host.clone());
        let host = host.ok_or_else(|| err(field("host"), "required (or give `url`)"))?;
        if host.is_empty() || host.contains(['/', ' ', '?', '#']) {
            return Err(err(
                field("host"),
                format!("`{host}` is not a host name or address"),
            ));
        }
        port = port.or(s.port);
        let port = port.unwrap_or(80);
        if port == 0 {
            return Err(err(field("port"), "must be between 1 and 65535"));
        }
        path = path.or_else(|| s.path.clone());
        if let Some(p) = &path {
            if !p.starts_with('/') {
                return Err(err(field("path"), "must start with /"));
            }
        }
        let timeout = |v: Option<u32>, f: &str| match v {
            None => Ok(model::DEFAULT_TIMEOUT_MS),
            Some(t) if (1..=2_147_483_646).contains(&t) => Ok(t),
            Some(_) => Err(err(
                field(f),
                "must be between 1 and 2147483646 (milliseconds)",
            )),
        };
        let retries = s.retries.unwrap_or(model::DEFAULT_RETRIES);
        if retries > 32_767 {
            return Err(err(field("retries"), "must be between 0 and 32767"));
        }
        let key = s.name.clone().unwrap_or_else(|| format!("#{index}"));
        let id = s.id.unwrap_or_else(|| model::derived_id("services", &key));
        if let Some(name) = &s.name {
            if self.service_keys.insert(name.clone(), id).is_some() {
                return Err(err(
                    field("name"),
                    format!("another service is named `{name}`"),
                ));
            }
        }
        // Routes may name their service by id too.
        self.service_keys.insert(id.to_string(), id);
        self.claim_id(at, id)?;
        self.out.services.push(model::Service {
            id,
            name: s.name.clone(),
            protocol,
            host,
            port,
            path,
            retries,
            connect_timeout: timeout(s.connect_timeout, "connect_timeout")?,
            read_timeout: timeout(s.read_timeout, "read_timeout")?,
            write_timeout: timeout(s.write_timeout, "write_timeout")?,
            enabled: s.enabled.unwrap_or(true),
            tags: s.tags.clone().unwrap_or_default(),
            created_at: 0,
            updated_at: 0,
        });
        Ok(id)
    }

    fn route(
        &mut self,
        at: &Where,
        r: DRoute,
        service: Option<Uuid>,
    ) -> Result<(), DeclarativeError> {
        let field = |f: &str| format!("{at}.{f}");
        let protocols = match r.protocols {
            None => vec![Protocol::Http, Protocol::Https],
            Some(list) if list.is_empty() => {
                return Err(err(field("protocols"), "must not be empty"))
            }
            Some(list) => list
                .iter()
                .map(|p| parse_protocol(p))
                .collect::<Result<_, _>>()
                .map_err(|m| err(field("protocols"), m))?,
        };
        let code = r.https_redirect_status_code.unwrap_or(426);
        if ![426, 301, 302, 307, 308].contains(&code) {
            return Err(err(
                field("https_redirect_status_code"),
                "must be one of 426, 301, 302, 307, 308",
            ));
        }
        let headers = r
            .headers
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| match v {
                OneOrMany::One(s) => (k, vec![s]),
                OneOrMany::Many(list) => (k, list),
            })
            .collect();
        let key = r.name.clone().unwrap_or_else(|| at.0.clone());
        let id = r.id.unwrap_or_else(|| model::derived_id("routes", &key));
        if let Some(name) = &r.name {
            if self.route_locations.contains_key(name) {
                return Err(err(
                    field("name"),
                    format!("another route is named `{name}`"),
                ));
            }
        }
        self.claim_id(at, id)?;
        let key = r.name.clone().unwrap_or_else(|| id.to_string());
        self.route_locations.insert(key, at.0.clone());
        self.out.routes.push(model::Route {
            id,
            name: r.name,
            protocols,
            methods: r.methods.unwrap_or_default(),
            hosts: r.hosts.unwrap_or_default(),
            paths: r.paths.unwrap_or_default(),
            headers,
            https_redirect_status_code: code,
            regex_priority: r.regex_priority.unwrap_or(0),
            strip_path: r.strip_path.unwrap_or(true),
            path_handling: r.path_handling.unwrap_or_default(),
            preserve_host: r.preserve_host.unwrap_or(false),
            request_buffering: r.request_buffering.unwrap_or(true),
            response_buffering: r.response_buffering.unwrap_or(true),
            service: service.map(|id| ForeignKey { id }),
            tags: r.tags.unwrap_or_default(),
            created_at: 0,
            updated_at: 0,
        });
        Ok(())
    }

    fn upstream(&mut self, at: &Where, u: &DUpstream) -> Result<Uuid, DeclarativeError> {
        let field = |f: &str| format!("{at}.{f}");
        if u.name.is_empty()
            || !u
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        {
            return Err(err(
                field("name"),
                "must be a host name (letters, digits, `-`, `.`, `_`)",
            ));
        }
        let algorithm = u.algorithm.clone().unwrap_or_else(|| "round-robin".into());
        if algorithm != "round-robin" {
            return Err(err(
                field("algorithm"),
                format!("`{algorithm}` is not supported yet; use `round-robin`"),
            ));
        }
        let id =
            u.id.unwrap_or_else(|| model::derived_id("upstreams", &u.name));
        self.upstream_keys.insert(id.to_string(), id);
        if self.upstream_keys.insert(u.name.clone(), id).is_some() {
            return Err(err(
                field("name"),
                format!("another upstream is named `{}`", u.name),
            ));
        }
        self.claim_id(at, id)?;
        self.out.upstreams.push(model::Upstream {
            id,
            name: u.name.clone(),
            algorithm,
            slots: u.slots.unwrap_or(model::DEFAULT_UPSTREAM_SLOTS),
            host_header: u.host_header.clone(),
            tags: u.tags.clone().unwrap_or_default(),
            created_at: 0,
            updated_at: 0,
        });
        Ok(id)
    }

    fn target(&mut self, at: &Where, t: DTarget, upstream: Uuid) -> Result<(), DeclarativeError> {
        let (host, port) =
            split_host_port(&t.target).map_err(|m| err(format!("{at}.target"), m))?;
        let target = format_host_port(&host, port.unwrap_or(model::DEFAULT_TARGET_PORT));
        let weight = t.weight.unwrap_or(model::DEFAULT_TARGET_WEIGHT);
        if weight > 65_535 {
            return Err(err(format!("{at}.weight"), "must be between 0 and 65535"));
        }
        let id =
            t.id.unwrap_or_else(|| model::derived_id("targets", &format!("{upstream}/{target}")));
        self.claim_id(at, id)?;
        self.out.targets.push(model::Target {
            id,
            upstream: ForeignKey { id: upstream },
            target,
            weight,
            tags: t.tags.unwrap_or_default(),
            created_at: 0,
            updated_at: 0,
        });
        Ok(())
    }
}

fn parse_protocol(p: &str) -> Result<Protocol, String> {
    match p {
        "http" => Ok(Protocol::Http),
        "https" => Ok(Protocol::Https),
        other => Err(format!("`{other}` is not supported; use http or https")),
    }
}

/// Kong's service `url` shorthand: `scheme://host[:port][/path]`.
fn parse_url(url: &str) -> Result<(Protocol, String, u16, Option<String>), String> {
    let uri: http::Uri = url.parse().map_err(|_| format!("`{url}` is not a URL"))?;
    let protocol = parse_protocol(
        uri.scheme_str()
            .ok_or("the URL needs a scheme (http:// or https://)")?,
    )?;
    let host = uri.host().ok_or("the URL needs a host")?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(protocol.default_port());
    let path = match uri.path() {
        "" | "/" if !url.ends_with('/') => None,
        p => Some(p.to_string()),
    };
    if uri.query().is_some() {
        return Err("the URL must not have a query string".into());
    }
    Ok((protocol, host, port, path))
}

/// `host`, `host:port`, `1.2.3.4:80`, `[::1]:80` or `::1`.
pub fn split_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    let bad = || format!("`{s}` is not host, host:port or [ipv6]:port");
    if s.is_empty() || s.contains(['/', ' ']) {
        return Err(bad());
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (host, tail) = rest.split_once(']').ok_or_else(bad)?;
        host.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        return match tail {
            "" => Ok((host.to_string(), None)),
            t => {
                let port = t
                    .strip_prefix(':')
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(bad)?;
                Ok((host.to_string(), Some(port)))
            }
        };
    }
    if s.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok((s.to_string(), None));
    }
    match s.rsplit_once(':') {
        None => Ok((s.to_string(), None)),
        Some((host, port)) => {
            let port: u16 = port.parse().map_err(|_| bad())?;
            if host.is_empty() || port == 0 {
                return Err(bad());
            }
            Ok((host.to_string(), Some(port)))
        }
    }
}

pub fn format_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests;
