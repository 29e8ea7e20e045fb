//! `parse` cost per header: `cargo bench --bench proxy_protocol`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gateway::proxy_protocol::parse;

const SIG: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// v2 PROXY TCP/IPv4 header, optionally with a CRC32C TLV.
fn v2_ipv4(with_crc: bool) -> Vec<u8> {
    let mut h = SIG.to_vec();
    h.extend([0x21, 0x11, 0, 12]);
    h.extend([192, 0, 2, 1, 198, 51, 100, 2]);
    h.extend(56324u16.to_be_bytes());
    h.extend(443u16.to_be_bytes());
    if with_crc {
        h.extend([0x03, 0, 4, 0, 0, 0, 0]);
        h[15] += 7;
        let crc = crc32c::crc32c(&h);
        let at = h.len() - 4;
        h[at..].copy_from_slice(&crc.to_be_bytes());
    }
    h
}

fn bench_parse(c: &mut Criterion) {
    let v1_tcp4 = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n".to_vec();
    let v1_tcp6 = b"PROXY TCP6 2001:db8::1 2001:db8:0:1::2 56324 443\r\n".to_vec();
    let cases = [
        ("v1_tcp4", v1_tcp4),
        ("v1_tcp6", v1_tcp6),
        ("v2_ipv4", v2_ipv4(false)),
        ("v2_ipv4_crc32c", v2_ipv4(true)),
    ];
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(1));
    for (name, input) in &cases {
        assert!(matches!(parse(input), Ok(Some(_))), "{name}");
        group.bench_function(*name, |b| b.iter(|| parse(black_box(input))));
    }
    group.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
