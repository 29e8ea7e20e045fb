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

/// The stored form of a basic-auth password: Kong's, the SHA-1 of the
/// password and the consumer's id, in lowercase hex.
pub fn password_hash(password: &str, consumer_id: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    password_digest(password.as_bytes(), consumer_id)
        .iter()
        .flat_map(|b| {
            [
                HEX[(b >> 4) as usize] as char,
                HEX[(b & 15) as usize] as char,
            ]
        })
        .collect()
}

/// The digest [`password_hash`] writes in hex, for checking a password
/// without formatting anything.
pub fn password_digest(password: &[u8], consumer_id: &str) -> [u8; 20] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(password);
    ctx.update(consumer_id.as_bytes());
    let mut out = [0; 20];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// A stored hash back to its digest; `None` for one that is not 40 hex
/// digits (which no password then matches).
pub fn digest_of_hash(hash: &str) -> Option<[u8; 20]> {
    let bytes = hash.as_bytes();
    if bytes.len() != 40 {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0; 20];
    for (i, pair) in bytes.chunks(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSUMER: &str = "7f8c3a5e-1d2b-4c6d-9e0f-123456789abc";

    #[test]
    fn password_hash_is_kongs_sha1_hex_and_reads_back_as_its_digest() {
        // sha1("s3cret" .. consumer id), as Kong's basic-auth stores it.
        let hash = password_hash("s3cret", CONSUMER);
        assert_eq!(hash, "fa80f3d7054966ad319dab1c69033f413a194055");
        assert_eq!(
            digest_of_hash(&hash),
            Some(password_digest(b"s3cret", CONSUMER))
        );
        assert_ne!(
            digest_of_hash(&hash),
            Some(password_digest(b"s3cret!", CONSUMER))
        );
        for bad in ["", "fa80", &hash[..39], &format!("{}g", &hash[..39])] {
            assert_eq!(digest_of_hash(bad), None, "{bad}");
        }
    }
}
