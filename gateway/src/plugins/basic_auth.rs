//! `basic-auth` (Kong 3.x): identifies the consumer by a username and
//! password in `Authorization` (or `Proxy-Authorization`) and answers 401
//! otherwise, unless an `anonymous` consumer is configured.

use base64::Engine;
use http::header::{AUTHORIZATION, PROXY_AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Response};
use serde_json::{json, Map, Value};

use super::consumers::{self, Directory};
use super::{Request, RequestState};
use crate::proxy::body::ProxyBody;
use crate::schema::fields::{opt, Fields};

pub const PRIORITY: u32 = 1100;

const UNAUTHORIZED: &str = "Unauthorized";

#[derive(Debug)]
pub struct Config {
    hide_credentials: bool,
    pub(super) anonymous: Option<Box<str>>,
    www_authenticate: HeaderValue,
}

pub(super) fn parse(f: &mut Fields) -> (Config, Map<String, Value>) {
    let anonymous = f.string("anonymous");
    let hide_credentials = f.boolean("hide_credentials", false);
    let realm = f.string("realm").unwrap_or_else(|| "service".to_string());
    let www_authenticate = HeaderValue::from_str(&format!("Basic realm=\"{realm}\""))
        .unwrap_or_else(|_| {
            f.error("realm", "not a valid header value");
            HeaderValue::from_static("Basic")
        });
    let mut out = Map::new();
    out.insert("anonymous".into(), opt(anonymous.clone()));
    out.insert("hide_credentials".into(), hide_credentials.into());
    out.insert("realm".into(), realm.into());
    let config = Config {
        hide_credentials,
        anonymous: anonymous.map(Into::into),
        www_authenticate,
    };
    (config, out)
}

pub(super) fn schema() -> Value {
    json!([
        {"anonymous": {"type": "string"}},
        {"hide_credentials": {"type": "boolean", "required": true, "default": false}},
        {"realm": {"type": "string", "required": true, "default": "service"}},
    ])
}

/// `Basic <base64(user:password)>` -> (user, password).
/// The header's `user:password`, decoded (one allocation; the caller
/// splits it).
fn credentials(value: &HeaderValue) -> Option<String> {
    let v = value.to_str().ok()?.trim_start();
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    String::from_utf8(decoded).ok().filter(|t| t.contains(':'))
}

pub(super) fn access(
    c: &Config,
    directory: &Directory,
    req: &mut Request<'_>,
    state: &mut RequestState,
) -> Option<Response<ProxyBody>> {
    if req.method == Method::OPTIONS && req.headers.get(AUTHORIZATION).is_none() {
        // Kong's basic-auth lets CORS preflights through.
        return None;
    }
    if c.anonymous.is_some() && state.credential.is_some() {
        return None;
    }
    let header = req
        .headers
        .get(AUTHORIZATION)
        .or_else(|| req.headers.get(PROXY_AUTHORIZATION));
    let Some(header) = header else {
        return fail(c, directory, req, state);
    };
    let Some(text) = credentials(header) else {
        return fail(c, directory, req, state);
    };
    let Some((user, password)) = text.split_once(':') else {
        return fail(c, directory, req, state);
    };
    let Some(cred) = directory.basic(user) else {
        return fail(c, directory, req, state);
    };
    let digest = crate::schema::password_digest(password.as_bytes(), &cred.consumer_text);
    if !cred
        .digest
        .is_some_and(|stored| consumers::same(&digest, &stored))
    {
        return fail(c, directory, req, state);
    }
    let Some(consumer) = directory.consumer(cred.consumer) else {
        return fail(c, directory, req, state);
    };
    if c.hide_credentials {
        req.headers.remove(AUTHORIZATION);
        req.headers.remove(PROXY_AUTHORIZATION);
    }
    consumers::set_consumer(req.headers, consumer, Some(cred.username.clone()));
    state.consumer = Some(consumer.id);
    state.credential = Some(cred.id);
    None
}

fn fail(
    c: &Config,
    directory: &Directory,
    req: &mut Request<'_>,
    state: &mut RequestState,
) -> Option<Response<ProxyBody>> {
    if let Some(anonymous) = &c.anonymous {
        return super::anonymous(directory, anonymous, req, state);
    }
    let mut r = super::error(401, UNAUTHORIZED, req.request_id);
    r.headers_mut()
        .insert(WWW_AUTHENTICATE, c.www_authenticate.clone());
    Some(r)
}
