//! What each fuzz target does with its input, shared by the `cargo fuzz`
//! targets (`fuzz_targets/*.rs`) and by `gateway/tests/fuzz_corpus.rs`, which
//! compiles this same file to replay the corpus and the crash inputs under
//! plain `cargo test`. So: no crate attributes here, and only dependencies the
//! gateway crate has too.
//!
//! A target fails by panicking: the gateway code panicked, or one of the
//! properties checked below (`assert!`) does not hold.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use gateway::admin::{AdminState, NodeInfo};
use gateway::config::listen::{parse_listeners, Listen, DEFAULT_BACKLOG};
use gateway::config::{Limits, RealIpHeader, Secret, TrustedIps};
use gateway::listener::{App, Serving};
use gateway::proxy::forwarded::Forwarding;
use gateway::proxy::pool::{PoolSettings, Pools};
use gateway::proxy::Shared;
use gateway::proxy_protocol;
use gateway::snapshot::Snapshot;
use gateway::status::Status;

// ---------------------------------------------------------------------------
// proxy_protocol: `proxy_protocol::parse` on arbitrary bytes (v1 and v2).

/// Checks, besides "never panics", what `read_header` relies on when it calls
/// `parse` on a buffer that grows as bytes arrive: a complete header's length
/// is within the input and it parses alone to the same header, and a verdict
/// (complete or malformed) reached on a prefix does not change when more
/// bytes arrive, so how TCP splits the header cannot change the outcome.
pub fn proxy_protocol(data: &[u8]) {
    let full = proxy_protocol::parse(data);
    if let Ok(Some((header, len))) = &full {
        assert!(
            *len > 0 && *len <= data.len(),
            "header length {len} of {}",
            data.len()
        );
        assert!(
            matches!(header.version, 1 | 2),
            "version {}",
            header.version
        );
        let alone = proxy_protocol::parse(&data[..*len]);
        assert!(
            matches!(&alone, Ok(Some(h)) if h == &(*header, *len)),
            "the header alone parses differently: {alone:?}, with what follows: {full:?}"
        );
    }
    // Every prefix length up to a v2 header with a few TLVs; beyond, a sample.
    let n = data.len();
    let prefixes = (0..n.min(300)).chain((300..n).step_by(97));
    for k in prefixes {
        match (proxy_protocol::parse(&data[..k]), &full) {
            (Ok(None), _) => {}
            (Ok(Some(p)), Ok(Some(f))) if p == *f => {}
            (Err(_), Err(_)) => {}
            (early, _) => panic!(
                "parse of the first {k} of {n} bytes gave {early:?}, of all of them {full:?}"
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// http_connection: bytes from a client, through the listener's path.

/// How long `read_header` may take (the listener's `proxy_protocol_timeout`).
const PROXY_PROTOCOL_TIMEOUT: Duration = Duration::from_secs(5);
/// Virtual time after which a connection whose client has sent everything and
/// closed its side should long be over.
const CONNECTION_LIMIT: Duration = Duration::from_secs(3600);
/// How long the client waits for the answers before it closes its side.
const CLIENT_WAIT: Duration = Duration::from_secs(1);
/// The sizes the client's bytes are written in (bits 3-5 of the first byte).
const CHUNKS: [usize; 8] = [usize::MAX, 1, 2, 3, 7, 16, 100, 1000];

/// The first byte picks the listener and the app; the rest is what the client
/// sends, after which it closes its side and reads whatever comes back.
///
/// First byte, bit by bit:
/// - 0: the app: 0 = the Admin API (`/status`, `/config`, ...), 1 = the proxy
///   with the routes in [`ROUTES`] (none reaches an upstream: a matched route
///   answers 503 from an upstream without targets, so nothing leaves the process)
/// - 1: the listener has `proxy_protocol` (`read_header`, then `Rewind`)
/// - 2: the listener has `http2` (hyper's auto builder, else HTTP/1 only)
/// - 3-5: the write size, from [`CHUNKS`] (so `read_header` and hyper see the
///   bytes split in different places)
/// - 6: Admin API: an admin token is set / proxy: `underscores_in_headers`
/// - 7: Admin API: a configuration is loaded / proxy: every address is
///   trusted and the client address comes from `X-Forwarded-For`, recursively
///   (else none is and it comes from the PROXY header)
pub fn http_connection(data: &[u8]) {
    let Some((&ctl, input)) = data.split_first() else {
        return;
    };
    thread_local! {
        // Built once per thread: a fuzzing process runs every input on one.
        static RUNTIME: RefCell<tokio::runtime::Runtime> = RefCell::new(
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .expect("a current-thread runtime")
        );
    }
    RUNTIME.with(|rt| rt.borrow().block_on(connection(ctl, input)));
}

async fn connection(ctl: u8, input: &[u8]) {
    let chunk = CHUNKS[usize::from((ctl >> 3) & 7)];
    let (client, server) = tokio::io::duplex(64 << 10);
    let (mut from_server, mut to_server) = tokio::io::split(client);
    let send = async move {
        for piece in input.chunks(chunk.min(input.len()).max(1)) {
            if to_server.write_all(piece).await.is_err() {
                return; // the server closed the connection
            }
        }
        // Like a client awaiting its answers: the clock is paused, so this
        // sleep ends once the server is idle (hyper would drop a request in
        // flight when the client half-closes the connection).
        tokio::time::sleep(CLIENT_WAIT).await;
        let _ = to_server.shutdown().await;
    };
    let receive = async move {
        let mut sink = [0u8; 4096];
        while let Ok(1..) = from_server.read(&mut sink).await {}
    };
    let serve = async {
        let served = tokio::time::timeout(CONNECTION_LIMIT, serve(ctl, server));
        assert!(
            served.await.is_ok(),
            "the connection was still open {CONNECTION_LIMIT:?} after the client closed its side"
        );
    };
    tokio::join!(send, receive, serve);
}

/// What `listener::connection` does after `accept` (minus TLS):
/// `listener::serve`, the PROXY header, the first-head reader, hyper with the
/// `Watched`/`Tracked` wrappers and the watchdog, exactly as a node runs them.
async fn serve(ctl: u8, stream: tokio::io::DuplexStream) {
    let bit = |n: u8| ctl & (1 << n) != 0;
    let mut flags = String::from("127.0.0.1:8000");
    if bit(1) {
        flags.push_str(" proxy_protocol");
    }
    if bit(2) {
        flags.push_str(" http2");
    }
    let listen = parse_listeners(&flags).expect("a valid listener").remove(0);
    let peer: SocketAddr = ([10, 0, 0, 1], 40000).into();
    let local: SocketAddr = ([10, 0, 0, 2], 8000).into();
    let status = Arc::new(Status::default());
    let app = if bit(0) {
        let forwarding = if bit(7) {
            Forwarding {
                trusted_ips: TrustedIps::parse(&["0.0.0.0/0".into(), "::/0".into()])
                    .expect("valid trusted_ips"),
                real_ip_header: RealIpHeader::Header(http::HeaderName::from_static(
                    "x-forwarded-for",
                )),
                real_ip_recursive: true,
            }
        } else {
            Forwarding {
                trusted_ips: TrustedIps::default(),
                real_ip_header: RealIpHeader::ProxyProtocol,
                real_ip_recursive: false,
            }
        };
        App::Proxy(Arc::new(shared(routes(), forwarding, bit(6))))
    } else {
        let snapshot = if bit(7) {
            routes()
        } else {
            Arc::new(Snapshot::empty())
        };
        let forwarding = Forwarding {
            trusted_ips: TrustedIps::default(),
            real_ip_header: RealIpHeader::ProxyProtocol,
            real_ip_recursive: false,
        };
        App::Admin(gateway::admin::router(AdminState {
            shared: Arc::new(shared(snapshot, forwarding, false)),
            pools: Arc::new(pools()),
            node: Arc::new(NodeInfo {
                node_id: uuid::Uuid::nil(),
                hostname: "fuzz".into(),
                configuration: Default::default(),
            }),
            cluster: None,
            token: Arc::new(arc_swap::ArcSwapOption::from_pointee(
                bit(6).then(|| Secret::new("fuzz-token")),
            )),
        }))
    };
    // Never flipped: the node neither drains nor stops while a client talks.
    let (_never, running) = tokio::sync::watch::channel(false);
    let serving = Serving {
        app,
        listen,
        tls: None,
        status,
        proxy_protocol_timeout: PROXY_PROTOCOL_TIMEOUT,
        limits: Arc::new(limits(false)),
        draining: running.clone(),
        shutdown: running,
    };
    gateway::listener::serve(stream, peer, local, serving).await;
}

/// Fresh state per input (so one input's `POST /config` cannot change the
/// next one's answers) around a snapshot compiled once.
fn shared(snapshot: Arc<Snapshot>, forwarding: Forwarding, underscores: bool) -> Shared {
    Shared {
        snapshot: ArcSwap::new(snapshot),
        status: Arc::new(Status::default()),
        forwarding,
        limits: limits(underscores),
    }
}

/// Kong's defaults, with a body limit low enough for inputs to pass it.
fn limits(underscores_in_headers: bool) -> Limits {
    Limits {
        client_max_body_size: 1000,
        underscores_in_headers,
        ..Limits::default()
    }
}

fn pools() -> Pools {
    Pools::new(PoolSettings {
        max_idle: 4,
        idle_timeout: Duration::from_secs(60),
        max_requests: 100,
    })
}

/// The proxy's routes: prefixes, a regex, hosts with wildcards, headers,
/// HTTPS-only routes that redirect or answer 426, a route without a service.
/// Every service goes to `nowhere`, an upstream without targets.
pub const ROUTES: &str = r#"
_format_version: "3.0"
upstreams:
- name: nowhere
services:
- name: api
  host: nowhere
  path: /base
  routes:
  - name: prefix
    paths: ["/api", "/v1/"]
  - name: regex
    paths: ['~/users/(?<id>\d+)/?$']
    methods: [GET, POST]
    strip_path: false
    path_handling: v1
  - name: hosts
    hosts: ["example.com", "*.example.org", "api.example.*"]
    preserve_host: true
  - name: headers
    headers: {x-version: ["1", "2"]}
  - name: https-only
    paths: ["/secure"]
    protocols: [https]
    https_redirect_status_code: 301
  - name: upgrade
    paths: ["/upgrade"]
    protocols: [https]
    https_redirect_status_code: 426
  - name: http-only
    paths: ["/plain"]
    protocols: [http]
- name: other
  host: nowhere
  routes:
  - name: root
    paths: ["/"]
    strip_path: false
routes:
- name: orphan
  paths: ["/orphan"]
"#;

fn routes() -> Arc<Snapshot> {
    static SNAPSHOT: OnceLock<Arc<Snapshot>> = OnceLock::new();
    SNAPSHOT
        .get_or_init(|| {
            let snapshot = Snapshot::from_declarative(ROUTES, &pools())
                .unwrap_or_else(|e| panic!("the fuzz routes do not load: {e}"));
            Arc::new(snapshot)
        })
        .clone()
}

// ---------------------------------------------------------------------------
// declarative: a declarative config file (YAML, or JSON, which is YAML).

/// What `declarative_config` and `POST /config` do with the text: parse, then
/// compile the snapshot. A parsed document must survive `export` (what
/// `config db_export` writes): `parse(&export(e))` gives `e` back.
pub fn declarative(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // both readers reject it before parsing
    };
    let Ok(doc) = gateway::declarative::parse(text) else {
        return;
    };
    let exported = gateway::declarative::export(&doc.entities);
    match gateway::declarative::parse(&exported) {
        Ok(back) => assert!(
            back.entities == doc.entities,
            "export does not give the entities back\n--- exported:\n{exported}\n--- parsed: {:?}\n--- read back: {:?}",
            doc.entities,
            back.entities
        ),
        Err(e) => panic!("export does not parse: {e}\n--- exported:\n{exported}"),
    }
    let _ = Snapshot::build(doc.entities, &pools());
}

// ---------------------------------------------------------------------------
// listen_directive: `proxy_listen` / `admin_listen` values.

/// Never panics; what parses prints (`Display`, as the logs show it) as
/// something that parses back to the same listener, backlog aside.
pub fn listen_directive(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // config values are strings
    };
    let Ok(listeners) = parse_listeners(text) else {
        return;
    };
    for l in listeners {
        let shown = l.to_string();
        let back = parse_listeners(&shown)
            .unwrap_or_else(|e| panic!("{l:?} prints as `{shown}`, which does not parse: {e}"));
        let expected = Listen {
            backlog: DEFAULT_BACKLOG,
            ..l.clone()
        };
        assert_eq!(back, [expected], "`{shown}` parses back differently");
    }
}
