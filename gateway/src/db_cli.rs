//! The commands that work on the database directly: `migrations ...` and
//! `config db_export | db_import | db_fingerprint`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::config::Config;
use crate::fingerprint::Fingerprint;
use crate::store::migrations::{self, Outcome, State};
use crate::store::{load, Store};

#[derive(Clone, Copy)]
pub enum Migrate {
    Bootstrap,
    Up,
    Finish,
    List,
    Status,
    Reset,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

/// The store, once the database has answered.
async fn connect(config: &Config) -> anyhow::Result<Store> {
    let store = Store::new(&config.pg);
    if let Err(e) = store.ping().await {
        bail!(
            "cannot reach the database {}: {e} (check pg_host, pg_port, pg_user, pg_password and pg_database)",
            store.target
        );
    }
    Ok(store)
}

pub fn migrate(config: &Config, what: Migrate) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let store = connect(config).await?;
        let outcome = match what {
            Migrate::Bootstrap => migrations::bootstrap(&store).await?,
            Migrate::Up => migrations::up(&store).await?,
            Migrate::Finish => migrations::finish(&store).await?,
            Migrate::Reset => migrations::reset(&store).await?,
            Migrate::List | Migrate::Status => {
                let state = migrations::state(&store).await?;
                report(&state, matches!(what, Migrate::List));
                return Ok(ExitCode::from(state.exit_code()));
            }
        };
        match outcome {
            Outcome::Done(m) => println!("{m}"),
            Outcome::NothingToDo(m) => println!("{m}; nothing to do"),
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn report(state: &State, names: bool) {
    let State::Ready {
        executed,
        pending,
        new,
    } = state
    else {
        println!("database needs bootstrapping: run `gateway migrations bootstrap`");
        return;
    };
    if names {
        for (label, list) in [("executed", executed), ("pending", pending), ("new", new)] {
            if !list.is_empty() {
                println!("{label}: {}", list.join(", "));
            }
        }
    }
    let next = if !new.is_empty() {
        "; run `gateway migrations up`"
    } else if !pending.is_empty() {
        "; run `gateway migrations finish` once every node is upgraded"
    } else {
        ""
    };
    println!(
        "database is bootstrapped: {} executed, {} pending, {} new{next}",
        executed.len(),
        pending.len(),
        new.len()
    );
}

/// Asks on a terminal; anywhere else `--yes` is required.
pub fn confirm_reset() -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("`migrations reset` drops every table and all configuration: add --yes to confirm");
    }
    print!("This drops every table and all configuration, and cannot be undone. Continue? [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

pub fn export(config: &Config, file: &Path) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let store = connect(config).await?;
        let (_, entities) = load::load(&store).await?;
        let text = crate::declarative::export(&entities);
        std::fs::write(file, text).with_context(|| format!("cannot write {}", file.display()))?;
        println!(
            "exported {} services, {} routes, {} upstreams, {} targets, {} consumers, {} plugins, {} certificates to {}",
            entities.services.len(),
            entities.routes.len(),
            entities.upstreams.len(),
            entities.targets.len(),
            entities.consumers.len(),
            entities.plugins.len(),
            entities.certificates.len(),
            file.display()
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// Prints the database's [`Fingerprint`] as one JSON object. Only reads.
pub fn fingerprint(config: &Config) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let store = connect(config).await?;
        let state = migrations::state(&store).await?;
        let fingerprint = match state {
            State::NotBootstrapped => Fingerprint::not_bootstrapped(),
            State::Ready { .. } => {
                let (_, entities, facts) = load::load_with_cluster_facts(&store).await?;
                Fingerprint::of(&entities, &facts, &state)
            }
        };
        println!("{}", fingerprint.to_json());
        Ok(ExitCode::SUCCESS)
    })
}

pub fn import(config: &Config, file: &Path) -> anyhow::Result<ExitCode> {
    let text = crate::input_limits::read_file(file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let doc = crate::declarative::parse(&text).map_err(|e| {
        anyhow::anyhow!("{} is not a valid declarative config: {e}", file.display())
    })?;
    runtime()?.block_on(async {
        let store = connect(config).await?;
        if let Some(why) = migrations::state(&store).await?.start_blocker() {
            bail!("{why}");
        }
        let count = store.import(&doc.entities, uuid::Uuid::nil()).await?;
        println!("imported {count} entities from {}", file.display());
        Ok(ExitCode::SUCCESS)
    })
}
