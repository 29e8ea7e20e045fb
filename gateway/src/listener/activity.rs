//! What a client connection is doing, so that a silent one is closed on time.
//!
//! hyper's own `header_read_timeout` starts as soon as a keep-alive connection
//! goes idle, which would make `client_header_timeout` the keep-alive timeout
//! too, and it does nothing for HTTP/2. So each connection carries an
//! [`Activity`]: the service wrapper counts requests in flight, the IO wrapper
//! notes that bytes arrived, and the connection's task looks at both a few times
//! per timeout ([`Watchdog`]). The request path pays two relaxed atomic adds
//! per request and one relaxed store per read.
//!
//! Between requests, reads are capped at [`HEAD_READ`] bytes: hyper checks
//! its buffer against `max_buf_size` only between reads, and one large read
//! would carry a head past the limit (and grow the buffer to twice it).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{HeaderValue, CONNECTION};
use http::{Request, Response, Version};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::config::Limits;
use crate::status::Status;

#[derive(Default)]
pub struct Activity {
    /// Requests started and finished (their response head sent to hyper).
    started: AtomicU64,
    finished: AtomicU64,
    in_flight: AtomicU32,
    /// Bytes arrived since the last request finished: a request head under way.
    read: AtomicBool,
    http2: AtomicBool,
    /// Wakes the connection's task at its first HTTP/2 request: a connection
    /// that opened while the node drains learns only then that it is HTTP/2
    /// and owes its client a GOAWAY.
    first_http2: tokio::sync::Notify,
}

impl Activity {
    pub fn is_http2(&self) -> bool {
        self.http2.load(Relaxed)
    }

    /// Resolves once the connection has had an HTTP/2 request.
    pub async fn http2_seen(&self) {
        if !self.is_http2() {
            // notify_one keeps a permit: a request between the check and the
            // wait is not missed.
            self.first_http2.notified().await;
        }
    }

    fn observe(&self) -> Observed {
        Observed {
            started: self.started.load(Relaxed),
            finished: self.finished.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
            read: self.read.load(Relaxed),
            http2: self.http2.load(Relaxed),
        }
    }
}

/// One look at a connection's [`Activity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Observed {
    started: u64,
    finished: u64,
    in_flight: u32,
    read: bool,
    http2: bool,
}

/// Why a connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// No request (or no HTTP/2 preface) within `client_header_timeout`.
    FirstRequest,
    /// A request head started and did not finish within `client_header_timeout`.
    Header,
    /// Nothing in flight for `keepalive_timeout`.
    KeepAlive,
}

/// Counts silence in ticks of the connection's own interval.
pub struct Watchdog {
    pub tick: Duration,
    header_timeout: Duration,
    keepalive_timeout: Duration,
    last: Observed,
    since_connect: Duration,
    /// Time spent in the current state (idle, or a head under way).
    quiet: Duration,
}

impl Watchdog {
    /// `waited`: how long the connection already waited for its first request.
    pub fn new(limits: &Limits, waited: Duration) -> Self {
        let shortest = if limits.keepalive_timeout.is_zero() {
            limits.client_header_timeout
        } else {
            limits.client_header_timeout.min(limits.keepalive_timeout)
        };
        Watchdog {
            // Close within an eighth of the timeout late, waking a connection
            // at most every 2 s (and at least 25 ms apart).
            tick: (shortest / 8).clamp(Duration::from_millis(25), Duration::from_secs(2)),
            header_timeout: limits.client_header_timeout,
            keepalive_timeout: limits.keepalive_timeout,
            last: Observed::default(),
            since_connect: waited,
            quiet: Duration::ZERO,
        }
    }

    /// Called every `tick`: whether the connection has been silent too long.
    pub fn check(&mut self, activity: &Activity) -> Option<Expired> {
        self.step(activity.observe())
    }

    fn step(&mut self, now: Observed) -> Option<Expired> {
        self.since_connect += self.tick;
        let changed = now.started != self.last.started || now.finished != self.last.finished;
        // A head under way counts from its first byte; HTTP/2 reads frames
        // (pings, window updates) between requests, so it only knows idle.
        let head_started = now.read && !self.last.read && !now.http2;
        self.last = now;
        if now.in_flight > 0 || changed || head_started {
            self.quiet = Duration::ZERO;
            return None;
        }
        if now.started == 0 {
            return (self.since_connect >= self.header_timeout).then_some(Expired::FirstRequest);
        }
        self.quiet += self.tick;
        if now.read && !now.http2 {
            (self.quiet >= self.header_timeout).then_some(Expired::Header)
        } else {
            (self.quiet >= self.keepalive_timeout).then_some(Expired::KeepAlive)
        }
    }
}

pin_project_lite::pin_project! {
    /// The client's socket, noting that bytes arrived.
    pub struct Watched<IO> {
        #[pin]
        inner: IO,
        activity: Arc<Activity>,
    }
}

impl<IO> Watched<IO> {
    pub fn new(inner: IO, activity: Arc<Activity>) -> Self {
        Watched { inner, activity }
    }
}

/// The most read at once while no request is in flight: hyper's smallest
/// buffer, and more than most whole heads.
pub const HEAD_READ: usize = 8192;

