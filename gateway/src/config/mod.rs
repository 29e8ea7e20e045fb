//! Node configuration: kong.conf's keys, written as TOML, each overridable by
//! `GATEWAY_<KEY>` in the environment. No file means Kong's defaults.

pub mod database;
pub mod limits;
pub mod listen;
pub mod trusted;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use database::{read_secret_file, ClusterConfig, PgConfig, Secret};
pub use limits::Limits;
pub use listen::Listen;
pub use trusted::TrustedIps;

const ENV_PREFIX: &str = "GATEWAY_";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    Off,
    Postgres,
}

/// Where the client address comes from when the peer is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RealIpHeader {
    /// The address from the PROXY protocol header.
    ProxyProtocol,
    /// A request header, lower-cased (`x-real-ip`, `x-forwarded-for`, ...).
    Header(http::HeaderName),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub proxy_listen: Vec<Listen>,
    pub admin_listen: Vec<Listen>,
    pub database: Database,
    pub declarative_config: Option<PathBuf>,
    pub trusted_ips: TrustedIps,
    pub real_ip_header: RealIpHeader,
    pub real_ip_recursive: bool,
    pub ssl_cert: Option<PathBuf>,
    pub ssl_cert_key: Option<PathBuf>,
    pub admin_ssl_cert: Option<PathBuf>,
    pub admin_ssl_cert_key: Option<PathBuf>,
    pub prefix: PathBuf,
    pub log_level: String,
    pub proxy_protocol_timeout: Duration,
    pub drain_delay: Duration,
    pub drain_timeout: Duration,
    /// Runtime worker threads; 0 means one per core.
    pub worker_threads: usize,
    pub upstream_keepalive_pool_size: usize,
    pub upstream_keepalive_idle_timeout: Duration,
    pub upstream_keepalive_max_requests: u64,
    pub limits: Limits,
    pub pg: PgConfig,
    pub cluster: ClusterConfig,
    /// When set, every Admin API request but `/status` needs it as a bearer token.
    pub admin_token: Option<Secret>,
    /// `admin_token_file`: where `admin_token` came from; the node re-reads it
    /// when it changes.
    pub admin_token_file: Option<PathBuf>,
}

/// A bad configuration: names the key and, when known, the file.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: `{key}`: {message}")]
pub struct ConfigError {
    pub source_name: String,
    pub key: String,
    pub message: String,
}

pub const DEFAULT_PROXY_LISTEN: &str =
    "0.0.0.0:8000 reuseport backlog=16384, 0.0.0.0:8443 http2 ssl reuseport backlog=16384";
pub const DEFAULT_ADMIN_LISTEN: &str =
    "127.0.0.1:8001 reuseport backlog=16384, 127.0.0.1:8444 http2 ssl reuseport backlog=16384";

impl Default for Config {
    fn default() -> Self {
        Config {
            proxy_listen: listen::parse_listeners(DEFAULT_PROXY_LISTEN).expect("valid default"),
            admin_listen: listen::parse_listeners(DEFAULT_ADMIN_LISTEN).expect("valid default"),
            database: Database::Off,
            declarative_config: None,
            trusted_ips: TrustedIps::default(),
            real_ip_header: RealIpHeader::Header(http::HeaderName::from_static("x-real-ip")),
            real_ip_recursive: false,
            ssl_cert: None,
            ssl_cert_key: None,
            admin_ssl_cert: None,
            admin_ssl_cert_key: None,
            prefix: PathBuf::from("/usr/local/gateway"),
            log_level: "notice".into(),
            proxy_protocol_timeout: Duration::from_secs(5),
            drain_delay: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(30),
            worker_threads: 0,
            upstream_keepalive_pool_size: 512,
            upstream_keepalive_idle_timeout: Duration::from_secs(60),
            upstream_keepalive_max_requests: 10_000,
            limits: Limits::default(),
            pg: PgConfig::default(),
            cluster: ClusterConfig::default(),
            admin_token: None,
            admin_token_file: None,
        }
    }
}

