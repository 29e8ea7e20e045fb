//! `cors`: Cross-Origin Resource Sharing (Kong 3.x). A preflight (`OPTIONS`
//! with `Origin` and `Access-Control-Request-Method`) is answered 200 by the
//! gateway itself unless `preflight_continue`; other responses get the
//! `Access-Control-*` headers in the header filter.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use regex::Regex;
use serde_json::{json, Map, Value};

use super::{Request, RequestState};
use crate::proxy::body::ProxyBody;
use crate::schema::fields::{opt, Fields};

pub const PRIORITY: u32 = 2000;

const METHODS: [&str; 9] = [
    "GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT",
];

static REQUEST_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-request-private-network");
static ALLOW_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-allow-private-network");

#[derive(Debug)]
enum Origin {
    /// A plain origin, normalised: matched by equality.
    Exact(String),
    /// A regex, anchored at the start and the end; matched against the
    /// request origin's host when the entry has no `:`, else against its
    /// normalised `scheme://host[:port]`.
    Regex { regex: Regex, by_host: bool },
}

#[derive(Debug)]
pub struct Config {
    /// No origins, or only `*`: every origin.
    allow_all: bool,
    /// A single plain origin is sent as is, whatever the request's origin.
    single: Option<HeaderValue>,
    origins: Vec<Origin>,
    headers: Option<HeaderValue>,
    exposed_headers: Option<HeaderValue>,
    methods: HeaderValue,
    max_age: Option<HeaderValue>,
    credentials: bool,
    private_network: bool,
    preflight_continue: bool,
    allow_origin_absent: bool,
}

/// Kong's `normalize_origin`: `(scheme://host[:port], host)`, the default
/// port of http and https left out; input without a host stays as is.
fn normalize_origin(origin: &str) -> (String, &str) {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return (origin.to_string(), origin);
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = match authority.rfind(']') {
        Some(end) => match authority[end + 1..].strip_prefix(':') {
            Some(p) => (&authority[..=end], Some(p)),
            None => (authority, None),
        },
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return (origin.to_string(), origin);
    }
    let port = match (scheme, port) {
        ("http", Some("80")) | ("https", Some("443")) => None,
        (_, p) => p,
    };
    let mut domain = format!("{scheme}://{host}");
    if let Some(p) = port {
        domain.push(':');
        domain.push_str(p);
    }
    (domain, host)
}

fn joined(f: &mut Fields, field: &str, list: &Option<Vec<String>>) -> Option<HeaderValue> {
    let list = list.as_ref().filter(|l| !l.is_empty())?;
    match HeaderValue::from_str(&list.join(",")) {
        Ok(v) => Some(v),
        Err(_) => {
            f.error(field, "not a valid header value");
            None
        }
    }
}

pub(super) fn parse(f: &mut Fields) -> (Config, Map<String, Value>) {
    let origins = f.strings("origins");
    let mut compiled = Vec::new();
    for (i, o) in origins.iter().flatten().enumerate() {
        if o == "*" {
            continue;
        }
        // Kong: an entry with characters outside [A-Za-z0-9.:/-] is a regex.
        let is_regex = o
            .bytes()
            .any(|b| !(b.is_ascii_alphanumeric() || b".:/-".contains(&b)));
        if !is_regex {
            compiled.push(Origin::Exact(normalize_origin(o).0));
            continue;
        }
        let by_host = !o.contains(':');
        let body = o.strip_prefix('^').unwrap_or(o);
        let body = body.strip_suffix('$').unwrap_or(body);
        match Regex::new(&format!("^(?:{body})$")) {
            Ok(regex) => compiled.push(Origin::Regex { regex, by_host }),
            Err(_) => f.error(
                &format!("origins[{i}]"),
                format!("'{o}' is not a valid regex"),
            ),
        }
    }
    let headers = f.strings("headers");
    let exposed_headers = f.strings("exposed_headers");
    let methods = match f.strings("methods") {
        None => METHODS.map(String::from).to_vec(),
        Some(list) => {
            for (i, m) in list.iter().enumerate() {
                if !METHODS.contains(&m.as_str()) {
                    f.error(
                        &format!("methods[{i}]"),
                        format!("expected one of: {}", METHODS.join(", ")),
                    );
                }
            }
            list
        }
    };
    let max_age = f.number("max_age");
    let credentials = f.boolean("credentials", false);
    let private_network = f.boolean("private_network", false);
    let preflight_continue = f.boolean("preflight_continue", false);
    let allow_origin_absent = f.boolean("allow_origin_absent", true);

    let headers_value = joined(f, "headers", &headers);
    let exposed_value = joined(f, "exposed_headers", &exposed_headers);
    let methods_value =
        HeaderValue::from_str(&methods.join(",")).unwrap_or(HeaderValue::from_static("GET"));
    let max_age_value = max_age.map(|n| {
        let text = if n.fract() == 0.0 && n.abs() < 1e15 {
            format!("{}", n as i64)
        } else {
            n.to_string()
        };
        HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("0"))
    });
    let allow_all = match &origins {
        None => true,
        Some(list) => list.is_empty() || (list.len() == 1 && list[0] == "*"),
    };
    let single = match (&origins, compiled.as_slice()) {
        (Some(list), [Origin::Exact(_)]) if list.len() == 1 => HeaderValue::from_str(&list[0]).ok(),
        _ => None,
    };

    let mut out = Map::new();
    out.insert("origins".into(), opt(origins));
    out.insert("headers".into(), opt(headers));
    out.insert("exposed_headers".into(), opt(exposed_headers));
    out.insert("methods".into(), methods.into());
    // JSON numbers as given: 3600 stays 3600, not 3600.0.
    let max_age_out = max_age.map(|n| match n.fract() == 0.0 && n.abs() < 1e15 {
        true => Value::from(n as i64),
        false => Value::from(n),
    });
    out.insert("max_age".into(), opt(max_age_out));
    out.insert("credentials".into(), credentials.into());
    out.insert("private_network".into(), private_network.into());
    out.insert("preflight_continue".into(), preflight_continue.into());
    out.insert("allow_origin_absent".into(), allow_origin_absent.into());
    let config = Config {
        allow_all,
        single,
        origins: compiled,
        headers: headers_value,
        exposed_headers: exposed_value,
        methods: methods_value,
        max_age: max_age_value,
        credentials,
        private_network,
        preflight_continue,
        allow_origin_absent,
    };
    (config, out)
}

