//! Streaming bodies. Requests flow to the upstream frame by frame (recording
//! progress for `write_timeout`); responses flow back and hand their upstream
//! connection back to the pool once read to the end.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::pool::{Conn, Pool};

/// How far a request body upload has got.
pub struct Progress {
    start: Instant,
    last_ms: AtomicU64,
    done: AtomicBool,
}

impl Progress {
    pub fn new() -> Arc<Self> {
        Arc::new(Progress {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            done: AtomicBool::new(false),
        })
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
    }
}

impl RequestBody {
    pub fn new(inner: Incoming, progress: Option<Arc<Progress>>) -> Self {
        RequestBody { inner, progress }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some(p) = this.progress {
            match frame {
                Some(Ok(_)) => p.touch(),
                _ => p.done.store(true, Relaxed),
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
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
        },
        Full { data: Option<Bytes> },
    }
}

impl ProxyBody {
    pub fn upstream(inner: Incoming, pool: Arc<Pool>, conn: Conn) -> Self {
        if inner.is_end_stream() {
            pool.checkin(conn);
            return ProxyBody::Upstream { inner, conn: None };
        }
        ProxyBody::Upstream {
            inner,
            conn: Some((pool, conn)),
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
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.project() {
            ProxyBodyProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ProxyBodyProj::Upstream { mut inner, conn } => {
                let frame = ready!(inner.as_mut().poll_frame(cx));
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
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full { data } => data.is_none(),
            ProxyBody::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ProxyBody::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}
