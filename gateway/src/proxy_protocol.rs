// STUB until the PROXY protocol reader lands
use std::pin::Pin;
use std::task::{Context, Poll};
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader { pub version: u8, pub source: Option<std::net::SocketAddr>, pub destination: Option<std::net::SocketAddr> }
#[derive(Debug, thiserror::Error)]
pub enum ProxyError { #[error("missing")] Missing, #[error("io {0}")] Io(#[from] std::io::Error) }
impl ProxyError { pub fn kind(&self) -> &'static str { "missing" } }
pub async fn read_header<S: tokio::io::AsyncRead + Unpin>(_s: &mut S, _t: std::time::Duration) -> Result<(ProxyHeader, bytes::Bytes), ProxyError> { Err(ProxyError::Missing) }
pub struct Rewind<S> { inner: S }
impl<S> Rewind<S> { pub fn new(_p: bytes::Bytes, inner: S) -> Self { Rewind { inner } } pub fn inner(&self) -> &S { &self.inner } }
impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Rewind<S> { fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, b: &mut tokio::io::ReadBuf<'_>) -> Poll<std::io::Result<()>> { Pin::new(&mut self.inner).poll_read(cx, b) } }
impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Rewind<S> {
 fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<std::io::Result<usize>> { Pin::new(&mut self.inner).poll_write(cx, b) }
 fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> { Pin::new(&mut self.inner).poll_flush(cx) }
 fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> { Pin::new(&mut self.inner).poll_shutdown(cx) }
}
