//! The `redis` policy: counters in Redis under Kong's keys
//! (`ratelimit:<route_id>:<service_id>:<identifier>:<period_date>:<period>`,
//! the plugin's scope, the window start in ms), so that a mixed fleet with
//! Kong nodes shares them. One pipeline per request increments every
//! configured period and sets its expiry; a refused request's increments are
//! taken back in the background. The whole exchange is bounded by
//! `config.redis.timeout`.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};

use super::window::start_ms;
use super::{Config, Counts, Identifier, Outcome, RedisConfig};

/// One connection manager per distinct Redis config, process-wide: it
/// survives snapshot rebuilds and reconnects by itself. The lock is held
/// only to clone a handle.
static MANAGERS: LazyLock<Mutex<HashMap<RedisConfig, ConnectionManager>>> =
    LazyLock::new(Default::default);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Redis at {0} did not answer within {1} ms")]
    Timeout(String, u64),
    #[error("Redis at {0}: {1}")]
    Redis(String, redis::RedisError),
    #[error("config.redis.host is not set")]
    NoHost,
}

fn target(r: &RedisConfig) -> String {
    format!("{}:{}", r.host.as_deref().unwrap_or(""), r.port)
}

fn manager(r: &RedisConfig) -> Result<ConnectionManager, Error> {
    let mut all = MANAGERS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(m) = all.get(r) {
        return Ok(m.clone());
    }
    let host = r.host.clone().ok_or(Error::NoHost)?;
    let mut settings = RedisConnectionInfo::default().set_db(r.database);
    if let Some(u) = &r.username {
        settings = settings.set_username(u);
    }
    if let Some(p) = &r.password {
        settings = settings.set_password(p);
    }
    let info = ConnectionAddr::Tcp(host, r.port)
        .into_connection_info()
        .map_err(|e| Error::Redis(target(r), e))?
        .set_redis_settings(settings);
    let client = redis::Client::open(info).map_err(|e| Error::Redis(target(r), e))?;
    let timeout = Duration::from_millis(r.timeout_ms.max(1));
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(1000));
    // Lazy: connects on first use, off this lock.
    let m = ConnectionManager::new_lazy_with_config(client, config)
        .map_err(|e| Error::Redis(target(r), e))?;
    all.insert(r.clone(), m.clone());
    Ok(m)
}

/// Kong's key for one period's window.
pub fn key(c: &Config, id: &Identifier<'_>, period: &str, period_date: i64) -> String {
    format!(
        "ratelimit:{}:{}:{}:{}:{}",
        c.route_id, c.service_id, id, period_date, period
    )
}

pub(crate) async fn hit(c: &Config, id: &Identifier<'_>, now_ms: i64) -> Result<Outcome, Error> {
    let mut conn = manager(&c.redis)?;
    let keys: Vec<String> = c
        .limits
        .iter()
        .map(|&(p, _)| key(c, id, p.name(), start_ms(p, now_ms)))
        .collect();
    let mut pipe = redis::pipe();
    for (k, &(p, _)) in keys.iter().zip(c.limits.iter()) {
        pipe.cmd("INCRBY").arg(k).arg(1);
        pipe.cmd("EXPIRE").arg(k).arg(p.expiration()).ignore();
    }
    let wait = Duration::from_millis(c.redis.timeout_ms.max(1));
    let values: Vec<i64> = match tokio::time::timeout(wait, pipe.query_async(&mut conn)).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return Err(Error::Redis(target(&c.redis), e)),
        Err(_) => return Err(Error::Timeout(target(&c.redis), c.redis.timeout_ms)),
    };
    let mut counts: Counts = [0; 6];
    let mut refused = false;
    for (i, (&v, &(_, limit))) in values.iter().zip(c.limits.iter()).enumerate() {
        counts[i] = v.max(0) as u64;
        if counts[i] > limit {
            refused = true;
        }
    }
    if !refused {
        return Ok(Outcome::Allowed(counts));
    }
    // Not counted, as in Kong: undo this request's increments, off the
    // request path (a lost decrement only errs towards refusing).
    let mut undo = redis::pipe();
    for k in &keys {
        undo.cmd("DECRBY").arg(k).arg(1).ignore();
    }
    tokio::spawn(async move {
        let _ = tokio::time::timeout(wait, undo.query_async::<()>(&mut conn)).await;
    });
    for c in counts.iter_mut() {
        *c = c.saturating_sub(1);
    }
    Ok(Outcome::Refused(counts))
}
