//! Kong's migration commands over plain SQL files in `gateway/migrations/`.
//! `bootstrap` runs everything on an empty database; `up` runs the `up` part
//! of new migrations; `finish` runs the teardown part of pending ones. A
//! session advisory lock serialises nodes doing this at the same time.

use sqlx::{Connection, Executor, PgConnection, Row};

use super::{classify, Result, Store, StoreError};

pub struct Migration {
    pub name: &'static str,
    pub up: &'static str,
    /// Run by `finish`, once every node runs the new code.
    pub teardown: Option<&'static str>,
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "000_base",
        up: include_str!("../../migrations/000_base.up.sql"),
        teardown: None,
    },
    Migration {
        name: "001_auth_credentials",
        up: include_str!("../../migrations/001_auth_credentials.up.sql"),
        teardown: None,
    },
    Migration {
        name: "002_ratelimiting",
        up: include_str!("../../migrations/002_ratelimiting.up.sql"),
        teardown: None,
    },
];

/// Tables dropped by `reset`, children first.
const TABLES: &[&str] = &[
    "keyauth_credentials",
    "basicauth_credentials",
    "acls",
    "ratelimiting_metrics",
    "plugins",
    "targets",
    "routes",
    "services",
    "consumers",
    "upstreams",
    "certificates",
    "cluster_events",
    "cluster_nodes",
    "schema_meta",
];

/// Key of the advisory lock every migration command takes ("gwmigrat").
const LOCK_KEY: i64 = 0x6777_6d69_6772_6174;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    NotBootstrapped,
    Ready {
        executed: Vec<String>,
        /// Up ran, teardown (`finish`) did not.
        pending: Vec<String>,
        /// Not run at all (`up`).
        new: Vec<String>,
    },
}

impl State {
    /// Kong's `migrations list` exit codes: 3 needs bootstrap, 4 pending, 5 new.
    pub fn exit_code(&self) -> u8 {
        match self {
            State::NotBootstrapped => 3,
            State::Ready { new, .. } if !new.is_empty() => 5,
            State::Ready { pending, .. } if !pending.is_empty() => 4,
            State::Ready { .. } => 0,
        }
    }

    /// Why `start` must not run yet, naming the command to run.
    pub fn start_blocker(&self) -> Option<String> {
        match self {
            State::NotBootstrapped => Some(
                "the database is not bootstrapped: run `gateway migrations bootstrap` first".into(),
            ),
            State::Ready { new, .. } if !new.is_empty() => Some(format!(
                "the database has new migrations ({}): run `gateway migrations up` first",
                new.join(", ")
            )),
            State::Ready { .. } => None,
        }
    }
}

/// What a command did, for its one-line report.
pub enum Outcome {
    Done(String),
    NothingToDo(String),
}

pub async fn state(store: &Store) -> Result<State> {
    let mut conn = store.acquire().await?;
    read_state(&mut conn).await
}

async fn read_state(conn: &mut PgConnection) -> Result<State> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('schema_meta') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await
        .map_err(classify)?;
    if !exists {
        return Ok(State::NotBootstrapped);
    }
    let rows = sqlx::query("SELECT name, state FROM schema_meta")
        .fetch_all(&mut *conn)
        .await
        .map_err(classify)?;
    if rows.is_empty() {
        return Ok(State::NotBootstrapped);
    }
    let mut done = std::collections::HashMap::new();
    for r in rows {
        done.insert(r.get::<String, _>("name"), r.get::<String, _>("state"));
    }
    let (mut executed, mut pending, mut new) = (vec![], vec![], vec![]);
    for m in MIGRATIONS {
        match done.get(m.name).map(String::as_str) {
            Some("executed") => executed.push(m.name.to_string()),
            Some(_) => pending.push(m.name.to_string()),
            None => new.push(m.name.to_string()),
        }
    }
    Ok(State::Ready {
        executed,
        pending,
        new,
    })
}

/// A connection holding the migration lock; the lock goes with the session.
async fn locked(store: &Store) -> Result<PgConnection> {
    let mut conn = store.connect().await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(LOCK_KEY)
        .execute(&mut conn)
        .await
        .map_err(classify)?;
    Ok(conn)
}

async fn release(mut conn: PgConnection) {
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(LOCK_KEY)
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
}

