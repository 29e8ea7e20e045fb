//! Reads the whole configuration in one consistent snapshot of the database,
//! with the id of the newest cluster event it includes.

use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::{PgConnection, Postgres, Row, Transaction};

use super::{classify, Result, Store, StoreError};
use crate::model::Entities;
use crate::schema::Kind;

const VERSION: &str = "SELECT coalesce(max(id), 0) FROM cluster_events";

/// The newest event id: nodes compare it with what they have loaded.
pub async fn version(store: &Store) -> Result<i64> {
    sqlx::query_scalar(VERSION)
        .fetch_one(&mut *store.acquire().await?)
        .await
        .map_err(classify)
}

/// Every entity, in creation order, and the event id they are current as of.
pub async fn load(store: &Store) -> Result<(i64, Entities)> {
    let mut tx = begin_read_only(store).await?;
    let loaded = read(&mut tx).await?;
    tx.commit().await.map_err(classify)?;
    Ok(loaded)
}

/// What the cluster tables tell about a database's history, for
/// `gateway config db_fingerprint`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterFacts {
    /// Epoch seconds of the newest `cluster_events` row.
    pub newest_change_at: Option<i64>,
    /// Epoch seconds of the newest heartbeat in `cluster_nodes`.
    pub newest_heartbeat_at: Option<i64>,
    /// Rows in `cluster_nodes`, whatever their status.
    pub nodes: i64,
}

/// [`load`], plus the cluster facts, all in the same snapshot of the database.
pub async fn load_with_cluster_facts(store: &Store) -> Result<(i64, Entities, ClusterFacts)> {
    let mut tx = begin_read_only(store).await?;
    let (version, entities) = read(&mut tx).await?;
    // Rounded to the second as `GET /cluster` rounds `last_seen`.
    let newest_change_at: Option<i64> =
        sqlx::query_scalar("SELECT extract(epoch FROM max(at))::bigint FROM cluster_events")
            .fetch_one(&mut *tx)
            .await
            .map_err(classify)?;
    let row = sqlx::query(
        "SELECT extract(epoch FROM max(last_seen))::bigint AS newest, count(*) AS nodes
         FROM cluster_nodes",
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(classify)?;
    let facts = ClusterFacts {
        newest_change_at,
        newest_heartbeat_at: row.get("newest"),
        nodes: row.get("nodes"),
    };
    tx.commit().await.map_err(classify)?;
    Ok((version, entities, facts))
}

/// One consistent, read-only view of the database until commit.
async fn begin_read_only(store: &Store) -> Result<Transaction<'static, Postgres>> {
    let mut tx = store.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
    Ok(tx)
}

async fn read(conn: &mut PgConnection) -> Result<(i64, Entities)> {
    let version: i64 = sqlx::query_scalar(VERSION)
        .fetch_one(&mut *conn)
        .await
        .map_err(classify)?;
    let entities = Entities {
        services: rows(conn, Kind::Services).await?,
        routes: rows(conn, Kind::Routes).await?,
        upstreams: rows(conn, Kind::Upstreams).await?,
        targets: rows(conn, Kind::Targets).await?,
        consumers: rows(conn, Kind::Consumers).await?,
        plugins: rows(conn, Kind::Plugins).await?,
        certificates: rows(conn, Kind::Certificates).await?,
        keyauth_credentials: rows(conn, Kind::KeyauthCredentials).await?,
        basicauth_credentials: rows(conn, Kind::BasicauthCredentials).await?,
        acls: rows(conn, Kind::Acls).await?,
    };
    Ok((version, entities))
}

async fn rows<T: DeserializeOwned>(conn: &mut PgConnection, kind: Kind) -> Result<Vec<T>> {
    let sql = format!("SELECT entity FROM {} ORDER BY seq", kind.name());
    let rows = sqlx::query(&sql)
        .fetch_all(&mut *conn)
        .await
        .map_err(classify)?;
    rows.into_iter()
        .map(|r| {
            let v: Value = r.try_get("entity").map_err(|e| {
                StoreError::Other(format!(
                    "a stored {} entity cannot be read: {e}",
                    kind.name()
                ))
            })?;
            serde_json::from_value(v).map_err(|e| {
                StoreError::Other(format!(
                    "a stored {} entity cannot be read: {e}",
                    kind.name()
                ))
            })
        })
        .collect()
}
