//! A node's life in a cluster that shares one PostgreSQL database: its
//! heartbeat in `cluster_nodes`, and configuration changes pushed by
//! LISTEN/NOTIFY, with the events table polled every `db_update_frequency`
//! as a fallback. Rebuilds happen here, never on the request path.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use uuid::Uuid;

use crate::config::ClusterConfig;
use crate::proxy::pool::Pools;
use crate::proxy::Shared;
use crate::snapshot::Snapshot;
use crate::store::nodes::{self, NodeRecord};
use crate::store::{load, Store, StoreError, EVENTS_CHANNEL};

pub struct Cluster {
    pub store: Store,
    pub node_id: Uuid,
    pub hostname: String,
    pub address: String,
    pub config: ClusterConfig,
    shared: Arc<Shared>,
    pools: Arc<Pools>,
    /// The newest cluster event the current snapshot includes.
    version: AtomicI64,
    reachable: AtomicBool,
    /// Set by [`Cluster::leave`]: no heartbeat may mark the node active again.
    leaving: AtomicBool,
}

impl Cluster {
    pub fn new(
        store: Store,
        node: (Uuid, String, String),
        config: ClusterConfig,
        shared: Arc<Shared>,
        pools: Arc<Pools>,
    ) -> Arc<Cluster> {
        Arc::new(Cluster {
            store,
            node_id: node.0,
            hostname: node.1,
            address: node.2,
            config,
            shared,
            pools,
            version: AtomicI64::new(-1),
            reachable: AtomicBool::new(false),
            leaving: AtomicBool::new(false),
        })
    }

    pub fn database_reachable(&self) -> bool {
        self.reachable.load(Relaxed)
    }

    /// Logs only when reachability changes, so an outage is not a log flood.
    fn set_reachable(&self, up: bool, error: Option<&StoreError>) {
        let was = self.reachable.swap(up, Relaxed);
        match (was, up) {
            (false, true) => tracing::info!("database {} is reachable", self.store.target),
            (true, false) => tracing::warn!(
                "database {} is unreachable ({}); serving the last configuration",
                self.store.target,
                error.map_or_else(String::new, |e| e.to_string())
            ),
            _ => {}
        }
    }

    fn note<T>(&self, r: &Result<T, StoreError>) {
        match r {
            Ok(_) => self.set_reachable(true, None),
            Err(e @ StoreError::Unreachable(_)) => self.set_reachable(false, Some(e)),
            Err(e) => tracing::error!("cluster: {e}"),
        }
    }

    /// Loads the configuration if the database has newer events than the
    /// current snapshot. `Ok(true)` when a new snapshot was swapped in.
    pub async fn sync(&self) -> Result<bool, StoreError> {
        let latest = load::version(&self.store).await;
        self.note(&latest);
        if latest? == self.version.load(Relaxed) {
            return Ok(false);
        }
        let loaded = load::load(&self.store).await;
        self.note(&loaded);
        let (version, entities) = loaded?;
        let pools = self.pools.clone();
        let built = tokio::task::spawn_blocking(move || Snapshot::build(entities, &pools))
            .await
            .map_err(|e| StoreError::Other(e.to_string()))?;
        match built {
            Ok(snapshot) => {
                tracing::info!(version, hash = %snapshot.hash, "configuration updated");
                self.shared.snapshot.store(Arc::new(snapshot));
                self.version.store(version, Relaxed);
                Ok(true)
            }
            Err(e) => {
                // Stored entities were validated one by one; keep serving.
                tracing::error!(version, "keeping the current configuration: {e}");
                self.version.store(version, Relaxed);
                Ok(false)
            }
        }
    }

    fn record(&self) -> NodeRecord<'_> {
        NodeRecord {
            id: self.node_id,
            hostname: &self.hostname,
            address: &self.address,
        }
    }

    /// Registers the node and keeps its heartbeat; prunes old rows.
    pub async fn heartbeat_loop(self: Arc<Self>) {
        let period = self
            .config
            .db_update_frequency
            .min(self.config.ttl_on_failure / 3);
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.leaving.load(Relaxed) {
                return;
            }
            let r = nodes::heartbeat(&self.store, &self.record()).await;
            self.note(&r);
            if r.is_ok() {
                let _ = nodes::prune(&self.store, self.config.ttl_on_failure).await;
            }
        }
    }

    /// Follows configuration changes until the process ends: NOTIFY for
    /// speed, the poll for anything missed, a full catch-up on reconnect.
    pub async fn events_loop(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(250);
        loop {
            match self.listen().await {
                Ok(mut listener) => {
                    backoff = Duration::from_millis(250);
                    let _ = self.sync().await;
                    self.follow(&mut listener).await;
                }
                Err(e) => self.note::<()>(&Err(e)),
            }
            tokio::time::sleep(backoff).await;
            backoff =
                (backoff * 2).min(self.config.db_update_frequency.max(Duration::from_secs(1)));
        }
    }

    async fn listen(&self) -> Result<PgListener, StoreError> {
        let mut l = self
            .store
            .auth_retry(|| PgListener::connect_with(&self.store.pool))
            .await
            .map_err(crate::store::classify)?;
        // Reconnecting is done by the caller, with a catch-up, not inside sqlx.
        l.eager_reconnect(false);
        l.listen(EVENTS_CHANNEL)
            .await
            .map_err(crate::store::classify)?;
        Ok(l)
    }

    /// Returns when the LISTEN connection is lost.
    async fn follow(&self, listener: &mut PgListener) {
        let mut poll = tokio::time::interval(self.config.db_update_frequency);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await;
        loop {
            tokio::select! {
                n = listener.try_recv() => match n {
                    Ok(Some(_)) => {
                        // Coalesce a burst of changes into one rebuild.
                        while listener.next_buffered().is_some() {}
                        let _ = self.sync().await;
                    }
                    Ok(None) | Err(_) => {
                        self.set_reachable(false, Some(&StoreError::Unreachable(
                            "the LISTEN connection was lost".into(),
                        )));
                        return;
                    }
                },
                _ = poll.tick() => {
                    let _ = self.sync().await;
                }
            }
        }
    }

    /// A clean stop: the node shows `left` in `GET /cluster`.
    pub async fn leave(&self) {
        self.leaving.store(true, Relaxed);
        let left = tokio::time::timeout(
            Duration::from_secs(2),
            nodes::leave(&self.store, self.node_id),
        )
        .await;
        match left {
            Ok(Ok(())) => tracing::info!("left the cluster"),
            _ => tracing::warn!("could not mark this node as left; it will show `failed`"),
        }
    }
}
