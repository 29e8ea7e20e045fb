//! Keep-alive pools of upstream HTTP/1.1 connections, one per (scheme, host, port).
//! Checkout and checkin are lock-free; the registry lock is taken only when a
//! snapshot is built.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::body::RequestBody;
use crate::model::Protocol;

#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub max_idle: usize,
    pub idle_timeout: Duration,
    pub max_requests: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub scheme: Protocol,
    pub host: Box<str>,
    pub port: u16,
}

/// A connection ready for one request.
pub struct Conn {
    sender: SendRequest<RequestBody>,
    used: u64,
    /// Taken from the pool rather than freshly connected.
    pub reused: bool,
}

impl Conn {
    pub fn sender(&mut self) -> &mut SendRequest<RequestBody> {
        &mut self.sender
    }
}

struct Idle {
    sender: SendRequest<RequestBody>,
    used: u64,
    since: Instant,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("timed out connecting to {0}")]
    Timeout(String),
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, std::io::Error),
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("TLS handshake with {0} failed: {1}")]
    Tls(String, std::io::Error),
    #[error("HTTP handshake with {0} failed: {1}")]
    Handshake(String, hyper::Error),
}

impl ConnectError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, ConnectError::Timeout(_))
    }
}

pub struct Pool {
    key: PoolKey,
    /// `host:port`, for messages.
    label: String,
    /// Set when `host` is an IP literal: no resolver call per connect.
    literal: Option<SocketAddr>,
    idle: ArrayQueue<Idle>,
    settings: PoolSettings,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

impl Pool {
    /// A pooled connection if a live one is idle, else a new one.
    pub async fn checkout(&self, connect_timeout: Duration) -> Result<Conn, ConnectError> {
        while let Some(idle) = self.idle.pop() {
            if idle.since.elapsed() > self.settings.idle_timeout || idle.sender.is_closed() {
                continue;
            }
            let mut sender = idle.sender;
            // Ready at once unless the last response's end is still being processed.
            if sender.is_ready() {
                return Ok(Conn {
                    sender,
                    used: idle.used,
                    reused: true,
                });
            }
            if let Ok(Ok(())) = tokio::time::timeout(connect_timeout, sender.ready()).await {
                return Ok(Conn {
                    sender,
                    used: idle.used,
                    reused: true,
                });
            }
        }
        self.connect(connect_timeout).await
    }

    /// Returns a connection whose response was read to the end.
    pub fn checkin(&self, conn: Conn) {
        let used = conn.used + 1;
        if self.settings.max_idle == 0
            || used >= self.settings.max_requests
            || conn.sender.is_closed()
        {
            return;
        }
        // A full pool drops the connection, as nginx's keepalive does.
        let _ = self.idle.push(Idle {
            sender: conn.sender,
            used,
            since: Instant::now(),
        });
    }

    pub async fn connect(&self, timeout: Duration) -> Result<Conn, ConnectError> {
        match tokio::time::timeout(timeout, self.connect_inner()).await {
            Ok(r) => r,
            Err(_) => Err(ConnectError::Timeout(self.label.clone())),
        }
    }

    async fn connect_inner(&self) -> Result<Conn, ConnectError> {
        let stream = match self.literal {
            Some(addr) => TcpStream::connect(addr)
                .await
                .map_err(|e| ConnectError::Connect(self.label.clone(), e))?,
            None => self.connect_by_name().await?,
        };
        let _ = stream.set_nodelay(true);
        let sender = match &self.tls {
            None => handshake(TokioIo::new(stream), &self.label).await?,
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), stream)
                    .await
                    .map_err(|e| ConnectError::Tls(self.label.clone(), e))?;
                handshake(TokioIo::new(tls), &self.label).await?
            }
        };
        Ok(Conn {
            sender,
            used: 0,
            reused: false,
        })
    }

    async fn connect_by_name(&self) -> Result<TcpStream, ConnectError> {
        let addrs = tokio::net::lookup_host((&*self.key.host, self.key.port))
            .await
            .map_err(|e| ConnectError::Resolve(self.label.clone(), e))?;
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        let e = last.unwrap_or_else(|| std::io::Error::other("no addresses"));
        Err(ConnectError::Connect(self.label.clone(), e))
    }
}

async fn handshake<T>(io: T, label: &str) -> Result<SendRequest<RequestBody>, ConnectError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(|e| ConnectError::Handshake(label.to_string(), e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("upstream connection ended: {e}");
        }
    });
    Ok(sender)
}

/// Hands out the one pool for each upstream address, across snapshots.
pub struct Pools {
    settings: PoolSettings,
    tls: tokio_rustls::TlsConnector,
    registry: Mutex<HashMap<PoolKey, Weak<Pool>>>,
}

impl Pools {
    pub fn new(settings: PoolSettings) -> Self {
        Pools {
            settings,
            tls: tokio_rustls::TlsConnector::from(crate::tls::no_verify_client_config()),
            registry: Mutex::new(HashMap::new()),
        }
    }

    /// Called while building a snapshot, never on the request path.
    pub fn get(&self, key: PoolKey) -> Arc<Pool> {
        let mut registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pool) = registry.get(&key).and_then(Weak::upgrade) {
            return pool;
        }
        registry.retain(|_, w| w.strong_count() > 0);
        let label = crate::declarative::format_host_port(&key.host, key.port);
        let literal = key
            .host
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, key.port));
        let tls = (key.scheme == Protocol::Https).then(|| {
            let name = ServerName::try_from(key.host.to_string())
                .unwrap_or_else(|_| ServerName::try_from("invalid").expect("static name"));
            (self.tls.clone(), name)
        });
        let pool = Arc::new(Pool {
            label,
            literal,
            idle: ArrayQueue::new(self.settings.max_idle.max(1)),
            settings: self.settings,
            tls,
            key: key.clone(),
        });
        registry.insert(key, Arc::downgrade(&pool));
        pool
    }
}
