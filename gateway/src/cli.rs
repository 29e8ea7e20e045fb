//! The `gateway` command line, named after Kong's: start, quit, health, config.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Parser)]
#[command(name = "gateway", version, about = "A fast Kong-style API gateway")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ConfArgs {
    /// Configuration file (TOML with kong.conf's keys); Kong's defaults without one.
    #[arg(short = 'c', long = "conf", env = "GATEWAY_CONF")]
    conf: Option<PathBuf>,
    /// Run directory (pid file); overrides `prefix` from the configuration.
    #[arg(short = 'p', long)]
    prefix: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node in the foreground until SIGTERM/SIGINT, then drain.
    Start(ConfArgs),
    /// Gracefully stop the node running under the prefix, and wait for it.
    Quit {
        #[command(flatten)]
        conf: ConfArgs,
        /// Seconds to wait for the node to finish draining.
        #[arg(short, long, default_value_t = 60)]
        timeout: u64,
    },
    /// Exit 0 only if the local node is ready (GET /status/ready on the admin listener).
    Health(ConfArgs),
    /// Declarative configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Database schema migrations (database = postgres), as in Kong.
    #[command(subcommand)]
    Migrations(MigrationsCommand),
}

#[derive(Subcommand)]
enum MigrationsCommand {
    /// Bootstrap an empty database; a no-op if it is already bootstrapped.
    Bootstrap(ConfArgs),
    /// Run new migrations (the part that is safe while old nodes still run).
    Up(ConfArgs),
    /// Finish pending migrations once every node runs the new version.
    Finish(ConfArgs),
    /// List executed, pending and new migrations (exit 3: needs bootstrap,
    /// 4: pending, 5: new).
    List(ConfArgs),
    /// One line about the schema, with the same exit codes as `list`.
    Status(ConfArgs),
    /// Drop every table the gateway created. All configuration is lost.
    Reset {
        #[command(flatten)]
        conf: ConfArgs,
        /// Do not ask for confirmation.
        #[arg(short, long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a declarative config file (YAML or JSON).
    Parse {
        file: PathBuf,
        #[command(flatten)]
        conf: ConfArgs,
    },
    /// Write the database's configuration to FILE in the declarative format.
    #[command(name = "db_export")]
    DbExport {
        file: PathBuf,
        #[command(flatten)]
        conf: ConfArgs,
    },
    /// Print a JSON fingerprint of the database's configuration (read-only, no secrets).
    ///
    /// One JSON object: the `configuration_hash` a node built from this
    /// database reports in /status, counts, ids, names and timestamps of every
    /// entity (and route paths), the newest change and heartbeat, and the
    /// migrations. It never prints a key, a credential or a plugin's config.
    #[command(name = "db_fingerprint")]
    DbFingerprint {
        #[command(flatten)]
        conf: ConfArgs,
    },
    /// Load a declarative FILE into the database (entities with the same id
    /// are replaced; nothing else is removed).
    #[command(name = "db_import")]
    DbImport {
        file: PathBuf,
        #[command(flatten)]
        conf: ConfArgs,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(args: &ConfArgs) -> anyhow::Result<Config> {
    let mut config = Config::load(args.conf.as_deref(), std::env::vars())?;
    if let Some(p) = &args.prefix {
        config.prefix = p.clone();
    }
    Ok(config)
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Start(args) => {
            let config = load(&args)?;
            init_logging(&config);
            crate::node::run(config)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Quit { conf, timeout } => quit(&load(&conf)?, Duration::from_secs(timeout)),
        Command::Health(args) => health(&load(&args)?),
        Command::Config(ConfigCommand::Parse { file, conf }) => {
            let _ = load(&conf)?;
            parse(&file)
        }
        Command::Config(ConfigCommand::DbExport { file, conf }) => {
            crate::db_cli::export(&database_config(&conf)?, &file)
        }
        Command::Config(ConfigCommand::DbFingerprint { conf }) => {
            crate::db_cli::fingerprint(&database_config(&conf)?)
        }
        Command::Config(ConfigCommand::DbImport { file, conf }) => {
            crate::db_cli::import(&database_config(&conf)?, &file)
        }
        Command::Migrations(m) => {
            use crate::db_cli::Migrate;
            let (conf, what) = match m {
                MigrationsCommand::Bootstrap(c) => (c, Migrate::Bootstrap),
                MigrationsCommand::Up(c) => (c, Migrate::Up),
                MigrationsCommand::Finish(c) => (c, Migrate::Finish),
                MigrationsCommand::List(c) => (c, Migrate::List),
                MigrationsCommand::Status(c) => (c, Migrate::Status),
                MigrationsCommand::Reset { conf, yes } => {
                    if !yes && !crate::db_cli::confirm_reset()? {
                        println!("Canceled");
                        return Ok(ExitCode::FAILURE);
                    }
                    (conf, Migrate::Reset)
                }
            };
            crate::db_cli::migrate(&database_config(&conf)?, what)
        }
    }
}

/// A configuration for the database commands: they need `database = postgres`.
fn database_config(args: &ConfArgs) -> anyhow::Result<Config> {
    let config = load(args)?;
    if config.database != crate::config::Database::Postgres {
        bail!("this command needs `database = \"postgres\"` (set it in the -c file or GATEWAY_DATABASE=postgres)");
    }
    init_logging(&config);
    Ok(config)
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::new(format!(
        "{},hyper=warn,rustls=warn",
        config.tracing_level()
    ));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

fn parse(file: &Path) -> anyhow::Result<ExitCode> {
    let pools = crate::proxy::pool::Pools::new(crate::proxy::pool::PoolSettings {
        max_idle: 0,
        idle_timeout: Duration::ZERO,
        max_requests: 0,
    });
    let snapshot = crate::node::load_declarative(file, &pools)?;
    let e = &snapshot.entities;
    println!(
        "parse successful: {} services, {} routes, {} upstreams, {} targets",
        e.services.len(),
        e.routes.len(),
        e.upstreams.len(),
        e.targets.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn quit(config: &Config, timeout: Duration) -> anyhow::Result<ExitCode> {
    let path = config.pid_file();
    let Some(pid) = crate::node::read_pid(&path) else {
        bail!(
            "no gateway is running with prefix {} (no pid file at {})",
            config.prefix.display(),
            path.display()
        );
    };
    if !crate::node::process_alive(pid) {
        let _ = std::fs::remove_file(&path);
        bail!(
            "no gateway is running with prefix {} (stale pid {pid} removed)",
            config.prefix.display()
        );
    }
    // SAFETY: kill(2) with a pid read from our own pid file.
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        bail!(
            "cannot signal pid {pid}: {}",
            std::io::Error::last_os_error()
        );
    }
    eprintln!("gateway (pid {pid}) is draining...");
    let start = Instant::now();
    while crate::node::process_alive(pid) && path.exists() {
        if start.elapsed() > timeout {
            bail!(
                "gateway (pid {pid}) is still running after {timeout:?}; it may still be draining"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("gateway stopped");
    Ok(ExitCode::SUCCESS)
}

fn health(config: &Config) -> anyhow::Result<ExitCode> {
    let Some(listen) = config.admin_listen.first() else {
        bail!("admin_listen is off: there is no local endpoint to ask");
    };
    let mut addr = listen.addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            [127, 0, 0, 1].into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let result = runtime.block_on(async {
        let check = crate::health::check(addr, listen.ssl, listen.proxy_protocol);
        tokio::time::timeout(Duration::from_secs(5), check).await
    });
    match result {
        Ok(Ok((200, _))) => {
            println!("gateway is ready at {addr}");
            Ok(ExitCode::SUCCESS)
        }
        Ok(Ok((code, body))) => {
            println!("gateway is not ready ({code}): {body}");
            Ok(ExitCode::FAILURE)
        }
        Ok(Err(e)) => {
            println!("gateway is not running at {addr}: {e}");
            Ok(ExitCode::FAILURE)
        }
        Err(_) => {
            println!("gateway at {addr} did not answer within 5s");
            Ok(ExitCode::FAILURE)
        }
    }
}
