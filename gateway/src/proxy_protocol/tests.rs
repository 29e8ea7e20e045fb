use super::*;
use std::io::IoSlice;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

fn sa(s: &str) -> Option<SocketAddr> {
    Some(s.parse().unwrap())
}

fn ok(input: &[u8]) -> (ProxyHeader, usize) {
    match parse(input) {
        Ok(Some(done)) => done,
        other => panic!("{:?}: expected a header, got {other:?}", show(input)),
    }
}

fn fails(input: &[u8]) -> &'static str {
    match parse(input) {
        Err(e) => e.kind(),
        Ok(r) => panic!("{:?}: expected an error, got {r:?}", show(input)),
    }
}

fn show(input: &[u8]) -> String {
    input.escape_ascii().to_string()
}

/// Every strict prefix is "need more", the whole input is complete.
fn assert_incremental(input: &[u8]) {
    for n in 0..input.len() {
        match parse(&input[..n]) {
            Ok(None) => {}
            other => panic!("prefix {n} of {:?}: {other:?}", show(input)),
        }
    }
    assert_eq!(ok(input).1, input.len());
}

/// v2 header; `crc` appends a CRC32C TLV holding the correct checksum.
fn v2(ver_cmd: u8, fam: u8, addrs: &[u8], tlvs: &[(u8, &[u8])], crc: bool) -> Vec<u8> {
    let mut h = V2_SIG.to_vec();
    h.extend([ver_cmd, fam, 0, 0]);
    h.extend_from_slice(addrs);
    for (kind, value) in tlvs {
        h.push(*kind);
        h.extend((value.len() as u16).to_be_bytes());
        h.extend_from_slice(value);
    }
    let crc_at = crc.then(|| {
        h.extend([TLV_CRC32C, 0, 4, 0, 0, 0, 0]);
        h.len() - 4
    });
    let len = (h.len() - V2_FIXED) as u16;
    h[14..16].copy_from_slice(&len.to_be_bytes());
    if let Some(at) = crc_at {
        let crc = crc32c::crc32c(&h);
        h[at..at + 4].copy_from_slice(&crc.to_be_bytes());
    }
    h
}

fn ipv4_block() -> Vec<u8> {
    let mut b = vec![192, 0, 2, 1, 198, 51, 100, 2];
    b.extend(56324u16.to_be_bytes());
    b.extend(443u16.to_be_bytes());
    b
}

fn ipv6_block() -> Vec<u8> {
    use std::net::Ipv6Addr;
    let mut b = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)
        .octets()
        .to_vec();
    b.extend(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2).octets());
    b.extend(1234u16.to_be_bytes());
    b.extend(80u16.to_be_bytes());
    b
}

const TCP4: &[u8] = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
const TCP6: &[u8] = b"PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n";
/// The spec's worst case: exactly 107 bytes.
const UNKNOWN_107: &[u8] = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";

#[test]
fn v1_tcp4() {
    let mut input = TCP4.to_vec();
    input.extend_from_slice(b"GET / HTTP/1.1\r\n");
    let (h, len) = ok(&input);
    assert_eq!(len, TCP4.len());
    assert_eq!(h.version, 1);
    assert_eq!(h.source, sa("192.168.0.1:56324"));
    assert_eq!(h.destination, sa("192.168.0.11:443"));
}

#[test]
fn v1_tcp6() {
    let (h, len) = ok(TCP6);
    assert_eq!(len, TCP6.len());
    assert_eq!(h.source, sa("[2001:db8::1]:65535"));
    assert_eq!(h.destination, sa("[2001:db8::2]:0"));
    let mapped = b"PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n";
    assert_eq!(ok(mapped).0.source, sa("[::ffff:192.0.2.1]:1"));
}

