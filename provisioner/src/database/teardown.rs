//! `down` for the database: the instance (final snapshot, deletion protection), the
//! subnet group, and the key unless a snapshot needs it.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::instance::{self, Instance};
use super::{kms, phase, subnet_group, wait_available, Current, Phase, WAIT_LIMIT};
use crate::aws::AwsResultExt;
use crate::context::Ctx;
use crate::progress::Poll;

/// Deletes the instance (a final snapshot `<id>-final-<time>` unless
/// `skip_final_snapshot`; deletion protection is lifted only with `force`, else an
/// error says to pass --force), then the subnet group. The KMS key is kept while a
/// snapshot of the instance needs it (e.g. the final one); otherwise it is scheduled
/// for deletion. Returns the final snapshot's id when one was taken.
pub async fn delete(
    ctx: &Ctx,
    current: &Current,
    skip_final_snapshot: bool,
    force: bool,
) -> Result<Option<String>> {
    let id = ctx.spec.db_identifier();
    let mut snapshot = None;
    if let Some(inst) = &current.instance {
        if inst.status != "deleting" {
            snapshot = delete_instance(ctx, inst, skip_final_snapshot, force).await?;
        }
        ctx.progress
            .wait(&format!("rds {id}"), WAIT_LIMIT, || async {
                Ok(match instance::describe(ctx, &id).await? {
                    None => Poll::Ready(()),
                    Some(inst) => Poll::Pending(inst.status),
                })
            })
            .await?;
        ctx.progress.line(format!("deleted db-instance {id}"));
    }
    if current.subnet_group.is_some() {
        subnet_group::delete(ctx).await?;
    }
    if let Some(key) = &current.key {
        let users = snapshots_using(ctx, &id, &key.arn).await?;
        if users.is_empty() {
            kms::delete(ctx, key).await?;
        } else {
            ctx.progress.line(format!(
                "kept kms-key {} ({}): snapshot {} is encrypted with it; delete the snapshots first to delete the key",
                kms::alias(ctx),
                key.key_id,
                users.join(", ")
            ));
        }
    }
    Ok(snapshot)
}

/// Refuses, before `down` deletes anything, when deletion protection is on and
/// `force` is not given.
pub fn check_deletable(ctx: &Ctx, current: &Current, force: bool) -> Result<()> {
    match &current.instance {
        Some(inst) if inst.deletion_protection && !force => bail!(
            "db-instance {} has deletion protection on; pass --force to lift it and delete the database \
             (a final snapshot is still taken unless --skip-final-snapshot); nothing was deleted",
            ctx.spec.db_identifier()
        ),
        _ => Ok(()),
    }
}

async fn delete_instance(
    ctx: &Ctx,
    inst: &Instance,
    skip_final_snapshot: bool,
    force: bool,
) -> Result<Option<String>> {
    let id = &inst.id;
    if inst.deletion_protection {
        if !force {
            bail!(
                "db-instance {id} has deletion protection on; pass --force to lift it and delete the database \
                 (a final snapshot is still taken unless --skip-final-snapshot)"
            );
        }
        let lift = ctx
            .rds
            .modify_db_instance()
            .db_instance_identifier(id)
            .deletion_protection(false)
            .apply_immediately(true);
        lift.send()
            .await
            .aws(format!("lift deletion protection of db-instance {id}"))?;
        ctx.progress.line(format!(
            "updated db-instance {id} (deletion protection off)"
        ));
    }
    let mut request = ctx.rds.delete_db_instance().db_instance_identifier(id);
    let snapshot = if skip_final_snapshot {
        request = request.skip_final_snapshot(true);
        None
    } else {
        match phase(id, &inst.status) {
            Phase::Ready => {}
            Phase::Failed(_) if inst.status == "stopped" => {}
            Phase::Pending => {
                wait_available(ctx).await?;
            }
            Phase::Failed(why) => {
                bail!("{why}; no final snapshot can be taken: pass --skip-final-snapshot")
            }
        }
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let name = format!("{id}-final-{secs}");
        request = request
            .skip_final_snapshot(false)
            .final_db_snapshot_identifier(&name);
        Some(name)
    };
    match request.send().await {
        Err(e) if e.code() == Some("DBInstanceNotFound") => return Ok(None),
        other => other.aws(format!("delete db-instance {id}"))?,
    };
    match &snapshot {
        Some(s) => ctx
            .progress
            .line(format!("deleting db-instance {id} (final snapshot {s})")),
        None => ctx
            .progress
            .line(format!("deleting db-instance {id} (no final snapshot)")),
    }
    Ok(snapshot)
}

/// Snapshots of instance `id` encrypted with `key_arn`.
pub(crate) async fn snapshots_using(ctx: &Ctx, id: &str, key_arn: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut pages = ctx
        .rds
        .describe_db_snapshots()
        .db_instance_identifier(id)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.aws(format!("describe snapshots of db-instance {id}"))?;
        for snap in page.db_snapshots() {
            if snap.kms_key_id() == Some(key_arn) && snap.status() != Some("deleted") {
                out.push(
                    snap.db_snapshot_identifier()
                        .unwrap_or_default()
                        .to_string(),
                );
            }
        }
    }
    Ok(out)
}
