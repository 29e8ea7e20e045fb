//! Listeners: bind with Kong's flags, accept, read the PROXY header, do TLS,
//! and hand the connection to hyper (HTTP/1.1, and HTTP/2 where flagged),
//! within the connection limits of `config::Limits`.

mod activity;
mod head;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use socket2::{Domain, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::config::{Limits, Listen};
use crate::model::Protocol;
use crate::proxy::forwarded::ConnectionInfo;
use crate::proxy::{self, Shared};
use crate::proxy_protocol::{self, ProxyHeader, Rewind};
use crate::status::Status;
use activity::{Activity, Expired, Tracked, Watchdog, Watched};
use head::First;

/// What a listener serves.
#[derive(Clone)]
pub enum App {
    Proxy(Arc<Shared>),
    Admin(axum::Router),
}

/// Everything an accept loop needs.
#[derive(Clone)]
pub struct Serving {
    pub app: App,
    pub listen: Listen,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub status: Arc<Status>,
    pub proxy_protocol_timeout: Duration,
    pub limits: Arc<Limits>,
    /// Flips to true when the node starts draining (readiness answers 503).
    pub draining: watch::Receiver<bool>,
    /// Flips to true when the node stops accepting and drains connections.
    pub shutdown: watch::Receiver<bool>,
}

/// Binds one socket, or `copies` sockets sharing the port with `reuseport`.
pub fn bind(listen: &Listen, copies: usize) -> Result<Vec<TcpListener>, String> {
    let copies = if listen.reuseport { copies.max(1) } else { 1 };
    (0..copies).map(|_| bind_one(listen)).collect()
}

fn bind_one(listen: &Listen) -> Result<TcpListener, String> {
    let fail = |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", listen.addr);
    let addr = listen.addr;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)
        .map_err(|e| fail("open a socket for", e))?;
    socket
        .set_reuse_address(true)
        .map_err(|e| fail("set SO_REUSEADDR on", e))?;
    if listen.reuseport {
        socket
            .set_reuse_port(true)
            .map_err(|e| fail("set SO_REUSEPORT on", e))?;
    }
    if addr.is_ipv6() {
        let _ = socket.set_only_v6(true);
    }
    socket
        .set_tcp_nodelay(true)
        .map_err(|e| fail("set TCP_NODELAY on", e))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| fail("configure", e))?;
    socket
        .bind(&addr.into())
        .map_err(|e| fail("listen on", e))?;
    socket
        .listen(listen.backlog.min(i32::MAX as u32) as i32)
        .map_err(|e| fail("listen on", e))?;
    TcpListener::from_std(socket.into()).map_err(|e| fail("register", e))
}

/// Accepts until shutdown; each connection runs in its own task.
pub async fn accept_loop(listener: TcpListener, serving: Serving) {
    let mut shutdown = serving.shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let serving = serving.clone();
                    tokio::spawn(async move { connection(stream, peer, serving).await });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off, don't spin.
                    tracing::warn!(listener = %serving.listen.addr, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = stopped(&mut shutdown) => break,
        }
    }
}

async fn connection(stream: TcpStream, peer: SocketAddr, serving: Serving) {
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().unwrap_or(serving.listen.addr);
    serve(stream, peer, local, serving).await
}

/// Serves one client connection as the listener `serving.listen` does: the
/// PROXY header, TLS, the first head, then hyper until the connection ends.
/// Public so that the fuzz harness (gateway/fuzz) drives the very same path
/// over an in-memory stream.
pub async fn serve<IO>(mut io: IO, peer: SocketAddr, local: SocketAddr, serving: Serving)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let status = serving.status.clone();
    let _conn = status.connection();
    let reading = status.reading();
    if serving.listen.proxy_protocol {
        match proxy_protocol::read_header(&mut io, serving.proxy_protocol_timeout).await {
            Ok((header, rest)) => {
                let io = Rewind::new(rest, io);
                tls_then_http(io, peer, local, Some(header), serving, reading).await
            }
            Err(e) => {
                status.proxy_protocol_rejected(e.kind());
                tracing::debug!(%peer, listener = %serving.listen.addr, "closing: PROXY protocol: {e}");
            }
        }
    } else {
        tls_then_http(io, peer, local, None, serving, reading).await
    }
}

