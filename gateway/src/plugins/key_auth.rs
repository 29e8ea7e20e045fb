//! `key-auth` (Kong 3.x): identifies the consumer by an API key in a header
//! or the query string, sends Kong's consumer headers upstream, and answers
//! 401 without a valid key unless an `anonymous` consumer is configured.

use http::header::WWW_AUTHENTICATE;
use http::{HeaderName, HeaderValue, Method, Response, Uri};
use serde_json::{json, Map, Value};

use super::consumers::{self, Directory};
use super::{Request, RequestState};
use crate::proxy::body::ProxyBody;
use crate::schema::fields::{opt, Fields};

pub const PRIORITY: u32 = 1250;

const NO_KEY: &str = "No API key found in request";
const DUPLICATE: &str = "Duplicate API key found";
const INVALID: &str = "Unauthorized";

#[derive(Debug)]
pub struct Config {
    /// The key names as given (query arguments) and as header names.
    key_names: Box<[(Box<str>, Option<HeaderName>)]>,
    hide_credentials: bool,
    pub(super) anonymous: Option<Box<str>>,
    key_in_header: bool,
    key_in_query: bool,
    run_on_preflight: bool,
    www_authenticate: HeaderValue,
}

pub(super) fn parse(f: &mut Fields) -> (Config, Map<String, Value>) {
    let names = f
        .strings("key_names")
        .unwrap_or_else(|| vec!["apikey".to_string()]);
    let mut key_names = Vec::with_capacity(names.len());
    for (i, n) in names.iter().enumerate() {
        let header = super::header_name(f, &format!("key_names[{i}]"), n);
        key_names.push((n.as_str().into(), header));
    }
    let hide_credentials = f.boolean("hide_credentials", false);
    let anonymous = f.string("anonymous");
    let key_in_header = f.boolean("key_in_header", true);
    let key_in_query = f.boolean("key_in_query", true);
    let key_in_body = f.boolean("key_in_body", false);
    if key_in_body {
        // Reading a form or JSON body before the upstream sees it would hold
        // every request body of the route in memory; not done here.
        f.error(
            "key_in_body",
            "keys in the request body are not supported by this gateway; send the key in a header or the query string",
        );
    }
    let run_on_preflight = f.boolean("run_on_preflight", true);
    let realm = f.string("realm");
    let www_authenticate = match &realm {
        Some(r) => HeaderValue::from_str(&format!("Key realm=\"{r}\"")).unwrap_or_else(|_| {
            f.error("realm", "not a valid header value");
            HeaderValue::from_static("Key")
        }),
        None => HeaderValue::from_static("Key"),
    };
    let mut out = Map::new();
    out.insert("key_names".into(), json!(names));
    out.insert("hide_credentials".into(), hide_credentials.into());
    out.insert("anonymous".into(), opt(anonymous.clone()));
    out.insert("key_in_header".into(), key_in_header.into());
    out.insert("key_in_query".into(), key_in_query.into());
    out.insert("key_in_body".into(), key_in_body.into());
    out.insert("run_on_preflight".into(), run_on_preflight.into());
    out.insert("realm".into(), opt(realm));
    let config = Config {
        key_names: key_names.into_boxed_slice(),
        hide_credentials,
        anonymous: anonymous.map(Into::into),
        key_in_header,
        key_in_query,
        run_on_preflight,
        www_authenticate,
    };
    (config, out)
}

pub(super) fn schema() -> Value {
    json!([
        {"key_names": {"type": "array", "required": true, "default": ["apikey"], "elements": {"type": "string"}}},
        {"hide_credentials": {"type": "boolean", "required": true, "default": false}},
        {"anonymous": {"type": "string"}},
        {"key_in_header": {"type": "boolean", "required": true, "default": true}},
        {"key_in_query": {"type": "boolean", "required": true, "default": true}},
        {"key_in_body": {"type": "boolean", "required": true, "default": false}},
        {"run_on_preflight": {"type": "boolean", "required": true, "default": true}},
        {"realm": {"type": "string", "required": false}},
    ])
}