impl<IO: AsyncRead> AsyncRead for Watched<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let n = if buf.remaining() > HEAD_READ && this.activity.in_flight.load(Relaxed) == 0 {
            let mut head = buf.take(HEAD_READ);
            std::task::ready!(this.inner.poll_read(cx, &mut head))?;
            let n = head.filled().len();
            // SAFETY: `head` is the start of `buf`'s unfilled part, and the
            // reader initialised the `n` bytes it filled.
            unsafe { buf.assume_init(n) };
            buf.advance(n);
            n
        } else {
            let before = buf.filled().len();
            std::task::ready!(this.inner.poll_read(cx, buf))?;
            buf.filled().len() - before
        };
        if n > 0 {
            this.activity.read.store(true, Relaxed);
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite> AsyncWrite for Watched<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

/// A hyper service that counts its requests in the connection's [`Activity`]
/// and, while the node drains, asks HTTP/1 clients to reconnect elsewhere.
#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
    status: Arc<Status>,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, activity: Arc<Activity>, status: Arc<Status>) -> Self {
        Tracked {
            inner,
            activity,
            status,
        }
    }
}

impl<S, B, RB> hyper::service::Service<Request<B>> for Tracked<S>
where
    S: hyper::service::Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<TrackedBody<RB>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, req: Request<B>) -> Self::Future {
        let version = req.version();
        let a = &self.activity;
        a.started.fetch_add(1, Relaxed);
        a.in_flight.fetch_add(1, Relaxed);
        if version == Version::HTTP_2 && !a.http2.load(Relaxed) && !a.http2.swap(true, Relaxed) {
            a.first_http2.notify_one();
        }
        TrackedFuture {
            inner: self.inner.call(req),
            guard: Some(InFlight(self.activity.clone())),
            status: self.status.clone(),
            version,
        }
    }
}

/// Ends a request's time in flight: when its response body has been sent
/// (or dropped), also when hyper drops the request unanswered. A response
/// still streaming is in flight, so the watchdog never cuts a long download.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.read.store(false, Relaxed);
        a.in_flight.fetch_sub(1, Relaxed);
        a.finished.fetch_add(1, Relaxed);
    }
}

pin_project_lite::pin_project! {
    pub struct TrackedFuture<F> {
        #[pin]
        inner: F,
        guard: Option<InFlight>,
        status: Arc<Status>,
        version: Version,
    }
}

impl<F, RB, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<TrackedBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut resp = std::task::ready!(this.inner.poll(cx))?;
        // Draining behind a TCP load balancer: the client reconnects, and the
        // balancer, which has seen readiness fail, sends it to another node.
        // Closing after a response is the one moment no request can be lost.
        if *this.version < Version::HTTP_2 && this.status.is_draining() {
            resp.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        let guard = this.guard.take();
        Poll::Ready(Ok(resp.map(|inner| TrackedBody { inner, guard })))
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request in flight until it ends.
    pub struct TrackedBody<B> {
        #[pin]
        inner: B,
        guard: Option<InFlight>,
    }
}

impl<B: http_body::Body> http_body::Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) {
            this.guard.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dog(header: u64, keepalive: u64) -> Watchdog {
        let limits = Limits {
            client_header_timeout: Duration::from_secs(header),
            keepalive_timeout: Duration::from_secs(keepalive),
            ..Limits::default()
        };
        Watchdog::new(&limits, Duration::ZERO)
    }

    /// Ticks until the watchdog fires, up to `max` ticks.
    fn ticks_until(d: &mut Watchdog, o: Observed, max: u32) -> Option<(u32, Expired)> {
        (1..=max).find_map(|i| d.step(o).map(|e| (i, e)))
    }

    #[test]
    fn tick_is_an_eighth_of_the_shortest_timeout() {
        assert_eq!(dog(8, 16).tick, Duration::from_secs(1));
        assert_eq!(dog(60, 75).tick, Duration::from_secs(2));
        assert_eq!(dog(1, 0).tick, Duration::from_millis(125));
    }

    #[test]
    fn silent_from_the_start_is_closed_at_the_header_timeout() {
        let mut d = dog(8, 16);
        // Bytes that never make a request (an h2c client without a preface,
        // a slow head) do not extend the first deadline.
        let o = Observed {
            read: true,
            ..Observed::default()
        };
        assert_eq!(
            ticks_until(&mut d, o, 100),
            Some((8, Expired::FirstRequest))
        );
    }

    #[test]
    fn idle_after_a_request_is_closed_at_the_keepalive_timeout() {
        let mut d = dog(8, 16);
        let busy = Observed {
            started: 1,
            in_flight: 1,
            ..Observed::default()
        };
        for _ in 0..50 {
            assert_eq!(d.step(busy), None, "a request in flight is never cut");
        }
        let idle = Observed {
            started: 1,
            finished: 1,
            ..Observed::default()
        };
        assert_eq!(
            ticks_until(&mut d, idle, 100),
            Some((17, Expired::KeepAlive))
        );
    }

    #[test]
    fn a_second_head_under_way_has_the_header_timeout() {
        let mut d = dog(8, 16);
        let idle = Observed {
            started: 1,
            finished: 1,
            ..Observed::default()
        };
        assert_eq!(ticks_until(&mut d, idle, 5), None);
        let head = Observed { read: true, ..idle };
        assert_eq!(ticks_until(&mut d, head, 100), Some((9, Expired::Header)));
    }

    #[test]
    fn http2_reads_between_requests_are_idle() {
        let mut d = dog(8, 16);
        let idle = Observed {
            started: 3,
            finished: 3,
            read: true,
            http2: true,
            ..Observed::default()
        };
        assert_eq!(
            ticks_until(&mut d, idle, 100),
            Some((17, Expired::KeepAlive))
        );
    }
}
