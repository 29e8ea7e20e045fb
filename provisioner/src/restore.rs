//! `backup restore`: the stack's database replaced, in its own region, by a snapshot
//! (after a bad migration or a bad Admin API change). The current instance is kept,
//! renamed, for forensics or to go back; a new `<stack>-db` is restored from the
//! snapshot with the stack's placement, its master password set to the secret's (the
//! snapshot carries the password of its day, and a rotation may have changed it since),
//! then `up`'s last wave converges the nodes: where the endpoint changed, they are
//! replaced one at a time; where it did not (AWS keeps the DNS name), they reconnect and
//! load the restored configuration, whose version differs from theirs.
//!
//! Each step is decided from what RDS reports, so a run interrupted anywhere resumes
//! when run again with the same snapshot.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde::Serialize;

use crate::aws::AwsResultExt;
use crate::context::Ctx;
use crate::database::{instance, restore::Source};
use crate::dr::age;
use crate::dr::replication::rfc3339;
use crate::progress::{elapsed_text, Poll};
use crate::secrets;
use crate::stack::{self, Binary};

/// RDS renames within minutes; restores are waited for by `stack::stage` itself.
const RENAME_LIMIT: Duration = Duration::from_secs(1800);

/// A snapshot of the stack's database, as the confirmation and the report show it.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub id: String,
    /// SnapshotCreateTime, RFC 3339.
    pub taken_at: Option<String>,
    pub status: String,
}

/// Finds `id` (identifier or ARN) in the stack's region.
pub async fn find_snapshot(ctx: &Ctx, id: &str) -> Result<Snapshot> {
    let out = ctx
        .rds
        .describe_db_snapshots()
        .db_snapshot_identifier(id)
        .send()
        .await;
    let out = match out {
        Ok(out) => out,
        Err(e) if format!("{e:?}").contains("DBSnapshotNotFound") => bail!(
            "no snapshot {id} in {}: `provisioner backup list` shows the stack's snapshots",
            ctx.spec.region
        ),
        Err(e) => return Err(e).aws(format!("describe db-snapshot {id}")),
    };
    let s = out.db_snapshots().first().with_context(|| {
        format!(
            "no snapshot {id} in {}: `provisioner backup list` shows the stack's snapshots",
            ctx.spec.region
        )
    })?;
    Ok(Snapshot {
        id: s.db_snapshot_identifier().unwrap_or(id).to_string(),
        taken_at: s.snapshot_create_time().map(|t| rfc3339(t.secs())),
        status: s.status().unwrap_or("?").to_string(),
    })
}

/// The name the current instance is kept under.
pub fn kept_name(db_id: &str, epoch: i64) -> String {
    format!(
        "{db_id}-before-restore-{}",
        crate::backup::compact_time(epoch)
    )
}

/// Tag on the instance a restore replaces (and keeps): the snapshot it is being
/// replaced by. Removed once the restore is done, so it marks one in progress.
pub const REPLACED_BY_TAG: &str = "gateway-kit:replaced-by-restore-of";

/// What to do first, from what exists.
#[derive(Debug, PartialEq, Eq)]
pub enum First {
    /// The stack's instance is there: keep it under another name.
    Rename,
    /// The stack's instance is missing: restore it.
    Restore,
    /// An earlier run kept the instance and started the restore: carry on.
    Continue,
}

/// `current`: the stack's instance; `kept`: an instance an earlier run of this restore
/// (same snapshot) renamed and has not finished with.
pub fn first_step(current: bool, kept: bool) -> First {
    match (current, kept) {
        (false, _) => First::Restore,
        (true, true) => First::Continue,
        (true, false) => First::Rename,
    }
}

/// The instance an unfinished restore from `snapshot` kept, if any.
async fn unfinished(ctx: &Ctx, db_id: &str, snapshot: &str) -> Result<Option<String>> {
    let prefix = format!("{db_id}-before-restore-");
    let marker = format!("{REPLACED_BY_TAG}={snapshot}");
    let mut found = None;
    let mut pages = ctx.rds.describe_db_instances().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.aws("describe db-instances")?;
        for db in page.db_instances() {
            if !db
                .db_instance_identifier()
                .is_some_and(|id| id.starts_with(&prefix))
            {
                continue;
            }
            let inst = instance::Instance::from_sdk(db)?;
            if inst.tags.contains(&marker) {
                found = Some(inst.id);
            }
        }
    }
    Ok(found)
}

