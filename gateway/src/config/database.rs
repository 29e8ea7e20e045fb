//! The datastore and cluster keys: Kong's `pg_*`, `db_update_frequency`,
//! `cluster_ttl_on_failure`, plus `admin_token` and `admin_token_file`.
//! Secrets never print.
//!
//! `pg_password_file` and `admin_token_file` are read at start and again
//! while the node runs (see [`crate::secrets`]): a rotated secret is picked
//! up without a restart.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::Value;

/// A password or token: shown as `******` in Debug and Display.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("******")
    }
}

#[derive(Debug, Clone)]
pub struct PgConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<Secret>,
    /// `pg_password_file`: re-read on an authentication failure and when it changes.
    pub password_file: Option<PathBuf>,
    pub database: String,
    pub ssl: bool,
    pub ssl_verify: bool,
    /// CA bundle for `pg_ssl_verify` (the RDS bundle on AWS).
    pub ssl_root_cert: Option<PathBuf>,
    /// Connect and query timeout (Kong's `pg_timeout`, milliseconds in the file).
    pub timeout: Duration,
    pub pool_size: u32,
}

impl Default for PgConfig {
    fn default() -> Self {
        PgConfig {
            host: "127.0.0.1".into(),
            port: 5432,
            user: "gateway".into(),
            password: None,
            password_file: None,
            database: "gateway".into(),
            ssl: false,
            ssl_verify: false,
            ssl_root_cert: None,
            timeout: Duration::from_millis(5000),
            pool_size: 8,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// How often nodes poll for missed events and send their heartbeat.
    pub db_update_frequency: Duration,
    /// A node silent this long shows `failed`; after twice this it is dropped.
    pub ttl_on_failure: Duration,
    /// The address other operators see in `GET /cluster`; the hostname and
    /// first admin port when unset.
    pub advertise: Option<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            db_update_frequency: Duration::from_secs(5),
            ttl_on_failure: Duration::from_secs(30),
            advertise: None,
        }
    }
}

pub const KEYS: &[&str] = &[
    "pg_host",
    "pg_port",
    "pg_user",
    "pg_password",
    "pg_password_file",
    "pg_database",
    "pg_ssl",
    "pg_ssl_verify",
    "pg_ssl_root_cert",
    "pg_timeout",
    "pg_pool_size",
    "db_update_frequency",
    "cluster_ttl_on_failure",
    "cluster_advertise",
    "admin_token",
    "admin_token_file",
];

/// The Admin API token and where it came from.
#[derive(Debug, Clone, Default)]
pub(super) struct AdminToken {
    pub token: Option<Secret>,
    /// `admin_token_file`: watched while the node runs; a change replaces the token.
    pub file: Option<PathBuf>,
}

/// Applies one of [`KEYS`].
pub(super) fn set(
    pg: &mut PgConfig,
    cluster: &mut ClusterConfig,
    admin: &mut AdminToken,
    key: &str,
    v: Value,
) -> Result<(), String> {
    match key {
        "pg_host" => v.non_empty().map(|s| pg.host = s),
        "pg_port" => v.port().map(|p| pg.port = p),
        "pg_user" => v.non_empty().map(|s| pg.user = s),
        "pg_password" => v
            .raw_string()
            .map(|s| pg.password = (!s.is_empty()).then_some(Secret(s))),
        "pg_password_file" => v.path().and_then(|p| match p {
            None => Ok(()),
            Some(path) => read_secret_file(&path).map(|s| {
                pg.password = Some(s);
                pg.password_file = Some(path);
            }),
        }),
        "pg_database" => v.non_empty().map(|s| pg.database = s),
        "pg_ssl" => v.bool().map(|b| pg.ssl = b),
        "pg_ssl_verify" => v.bool().map(|b| pg.ssl_verify = b),
        "pg_ssl_root_cert" => v.path().map(|p| pg.ssl_root_cert = p),
        "pg_timeout" => v.number().and_then(|ms| {
            if ms < 1.0 {
                return Err("must be at least 1 (milliseconds)".into());
            }
            pg.timeout = Duration::from_secs_f64(ms / 1000.0);
            Ok(())
        }),
        "pg_pool_size" => v.number().and_then(|n| {
            if !(2.0..=1000.0).contains(&n) {
                return Err("must be between 2 and 1000".into());
            }
            pg.pool_size = n as u32;
            Ok(())
        }),
        "db_update_frequency" => v.seconds().and_then(|d| {
            if d < Duration::from_millis(100) {
                return Err("must be at least 0.1 (seconds)".into());
            }
            cluster.db_update_frequency = d;
            Ok(())
        }),
        "cluster_ttl_on_failure" => v.seconds().and_then(|d| {
            if d < Duration::from_secs(1) {
                return Err("must be at least 1 (seconds)".into());
            }
            cluster.ttl_on_failure = d;
            Ok(())
        }),
        "cluster_advertise" => v
            .string()
            .map(|s| cluster.advertise = (!s.is_empty()).then_some(s)),
        "admin_token" => v
            .raw_string()
            .map(|s| admin.token = (!s.is_empty()).then_some(Secret(s))),
        "admin_token_file" => v.path().and_then(|p| match p {
            None => Ok(()),
            Some(path) => read_secret_file(&path).map(|s| {
                admin.token = Some(s);
                admin.file = Some(path);
            }),
        }),
        _ => Err("unknown configuration key".into()),
    }
}

/// A secret file's content without its trailing newline; empty is an error.
pub fn read_secret_file(path: &std::path::Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let s = text.trim_end_matches(['\r', '\n']);
    if s.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(Secret(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    #[test]
    fn postgres_keys_and_secrets() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, b"s3cret\n").unwrap();
        let env = vec![
            ("GATEWAY_DATABASE".to_string(), "postgres".to_string()),
            ("GATEWAY_PG_PORT".into(), "6543".into()),
            ("GATEWAY_PG_TIMEOUT".into(), "250".into()),
            (
                "GATEWAY_PG_PASSWORD_FILE".into(),
                f.path().display().to_string(),
            ),
            ("GATEWAY_ADMIN_TOKEN".into(), "tok".into()),
        ];
        let c = Config::load(None, env).unwrap();
        assert_eq!(c.pg.port, 6543);
        assert_eq!(c.pg.timeout, Duration::from_millis(250));
        assert_eq!(c.pg.password.as_ref().unwrap().expose(), "s3cret");
        assert_eq!(c.admin_token.as_ref().unwrap().expose(), "tok");
        assert_eq!(c.pg.password_file.as_deref(), Some(f.path()));
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("\"tok\""),
            "{shown}"
        );

        let mut t = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut t, b"from-file\n").unwrap();
        let c = Config::load(
            None,
            vec![(
                "GATEWAY_ADMIN_TOKEN_FILE".to_string(),
                t.path().display().to_string(),
            )],
        )
        .unwrap();
        assert_eq!(c.admin_token.as_ref().unwrap().expose(), "from-file");
        assert_eq!(c.admin_token_file.as_deref(), Some(t.path()));
        assert!(!format!("{c:?}").contains("from-file"));
        let e = Config::load(
            None,
            vec![("GATEWAY_ADMIN_TOKEN_FILE".into(), "/nonexistent/tok".into())],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("admin_token_file"), "{e}");

        let e = Config::load(None, vec![("GATEWAY_PG_PORT".into(), "70000".into())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("pg_port"), "{e}");
    }
}
