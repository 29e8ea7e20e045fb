//! The request head, checked the way RFC 9112 and nginx check it before
//! anything is routed or forwarded: sizes (`large_client_header_buffers`),
//! one Host, no userinfo, unambiguous framing, and no underscores in header
//! names unless `underscores_in_headers` allows them.
//!
//! hyper has already refused what cannot be parsed, unfinished heads that
//! fill all the buffers together (431), and conflicting Content-Lengths (400).
//! A request with both Transfer-Encoding and Content-Length is read by its
//! chunks alone, without the Content-Length, and its connection closed after
//! the response (RFC 9112 6.1), so it cannot smuggle a second request. One
//! pass over the headers finds everything else, so a plain request pays a loop
//! over its few headers and nothing more.

use http::header::{self, HeaderMap, HeaderName};
use http::{Request, StatusCode, Version};

use crate::config::Limits;

/// A request refused before routing, with Kong's message for its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    pub status: StatusCode,
    pub message: &'static str,
}

const BAD_REQUEST: Reject = Reject {
    status: StatusCode::BAD_REQUEST,
    message: "Bad request",
};

const HEADER_TOO_LARGE: Reject = Reject {
    status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    message: "Request header or cookie too large",
};

/// Checks the head; drops headers with underscores unless allowed.
pub fn check<B>(req: &mut Request<B>, limits: &Limits) -> Result<(), Reject> {
    let line = limits.header_buffer_size;
    let uri = req.uri();
    let target_len = uri.path_and_query().map_or(1, |p| p.as_str().len())
        + uri
            .authority()
            .map_or(0, |a| a.as_str().len() + "http://".len());
    let request_line = target_len + req.method().as_str().len() + " HTTP/1.1\r\n ".len();
    // nginx: a request line that does not fit one large buffer.
    if request_line > line {
        return Err(Reject {
            status: StatusCode::URI_TOO_LONG,
            message: "URI too long",
        });
    }
    if let Some(authority) = uri.authority() {
        // RFC 9112 3.2.2: a proxy must not forward userinfo; nginx rejects it.
        if authority.as_str().contains('@') {
            return Err(BAD_REQUEST);
        }
    }
    let headers = req.headers();
    let mut hosts = 0;
    let mut underscores = false;
    let mut head = request_line + "\r\n".len();
    for (name, value) in headers {
        let field = name.as_str().len() + value.len() + ": \r\n".len();
        head += field;
        if field > line {
            return Err(HEADER_TOO_LARGE);
        }
        if name == header::HOST {
            hosts += 1;
        } else if name.as_str().as_bytes().contains(&b'_') {
            underscores = true;
        }
    }
    // A whole head larger than all the buffers, which hyper may have read
    // whole when it came in one piece.
    if head > limits.max_head_size() {
        return Err(HEADER_TOO_LARGE);
    }
    // RFC 9112 3.2: exactly one Host in HTTP/1.1; at most one otherwise.
    if hosts > 1 || (hosts == 0 && req.version() == Version::HTTP_11 && uri.authority().is_none()) {
        return Err(BAD_REQUEST);
    }
    if underscores && !limits.underscores_in_headers {
        drop_underscored(req.headers_mut());
    }
    Ok(())
}

/// nginx's `underscores_in_headers off`: such headers are ignored, not refused.
fn drop_underscored(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| n.as_str().as_bytes().contains(&b'_'))
        .cloned()
        .collect();
    for name in names {
        tracing::debug!(header = %name, "ignoring a header with an underscore");
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().version(version).uri(uri);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap()
    }

    fn status(r: &mut Request<()>) -> Option<u16> {
        check(r, &Limits::default())
            .err()
            .map(|e| e.status.as_u16())
    }

    #[test]
    fn host_rules() {
        let v11 = Version::HTTP_11;
        assert_eq!(status(&mut req(v11, "/", &[("host", "a")])), None);
        assert_eq!(status(&mut req(v11, "/", &[])), Some(400));
        assert_eq!(
            status(&mut req(v11, "/", &[("host", "a"), ("host", "b")])),
            Some(400)
        );
        assert_eq!(status(&mut req(Version::HTTP_10, "/", &[])), None);
        // Absolute form: the URI names the host.
        assert_eq!(status(&mut req(v11, "http://a.test/x", &[])), None);
        assert_eq!(
            status(&mut req(v11, "http://user:pw@a.test/x", &[("host", "a")])),
            Some(400)
        );
        assert_eq!(
            status(&mut req(Version::HTTP_2, "http://a.test/", &[])),
            None
        );
    }

    #[test]
    fn sizes_follow_large_client_header_buffers() {
        let v11 = Version::HTTP_11;
        let long = format!("/{}", "a".repeat(8200));
        assert_eq!(status(&mut req(v11, &long, &[("host", "a")])), Some(414));
        let fits = format!("/{}", "a".repeat(8000));
        assert_eq!(status(&mut req(v11, &fits, &[("host", "a")])), None);
        let cookie = "c".repeat(8200);
        assert_eq!(
            status(&mut req(v11, "/", &[("host", "a"), ("cookie", &cookie)])),
            Some(431)
        );
    }

    #[test]
    fn the_whole_head_fits_all_buffers() {
        let v11 = Version::HTTP_11;
        let pad = "p".repeat(7000);
        let five: Vec<(String, &str)> = (0..5)
            .map(|i| (format!("x-pad-{i}"), pad.as_str()))
            .collect();
        let mut headers: Vec<(&str, &str)> = five.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        headers.push(("host", "a"));
        assert_eq!(status(&mut req(v11, "/", &headers)), Some(431));
        headers.remove(0);
        assert_eq!(status(&mut req(v11, "/", &headers)), None);
    }

    #[test]
    fn underscores() {
        let v11 = Version::HTTP_11;
        let mut r = req(
            v11,
            "/",
            &[("host", "a"), ("x_forwarded_for", "1.2.3.4"), ("x-ok", "1")],
        );
        assert_eq!(status(&mut r), None);
        assert!(r.headers().get("x_forwarded_for").is_none());
        assert!(r.headers().get("x-ok").is_some());

        let mut r = req(v11, "/", &[("host", "a"), ("my_header", "1")]);
        let allow = Limits {
            underscores_in_headers: true,
            ..Limits::default()
        };
        assert_eq!(check(&mut r, &allow), Ok(()));
        assert!(r.headers().get("my_header").is_some());
    }
}
