//! A running node: loads its configuration, binds every listener, serves, and
//! on SIGTERM/SIGINT drains as a load balancer expects.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use arc_swap::ArcSwap;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::admin::{self, AdminState, NodeInfo};
use crate::cluster::Cluster;
use crate::config::{Config, Database, Listen};
use crate::listener::{self, App, Serving};
use crate::proxy::forwarded::Forwarding;
use crate::proxy::pool::{PoolSettings, Pools};
use crate::proxy::Shared;
use crate::snapshot::Snapshot;
use crate::status::Status;
use crate::store::{migrations, Store};
use crate::tls::{self, CertifiedKey};

/// Builds the runtime and runs the node until it has drained.
pub fn run(config: Config) -> anyhow::Result<()> {
    let threads = match config.worker_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    // One worker runs on the calling thread, without work-stealing's overhead.
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(serve(config, threads))
}

/// Reads and compiles a declarative file (at most [`crate::input_limits::MAX_BODY_BYTES`]).
pub fn load_declarative(path: &Path, pools: &Pools) -> anyhow::Result<Snapshot> {
    let text = crate::input_limits::read_file(path)
        .with_context(|| format!("cannot read declarative_config {}", path.display()))?;
    Snapshot::from_declarative(&text, pools)
        .map_err(|e| anyhow::anyhow!("{} is not a valid declarative config: {e}", path.display()))
}

