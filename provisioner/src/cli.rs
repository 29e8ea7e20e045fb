//! The command line: `provisioner up | plan | status | down`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::aws::{sdk_config, AwsOptions};
use crate::context::Ctx;
use crate::facts::Facts;
use crate::progress::Progress;
use crate::spec::{DrConfig, Spec, StackConfig};
use crate::{artifacts, backup, dr, probe, restore, secrets, stack};

#[derive(Parser)]
#[command(
    name = "provisioner",
    version,
    about = "Builds the gateway stack on AWS (Kong's AWS guide): VPC, security groups, \
             RDS PostgreSQL, Auto Scaling nodes behind a classic ELB with the PROXY protocol",
    after_help = "Credentials come from the standard AWS chain (environment, --profile/AWS_PROFILE, \
                  SSO, instance role). For LocalStack: --endpoint-url http://127.0.0.1:4566 or AWS_ENDPOINT_URL."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the stack, or converge it: create what is missing, repair drift.
    Up(UpArgs),
    /// Show what `up` would change, per resource, and change nothing.
    Plan(PlanArgs),
    /// Show every resource of the stack and its state.
    Status(StackArgs),
    /// Delete the stack's resources (asks first; keeps a final DB snapshot).
    Down(DownArgs),
    /// Database backups: named restore points, their copies in the DR region, the RPO.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Disaster recovery in the DR region: drills.
    #[command(subcommand)]
    Dr(DrCommand),
    /// The stack's secrets: the DB master password and the Admin API token.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Print the stack's facts from the spec, without calling AWS: security group rules,
    /// the database's settings, the ELB's listeners, PROXY-protocol ports and health
    /// check, the group's sizes and lifecycle hook, IMDSv2 and the tags. Terraform and
    /// CloudFormation are held to them by the kit's parity test.
    Facts(FactsArgs),
}

#[derive(Args)]
struct FactsArgs {
    /// The stack's region (default: AWS_REGION, then AWS_DEFAULT_REGION). Only names
    /// are derived from it; AWS is not called.
    #[arg(long)]
    region: Option<String>,
    /// Stack name: prefixes and tags every resource.
    #[arg(long, default_value = "gateway")]
    stack: String,
    /// stack.toml overriding the defaults.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// text for people (one fact a line), json for tools.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Subcommand)]
enum DrCommand {
    /// Restore the backups into a copy of the stack in the DR region, serve the canary
    /// route through its ELB, report RTO by phase and RPO, then remove the copy. Never
    /// touches the primary. Exits 1 when the data does not match or a target is missed.
    Drill(DrillArgs),
    /// Move the stack to the DR region (Kong's AWS guide's five steps): fence the
    /// primary if it answers, restore the database there, start the nodes, switch DNS.
    /// Works while the primary region does not answer. Asks first.
    Failover(FailoverArgs),
    /// Bring the stack home once the primary region is back: the DR database's data
    /// copied home, the primary rebuilt on it, DNS switched back, the DR stack removed.
    Failback(FailbackArgs),
}

#[derive(Args)]
struct ProbeArgs {
    /// The canary: a route path requested through the ELB to prove the stack serves its
    /// configuration. A route with it must exist on the primary, e.g. /dr-canary to a
    /// service http://127.0.0.1:8001/status.
    #[arg(long, value_name = "PATH", default_value = "/dr-canary")]
    canary_path: String,
    /// Resolve DNS names with this server (the kit's: 127.0.0.1:4553) instead of the
    /// system's resolver.
    #[arg(long, value_name = "ADDR:PORT", env = "PROVISIONER_DNS_SERVER")]
    dns_server: Option<std::net::SocketAddr>,
    /// The gateway binary the nodes run (default: as for `up`).
    #[arg(long, value_name = "PATH")]
    gateway_binary: Option<PathBuf>,
}

#[derive(Args)]
struct FailoverArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// The region to fail over to (default: the DR region).
    #[arg(long, value_name = "REGION")]
    to: Option<String>,
    /// Restore this snapshot (a copy in the DR region) instead of the latest restorable time.
    #[arg(long, value_name = "ID")]
    snapshot: Option<String>,
    /// Fail over even when the newest restorable data is older than rpo_target.
    #[arg(long)]
    accept_data_loss: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    probe: ProbeArgs,
}

