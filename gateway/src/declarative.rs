//! Kong's declarative configuration format (`_format_version: "3.0"`), read from
//! YAML or JSON into [`Entities`] and written back by [`export`]. Serde checks
//! the shape; the Admin API schemas ([`crate::schema`]) check the values.
//! Errors point to the entity and the field.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::input_limits as limits;
use crate::model::{self, Entities};
use crate::schema::{self, FieldErrors, Kind, Write};

pub use crate::schema::net::{format_host_port, split_host_port};

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

type Object = Map<String, Value>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(rename = "_format_version")]
    format_version: String,
    /// Kong's switch for the schemas' transformations: `false` (as
    /// `config db_export` writes) means basic-auth passwords are already
    /// hashed.
    #[serde(rename = "_transform", default)]
    transform: Option<bool>,
    #[serde(default)]
    services: Vec<DService>,
    #[serde(default)]
    routes: Vec<DRoute>,
    #[serde(default)]
    upstreams: Vec<DUpstream>,
    #[serde(default)]
    targets: Vec<DTarget>,
    #[serde(default)]
    consumers: Vec<Object>,
    #[serde(default)]
    plugins: Vec<Object>,
    #[serde(default)]
    certificates: Vec<Object>,
    #[serde(default)]
    keyauth_credentials: Vec<Object>,
    #[serde(default)]
    basicauth_credentials: Vec<Object>,
    #[serde(default)]
    acls: Vec<Object>,
}