async fn set_tag(ctx: &Ctx, arn: &str, key: &str, value: Option<&str>) -> Result<()> {
    match value {
        Some(v) => ctx
            .rds
            .add_tags_to_resource()
            .resource_name(arn)
            .tags(aws_sdk_rds::types::Tag::builder().key(key).value(v).build())
            .send()
            .await
            .map(|_| ())
            .aws(format!("tag {arn}")),
        None => ctx
            .rds
            .remove_tags_from_resource()
            .resource_name(arn)
            .tag_keys(key)
            .send()
            .await
            .map(|_| ())
            .aws(format!("untag {arn}")),
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub stack: String,
    pub region: String,
    pub snapshot: Snapshot,
    pub database: String,
    pub endpoint: String,
    /// The instance the restore replaced, kept (None: there was none, or an earlier run
    /// renamed it).
    pub kept: Option<String>,
    pub seconds: f64,
    pub nodes: String,
}

impl Report {
    pub fn render_text(&self) -> String {
        let mut out = format!(
            "Restored the database of stack {} in {} from snapshot {} (taken {}) in {}.\n",
            self.stack,
            self.region,
            self.snapshot.id,
            self.snapshot.taken_at.as_deref().unwrap_or("?"),
            age(self.seconds.round() as i64)
        );
        out.push_str(&format!("  {} at {}\n", self.database, self.endpoint));
        out.push_str(&format!("  nodes: {}\n", self.nodes));
        if let Some(kept) = &self.kept {
            out.push_str(&format!(
                "  the replaced instance is kept as {kept}. Delete it once satisfied:\n\
                 \x20   aws rds modify-db-instance --region {r} --db-instance-identifier {kept} --no-deletion-protection --apply-immediately\n\
                 \x20   aws rds delete-db-instance --region {r} --db-instance-identifier {kept} --skip-final-snapshot\n",
                r = self.region
            ));
        }
        out
    }
}

pub async fn restore(ctx: &Ctx, binary: &Binary, snapshot: &Snapshot) -> Result<Report> {
    let started = Instant::now();
    let db_id = ctx.spec.db_identifier();
    let current = instance::describe(ctx, &db_id).await?;
    let mut kept = unfinished(ctx, &db_id, &snapshot.id).await?;
    match first_step(current.is_some(), kept.is_some()) {
        First::Rename => {
            let current = current.as_ref().expect("first_step saw it");
            let name = kept_name(&db_id, now());
            // Marked first: a run interrupted after the rename finds it.
            set_tag(ctx, &current.arn, REPLACED_BY_TAG, Some(&snapshot.id)).await?;
            rename(ctx, &db_id, &name).await?;
            kept = Some(name);
        }
        First::Restore => ctx.progress.line(format!(
            "rds {db_id}: missing; restoring it from {}",
            snapshot.id
        )),
        First::Continue => ctx.progress.line(format!(
            "rds {db_id}: an earlier run started its restore from {}; carrying on",
            snapshot.id
        )),
    }
    let old_endpoint = match &kept {
        Some(k) => instance::describe(ctx, k).await?.and_then(|i| i.endpoint),
        None => None,
    };
    let staged = stack::stage(ctx, binary, &Source::Snapshot(snapshot.id.clone())).await?;
    set_master_password(ctx, &db_id, &staged.inputs.secrets).await?;
    let endpoint = (staged.inputs.db.address.clone(), staged.inputs.db.port);
    stack::finish(ctx, binary, staged).await?;
    if let Some(k) = &kept {
        if let Some(inst) = instance::describe(ctx, k).await? {
            set_tag(ctx, &inst.arn, REPLACED_BY_TAG, None).await?;
        }
    }
    let nodes = if old_endpoint.as_ref() == Some(&endpoint) {
        "kept: they reconnect to the same endpoint and load the restored configuration"
    } else {
        "replaced one at a time (the endpoint changed), launch before terminate"
    };
    Ok(Report {
        stack: ctx.spec.stack.clone(),
        region: ctx.spec.region.clone(),
        snapshot: snapshot.clone(),
        database: db_id,
        endpoint: format!("{}:{}", endpoint.0, endpoint.1),
        kept,
        seconds: started.elapsed().as_secs_f64(),
        nodes: nodes.to_string(),
    })
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn rename(ctx: &Ctx, from: &str, to: &str) -> Result<()> {
    let started = Instant::now();
    ctx.rds
        .modify_db_instance()
        .db_instance_identifier(from)
        .new_db_instance_identifier(to)
        .apply_immediately(true)
        .send()
        .await
        .aws(format!("rename db-instance {from} to {to}"))?;
    ctx.progress
        .wait(
            &format!("rds {from}: renaming to {to}"),
            RENAME_LIMIT,
            || async {
                let old = instance::describe(ctx, from).await?;
                let new = instance::describe(ctx, to).await?;
                Ok(match (old, new) {
                    (None, Some(n)) if n.status == "available" => Poll::Ready(()),
                    (_, n) => Poll::Pending(n.map_or("renaming".into(), |n| n.status)),
                })
            },
        )
        .await?;
    ctx.progress.line(format!(
        "rds {from}: kept as {to} ({})",
        elapsed_text(started.elapsed())
    ));
    Ok(())
}

/// The snapshot's master password is the one of its day: set the secret's.
async fn set_master_password(ctx: &Ctx, db_id: &str, s: &secrets::Secrets) -> Result<()> {
    let password = secrets::db_password(ctx, s).await?;
    secrets::redact(
        ctx.rds
            .modify_db_instance()
            .db_instance_identifier(db_id)
            .master_user_password(&password.0)
            .apply_immediately(true)
            .send()
            .await
            .aws(format!("set the master password of {db_id}")),
        &password,
    )?;
    ctx.progress
        .line(format!("rds {db_id}: master password set to the secret's"));
    crate::database::wait_available(ctx).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_name_says_when() {
        assert_eq!(
            kept_name("gw-db", 1_764_771_200),
            format!(
                "gw-db-before-restore-{}",
                crate::backup::compact_time(1_764_771_200)
            )
        );
        assert!(kept_name("gw-db", 0).starts_with("gw-db-before-restore-"));
    }

    #[test]
    fn an_interrupted_restore_resumes() {
        // The stack's instance there and no unfinished restore: keep it aside first.
        assert_eq!(first_step(true, false), First::Rename);
        // Killed after the rename: the instance is missing.
        assert_eq!(first_step(false, true), First::Restore);
        // Killed while RDS restores: the new instance is there, the kept one marked.
        assert_eq!(first_step(true, true), First::Continue);
        // Never had one.
        assert_eq!(first_step(false, false), First::Restore);
    }
}
