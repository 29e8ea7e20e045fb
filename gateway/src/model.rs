//! Entities in Kong's shapes: the one vocabulary shared by the declarative
//! file, the database store and the Admin API.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

/// Protocols a service or route may name. Only http and https are proxied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Http,
    Https,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Protocol::Http => 80,
            Protocol::Https => 443,
        }
    }
}

/// Kong's `path_handling`: how the route path and the service path are joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathHandling {
    #[default]
    V0,
    V1,
}

/// A reference to another entity, serialised as Kong does: `{"id": "..."}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ForeignKey {
    pub id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub id: Uuid,
    pub name: Option<String>,
    pub protocol: Protocol,
    pub host: String,
    pub port: u16,
    pub path: Option<String>,
    pub retries: u32,
    pub connect_timeout: u32,
    pub read_timeout: u32,
    pub write_timeout: u32,
    pub enabled: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub id: Uuid,
    pub name: Option<String>,
    pub protocols: Vec<Protocol>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub methods: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub hosts: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub paths: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub headers: BTreeMap<String, Vec<String>>,
    pub https_redirect_status_code: u16,
    pub regex_priority: i64,
    pub strip_path: bool,
    pub path_handling: PathHandling,
    pub preserve_host: bool,
    pub request_buffering: bool,
    pub response_buffering: bool,
    pub service: Option<ForeignKey>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Upstream {
    pub id: Uuid,
    pub name: String,
    pub algorithm: String,
    pub slots: u32,
    pub host_header: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub id: Uuid,
    pub upstream: ForeignKey,
    /// `host:port`; the port defaults to 8000 as in Kong.
    pub target: String,
    pub weight: u32,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Consumer {
    pub id: Uuid,
    pub username: Option<String>,
    pub custom_id: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plugin {
    pub id: Uuid,
    pub name: String,
    #[serde(default)]
    pub instance_name: Option<String>,
    /// Validated and filled with defaults for the plugins this gateway
    /// implements ([`crate::plugins`]); stored as given for the others.
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
    pub protocols: Vec<String>,
    pub enabled: bool,
    #[serde(default)]
    pub service: Option<ForeignKey>,
    #[serde(default)]
    pub route: Option<ForeignKey>,
    #[serde(default)]
    pub consumer: Option<ForeignKey>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// key-auth's credential: a consumer's API key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyauthCredential {
    pub id: Uuid,
    pub consumer: ForeignKey,
    pub key: String,
    #[serde(default)]
    pub ttl: Option<u64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    pub created_at: i64,
}

/// basic-auth's credential. `password` is the stored hash
/// ([`crate::schema::password_hash`]), never the password.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BasicauthCredential {
    pub id: Uuid,
    pub consumer: ForeignKey,
    pub username: String,
    pub password: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    pub created_at: i64,
}

/// acl's group membership of a consumer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Acl {
    pub id: Uuid,
    pub consumer: ForeignKey,
    pub group: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    pub created_at: i64,
}

/// A certificate and its key in PEM, with the SNIs it serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Certificate {
    pub id: Uuid,
    pub cert: String,
    pub key: String,
    #[serde(default)]
    pub cert_alt: Option<String>,
    #[serde(default)]
    pub key_alt: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub snis: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Everything a node needs to build its routing snapshot. Entities are kept in
/// creation order, which breaks ties between routes of equal priority.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Entities {
    pub services: Vec<Service>,
    pub routes: Vec<Route>,
    pub upstreams: Vec<Upstream>,
    pub targets: Vec<Target>,
    #[serde(default)]
    pub consumers: Vec<Consumer>,
    #[serde(default)]
    pub plugins: Vec<Plugin>,
    #[serde(default)]
    pub certificates: Vec<Certificate>,
    // Left out when empty, so the configuration hash of a set of entities
    // without credentials is what it was before they existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keyauth_credentials: Vec<KeyauthCredential>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub basicauth_credentials: Vec<BasicauthCredential>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acls: Vec<Acl>,
}

/// Kong outputs null for unset lists and maps; read it as empty.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

pub const DEFAULT_RETRIES: u32 = 5;
pub const DEFAULT_TIMEOUT_MS: u32 = 60_000;
pub const DEFAULT_TARGET_PORT: u16 = 8000;
pub const DEFAULT_TARGET_WEIGHT: u32 = 100;
pub const DEFAULT_UPSTREAM_SLOTS: u32 = 10_000;

/// Namespace for ids derived from names, so that a declarative file without
/// ids yields the same ids (and the same configuration hash) on every node.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6b6f_6e67_2d67_6174_6577_6179_2d69_6473);

/// A stable id for an entity of `kind` known by `key` (its name, or its
/// position in the file when it has none).
pub fn derived_id(kind: &str, key: &str) -> Uuid {
    let mut seed = String::with_capacity(kind.len() + key.len() + 1);
    seed.push_str(kind);
    seed.push(':');
    seed.push_str(key);
    Uuid::new_v5(&ID_NAMESPACE, seed.as_bytes())
}
