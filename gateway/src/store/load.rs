//! Reads the whole configuration in one consistent snapshot of the database,
//! with the id of the newest cluster event it includes.

use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::{PgConnection, Row};

use super::{classify, Result, Store, StoreError};
use crate::model::Entities;
use crate::schema::Kind;

const VERSION: &str = "SELECT coalesce(max(id), 0) FROM cluster_events";

/// The newest event id: nodes compare it with what they have loaded.
pub async fn version(store: &Store) -> Result<i64> {
    sqlx::query_scalar(VERSION)
        .fetch_one(&store.pool)
        .await
        .map_err(classify)
}

/// Every entity, in creation order, and the event id they are current as of.
pub async fn load(store: &Store) -> Result<(i64, Entities)> {
    let mut tx = store.pool.begin().await.map_err(classify)?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
    let version: i64 = sqlx::query_scalar(VERSION)
        .fetch_one(&mut *tx)
        .await
        .map_err(classify)?;
    let entities = Entities {
        services: rows(&mut tx, Kind::Services).await?,
        routes: rows(&mut tx, Kind::Routes).await?,
        upstreams: rows(&mut tx, Kind::Upstreams).await?,
        targets: rows(&mut tx, Kind::Targets).await?,
        consumers: rows(&mut tx, Kind::Consumers).await?,
        plugins: rows(&mut tx, Kind::Plugins).await?,
        certificates: rows(&mut tx, Kind::Certificates).await?,
    };
    tx.commit().await.map_err(classify)?;
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
            let v: Value = r.get("entity");
            serde_json::from_value(v).map_err(|e| {
                StoreError::Other(format!(
                    "a stored {} entity cannot be read: {e}",
                    kind.name()
                ))
            })
        })
        .collect()
}
