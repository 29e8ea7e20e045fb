//! The one immutable structure the data plane reads: compiled router, services
//! with their balancers, and the entities it was built from. A new snapshot is
//! built off the request path and swapped in atomically.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use uuid::Uuid;

use crate::declarative::{format_host_port, split_host_port};
use crate::model::{Entities, PathHandling, Protocol, Service, Target as TargetEntity, Upstream};
use crate::plugins::{Chain, CompileError, Index as PluginIndex};
use crate::proxy::balancer::{Balancer, Target};
use crate::proxy::pool::{PoolKey, Pools};
use crate::router::{Router, RouterError};

pub struct Snapshot {
    pub router: Router,
    /// Indexed by the router's route index.
    pub routes: Box<[RouteEntry]>,
    /// Stable digest of the entities (Kong's `configuration_hash`).
    pub hash: String,
    pub entities: Arc<Entities>,
    /// False for the empty snapshot a node starts with before any config.
    pub loaded: bool,
    /// When it was built (Unix seconds).
    pub built_at: u64,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub struct RouteEntry {
    pub id: Uuid,
    pub service: Option<Arc<ServiceEntry>>,
    pub strip_path: bool,
    pub preserve_host: bool,
    pub path_handling: PathHandling,
    pub http: bool,
    pub https: bool,
    pub https_redirect_status_code: u16,
    /// The plugins that run for this route, compiled with the snapshot;
    /// empty (and free) for a route without any.
    pub plugins: Chain,
}

pub struct ServiceEntry {
    pub id: Uuid,
    pub path: Option<Box<str>>,
    pub retries: u32,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub balancer: Balancer,
    /// An upstream's `host_header`, which wins over the target's host.
    pub host_header: Option<HeaderValue>,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Router(#[from] RouterError),
    #[error("service `{0}`: {1}")]
    Service(String, String),
    #[error(transparent)]
    Plugin(#[from] CompileError),
}

impl Snapshot {
    pub fn empty() -> Snapshot {
        Snapshot {
            router: Router::build(&[]).expect("an empty router builds"),
            routes: Box::new([]),
            hash: "00000000000000000000000000000000".into(),
            entities: Arc::default(),
            loaded: false,
            built_at: unix_now(),
        }
    }

    /// Parses and compiles declarative text; errors point into the file.
    pub fn from_declarative(text: &str, pools: &Pools) -> Result<Snapshot, String> {
        let mut doc = crate::declarative::parse(text).map_err(|e| e.to_string())?;
        let entities = std::mem::take(&mut doc.entities);
        let located = |e: SnapshotError| match &e {
            SnapshotError::Router(r) => match doc.route_location(&r.route) {
                Some(at) => format!("{at}.{}: {}", r.field, r.message),
                None => e.to_string(),
            },
            SnapshotError::Service(..) | SnapshotError::Plugin(..) => e.to_string(),
        };
        Snapshot::build(entities, pools).map_err(located)
    }

    pub fn build(entities: Entities, pools: &Pools) -> Result<Snapshot, SnapshotError> {
        let upstreams = Upstreams::index(&entities);
        let mut services = HashMap::with_capacity(entities.services.len());
        for s in entities.services.iter().filter(|s| s.enabled) {
            services.insert(s.id, Arc::new(service_entry(s, &upstreams, pools)?));
        }
        let plugins = PluginIndex::new(&entities)?;
        // Prometheus labels series by names; ids stand in for missing ones.
        let service_names: HashMap<Uuid, String> = entities
            .services
            .iter()
            .map(|s| (s.id, s.name.clone().unwrap_or_else(|| s.id.to_string())))
            .collect();
        let mut routes = Vec::with_capacity(entities.routes.len());
        let mut entries = Vec::with_capacity(entities.routes.len());
        let service_index: HashMap<Uuid, usize> = entities
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id, i))
            .collect();
        for r in &entities.routes {
            let service = match r.service {
                // A route of a disabled service is not routed at all.
                Some(fk) => match services.get(&fk.id) {
                    Some(s) => Some(s.clone()),
                    None => continue,
                },
                None => None,
            };
            let mut chain = plugins.chain(r.id, r.service.map(|s| s.id));
            if chain.wants_metrics() {
                let service = r
                    .service
                    .and_then(|s| service_names.get(&s.id).cloned())
                    .unwrap_or_default();
                let route = r.name.clone().unwrap_or_else(|| r.id.to_string());
                chain.attach_metrics(r.id, &service, &route);
            }
            if chain.logs_headers() {
                let service = r
                    .service
                    .and_then(|s| service_index.get(&s.id))
                    .map(|&i| &entities.services[i]);
                chain.attach_logged(r, service);
            }
            entries.push(RouteEntry {
                id: r.id,
                service,
                strip_path: r.strip_path,
                preserve_host: r.preserve_host,
                path_handling: r.path_handling,
                http: r.protocols.contains(&Protocol::Http),
                https: r.protocols.contains(&Protocol::Https),
                https_redirect_status_code: r.https_redirect_status_code,
                plugins: chain,
            });
            routes.push(r.clone());
        }
        let router = Router::build(&routes)?;
        Ok(Snapshot {
            router,
            routes: entries.into_boxed_slice(),
            hash: configuration_hash(&entities),
            entities: Arc::new(entities),
            loaded: true,
            built_at: unix_now(),
        })
    }
}

fn service_entry(
    s: &Service,
    upstreams: &Upstreams<'_>,
    pools: &Pools,
) -> Result<ServiceEntry, SnapshotError> {
    let name = || s.name.clone().unwrap_or_else(|| s.id.to_string());
    let mut weighted = Vec::new();
    let mut host_header = None;
    match upstreams.by_name.get(s.host.as_str()) {
        Some(u) => {
            for t in upstreams.targets.get(&u.id).into_iter().flatten() {
                let (host, port) = split_host_port(&t.target)
                    .map_err(|e| SnapshotError::Service(name(), format!("target {e}")))?;
                let port = port.unwrap_or(crate::model::DEFAULT_TARGET_PORT);
                weighted.push((target(s.protocol, &host, port, pools)?, t.weight));
            }
            if let Some(h) = &u.host_header {
                host_header = Some(header_value(h)?);
            }
        }
        None => weighted.push((target(s.protocol, &s.host, s.port, pools)?, 1)),
    }
    Ok(ServiceEntry {
        id: s.id,
        path: s.path.as_deref().map(Into::into),
        retries: s.retries,
        connect_timeout: Duration::from_millis(s.connect_timeout.into()),
        read_timeout: Duration::from_millis(s.read_timeout.into()),
        write_timeout: Duration::from_millis(s.write_timeout.into()),
        balancer: Balancer::new(weighted),
        host_header,
    })
}

/// Upstreams by name and their targets, so each service looks up in O(1).
struct Upstreams<'a> {
    by_name: HashMap<&'a str, &'a Upstream>,
    targets: HashMap<Uuid, Vec<&'a TargetEntity>>,
}