#[derive(Args)]
struct FailbackArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// Keep the DR stack (its database stopped) as a warm standby.
    #[arg(long)]
    keep_standby: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    probe: ProbeArgs,
}

#[derive(Args)]
struct DrillArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// Restore this snapshot (a copy in the DR region) instead of the latest restorable
    /// time of the replicated backups.
    #[arg(long, value_name = "ID")]
    snapshot: Option<String>,
    /// Keep the drill stack afterwards (remove it later with `down --stack <stack>-drill`).
    #[arg(long)]
    keep: bool,
    /// Where to write the Markdown report (default: ./dr-drill-<stack>-<time>.md).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    #[command(flatten)]
    probe: ProbeArgs,
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// New values for the DB master password and/or the Admin API token, without
    /// restarting a node: the new DB password is stored as <name>-pending first, set on
    /// the database, then promoted (a rerun resumes an interrupted rotation); nodes read
    /// the new values within secret_refresh_seconds. Asks first.
    Rotate(RotateArgs),
}

#[derive(Args)]
struct RotateArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// Rotate the DB master password (with neither flag: both).
    #[arg(long)]
    db_password: bool,
    /// Rotate the Admin API token (with neither flag: both).
    #[arg(long)]
    admin_token: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
}

#[derive(Subcommand)]
enum BackupCommand {
    /// Take a snapshot, tagged with what it holds, and copy it to the DR region.
    Create(BackupCreateArgs),
    /// Show the stack's snapshots and copies per region, with their age.
    List(StackArgs),
    /// Delete the oldest backups beyond --keep per region (never automated backups).
    Prune(PruneArgs),
    /// Show the RPO each region can achieve now (now minus the latest restorable time)
    /// against rpo_target; exits 1 when a region misses it.
    Status(StackArgs),
    /// Replace the stack's database with a snapshot, in its own region (after a bad
    /// migration or Admin API change). The current instance is kept, renamed. Asks first.
    Restore(RestoreArgs),
}

#[derive(Args)]
struct RestoreArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// The snapshot to restore (identifier or ARN; `backup list` shows them).
    #[arg(long, value_name = "ID")]
    snapshot: String,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
    /// The gateway binary the nodes run (default: as for `up`).
    #[arg(long, value_name = "PATH")]
    gateway_binary: Option<PathBuf>,
}

#[derive(Args)]
struct BackupCreateArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// Copy the snapshot to this region (repeatable; default: the DR region, if any).
    #[arg(long, value_name = "REGION")]
    copy_to: Vec<String>,
    /// Do not copy the snapshot anywhere.
    #[arg(long, conflicts_with = "copy_to")]
    no_copy: bool,
    /// The gateway binary that reads what the snapshot holds (default: as for `up`).
    #[arg(long, value_name = "PATH")]
    gateway_binary: Option<PathBuf>,
}

#[derive(Args)]
struct PruneArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// How many backups to keep in each region, newest first.
    #[arg(long, value_name = "N")]
    keep: usize,
    /// Show what would be deleted and delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
}

#[derive(Args)]
struct StackArgs {
    #[command(flatten)]
    aws: AwsOptions,
    /// Stack name: prefixes and tags every resource.
    #[arg(long, default_value = "gateway")]
    stack: String,
    /// stack.toml overriding the defaults.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// text for people, json for tools (on stdout; progress goes to stderr).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// The disaster-recovery region (overrides `[dr] region` in stack.toml).
    #[arg(long, value_name = "REGION")]
    dr_region: Option<String>,
}

#[derive(Args)]
struct BuildArgs {
    /// The gateway binary to ship (default: `gateway` beside this program, then PATH).
    #[arg(long, value_name = "PATH")]
    gateway_binary: Option<PathBuf>,
    /// DNS name for the ELB (with --hosted-zone-id).
    #[arg(long, requires = "hosted_zone_id")]
    domain: Option<String>,
    /// Route53 hosted zone of --domain.
    #[arg(long, requires = "domain")]
    hosted_zone_id: Option<String>,
}

