//! Streaming bodies. Requests flow to the upstream frame by frame (recording
//! progress for `write_timeout`, within `client_max_body_size` and
//! `client_body_timeout`); responses flow back within the service's
//! `read_timeout` between two reads, and hand their upstream connection back
//! to the pool once read to the end.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Sleep;

use super::pool::{Conn, Pool};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a client's request body could not be forwarded: the client's fault,
/// answered 4xx, never the upstream's 502.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[repr(u8)]
pub enum ClientBodyError {
    #[error("the client sent a malformed body (bad chunked framing, or shorter than its Content-Length)")]
    Malformed = 1,
    #[error("the client sent nothing for client_body_timeout")]
    Timeout = 2,
    #[error("the body is larger than client_max_body_size")]
    TooLarge = 3,
    #[error("the body is larger than the request-size-limiting plugin allows")]
    SizeLimit = 4,
}

/// How far a request body upload has got.
pub struct Progress {
    start: Instant,
    last_ms: AtomicU64,
    done: AtomicBool,
    /// A [`ClientBodyError`] as its number, 0 while none.
    client_error: AtomicU8,
}

impl Progress {
    pub fn new() -> Arc<Self> {
        Arc::new(Progress {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            done: AtomicBool::new(false),
            client_error: AtomicU8::new(0),
        })
    }

    /// Set when the upload failed because of the client.
    pub fn client_error(&self) -> Option<ClientBodyError> {
        match self.client_error.load(Relaxed) {
            1 => Some(ClientBodyError::Malformed),
            2 => Some(ClientBodyError::Timeout),
            3 => Some(ClientBodyError::TooLarge),
            4 => Some(ClientBodyError::SizeLimit),
            _ => None,
        }
    }

    fn fail(&self, e: ClientBodyError) -> BoxError {
        self.client_error.store(e as u8, Relaxed);
        self.done.store(true, Relaxed);
        Box::new(e)
    }

    pub fn is_done(&self) -> bool {
        self.done.load(Relaxed)
    }

    /// Time since the upstream last took a frame of the body.
    pub fn idle(&self) -> std::time::Duration {
        let last = std::time::Duration::from_millis(self.last_ms.load(Relaxed));
        self.start.elapsed().saturating_sub(last)
    }

    fn touch(&self) {
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// The client's request body on its way upstream.
    pub struct RequestBody {
        #[pin]
        inner: Incoming,
        progress: Option<Arc<Progress>>,
        received: u64,
        // 0 is unlimited.
        max_size: u64,
        // What crossing max_size means: which limit it is.
        too_large: ClientBodyError,
        timeout: Duration,
        // Armed when the client is awaited, so time the upstream took to ask
        // for more is not blamed on the client.
        #[pin]
        timer: Option<Sleep>,
        waiting: bool,
        // A body read whole and changed by a plugin (request-transformer),
        // sent in place of `inner`, which is then at its end.
        replacement: Option<Bytes>,
    }
}

impl RequestBody {
    /// `progress` is set for a request with a body.
    pub fn new(
        inner: Incoming,
        progress: Option<Arc<Progress>>,
        max_size: u64,
        timeout: Duration,
    ) -> Self {
        RequestBody {
            inner,
            progress,
            received: 0,
            max_size,
            too_large: ClientBodyError::TooLarge,
            timeout,
            timer: None,
            waiting: false,
            replacement: None,
        }
    }

