//! Is the stack serving through its load balancer?
//!
//! Disaster-recovery drills and failovers measure RTO until the first request is served
//! through the recovered classic ELB, by its DNS name: `resolve` the name (A records, with the
//! system's resolver or one DNS server such as the LocalStack kit's), `get` one page over plain
//! HTTP/1.1 from the addresses it resolves to, and `wait_served` repeats that until an answer is
//! accepted or a time limit passes.
//!
//! Nothing is cached between tries: every try builds a fresh resolver with no response cache,
//! since a failover switches records with TTL 60 and the drill must see the new answer as soon
//! as the DNS server gives it.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
    ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::TokioResolver;
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::header::{HeaderValue, CONNECTION, HOST, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How often `wait_served` tries.
pub const TRY_INTERVAL: Duration = Duration::from_secs(1);
/// The bound on one try of `wait_served` (DNS, connect, request and body).
pub const TRY_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of a response body `get` reads.
pub const BODY_LIMIT: usize = 64 * 1024;
/// How much of the body an `Answer` keeps.
pub const PREFIX_LEN: usize = 200;

/// Per-query timeout with `Resolver::Server`.
const SERVER_DNS_TIMEOUT: Duration = Duration::from_secs(2);
/// Retries after a failed query with `Resolver::Server` (hickory counts retries, so 2 queries).
const SERVER_DNS_ATTEMPTS: usize = 1;
/// The least time a try gets, even when the limit is (nearly) reached.
const MIN_TRY: Duration = Duration::from_millis(100);
/// The LocalStack kit's DNS server, for hints.
const KIT_DNS: &str = "127.0.0.1:4553";
const PROBE_USER_AGENT: &str = concat!("gateway-provisioner-probe/", env!("CARGO_PKG_VERSION"));

/// Where names are resolved: the system's resolver (/etc/resolv.conf), or one DNS server (e.g.
/// the LocalStack kit's, 127.0.0.1:4553).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    System,
    Server(SocketAddr),
}

impl Resolver {
    /// `Server` for a given DNS server (a `--dns-server` option), `System` without one.
    pub fn from_option(server: Option<SocketAddr>) -> Resolver {
        match server {
            Some(addr) => Resolver::Server(addr),
            None => Resolver::System,
        }
    }

    /// What to check when a name does not resolve with this resolver.
    fn hint(&self) -> String {
        match self {
            Resolver::System => format!("on the LocalStack kit pass --dns-server {KIT_DNS}"),
            Resolver::Server(addr) => {
                format!("check that the DNS server at {addr} is up and serves this name")
            }
        }
    }

    /// A fresh hickory resolver for A records, with no response cache.
    fn build(&self) -> Result<TokioResolver> {
        let mut builder = match self {
            Resolver::System => TokioResolver::builder_tokio().map_err(|e| {
                anyhow!(
                    "cannot read the system's DNS configuration (/etc/resolv.conf): {e} \
                     (pass --dns-server HOST:PORT to name a DNS server)"
                )
            })?,
            Resolver::Server(addr) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                let server = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
                let mut options = ResolverOpts::default();
                options.timeout = SERVER_DNS_TIMEOUT;
                options.attempts = SERVER_DNS_ATTEMPTS;
                // The server is asked, not /etc/hosts.
                options.use_hosts_file = ResolveHosts::Never;
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![server]),
                    TokioRuntimeProvider::default(),
                )
                .with_options(options)
            }
        };
        let options = builder.options_mut();
        options.cache_size = 0;
        options.ip_strategy = LookupIpStrategy::Ipv4Only;
        builder
            .build()
            .map_err(|e| anyhow!("cannot set up a DNS resolver with {self}: {e}"))
    }
}

impl fmt::Display for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resolver::System => f.write_str("the system resolver (/etc/resolv.conf)"),
            Resolver::Server(addr) => write!(f, "{addr}"),
        }
    }
}

