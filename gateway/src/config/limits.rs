//! What a client connection may cost: header and body sizes, and how long it
//! may stay silent. nginx's names and defaults (Kong runs on nginx), so a
//! kong.conf's `nginx_http_*` values carry over by dropping the prefix.

use std::time::Duration;

use super::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// nginx's `large_client_header_buffers`: a request line longer than
    /// `header_buffer_size` is 414, a header line longer is 431, and a whole
    /// head longer than `header_buffers * header_buffer_size` is 431.
    pub header_buffers: usize,
    pub header_buffer_size: usize,
    /// `client_header_timeout`: time to send a whole request head once started,
    /// and to send the first request after connecting (or the HTTP/2 preface).
    pub client_header_timeout: Duration,
    /// `client_body_timeout`: the longest silence between two reads of a body.
    pub client_body_timeout: Duration,
    /// `keepalive_timeout`: how long a connection with no request in flight stays
    /// open (HTTP/1 keep-alive and HTTP/2 alike). 0 closes after each response.
    pub keepalive_timeout: Duration,
    /// `ssl_handshake_timeout`: time to finish the TLS handshake.
    pub ssl_handshake_timeout: Duration,
    /// `client_max_body_size` in bytes; 0 is unlimited, Kong's default.
    pub client_max_body_size: u64,
    /// `http2_max_concurrent_streams`.
    pub http2_max_concurrent_streams: u32,
    /// `underscores_in_headers`: off drops such headers, as nginx does, so that
    /// `X_Forwarded_For` cannot pass for `X-Forwarded-For` behind a CGI-style
    /// upstream that folds `_` into `-`.
    pub underscores_in_headers: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_buffers: 4,
            header_buffer_size: 8 * 1024,
            client_header_timeout: Duration::from_secs(60),
            client_body_timeout: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(75),
            ssl_handshake_timeout: Duration::from_secs(60),
            client_max_body_size: 0,
            http2_max_concurrent_streams: 128,
            underscores_in_headers: false,
        }
    }
}

impl Limits {
    /// The largest request head (request line and headers) accepted.
    pub fn max_head_size(&self) -> usize {
        self.header_buffers * self.header_buffer_size
    }
}

pub const KEYS: &[&str] = &[
    "large_client_header_buffers",
    "client_header_timeout",
    "client_body_timeout",
    "keepalive_timeout",
    "ssl_handshake_timeout",
    "client_max_body_size",
    "http2_max_concurrent_streams",
    "underscores_in_headers",
];

/// Applies one of [`KEYS`].
pub(super) fn set(limits: &mut Limits, key: &str, v: Value) -> Result<(), String> {
    match key {
        "large_client_header_buffers" => {
            let s = v.string()?;
            let (number, size) = s
                .split_once(char::is_whitespace)
                .ok_or_else(|| format!("`{s}` is not `NUMBER SIZE` (nginx's default: `4 8k`)"))?;
            let number: usize = number
                .trim()
                .parse()
                .ok()
                .filter(|n| (1..=64).contains(n))
                .ok_or_else(|| format!("`{number}` is not a number of buffers (1-64)"))?;
            let size = size_bytes(size.trim())?;
            // hyper reads at least 8 KiB at a time; 1 MiB bounds a head's cost.
            if !(1024..=1024 * 1024).contains(&size) {
                return Err(format!("a buffer of {size} bytes is outside 1k-1m"));
            }
            if number as u64 * size > 4 * 1024 * 1024 {
                return Err("more than 4m of header buffers per connection".into());
            }
            limits.header_buffers = number;
            limits.header_buffer_size = size as usize;
        }
        "client_header_timeout" => limits.client_header_timeout = positive(v)?,
        "client_body_timeout" => limits.client_body_timeout = positive(v)?,
        "keepalive_timeout" => limits.keepalive_timeout = v.seconds()?,
        "ssl_handshake_timeout" => limits.ssl_handshake_timeout = positive(v)?,
        "client_max_body_size" => limits.client_max_body_size = size_bytes(&v.string()?)?,
        "http2_max_concurrent_streams" => {
            let n = v.number()?;
            if n.fract() != 0.0 || !(1.0..=65536.0).contains(&n) {
                return Err(format!("`{n}` is not a stream count (1-65536)"));
            }
            limits.http2_max_concurrent_streams = n as u32;
        }
        "underscores_in_headers" => limits.underscores_in_headers = v.bool()?,
        _ => unreachable!("called with a key of KEYS"),
    }
    Ok(())
}

fn positive(v: Value) -> Result<Duration, String> {
    let d = v.seconds()?;
    if d.is_zero() {
        return Err("must be more than 0 seconds".into());
    }
    Ok(d)
}

/// nginx's sizes: `512`, `8k`, `10m`, `1g` (case-insensitive).
fn size_bytes(s: &str) -> Result<u64, String> {
    let lower = s.to_ascii_lowercase();
    let (digits, unit) = match lower.as_bytes().last() {
        Some(b'k') => (&lower[..lower.len() - 1], 1024),
        Some(b'm') => (&lower[..lower.len() - 1], 1024 * 1024),
        Some(b'g') => (&lower[..lower.len() - 1], 1024 * 1024 * 1024),
        _ => (lower.as_str(), 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| format!("`{s}` is not a size (bytes, or with k, m or g: `8k`, `10m`)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(key: &str, value: &str) -> Result<Limits, String> {
        let mut l = Limits::default();
        set(&mut l, key, Value::Env(value.into()))?;
        Ok(l)
    }

    #[test]
    fn nginx_sizes() {
        assert_eq!(size_bytes("512"), Ok(512));
        assert_eq!(size_bytes("8k"), Ok(8192));
        assert_eq!(size_bytes("10M"), Ok(10 << 20));
        assert!(size_bytes("ten").is_err());
        assert!(size_bytes("99999999999999999999g").is_err());
        assert!(size_bytes("-1").is_err());
    }

    #[test]
    fn header_buffers() {
        let l = apply("large_client_header_buffers", "2 16k").unwrap();
        assert_eq!((l.header_buffers, l.header_buffer_size), (2, 16384));
        assert_eq!(l.max_head_size(), 32768);
        assert_eq!(Limits::default().max_head_size(), 32768);
        for bad in ["4", "0 8k", "4 100", "4 2m8", "65 8k", "8 1m"] {
            assert!(
                apply("large_client_header_buffers", bad).is_err(),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn timeouts_and_flags() {
        assert!(apply("client_header_timeout", "0").is_err());
        assert_eq!(
            apply("keepalive_timeout", "0").unwrap().keepalive_timeout,
            Duration::ZERO
        );
        assert_eq!(
            apply("client_max_body_size", "1m")
                .unwrap()
                .client_max_body_size,
            1 << 20
        );
        assert!(
            apply("underscores_in_headers", "on")
                .unwrap()
                .underscores_in_headers
        );
        assert!(apply("http2_max_concurrent_streams", "0").is_err());
    }
}