#[test]
fn v1_unknown() {
    let empty = ProxyHeader {
        version: 1,
        source: None,
        destination: None,
    };
    assert_eq!(ok(b"PROXY UNKNOWN\r\n"), (empty, 15));
    assert_eq!(ok(b"PROXY UNKNOWN\r\nGET"), (empty, 15));
    assert_eq!(ok(b"PROXY UNKNOWN 1.2.3.4 x y z\r\n"), (empty, 29));
    assert_eq!(ok(b"PROXY UNKNOWN a b c d e f g\r\n"), (empty, 29));
    assert_eq!(ok(b"PROXY UNKNOWN \r\n"), (empty, 16));
    assert_eq!(UNKNOWN_107.len(), 107);
    assert_eq!(ok(UNKNOWN_107), (empty, 107));
    assert_eq!(fails(b"PROXY UNKNOWNX\r\n"), "malformed");
}

#[test]
fn v1_length_limit() {
    // 108 bytes and still no CRLF.
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(108, b'a');
    assert_eq!(fails(&long), "malformed");
    // Detected as soon as a CRLF can no longer fit.
    assert_eq!(fails(&long[..106]), "malformed");
    assert!(parse(&long[..105]).unwrap().is_none());
    // A complete line of 108 bytes.
    let mut line = long[..106].to_vec();
    line.extend_from_slice(b"\r\n");
    assert_eq!(fails(&line), "malformed");
    assert_eq!(fails(&line[..107]), "malformed");
}

#[test]
fn v1_rejects_bad_lines() {
    let bad: &[&[u8]] = &[
        // spacing
        b"PROXY  TCP4 1.2.3.4 5.6.7.8 80 443\r\n",
        b"PROXY TCP4  1.2.3.4 5.6.7.8 80 443\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8  80 443\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 80 443 \r\n",
        b"PROXY TCP4 1.2.3.4\t5.6.7.8 80 443\r\n",
        // ports
        b"PROXY TCP4 1.2.3.4 5.6.7.8 080 443\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 80 0443\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 00 443\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 443\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 80 99999999999\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 +80 443\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 443\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 0x50 443\r\n",
        // address family / format
        b"PROXY TCP4 ::1 5.6.7.8 80 443\r\n",
        b"PROXY TCP4 1.2.3.4 ::1 80 443\r\n",
        b"PROXY TCP6 1.2.3.4 ::1 80 443\r\n",
        b"PROXY TCP6 ::1 5.6.7.8 80 443\r\n",
        b"PROXY TCP4 1.2.3.256 5.6.7.8 80 443\r\n",
        b"PROXY TCP4 01.2.3.4 5.6.7.8 80 443\r\n",
        b"PROXY TCP4 1.2.3 5.6.7.8 80 443\r\n",
        b"PROXY TCP4 localhost 5.6.7.8 80 443\r\n",
        // missing / extra fields
        b"PROXY TCP4 1.2.3.4 5.6.7.8 80\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8\r\n",
        b"PROXY TCP4\r\n",
        b"PROXY TCP4 \r\n",
        b"PROXY \r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 80 443 9\r\n",
        // protocol token
        b"PROXY tcp4 1.2.3.4 5.6.7.8 80 443\r\n",
        b"PROXY TCP5 1.2.3.4 5.6.7.8 80 443\r\n",
        b"PROXY unknown\r\n",
        // line ending
        b"PROXY TCP4 1.2.3.4 5.6.7.8 80 443\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 80 443\rX",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 80 443\r\r\n",
        b"PROXY UNKNOWN a\nb\r\n",
        // non-ASCII / control bytes
        b"PROXY TCP4 1.2.3.4\xc2\xa0 5.6.7.8 80 443\r\n",
        b"PROXY TCP4 1.2.3.\xff 5.6.7.8 80 443\r\n",
        b"PROXY UNKNOWN caf\xc3\xa9\r\n",
        b"PROXY TCP4 1.2.3.4\x00 5.6.7.8 80 443\r\n",
    ];
    for input in bad {
        assert_eq!(fails(input), "malformed", "{:?}", show(input));
    }
    // Valid edge values.
    let (h, _) = ok(b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n");
    assert_eq!(h.source, sa("0.0.0.0:0"));
    assert_eq!(h.destination, sa("255.255.255.255:65535"));
}

#[test]
fn v1_fails_without_waiting() {
    // A bare LF or a control byte is rejected before the line is complete.
    assert_eq!(fails(b"PROXY TCP4 1.2.3.4\n"), "malformed");
    assert_eq!(fails(b"PROXY \x01"), "malformed");
}

#[test]
fn missing() {
    let inputs: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\n",
        b"G",
        b"\x16\x03\x01\x02\x00",
        b"proxy TCP4 1.2.3.4 5.6.7.8 80 443\r\n",
        b"PROXYTCP4",
        b"PROXY\n",
        b"PROX ",
        b"\r\n\r\n\x00\r\nQUIX",
        b"\r\n\r\nGET",
        b"PRI * HTTP/2.0\r\n",
    ];
    for input in inputs {
        assert_eq!(fails(input), "missing", "{:?}", show(input));
    }
    assert!(parse(b"").unwrap().is_none());
    assert!(parse(b"PROX").unwrap().is_none());
    assert!(parse(b"\r\n\r\n").unwrap().is_none());
}

