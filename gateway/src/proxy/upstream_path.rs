//! The upstream request target: Kong's `strip_path` and `path_handling` rules
//! joining the service path and what remains of the request path.

use http::Uri;

use crate::model::PathHandling;
use crate::snapshot::{RouteEntry, ServiceEntry};

/// `uri` with its path replaced by `path` (request-transformer's
/// `replace.uri`), the query kept; unchanged if `path` cannot be a path.
pub fn with_path(uri: &Uri, path: &str) -> Uri {
    let mut out = String::with_capacity(path.len() + 16);
    if !path.starts_with('/') {
        out.push('/');
    }
    out.push_str(path);
    if let Some(q) = uri.query() {
        out.push('?');
        out.push_str(q);
    }
    out.parse().unwrap_or_else(|_| uri.clone())
}

/// The origin-form URI for the upstream request; None if it cannot be formed.
pub fn build(
    uri: &Uri,
    matched_len: usize,
    route: &RouteEntry,
    service: &ServiceEntry,
) -> Option<Uri> {
    let path = uri.path();
    let service_path = service.path.as_deref();
    let rest = match (route.strip_path, route.path_handling) {
        (true, _) => &path[matched_len.min(path.len())..],
        // v1 joins the service path and the request path minus its first slash.
        (false, PathHandling::V1) if service_path.is_some() => {
            path.strip_prefix('/').unwrap_or(path)
        }
        (false, _) => path,
    };
    // Nothing to change: reuse the client's target as it is.
    if service_path.is_none() && rest.len() == path.len() {
        return Some(match uri.path_and_query() {
            Some(pq) => Uri::from(pq.clone()),
            None => Uri::from_static("/"),
        });
    }
    let mut out = String::with_capacity(path.len() + service_path.map_or(1, str::len) + 16);
    join(&mut out, service_path, rest, route.path_handling);
    if let Some(q) = uri.query() {
        out.push('?');
        out.push_str(q);
    }
    out.parse().ok()
}

fn join(out: &mut String, service_path: Option<&str>, rest: &str, handling: PathHandling) {
    let base = service_path.unwrap_or("/");
    match handling {
        PathHandling::V1 if service_path.is_some() => {
            out.push_str(base);
            out.push_str(rest);
        }
        _ => {
            out.push_str(base);
            if rest.is_empty() {
                return;
            }
            if base.ends_with('/') && rest.starts_with('/') {
                out.push_str(&rest[1..]);
            } else {
                out.push_str(rest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(service: Option<&str>, rest: &str, h: PathHandling) -> String {
        let mut s = String::new();
        join(&mut s, service, rest, h);
        s
    }

    /// Kong's documented path_handling table (route path /fv0 or /fv1).
    #[test]
    fn kong_path_handling_table() {
        use PathHandling::*;
        // strip_path = true: the remainder after /fvX.
        assert_eq!(joined(Some("/s"), "req", V0), "/sreq");
        assert_eq!(joined(Some("/s"), "/req", V0), "/s/req");
        assert_eq!(joined(Some("/s/"), "req", V0), "/s/req");
        assert_eq!(joined(Some("/s/"), "/req", V0), "/s/req");
        assert_eq!(joined(Some("/s"), "req", V1), "/sreq");
        assert_eq!(joined(Some("/s"), "/req", V1), "/s/req");
        assert_eq!(joined(Some("/s/"), "req", V1), "/s/req");
        assert_eq!(joined(Some("/s/"), "/req", V1), "/s//req");
        // strip_path = false: the whole request path.
        assert_eq!(joined(Some("/s"), "/fv0req", V0), "/s/fv0req");
        assert_eq!(joined(Some("/s/"), "/fv0/req", V0), "/s/fv0/req");
        assert_eq!(joined(Some("/s"), "fv1req", V1), "/sfv1req");
        assert_eq!(joined(Some("/s/"), "fv1/req", V1), "/s/fv1/req");
        // No service path.
        assert_eq!(joined(None, "", V0), "/");
        assert_eq!(joined(None, "req", V0), "/req");
        assert_eq!(joined(None, "/req", V1), "/req");
        assert_eq!(joined(Some("/s"), "", V0), "/s");
    }
}
