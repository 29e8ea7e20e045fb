//! `provisioner dr failover` and `dr failback`: Kong's AWS guide's five recovery steps,
//! scripted, and the way home.
//!
//! Failover: fence the primary if it answers, converge the stack (same name) in the DR
//! region with its database restored from the replicated backups, start the nodes
//! against it, and point the stack's DNS name at the DR ELB. Only the DR region's API
//! is needed. The stack in the DR region uses the pilot light's key, secrets and bucket
//! (same names), and never deletes them. Run again, it converges: what exists is kept.
//!
//! Failback: stop the DR database with a final snapshot (the nodes keep serving from
//! memory; Admin API writes wait), copy it home, replace the primary's database with it
//! (the old one is deleted after a final snapshot of its own), bring the primary's nodes
//! back on the new endpoint, switch DNS back, and remove the DR stack.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::Serialize;

use super::drill::{self, read_database, wait_in_service};
use super::{age, now, replication, state, target};
use crate::aws::AwsResultExt;
use crate::compute;
use crate::context::Ctx;
use crate::database::{self, instance, kms, restore::Source};
use crate::probe::{self, Resolver};
use crate::progress::Poll;
use crate::spec::Spec;
use crate::stack::{self, Binary, DownOptions};

/// How long a call to a region that may be down may take before it counts as down.
const FENCE_LIMIT: Duration = Duration::from_secs(20);
const SNAPSHOT_LIMIT: Duration = Duration::from_secs(3 * 60 * 60);
const SERVE_LIMIT: Duration = Duration::from_secs(5 * 60);

pub struct Options {
    pub to: String,
    pub snapshot: Option<String>,
    pub accept_data_loss: bool,
    pub resolver: Resolver,
    pub probe_path: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub name: String,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub stack: String,
    pub operation: String,
    pub from: String,
    pub to: String,
    pub changed: bool,
    pub fenced: String,
    pub source: Option<String>,
    pub restore_point: Option<String>,
    pub rto_seconds: Option<f64>,
    pub rto_target_seconds: u64,
    pub phases: Vec<Phase>,
    pub rpo_seconds: Option<i64>,
    pub rpo_target_seconds: u64,
    pub elb_dns_name: String,
    pub domain: Option<String>,
    pub first_request: Option<String>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn render_text(&self) -> String {
        let mut out = format!(
            "{} of stack {}: {} -> {}{}\n",
            self.operation,
            self.stack,
            self.from,
            self.to,
            if self.changed {
                ""
            } else {
                " (already done: nothing changed)"
            }
        );
        out.push_str(&format!("  primary fenced: {}\n", self.fenced));
        if let Some(s) = &self.source {
            out.push_str(&format!("  database restored from {s}\n"));
        }
        out.push_str(&format!(
            "  RTO {} (target {})\n",
            self.rto_seconds
                .map(|s| age(s.round() as i64))
                .unwrap_or_else(|| "-".into()),
            age(self.rto_target_seconds as i64)
        ));
        for p in &self.phases {
            out.push_str(&format!(
                "    {:<16} {:>8}\n",
                p.name,
                age(p.seconds.round() as i64)
            ));
        }
        if self.rpo_seconds.is_some() || self.restore_point.is_some() {
            out.push_str(&format!(
                "  RPO {} (target {}), restore point {}\n",
                self.rpo_seconds.map(age).unwrap_or_else(|| "-".into()),
                age(self.rpo_target_seconds as i64),
                self.restore_point.as_deref().unwrap_or("-")
            ));
        }
        out.push_str(&format!("  elb {}\n", self.elb_dns_name));
        if let Some(d) = &self.domain {
            out.push_str(&format!("  {d} now points at it (TTL 60 s)\n"));
        }
        if let Some(f) = &self.first_request {
            out.push_str(&format!("  first request: {f}\n"));
        }
        for n in &self.notes {
            out.push_str(&format!("  note: {n}\n"));
        }
        out
    }
}

