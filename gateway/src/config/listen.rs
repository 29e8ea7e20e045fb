//! Kong's listen directive syntax:
//! `0.0.0.0:8000 reuseport backlog=16384, 0.0.0.0:8443 http2 ssl proxy_protocol`, or `off`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub addr: SocketAddr,
    pub ssl: bool,
    pub http2: bool,
    pub proxy_protocol: bool,
    pub reuseport: bool,
    pub backlog: u32,
}

/// nginx's default backlog on Linux.
pub const DEFAULT_BACKLOG: u32 = 511;

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.addr)?;
        for (on, flag) in [
            (self.ssl, "ssl"),
            (self.http2, "http2"),
            (self.proxy_protocol, "proxy_protocol"),
            (self.reuseport, "reuseport"),
        ] {
            if on {
                write!(f, " {flag}")?;
            }
        }
        Ok(())
    }
}

/// Parses a comma-separated list of listen directives; `off` gives none.
pub fn parse_listeners(value: &str) -> Result<Vec<Listen>, String> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("off") {
        return Ok(Vec::new());
    }
    value.split(',').map(parse_one).collect()
}

fn parse_one(entry: &str) -> Result<Listen, String> {
    let mut parts = entry.split_whitespace();
    let addr = parts
        .next()
        .ok_or_else(|| "empty listen entry (use `off` to disable)".to_string())?;
    let mut listen = Listen {
        addr: parse_addr(addr)?,
        ssl: false,
        http2: false,
        proxy_protocol: false,
        reuseport: false,
        backlog: DEFAULT_BACKLOG,
    };
    for flag in parts {
        match flag {
            "ssl" => listen.ssl = true,
            "http2" => listen.http2 = true,
            "proxy_protocol" => listen.proxy_protocol = true,
            "reuseport" => listen.reuseport = true,
            // Accepted for kong.conf compatibility; they change nothing here.
            "deferred" | "bind" => {}
            _ => match flag.strip_prefix("backlog=") {
                Some(n) => {
                    listen.backlog = n
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("`{flag}`: backlog must be a positive number"))?
                }
                None => {
                    return Err(format!(
                        "unknown flag `{flag}` in `{}` (known: ssl, http2, proxy_protocol, reuseport, backlog=N)",
                        entry.trim()
                    ))
                }
            },
        }
    }
    Ok(listen)
}

/// `0.0.0.0:8000`, `[::]:8000`, `localhost:8000`, or a bare `8000` (all interfaces).
fn parse_addr(addr: &str) -> Result<SocketAddr, String> {
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Ok(sa);
    }
    if let Ok(port) = addr.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::from([0, 0, 0, 0]), port));
    }
    if let Some(port) = addr.strip_prefix("localhost:") {
        if let Ok(port) = port.parse::<u16>() {
            return Ok(SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port));
        }
    }
    Err(format!(
        "`{addr}` is not an address: use IP:PORT, [IPv6]:PORT or localhost:PORT"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kong_defaults_parse() {
        let l = parse_listeners(
            "0.0.0.0:8000 reuseport backlog=16384, 0.0.0.0:8443 http2 ssl reuseport backlog=16384",
        )
        .unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].addr, "0.0.0.0:8000".parse().unwrap());
        assert!(l[0].reuseport && !l[0].ssl && l[0].backlog == 16384);
        assert!(l[1].ssl && l[1].http2 && !l[1].proxy_protocol);
    }

    #[test]
    fn flags_off_and_ipv6() {
        assert!(parse_listeners(" off ").unwrap().is_empty());
        let l = parse_listeners("[::1]:9000 proxy_protocol").unwrap();
        assert_eq!(l[0].addr, "[::1]:9000".parse().unwrap());
        assert!(l[0].proxy_protocol);
        assert_eq!(l[0].backlog, DEFAULT_BACKLOG);
        assert_eq!(l[0].to_string(), "[::1]:9000 proxy_protocol");
    }

    #[test]
    fn errors_name_the_problem() {
        let e = parse_listeners("127.0.0.1:8000 sslx").unwrap_err();
        assert!(e.contains("unknown flag `sslx`"), "{e}");
        let e = parse_listeners("nowhere:80").unwrap_err();
        assert!(e.contains("`nowhere:80` is not an address"), "{e}");
        assert!(parse_listeners("127.0.0.1:80 backlog=0").is_err());
        assert!(parse_listeners("127.0.0.1:80,").is_err());
    }
}