enum Found<'d> {
    None,
    Duplicate,
    /// The key in the header of `key_names[i]`, and its credential if any.
    Header(usize, Option<&'d consumers::Key>),
    /// The key in the query argument of `key_names[i]`.
    Query(usize, Option<&'d consumers::Key>),
}

/// The key, looked up where it was found: nothing of the request is copied.
fn find<'d>(c: &Config, directory: &'d Directory, req: &Request<'_>) -> Found<'d> {
    for (i, (name, header)) in c.key_names.iter().enumerate() {
        if c.key_in_header {
            if let Some(h) = header {
                let mut values = req.headers.get_all(h).iter();
                if let Some(v) = values.next() {
                    if values.next().is_some() {
                        return Found::Duplicate;
                    }
                    return Found::Header(i, v.to_str().ok().and_then(|k| directory.key(k)));
                }
            }
        }
        if c.key_in_query {
            if let Some(q) = req.uri.query() {
                let mut values = form_urlencoded::parse(q.as_bytes()).filter(|(k, _)| k == &**name);
                if let Some((_, v)) = values.next() {
                    if values.next().is_some() {
                        return Found::Duplicate;
                    }
                    return Found::Query(i, directory.key(&v));
                }
            }
        }
    }
    Found::None
}

pub(super) fn access(
    c: &Config,
    directory: &Directory,
    req: &mut Request<'_>,
    state: &mut RequestState,
) -> Option<Response<ProxyBody>> {
    if !c.run_on_preflight && req.method == Method::OPTIONS {
        return None;
    }
    // Another authentication plugin already identified a consumer by a
    // credential: with `anonymous` set, this one is one of several ways in.
    if c.anonymous.is_some() && state.credential.is_some() {
        return None;
    }
    let failure = match find(c, directory, req) {
        Found::None => (NO_KEY, true),
        Found::Duplicate => (DUPLICATE, false),
        Found::Header(i, Some(key)) => {
            return identified(c, directory, req, state, key, Hide::Header(i))
        }
        Found::Query(i, Some(key)) => {
            return identified(c, directory, req, state, key, Hide::Query(i))
        }
        Found::Header(_, None) | Found::Query(_, None) => (INVALID, true),
    };
    if let Some(anonymous) = &c.anonymous {
        return super::anonymous(directory, anonymous, req, state);
    }
    let mut r = super::error(401, failure.0, req.request_id);
    if failure.1 {
        r.headers_mut()
            .insert(WWW_AUTHENTICATE, c.www_authenticate.clone());
    }
    Some(r)
}

/// Where the key was found: the index of its name in `key_names`.
enum Hide {
    Header(usize),
    Query(usize),
}

fn identified(
    c: &Config,
    directory: &Directory,
    req: &mut Request<'_>,
    state: &mut RequestState,
    key: &consumers::Key,
    found: Hide,
) -> Option<Response<ProxyBody>> {
    let Some(consumer) = directory.consumer(key.consumer) else {
        // A credential whose consumer is gone: the database cascades, so
        // only a hand-made declarative file gets here.
        return Some(super::error(401, INVALID, req.request_id));
    };
    if c.hide_credentials {
        match found {
            Hide::Header(i) => {
                if let Some(name) = &c.key_names[i].1 {
                    req.headers.remove(name);
                }
            }
            Hide::Query(i) => {
                state.uri = Some(Box::new(without_query_arg(
                    state.uri.as_deref().unwrap_or(req.uri),
                    &c.key_names[i].0,
                )))
            }
        }
    }
    consumers::set_consumer(req.headers, consumer, Some(key.id_header.clone()));
    state.consumer = Some(consumer.id);
    state.credential = Some(key.id);
    None
}

/// The URI without the query argument `name` (every occurrence).
pub(super) fn without_query_arg(uri: &Uri, name: &str) -> Uri {
    let Some(q) = uri.query() else {
        return uri.clone();
    };
    let mut kept = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        if k != name {
            kept.append_pair(&k, &v);
            any = true;
        }
    }
    let rest = kept.finish();
    let pq = if any {
        format!("{}?{rest}", uri.path())
    } else {
        uri.path().to_string()
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = pq.parse().ok();
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}
