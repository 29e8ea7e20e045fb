//! PROXY protocol v1/v2 reader (haproxy `doc/proxy-protocol.txt`).
//!
//! Complete headers are decoded by `ppp`; this module adds incremental framing,
//! the stricter v1 field checks, the TLV walk with CRC32C verification, and the
//! async read with a whole-header timeout.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use ppp::v2::{Addresses, ParseError as V2Error, Protocol, TypeLengthValues};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

const V1_PREFIX: &[u8] = b"PROXY ";
/// Longest v1 line, CRLF included.
const V1_MAX: usize = 107;
const V2_SIG: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// Signature, version/command, family/protocol, length.
const V2_FIXED: usize = 16;
const TLV_CRC32C: u8 = 0x03;
/// Stack buffer for `read_header`; holds any v1 header and most v2 headers.
const READ_CHUNK: usize = 512;

/// A decoded PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// 1 or 2.
    pub version: u8,
    /// None for v2 LOCAL, v1 UNKNOWN and v2 families/protocols other than TCP over IPv4/IPv6.
    pub source: Option<SocketAddr>,
    pub destination: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("not a PROXY protocol header")]
    Missing,
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(String),
    #[error("timed out waiting for the PROXY protocol header")]
    Timeout,
    #[error("connection closed before the PROXY protocol header was complete")]
    Closed,
    #[error("i/o error while reading the PROXY protocol header: {0}")]
    Io(#[from] io::Error),
}

impl ProxyError {
    /// Short label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::Missing => "missing",
            ProxyError::Malformed(_) => "malformed",
            ProxyError::Timeout => "timeout",
            ProxyError::Closed => "closed",
            ProxyError::Io(_) => "io",
        }
    }
}

fn malformed(msg: impl Into<String>) -> ProxyError {
    ProxyError::Malformed(msg.into())
}

/// True if `buf` is a (possibly partial) prefix of `sig`, or starts with it.
fn matches_sig(buf: &[u8], sig: &[u8]) -> bool {
    let n = buf.len().min(sig.len());
    buf[..n] == sig[..n]
}

/// Incremental, sync: Ok(None) = need more bytes; Ok(Some((header, header_len))) = complete.
pub fn parse(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    if buf.is_empty() {
        Ok(None)
    } else if matches_sig(buf, V2_SIG) {
        parse_v2(buf)
    } else if matches_sig(buf, V1_PREFIX) {
        parse_v1(buf)
    } else {
        Err(ProxyError::Missing)
    }
}

fn parse_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    // The line ends at the first CR; before it only printable ASCII is allowed.
    let window = &buf[..buf.len().min(V1_MAX)];
    let mut cr = None;
    for (i, &b) in window.iter().enumerate() {
        match b {
            b'\r' => {
                cr = Some(i);
                break;
            }
            b'\n' => return Err(malformed("v1: LF without CR")),
            0x20..=0x7e => {}
            _ => return Err(malformed("v1: non-printable or non-ASCII byte")),
        }
    }
    let Some(cr) = cr else {
        // A CR at index >= 106 would make the line longer than 107 bytes.
        return if window.len() >= V1_MAX - 1 {
            Err(malformed("v1: line longer than 107 bytes"))
        } else {
            Ok(None)
        };
    };
    let len = cr + 2;
    if len > V1_MAX {
        return Err(malformed("v1: line longer than 107 bytes"));
    }
    match buf.get(cr + 1) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err(malformed("v1: CR not followed by LF")),
    }
    let fields = &buf[V1_PREFIX.len()..cr];
    if fields == b"UNKNOWN" || fields.starts_with(b"UNKNOWN ") {
        // The rest of the line is ignored (ppp rejects UNKNOWN with 5+ extra fields).
        return Ok(Some((no_address(1), len)));
    }
    check_tcp_fields(fields)?;

    let header =
        ppp::v1::Header::try_from(&buf[..len]).map_err(|e| malformed(format!("v1: {e}")))?;
    let (source, destination) = match header.addresses {
        ppp::v1::Addresses::Unknown => (None, None), // handled above
        ppp::v1::Addresses::Tcp4(a) => (
            Some(SocketAddr::from((a.source_address, a.source_port))),
            Some(SocketAddr::from((
                a.destination_address,
                a.destination_port,
            ))),
        ),
        ppp::v1::Addresses::Tcp6(a) => (
            Some(SocketAddr::from((a.source_address, a.source_port))),
            Some(SocketAddr::from((
                a.destination_address,
                a.destination_port,
            ))),
        ),
    };
    let header = ProxyHeader {
        version: 1,
        source,
        destination,
    };
    Ok(Some((header, len)))
}

/// Checks what `ppp` lets through: exact protocol token, single spaces,
/// exactly four fields, digits-only ports (`ppp` accepts "+80").
fn check_tcp_fields(rest: &[u8]) -> Result<(), ProxyError> {
    let Some(fields) = rest
        .strip_prefix(b"TCP4 ")
        .or_else(|| rest.strip_prefix(b"TCP6 "))
    else {
        return Err(malformed(
            "v1: unknown protocol (expected TCP4, TCP6 or UNKNOWN)",
        ));
    };
    let mut count = 0;
    for field in fields.split(|&b| b == b' ') {
        if field.is_empty() {
            return Err(malformed("v1: empty field or repeated space"));
        }
        if count >= 2 && !field.iter().all(u8::is_ascii_digit) {
            return Err(malformed("v1: port is not a decimal number"));
        }
        count += 1;
    }
    if count != 4 {
        return Err(malformed(format!(
            "v1: expected 4 address fields, got {count}"
        )));
    }
    Ok(())
}

fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    if buf.len() < V2_FIXED {
        return Ok(None);
    }
    let total = V2_FIXED + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let local = buf[12] & 0x0f == 0;
    // ppp checks the fixed fields first, so bad values fail before the rest arrives.
    let header = match ppp::v2::Header::try_from(&buf[..buf.len().min(total)]) {
        Ok(header) => header,
        Err(V2Error::Incomplete(_) | V2Error::Partial(..)) => return Ok(None),
        // LOCAL discards the address block, so a short one is fine (ppp rejects it).
        Err(V2Error::InvalidAddresses(..)) if local => {
            if buf.len() < total {
                return Ok(None);
            }
            return Ok(Some((no_address(2), total)));
        }
        Err(e) => return Err(malformed(format!("v2: {e}"))),
    };
    // TLVs follow the address block (empty for UNSPEC); ppp does not check them.
    let tlv_start = V2_FIXED + header.address_family().byte_length().unwrap_or(0);
    check_tlvs(&buf[..total], tlv_start)?;

    if local || header.protocol != Protocol::Stream {
        return Ok(Some((no_address(2), total)));
    }
    let (source, destination) = match header.addresses {
        Addresses::IPv4(a) => (
            SocketAddr::from((a.source_address, a.source_port)),
            SocketAddr::from((a.destination_address, a.destination_port)),
        ),
        Addresses::IPv6(a) => (
            SocketAddr::from((a.source_address, a.source_port)),
            SocketAddr::from((a.destination_address, a.destination_port)),
        ),
        Addresses::Unspecified | Addresses::Unix(_) => return Ok(Some((no_address(2), total))),
    };
    let header = ProxyHeader {
        version: 2,
        source: Some(source),
        destination: Some(destination),
    };
    Ok(Some((header, total)))
}

fn no_address(version: u8) -> ProxyHeader {
    ProxyHeader {
        version,
        source: None,
        destination: None,
    }
}

/// TLVs must tile `header[start..]` exactly; a CRC32C TLV must match.
fn check_tlvs(header: &[u8], start: usize) -> Result<(), ProxyError> {
    let mut pos = start;
    let mut seen_crc = false;
    for tlv in TypeLengthValues::from(&header[start..]) {
        let tlv = tlv.map_err(|e| malformed(format!("v2: {e}")))?;
        let value_at = pos + 3;
        pos = value_at + tlv.value.len();
        if tlv.kind != TLV_CRC32C {
            continue;
        }
        let expected: [u8; 4] = tlv
            .value
            .as_ref()
            .try_into()
            .map_err(|_| malformed("v2: CRC32C TLV is not 4 bytes"))?;
        if std::mem::replace(&mut seen_crc, true) {
            return Err(malformed("v2: more than one CRC32C TLV"));
        }
        // CRC over the whole header with the checksum field zeroed.
        let crc = crc32c::crc32c(&header[..value_at]);
        let crc = crc32c::crc32c_append(crc, &[0; 4]);
        let crc = crc32c::crc32c_append(crc, &header[value_at + 4..]);
        if crc != u32::from_be_bytes(expected) {
            return Err(malformed("v2: CRC32C mismatch"));
        }
    }
    Ok(())
}

/// Reads one header from `stream`, within `timeout` for the whole header.
/// Returns the header and any bytes read past it.
///
/// Needs a tokio runtime with the time driver enabled.
pub async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<(ProxyHeader, Bytes), ProxyError> {
    match tokio::time::timeout(timeout, read_header_inner(stream)).await {
        Ok(result) => result,
        Err(_) => Err(ProxyError::Timeout),
    }
}

async fn read_header_inner<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<(ProxyHeader, Bytes), ProxyError> {
    let mut buf = [0u8; READ_CHUNK];
    let mut len = 0;
    loop {
        // Never full here: v1 resolves within 107 bytes, bigger v2 headers go to the heap.
        debug_assert!(len < buf.len());
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            return Err(ProxyError::Closed);
        }
        len += n;
        if let Some((header, used)) = parse(&buf[..len])? {
            let rest = &buf[used..len];
            let rest = if rest.is_empty() {
                Bytes::new()
            } else {
                Bytes::copy_from_slice(rest)
            };
            return Ok((header, rest));
        }
        if buf[0] == V2_SIG[0] && len >= V2_FIXED {
            let total = V2_FIXED + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
            if total > buf.len() {
                return read_large_v2(stream, &buf[..len], total).await;
            }
        }
    }
}

/// v2 header with a large TLV block: read exactly `total` bytes into a heap buffer.
async fn read_large_v2<S: AsyncRead + Unpin>(
    stream: &mut S,
    head: &[u8],
    total: usize,
) -> Result<(ProxyHeader, Bytes), ProxyError> {
    let mut buf = vec![0u8; total];
    buf[..head.len()].copy_from_slice(head);
    let mut len = head.len();
    while len < total {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            return Err(ProxyError::Closed);
        }
        len += n;
    }
    match parse(&buf)? {
        Some((header, _)) => Ok((header, Bytes::new())),
        None => Err(malformed("v2: incomplete header")),
    }
}

/// A stream that first yields `prefix`, then reads from `inner`; writes go straight to `inner`.
#[derive(Debug)]
pub struct Rewind<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    pub fn new(prefix: Bytes, inner: S) -> Self {
        Rewind { prefix, inner }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            if this.prefix.is_empty() {
                this.prefix = Bytes::new(); // release the buffer early
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