#[test]
fn v2_proxy_ipv4() {
    let mut input = v2(0x21, 0x11, &ipv4_block(), &[], false);
    let len = input.len();
    assert_eq!(len, 28);
    input.extend_from_slice(b"GET");
    let (h, used) = ok(&input);
    assert_eq!(used, len);
    assert_eq!(h.version, 2);
    assert_eq!(h.source, sa("192.0.2.1:56324"));
    assert_eq!(h.destination, sa("198.51.100.2:443"));
}

#[test]
fn v2_proxy_ipv6() {
    let input = v2(0x21, 0x21, &ipv6_block(), &[], false);
    let (h, used) = ok(&input);
    assert_eq!(used, 52);
    assert_eq!(h.source, sa("[2001:db8::1]:1234"));
    assert_eq!(h.destination, sa("[2001:db8::2]:80"));
}

#[test]
fn v2_without_usable_address() {
    let none = ProxyHeader {
        version: 2,
        source: None,
        destination: None,
    };
    let cases = [
        v2(0x20, 0x00, &[], &[], false), // LOCAL, as haproxy sends it
        v2(0x20, 0x11, &ipv4_block(), &[], false), // LOCAL ignores addresses
        v2(0x20, 0x11, &[], &[], false), // LOCAL with a short block
        v2(0x20, 0x00, &[], &[(0x05, b"id")], true), // LOCAL with TLVs
        v2(0x21, 0x00, &[], &[], false), // PROXY UNSPEC
        v2(0x21, 0x12, &ipv4_block(), &[], false), // UDP over IPv4
        v2(0x21, 0x10, &ipv4_block(), &[], false), // IPv4, UNSPEC protocol
        v2(0x21, 0x31, &[b'/'; 216], &[], false), // UNIX stream
    ];
    for input in &cases {
        assert_eq!(ok(input), (none, input.len()), "{:?}", show(input));
    }
}

#[test]
fn v2_tlvs_skipped_and_crc_checked() {
    let tlvs: &[(u8, &[u8])] = &[
        (0x01, b"h2"),
        (0x02, b"example.com"),
        (0x04, &[]),
        (0xe0, &[7; 300]),
    ];
    for crc in [false, true] {
        let input = v2(0x21, 0x11, &ipv4_block(), tlvs, crc);
        let (h, used) = ok(&input);
        assert_eq!(used, input.len());
        assert_eq!(h.source, sa("192.0.2.1:56324"));
    }
    // CRC TLV first, followed by other TLVs.
    let mut input = v2(0x21, 0x21, &ipv6_block(), &[], true);
    let crc_tlv = input[52..].to_vec();
    input.truncate(52);
    input.extend([0x04, 0, 1, 0]);
    input.extend_from_slice(&crc_tlv);
    input.extend([0x05, 0, 2, b'i', b'd']);
    let len = (input.len() - 16) as u16;
    input[14..16].copy_from_slice(&len.to_be_bytes());
    let at = input.len() - 9;
    input[at..at + 4].fill(0);
    let crc = crc32c::crc32c(&input);
    input[at..at + 4].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(ok(&input).1, input.len());
}

