//! The `cluster_nodes` table: registration, heartbeats, `GET /cluster`.

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Row;
use uuid::Uuid;

use super::{classify, Result, Store};

pub struct NodeRecord<'a> {
    pub id: Uuid,
    pub hostname: &'a str,
    pub address: &'a str,
}

/// Marks the node alive, registering it if it is not (yet, or any more) there.
pub async fn heartbeat(store: &Store, node: &NodeRecord<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO cluster_nodes (id, hostname, address, version)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (id) DO UPDATE SET last_seen = now(), status = 'active',
           hostname = EXCLUDED.hostname, address = EXCLUDED.address",
    )
    .bind(node.id)
    .bind(node.hostname)
    .bind(node.address)
    .bind(env!("CARGO_PKG_VERSION"))
    .execute(&mut *store.acquire().await?)
    .await
    .map(|_| ())
    .map_err(classify)
}

/// A clean stop: the node shows `left` until it is dropped.
pub async fn leave(store: &Store, id: Uuid) -> Result<()> {
    sqlx::query("UPDATE cluster_nodes SET status = 'left', last_seen = now() WHERE id = $1")
        .bind(id)
        .execute(&mut *store.acquire().await?)
        .await
        .map(|_| ())
        .map_err(classify)
}

/// Drops nodes silent for twice the failure TTL, and events older than an
/// hour (the newest always stays, so the version never goes back).
pub async fn prune(store: &Store, ttl: Duration) -> Result<()> {
    sqlx::query("DELETE FROM cluster_nodes WHERE last_seen < now() - make_interval(secs => $1)")
        .bind(2.0 * ttl.as_secs_f64())
        .execute(&mut *store.acquire().await?)
        .await
        .map_err(classify)?;
    sqlx::query(
        "DELETE FROM cluster_events WHERE at < now() - interval '1 hour'
           AND id < (SELECT max(id) FROM cluster_events)",
    )
    .execute(&mut *store.acquire().await?)
    .await
    .map(|_| ())
    .map_err(classify)
}

/// Kong's clustering view: `active`, `failed` (silent longer than the TTL)
/// or `left`; nodes silent for twice the TTL are gone.
pub async fn list(store: &Store, ttl: Duration) -> Result<Vec<Value>> {
    let rows = sqlx::query(
        "SELECT id, hostname, address, version,
                extract(epoch FROM last_seen)::bigint AS last_seen,
                status,
                last_seen < now() - make_interval(secs => $1) AS silent
         FROM cluster_nodes
         WHERE last_seen >= now() - make_interval(secs => $1 * 2)
         ORDER BY started_at, id",
    )
    .bind(ttl.as_secs_f64())
    .fetch_all(&mut *store.acquire().await?)
    .await
    .map_err(classify)?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let status: String = r.get("status");
            let silent: bool = r.get("silent");
            let status = match status.as_str() {
                "left" => "left",
                _ if silent => "failed",
                _ => "active",
            };
            json!({
                "id": r.get::<Uuid, _>("id"),
                "hostname": r.get::<String, _>("hostname"),
                "address": r.get::<String, _>("address"),
                "version": r.get::<String, _>("version"),
                "last_seen": r.get::<i64, _>("last_seen"),
                "status": status,
            })
        })
        .collect())
}

/// What `DELETE /cluster/nodes/{node}` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Removal {
    /// This many failed or left entries are gone.
    Removed(u64),
    /// The node still heartbeats: removing it would only last until its next beat.
    Active,
    NotFound,
}

/// Removes a failed or left node from the cluster view, by id or hostname (the
/// clustering reference's way of clearing a node that will not come back). Active
/// nodes stay: they would register again within a heartbeat.
pub async fn remove(store: &Store, key: &str, ttl: Duration) -> Result<Removal> {
    let id = Uuid::parse_str(key).ok();
    let deleted = sqlx::query(
        "DELETE FROM cluster_nodes
         WHERE (id = $1 OR ($1 IS NULL AND hostname = $2))
           AND (status = 'left' OR last_seen < now() - make_interval(secs => $3))",
    )
    .bind(id)
    .bind(key)
    .bind(ttl.as_secs_f64())
    .execute(&store.pool)
    .await
    .map_err(classify)?
    .rows_affected();
    if deleted > 0 {
        return Ok(Removal::Removed(deleted));
    }
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM cluster_nodes WHERE id = $1 OR ($1 IS NULL AND hostname = $2))",
    )
    .bind(id)
    .bind(key)
    .fetch_one(&store.pool)
    .await
    .map_err(classify)?;
    Ok(if exists {
        Removal::Active
    } else {
        Removal::NotFound
    })
}
