//! The consumers and their credentials as the authentication plugins read them
//! on the request path: built once per snapshot into hash maps, so a lookup
//! is one hash and the headers sent upstream are ready-made values.

use std::collections::HashMap;

use http::{HeaderMap, HeaderName, HeaderValue};
use uuid::Uuid;

use crate::model::Entities;

pub static CONSUMER_ID: HeaderName = HeaderName::from_static("x-consumer-id");
pub static CONSUMER_CUSTOM_ID: HeaderName = HeaderName::from_static("x-consumer-custom-id");
pub static CONSUMER_USERNAME: HeaderName = HeaderName::from_static("x-consumer-username");
pub static CREDENTIAL_IDENTIFIER: HeaderName = HeaderName::from_static("x-credential-identifier");
pub static ANONYMOUS_CONSUMER: HeaderName = HeaderName::from_static("x-anonymous-consumer");
pub static CONSUMER_GROUPS: HeaderName = HeaderName::from_static("x-consumer-groups");

/// One consumer, with the header values Kong sends upstream for it.
#[derive(Debug)]
pub struct Consumer {
    pub id: Uuid,
    /// Where it is in the snapshot's entities (the log entry's `consumer`).
    pub entity: usize,
    id_header: HeaderValue,
    username: Option<HeaderValue>,
    custom_id: Option<HeaderValue>,
    /// acl's groups, sorted.
    pub groups: Box<[Box<str>]>,
    /// The groups joined by ", " (acl's `X-Consumer-Groups`).
    pub groups_header: Option<HeaderValue>,
}

/// A key-auth credential: its id and consumer.
#[derive(Debug)]
pub struct Key {
    pub id: Uuid,
    pub consumer: Uuid,
    /// The id as sent upstream (`X-Credential-Identifier`), made once.
    pub id_header: HeaderValue,
}

/// A basic-auth credential.
#[derive(Debug)]
pub struct Basic {
    pub id: Uuid,
    pub consumer: Uuid,
    /// The stored hash ([`crate::schema::password_hash`]) as its digest;
    /// `None` for a stored value that is not one (no password matches).
    pub digest: Option<[u8; 20]>,
    /// The consumer's id as the digest reads it, made once.
    pub consumer_text: Box<str>,
    /// The username, sent upstream as `X-Credential-Identifier`.
    pub username: HeaderValue,
}

/// The maps' hasher: foldhash, a few instructions for a key or a UUID where
/// SipHash takes about a hundred. Its keys are written by the operator, not
/// by clients, so there is no flooding to resist.
type Fast = foldhash::fast::FixedState;

#[derive(Debug, Default)]
pub struct Directory {
    consumers: HashMap<Uuid, Consumer, Fast>,
    by_username: HashMap<Box<str>, Uuid, Fast>,
    keys: HashMap<Box<str>, Key, Fast>,
    basic: HashMap<Box<str>, Basic, Fast>,
}

impl Directory {
    pub fn new(e: &Entities) -> Directory {
        let mut groups: HashMap<Uuid, Vec<Box<str>>> = HashMap::new();
        for a in &e.acls {
            groups
                .entry(a.consumer.id)
                .or_default()
                .push(a.group.as_str().into());
        }
        let mut d = Directory::default();
        for (entity, c) in e.consumers.iter().enumerate() {
            let value =
                |s: &Option<String>| s.as_deref().and_then(|v| HeaderValue::from_str(v).ok());
            let mut g = groups.remove(&c.id).unwrap_or_default();
            g.sort();
            g.dedup();
            let groups_header = (!g.is_empty())
                .then(|| HeaderValue::from_str(&g.join(", ")).ok())
                .flatten();
            if let Some(u) = &c.username {
                d.by_username.insert(u.as_str().into(), c.id);
            }
            d.consumers.insert(
                c.id,
                Consumer {
                    id: c.id,
                    entity,
                    id_header: HeaderValue::from_str(&c.id.to_string())
                        .expect("a UUID is a header value"),
                    username: value(&c.username),
                    custom_id: value(&c.custom_id),
                    groups: g.into_boxed_slice(),
                    groups_header,
                },
            );
        }
        for k in &e.keyauth_credentials {
            d.keys.insert(
                k.key.as_str().into(),
                Key {
                    id: k.id,
                    consumer: k.consumer.id,
                    id_header: HeaderValue::from_str(&k.id.to_string())
                        .expect("a UUID is a header value"),
                },
            );
        }
        for b in &e.basicauth_credentials {
            let Ok(username) = HeaderValue::from_str(&b.username) else {
                continue;
            };
            d.basic.insert(
                b.username.as_str().into(),
                Basic {
                    id: b.id,
                    consumer: b.consumer.id,
                    digest: crate::schema::digest_of_hash(&b.password),
                    consumer_text: b.consumer.id.to_string().into(),
                    username,
                },
            );
        }
        d
    }

