//! The PostgreSQL datastore: connection pool, migrations, Kong's entities and
//! the cluster tables. Nothing here is on the request path.

pub mod entities;
pub mod load;
pub mod migrations;
pub mod nodes;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgSslMode};
use sqlx::{Connection, Postgres, Transaction};

use crate::config::{PgConfig, Secret};
use crate::schema::FieldErrors;

/// The channel nodes LISTEN on; the payload is the event id.
pub const EVENTS_CHANNEL: &str = "gateway_events";

#[derive(Clone)]
pub struct Store {
    pub pool: PgPool,
    /// `host:port/database`, for messages (never the password).
    pub target: String,
    password: Arc<Password>,
}

/// The password new connections use, and `pg_password_file` it came from.
/// The pool's connect options are replaced when the file changes; pooled
/// connections stay as they are (PostgreSQL checks a password only at login).
struct Password {
    file: Option<PathBuf>,
    current: Mutex<Option<Secret>>,
    /// Bumped on every change: an attempt that failed with an older
    /// generation is worth one more try.
    generation: AtomicU64,
}

/// SQLSTATE 28P01 (invalid_password) or 28000 (invalid_authorization_specification).
pub fn is_auth_failure(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db)
        if matches!(db.code().as_deref(), Some("28P01") | Some("28000")))
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database is unreachable ({0})")]
    Unreachable(String),
    #[error("not found")]
    NotFound,
    #[error("{}", .0.message())]
    Schema(FieldErrors),
    #[error("{message}")]
    Unique {
        message: String,
        fields: Map<String, Value>,
    },
    #[error("{message}")]
    PrimaryKey {
        message: String,
        fields: Map<String, Value>,
    },
    #[error("{message}")]
    ForeignKey {
        message: String,
        fields: Map<String, Value>,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("database error: {0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

impl Store {
    /// A lazily connecting pool: nothing is dialled until first use.
    pub fn new(pg: &PgConfig) -> Store {
        let pool = PgPoolOptions::new()
            .max_connections(pg.pool_size)
            .min_connections(0)
            .acquire_timeout(pg.timeout)
            .idle_timeout(Some(Duration::from_secs(60)))
            .connect_lazy_with(connect_options(pg));
        Store {
            pool,
            target: format!("{}:{}/{}", pg.host, pg.port, pg.database),
            password: Arc::new(Password {
                file: pg.password_file.clone(),
                current: Mutex::new(pg.password.clone()),
                generation: AtomicU64::new(0),
            }),
        }
    }

    /// Re-reads `pg_password_file` (if configured); when its content differs
    /// from the password in use, new connections use it from now on.
    /// True when the password changed. Never logs the value.
    pub fn refresh_password(&self) -> bool {
        let Some(path) = &self.password.file else {
            return false;
        };
        let new = match crate::config::read_secret_file(path) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("pg_password_file: {e}; keeping the current password");
                return false;
            }
        };
        let mut current = self.password.current.lock().unwrap();
        if current.as_ref() == Some(&new) {
            return false;
        }
        let opts = (*self.pool.connect_options())
            .clone()
            .password(new.expose());
        self.pool.set_connect_options(opts);
        *current = Some(new);
        self.password.generation.fetch_add(1, Ordering::SeqCst);
        tracing::info!(
            "pg_password_file {} changed: new database connections use the new password",
            path.display()
        );
        true
    }

    /// Runs `attempt` (something that may open a connection); when it fails
    /// authentication, re-reads `pg_password_file` and tries once more if the
    /// password is not the one the attempt used.
    pub async fn auth_retry<T, F, Fut>(&self, attempt: F) -> std::result::Result<T, sqlx::Error>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = std::result::Result<T, sqlx::Error>>,
    {
        let before = self.password.generation.load(Ordering::SeqCst);
        match attempt().await {
            Err(e) if is_auth_failure(&e) => {
                self.refresh_password();
                if self.password.generation.load(Ordering::SeqCst) == before {
                    return Err(e);
                }
                tracing::info!("database authentication failed; retrying with the new password");
                attempt().await
            }
            r => r,
        }
    }

    /// A pooled connection (see [`Store::auth_retry`]).
    pub async fn acquire(&self) -> Result<PoolConnection<Postgres>> {
        self.auth_retry(|| self.pool.acquire())
            .await
            .map_err(classify)
    }

    /// A transaction on a pooled connection (see [`Store::auth_retry`]).
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>> {
        self.auth_retry(|| self.pool.begin())
            .await
            .map_err(classify)
    }

    /// A connection of its own, outside the pool (see [`Store::auth_retry`]).
    pub async fn connect(&self) -> Result<PgConnection> {
        self.auth_retry(|| async {
            let opts = self.pool.connect_options();
            PgConnection::connect_with(&opts).await
        })
        .await
        .map_err(classify)
    }

    /// A fresh connection and one round trip, to tell whether the database
    /// answers; the error says why not (refused, authentication, TLS, ...).
    pub async fn ping(&self) -> Result<()> {
        let timeout = self.pool.options().get_acquire_timeout();
        let attempt = async {
            let mut conn = self.connect().await?;
            sqlx::query("SELECT 1")
                .execute(&mut conn)
                .await
                .map_err(classify)?;
            conn.close().await.map_err(classify)
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unreachable(format!(
                "no answer within {timeout:?} (pg_timeout)"
            ))),
        }
    }

    /// Waits until the database answers, logging each failed attempt, with
    /// backoff from 1 s up to 30 s. Never gives up on its own.
    pub async fn wait_until_reachable(&self) {
        let mut delay = Duration::from_secs(1);
        let mut attempt = 1u32;
        loop {
            match self.ping().await {
                Ok(()) => {
                    if attempt > 1 {
                        tracing::info!("database {} is reachable", self.target);
                    }
                    return;
                }
                Err(e) => tracing::warn!(
                    attempt,
                    "cannot reach the database {}: {e}; retrying in {delay:?}",
                    self.target
                ),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
            attempt += 1;
        }
    }
}