#[test]
fn v2_bad_crc() {
    let good = v2(0x21, 0x11, &ipv4_block(), &[(0x01, b"h2")], true);
    // No single-bit error is accepted, except in the CRC TLV's type byte,
    // which turns it into an unchecked TLV (a limit of the protocol).
    let crc_type_at = good.len() - 7;
    for i in 0..good.len() * 8 {
        let mut bad = good.clone();
        bad[i / 8] ^= 1 << (i % 8);
        let accepted = matches!(parse(&bad), Ok(Some(_)));
        assert!(!accepted || i / 8 == crc_type_at, "bit {i} not detected");
    }
    let mut bad = good.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert_eq!(fails(&bad), "malformed");
    // LOCAL headers are checked too.
    let mut local = v2(0x20, 0x00, &[], &[], true);
    local[20] ^= 0xff;
    assert_eq!(fails(&local), "malformed");
    // Wrong size or repeated.
    assert_eq!(
        fails(&v2(0x21, 0x11, &ipv4_block(), &[(0x03, &[0; 3])], false)),
        "malformed"
    );
    assert_eq!(
        fails(&v2(0x21, 0x11, &ipv4_block(), &[(0x03, &[0; 5])], false)),
        "malformed"
    );
    let twice = v2(0x21, 0x11, &ipv4_block(), &[(0x03, &[0; 4])], true);
    assert_eq!(fails(&twice), "malformed");
}

#[test]
fn v2_crc_interop_vector() {
    // Independent fixture: an AWS PrivateLink header (CRC32C, VPC endpoint id, NOOP).
    let mut input = V2_SIG.to_vec();
    input.extend([0x21, 0x11, 0x00, 0x54]);
    input.extend([172, 31, 7, 113, 172, 31, 10, 31, 0xc8, 0xf2, 0x00, 0x50]);
    input.extend([0x03, 0x00, 0x04, 0xe8, 0xd6, 0x89, 0x2d]);
    input.extend([0xea, 0x00, 0x17, 0x01]);
    input.extend_from_slice(b"vpce-08d2bf15fac5001c9");
    input.extend([0x04, 0x00, 0x24]);
    input.extend([0; 36]);
    let (h, used) = ok(&input);
    assert_eq!(used, 100);
    assert_eq!(h.source, sa("172.31.7.113:51442"));
    assert_eq!(h.destination, sa("172.31.10.31:80"));
    // The check value of CRC-32C.
    assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
}

#[test]
fn v2_rejects_bad_headers() {
    let addr = ipv4_block();
    let mut truncated_tlv = v2(0x21, 0x11, &addr, &[(0x01, b"h2")], false);
    truncated_tlv[30] = 9; // TLV claims 9 bytes, 2 present
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("truncated TLV", truncated_tlv),
        ("TLV header cut", {
            let mut h = v2(0x21, 0x11, &addr, &[], false);
            h.extend([0x04, 0x00]);
            h[15] += 2;
            h
        }),
        ("version 1", v2(0x11, 0x11, &addr, &[], false)),
        ("version 3", v2(0x31, 0x11, &addr, &[], false)),
        ("version 0", v2(0x01, 0x11, &addr, &[], false)),
        ("command 2", v2(0x22, 0x11, &addr, &[], false)),
        ("command 15", v2(0x2f, 0x11, &addr, &[], false)),
        ("family 4", v2(0x21, 0x41, &addr, &[], false)),
        ("protocol 3", v2(0x21, 0x13, &addr, &[], false)),
        ("short IPv4 block", v2(0x21, 0x11, &addr[..8], &[], false)),
        ("short IPv6 block", v2(0x21, 0x21, &addr, &[], false)),
        ("UNSPEC with junk", v2(0x21, 0x00, &[1, 2], &[], false)),
    ];
    for (what, input) in &bad {
        assert_eq!(fails(input), "malformed", "{what}");
    }
    // The fixed part is judged before the rest arrives.
    assert_eq!(fails(&v2(0x31, 0x11, &addr, &[], false)[..16]), "malformed");
    assert_eq!(fails(&v2(0x22, 0x11, &addr, &[], false)[..16]), "malformed");
}

