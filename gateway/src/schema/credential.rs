//! The consumer credentials of the authentication plugins and acl's groups:
//! `keyauth_credentials`, `basicauth_credentials` and `acls`, with Kong 3.x's
//! fields. Each belongs to one consumer.

use serde_json::{Map, Value};

use super::fields::Fields;

/// key-auth: a key, generated when none is given (Kong's `auto = true`).
pub(super) fn validate_key(f: &mut Fields) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("consumer".into(), f.foreign("consumer", true));
    let key = match f.take("key") {
        None => Some(uuid::Uuid::new_v4().simple().to_string()),
        Some(Value::String(s)) if s.is_empty() => {
            f.error("key", "length must be at least 1");
            None
        }
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            f.error("key", "expected a string");
            None
        }
    };
    out.insert("key".into(), key.map_or(Value::Null, Value::from));
    out.insert("ttl".into(), Value::Null);
    f.take("ttl");
    out.insert("tags".into(), f.tags());
    out
}

/// basic-auth: a username and the password's hash (see [`hash_password`]).
pub(super) fn validate_basic(f: &mut Fields) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("consumer".into(), f.foreign("consumer", true));
    out.insert("username".into(), f.required_string("username").into());
    out.insert("password".into(), f.required_string("password").into());
    out.insert("tags".into(), f.tags());
    out
}

/// acl: one group of a consumer.
pub(super) fn validate_acl(f: &mut Fields) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("consumer".into(), f.foreign("consumer", true));
    out.insert("group".into(), f.required_string("group").into());
    out.insert("tags".into(), f.tags());
    out
}

/// Kong's basic-auth stores `sha1(password .. consumer_id)` in hex and shows
/// only that, so a password never leaves the Admin API in the clear and a
/// database moved from Kong keeps working. Replaces a string `password` in
/// `body` by its hash; the consumer is the body's or the stored one's.
/// Called where a password comes in (Admin API writes, the declarative
/// file), not on entities already stored, which hold the hash; a PATCH
/// without a password keeps the stored hash.
pub fn hash_password(body: &mut Map<String, Value>, existing: Option<&Value>) {
    let consumer = body
        .get("consumer")
        .or_else(|| existing.and_then(|e| e.get("consumer")))
        .and_then(|c| c.get("id"))
        .and_then(Value::as_str)
        .map(String::from);
    let (Some(consumer), Some(Value::String(password))) = (consumer, body.get_mut("password"))
    else {
        return;
    };
    if password.is_empty() {
        return;
    }
    *password = password_hash(password, &consumer);
}

/// The stored form of a basic-auth password.
pub fn password_hash(password: &str, consumer_id: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(password.as_bytes());
    ctx.update(consumer_id.as_bytes());
    let d = ctx.finish();
    let mut hex = String::with_capacity(40);
    for b in d.as_ref() {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}