pub fn connect_options(pg: &PgConfig) -> PgConnectOptions {
    let mode = match (pg.ssl, pg.ssl_verify) {
        (false, _) => PgSslMode::Disable,
        (true, false) => PgSslMode::Require,
        (true, true) => PgSslMode::VerifyFull,
    };
    let statement_timeout = pg.timeout.as_millis().to_string();
    let mut o = PgConnectOptions::new()
        .host(&pg.host)
        .port(pg.port)
        .username(&pg.user)
        .database(&pg.database)
        .ssl_mode(mode)
        .application_name("gateway")
        .options([("statement_timeout", statement_timeout.as_str())]);
    if let Some(p) = &pg.password {
        o = o.password(p.expose());
    }
    if let Some(ca) = &pg.ssl_root_cert {
        o = o.ssl_root_cert(ca);
    }
    o
}

/// Sorts a database error into what the caller can act on.
pub fn classify(e: sqlx::Error) -> StoreError {
    use sqlx::Error as E;
    match e {
        E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => {
            StoreError::Unreachable(e.to_string())
        }
        E::Protocol(m) => StoreError::Unreachable(m),
        E::Database(db) => {
            // 57P01..57P03: the server is shutting down or not accepting connections;
            // 08xxx: connection exceptions; 28xxx: authentication.
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            if code.starts_with("57P") || code.starts_with("08") {
                StoreError::Unreachable(db.message().to_string())
            } else if code.starts_with("28") {
                StoreError::Unreachable(format!("{} (check pg_user and pg_password)", db.message()))
            } else if code.starts_with("22") || code.starts_with("54") {
                // 22xxx data exceptions (a NUL character in text or jsonb),
                // 54xxx program limits (a name too long for its unique index):
                // the request's values, a 400 rather than a 500.
                let detail = db
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .and_then(|pg| pg.detail())
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default();
                StoreError::Invalid(format!(
                    "the database cannot store a value of this request: {}{detail}",
                    db.message()
                ))
            } else {
                StoreError::Other(db.message().to_string())
            }
        }
        other => StoreError::Other(other.to_string()),
    }
}