    pub fn consumer(&self, id: Uuid) -> Option<&Consumer> {
        self.consumers.get(&id)
    }

    /// Kong's `anonymous`: a consumer's id or username.
    pub fn anonymous(&self, key: &str) -> Option<&Consumer> {
        match key.parse::<Uuid>() {
            Ok(id) => self.consumers.get(&id),
            Err(_) => self
                .by_username
                .get(key)
                .and_then(|id| self.consumers.get(id)),
        }
    }

    pub fn key(&self, key: &str) -> Option<&Key> {
        self.keys.get(key)
    }

    pub fn basic(&self, username: &str) -> Option<&Basic> {
        self.basic.get(username)
    }
}

/// Kong's `set_consumer`: the consumer's headers upstream, replacing any the
/// client sent (a client must not name itself a consumer), and
/// `X-Anonymous-Consumer: true` when no credential identified it. A header
/// is cleared only when the client sent it: one pass over the names finds
/// them, so clearing an absent one costs no hashing.
pub fn set_consumer(headers: &mut HeaderMap, consumer: &Consumer, credential: Option<HeaderValue>) {
    let sent = sent_consumer_headers(headers);
    headers.insert(&CONSUMER_ID, consumer.id_header.clone());
    set_or_clear(
        headers,
        &CONSUMER_CUSTOM_ID,
        consumer.custom_id.clone(),
        sent & SENT_CUSTOM_ID != 0,
    );
    set_or_clear(
        headers,
        &CONSUMER_USERNAME,
        consumer.username.clone(),
        sent & SENT_USERNAME != 0,
    );
    let anonymous = credential.is_none();
    set_or_clear(
        headers,
        &CREDENTIAL_IDENTIFIER,
        credential,
        sent & SENT_CREDENTIAL != 0,
    );
    if anonymous {
        headers.insert(&ANONYMOUS_CONSUMER, HeaderValue::from_static("true"));
    } else if sent & SENT_ANONYMOUS != 0 {
        headers.remove(&ANONYMOUS_CONSUMER);
    }
}

const SENT_CUSTOM_ID: u8 = 1;
const SENT_USERNAME: u8 = 2;
const SENT_CREDENTIAL: u8 = 4;
const SENT_ANONYMOUS: u8 = 8;

/// Which of the headers [`set_consumer`] may clear are in `headers`, by
/// name length first (names are lowercase).
fn sent_consumer_headers(headers: &HeaderMap) -> u8 {
    let mut sent = 0;
    for name in headers.keys() {
        let s = name.as_str();
        sent |= match s.len() {
            19 if s == CONSUMER_USERNAME.as_str() => SENT_USERNAME,
            20 if s == CONSUMER_CUSTOM_ID.as_str() => SENT_CUSTOM_ID,
            20 if s == ANONYMOUS_CONSUMER.as_str() => SENT_ANONYMOUS,
            23 if s == CREDENTIAL_IDENTIFIER.as_str() => SENT_CREDENTIAL,
            _ => 0,
        };
    }
    sent
}

fn set_or_clear(
    headers: &mut HeaderMap,
    name: &HeaderName,
    value: Option<HeaderValue>,
    sent: bool,
) {
    match value {
        Some(v) => {
            headers.insert(name, v);
        }
        None if sent => {
            headers.remove(name);
        }
        None => {}
    }
}

/// Compares without an early exit, so the time taken says nothing about how
/// much of a password hash matched.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