#[test]
fn incremental() {
    assert_incremental(TCP4);
    assert_incremental(TCP6);
    assert_incremental(b"PROXY UNKNOWN\r\n");
    assert_incremental(UNKNOWN_107);
    assert_incremental(&v2(0x21, 0x11, &ipv4_block(), &[], false));
    assert_incremental(&v2(
        0x21,
        0x21,
        &ipv6_block(),
        &[(0x02, b"a.example")],
        true,
    ));
    assert_incremental(&v2(0x20, 0x00, &[], &[], false));
    assert_incremental(&v2(0x20, 0x11, &[], &[], false));
}

#[test]
fn error_kinds_and_messages() {
    let e = parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 80 443\n").unwrap_err();
    assert_eq!(e.kind(), "malformed");
    assert!(e.to_string().contains("LF without CR"), "{e}");
    assert_eq!(ProxyError::Missing.kind(), "missing");
    assert_eq!(ProxyError::Timeout.kind(), "timeout");
    assert_eq!(ProxyError::Closed.kind(), "closed");
    assert_eq!(ProxyError::from(io::Error::other("x")).kind(), "io");
}

const HTTP: &[u8] = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
const TIMEOUT: Duration = Duration::from_millis(200);

#[tokio::test]
async fn read_returns_leftover() {
    for header in [TCP4.to_vec(), v2(0x21, 0x11, &ipv4_block(), &[], true)] {
        let (mut client, mut server) = tokio::io::duplex(4096);
        let mut wire = header.clone();
        wire.extend_from_slice(HTTP);
        client.write_all(&wire).await.unwrap();
        let (h, rest) = read_header(&mut server, TIMEOUT).await.unwrap();
        assert_eq!(h, ok(&header).0);
        assert_eq!(&rest[..], HTTP);
    }
}

#[tokio::test]
async fn read_over_tcp() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = tokio::spawn(async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut wire = TCP6.to_vec();
        wire.extend_from_slice(HTTP);
        s.write_all(&wire).await.unwrap();
        let mut reply = [0u8; 2];
        s.read_exact(&mut reply).await.unwrap();
        reply
    });
    let (mut sock, _) = listener.accept().await.unwrap();
    let (h, rest) = read_header(&mut sock, TIMEOUT).await.unwrap();
    assert_eq!(h.source, sa("[2001:db8::1]:65535"));
    let mut io = Rewind::new(rest, sock);
    let mut request = vec![0u8; HTTP.len()];
    io.read_exact(&mut request).await.unwrap();
    assert_eq!(request, HTTP);
    io.write_all(b"ok").await.unwrap();
    assert_eq!(&client.await.unwrap(), b"ok");
}