pub async fn bootstrap(store: &Store) -> Result<Outcome> {
    let mut conn = locked(store).await?;
    let result = async {
        if read_state(&mut conn).await? != State::NotBootstrapped {
            return Ok(Outcome::NothingToDo("database already bootstrapped".into()));
        }
        let mut tx = conn.begin().await.map_err(classify)?;
        tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_meta (
               name text PRIMARY KEY,
               state text NOT NULL,
               executed_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(classify)?;
        for m in MIGRATIONS {
            run_sql(&mut tx, m.name, m.up).await?;
            if let Some(t) = m.teardown {
                run_sql(&mut tx, m.name, t).await?;
            }
            mark(&mut tx, m.name, "executed").await?;
        }
        tx.commit().await.map_err(classify)?;
        Ok(Outcome::Done(format!(
            "database bootstrapped ({} migrations)",
            MIGRATIONS.len()
        )))
    }
    .await;
    release(conn).await;
    result
}

pub async fn up(store: &Store) -> Result<Outcome> {
    let mut conn = locked(store).await?;
    let result = async {
        let State::Ready { new, .. } = read_state(&mut conn).await? else {
            return Err(needs_bootstrap());
        };
        if new.is_empty() {
            return Ok(Outcome::NothingToDo(
                "database is already up-to-date".into(),
            ));
        }
        for m in MIGRATIONS
            .iter()
            .filter(|m| new.iter().any(|n| n == m.name))
        {
            let mut tx = conn.begin().await.map_err(classify)?;
            run_sql(&mut tx, m.name, m.up).await?;
            let state = if m.teardown.is_some() {
                "pending"
            } else {
                "executed"
            };
            mark(&mut tx, m.name, state).await?;
            tx.commit().await.map_err(classify)?;
        }
        Ok(Outcome::Done(format!(
            "{} migration(s) run: {}",
            new.len(),
            new.join(", ")
        )))
    }
    .await;
    release(conn).await;
    result
}

pub async fn finish(store: &Store) -> Result<Outcome> {
    let mut conn = locked(store).await?;
    let result = async {
        let State::Ready { pending, .. } = read_state(&mut conn).await? else {
            return Err(needs_bootstrap());
        };
        if pending.is_empty() {
            return Ok(Outcome::NothingToDo(
                "no pending migrations to finish".into(),
            ));
        }
        for m in MIGRATIONS
            .iter()
            .filter(|m| pending.iter().any(|n| n == m.name))
        {
            let mut tx = conn.begin().await.map_err(classify)?;
            if let Some(t) = m.teardown {
                run_sql(&mut tx, m.name, t).await?;
            }
            mark(&mut tx, m.name, "executed").await?;
            tx.commit().await.map_err(classify)?;
        }
        Ok(Outcome::Done(format!(
            "{} migration(s) finished: {}",
            pending.len(),
            pending.join(", ")
        )))
    }
    .await;
    release(conn).await;
    result
}

/// Drops every table this gateway created: all configuration is lost.
pub async fn reset(store: &Store) -> Result<Outcome> {
    let mut conn = locked(store).await?;
    let result = async {
        let mut tx = conn.begin().await.map_err(classify)?;
        for t in TABLES {
            tx.execute(format!("DROP TABLE IF EXISTS {t} CASCADE").as_str())
                .await
                .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)?;
        Ok(Outcome::Done("database reset".into()))
    }
    .await;
    release(conn).await;
    result
}

fn needs_bootstrap() -> StoreError {
    StoreError::Invalid(
        "the database is not bootstrapped: run `gateway migrations bootstrap`".into(),
    )
}

async fn run_sql(conn: &mut PgConnection, name: &str, sql: &str) -> Result<()> {
    sqlx::raw_sql(sql)
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(|e| match classify(e) {
            StoreError::Other(m) => StoreError::Other(format!("migration {name}: {m}")),
            other => other,
        })
}

async fn mark(conn: &mut PgConnection, name: &str, state: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO schema_meta (name, state) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET state = EXCLUDED.state, executed_at = now()",
    )
    .bind(name)
    .bind(state)
    .execute(&mut *conn)
    .await
    .map(|_| ())
    .map_err(classify)
}