impl Config {
    /// Loads `path` (if any), then applies `GATEWAY_*` variables from `env`.
    pub fn load<I>(path: Option<&Path>, env: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut config = Config::default();
        if let Some(path) = path {
            let source_name = path.display().to_string();
            let err = |key: &str, message: String| ConfigError {
                source_name: source_name.clone(),
                key: key.to_string(),
                message,
            };
            let text = std::fs::read_to_string(path)
                .map_err(|e| err("-", format!("cannot read the file: {e}")))?;
            let table: toml::Table = text
                .parse()
                .map_err(|e: toml::de::Error| err("-", format!("not valid TOML: {e}")))?;
            for (key, value) in table {
                config
                    .set(&key, Value::Toml(value))
                    .map_err(|m| err(&key, m))?;
            }
        }
        for (name, value) in env {
            let Some(key) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            if KEYS.contains(&key.as_str())
                || database::KEYS.contains(&key.as_str())
                || limits::KEYS.contains(&key.as_str())
            {
                config
                    .set(&key, Value::Env(value))
                    .map_err(|message| ConfigError {
                        source_name: format!("environment variable {name}"),
                        key: key.clone(),
                        message,
                    })?;
            }
        }
        config.check().map_err(|(key, message)| ConfigError {
            source_name: path.map_or("configuration".into(), |p| p.display().to_string()),
            key: key.into(),
            message,
        })?;
        Ok(config)
    }

    fn set(&mut self, key: &str, v: Value) -> Result<(), String> {
        if database::KEYS.contains(&key) {
            let mut admin = database::AdminToken {
                token: self.admin_token.take(),
                file: self.admin_token_file.take(),
            };
            let r = database::set(&mut self.pg, &mut self.cluster, &mut admin, key, v);
            (self.admin_token, self.admin_token_file) = (admin.token, admin.file);
            return r;
        }
        if limits::KEYS.contains(&key) {
            return limits::set(&mut self.limits, key, v);
        }
        match key {
            "proxy_listen" => self.proxy_listen = listen::parse_listeners(&v.string()?)?,
            "admin_listen" => self.admin_listen = listen::parse_listeners(&v.string()?)?,
            "database" => {
                self.database = match v.string()?.as_str() {
                    "off" => Database::Off,
                    "postgres" => Database::Postgres,
                    other => return Err(format!("`{other}` is not one of: off, postgres")),
                }
            }
            "declarative_config" => self.declarative_config = v.path()?,
            "trusted_ips" => self.trusted_ips = TrustedIps::parse(&v.list()?)?,
            "real_ip_header" => {
                let name = v.string()?;
                self.real_ip_header = if name == "proxy_protocol" {
                    RealIpHeader::ProxyProtocol
                } else {
                    let header = http::HeaderName::try_from(name.as_str())
                        .map_err(|_| format!("`{name}` is not a header name"))?;
                    RealIpHeader::Header(header)
                };
            }
            "real_ip_recursive" => self.real_ip_recursive = v.bool()?,
            "ssl_cert" => self.ssl_cert = v.path()?,
            "ssl_cert_key" => self.ssl_cert_key = v.path()?,
            "admin_ssl_cert" => self.admin_ssl_cert = v.path()?,
            "admin_ssl_cert_key" => self.admin_ssl_cert_key = v.path()?,
            "prefix" => self.prefix = v.path()?.ok_or("must not be empty")?,
            "log_level" => {
                let level = v.string()?;
                if !LOG_LEVELS.contains(&level.as_str()) {
                    return Err(format!(
                        "`{level}` is not one of: {}",
                        LOG_LEVELS.join(", ")
                    ));
                }
                self.log_level = level;
            }
            "proxy_protocol_timeout" => self.proxy_protocol_timeout = v.seconds()?,
            "drain_delay" => self.drain_delay = v.seconds()?,
            "drain_timeout" => self.drain_timeout = v.seconds()?,
            "worker_threads" => {
                let s = v.string()?;
                self.worker_threads = if s == "auto" {
                    0
                } else {
                    s.parse()
                        .map_err(|_| format!("`{s}` is neither `auto` nor a number"))?
                };
            }
            "upstream_keepalive_pool_size" => {
                self.upstream_keepalive_pool_size = v.number()? as usize
            }
            "upstream_keepalive_idle_timeout" => {
                self.upstream_keepalive_idle_timeout = v.seconds()?
            }
            "upstream_keepalive_max_requests" => {
                self.upstream_keepalive_max_requests = v.number()? as u64
            }
            _ => {
                return Err(format!(
                    "unknown configuration key (known keys: {}, {}, {})",
                    KEYS.join(", "),
                    limits::KEYS.join(", "),
                    database::KEYS.join(", ")
                ))
            }
        }
        Ok(())
    }

