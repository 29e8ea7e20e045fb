//! The client address and the `X-Real-IP` / `X-Forwarded-*` headers sent
//! upstream, with Kong's trust rules: a client's own forwarding headers are
//! believed only when its address is in `trusted_ips`.

use std::net::{IpAddr, SocketAddr};

use http::header::{Entry, HeaderMap, HeaderName, HeaderValue};

use crate::config::trusted::canonical;
use crate::config::{RealIpHeader, TrustedIps};
use crate::model::Protocol;
use crate::proxy_protocol::ProxyHeader;

pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub static X_FORWARDED_PATH: HeaderName = HeaderName::from_static("x-forwarded-path");
pub static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");

/// How the node decides who the client is.
#[derive(Debug, Clone)]
pub struct Forwarding {
    pub trusted_ips: TrustedIps,
    pub real_ip_header: RealIpHeader,
    pub real_ip_recursive: bool,
}

/// Worked out once per connection, so a request only clones header values.
pub struct ConnectionInfo {
    pub scheme: Protocol,
    /// The PROXY header's source, else the socket peer.
    pub client: IpAddr,
    /// Whether `client` may set forwarding headers.
    pub trusted: bool,
    client_value: HeaderValue,
    port_value: HeaderValue,
}

impl ConnectionInfo {
    pub fn new(
        scheme: Protocol,
        peer: SocketAddr,
        local: SocketAddr,
        proxy: Option<&ProxyHeader>,
        forwarding: &Forwarding,
    ) -> Self {
        let client = canonical(proxy.and_then(|p| p.source).unwrap_or(peer).ip());
        // The port the client connected to: the load balancer's, when it says.
        let port = proxy
            .and_then(|p| p.destination)
            .map_or(local.port(), |d| d.port());
        ConnectionInfo {
            scheme,
            client,
            trusted: forwarding.trusted_ips.contains(client),
            client_value: ip_value(client),
            port_value: HeaderValue::from(port),
        }
    }
}

fn ip_value(ip: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&ip.to_string()).expect("an IP address is a valid header value")
}

/// Sets the forwarding headers on a request going upstream. `host` is the
/// client's Host (without port), `path` its path, `prefix` the part stripped.
pub fn apply(
    headers: &mut HeaderMap,
    conn: &ConnectionInfo,
    forwarding: &Forwarding,
    host: &str,
    path: &str,
    prefix: Option<&str>,
) {
    let real_ip = if conn.trusted {
        real_ip_from_headers(headers, forwarding)
    } else {
        None
    };
    // Entries: one hash per header, found or not.
    match headers.entry(&X_FORWARDED_FOR) {
        Entry::Occupied(mut e) => {
            let prev = e.get();
            let mut v = Vec::with_capacity(prev.len() + 2 + conn.client_value.len());
            v.extend_from_slice(prev.as_bytes());
            v.extend_from_slice(b", ");
            v.extend_from_slice(conn.client_value.as_bytes());
            e.insert(HeaderValue::from_bytes(&v).unwrap_or_else(|_| conn.client_value.clone()));
        }
        Entry::Vacant(e) => {
            e.insert(conn.client_value.clone());
        }
    }
    headers.insert(
        &X_REAL_IP,
        real_ip.map_or_else(|| conn.client_value.clone(), ip_value),
    );
    let keep_client_values = conn.trusted;
    set(headers, &X_FORWARDED_PROTO, keep_client_values, || {
        HeaderValue::from_static(conn.scheme.as_str())
    });
    set(headers, &X_FORWARDED_HOST, keep_client_values, || {
        HeaderValue::from_str(host).unwrap_or(HeaderValue::from_static(""))
    });
    set(headers, &X_FORWARDED_PORT, keep_client_values, || {
        conn.port_value.clone()
    });
    set(headers, &X_FORWARDED_PATH, keep_client_values, || {
        HeaderValue::from_str(path).unwrap_or(HeaderValue::from_static("/"))
    });
    match prefix {
        Some(p) if !p.is_empty() => set(headers, &X_FORWARDED_PREFIX, keep_client_values, || {
            HeaderValue::from_str(p).unwrap_or(HeaderValue::from_static("/"))
        }),
        _ if !keep_client_values => {
            headers.remove(&X_FORWARDED_PREFIX);
        }
        _ => {}
    }
}

fn set(
    headers: &mut HeaderMap,
    name: &HeaderName,
    keep: bool,
    value: impl FnOnce() -> HeaderValue,
) {
    match headers.entry(name) {
        Entry::Occupied(_) if keep => {}
        Entry::Occupied(mut e) => {
            e.insert(value());
        }
        Entry::Vacant(e) => {
            e.insert(value());
        }
    }
}

/// The client's address as nginx's realip module makes `$remote_addr`
/// (what Kong's plugins see): from `real_ip_header` when the connection's
/// address is trusted, else the connection's (after PROXY protocol).
pub fn client_ip(headers: &HeaderMap, conn: &ConnectionInfo, forwarding: &Forwarding) -> IpAddr {
    if conn.trusted {
        real_ip_from_headers(headers, forwarding).unwrap_or(conn.client)
    } else {
        conn.client
    }
}

/// nginx realip: the last address of the header, or with `real_ip_recursive`
/// the last one that is not itself trusted.
fn real_ip_from_headers(headers: &HeaderMap, forwarding: &Forwarding) -> Option<IpAddr> {
    let RealIpHeader::Header(name) = &forwarding.real_ip_header else {
        return None;
    };
    let mut found = None;
    for value in headers.get_all(name).iter().rev() {
        let text = value.to_str().ok()?;
        for item in text.rsplit(',') {
            let ip: IpAddr = parse_ip(item.trim())?;
            let ip = canonical(ip);
            found = Some(ip);
            if !forwarding.real_ip_recursive || !forwarding.trusted_ips.contains(ip) {
                return found;
            }
        }
    }
    found
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse().ok().or_else(|| {
        // `1.2.3.4:5678` and `[::1]:80` as some proxies write them.
        s.parse::<SocketAddr>().ok().map(|a| a.ip())
    })
}

#[cfg(test)]
mod tests;