/// The stack in the DR region: same name, the pilot light's key, secrets and bucket
/// (which it does not own), no DR region of its own.
fn standby_spec(primary: &Spec, region: &str) -> Spec {
    let mut spec = Spec {
        region: region.to_string(),
        borrows_from: Some(primary.owner().to_string()),
        ..primary.clone()
    };
    spec.config.dr = None;
    spec
}

/// The name clients use, else the ELB's, and the path to request.
async fn first_request(ctx: &Ctx, resolver: &Resolver, host: &str, path: &str) -> Result<String> {
    let progress = ctx.progress.clone();
    let mut last = String::new();
    let a = probe::wait_served(
        resolver,
        host,
        80,
        path,
        SERVE_LIMIT,
        |a| a.status < 500,
        |s: &str| {
            if s != last {
                progress.line(format!("GET http://{host}{path}: {s}"));
                last = s.to_string();
            }
        },
    )
    .await?;
    Ok(format!(
        "GET http://{host}{path} -> {} from {} ({} ms)",
        a.status, a.address, a.elapsed_ms
    ))
}

pub async fn failover(ctx: &Ctx, binary: &Binary, options: &Options) -> Result<Report> {
    let dr_config = ctx
        .spec
        .config
        .dr
        .clone()
        .context("no DR region: set [dr] region in stack.toml or pass --dr-region")?;
    let to = options.to.clone();
    if to == ctx.spec.region {
        bail!(
            "--to {to} is the stack's primary region; fail over to the DR region ({})",
            dr_config.region
        );
    }
    let dr = Ctx::new(
        &ctx.for_region(&to).sdk,
        standby_spec(&ctx.spec, &to),
        ctx.progress.clone(),
    );
    let started = Instant::now();
    let started_at = now();
    drill::preflight(&dr).await?;
    let existing = instance::describe(&dr, &dr.spec.db_identifier()).await?;
    let (source, restore_point_hint) = match &existing {
        Some(_) => (None, None),
        None => {
            let (s, point) =
                drill::source(&dr, &ctx.spec.region, options.snapshot.as_deref()).await?;
            (Some(s), point)
        }
    };
    // Refuse to lose more than the target, unless told to.
    if source.is_some() {
        let achievable = restore_point_hint.map(|p| started_at - p);
        let limit = dr_config.rpo_target.as_secs() as i64;
        match achievable {
            Some(rpo) if rpo > limit && !options.accept_data_loss => bail!(
                "the newest restorable data in {to} is {} old, over the RPO target {}: nothing was changed. \
                 Pass --accept-data-loss to fail over anyway",
                age(rpo),
                target(dr_config.rpo_target)
            ),
            None if !options.accept_data_loss => bail!(
                "{to} has no restorable time for {}: nothing was changed. Pass --accept-data-loss to fail over anyway",
                ctx.spec.db_identifier()
            ),
            _ => {}
        }
    }
    // 1. Fence the primary, if its region answers.
    let primary = ctx.for_failing_region(&ctx.spec.region, FENCE_LIMIT);
    let fenced = match compute::fence(&primary).await {
        Ok(true) => "yes: its group was scaled to zero".to_string(),
        Ok(false) => "nothing to fence: the primary has no group".to_string(),
        Err(e) => {
            let why = format!("{e:#}");
            let first = why.lines().next().unwrap_or_default().to_string();
            ctx.progress.line(format!(
                "the primary region {} does not answer: not fenced ({first})",
                ctx.spec.region
            ));
            format!("no: {} did not answer ({first})", ctx.spec.region)
        }
    };
    let fenced_at = Instant::now();
    // 2-4. The network, ELB, group and the restored database in the DR region.
    let restoring = source.clone().unwrap_or(Source::Empty);
    let staged = stack::stage(&dr, binary, &restoring).await?;
    let mut phases = vec![
        Phase {
            name: "fence".into(),
            seconds: fenced_at.duration_since(started).as_secs_f64(),
        },
        Phase {
            name: "network".into(),
            seconds: staged.network_ready.duration_since(fenced_at).as_secs_f64(),
        },
        Phase {
            name: "restore".into(),
            seconds: staged
                .database_ready
                .duration_since(staged.database_started)
                .as_secs_f64(),
        },
    ];
    let mut notes = Vec::new();
    // The data's age, read before the new nodes write heartbeats.
    let restore_point = match &source {
        Some(_) => match read_database(&dr, &binary.path, &staged.inputs.db).await {
            Ok(f) if f.bootstrapped() => f.newest_data_at(),
            Ok(_) => bail!(
                "the restored database {} in {to} holds no gateway data (not bootstrapped): the backup is empty; \
                 the DR stack is left as it is for inspection",
                dr.spec.db_identifier()
            ),
            Err(e) => {
                notes.push(format!("the restored data was not read from here: {e:#}"));
                restore_point_hint
            }
        },
        None => None,
    };
    let database_ready = staged.database_ready;
    let elb = staged.balancer.name.clone();
    // 4-5. The nodes, and DNS switched to the DR ELB.
    let outputs = stack::finish(&dr, binary, staged).await?;
    wait_in_service(&dr, &elb).await?;
    let in_service = Instant::now();
    phases.push(Phase {
        name: "nodes".into(),
        seconds: in_service.duration_since(database_ready).as_secs_f64(),
    });
    let host = outputs
        .domain
        .clone()
        .unwrap_or_else(|| outputs.elb_dns_name.clone());
    let first = first_request(&dr, &options.resolver, &host, &options.probe_path).await;
    let served = Instant::now();
    phases.push(Phase {
        name: "dns + first request".into(),
        seconds: served.duration_since(in_service).as_secs_f64(),
    });
    let first = match first {
        Ok(f) => Some(f),
        Err(e) => {
            notes.push(format!("no request was served by {host} yet: {e:#}"));
            None
        }
    };
    // Where the stack lives now: in the DR region for sure, at home if it answers.
    let previous = state::read(&dr).await?;
    let changed = source.is_some() || previous.as_ref().is_none_or(|a| a.region != to);
    if changed {
        let active = state::Active {
            region: to.clone(),
            since: started_at,
            operation: "failover".into(),
            from: ctx.spec.region.clone(),
        };
        state::write(&dr, &active).await?;
        if let Err(e) = state::write(&primary, &active).await {
            notes.push(format!(
                "the record in {} was not updated: {}",
                ctx.spec.region,
                first_line(&e)
            ));
        }
    }
    Ok(Report {
        stack: ctx.spec.stack.clone(),
        operation: "failover".into(),
        from: ctx.spec.region.clone(),
        to,
        changed,
        fenced,
        source: source.as_ref().map(Source::describe),
        restore_point: restore_point.map(replication::rfc3339),
        rto_seconds: first
            .is_some()
            .then(|| served.duration_since(started).as_secs_f64()),
        rto_target_seconds: dr_config.rto_target.as_secs(),
        phases,
        rpo_seconds: source.as_ref().and(restore_point).map(|p| started_at - p),
        rpo_target_seconds: dr_config.rpo_target.as_secs(),
        elb_dns_name: outputs.elb_dns_name,
        domain: outputs.domain,
        first_request: first,
        notes,
    })
}

