//! A connection's first request head, read before hyper is involved.
//!
//! hyper gives every connection an 8 KiB write buffer and a read buffer that
//! it keeps 8 KiB ahead of what arrived (16 KiB for a 40-byte partial head),
//! so a thousand slow clients that never finish a head would cost hundreds of
//! MiB. Like nginx (`client_header_buffer_size 1k`, then
//! `large_client_header_buffers`), the first head is read here into a buffer
//! that starts at 1 KiB and grows by one large buffer at a time, only as bytes
//! arrive, up to the largest head allowed. The connection reaches hyper once the head is complete. An
//! HTTP/2 preface is handed over as soon as it is recognised.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config::Limits;

const FIRST_BUFFER: usize = 1024;
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How reading the first head ended.
pub enum First {
    /// Bytes to replay to hyper: a whole head (maybe more), or an HTTP/2 preface.
    Ready(BytesMut),
    /// The client closed, or the socket failed, before a whole head.
    Gone,
    /// Answered here (414 or 431) and to be closed.
    Refused,
}

/// Reads until the end of the first head (a blank line), an HTTP/2 preface,
/// or the limits. The caller bounds the time.
pub async fn read_first<IO>(io: &mut IO, limits: &Limits, http2: bool) -> First
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let max = limits.max_head_size();
    let mut buf = BytesMut::with_capacity(FIRST_BUFFER.min(max));
    let mut scanned = 0;
    loop {
        if buf.len() == buf.capacity() {
            if buf.len() >= max {
                return refuse(io, &buf, limits).await;
            }
            // Grow one large buffer at a time, as nginx does, never past the
            // limit. A new exact allocation: `reserve` would double.
            let size = limits.header_buffer_size;
            let want = ((buf.capacity() / size + 1) * size).min(max);
            let mut bigger = BytesMut::with_capacity(want);
            bigger.extend_from_slice(&buf);
            buf = bigger;
        }
        // Read no further than the limit, whatever capacity reserve gave.
        let room = max - buf.len();
        match (&mut *io).take(room as u64).read_buf(&mut buf).await {
            Ok(0) | Err(_) => return First::Gone,
            Ok(_) => {}
        }
        if http2 && is_h2_preface_start(&buf) {
            if buf.len() >= H2_PREFACE.len() {
                return First::Ready(buf);
            }
            continue;
        }
        if head_end(&buf, scanned).is_some() {
            return First::Ready(buf);
        }
        // A blank line may straddle two reads: look back three bytes.
        scanned = buf.len().saturating_sub(3);
    }
}

/// Whether `buf` is (so far) the HTTP/2 connection preface.
fn is_h2_preface_start(buf: &[u8]) -> bool {
    let n = buf.len().min(H2_PREFACE.len());
    n > 0 && buf[..n] == H2_PREFACE[..n]
}

/// The offset just past the blank line ending a head (CRLF CRLF, or bare LF
/// LF, which httparse also accepts), searching from `from`.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(pos) = buf[i..].iter().position(|&b| b == b'\n') {
        let at = i + pos;
        match buf.get(at + 1) {
            Some(b'\n') => return Some(at + 2),
            Some(b'\r') if buf.get(at + 2) == Some(&b'\n') => return Some(at + 3),
            _ => {}
        }
        i = at + 1;
    }
    None
}

/// nginx: 414 when the request line alone did not fit one large buffer,
/// else 431. Kong's JSON body; the connection closes.
async fn refuse<IO: AsyncWrite + Unpin>(io: &mut IO, buf: &[u8], limits: &Limits) -> First {
    let line_end = buf.iter().position(|&b| b == b'\n');
    let (status, message) = match line_end {
        Some(n) if n < limits.header_buffer_size => (
            "431 Request Header Fields Too Large",
            "Request header or cookie too large",
        ),
        _ => ("414 URI Too Long", "URI too long"),
    };
    let body = format!("{{\"message\":\"{message}\"}}");
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = io.write_all(response.as_bytes()).await;
    let _ = io.shutdown().await;
    First::Refused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0), Some(27));
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: a\n\nbody", 0), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n", 0), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r", 0), None);
    }

    #[test]
    fn recognises_the_preface_early() {
        assert!(is_h2_preface_start(b"PRI * HT"));
        assert!(is_h2_preface_start(H2_PREFACE));
        assert!(!is_h2_preface_start(b"GET / HTTP/1.1"));
        assert!(!is_h2_preface_start(b""));
    }

    async fn first(input: &[u8], limits: &Limits) -> (String, Option<usize>) {
        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        client.write_all(input).await.unwrap();
        client.shutdown().await.unwrap();
        let got = match read_first(&mut server, limits, true).await {
            First::Ready(b) => Some(b.len()),
            First::Gone => None,
            First::Refused => Some(0),
        };
        drop(server);
        let mut answer = String::new();
        let _ = client.read_to_string(&mut answer).await;
        (answer, got)
    }

    #[tokio::test]
    async fn heads_within_and_beyond_the_limits() {
        let limits = Limits::default();
        let (answer, got) = first(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", &limits).await;
        assert_eq!((answer.as_str(), got), ("", Some(27)));

        let (_, got) = first(H2_PREFACE, &limits).await;
        assert_eq!(got, Some(H2_PREFACE.len()));

        // Unfinished, then closed: nothing to answer.
        let (answer, got) = first(b"GET / HTTP/1.1\r\nHost:", &limits).await;
        assert_eq!((answer.as_str(), got), ("", None));

        let long_line = format!("GET /{} HTTP/1.1\r\n", "u".repeat(40_000));
        let (answer, got) = first(long_line.as_bytes(), &limits).await;
        assert_eq!(got, Some(0));
        assert!(answer.starts_with("HTTP/1.1 414 "), "{answer}");

        let mut many = String::from("GET / HTTP/1.1\r\n");
        for i in 0..10 {
            many.push_str(&format!("X-{i}: {}\r\n", "v".repeat(4000)));
        }
        let (answer, got) = first(many.as_bytes(), &limits).await;
        assert_eq!(got, Some(0));
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
        assert!(answer.ends_with("{\"message\":\"Request header or cookie too large\"}"));
    }
}
