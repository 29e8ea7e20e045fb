//! Protocols, URLs, hosts and `host:port` strings: rules shared by the
//! schemas, the declarative format and the snapshot builder.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::model::Protocol;

/// Every protocol Kong knows; only http and https are proxied here.
pub const KONG_PROTOCOLS: [&str; 10] = [
    "grpc",
    "grpcs",
    "http",
    "https",
    "tcp",
    "tls",
    "tls_passthrough",
    "udp",
    "ws",
    "wss",
];

pub fn parse_protocol(p: &str) -> Result<Protocol, String> {
    match p {
        "http" => Ok(Protocol::Http),
        "https" => Ok(Protocol::Https),
        other => Err(format!("`{other}` is not supported; use http or https")),
    }
}

/// Kong's service `url` shorthand: `scheme://host[:port][/path]`.
pub fn parse_url(url: &str) -> Result<(Protocol, String, u16, Option<String>), String> {
    let uri: http::Uri = url.parse().map_err(|_| format!("`{url}` is not a URL"))?;
    let protocol = parse_protocol(
        uri.scheme_str()
            .ok_or("the URL needs a scheme (http:// or https://)")?,
    )?;
    let host = uri.host().ok_or("the URL needs a host")?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(protocol.default_port());
    let path = match uri.path() {
        "" | "/" if !url.ends_with('/') => None,
        p => Some(p.to_string()),
    };
    if uri.query().is_some() {
        return Err("the URL must not have a query string".into());
    }
    Ok((protocol, host, port, path))
}

/// A service host: a host name, an IPv4 address or an IPv6 address (bare or
/// in brackets). Returns it normalised (IPv6 without brackets).
pub fn parse_host(s: &str) -> Result<String, String> {
    let inner = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    if inner.parse::<Ipv6Addr>().is_ok() {
        return Ok(inner.to_string());
    }
    if s.parse::<Ipv4Addr>().is_ok() {
        return Ok(s.to_string());
    }
    if split_host_port(s).is_ok_and(|(_, port)| port.is_some()) {
        return Err("must not have a port".into());
    }
    if is_hostname(s) {
        Ok(s.to_string())
    } else {
        Err(format!("invalid value: {s}"))
    }
}

/// Letters, digits, `-` and `_` in dot-separated non-empty labels.
pub fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.trim_end_matches('.').split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        })
}

/// `host`, `host:port`, `1.2.3.4:80`, `[::1]:80` or `::1`.
pub fn split_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    let bad = || format!("`{s}` is not host, host:port or [ipv6]:port");
    if s.is_empty() || s.contains(['/', ' ']) {
        return Err(bad());
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (host, tail) = rest.split_once(']').ok_or_else(bad)?;
        host.parse::<Ipv6Addr>().map_err(|_| bad())?;
        return match tail {
            "" => Ok((host.to_string(), None)),
            t => {
                let port = t
                    .strip_prefix(':')
                    .and_then(|p| p.parse().ok())
                    .filter(|p| *p != 0)
                    .ok_or_else(bad)?;
                Ok((host.to_string(), Some(port)))
            }
        };
    }
    if s.parse::<Ipv6Addr>().is_ok() {
        return Ok((s.to_string(), None));
    }
    match s.rsplit_once(':') {
        None => Ok((s.to_string(), None)),
        Some((host, port)) => {
            let port: u16 = port.parse().map_err(|_| bad())?;
            // A colon left in the host is neither a name nor an IPv4 address;
            // an IPv6 address with a port needs brackets (found by fuzzing:
            // `a:b:80` was accepted and exported as `[a:b]:80`).
            if host.is_empty() || host.contains(':') || port == 0 {
                return Err(bad());
            }
            Ok((host.to_string(), Some(port)))
        }
    }
}

pub fn format_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