    /// Rules that span keys.
    fn check(&self) -> Result<(), (&'static str, String)> {
        for (cert, key, cert_name, key_name) in [
            (
                &self.ssl_cert,
                &self.ssl_cert_key,
                "ssl_cert",
                "ssl_cert_key",
            ),
            (
                &self.admin_ssl_cert,
                &self.admin_ssl_cert_key,
                "admin_ssl_cert",
                "admin_ssl_cert_key",
            ),
        ] {
            if cert.is_some() != key.is_some() {
                return Err((
                    cert_name,
                    format!("`{cert_name}` and `{key_name}` go together: set both or neither"),
                ));
            }
        }
        if self.database == Database::Postgres && self.declarative_config.is_some() {
            return Err((
                "declarative_config",
                "is for `database = \"off\"`; load a file into PostgreSQL with `gateway config db_import`".into(),
            ));
        }
        Ok(())
    }

    pub fn pid_file(&self) -> PathBuf {
        self.prefix.join("pids").join("gateway.pid")
    }

    /// The tracing filter directive for `log_level` (nginx's level names).
    pub fn tracing_level(&self) -> &'static str {
        match self.log_level.as_str() {
            "debug" => "debug",
            "info" | "notice" => "info",
            "warn" => "warn",
            _ => "error",
        }
    }
}

pub const KEYS: &[&str] = &[
    "proxy_listen",
    "admin_listen",
    "database",
    "declarative_config",
    "trusted_ips",
    "real_ip_header",
    "real_ip_recursive",
    "ssl_cert",
    "ssl_cert_key",
    "admin_ssl_cert",
    "admin_ssl_cert_key",
    "prefix",
    "log_level",
    "proxy_protocol_timeout",
    "drain_delay",
    "drain_timeout",
    "worker_threads",
    "upstream_keepalive_pool_size",
    "upstream_keepalive_idle_timeout",
    "upstream_keepalive_max_requests",
];

const LOG_LEVELS: &[&str] = &[
    "debug", "info", "notice", "warn", "error", "crit", "alert", "emerg",
];

/// A raw value: typed from TOML, or a string from the environment.
enum Value {
    Toml(toml::Value),
    Env(String),
}

impl Value {
    /// A string as given, untrimmed (passwords may have spaces).
    fn raw_string(self) -> Result<String, String> {
        match self {
            Value::Env(s) | Value::Toml(toml::Value::String(s)) => Ok(s),
            Value::Toml(other) => Err(format!("expected a string, got {}", other.type_str())),
        }
    }

    fn non_empty(self) -> Result<String, String> {
        let s = self.string()?;
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        Ok(s)
    }

    fn port(self) -> Result<u16, String> {
        let n = self.number()?;
        if n.fract() != 0.0 || !(1.0..=65535.0).contains(&n) {
            return Err(format!("`{n}` is not a port (1-65535)"));
        }
        Ok(n as u16)
    }