impl<'a> Upstreams<'a> {
    fn index(e: &'a Entities) -> Self {
        let mut targets: HashMap<Uuid, Vec<&TargetEntity>> = HashMap::new();
        for t in &e.targets {
            targets.entry(t.upstream.id).or_default().push(t);
        }
        Upstreams {
            by_name: e.upstreams.iter().map(|u| (u.name.as_str(), u)).collect(),
            targets,
        }
    }
}

fn target(scheme: Protocol, host: &str, port: u16, pools: &Pools) -> Result<Target, SnapshotError> {
    let authority = if port == scheme.default_port() {
        if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        }
    } else {
        format_host_port(host, port)
    };
    Ok(Target {
        pool: pools.get(PoolKey {
            scheme,
            host: host.into(),
            port,
        }),
        host_header: header_value(&authority)?,
    })
}

fn header_value(s: &str) -> Result<HeaderValue, SnapshotError> {
    HeaderValue::from_str(s)
        .map_err(|_| SnapshotError::Service(s.to_string(), "not a valid Host header".into()))
}

/// Kong's `configuration_hash` of a set of entities, as `/status` reports it:
/// SHA-256 of their canonical JSON, first 16 bytes in hex. The one definition,
/// shared by [`Snapshot::build`] and `gateway config db_fingerprint`.
pub fn configuration_hash(entities: &Entities) -> String {
    let json = serde_json::to_vec(entities).unwrap_or_default();
    let d = ring::digest::digest(&ring::digest::SHA256, &json);
    d.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
