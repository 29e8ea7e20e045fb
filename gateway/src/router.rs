//! Request router with Kong 3.x `traditional_compatible` matching semantics.
//!
//! Routes are bucketed by host: a hash map of exact hosts, hash maps of
//! wildcard suffixes and prefixes, and one bucket for routes without hosts.
//! Inside a bucket, plain path prefixes are hashed per distinct length and
//! regex paths share a `RegexSet`. Candidates are tried in priority order
//! and pruned against the best match found so far, so a lookup never scans
//! the whole table.

mod compile;
mod index;
#[cfg(test)]
mod tests;

use std::fmt;

use crate::model::Route;
use compile::{CompiledRoute, HostKind};
use index::{Best, Bucket, BucketBuilder, HostBuckets, Map};

/// What the router looks at in a request.
pub struct RouteRequest<'a> {
    pub method: &'a http::Method,
    /// Host header or `:authority` as received: may carry a port, may be
    /// upper case, may be empty.
    pub host: &'a str,
    /// Request path without the query string, as received.
    pub path: &'a str,
    pub headers: &'a http::HeaderMap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch {
    /// Index into the slice given to [`Router::build`].
    pub route: usize,
    /// Bytes at the start of the path consumed by the matching path; 0 when
    /// the route has no paths.
    pub matched_path_len: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("route `{route}`: {field}: {message}")]
pub struct RouterError {
    pub route: String,
    pub field: String,
    pub message: String,
}

/// An immutable routing table.
pub struct Router {
    routes: Box<[CompiledRoute]>,
    exact: Map<HostBuckets>,
    /// `*.example.com`, keyed by `.example.com`.
    suffix: Map<HostBuckets>,
    /// `example.*`, keyed by `example.`.
    prefix: Map<HostBuckets>,
    any_host: Bucket,
}

type Builders = Map<Vec<(Option<u16>, BucketBuilder)>>;

fn bucket_for<'a>(map: &'a mut Builders, key: &[u8], port: Option<u16>) -> &'a mut BucketBuilder {
    let list = map.entry(key.into()).or_default();
    let pos = match list.iter().position(|(p, _)| *p == port) {
        Some(pos) => pos,
        None => {
            list.push((port, BucketBuilder::default()));
            list.len() - 1
        }
    };
    &mut list[pos].1
}

fn finish(map: Builders, routes: &[CompiledRoute]) -> Map<HostBuckets> {
    map.into_iter()
        .map(|(key, list)| {
            let buckets = list.into_iter().map(|(port, b)| (port, b.finish(routes)));
            (key, HostBuckets(buckets.collect()))
        })
        .collect()
}

impl Router {
    /// Validates and indexes `routes` (creation order: index 0 is oldest).
    pub fn build(routes: &[Route]) -> Result<Router, RouterError> {
        let compiled = routes
            .iter()
            .enumerate()
            .map(|(i, r)| compile::compile(i, r))
            .collect::<Result<Vec<_>, _>>()?;
        let (mut exact, mut suffix, mut prefix) = (
            Builders::default(),
            Builders::default(),
            Builders::default(),
        );
        let mut any_host = BucketBuilder::default();
        for (i, route) in compiled.iter().enumerate() {
            let idx = u32::try_from(i).expect("more than u32::MAX routes");
            if route.hosts.is_empty() {
                any_host.add(idx, route);
            }
            for host in &route.hosts {
                let map = match host.kind {
                    HostKind::Exact => &mut exact,
                    HostKind::Suffix => &mut suffix,
                    HostKind::Prefix => &mut prefix,
                };
                bucket_for(map, &host.key, host.port).add(idx, route);
            }
        }
        Ok(Router {
            exact: finish(exact, &compiled),
            suffix: finish(suffix, &compiled),
            prefix: finish(prefix, &compiled),
            any_host: any_host.finish(&compiled),
            routes: compiled.into_boxed_slice(),
        })
    }

    /// The highest-priority route matching `req`, if any.
    pub fn find(&self, req: &RouteRequest<'_>) -> Option<RouteMatch> {
        let mut best = Best::default();
        let routes = &self.routes[..];
        if !(self.exact.is_empty() && self.suffix.is_empty() && self.prefix.is_empty()) {
            let raw = req.host.as_bytes();
            let mut buf: [u8; 256];
            let owned: Vec<u8>;
            // No early exit: this loop vectorises.
            let upper = raw
                .iter()
                .fold(false, |acc, c| acc | c.is_ascii_uppercase());
            let host: &[u8] = if !upper {
                raw
            } else if raw.len() <= 256 {
                buf = [0; 256];
                let b = &mut buf[..raw.len()];
                b.copy_from_slice(raw);
                b.make_ascii_lowercase();
                b
            } else {
                owned = raw.to_ascii_lowercase();
                &owned
            };
            let (name, port) = split_host(host);
            if !name.is_empty() {
                if let Some(hb) = self.exact.get(name) {
                    hb.search(port, routes, req, &mut best);
                }
                if !(self.suffix.is_empty() && self.prefix.is_empty()) {
                    for (i, _) in name.iter().enumerate().filter(|(_, c)| **c == b'.') {
                        if let Some(hb) = self.suffix.get(&name[i..]) {
                            hb.search(port, routes, req, &mut best);
                        }
                        if let Some(hb) = self.prefix.get(&name[..=i]) {
                            hb.search(port, routes, req, &mut best);
                        }
                    }
                }
            }
        }
        self.any_host.search(routes, req, &mut best);
        best.found.map(|(route, matched_path_len)| RouteMatch {
            route: route as usize,
            matched_path_len,
        })
    }

    /// Number of routes given to [`Router::build`].
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.routes.len())
            .field("exact_hosts", &self.exact.len())
            .field("wildcard_hosts", &(self.suffix.len() + self.prefix.len()))
            .finish_non_exhaustive()
    }
}

/// Splits a lower-cased Host value into name and port; drops a trailing dot
/// from the name as nginx does. A malformed port leaves the value whole.
fn split_host(host: &[u8]) -> (&[u8], Option<u16>) {
    let colon = if host.first() == Some(&b'[') {
        match host.iter().position(|&c| c == b']') {
            Some(end) if host.get(end + 1) == Some(&b':') => Some(end + 1),
            _ => None,
        }
    } else {
        host.iter().rposition(|&c| c == b':')
    };
    let (name, port) = match colon {
        Some(c) if c + 1 == host.len() => (&host[..c], None),
        Some(c) => match parse_port(&host[c + 1..]) {
            Some(p) => (&host[..c], Some(p)),
            None => (host, None),
        },
        None => (host, None),
    };
    (name.strip_suffix(b".").unwrap_or(name), port)
}

pub(crate) fn parse_port(s: &[u8]) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = s.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    u16::try_from(n).ok()
}
