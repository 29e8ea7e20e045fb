//! Admin API entity schemas: Kong-compatible validation of request bodies for
//! the seven entity kinds, shared by the Admin API and the declarative format.
//! Pure functions: no database, no HTTP.

mod certificate;
mod consumer;
mod credential;
mod errors;
pub(crate) mod fields;
mod form;
pub mod net;
mod plugin;
mod route;
mod service;
#[cfg(test)]
mod tests;
mod upstream;

use serde_json::{Map, Value};

pub use credential::{digest_of_hash, hash_password, password_digest, password_hash};
pub use errors::{FieldErrors, ENTITY};
pub use form::from_form;
pub use plugin::BUNDLED_PLUGINS;

use fields::Fields;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Services,
    Routes,
    Consumers,
    Plugins,
    Upstreams,
    Targets,
    Certificates,
    /// key-auth's credentials (`/key-auths`, `/consumers/{c}/key-auth`).
    KeyauthCredentials,
    /// basic-auth's credentials (`/basic-auths`, `/consumers/{c}/basic-auth`).
    BasicauthCredentials,
    /// acl's groups (`/acls`, `/consumers/{c}/acls`).
    Acls,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::Services,
        Kind::Routes,
        Kind::Consumers,
        Kind::Plugins,
        Kind::Upstreams,
        Kind::Targets,
        Kind::Certificates,
        Kind::KeyauthCredentials,
        Kind::BasicauthCredentials,
        Kind::Acls,
    ];

    /// The table name, and the key in the declarative format.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Services => "services",
            Kind::Routes => "routes",
            Kind::Consumers => "consumers",
            Kind::Plugins => "plugins",
            Kind::Upstreams => "upstreams",
            Kind::Targets => "targets",
            Kind::Certificates => "certificates",
            Kind::KeyauthCredentials => "keyauth_credentials",
            Kind::BasicauthCredentials => "basicauth_credentials",
            Kind::Acls => "acls",
        }
    }

    /// The top-level Admin API endpoint (`/key-auths`), which is the table
    /// name for Kong's core entities.
    pub fn endpoint(self) -> &'static str {
        match self {
            Kind::KeyauthCredentials => "key-auths",
            Kind::BasicauthCredentials => "basic-auths",
            k => k.name(),
        }
    }

    /// The endpoint under a consumer (`/consumers/{c}/key-auth`).
    pub fn nested_endpoint(self) -> &'static str {
        match self {
            Kind::KeyauthCredentials => "key-auth",
            Kind::BasicauthCredentials => "basic-auth",
            k => k.name(),
        }
    }

    /// The kind of a top-level endpoint.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.endpoint() == s)
    }

    /// The kind of an endpoint nested under another entity.
    pub fn parse_nested(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.nested_endpoint() == s)
    }

    /// Credentials and groups belong to a consumer.
    pub fn is_credential(self) -> bool {
        matches!(
            self,
            Kind::KeyauthCredentials | Kind::BasicauthCredentials | Kind::Acls
        )
    }

    /// Unique text field an entity can be addressed by in a URL besides its
    /// id. Consumers' `custom_id` is unique too but is not an endpoint key.
    pub fn endpoint_key(self) -> Option<&'static str> {
        match self {
            Kind::Services | Kind::Routes | Kind::Upstreams => Some("name"),
            Kind::Consumers => Some("username"),
            Kind::KeyauthCredentials => Some("key"),
            Kind::BasicauthCredentials => Some("username"),
            Kind::Acls => Some("group"),
            Kind::Plugins | Kind::Targets | Kind::Certificates => None,
        }
    }

    /// Fields that are records: PATCH merges them recursively.
    fn record_fields(self) -> &'static [&'static str] {
        match self {
            Kind::Plugins => &["config"],
            Kind::Upstreams => &["healthchecks"],
            _ => &[],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    Create,
    Replace,
    Patch,
}

/// Validates an Admin API body and returns the whole entity in Kong's output
/// shape: every field present (null when unset), defaults filled, values
/// normalised. `body` carries "id". For `Patch`, `existing` is merged under
/// the body first (record fields merge recursively); for `Replace` it only
/// supplies `created_at`. Timestamps in the body are ignored.
pub fn validate(
    kind: Kind,
    mut body: Map<String, Value>,
    write: Write,
    existing: Option<&Value>,
    now: i64,
) -> Result<Value, FieldErrors> {
    body.remove("created_at");
    body.remove("updated_at");
    if kind == Kind::Services {
        // The shorthand is expanded before merging, as Kong does.
        service::expand_url(&mut body)?;
    }
    let created_at = existing
        .and_then(|e| e.get("created_at"))
        .and_then(Value::as_i64)
        .unwrap_or(now);
    let input = match (write, existing.and_then(Value::as_object)) {
        (Write::Patch, Some(old)) => {
            let mut merged = old.clone();
            merged.remove("created_at");
            merged.remove("updated_at");
            for (k, v) in body {
                if kind.record_fields().contains(&k.as_str()) {
                    merge_value(merged.entry(k).or_insert(Value::Null), v);
                } else {
                    merged.insert(k, v);
                }
            }
            merged
        }
        _ => body,
    };
    let mut f = Fields::new(input);
    let id = f.uuid("id");
    if id.is_none() && !f.has_error("id") {
        f.error("id", "required field missing");
    }
    let mut out = match kind {
        Kind::Services => service::validate(&mut f),
        Kind::Routes => route::validate(&mut f),
        Kind::Consumers => consumer::validate(&mut f),
        Kind::Plugins => plugin::validate(&mut f),
        Kind::Upstreams => upstream::validate(&mut f),
        Kind::Targets => upstream::validate_target(&mut f),
        Kind::Certificates => certificate::validate(&mut f),
        Kind::KeyauthCredentials => credential::validate_key(&mut f),
        Kind::BasicauthCredentials => credential::validate_basic(&mut f),
        Kind::Acls => credential::validate_acl(&mut f),
    };
    let errors = f.finish();
    if !errors.is_empty() {
        return Err(errors);
    }
    out.insert(
        "id".into(),
        id.map_or(Value::Null, |i| i.to_string().into()),
    );
    out.insert("created_at".into(), created_at.into());
    // Kong's credentials and groups have no `updated_at`.
    if !kind.is_credential() {
        out.insert("updated_at".into(), now.into());
    }
    Ok(Value::Object(out))
}

/// Kong's PATCH semantics for records: objects merge key by key, anything
/// else replaces.
pub fn merge_value(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge_value(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}