#[derive(Args)]
struct UpArgs {
    #[command(flatten)]
    stack: StackArgs,
    #[command(flatten)]
    build: BuildArgs,
}

#[derive(Args)]
struct PlanArgs {
    #[command(flatten)]
    stack: StackArgs,
    #[command(flatten)]
    build: BuildArgs,
    /// Exit 2 when there are changes (0: converged), like terraform plan.
    #[arg(long)]
    detailed_exitcode: bool,
}

#[derive(Args)]
struct DownArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
    /// Delete the database without a final snapshot.
    #[arg(long)]
    skip_final_snapshot: bool,
    /// Lift the database's deletion protection.
    #[arg(long)]
    force: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Up(args) => {
            let ctx = context(&args.stack, Some(&args.build)).await?;
            let binary = stack::binary(&ctx)?;
            let outputs = stack::up(&ctx, &binary).await?;
            print(args.stack.output, &outputs, || outputs.render_text())?;
        }
        Command::Plan(args) => {
            let ctx = context(&args.stack, Some(&args.build)).await?;
            let binary = stack::binary(&ctx)?;
            let plan = stack::plan(&ctx, &binary).await?;
            print(args.stack.output, &plan, || plan.render_text())?;
            if args.detailed_exitcode && !plan.is_converged() {
                return Ok(ExitCode::from(2));
            }
        }
        Command::Status(args) => {
            let ctx = context(&args, None).await?;
            let status = stack::status(&ctx).await?;
            print(args.output, &status, || status.render_text())?;
        }
        Command::Down(args) => {
            let ctx = context(&args.stack, None).await?;
            confirm_down(&ctx, args.yes)?;
            let options = stack::DownOptions {
                skip_final_snapshot: args.skip_final_snapshot,
                force: args.force,
            };
            let report = stack::down(&ctx, &options).await?;
            print(args.stack.output, &report, || report.render_text())?;
        }
        Command::Backup(command) => return run_backup(command).await,
        Command::Secrets(SecretsCommand::Rotate(args)) => {
            let ctx = context(&args.stack, None).await?;
            let options = secrets::rotate::Options::from_flags(args.db_password, args.admin_token);
            let which = match (options.db_password, options.admin_token) {
                (true, true) => "the DB master password and the Admin API token",
                (true, false) => "the DB master password",
                _ => "the Admin API token",
            };
            confirm(
                &ctx,
                args.yes,
                "secrets rotate",
                &format!(
                    "This replaces {which} of stack {:?} in {}{}. Nodes pick the new values up within                      {} s; until then Admin API writes may answer 503 (proxied traffic is unaffected).\n",
                    ctx.spec.stack,
                    ctx.spec.region,
                    ctx.spec
                        .config
                        .dr
                        .as_ref()
                        .map_or(String::new(), |dr| format!(" (and the copies in {})", dr.region)),
                    ctx.spec.config.secret_refresh_seconds
                ),
            )?;
            let report = secrets::rotate::rotate(&ctx, options).await?;
            print(args.stack.output, &report, || report.render_text())?;
        }
        Command::Facts(args) => {
            let spec = facts_spec(&args)?;
            let facts = Facts::of(&spec);
            print(args.output, &facts, || facts.render_text())?;
        }
        Command::Dr(DrCommand::Drill(args)) => {
            let mut ctx = context(&args.stack, None).await?;
            let binary = probe_binary(&mut ctx, &args.probe)?;
            let options = dr::drill::Options {
                snapshot: args.snapshot.clone(),
                keep: args.keep,
                canary_path: args.probe.canary_path.clone(),
                report: args.report.clone(),
                resolver: probe::Resolver::from_option(args.probe.dns_server),
            };
            let report = dr::drill::run(&ctx, &binary, &options).await?;
            print(args.stack.output, &report, || report.render_text())?;
            if !report.passed {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Dr(DrCommand::Failover(args)) => {
            let mut ctx = context(&args.stack, None).await?;
            let binary = probe_binary(&mut ctx, &args.probe)?;
            let to = match (&args.to, &ctx.spec.config.dr) {
                (Some(to), _) => to.clone(),
                (None, Some(dr)) => dr.region.clone(),
                (None, None) => bail!(
                    "no DR region: set [dr] region in stack.toml, or pass --dr-region or --to"
                ),
            };
            confirm(
                &ctx,
                args.yes,
                "dr failover",
                &format!(
                    "This moves stack {:?} from {} to {to}: the primary's nodes are stopped if {} answers, \
                     the database is restored in {to}, and DNS switches to {to}.\n",
                    ctx.spec.stack, ctx.spec.region, ctx.spec.region
                ),
            )?;
            let options = dr::failover::Options {
                to,
                snapshot: args.snapshot.clone(),
                accept_data_loss: args.accept_data_loss,
                resolver: probe::Resolver::from_option(args.probe.dns_server),
                probe_path: args.probe.canary_path.clone(),
            };
            let report = dr::failover::failover(&ctx, &binary, &options).await?;
            print(args.stack.output, &report, || report.render_text())?;
        }
        Command::Dr(DrCommand::Failback(args)) => {
            let mut ctx = context(&args.stack, None).await?;
            let binary = probe_binary(&mut ctx, &args.probe)?;
            confirm(
                &ctx,
                args.yes,
                "dr failback",
                &format!(
                    "This brings stack {:?} home to {}: the DR database is stopped and copied home, the \
                     primary's database is replaced by the copy (after a final snapshot), DNS switches back.\n",
                    ctx.spec.stack, ctx.spec.region
                ),
            )?;
            let options = dr::failback::Options {
                keep_standby: args.keep_standby,
                resolver: probe::Resolver::from_option(args.probe.dns_server),
                probe_path: args.probe.canary_path.clone(),
            };
            let report = dr::failback::failback(&ctx, &binary, &options).await?;
            print(args.stack.output, &report, || report.render_text())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The spec `facts` prints: flags and stack.toml, and the region from the flag or the
/// environment (no profile is read and no AWS call is made).
fn facts_spec(args: &FactsArgs) -> Result<Spec> {
    let config = match &args.config {
        Some(path) => StackConfig::load(path)?,
        None => StackConfig::default(),
    };
    let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let region = args
        .region
        .clone()
        .or_else(|| from_env("AWS_REGION"))
        .or_else(|| from_env("AWS_DEFAULT_REGION"))
        .context("no AWS region: pass --region (e.g. --region us-east-1) or set AWS_REGION")?;
    crate::spec::check_region(&region).context("--region")?;
    Spec::new(&args.stack, &region, config)
}

/// The gateway binary a DR command ships, `--gateway-binary` first.
fn probe_binary(ctx: &mut Ctx, probe: &ProbeArgs) -> Result<stack::Binary> {
    if probe.gateway_binary.is_some() {
        ctx.spec.config.gateway_binary = probe.gateway_binary.clone();
    }
    stack::binary(ctx)
}

async fn run_backup(command: BackupCommand) -> Result<ExitCode> {
    match command {
        BackupCommand::Create(args) => {
            let ctx = context(&args.stack, None).await?;
            let copy_to = match (&ctx.spec.config.dr, args.no_copy) {
                (_, true) => Vec::new(),
                (Some(dr), false) if args.copy_to.is_empty() => vec![dr.region.clone()],
                _ => args.copy_to.clone(),
            };
            let configured = args
                .gateway_binary
                .clone()
                .or(ctx.spec.config.gateway_binary.clone());
            let gateway = artifacts::locate_binary(configured.as_deref()).ok();
            let created = backup::create(&ctx, gateway.as_deref(), &copy_to).await?;
            print(args.stack.output, &created, || created.render_text())?;
        }
        BackupCommand::List(args) => {
            let ctx = context(&args, None).await?;
            let listing = backup::list(&ctx).await?;
            print(args.output, &listing, || listing.render_text())?;
        }
        BackupCommand::Prune(args) => {
            let ctx = context(&args.stack, None).await?;
            let listing = backup::list(&ctx).await?;
            let doomed = backup::to_prune(&listing.snapshots, args.keep);
            if args.dry_run || doomed.is_empty() {
                let report = backup::Pruned {
                    stack: ctx.spec.stack.clone(),
                    kept_per_region: args.keep,
                    deleted: Vec::new(),
                };
                if args.dry_run && !doomed.is_empty() {
                    eprintln!("Would delete {} backup(s) (dry run):", doomed.len());
                    for s in &doomed {
                        eprintln!("  {} {}", s.region, s.id);
                    }
                }
                print(args.stack.output, &report, || report.render_text())?;
                return Ok(ExitCode::SUCCESS);
            }
            let names: Vec<String> = doomed
                .iter()
                .map(|s| format!("{} {}", s.region, s.id))
                .collect();
            confirm(
                &ctx,
                args.yes,
                "prune",
                &format!(
                    "This deletes {} backup(s):\n  {}\n",
                    doomed.len(),
                    names.join("\n  ")
                ),
            )?;
            let report = backup::prune(&ctx, &listing, args.keep).await?;
            print(args.stack.output, &report, || report.render_text())?;
        }
        BackupCommand::Restore(args) => {
            let mut ctx = context(&args.stack, None).await?;
            if args.gateway_binary.is_some() {
                ctx.spec.config.gateway_binary = args.gateway_binary.clone();
            }
            let binary = stack::binary(&ctx)?;
            let snapshot = restore::find_snapshot(&ctx, &args.snapshot).await?;
            if snapshot.status != "available" {
                bail!(
                    "snapshot {} is {}, not available: wait for it (`provisioner backup list`)",
                    snapshot.id,
                    snapshot.status
                );
            }
            confirm(
                &ctx,
                args.yes,
                "backup restore",
                &format!(
                    "This replaces the database of stack {:?} in {} with snapshot {} (taken {}): changes made \
                     after it are lost from the serving database. The current instance is kept as \
                     {}-before-restore-<time>; the nodes follow the restored data.\n",
                    ctx.spec.stack,
                    ctx.spec.region,
                    snapshot.id,
                    snapshot.taken_at.as_deref().unwrap_or("?"),
                    ctx.spec.db_identifier()
                ),
            )?;
            let report = restore::restore(&ctx, &binary, &snapshot).await?;
            print(args.stack.output, &report, || report.render_text())?;
        }
        BackupCommand::Status(args) => {
            let ctx = context(&args, None).await?;
            let report = backup::status(&ctx).await?;
            print(args.output, &report, || report.render_text())?;
            if !report.ok() {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The spec from flags and stack.toml, and the clients for its region.
async fn context(args: &StackArgs, build: Option<&BuildArgs>) -> Result<Ctx> {
    let mut config = match &args.config {
        Some(path) => StackConfig::load(path)?,
        None => StackConfig::default(),
    };
    if let Some(build) = build {
        if build.gateway_binary.is_some() {
            config.gateway_binary = build.gateway_binary.clone();
        }
        if build.domain.is_some() {
            config.domain = build.domain.clone();
            config.hosted_zone_id = build.hosted_zone_id.clone();
        }
    }
    if let Some(region) = &args.dr_region {
        match &mut config.dr {
            Some(dr) => dr.region = region.clone(),
            None => config.dr = Some(DrConfig::new(region)),
        }
    }
    let sdk = sdk_config(&args.aws).await;
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .context("no AWS region: pass --region (e.g. --region us-east-1) or set AWS_REGION")?;
    let spec = Spec::new(&args.stack, &region, config)?;
    Ok(Ctx::new(&sdk, spec, Progress::new(false)))
}

fn print<T: serde::Serialize>(
    output: Output,
    value: &T,
    text: impl FnOnce() -> String,
) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match output {
        Output::Json => {
            serde_json::to_writer_pretty(&mut stdout, value)?;
            writeln!(stdout)?;
        }
        Output::Text => write!(stdout, "{}", text())?,
    }
    Ok(())
}

/// `down` asks on a terminal; elsewhere it needs `--yes`.
fn confirm_down(ctx: &Ctx, yes: bool) -> Result<()> {
    confirm(
        ctx,
        yes,
        "down",
        &format!(
            "This deletes every resource of stack {:?} in {} (the database after a final snapshot).\n",
            ctx.spec.stack, ctx.spec.region
        ),
    )
}

/// A destructive command asks on a terminal for the stack's name; elsewhere it needs
/// `--yes`.
fn confirm(ctx: &Ctx, yes: bool, command: &str, what: &str) -> Result<()> {
    if yes {
        return Ok(());
    }
    let stack = &ctx.spec.stack;
    if !std::io::stdin().is_terminal() {
        bail!(
            "`{command}` changes stack {stack:?} in {}; pass --yes to confirm when not on a terminal",
            ctx.spec.region
        );
    }
    eprint!("{what}Type the stack name to confirm: ");
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if answer.trim() != stack {
        bail!("not confirmed; nothing was changed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        let cli = Cli::try_parse_from([
            "provisioner",
            "up",
            "--region",
            "eu-west-1",
            "--stack",
            "gw",
            "--output",
            "json",
            "--endpoint-url",
            "http://127.0.0.1:4566",
            "--gateway-binary",
            "/bin/true",
        ])
        .unwrap();
        let Command::Up(up) = cli.command else {
            panic!("not up")
        };
        assert_eq!(up.stack.aws.region.as_deref(), Some("eu-west-1"));
        assert!(up.stack.output == Output::Json);
        assert!(Cli::try_parse_from(["provisioner", "up", "--domain", "x.example.com"]).is_err());
        let cli = Cli::try_parse_from(["provisioner", "down", "--yes", "--force"]).unwrap();
        let Command::Down(down) = cli.command else {
            panic!("not down")
        };
        assert!(down.yes && down.force && !down.skip_final_snapshot);
        assert_eq!(down.stack.stack, "gateway");
    }

    #[test]
    fn secrets_rotate_parses() {
        let cli = Cli::try_parse_from([
            "provisioner",
            "secrets",
            "rotate",
            "--region",
            "eu-west-1",
            "--profile",
            "ops",
            "--stack",
            "gw",
            "--db-password",
            "--yes",
            "--output",
            "json",
        ])
        .unwrap();
        let Command::Secrets(SecretsCommand::Rotate(r)) = cli.command else {
            panic!("not secrets rotate")
        };
        assert!(r.db_password && !r.admin_token && r.yes);
        assert!(r.stack.output == Output::Json);
        assert_eq!(r.stack.stack, "gw");
        let cli = Cli::try_parse_from(["provisioner", "secrets", "rotate"]).unwrap();
        let Command::Secrets(SecretsCommand::Rotate(r)) = cli.command else {
            panic!("not secrets rotate")
        };
        assert!(!r.db_password && !r.admin_token && !r.yes);
    }

    #[test]
    fn facts_need_no_aws() {
        let cli = Cli::try_parse_from([
            "provisioner",
            "facts",
            "--region",
            "eu-west-1",
            "--stack",
            "gw",
            "--output",
            "json",
        ])
        .unwrap();
        let Command::Facts(args) = cli.command else {
            panic!("not facts")
        };
        let spec = facts_spec(&args).unwrap();
        assert_eq!(
            (spec.stack.as_str(), spec.region.as_str()),
            ("gw", "eu-west-1")
        );
        let bad =
            Cli::try_parse_from(["provisioner", "facts", "--region", "mars", "--stack", "gw"])
                .unwrap();
        let Command::Facts(args) = bad.command else {
            panic!("not facts")
        };
        let e = facts_spec(&args).unwrap_err();
        assert!(format!("{e:#}").contains("not an AWS region name"), "{e:#}");
        let bad = Cli::try_parse_from([
            "provisioner",
            "facts",
            "--region",
            "us-east-1",
            "--stack",
            "Bad_Name",
        ])
        .unwrap();
        let Command::Facts(args) = bad.command else {
            panic!("not facts")
        };
        assert!(format!("{:#}", facts_spec(&args).unwrap_err()).contains("stack name"));
    }
}