/// The credential kinds, as nested in a consumer or at the top level with a
/// `consumer` reference.
const CREDENTIALS: [Kind; 3] = [
    Kind::KeyauthCredentials,
    Kind::BasicauthCredentials,
    Kind::Acls,
];

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct DService {
    #[serde(skip_serializing)]
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
    #[serde(default, skip_serializing)]
    routes: Vec<DRoute>,
    #[serde(default, skip_serializing)]
    plugins: Vec<Object>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct DRoute {
    #[serde(skip_serializing)]
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
    path_handling: Option<model::PathHandling>,
    preserve_host: Option<bool>,
    request_buffering: Option<bool>,
    response_buffering: Option<bool>,
    tags: Option<Vec<String>>,
    #[serde(skip_serializing)]
    service: Option<Value>,
    #[serde(default, skip_serializing)]
    plugins: Vec<Object>,
}

#[derive(Deserialize, Serialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct DUpstream {
    #[serde(skip_serializing)]
    id: Option<Uuid>,
    name: String,
    algorithm: Option<String>,
    slots: Option<u32>,
    host_header: Option<String>,
    tags: Option<Vec<String>>,
    /// Accepted so that Kong exports load; active and passive checks are not run.
    healthchecks: Option<Object>,
    #[serde(default, skip_serializing)]
    targets: Vec<DTarget>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct DTarget {
    #[serde(skip_serializing)]
    id: Option<Uuid>,
    target: String,
    weight: Option<u32>,
    tags: Option<Vec<String>>,
    /// Only on top-level targets: the upstream's name or id.
    #[serde(skip_serializing)]
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

/// Parses YAML (or JSON, which is YAML) text, within [`crate::input_limits`]: a
/// text too large, too deep or whose aliases expand too far is refused before
/// serde_yaml_ng reads it.
pub fn parse(text: &str) -> Result<Document, DeclarativeError> {
    limits::check_size(text.len()).map_err(|e| err("the document", e.to_string()))?;
    limits::check_yaml(text)
        .map_err(|(e, line, column)| err(format!("line {line} column {column}"), e.to_string()))?;
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
    /// Names and id strings alike, per kind.
    service_keys: HashMap<String, Uuid>,
    route_keys: HashMap<String, Uuid>,
    upstream_keys: HashMap<String, Uuid>,
    consumer_keys: HashMap<String, Uuid>,
    custom_ids: HashMap<String, Uuid>,
    seen_ids: HashMap<Uuid, String>,
    /// (name, service, route, consumer) -> where: a plugin is unique per scope.
    plugin_scopes: HashMap<PluginScope, String>,
    snis: HashMap<String, String>,
    route_locations: HashMap<String, String>,
    /// A credential's unique value (key, username, consumer+group) -> where.
    credential_keys: HashMap<(Kind, String), String>,
    /// Hash basic-auth passwords (`_transform`, true unless set false).
    hash_passwords: bool,
}

/// A plugin's name, service, route and consumer.
type PluginScope = (String, Option<Uuid>, Option<Uuid>, Option<Uuid>);

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

/// The first schema error at its field, the others after it.
fn schema_err(at: &Where, e: &FieldErrors) -> DeclarativeError {
    let mut entries = e.entries().into_iter();
    let (path, message) = entries.next().unwrap_or_default();
    let more: Vec<String> = entries
        .map(|(p, m)| if p.is_empty() { m } else { format!("{p}: {m}") })
        .collect();
    let at = if path.is_empty() {
        at.0.clone()
    } else {
        format!("{at}.{path}")
    };
    match more.is_empty() {
        true => err(at, message),
        false => err(at, format!("{message} (also {})", more.join("; "))),
    }
}

fn body_of<T: Serialize>(d: &T) -> Object {
    match serde_json::to_value(d) {
        Ok(Value::Object(o)) => o,
        _ => Object::new(),
    }
}

/// An explicit `id`, or `derived` when there is none.
fn id_of(
    at: &Where,
    body: &Object,
    derived: impl FnOnce() -> Uuid,
) -> Result<Uuid, DeclarativeError> {
    match body.get("id") {
        None | Some(Value::Null) => Ok(derived()),
        Some(Value::String(s)) => {
            Uuid::parse_str(s).map_err(|_| err(format!("{at}.id"), "expected a valid UUID"))
        }
        Some(_) => Err(err(format!("{at}.id"), "expected a string")),
    }
}

fn nested(at: &Where, key: &str, v: Option<Value>) -> Result<Vec<Object>, DeclarativeError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v) => serde_json::from_value(v)
            .map_err(|_| err(format!("{at}.{key}"), "expected an array of records")),
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
        self.hash_passwords = file.transform.unwrap_or(true);
        let mut routes = Vec::new();
        let mut plugins = Vec::new();
        for (i, mut s) in file.services.into_iter().enumerate() {
            let at = label("services", i, s.name.as_deref());
            let id = self.service(&at, i, &s)?;
            for (j, r) in std::mem::take(&mut s.routes).into_iter().enumerate() {
                let at = Where(format!("{at}.{}", label("routes", j, r.name.as_deref())));
                if r.service.is_some() {
                    return Err(err(
                        at.0,
                        "service: a nested route already belongs to its service",
                    ));
                }
                routes.push((at, r, Some(id)));
            }
            for (j, p) in s.plugins.into_iter().enumerate() {
                plugins.push((
                    Where(format!("{at}.plugins[{j}]")),
                    p,
                    Some(("service", id)),
                ));
            }
        }
        for (i, r) in file.routes.into_iter().enumerate() {
            let at = label("routes", i, r.name.as_deref());
            let service = match &r.service {
                None | Some(Value::Null) => None,
                Some(key) => Some(resolve(&self.service_keys, &at, "service", key)?),
            };
            routes.push((at, r, service));
        }
        for (at, mut r, service) in routes {
            let id = self.route(&at, &r, service)?;
            for (j, p) in std::mem::take(&mut r.plugins).into_iter().enumerate() {
                plugins.push((Where(format!("{at}.plugins[{j}]")), p, Some(("route", id))));
            }
        }
        for (i, mut u) in file.upstreams.into_iter().enumerate() {
            let at = label("upstreams", i, Some(&u.name));
            let id = self.upstream(&at, &u)?;
            for (j, t) in std::mem::take(&mut u.targets).into_iter().enumerate() {
                let at = Where(format!("{at}.targets[{j}]"));
                if t.upstream.is_some() {
                    return Err(err(
                        at.0,
                        "upstream: a nested target already belongs to its upstream",
                    ));
                }
                self.target(&at, &t, id)?;
            }
        }
        for (i, t) in file.targets.into_iter().enumerate() {
            let at = Where(format!("targets[{i}]"));
            let Some(key) = t.upstream.clone() else {
                return Err(err(at.0, "upstream: required for a top-level target"));
            };
            let id = self.upstream_keys.get(&key).copied().ok_or_else(|| {
                err(
                    format!("{at}.upstream"),
                    format!("no upstream named `{key}`"),
                )
            })?;
            self.target(&at, &t, id)?;
        }
        let mut credentials = Vec::new();
        for (i, mut c) in file.consumers.into_iter().enumerate() {
            let name = c.get("username").and_then(Value::as_str).map(str::to_owned);
            let at = label("consumers", i, name.as_deref());
            let nested_plugins = nested(&at, "plugins", c.remove("plugins"))?;
            let mut nested_credentials = Vec::new();
            for kind in CREDENTIALS {
                let list = nested(&at, kind.name(), c.remove(kind.name()))?;
                nested_credentials.push((kind, list));
            }
            let id = self.consumer(&at, i, c)?;
            for (kind, list) in nested_credentials {
                for (j, cred) in list.into_iter().enumerate() {
                    let at = Where(format!("{at}.{}[{j}]", kind.name()));
                    credentials.push((kind, at, cred, Some(id)));
                }
            }
            for (j, p) in nested_plugins.into_iter().enumerate() {
                plugins.push((
                    Where(format!("{at}.plugins[{j}]")),
                    p,
                    Some(("consumer", id)),
                ));
            }
        }
        for (kind, list) in [
            (Kind::KeyauthCredentials, file.keyauth_credentials),
            (Kind::BasicauthCredentials, file.basicauth_credentials),
            (Kind::Acls, file.acls),
        ] {
            for (i, cred) in list.into_iter().enumerate() {
                credentials.push((kind, label(kind.name(), i, None), cred, None));
            }
        }
        for (kind, at, cred, consumer) in credentials {
            self.credential(kind, &at, cred, consumer)?;
        }
        for (i, p) in file.plugins.into_iter().enumerate() {
            plugins.push((label("plugins", i, None), p, None));
        }
        for (at, p, parent) in plugins {
            self.plugin(&at, p, parent)?;
        }
        for (i, c) in file.certificates.into_iter().enumerate() {
            self.certificate(&label("certificates", i, None), i, c)?;
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

    /// Validates `body` with the Admin API schema and reads the result.
    fn checked<T: DeserializeOwned>(
        &mut self,
        kind: Kind,
        at: &Where,
        mut body: Object,
        id: Uuid,
    ) -> Result<T, DeclarativeError> {
        body.insert("id".into(), id.to_string().into());
        let v =
            schema::validate(kind, body, Write::Create, None, 0).map_err(|e| schema_err(at, &e))?;
        self.claim_id(at, id)?;
        serde_json::from_value(v).map_err(|e| err(at.0.clone(), e.to_string()))
    }

    fn service(
        &mut self,
        at: &Where,
        index: usize,
        s: &DService,
    ) -> Result<Uuid, DeclarativeError> {
        let key = s.name.clone().unwrap_or_else(|| format!("#{index}"));
        let id = s.id.unwrap_or_else(|| model::derived_id("services", &key));
        if let Some(name) = &s.name {
            if self.service_keys.insert(name.clone(), id).is_some() {
                return Err(err(
                    format!("{at}.name"),
                    format!("another service is named `{name}`"),
                ));
            }
        }
        // Routes may name their service by id too.
        self.service_keys.insert(id.to_string(), id);
        let service = self.checked(Kind::Services, at, body_of(s), id)?;
        self.out.services.push(service);
        Ok(id)
    }

    fn route(
        &mut self,
        at: &Where,
        r: &DRoute,
        service: Option<Uuid>,
    ) -> Result<Uuid, DeclarativeError> {
        let key = r.name.clone().unwrap_or_else(|| at.0.clone());
        let id = r.id.unwrap_or_else(|| model::derived_id("routes", &key));
        if let Some(name) = &r.name {
            if self.route_locations.contains_key(name) {
                return Err(err(
                    format!("{at}.name"),
                    format!("another route is named `{name}`"),
                ));
            }
            self.route_keys.insert(name.clone(), id);
        }
        self.route_keys.insert(id.to_string(), id);
        let mut body = body_of(r);
        if let Some(id) = service {
            body.insert("service".into(), json!({ "id": id }));
        }
        let route = self.checked(Kind::Routes, at, body, id)?;
        let key = r.name.clone().unwrap_or_else(|| id.to_string());
        self.route_locations.insert(key, at.0.clone());
        self.out.routes.push(route);
        Ok(id)
    }

    fn upstream(&mut self, at: &Where, u: &DUpstream) -> Result<Uuid, DeclarativeError> {
        let id =
            u.id.unwrap_or_else(|| model::derived_id("upstreams", &u.name));
        self.upstream_keys.insert(id.to_string(), id);
        if self.upstream_keys.insert(u.name.clone(), id).is_some() {
            return Err(err(
                format!("{at}.name"),
                format!("another upstream is named `{}`", u.name),
            ));
        }
        let upstream = self.checked(Kind::Upstreams, at, body_of(u), id)?;
        self.out.upstreams.push(upstream);
        Ok(id)
    }

    fn target(&mut self, at: &Where, t: &DTarget, upstream: Uuid) -> Result<(), DeclarativeError> {
        let mut body = body_of(t);
        body.insert("upstream".into(), json!({ "id": upstream }));
        let normal = split_host_port(&t.target)
            .map(|(h, p)| format_host_port(&h, p.unwrap_or(model::DEFAULT_TARGET_PORT)))
            .unwrap_or_default();
        let id =
            t.id.unwrap_or_else(|| model::derived_id("targets", &format!("{upstream}/{normal}")));
        let target = self.checked(Kind::Targets, at, body, id)?;
        self.out.targets.push(target);
        Ok(())
    }

    fn consumer(&mut self, at: &Where, index: usize, c: Object) -> Result<Uuid, DeclarativeError> {
        let text = |k: &str| c.get(k).and_then(Value::as_str).map(str::to_owned);
        let (username, custom_id) = (text("username"), text("custom_id"));
        let key = match (&username, &custom_id) {
            (Some(u), _) => u.clone(),
            (None, Some(c)) => format!("custom_id:{c}"),
            (None, None) => format!("#{index}"),
        };
        let id = id_of(at, &c, || model::derived_id("consumers", &key))?;
        if let Some(u) = &username {
            if self.consumer_keys.insert(u.clone(), id).is_some() {
                return Err(err(
                    format!("{at}.username"),
                    format!("another consumer is named `{u}`"),
                ));
            }
        }
        if let Some(c) = &custom_id {
            if self.custom_ids.insert(c.clone(), id).is_some() {
                return Err(err(
                    format!("{at}.custom_id"),
                    format!("another consumer has custom_id `{c}`"),
                ));
            }
        }
        let consumer = self.checked(Kind::Consumers, at, c, id)?;
        self.consumer_keys.insert(id.to_string(), id);
        self.out.consumers.push(consumer);
        Ok(id)
    }

    /// A key-auth or basic-auth credential or an acl group of a consumer.
    /// basic-auth's password is hashed here, as the Admin API does.
    fn credential(
        &mut self,
        kind: Kind,
        at: &Where,
        mut c: Object,
        consumer: Option<Uuid>,
    ) -> Result<(), DeclarativeError> {
        let consumer = match (c.get("consumer").filter(|v| !v.is_null()), consumer) {
            (Some(_), Some(_)) => {
                return Err(err(
                    format!("{at}.consumer"),
                    "a nested credential already belongs to its consumer",
                ))
            }
            (None, Some(id)) => id,
            (Some(key), None) => resolve(&self.consumer_keys, at, "consumer", key)?,
            (None, None) => return Err(err(format!("{at}.consumer"), "required field missing")),
        };
        c.insert("consumer".into(), json!({ "id": consumer }));
        let text = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let (field, unique) = match kind {
            Kind::KeyauthCredentials => ("key", text("key")),
            Kind::BasicauthCredentials => ("username", text("username")),
            _ => ("group", format!("{consumer}:{}", text("group"))),
        };
        let id = id_of(at, &c, || {
            model::derived_id(kind.name(), &format!("{consumer}:{}", text(field)))
        })?;
        if !text(field).is_empty() {
            if let Some(other) = self.credential_keys.insert((kind, unique), at.0.clone()) {
                return Err(err(
                    format!("{at}.{field}"),
                    format!("`{}` is also used by {other}", text(field)),
                ));
            }
        }
        match kind {
            Kind::KeyauthCredentials => {
                let cred = self.checked(kind, at, c, id)?;
                self.out.keyauth_credentials.push(cred);
            }
            Kind::BasicauthCredentials => {
                if self.hash_passwords {
                    schema::hash_password(&mut c, None);
                }
                let cred = self.checked(kind, at, c, id)?;
                self.out.basicauth_credentials.push(cred);
            }
            _ => {
                let cred = self.checked(kind, at, c, id)?;
                self.out.acls.push(cred);
            }
        }
        Ok(())
    }

    fn plugin(
        &mut self,
        at: &Where,
        mut p: Object,
        parent: Option<(&str, Uuid)>,
    ) -> Result<(), DeclarativeError> {
        let mut scope = [None; 3];
        for (i, field) in ["service", "route", "consumer"].into_iter().enumerate() {
            let keys = match field {
                "service" => &self.service_keys,
                "route" => &self.route_keys,
                _ => &self.consumer_keys,
            };
            let given = p.get(field).filter(|v| !v.is_null());
            scope[i] = match (given, parent) {
                (Some(_), Some((owner, _))) if owner == field => {
                    return Err(err(
                        format!("{at}.{field}"),
                        format!("a nested plugin already belongs to its {field}"),
                    ))
                }
                (_, Some((owner, id))) if owner == field => Some(id),
                (Some(key), _) => Some(resolve(keys, at, field, key)?),
                (None, _) => None,
            };
            if let Some(id) = scope[i] {
                p.insert(field.into(), json!({ "id": id }));
            }
        }
        let name = p
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let scope_key = (name, scope[0], scope[1], scope[2]);
        let id = id_of(at, &p, || {
            let [s, r, c] = scope.map(|x| x.map(|id| id.to_string()).unwrap_or_default());
            model::derived_id("plugins", &format!("{}:{s}:{r}:{c}", scope_key.0))
        })?;
        if let Some(other) = self.plugin_scopes.insert(scope_key.clone(), at.0.clone()) {
            return Err(err(
                at.0.clone(),
                format!(
                    "plugin `{}` is already configured for the same service, route and consumer by {other}",
                    scope_key.0
                ),
            ));
        }
        let plugin = self.checked(Kind::Plugins, at, p, id)?;
        self.out.plugins.push(plugin);
        Ok(())
    }

    fn certificate(
        &mut self,
        at: &Where,
        index: usize,
        mut c: Object,
    ) -> Result<(), DeclarativeError> {
        // Kong nests SNIs as records (`{name: example.com}`); the schema takes names.
        if let Some(Value::Array(snis)) = c.get_mut("snis") {
            for s in snis.iter_mut() {
                if let Some(name) = s.get("name").and_then(Value::as_str) {
                    *s = Value::String(name.to_string());
                }
            }
        }
        let id = id_of(at, &c, || {
            model::derived_id("certificates", &format!("#{index}"))
        })?;
        let cert: model::Certificate = self.checked(Kind::Certificates, at, c, id)?;
        for sni in &cert.snis {
            if let Some(other) = self.snis.insert(sni.clone(), at.0.clone()) {
                return Err(err(
                    format!("{at}.snis"),
                    format!("sni `{sni}` is also used by {other}"),
                ));
            }
        }
        self.out.certificates.push(cert);
        Ok(())
    }
}

/// Kong references an entity by endpoint key or id, bare or as `{id: ..}` /
/// `{name: ..}` / `{username: ..}`.
fn resolve(
    keys: &HashMap<String, Uuid>,
    at: &Where,
    field: &str,
    key: &Value,
) -> Result<Uuid, DeclarativeError> {
    let text = match key {
        Value::String(s) => Some(s.as_str()),
        Value::Object(o) => ["id", "name", "username"]
            .iter()
            .find_map(|k| o.get(*k).and_then(Value::as_str)),
        _ => None,
    };
    text.and_then(|k| keys.get(k).copied()).ok_or_else(|| {
        err(
            format!("{at}.{field}"),
            format!("no such {field} in this file"),
        )
    })
}

mod export;
pub use export::export;

#[cfg(test)]
mod tests;