    /// Sends `body` instead of the client's, which [`read_all`] consumed.
    pub fn replaced(mut self, body: Bytes) -> Self {
        self.replacement = Some(body);
        self.progress = None;
        self
    }
}

/// Reads a client's body whole, for a plugin that changes it: at most
/// `limit` bytes (0: no limit), and no more than `timeout` between two reads
/// (nginx's `client_body_timeout`). `body` is left at its end.
pub async fn read_all(
    body: &mut Incoming,
    limit: u64,
    timeout: Duration,
) -> Result<Bytes, ClientBodyError> {
    use http_body_util::BodyExt;
    let mut buf = bytes::BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(timeout, body.frame()).await {
            Err(_) => return Err(ClientBodyError::Timeout),
            Ok(None) => return Ok(buf.freeze()),
            Ok(Some(Err(_))) => return Err(ClientBodyError::Malformed),
            Ok(Some(Ok(f))) => f,
        };
        if let Ok(data) = frame.into_data() {
            if limit > 0 && (buf.len() + data.len()) as u64 > limit {
                return Err(ClientBodyError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
}

impl RequestBody {
    /// Also limits the body to `limit` bytes (request-size-limiting, for a
    /// body without Content-Length); the smaller limit applies, and crossing
    /// this one is [`ClientBodyError::SizeLimit`].
    pub fn with_plugin_limit(mut self, limit: Option<u64>) -> Self {
        if let Some(limit) = limit {
            if self.max_size == 0 || limit < self.max_size {
                self.max_size = limit;
                self.too_large = ClientBodyError::SizeLimit;
            }
        }
        self
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if let Some(data) = this.replacement.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        let Some(p) = this.progress else {
            return this.inner.poll_frame(cx).map_err(Into::into);
        };
        let frame = match this.inner.poll_frame(cx) {
            Poll::Ready(f) => f,
            Poll::Pending => {
                let deadline = tokio::time::Instant::now() + *this.timeout;
                if !*this.waiting {
                    *this.waiting = true;
                    match this.timer.as_mut().as_pin_mut() {
                        Some(t) => t.reset(deadline),
                        None => this.timer.set(Some(tokio::time::sleep_until(deadline))),
                    }
                }
                if let Some(t) = this.timer.as_pin_mut() {
                    ready!(t.poll(cx));
                    return Poll::Ready(Some(Err(p.fail(ClientBodyError::Timeout))));
                }
                return Poll::Pending;
            }
        };
        *this.waiting = false;
        match frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    *this.received += data.len() as u64;
                    if *this.max_size > 0 && *this.received > *this.max_size {
                        return Poll::Ready(Some(Err(p.fail(*this.too_large))));
                    }
                }
                p.touch();
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                tracing::debug!("client body: {e}");
                Poll::Ready(Some(Err(p.fail(ClientBodyError::Malformed))))
            }
            None => {
                p.done.store(true, Relaxed);
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.replacement.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.replacement {
            Some(b) => SizeHint::with_exact(b.len() as u64),
            None => self.inner.size_hint(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The body of a response to the client: streamed from upstream, or made here.
    #[project = ProxyBodyProj]
    pub enum ProxyBody {
        Upstream {
            #[pin]
            inner: Incoming,
            conn: Option<(Arc<Pool>, Conn)>,
            // The service's read_timeout, between two reads (Kong's meaning).
            read_timeout: Duration,
            #[pin]
            timer: Option<Sleep>,
            waiting: bool,
        },
        Full { data: Option<Bytes> },
        // A body whose end (sent whole, failed, or dropped when the client
        // went away) runs the plugins' log phase: `observer` counts the
        // bytes, and its `Drop` logs.
        Observed {
            inner: Pin<Box<ProxyBody>>,
            observer: Box<dyn Observer>,
        },
    }
}

/// Sees a response body go out; dropping it ends the request (the log phase).
pub trait Observer: Send + Sync {
    fn sent(&mut self, bytes: usize);

    /// Each chunk of the body as it goes out.
    fn data(&mut self, d: &Bytes) {
        self.sent(d.len());
    }

    /// The body ended whole (not on an error, nor dropped half sent). May
    /// be called more than once.
    fn finished(&mut self) {}
}

impl ProxyBody {
    pub fn upstream(inner: Incoming, pool: Arc<Pool>, conn: Conn, read_timeout: Duration) -> Self {
        let conn = if inner.is_end_stream() {
            pool.checkin(conn);
            None
        } else {
            Some((pool, conn))
        };
        ProxyBody::Upstream {
            inner,
            conn,
            read_timeout,
            timer: None,
            waiting: false,
        }
    }

    pub fn full(data: impl Into<Bytes>) -> Self {
        let data: Bytes = data.into();
        ProxyBody::Full {
            data: (!data.is_empty()).then_some(data),
        }
    }

    pub fn empty() -> Self {
        ProxyBody::Full { data: None }
    }

    /// Made by the gateway, not streamed from an upstream.
    pub fn is_local(&self) -> bool {
        match self {
            ProxyBody::Full { .. } => true,
            ProxyBody::Observed { inner, .. } => inner.is_local(),
            ProxyBody::Upstream { .. } => false,
        }
    }

    /// This body, with `observer` told of what is sent and dropped at its end.
    pub fn observed(self, observer: Box<dyn Observer>) -> Self {
        ProxyBody::Observed {
            inner: Box::pin(self),
            observer,
        }
    }
}

/// The upstream sent nothing for `read_timeout` in the middle of a body.
#[derive(Debug, thiserror::Error)]
#[error("the upstream sent nothing for read_timeout ({0:?}) in the middle of the body")]
pub struct UpstreamStalled(Duration);

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            ProxyBodyProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ProxyBodyProj::Observed { inner, observer } => {
                let frame = ready!(inner.as_mut().poll_frame(cx));
                match &frame {
                    Some(Ok(f)) => {
                        if let Some(d) = f.data_ref() {
                            observer.data(d);
                        }
                        // hyper stops polling a body that says it has ended.
                        if inner.is_end_stream() {
                            observer.finished();
                        }
                    }
                    None => observer.finished(),
                    Some(Err(_)) => {}
                }
                Poll::Ready(frame)
            }
            ProxyBodyProj::Upstream {
                mut inner,
                conn,
                read_timeout,
                mut timer,
                waiting,
            } => {
                let frame = match inner.as_mut().poll_frame(cx) {
                    Poll::Ready(f) => f,
                    Poll::Pending => {
                        let deadline = tokio::time::Instant::now() + *read_timeout;
                        if !*waiting {
                            *waiting = true;
                            match timer.as_mut().as_pin_mut() {
                                Some(t) => t.reset(deadline),
                                None => timer.set(Some(tokio::time::sleep_until(deadline))),
                            }
                        }
                        if let Some(t) = timer.as_pin_mut() {
                            ready!(t.poll(cx));
                            // The connection is mid-body: it cannot be pooled.
                            drop(conn.take());
                            let e = UpstreamStalled(*read_timeout);
                            tracing::warn!("{e}; closing the client's response");
                            return Poll::Ready(Some(Err(Box::new(e))));
                        }
                        return Poll::Pending;
                    }
                };
                *waiting = false;
                match &frame {
                    // A broken upstream body is not pooled.
                    Some(Err(_)) => drop(conn.take()),
                    // Read to the end: the connection can serve another request.
                    _ if frame.is_none() || inner.is_end_stream() => {
                        if let Some((pool, c)) = conn.take() {
                            pool.checkin(c);
                        }
                    }
                    _ => {}
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full { data } => data.is_none(),
            ProxyBody::Upstream { inner, .. } => inner.is_end_stream(),
            ProxyBody::Observed { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ProxyBody::Upstream { inner, .. } => inner.size_hint(),
            ProxyBody::Observed { inner, .. } => inner.size_hint(),
        }
    }
}