async fn tls_then_http<IO>(
    io: IO,
    peer: SocketAddr,
    local: SocketAddr,
    header: Option<ProxyHeader>,
    serving: Serving,
    reading: crate::status::ReadingGuard<'_>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match serving.tls.clone() {
        None => {
            drop(reading);
            serving.status.handled();
            http(io, peer, local, header, Protocol::Http, false, serving).await
        }
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let handshake = serving.limits.ssl_handshake_timeout;
            let tls = tokio::time::timeout(handshake, acceptor.accept(io)).await;
            drop(reading);
            match tls {
                Ok(Ok(tls)) => {
                    serving.status.handled();
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    http(tls, peer, local, header, Protocol::Https, h2, serving).await
                }
                Ok(Err(e)) => {
                    serving.status.tls_failed();
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                }
                Err(_) => {
                    serving.status.tls_failed();
                    tracing::debug!(%peer, "TLS handshake timed out");
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn http<IO>(
    mut io: IO,
    peer: SocketAddr,
    local: SocketAddr,
    header: Option<ProxyHeader>,
    scheme: Protocol,
    alpn_h2: bool,
    serving: Serving,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = &serving.limits;
    // The first head, read on a small buffer before hyper allocates its own
    // (head.rs); HTTP/2 negotiated by ALPN starts with hyper at once.
    let waiting = std::time::Instant::now();
    let first = if alpn_h2 {
        bytes::Bytes::new()
    } else {
        let mut shutdown = serving.shutdown.clone();
        let read = head::read_first(&mut io, limits, serving.listen.http2);
        tokio::select! {
            r = tokio::time::timeout(limits.client_header_timeout, read) => match r {
                Ok(First::Ready(bytes)) => bytes.freeze(),
                Ok(First::Gone | First::Refused) => return,
                Err(_) => {
                    tracing::debug!(%peer, "closing: no request within client_header_timeout");
                    return;
                }
            },
            () = stopped(&mut shutdown) => return,
        }
    };
    let io = Rewind::new(first, io);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The watchdog below times heads and idle connections: hyper's own header
    // timer would also run while a keep-alive connection is idle.
    let head = limits.max_head_size();
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(!limits.keepalive_timeout.is_zero())
        .header_read_timeout(None)
        // A head that fills the read buffer is 431; the buffer never outgrows
        // the largest head, so a slow client holds at most that much.
        .max_buf_size(head.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(head).unwrap_or(u32::MAX));
    if !serving.listen.http2 {
        builder = builder.http1_only();
    }
    let activity = Arc::new(Activity::default());
    let io = TokioIo::new(Watched::new(io, activity.clone()));
    let status = serving.status.clone();
    match serving.app.clone() {
        App::Proxy(shared) => {
            let info = Arc::new(ConnectionInfo::new(
                scheme,
                peer,
                local,
                header.as_ref(),
                &shared.forwarding,
            ));
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                proxy::handle(shared.clone(), info.clone(), req)
            });
            let service = Tracked::new(service, activity.clone(), status);
            let conn = builder.serve_connection(io, service).into_owned();
            drive(conn, &serving, &activity, peer, waiting.elapsed()).await;
        }
        App::Admin(router) => {
            let service = Tracked::new(TowerToHyperService::new(router), activity.clone(), status);
            let conn = builder.serve_connection(io, service).into_owned();
            drive(conn, &serving, &activity, peer, waiting.elapsed()).await;
        }
    }
}

/// Runs a connection to its end. It is closed when silent for too long; while
/// the node drains, HTTP/2 clients get GOAWAY (HTTP/1 ones get
/// `Connection: close` on their next response); on shutdown, in-flight
/// requests finish.
async fn drive<C>(
    conn: C,
    serving: &Serving,
    activity: &Activity,
    peer: SocketAddr,
    waited: Duration,
) where
    C: std::future::Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>>
        + GracefulShutdown,
{
    tokio::pin!(conn);
    let mut shutdown = serving.shutdown.clone();
    let mut draining = serving.draining.clone();
    let mut watchdog = Watchdog::new(&serving.limits, waited);
    let mut ticks = tokio::time::interval(watchdog.tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.reset();
    let mut goaway_sent = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
                return;
            }
            () = stopped(&mut shutdown) => break,
            () = stopped(&mut draining), if !goaway_sent && activity.is_http2() => {
                goaway_sent = true;
                conn.as_mut().begin_shutdown();
            }
            // The conditions above are read as the loop turns: turn it at the
            // first HTTP/2 request, so that a connection opened while the node
            // drains gets GOAWAY then, not at the next tick (up to 2 s later,
            // or only when the node stops accepting).
            () = activity.http2_seen(), if !activity.is_http2() => {}
            _ = ticks.tick() => match watchdog.check(activity) {
                None => {}
                // HTTP/2 says goodbye with GOAWAY; an idle HTTP/1 connection
                // or one that never sent a request is simply closed.
                Some(Expired::KeepAlive) if activity.is_http2() => {
                    if goaway_sent {
                        return;
                    }
                    goaway_sent = true;
                    conn.as_mut().begin_shutdown();
                }
                Some(why) => {
                    tracing::debug!(%peer, "closing a silent connection: {why:?}");
                    return;
                }
            },
        }
    }
    conn.as_mut().begin_shutdown();
    if let Err(e) = conn.await {
        tracing::debug!(%peer, "connection ended while draining: {e}");
    }
}

/// Resolves once the node stops accepting.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard wait_for returns is not Send: drop it here.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// hyper-util's connections, seen through one trait.
pub trait GracefulShutdown {
    fn begin_shutdown(self: std::pin::Pin<&mut Self>);
}

impl<I, S, E, B> GracefulShutdown for auto::Connection<'static, I, S, E>
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: 'static,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn begin_shutdown(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}