/// One HTTP answer seen through the ELB.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    /// The address that answered.
    pub address: IpAddr,
    pub status: u16,
    /// The first 200 bytes of the body, lossy UTF-8.
    pub body_prefix: String,
    /// From the start of the try (DNS included) to the end of the body (or of `BODY_LIMIT`).
    pub elapsed_ms: u64,
}

impl Answer {
    /// The short state line of this answer, e.g. "503 from 127.100.0.3".
    fn state(&self) -> String {
        format!("{} from {}", self.status, self.address)
    }
}

/// A try that saw no HTTP answer: a short state line for progress, and the full error.
struct Miss {
    state: String,
    error: anyhow::Error,
}

impl Miss {
    fn new(state: impl Into<String>, error: anyhow::Error) -> Miss {
        Miss {
            state: state.into(),
            error,
        }
    }
}

/// An IP literal as host (`10.0.0.1`, `::1`, `[::1]`).
fn ip_literal(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

/// The Host header for `host:port`: the port is left out when it is 80.
fn host_header(host: &str, port: u16) -> String {
    let host = match ip_literal(host) {
        Some(IpAddr::V6(ip)) => format!("[{ip}]"),
        _ => host.to_string(),
    };
    if port == 80 {
        host
    } else {
        format!("{host}:{port}")
    }
}

/// The GET request, or an error for a host or path that cannot be sent.
fn request(host: &str, port: u16, path: &str) -> Result<Request<Empty<Bytes>>> {
    if host.is_empty() {
        anyhow::bail!("no host to probe (an empty host name was given)");
    }
    if !path.starts_with('/') {
        anyhow::bail!("the path to probe must start with '/': {path:?}");
    }
    let uri: Uri = path
        .parse()
        .with_context(|| format!("the path to probe is not a valid URL path: {path:?}"))?;
    let host_value = HeaderValue::from_str(&host_header(host, port))
        .with_context(|| format!("the host to probe is not a valid host name: {host:?}"))?;
    Request::builder()
        .method(Method::GET)
        .uri(uri)
        .header(HOST, host_value)
        .header(USER_AGENT, PROBE_USER_AGENT)
        .header(CONNECTION, "close")
        .body(Empty::new())
        .with_context(|| format!("cannot build the request GET {path} for {host}"))
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Resolves `host`, classifying failures for progress lines.
async fn lookup(resolver: &Resolver, host: &str) -> Result<Vec<IpAddr>, Miss> {
    if let Some(ip) = ip_literal(host) {
        return Ok(vec![ip]);
    }
    let dns = resolver
        .build()
        .map_err(|e| Miss::new("no DNS resolver", e))?;
    let fail = |cause: &dyn fmt::Display| {
        anyhow!(
            "cannot resolve {host} with {resolver}: {cause} ({})",
            resolver.hint()
        )
    };
    match dns.lookup_ip(host).await {
        Ok(found) => {
            let mut ips: Vec<IpAddr> = Vec::new();
            for ip in found.iter() {
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
            if ips.is_empty() {
                Err(Miss::new("no DNS answer yet", fail(&"no A record")))
            } else {
                Ok(ips)
            }
        }
        Err(e) if e.is_no_records_found() => Err(Miss::new("no DNS answer yet", fail(&e))),
        Err(e @ NetError::Timeout) => Err(Miss::new(
            format!("no answer from DNS server {resolver}"),
            fail(&e),
        )),
        Err(e) => Err(Miss::new(format!("DNS error: {e}"), fail(&e))),
    }
}

/// Resolves `host` (A records) with `resolver`. An IP literal is returned as it is.
pub async fn resolve(resolver: &Resolver, host: &str) -> Result<Vec<IpAddr>> {
    lookup(resolver, host).await.map_err(|miss| miss.error)
}

/// How far one exchange got, for the message when the time runs out.
#[derive(Clone, Copy)]
enum Stage {
    Connecting,
    AwaitingResponse,
    ReadingBody(u16),
}

/// Connects, sends the request and reads the status and up to `BODY_LIMIT` of the body.
async fn exchange(
    stage: &mut Stage,
    addr: SocketAddr,
    request: Request<Empty<Bytes>>,
) -> Result<(u16, Vec<u8>), ExchangeError> {
    *stage = Stage::Connecting;
    let stream = TcpStream::connect(addr)
        .await
        .map_err(ExchangeError::Connect)?;
    *stage = Stage::AwaitingResponse;
    let (mut sender, conn) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(ExchangeError::Http)?;
    let mut conn = std::pin::pin!(conn);
    let talk = async {
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        *stage = Stage::ReadingBody(status);
        let mut body = response.into_body();
        let mut data = Vec::new();
        while data.len() < BODY_LIMIT {
            match body.frame().await {
                None => break,
                Some(frame) => {
                    if let Ok(chunk) = frame?.into_data() {
                        let take = chunk.len().min(BODY_LIMIT - data.len());
                        data.extend_from_slice(&chunk[..take]);
                    }
                }
            }
        }
        Ok::<_, hyper::Error>((status, data))
    };
    let mut talk = std::pin::pin!(talk);
    // The connection is driven here, not spawned, so nothing outlives the try.
    let result = tokio::select! {
        done = &mut talk => done,
        ended = &mut conn => match ended {
            Err(e) => Err(e),
            // Closed cleanly: what was received is with the request's side.
            Ok(()) => talk.await,
        },
    };
    result.map_err(ExchangeError::Http)
}

enum ExchangeError {
    Connect(std::io::Error),
    Http(hyper::Error),
}

/// One GET to one address, bounded by `deadline`.
async fn get_from(
    ip: IpAddr,
    host: &str,
    port: u16,
    path: &str,
    start: Instant,
    deadline: Instant,
    timeout: Duration,
) -> Result<Answer, Miss> {
    let addr = SocketAddr::new(ip, port);
    let request = request(host, port, path).map_err(|e| Miss::new("invalid request", e))?;
    let mut stage = Stage::Connecting;
    let outcome = tokio::time::timeout_at(deadline, exchange(&mut stage, addr, request)).await;
    let what = format!("GET http://{}{path} at {addr}", host_header(host, port));
    match outcome {
        Ok(Ok((status, data))) => {
            let prefix = &data[..data.len().min(PREFIX_LEN)];
            Ok(Answer {
                address: ip,
                status,
                body_prefix: String::from_utf8_lossy(prefix).into_owned(),
                elapsed_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
            })
        }
        Ok(Err(ExchangeError::Connect(e))) => {
            let state = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                format!("connection refused by {addr}")
            } else {
                format!("cannot connect to {addr}: {e}")
            };
            Err(Miss::new(
                state,
                anyhow!(
                    "{what}: cannot connect to {addr}: {e} (check that the load balancer \
                     listens on port {port} and that its security group lets you in)"
                ),
            ))
        }
        Ok(Err(ExchangeError::Http(e))) => {
            let state = if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
                format!("connection closed by {addr} without an answer")
            } else if e.is_parse() {
                format!("no HTTP from {addr}")
            } else {
                format!("HTTP error from {addr}: {e}")
            };
            let cause = std::error::Error::source(&e)
                .map(|s| format!("{e}: {s}"))
                .unwrap_or_else(|| e.to_string());
            Err(Miss::new(
                state,
                anyhow!(
                    "{what}: {cause} (the load balancer accepted the connection but gave no \
                     HTTP answer: are its instances InService and is the listener HTTP?)"
                ),
            ))
        }
        Err(_elapsed) => {
            let t = secs(timeout);
            let (state, detail) = match stage {
                Stage::Connecting => (
                    format!("no connection to {addr} within {t}"),
                    format!(
                        "no TCP connection within {t} (check the load balancer's security \
                         group and listener on port {port})"
                    ),
                ),
                Stage::AwaitingResponse => (
                    format!("no answer from {addr} within {t}"),
                    format!(
                        "connected, but no HTTP answer within {t} (are the load balancer's \
                         instances InService?)"
                    ),
                ),
                Stage::ReadingBody(status) => (
                    format!("{status} from {ip}, body not done within {t}"),
                    format!("answered {status} but the body did not end within {t}"),
                ),
            };
            Err(Miss::new(state, anyhow!("{what}: {detail}")))
        }
    }
}

/// One try: resolve, then GET from the addresses in turn until one answers HTTP.
async fn attempt(
    resolver: &Resolver,
    host: &str,
    port: u16,
    path: &str,
    timeout: Duration,
) -> Result<Answer, Miss> {
    let start = Instant::now();
    let deadline = start + timeout;
    let ips = match tokio::time::timeout_at(deadline, lookup(resolver, host)).await {
        Ok(found) => found?,
        Err(_elapsed) => {
            return Err(Miss::new(
                format!("no DNS answer within {}", secs(timeout)),
                anyhow!(
                    "cannot resolve {host} with {resolver}: no answer within {} ({})",
                    secs(timeout),
                    resolver.hint()
                ),
            ))
        }
    };
    let mut misses: Vec<Miss> = Vec::new();
    for ip in ips {
        match get_from(ip, host, port, path, start, deadline, timeout).await {
            Ok(answer) => return Ok(answer),
            Err(miss) => misses.push(miss),
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    if misses.len() == 1 {
        if let Some(miss) = misses.pop() {
            return Err(miss);
        }
    }
    let state = misses
        .iter()
        .map(|m| m.state.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    let errors = misses
        .iter()
        .map(|m| format!("{:#}", m.error))
        .collect::<Vec<_>>()
        .join("; ");
    Err(Miss::new(
        state,
        anyhow!("no address of {host} gave an HTTP answer: {errors}"),
    ))
}

/// One `GET path` over plain HTTP/1.1 to host:port (Host header = host), with a timeout that
/// bounds the whole try (DNS included); the response body is read up to 64 KiB. An IP literal
/// as host skips DNS; with several addresses, each is tried in turn until one answers HTTP
/// (any status).
pub async fn get(
    resolver: &Resolver,
    host: &str,
    port: u16,
    path: &str,
    timeout: Duration,
) -> Result<Answer> {
    request(host, port, path)?;
    attempt(resolver, host, port, path, timeout)
        .await
        .map_err(|miss| miss.error)
}

/// What the last try of `wait_served` saw.
enum Last {
    Rejected(Answer),
    Miss(Miss),
}

/// Repeats `get` (every 1 s, each try bounded by 5 s and by the limit) until `accept(&Answer)`
/// is true or `limit` passes; calls `on_try(&str)` with a short state line (e.g. "no DNS
/// answer yet", "503 from 127.100.0.3", "connection refused by 127.100.0.3:80") on each try so
/// callers can show progress. Returns the accepted answer, or an error that says what the last
/// try saw and for how long it tried. At least one try is made.
pub async fn wait_served(
    resolver: &Resolver,
    host: &str,
    port: u16,
    path: &str,
    limit: Duration,
    accept: impl Fn(&Answer) -> bool,
    mut on_try: impl FnMut(&str),
) -> Result<Answer> {
    request(host, port, path)?;
    let start = Instant::now();
    let deadline = start + limit;
    let mut tries: u32 = 0;
    let last = loop {
        let try_start = Instant::now();
        let budget = TRY_TIMEOUT
            .min(deadline.saturating_duration_since(try_start))
            .max(MIN_TRY);
        tries += 1;
        let last = match attempt(resolver, host, port, path, budget).await {
            Ok(answer) => {
                on_try(&answer.state());
                if accept(&answer) {
                    return Ok(answer);
                }
                Last::Rejected(answer)
            }
            Err(miss) => {
                on_try(&miss.state);
                Last::Miss(miss)
            }
        };
        let next = try_start + TRY_INTERVAL;
        if next >= deadline {
            break last;
        }
        tokio::time::sleep_until(next).await;
    };
    let tried = format!(
        "http://{}{path} was not served within the {} limit ({tries} {} over {}, one every {})",
        host_header(host, port),
        secs(limit),
        if tries == 1 { "try" } else { "tries" },
        secs(start.elapsed()),
        secs(TRY_INTERVAL),
    );
    Err(match last {
        Last::Rejected(answer) => anyhow!(
            "{tried}; last try: {} (not accepted), body: {:?}",
            answer.state(),
            answer.body_prefix
        ),
        Last::Miss(miss) => miss
            .error
            .context(format!("{tried}; last try: {}", miss.state)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, UdpSocket};

    fn response(status: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
    }

    /// A real HTTP/1.1 server on 127.0.0.1: answers the n-th connection with the n-th
    /// response (the last one repeats) and records the requests' heads.
    struct Server {
        addr: SocketAddr,
        requests: Arc<Mutex<Vec<String>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn serve(responses: Vec<String>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            let mut n = 0;
            while let Ok((mut stream, _)) = listener.accept().await {
                let reply = responses[n.min(responses.len() - 1)].clone();
                n += 1;
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => head.extend_from_slice(&buf[..k]),
                        }
                    }
                    seen.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&head).into_owned());
                    let _ = stream.write_all(reply.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Server {
            addr,
            requests,
            task,
        }
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[tokio::test]
    async fn ip_literals_skip_dns() {
        let ips = resolve(&Resolver::System, "127.0.0.1").await.unwrap();
        assert_eq!(ips, vec![LOCAL]);
        // Even with a DNS server that does not exist.
        let nowhere = Resolver::Server("127.0.0.1:9".parse().unwrap());
        let ips = resolve(&nowhere, "[::1]").await.unwrap();
        assert_eq!(ips, vec!["::1".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn resolver_from_option() {
        assert_eq!(Resolver::from_option(None), Resolver::System);
        let kit: SocketAddr = KIT_DNS.parse().unwrap();
        assert_eq!(Resolver::from_option(Some(kit)), Resolver::Server(kit));
    }

    #[test]
    fn host_header_leaves_out_port_80() {
        assert_eq!(host_header("gw.example.com", 80), "gw.example.com");
        assert_eq!(host_header("gw.example.com", 8080), "gw.example.com:8080");
        assert_eq!(host_header("::1", 8080), "[::1]:8080");
        assert_eq!(host_header("[::1]", 80), "[::1]");
    }

    #[tokio::test]
    async fn silent_dns_server_fails_in_bounded_time() {
        // A UDP socket that never answers; nothing listens on TCP at that port.
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let host = "gw-elb-1.us-west-2.elb.amazonaws.com";
        let started = std::time::Instant::now();
        let err = tokio::time::timeout(
            Duration::from_secs(15),
            resolve(&Resolver::Server(addr), host),
        )
        .await
        .expect("the lookup must end by itself")
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        let msg = format!("{err:#}");
        assert!(msg.contains(host), "{msg}");
        assert!(msg.contains(&addr.to_string()), "{msg}");
        drop(silent);
    }

    #[tokio::test]
    async fn get_returns_status_and_body_prefix() {
        let body = "x".repeat(150) + &"é".repeat(100);
        let server = serve(vec![response("200 OK", &body)]).await;
        let answer = get(
            &Resolver::System,
            "127.0.0.1",
            server.addr.port(),
            "/status?probe=1",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(answer.address, LOCAL);
        assert_eq!(answer.status, 200);
        assert_eq!(&answer.body_prefix, &body[..PREFIX_LEN]);
        let requests = server.requests.lock().unwrap().clone();
        assert_eq!(requests.len(), 1);
        assert!(
            requests[0].starts_with("GET /status?probe=1 HTTP/1.1\r\n"),
            "{}",
            requests[0]
        );
        let host_line = format!("host: 127.0.0.1:{}\r\n", server.addr.port());
        assert!(
            requests[0].to_ascii_lowercase().contains(&host_line),
            "{}",
            requests[0]
        );
    }

    #[tokio::test]
    async fn get_reads_a_large_body_up_to_the_limit() {
        let body = "y".repeat(3 * BODY_LIMIT);
        let server = serve(vec![response("200 OK", &body)]).await;
        let answer = get(
            &Resolver::System,
            "127.0.0.1",
            server.addr.port(),
            "/",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body_prefix.len(), PREFIX_LEN);
    }

    #[tokio::test]
    async fn closed_port_names_the_address() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = get(
            &Resolver::System,
            "127.0.0.1",
            addr.port(),
            "/",
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(&addr.to_string()), "{msg}");
        assert!(msg.contains("refused"), "{msg}");
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        // Accepts and reads, never answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let started = std::time::Instant::now();
        let err = get(
            &Resolver::System,
            "127.0.0.1",
            addr.port(),
            "/",
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3));
        let msg = format!("{err:#}");
        assert!(msg.contains("no HTTP answer within 0.3s"), "{msg}");
        assert!(msg.contains(&addr.to_string()), "{msg}");
        task.abort();
    }

    #[tokio::test]
    async fn bad_path_fails_at_once() {
        let err = get(
            &Resolver::System,
            "127.0.0.1",
            80,
            "status",
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert!(format!("{err:#}").contains("must start with '/'"));
    }

    #[tokio::test]
    async fn wait_served_retries_through_503() {
        let server = serve(vec![
            response("503 Service Unavailable", "no healthy upstream"),
            response("200 OK", "ok"),
        ])
        .await;
        let mut states = Vec::new();
        let started = std::time::Instant::now();
        let answer = wait_served(
            &Resolver::System,
            "127.0.0.1",
            server.addr.port(),
            "/",
            Duration::from_secs(10),
            |a| a.status == 200,
            |s| states.push(s.to_string()),
        )
        .await
        .unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body_prefix, "ok");
        assert_eq!(states, vec!["503 from 127.0.0.1", "200 from 127.0.0.1"]);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(900), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
    }

    #[tokio::test]
    async fn wait_served_gives_up_with_the_last_state() {
        let server = serve(vec![response("503 Service Unavailable", "down")]).await;
        let mut states = Vec::new();
        let started = std::time::Instant::now();
        let err = wait_served(
            &Resolver::System,
            "127.0.0.1",
            server.addr.port(),
            "/health",
            Duration::from_millis(1500),
            |a| a.status == 200,
            |s| states.push(s.to_string()),
        )
        .await
        .unwrap_err();
        let waited = started.elapsed();
        assert!(waited < Duration::from_secs(4), "{waited:?}");
        assert_eq!(states, vec!["503 from 127.0.0.1"; 2]);
        let msg = format!("{err:#}");
        assert!(msg.contains("last try: 503 from 127.0.0.1"), "{msg}");
        assert!(msg.contains("2 tries"), "{msg}");
        assert!(msg.contains("within the 1.5s limit"), "{msg}");
        assert!(msg.contains("/health"), "{msg}");
    }

    #[tokio::test]
    async fn wait_served_reports_a_closed_port() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let mut states = Vec::new();
        let err = wait_served(
            &Resolver::System,
            "127.0.0.1",
            addr.port(),
            "/",
            Duration::from_millis(500),
            |_| true,
            |s| states.push(s.to_string()),
        )
        .await
        .unwrap_err();
        assert_eq!(states, vec![format!("connection refused by {addr}")]);
        let msg = format!("{err:#}");
        assert!(
            msg.contains(&format!("last try: connection refused by {addr}")),
            "{msg}"
        );
        assert!(msg.contains("1 try"), "{msg}");
    }
}