fn first_line(e: &anyhow::Error) -> String {
    format!("{e:#}")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

pub struct FailbackOptions {
    pub keep_standby: bool,
    pub resolver: Resolver,
    pub probe_path: String,
}

/// Brings the stack home once the primary region answers again.
pub async fn failback(ctx: &Ctx, binary: &Binary, options: &FailbackOptions) -> Result<Report> {
    let dr_config = ctx
        .spec
        .config
        .dr
        .clone()
        .context("no DR region: set [dr] region in stack.toml or pass --dr-region")?;
    let from = dr_config.region.clone();
    let home = ctx.spec.region.clone();
    let dr = Ctx::new(
        &ctx.for_region(&from).sdk,
        standby_spec(&ctx.spec, &from),
        ctx.progress.clone(),
    );
    let started = Instant::now();
    let started_at = now();
    ctx.sts.get_caller_identity().send().await.aws(format!(
        "check that {home} answers again (sts get-caller-identity)"
    ))?;
    let active = state::newest(&[ctx, &dr]).await;
    let dr_db_id = dr.spec.db_identifier();
    let dr_db = instance::describe(&dr, &dr_db_id).await?;
    if active.as_ref().is_none_or(|a| a.region != from) && dr_db.is_none() {
        bail!(
            "stack {} is not failed over to {from}: it is active in {home}; nothing to fail back",
            ctx.spec.stack
        );
    }
    let home_key = kms::discover(ctx)
        .await?
        .filter(|k| k.state == "Enabled")
        .with_context(|| {
            format!(
                "{home} has no enabled KMS key {}: run `provisioner up` first",
                kms::alias(ctx)
            )
        })?;
    let mut notes = Vec::new();
    let mut phases = Vec::new();
    let mut source_text = None;
    // 1. The data home: the DR database stopped with a final snapshot, copied home.
    let mark = Instant::now();
    let snapshot = format!(
        "{}-failback-{}",
        dr_db_id,
        super::super::backup::compact_time(started_at)
    );
    let copied = match &dr_db {
        Some(db) => {
            if db.status == "available" {
                dr.rds
                    .stop_db_instance()
                    .db_instance_identifier(&dr_db_id)
                    .db_snapshot_identifier(&snapshot)
                    .send()
                    .await
                    .aws(format!(
                        "stop db-instance {dr_db_id} in {from} with a final snapshot"
                    ))?;
                ctx.progress.line(format!(
                    "stopped db-instance {dr_db_id} in {from} with snapshot {snapshot}: the nodes serve from memory, Admin API writes wait"
                ));
            }
            let (snap, arn) = wait_snapshot_named(&dr, &dr_db_id).await?;
            let out = match ctx
                .rds
                .copy_db_snapshot()
                .source_db_snapshot_identifier(&arn)
                .target_db_snapshot_identifier(&snap)
                .kms_key_id(&home_key.arn)
                .copy_tags(true)
                .send()
                .await
            {
                Err(e) if e.code() == Some("DBSnapshotAlreadyExists") => None,
                other => Some(other.aws(format!("copy db-snapshot {snap} to {home}"))?),
            };
            drop(out);
            wait_available_snapshot(ctx, &snap).await?;
            ctx.progress
                .line(format!("copied db-snapshot {snap} home to {home}"));
            source_text = Some(format!("snapshot {snap} of {dr_db_id} in {from}"));
            Some(snap)
        }
        None => None,
    };
    phases.push(Phase {
        name: "data home".into(),
        seconds: mark.elapsed().as_secs_f64(),
    });
    // 2. The primary rebuilt: nodes fenced, the old database replaced by the copy.
    let mark = Instant::now();
    if let Some(snap) = &copied {
        compute::fence(ctx).await?;
        let old = instance::describe(ctx, &ctx.spec.db_identifier()).await?;
        if let Some(old) = old {
            let d = database::discover(ctx).await?;
            let mut current = d.clone();
            current.key = None; // the key stays: the copy is encrypted with it
            current.subnet_group = None;
            current.instance = Some(old);
            database::delete(ctx, &current, false, true).await?;
        }
        let outputs = stack::up_from(ctx, binary, &Source::Snapshot(snap.clone())).await?;
        phases.push(Phase {
            name: "primary rebuilt".into(),
            seconds: mark.elapsed().as_secs_f64(),
        });
        let mark = Instant::now();
        wait_in_service(ctx, &ctx.spec.elb_name()).await?;
        let host = outputs
            .domain
            .clone()
            .unwrap_or_else(|| outputs.elb_dns_name.clone());
        let first = first_request(ctx, &options.resolver, &host, &options.probe_path).await;
        phases.push(Phase {
            name: "nodes + dns".into(),
            seconds: mark.elapsed().as_secs_f64(),
        });
        let first = match first {
            Ok(f) => Some(f),
            Err(e) => {
                notes.push(format!("no request was served by {host} yet: {e:#}"));
                None
            }
        };
        // 3-4. Home is active; the DR stack goes, unless kept as a warm standby.
        let active = state::Active {
            region: home.clone(),
            since: started_at,
            operation: "failback".into(),
            from: from.clone(),
        };
        state::write(ctx, &active).await?;
        state::write(&dr, &active).await?;
        if !options.keep_standby {
            stack::down(
                &dr,
                &DownOptions {
                    skip_final_snapshot: true,
                    force: true,
                },
            )
            .await?;
        } else {
            notes.push(format!(
                "the DR stack in {from} is kept (--keep-standby); its database is stopped"
            ));
        }
        return Ok(Report {
            stack: ctx.spec.stack.clone(),
            operation: "failback".into(),
            from,
            to: home,
            changed: true,
            fenced: "the DR database was stopped with a final snapshot".into(),
            source: source_text,
            restore_point: None,
            rto_seconds: first.is_some().then(|| started.elapsed().as_secs_f64()),
            rto_target_seconds: dr_config.rto_target.as_secs(),
            phases,
            rpo_seconds: None,
            rpo_target_seconds: dr_config.rpo_target.as_secs(),
            elb_dns_name: outputs.elb_dns_name,
            domain: outputs.domain,
            first_request: first,
            notes,
        });
    }
    bail!("the DR region {from} has no database {dr_db_id} to bring home")
}

/// The newest snapshot of `db_id` taken by a failback, once available: (id, ARN).
async fn wait_snapshot_named(ctx: &Ctx, db_id: &str) -> Result<(String, String)> {
    let region = ctx.spec.region.clone();
    ctx.progress
        .wait(
            &format!("final snapshot of {db_id} in {region}"),
            SNAPSHOT_LIMIT,
            || async {
                let out = ctx
                    .rds
                    .describe_db_snapshots()
                    .db_instance_identifier(db_id)
                    .send()
                    .await
                    .aws(format!("describe snapshots of {db_id} in {region}"))?;
                let newest = out
                    .db_snapshots()
                    .iter()
                    .filter(|s| {
                        s.db_snapshot_identifier()
                            .is_some_and(|i| i.contains("-failback-"))
                    })
                    .max_by_key(|s| s.snapshot_create_time().map(|t| t.secs()));
                Ok(match newest {
                    Some(s) if s.status() == Some("available") => Poll::Ready((
                        s.db_snapshot_identifier().unwrap_or_default().to_string(),
                        s.db_snapshot_arn().unwrap_or_default().to_string(),
                    )),
                    Some(s) => Poll::Pending(s.status().unwrap_or("creating").to_string()),
                    None => Poll::Pending("no snapshot yet".into()),
                })
            },
        )
        .await
}

async fn wait_available_snapshot(ctx: &Ctx, id: &str) -> Result<()> {
    let region = ctx.spec.region.clone();
    ctx.progress
        .wait(
            &format!("db-snapshot {id} in {region}"),
            SNAPSHOT_LIMIT,
            || async {
                let out = ctx
                    .rds
                    .describe_db_snapshots()
                    .db_snapshot_identifier(id)
                    .send()
                    .await
                    .aws(format!("describe db-snapshot {id} in {region}"))?;
                let status = out
                    .db_snapshots()
                    .first()
                    .and_then(|s| s.status())
                    .unwrap_or("creating")
                    .to_string();
                Ok(match status.as_str() {
                    "available" => Poll::Ready(()),
                    "failed" => bail!("db-snapshot {id} in {region} failed"),
                    _ => Poll::Pending(status),
                })
            },
        )
        .await
}
