//! `provisioner dr failback`: the way home once the primary region answers again. The
//! DR database is stopped with a final snapshot (the nodes keep serving from memory;
//! Admin API writes wait), the snapshot is copied home, the primary's database is
//! replaced by it (the old one is deleted after a final snapshot of its own), the
//! primary's nodes come back on the new endpoint, DNS switches back, and the DR stack
//! is removed.

use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::failover::Report;
use super::steps::{self, standby_spec, wait_in_service, Phase};
use super::{now, replication, state};
use crate::aws::AwsResultExt;
use crate::backup;
use crate::compute;
use crate::context::Ctx;
use crate::database::{self, instance, kms, restore::Source};
use crate::probe::Resolver;
use crate::progress::Poll;
use crate::stack::{self, Binary, DownOptions};

pub struct Options {
    pub keep_standby: bool,
    pub resolver: Resolver,
    pub probe_path: String,
}

/// Brings the stack home once the primary region answers again.
pub async fn failback(ctx: &Ctx, binary: &Binary, options: &Options) -> Result<Report> {
    let dr_config = ctx
        .spec
        .config
        .dr
        .clone()
        .context("no DR region: set [dr] region in stack.toml or pass --dr-region")?;
    let from = dr_config.region.clone();
    let home = ctx.spec.region.clone();
    let dr = ctx.for_spec(standby_spec(&ctx.spec, &from));
    let started = Instant::now();
    let started_at = now();
    ctx.sts.get_caller_identity().send().await.aws(format!(
        "check that {home} answers again (sts get-caller-identity)"
    ))?;
    let active = state::newest(&[ctx, &dr]).await;
    let dr_db_id = dr.spec.db_identifier();
    let Some(dr_db) = instance::describe(&dr, &dr_db_id).await? else {
        match active {
            Some(a) if a.region == from => bail!(
                "stack {} is active in {from}, but {from} has no database {dr_db_id} to bring home",
                ctx.spec.stack
            ),
            _ => bail!(
                "stack {} is not failed over to {from}: it is active in {home}; nothing to fail back",
                ctx.spec.stack
            ),
        }
    };
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
    // 1. The data home: the DR database stopped with a final snapshot, copied home.
    let mark = Instant::now();
    if dr_db.status == "available" {
        let snapshot = format!("{dr_db_id}-failback-{}", backup::compact_time(started_at));
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
    // A re-run finds the snapshot an earlier run took.
    let snap = wait_snapshot_named(&dr, &dr_db_id).await?;
    match ctx
        .rds
        .copy_db_snapshot()
        .source_db_snapshot_identifier(&snap.arn)
        .target_db_snapshot_identifier(&snap.id)
        .kms_key_id(&home_key.arn)
        .copy_tags(true)
        .send()
        .await
    {
        Err(e) if e.code() == Some("DBSnapshotAlreadyExists") => {}
        other => {
            other.aws(format!("copy db-snapshot {} to {home}", snap.id))?;
        }
    }
    backup::wait_snapshot(ctx, &snap.id).await?;
    ctx.progress
        .line(format!("copied db-snapshot {} home to {home}", snap.id));
    phases.push(Phase {
        name: "data home".into(),
        seconds: mark.elapsed().as_secs_f64(),
    });
    // 2. The primary rebuilt: nodes fenced, the old database replaced by the copy (an
    // instance made after the snapshot is the copy, restored by an earlier run: kept).
    let mark = Instant::now();
    compute::fence(ctx).await?;
    if let Some(old) = instance::describe(ctx, &ctx.spec.db_identifier()).await? {
        if old
            .created
            .is_none_or(|c| snap.created.is_none_or(|s| c < s))
        {
            let mut current = database::discover(ctx).await?;
            current.key = None; // the key stays: the copy is encrypted with it
            current.subnet_group = None;
            current.instance = Some(old);
            database::delete(ctx, &current, false, true).await?;
        }
    }
    let outputs = stack::up_from(ctx, binary, &Source::Snapshot(snap.id.clone())).await?;
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
    let first = steps::serve_canary(ctx, &options.resolver, &host, &options.probe_path).await;
    phases.push(Phase {
        name: "nodes + dns".into(),
        seconds: mark.elapsed().as_secs_f64(),
    });
    let first = first.served_or_note(&mut notes);
    // Until the first request is served at home; removing the DR stack comes after.
    let rto = first.is_some().then(|| started.elapsed().as_secs_f64());
    // 3-4. Home is active; the DR stack goes, unless kept as a warm standby.
    let active = state::Active {
        region: home.clone(),
        since: started_at,
        operation: "failback".into(),
        from: from.clone(),
    };
    state::write(ctx, &active).await?;
    state::write(&dr, &active).await?;
    if options.keep_standby {
        notes.push(format!(
            "the DR stack in {from} is kept (--keep-standby); its database is stopped"
        ));
    } else {
        let options = DownOptions {
            skip_final_snapshot: true,
            force: true,
        };
        stack::down(&dr, &options).await?;
    }
    Ok(Report {
        stack: ctx.spec.stack.clone(),
        operation: "failback".into(),
        from: from.clone(),
        to: home,
        changed: true,
        fenced: "the DR database was stopped with a final snapshot".into(),
        source: Some(format!("snapshot {} of {dr_db_id} in {from}", snap.id)),
        restore_point: snap.created.map(replication::rfc3339),
        rto_seconds: rto,
        rto_target_seconds: dr_config.rto_target.as_secs(),
        phases,
        rpo_seconds: None,
        rpo_target_seconds: dr_config.rpo_target.as_secs(),
        elb_dns_name: outputs.elb_dns_name,
        domain: outputs.domain,
        first_request: first,
        notes,
    })
}

/// A snapshot found by name.
struct Found {
    id: String,
    arn: String,
    created: Option<i64>,
}

/// The newest snapshot of `db_id` taken by a failback, once available.
async fn wait_snapshot_named(ctx: &Ctx, db_id: &str) -> Result<Found> {
    let region = ctx.spec.region.clone();
    ctx.progress
        .wait(
            &format!("final snapshot of {db_id} in {region}"),
            backup::WAIT_LIMIT,
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
                    Some(s) if s.status() == Some("available") => Poll::Ready(Found {
                        id: s.db_snapshot_identifier().unwrap_or_default().to_string(),
                        arn: s.db_snapshot_arn().unwrap_or_default().to_string(),
                        created: s.snapshot_create_time().map(|t| t.secs()),
                    }),
                    Some(s) => Poll::Pending(s.status().unwrap_or("creating").to_string()),
                    None => Poll::Pending("no snapshot yet".into()),
                })
            },
        )
        .await
}