    fn string(self) -> Result<String, String> {
        match self {
            Value::Env(s) | Value::Toml(toml::Value::String(s)) => Ok(s.trim().to_string()),
            Value::Toml(toml::Value::Integer(i)) => Ok(i.to_string()),
            Value::Toml(other) => Err(format!("expected a string, got {}", other.type_str())),
        }
    }

    fn path(self) -> Result<Option<PathBuf>, String> {
        let s = self.string()?;
        Ok((!s.is_empty()).then(|| PathBuf::from(s)))
    }

    fn bool(self) -> Result<bool, String> {
        match self {
            Value::Toml(toml::Value::Boolean(b)) => Ok(b),
            v => match v.string()?.as_str() {
                "on" | "true" => Ok(true),
                "off" | "false" => Ok(false),
                other => Err(format!("`{other}` is not one of: on, off")),
            },
        }
    }

    fn number(self) -> Result<f64, String> {
        let n = match self {
            Value::Toml(toml::Value::Integer(i)) => i as f64,
            Value::Toml(toml::Value::Float(f)) => f,
            v => {
                let s = v.string()?;
                s.parse().map_err(|_| format!("`{s}` is not a number"))?
            }
        };
        if n.is_finite() && n >= 0.0 {
            Ok(n)
        } else {
            Err(format!("`{n}` must be a number >= 0"))
        }
    }

    fn seconds(self) -> Result<Duration, String> {
        Ok(Duration::from_secs_f64(self.number()?))
    }

    fn list(self) -> Result<Vec<String>, String> {
        match self {
            Value::Toml(toml::Value::Array(items)) => {
                items.into_iter().map(|i| Value::Toml(i).string()).collect()
            }
            v => Ok(v
                .string()?
                .split(',')
                .map(|s| s.trim().to_string())
                .collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_file_means_kong_defaults() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.proxy_listen.len(), 2);
        assert_eq!(c.proxy_listen[0].addr.port(), 8000);
        assert!(c.proxy_listen[1].ssl && c.proxy_listen[1].http2);
        assert_eq!(c.admin_listen[0].addr, "127.0.0.1:8001".parse().unwrap());
        assert_eq!(c.admin_listen[1].addr, "127.0.0.1:8444".parse().unwrap());
        assert_eq!(c.database, Database::Off);
        assert_eq!(c.drain_delay, Duration::from_secs(5));
        assert_eq!(c.proxy_protocol_timeout, Duration::from_secs(5));
    }

    #[test]
    fn file_then_environment() {
        let f = file(
            "proxy_listen = \"127.0.0.1:9000 proxy_protocol\"\ntrusted_ips = [\"10.0.0.0/8\"]\nreal_ip_recursive = \"on\"\ndrain_delay = 0.5\n",
        );
        let c = Config::load(
            Some(f.path()),
            env(&[
                ("GATEWAY_DRAIN_DELAY", "2"),
                ("GATEWAY_LOG_LEVEL", "debug"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert!(c.proxy_listen[0].proxy_protocol);
        assert!(c.trusted_ips.contains("10.1.1.1".parse().unwrap()));
        assert!(c.real_ip_recursive);
        assert_eq!(c.drain_delay, Duration::from_secs(2));
        assert_eq!(c.tracing_level(), "debug");
    }

    #[test]
    fn unknown_key_and_bad_values_name_the_key() {
        let f = file("proxy_lisen = \"127.0.0.1:9000\"\n");
        let e = Config::load(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`proxy_lisen`: unknown configuration key"),
            "{e}"
        );

        let f = file("drain_timeout = \"soon\"\n");
        let e = Config::load(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`drain_timeout`: `soon` is not a number"), "{e}");

        let e = Config::load(None, env(&[("GATEWAY_ADMIN_LISTEN", "127.0.0.1:1 tls")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("GATEWAY_ADMIN_LISTEN") && e.contains("unknown flag `tls`"),
            "{e}"
        );

        let f = file("ssl_cert = \"/tmp/a.crt\"\n");
        let e = Config::load(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`ssl_cert`"), "{e}");
    }
}
