//! The `cluster` policy: counters in PostgreSQL's `ratelimiting_metrics`
//! (Kong's table, migration `002_ratelimiting`), exact across every node on
//! the database at the cost of one round trip per request: one upsert adds
//! one to every configured period's row and returns the new values.
//!
//! The wait is bounded by `config.redis.timeout` (default 2000 ms): the
//! plugin has no other timeout field, and Kong bounds it by its own database
//! timeout, which this gateway does not have for the request path.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use sqlx::PgPool;

use super::window::start_ms;
use super::{Config, Counts, Identifier, Outcome};

/// The database of a node in cluster mode, set when it joins; DB-less nodes
/// have none and `cluster` fails (and lets requests through when
/// `fault_tolerant`).
static POOL: OnceLock<PgPool> = OnceLock::new();
/// When expired rows were last deleted (ms).
static LAST_CLEANUP: AtomicI64 = AtomicI64::new(0);
const CLEANUP_EVERY_MS: i64 = 60_000;

pub fn set_pool(pool: PgPool) {
    let _ = POOL.set(pool);
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("policy 'cluster' needs the database: this node is DB-less; use 'local' or 'redis'")]
    NoDatabase,
    #[error("the database did not answer within {0} ms")]
    Timeout(u64),
    #[error("the database: {0}")]
    Db(#[from] sqlx::Error),
}

const INCREMENT: &str = "
INSERT INTO ratelimiting_metrics AS m
    (identifier, period, period_date, service_id, route_id, value, ttl)
SELECT $1, p.period, to_timestamp(p.start_ms / 1000.0), $4, $5, $6,
       now() + make_interval(secs => p.keep)
  FROM UNNEST($2::text[], $3::bigint[], $7::double precision[]) AS p(period, start_ms, keep)
ON CONFLICT (identifier, period, period_date, service_id, route_id)
DO UPDATE SET value = m.value + EXCLUDED.value
RETURNING period, value";

pub(crate) async fn hit(c: &Config, id: &Identifier<'_>, now_ms: i64) -> Result<Outcome, Error> {
    let pool = POOL.get().ok_or(Error::NoDatabase)?;
    let wait = Duration::from_millis(c.redis.timeout_ms.max(1));
    let id = id.to_string();
    let periods: Vec<&str> = c.limits.iter().map(|(p, _)| p.name()).collect();
    let starts: Vec<i64> = c.limits.iter().map(|&(p, _)| start_ms(p, now_ms)).collect();
    let keep: Vec<f64> = c
        .limits
        .iter()
        .map(|(p, _)| p.expiration() as f64)
        .collect();
    let run = |delta: i32| {
        sqlx::query_as::<_, (String, i32)>(INCREMENT)
            .bind(id.clone())
            .bind(periods.clone())
            .bind(starts.clone())
            .bind(c.service_id)
            .bind(c.route_id)
            .bind(delta)
            .bind(keep.clone())
    };
    let rows = match tokio::time::timeout(wait, run(1).fetch_all(pool)).await {
        Ok(r) => r?,
        Err(_) => return Err(Error::Timeout(c.redis.timeout_ms)),
    };
    let mut counts: Counts = [0; 6];
    let mut refused = false;
    for (i, (p, limit)) in c.limits.iter().enumerate() {
        let v = rows
            .iter()
            .find(|(name, _)| name == p.name())
            .map_or(0, |(_, v)| (*v).max(0) as u64);
        counts[i] = v;
        if v > *limit {
            refused = true;
        }
    }
    cleanup(pool, now_ms);
    if !refused {
        return Ok(Outcome::Allowed(counts));
    }
    // Not counted, as in Kong: take the increments back off the request path.
    let undo = run(-1);
    let pool = pool.clone();
    tokio::spawn(async move {
        let _ = tokio::time::timeout(wait, undo.fetch_all(&pool)).await;
    });
    for v in counts.iter_mut() {
        *v = v.saturating_sub(1);
    }
    Ok(Outcome::Refused(counts))
}

/// Deletes expired windows now and then (one node at a time is enough, but
/// every node doing it once a minute costs little).
fn cleanup(pool: &PgPool, now_ms: i64) {
    let last = LAST_CLEANUP.load(Ordering::Relaxed);
    if now_ms - last < CLEANUP_EVERY_MS
        || LAST_CLEANUP
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    let pool = pool.clone();
    tokio::spawn(async move {
        if let Err(e) = sqlx::query("DELETE FROM ratelimiting_metrics WHERE ttl < now()")
            .execute(&pool)
            .await
        {
            tracing::warn!("rate-limiting: deleting expired counters: {e}");
        }
    });
}