impl Config {
    /// Sets Access-Control-Allow-Origin (and Vary); true when every origin
    /// is allowed. Kong's `configure_origin`.
    fn origin(&self, origin: Option<&HeaderValue>, headers: &mut HeaderMap) -> bool {
        if self.allow_all {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
            return true;
        }
        // Always, so caches key on the origin.
        headers.append(VARY, HeaderValue::from_static("Origin"));
        if let Some(v) = &self.single {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, v.clone());
            return false;
        }
        if let Some(o) = origin.and_then(|o| o.to_str().ok()) {
            let (domain, host) = normalize_origin(o);
            let found = self.origins.iter().any(|rule| match rule {
                Origin::Exact(d) => *d == domain,
                Origin::Regex { regex, by_host } => {
                    regex.is_match(if *by_host { host } else { &domain })
                }
            });
            if found {
                if let Ok(v) = HeaderValue::from_str(&domain) {
                    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, v);
                    return false;
                }
            }
        }
        // Not allowed: no upstream's Allow-Origin gets through either.
        headers.remove(ACCESS_CONTROL_ALLOW_ORIGIN);
        false
    }

    /// Kong's `configure_credentials`: with every origin allowed, the origin
    /// is echoed instead of `*`, which browsers refuse with credentials.
    fn credentials(&self, allow_all: bool, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
        if !self.credentials {
            return;
        }
        let yes = HeaderValue::from_static("true");
        if !allow_all {
            headers.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, yes);
            return;
        }
        if let Some(o) = origin {
            headers.append(VARY, HeaderValue::from_static("Origin"));
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, o.clone());
            headers.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, yes);
        }
    }
}

pub(super) fn access(
    c: &Config,
    req: &Request<'_>,
    state: &mut RequestState,
) -> Option<http::Response<ProxyBody>> {
    let origin = req.headers.get(ORIGIN);
    let preflight = req.method == Method::OPTIONS
        && origin.is_some()
        && req.headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD);
    if !preflight {
        state.cors_origin = origin.cloned();
        return None;
    }
    // The preflight's headers are made here, or by the upstream with
    // preflight_continue: the header filter adds none.
    state.cors_skip = true;
    if c.preflight_continue {
        return None;
    }
    let mut r = http::Response::new(ProxyBody::empty());
    let h = r.headers_mut();
    let allow_all = c.origin(origin, h);
    c.credentials(allow_all, origin, h);
    match (&c.headers, req.headers.get(ACCESS_CONTROL_REQUEST_HEADERS)) {
        (Some(v), _) | (None, Some(v)) => {
            h.insert(ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
        }
        (None, None) => {}
    }
    h.insert(ACCESS_CONTROL_ALLOW_METHODS, c.methods.clone());
    if let Some(v) = &c.max_age {
        h.insert(ACCESS_CONTROL_MAX_AGE, v.clone());
    }
    if c.private_network
        && req
            .headers
            .get(&REQUEST_PRIVATE_NETWORK)
            .is_some_and(|v| v == "true")
    {
        h.insert(
            ALLOW_PRIVATE_NETWORK.clone(),
            HeaderValue::from_static("true"),
        );
    }
    Some(r)
}

pub(super) fn header_filter(c: &Config, state: &RequestState, headers: &mut HeaderMap) {
    if state.cors_skip {
        return;
    }
    let origin = state.cors_origin.as_ref();
    if !c.allow_origin_absent && origin.is_none() {
        return;
    }
    let allow_all = c.origin(origin, headers);
    c.credentials(allow_all, origin, headers);
    if let Some(v) = &c.exposed_headers {
        headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
    }
}

pub(super) fn schema() -> Value {
    json!([
        {"origins": {"type": "array", "elements": {"type": "string"}}},
        {"headers": {"type": "array", "elements": {"type": "string"}}},
        {"exposed_headers": {"type": "array", "elements": {"type": "string"}}},
        {"methods": {"type": "array", "default": METHODS,
                     "elements": {"type": "string", "one_of": METHODS}}},
        {"max_age": {"type": "number"}},
        {"credentials": {"type": "boolean", "default": false, "required": true}},
        {"private_network": {"type": "boolean", "default": false, "required": true}},
        {"preflight_continue": {"type": "boolean", "default": false, "required": true}},
        {"allow_origin_absent": {"type": "boolean", "default": true, "required": true}},
    ])
}