#[tokio::test(start_paused = true)]
async fn read_one_byte_at_a_time() {
    for header in [
        TCP4.to_vec(),
        v2(0x21, 0x21, &ipv6_block(), &[(1, b"h2")], true),
    ] {
        let (mut client, mut server) = tokio::io::duplex(4096);
        let expected = ok(&header).0;
        let writer = tokio::spawn(async move {
            for b in header {
                client.write_all(&[b]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            client.write_all(b"GET").await.unwrap();
            client
        });
        let (h, rest) = read_header(&mut server, TIMEOUT).await.unwrap();
        assert_eq!(h, expected);
        let _client = writer.await.unwrap();
        // Whatever was not returned is still in the stream.
        let mut io = Rewind::new(rest, server);
        let mut get = [0u8; 3];
        io.read_exact(&mut get).await.unwrap();
        assert_eq!(&get, b"GET");
    }
}

#[tokio::test(start_paused = true)]
async fn read_times_out() {
    let (mut client, mut server) = tokio::io::duplex(4096);
    client.write_all(&TCP4[..20]).await.unwrap();
    let start = Instant::now();
    let err = read_header(&mut server, TIMEOUT).await.unwrap_err();
    assert_eq!(err.kind(), "timeout");
    assert_eq!(start.elapsed(), TIMEOUT);
    drop(client);
}

#[tokio::test]
async fn read_times_out_real_clock() {
    let (_client, mut server) = tokio::io::duplex(64);
    let start = std::time::Instant::now();
    let err = read_header(&mut server, TIMEOUT).await.unwrap_err();
    let elapsed = start.elapsed();
    assert_eq!(err.kind(), "timeout");
    assert!(elapsed >= TIMEOUT && elapsed < TIMEOUT * 10, "{elapsed:?}");
}

#[tokio::test]
async fn read_eof() {
    for sent in [
        &b""[..],
        &TCP4[..10],
        &v2(0x21, 0x11, &ipv4_block(), &[], false)[..20],
    ] {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(sent).await.unwrap();
        drop(client);
        let err = read_header(&mut server, TIMEOUT).await.unwrap_err();
        assert_eq!(err.kind(), "closed", "{:?}", show(sent));
    }
}

#[tokio::test]
async fn read_missing_and_malformed_fail_fast() {
    // The peer keeps the connection open: no waiting for the timeout.
    let (mut client, mut server) = tokio::io::duplex(64);
    client.write_all(b"G").await.unwrap();
    let err = read_header(&mut server, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "missing");
    let (mut client, mut server) = tokio::io::duplex(64);
    client.write_all(b"PROXY TCP4 1.2.3.4\n").await.unwrap();
    let err = read_header(&mut server, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "malformed");
}

#[tokio::test]
async fn read_large_v2() {
    for size in [400, 500, 4000, 65535 - 12 - 3] {
        let noop = vec![0u8; size];
        let header = v2(0x21, 0x11, &ipv4_block(), &[(0x04, &noop)], size != 65520);
        let (mut client, mut server) = tokio::io::duplex(1 << 17);
        let mut wire = header.clone();
        wire.extend_from_slice(HTTP);
        client.write_all(&wire).await.unwrap();
        drop(client);
        let (h, rest) = read_header(&mut server, TIMEOUT).await.unwrap();
        assert_eq!(h.source, sa("192.0.2.1:56324"));
        let mut io = Rewind::new(rest, server);
        let mut after = Vec::new();
        io.read_to_end(&mut after).await.unwrap();
        assert_eq!(after, HTTP, "size {size}");
    }
}

#[tokio::test]
async fn rewind_reads_prefix_then_inner_and_forwards_writes() {
    let (mut peer, inner) = tokio::io::duplex(64);
    let mut io = Rewind::new(Bytes::from_static(b"hello "), inner);
    peer.write_all(b"world").await.unwrap();
    // A small buffer takes the prefix in pieces.
    let mut two = [0u8; 2];
    io.read_exact(&mut two).await.unwrap();
    assert_eq!(&two, b"he");
    let mut rest = [0u8; 9];
    io.read_exact(&mut rest).await.unwrap();
    assert_eq!(&rest, b"llo world");

    io.write_all(b"pong").await.unwrap();
    let n = io
        .write_vectored(&[IoSlice::new(b"ab"), IoSlice::new(b"cd")])
        .await
        .unwrap();
    assert!(n > 0);
    io.flush().await.unwrap();
    assert_eq!(io.is_write_vectored(), io.inner().is_write_vectored());
    let mut got = vec![0u8; 4 + n];
    peer.read_exact(&mut got).await.unwrap();
    assert_eq!(&got[..4], b"pong");
    assert_eq!(&got[4..], &b"abcd"[..n]);

    io.shutdown().await.unwrap();
    let mut eof = Vec::new();
    peer.read_to_end(&mut eof).await.unwrap();
    assert!(eof.is_empty());
}

#[tokio::test]
async fn rewind_empty_prefix_is_transparent() {
    let (mut peer, inner) = tokio::io::duplex(64);
    let mut io = Rewind::new(Bytes::new(), inner);
    peer.write_all(b"abc").await.unwrap();
    drop(peer);
    let mut all = Vec::new();
    io.read_to_end(&mut all).await.unwrap();
    assert_eq!(all, b"abc");
}