async fn serve(config: Config, threads: usize) -> anyhow::Result<()> {
    let _pid = PidFile::create(&config.pid_file())?;
    let pools = Arc::new(Pools::new(PoolSettings {
        max_idle: config.upstream_keepalive_pool_size,
        idle_timeout: config.upstream_keepalive_idle_timeout,
        max_requests: config.upstream_keepalive_max_requests,
    }));
    // Before any config is read: DB-less nodes refuse rate-limiting's
    // `cluster` policy, as Kong does.
    crate::plugins::rate_limiting::set_db_less(config.database == Database::Off);
    let snapshot = match &config.declarative_config {
        Some(path) => load_declarative(path, &pools)?,
        None => Snapshot::empty(),
    };
    let mut signals = Signals::new()?;
    let status = Arc::new(Status::default());
    let shared = Arc::new(Shared {
        snapshot: ArcSwap::from_pointee(snapshot),
        status: status.clone(),
        forwarding: Forwarding {
            trusted_ips: config.trusted_ips.clone(),
            real_ip_header: config.real_ip_header.clone(),
            real_ip_recursive: config.real_ip_recursive,
        },
        limits: config.limits.clone(),
    });
    let node = NodeInfo {
        node_id: uuid::Uuid::new_v4(),
        hostname: hostname(),
        configuration: public_configuration(&config),
    };
    let cluster = match config.database {
        Database::Off => None,
        Database::Postgres => {
            let joined = join_cluster(&config, &node, &shared, &pools);
            tokio::select! {
                c = joined => Some(c?),
                _ = signals.next() => {
                    tracing::info!("stopped before the database was reachable");
                    return Ok(());
                }
            }
        }
    };
    let node_id = node.node_id;
    let admin_token = Arc::new(arc_swap::ArcSwapOption::from_pointee(
        config.admin_token.clone(),
    ));
    let watch = crate::secrets::Watch {
        admin_token_file: config.admin_token_file.clone(),
        admin_token: admin_token.clone(),
        store: cluster
            .as_ref()
            .filter(|_| config.pg.password_file.is_some())
            .map(|c| c.store.clone()),
    };
    if !watch.is_idle() {
        tokio::spawn(watch.run());
    }
    let admin_app = admin::router(AdminState {
        shared: shared.clone(),
        pools: pools.clone(),
        node: Arc::new(node),
        cluster: cluster.clone(),
        token: admin_token,
    });

    let (stop, stopped) = watch::channel(false);
    let (drain_started, draining) = watch::channel(false);
    let limits = Arc::new(config.limits.clone());
    let serving = |app: App, listen: &Listen, tls| Serving {
        app,
        listen: listen.clone(),
        tls,
        status: status.clone(),
        proxy_protocol_timeout: config.proxy_protocol_timeout,
        limits: limits.clone(),
        draining: draining.clone(),
        shutdown: stopped.clone(),
    };
    // Bind everything before serving anything, so a bad address fails the start.
    let mut loops = Vec::new();
    let proxy_tls = TlsSet::new(config.ssl_cert.as_deref(), config.ssl_cert_key.as_deref());
    for l in &config.proxy_listen {
        let tls = proxy_tls.for_listener(l)?;
        for socket in listener::bind(l, threads).map_err(anyhow::Error::msg)? {
            loops.push((socket, serving(App::Proxy(shared.clone()), l, tls.clone())));
        }
    }
    let admin_tls = TlsSet::new(
        config.admin_ssl_cert.as_deref(),
        config.admin_ssl_cert_key.as_deref(),
    );
    for l in &config.admin_listen {
        let tls = admin_tls.for_listener(l)?;
        for socket in listener::bind(l, threads).map_err(anyhow::Error::msg)? {
            loops.push((
                socket,
                serving(App::Admin(admin_app.clone()), l, tls.clone()),
            ));
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (socket, serving) in loops {
        tasks.spawn(listener::accept_loop(socket, serving));
    }
    for l in &config.proxy_listen {
        tracing::info!("proxy listening on {l}");
    }
    for l in &config.admin_listen {
        tracing::info!("admin listening on {l}");
    }
    tracing::info!(pid = std::process::id(), %node_id, "gateway started");

    while let Sig::Reload = signals.next().await {
        match &cluster {
            Some(c) => {
                let _ = c.sync().await;
            }
            None => reload(&config, &shared, &pools),
        }
    }
    status.set_draining();
    let _ = drain_started.send(true);
    drain(&config, &status, stop, tasks, &mut signals).await;
    if let Some(c) = cluster {
        c.leave().await;
    }
    Ok(())
}

/// Waits for the database, refuses a schema that needs migrations, loads the
/// configuration and starts following the cluster.
async fn join_cluster(
    config: &Config,
    node: &NodeInfo,
    shared: &Arc<Shared>,
    pools: &Arc<Pools>,
) -> anyhow::Result<Arc<Cluster>> {
    let store = Store::new(&config.pg);
    // rate-limiting's `cluster` policy counts in this database.
    crate::plugins::rate_limiting::cluster::set_pool(store.pool.clone());
    loop {
        store.wait_until_reachable().await;
        match migrations::state(&store).await {
            Ok(state) => {
                if let Some(why) = state.start_blocker() {
                    bail!("{why}");
                }
                break;
            }
            Err(e) => tracing::warn!("cannot read the migration state: {e}"),
        }
    }
    let address = config.cluster.advertise.clone().unwrap_or_else(|| {
        let port = config.admin_listen.first().map_or(8001, |l| l.addr.port());
        format!("{}:{port}", node.hostname)
    });
    let cluster = Cluster::new(
        store,
        (node.node_id, node.hostname.clone(), address),
        config.cluster.clone(),
        shared.clone(),
        pools.clone(),
    );
    let mut delay = Duration::from_secs(1);
    while let Err(e) = cluster.sync().await {
        tracing::warn!("cannot load the configuration: {e}; retrying in {delay:?}");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
    tokio::spawn(cluster.clone().heartbeat_loop());
    tokio::spawn(cluster.clone().events_loop());
    Ok(cluster)
}

/// Readiness turns 503, traffic is served for `drain_delay`, listeners close,
/// and in-flight requests get up to `drain_timeout`. A second signal ends it.
async fn drain(
    config: &Config,
    status: &Status,
    stop: watch::Sender<bool>,
    mut tasks: tokio::task::JoinSet<()>,
    signals: &mut Signals,
) {
    tracing::info!(
        "draining: /status and /status/ready now answer 503; serving for {:?} more",
        config.drain_delay
    );
    tokio::select! {
        _ = tokio::time::sleep(config.drain_delay) => {}
        _ = signals.next() => {
            tracing::warn!("second signal: exiting without waiting");
            return;
        }
    }
    let _ = stop.send(true);
    while tasks.join_next().await.is_some() {}
    tracing::info!("stopped accepting connections; waiting for in-flight requests");
    let deadline = Instant::now() + config.drain_timeout;
    loop {
        let active = status.active_connections();
        if active == 0 {
            tracing::info!("drained; exiting");
            return;
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                active,
                "drain_timeout reached; closing remaining connections"
            );
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            _ = signals.next() => {
                tracing::warn!(active, "second signal: exiting without waiting");
                return;
            }
        }
    }
}

/// SIGHUP re-reads `declarative_config`, like `kong reload`.
fn reload(config: &Config, shared: &Shared, pools: &Pools) {
    let Some(path) = &config.declarative_config else {
        tracing::warn!("SIGHUP: no declarative_config to reload");
        return;
    };
    match load_declarative(path, pools) {
        Ok(s) => {
            tracing::info!(hash = %s.hash, "SIGHUP: configuration reloaded from {}", path.display());
            shared.snapshot.store(Arc::new(s));
        }
        Err(e) => tracing::error!("SIGHUP: keeping the current configuration: {e:#}"),
    }
}

enum Sig {
    Stop,
    Reload,
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        let s = |k| signal(k).context("cannot install signal handlers");
        Ok(Signals {
            term: s(SignalKind::terminate())?,
            int: s(SignalKind::interrupt())?,
            hup: s(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> Sig {
        tokio::select! {
            _ = self.term.recv() => Sig::Stop,
            _ = self.int.recv() => Sig::Stop,
            _ = self.hup.recv() => Sig::Reload,
        }
    }
}

/// One certificate per listener group: from files, or self-signed on demand.
struct TlsSet<'a> {
    cert: Option<&'a Path>,
    key: Option<&'a Path>,
    loaded: std::cell::OnceCell<CertifiedKey>,
}

impl<'a> TlsSet<'a> {
    fn new(cert: Option<&'a Path>, key: Option<&'a Path>) -> Self {
        TlsSet {
            cert,
            key,
            loaded: std::cell::OnceCell::new(),
        }
    }

    fn for_listener(&self, l: &Listen) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
        if !l.ssl {
            return Ok(None);
        }
        let ck = match self.loaded.get() {
            Some(ck) => ck,
            None => {
                let ck = match (self.cert, self.key) {
                    (Some(c), Some(k)) => CertifiedKey::from_files(c, k),
                    _ => {
                        tracing::info!(
                            "no certificate configured for {l}: using a self-signed one"
                        );
                        CertifiedKey::self_signed()
                    }
                }
                .map_err(anyhow::Error::msg)?;
                self.loaded.get_or_init(|| ck)
            }
        };
        Ok(Some(
            tls::server_config(ck, l.http2).map_err(anyhow::Error::msg)?,
        ))
    }
}

/// `<prefix>/pids/gateway.pid`, removed when the node exits.
struct PidFile(PathBuf);

impl PidFile {
    fn create(path: &Path) -> anyhow::Result<Self> {
        if let Some(pid) = read_pid(path) {
            if process_alive(pid) && pid != std::process::id() as i32 {
                bail!(
                    "a gateway is already running with this prefix (pid {pid}, {}); stop it with `gateway quit`",
                    path.display()
                );
            }
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {} (check `prefix`)", dir.display()))?;
        }
        std::fs::write(path, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(PidFile(path.to_path_buf()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

pub fn process_alive(pid: i32) -> bool {
    // Signal 0 checks for existence without touching the process.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

fn public_configuration(c: &Config) -> serde_json::Value {
    let listeners = |l: &[Listen]| l.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    serde_json::json!({
        "database": match c.database { Database::Off => "off", Database::Postgres => "postgres" },
        "pg_host": c.pg.host,
        "pg_port": c.pg.port,
        "pg_database": c.pg.database,
        "pg_user": c.pg.user,
        "pg_password": c.pg.password.as_ref().map(|_| "******"),
        "admin_token": c.admin_token.as_ref().map(|_| "******"),
        "admin_token_file": c.admin_token_file,
        "pg_password_file": c.pg.password_file,
        "declarative_config": c.declarative_config,
        "proxy_listen": listeners(&c.proxy_listen),
        "admin_listen": listeners(&c.admin_listen),
        "prefix": c.prefix,
        "log_level": c.log_level,
        "drain_delay": c.drain_delay.as_secs_f64(),
        "drain_timeout": c.drain_timeout.as_secs_f64(),
        "proxy_protocol_timeout": c.proxy_protocol_timeout.as_secs_f64(),
    })
}
