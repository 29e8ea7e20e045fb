use super::*;

fn forwarding(trusted: &str, header: &str, recursive: bool) -> Forwarding {
    let list: Vec<String> = trusted.split(',').map(String::from).collect();
    Forwarding {
        trusted_ips: TrustedIps::parse(&list).unwrap(),
        real_ip_header: match header {
            "proxy_protocol" => RealIpHeader::ProxyProtocol,
            h => RealIpHeader::Header(HeaderName::try_from(h).unwrap()),
        },
        real_ip_recursive: recursive,
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::try_from(*k).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn get<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).map(|v| v.to_str().unwrap()).unwrap_or("<none>")
}

const PEER: &str = "127.0.0.1:40000";
const LOCAL: &str = "127.0.0.1:8000";

fn proxied(src: &str, dst: &str) -> ProxyHeader {
    ProxyHeader {
        version: 1,
        source: Some(src.parse().unwrap()),
        destination: Some(dst.parse().unwrap()),
    }
}

#[test]
fn proxy_source_is_the_client_and_untrusted_headers_are_replaced() {
    let f = forwarding("", "x-real-ip", false);
    let pp = proxied("203.0.113.7:5555", "198.51.100.1:80");
    let conn = ConnectionInfo::new(
        Protocol::Http,
        PEER.parse().unwrap(),
        LOCAL.parse().unwrap(),
        Some(&pp),
        &f,
    );
    assert!(!conn.trusted);
    let mut h = headers(&[
        ("x-forwarded-for", "10.9.9.9"),
        ("x-real-ip", "10.9.9.9"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil"),
        ("x-forwarded-prefix", "/evil"),
    ]);
    apply(&mut h, &conn, &f, "api.example.com", "/a/b", None);
    assert_eq!(get(&h, "x-real-ip"), "203.0.113.7");
    assert_eq!(get(&h, "x-forwarded-for"), "10.9.9.9, 203.0.113.7");
    assert_eq!(get(&h, "x-forwarded-proto"), "http");
    assert_eq!(get(&h, "x-forwarded-host"), "api.example.com");
    assert_eq!(get(&h, "x-forwarded-port"), "80");
    assert_eq!(get(&h, "x-forwarded-path"), "/a/b");
    assert_eq!(get(&h, "x-forwarded-prefix"), "<none>");
}

#[test]
fn trusted_client_keeps_its_headers_and_real_ip() {
    let f = forwarding("127.0.0.0/8", "x-forwarded-for", false);
    let conn = ConnectionInfo::new(
        Protocol::Https,
        PEER.parse().unwrap(),
        LOCAL.parse().unwrap(),
        None,
        &f,
    );
    assert!(conn.trusted);
    let mut h = headers(&[
        ("x-forwarded-for", "198.51.100.9, 10.0.0.2"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-port", "443"),
    ]);
    apply(&mut h, &conn, &f, "h", "/p", Some("/p"));
    assert_eq!(get(&h, "x-real-ip"), "10.0.0.2");
    assert_eq!(
        get(&h, "x-forwarded-for"),
        "198.51.100.9, 10.0.0.2, 127.0.0.1"
    );
    assert_eq!(get(&h, "x-forwarded-proto"), "https");
    assert_eq!(get(&h, "x-forwarded-port"), "443");
    assert_eq!(get(&h, "x-forwarded-host"), "h");
    assert_eq!(get(&h, "x-forwarded-prefix"), "/p");
}

#[test]
fn recursive_skips_trusted_hops() {
    let f = forwarding("127.0.0.0/8,10.0.0.0/8", "x-forwarded-for", true);
    let conn = ConnectionInfo::new(
        Protocol::Http,
        PEER.parse().unwrap(),
        LOCAL.parse().unwrap(),
        None,
        &f,
    );
    let mut h = headers(&[("x-forwarded-for", "198.51.100.9, 10.0.0.2, 10.0.0.3")]);
    apply(&mut h, &conn, &f, "h", "/", None);
    assert_eq!(get(&h, "x-real-ip"), "198.51.100.9");
    // Garbage in the header leaves the connection's client address.
    let mut h = headers(&[("x-forwarded-for", "not-an-ip")]);
    apply(&mut h, &conn, &f, "h", "/", None);
    assert_eq!(get(&h, "x-real-ip"), "127.0.0.1");
}

#[test]
fn local_and_unknown_use_the_socket_address() {
    let f = forwarding("", "x-real-ip", false);
    let pp = ProxyHeader {
        version: 2,
        source: None,
        destination: None,
    };
    let conn = ConnectionInfo::new(
        Protocol::Http,
        "[::ffff:127.0.0.9]:1".parse().unwrap(),
        LOCAL.parse().unwrap(),
        Some(&pp),
        &f,
    );
    let mut h = HeaderMap::new();
    apply(&mut h, &conn, &f, "h", "/", None);
    assert_eq!(get(&h, "x-real-ip"), "127.0.0.9");
    assert_eq!(get(&h, "x-forwarded-port"), "8000");
}
