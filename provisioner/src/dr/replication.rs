//! Continuous protection: the primary's RDS automated backups (snapshots and transaction
//! logs) replicated to the DR region, encrypted with the DR key, so that a
//! point-in-time restore there loses minutes, not a day.

use anyhow::{bail, Result};
use aws_sdk_rds::types::DbInstanceAutomatedBackup;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::aws::AwsResultExt;
use crate::context::Ctx;
use crate::database::instance::Instance;
use crate::plan::{Change, Diff, Status};
use crate::spec::partition;

/// A replicated automated backup in the DR region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// DBInstanceAutomatedBackupsArn: what a restore in the DR region starts from.
    pub arn: String,
    /// `replicating`; `retained` once replication stopped.
    pub status: String,
    pub kms_key_id: Option<String>,
    pub retention: i32,
    /// The restore window, epoch seconds.
    pub earliest: Option<i64>,
    pub latest: Option<i64>,
}

impl Replica {
    pub fn from_sdk(b: &DbInstanceAutomatedBackup) -> Option<Replica> {
        let window = b.restore_window();
        Some(Replica {
            arn: b.db_instance_automated_backups_arn()?.to_string(),
            status: b.status().unwrap_or_default().to_string(),
            kms_key_id: b.kms_key_id().map(str::to_string),
            retention: b.backup_retention_period().unwrap_or_default(),
            earliest: window.and_then(|w| w.earliest_time()).map(|t| t.secs()),
            latest: window.and_then(|w| w.latest_time()).map(|t| t.secs()),
        })
    }

    pub fn is_replicating(&self) -> bool {
        self.status == "replicating"
    }
}

pub fn resource(dr: &Ctx) -> String {
    format!(
        "backup-replication {} to {}",
        dr.spec.db_identifier(),
        dr.spec.region
    )
}

/// The automated backups held in `ctx`'s region for the instance with `resource_id`.
pub async fn describe(ctx: &Ctx, resource_id: &str) -> Result<Vec<DbInstanceAutomatedBackup>> {
    let out = match ctx
        .rds
        .describe_db_instance_automated_backups()
        .dbi_resource_id(resource_id)
        .send()
        .await
    {
        Err(e) if e.code() == Some("DBInstanceAutomatedBackupNotFound") => return Ok(Vec::new()),
        other => other.aws(format!(
            "describe automated backups of {resource_id} in {}",
            ctx.spec.region
        ))?,
    };
    Ok(out.db_instance_automated_backups().to_vec())
}

/// The replica of `source`'s automated backups in the DR region, if any.
pub async fn discover(dr: &Ctx, source: &Instance) -> Result<Option<Replica>> {
    if source.resource_id.is_empty() {
        return Ok(None);
    }
    Ok(describe(dr, &source.resource_id)
        .await?
        .iter()
        .filter(|b| {
            b.db_instance_arn() == Some(source.arn.as_str()) || b.db_instance_arn().is_none()
        })
        .find_map(Replica::from_sdk))
}

pub fn plan(dr: &Ctx, replica: Option<&Replica>, key_arn: Option<&str>) -> Change {
    let Some(r) = replica else {
        return Change::create(resource(dr));
    };
    let mut diff = Diff::default();
    diff.field("status", Some(r.status.as_str()), Some("replicating"));
    if let Some(key) = key_arn {
        diff.field("kms_key", r.kms_key_id.as_deref(), Some(key));
    }
    diff.field(
        "retention_days",
        Some(r.retention),
        Some(dr.spec.config.backup_retention_days),
    );
    diff.into_change(resource(dr))
}

/// What must hold before AWS is asked to replicate, with the fix in each message. The DR
/// key is not checked here: `up` converges it (enabled) first.
pub fn preflight(dr: &Ctx, source: &Instance) -> Result<()> {
    let (from, to) = (source_region(source), dr.spec.region.as_str());
    if from == to {
        bail!("dr.region is {to}, the stack's own region: name another region for the copies");
    }
    if partition(from) != partition(to) {
        bail!(
            "RDS cannot replicate backups from {from} to {to}: they are in different partitions \
             ({} and {}); pick a DR region in {}",
            partition(from),
            partition(to),
            partition(from)
        );
    }
    if source.retention < 1 {
        bail!(
            "db-instance {} keeps no automated backups (retention {} days): set backup_retention_days \
             to 1 or more and run `up`",
            source.id,
            source.retention
        );
    }
    Ok(())
}

/// The region of an instance, from its ARN.
fn source_region(source: &Instance) -> &str {
    source.arn.split(':').nth(3).unwrap_or_default()
}

/// Starts replication, or restarts it when it stopped or uses another key.
pub async fn converge(
    dr: &Ctx,
    source: &Instance,
    key_arn: &str,
    replica: Option<&Replica>,
) -> Result<()> {
    let wanted = |r: &Replica| {
        r.is_replicating()
            && r.kms_key_id.as_deref() == Some(key_arn)
            && r.retention == dr.spec.config.backup_retention_days
    };
    if replica.is_some_and(wanted) {
        return Ok(());
    }
    preflight(dr, source)?;
    if replica.is_some_and(Replica::is_replicating) {
        stop(dr, &source.arn).await?;
    }
    dr.rds
        .start_db_instance_automated_backups_replication()
        .source_db_instance_arn(&source.arn)
        .kms_key_id(key_arn)
        .backup_retention_period(dr.spec.config.backup_retention_days)
        .send()
        .await
        .aws(format!(
            "start replicating the automated backups of {} to {}",
            source.id, dr.spec.region
        ))?;
    dr.progress.line(format!(
        "started replicating the automated backups of {} to {}",
        source.id, dr.spec.region
    ));
    Ok(())
}

pub async fn stop(dr: &Ctx, source_arn: &str) -> Result<()> {
    match dr
        .rds
        .stop_db_instance_automated_backups_replication()
        .source_db_instance_arn(source_arn)
        .send()
        .await
    {
        Err(e)
            if matches!(
                e.code(),
                Some("DBInstanceNotFound" | "InvalidDBInstanceState")
            ) => {}
        other => {
            other.aws(format!(
                "stop replicating the automated backups of {source_arn} to {}",
                dr.spec.region
            ))?;
            dr.progress.line(format!(
                "stopped replicating the automated backups of {} to {}",
                dr.spec.db_identifier(),
                dr.spec.region
            ));
        }
    }
    Ok(())
}

pub fn status(dr: &Ctx, replica: &Replica, now: i64) -> Status {
    let mut s = Status::new(
        resource(dr),
        Some(replica.arn.clone()),
        replica.status.clone(),
    )
    .detail("retention_days", replica.retention.to_string());
    if let (Some(earliest), Some(latest)) = (replica.earliest, replica.latest) {
        s = s
            .detail(
                "restore_window",
                format!("{} .. {}", rfc3339(earliest), rfc3339(latest)),
            )
            .detail("rpo_now", crate::dr::age(now - latest));
    }
    if let Some(key) = &replica.kms_key_id {
        s = s.detail("kms_key", key);
    }
    s
}

/// An epoch time as RFC 3339 (UTC).
pub fn rfc3339(epoch: i64) -> String {
    aws_smithy_types::DateTime::from_secs(epoch)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_else(|_| epoch.to_string())
}

/// The replica of the stack's primary database held in `dr`'s region, found from the
/// DR side alone (it must work while the primary region does not answer): the
/// replicated backups of `<stack>-db` whose source is in `primary_region`.
pub async fn find_from_dr(dr: &Ctx, primary_region: &str) -> Result<Option<Replica>> {
    let id = dr.spec.db_identifier();
    let out = match dr
        .rds
        .describe_db_instance_automated_backups()
        .db_instance_identifier(&id)
        .send()
        .await
    {
        Err(e) if e.code() == Some("DBInstanceAutomatedBackupNotFound") => return Ok(None),
        other => other.aws(format!(
            "describe the automated backups of {id} in {}",
            dr.spec.region
        ))?,
    };
    let from_primary = |b: &&DbInstanceAutomatedBackup| {
        b.region() == Some(primary_region)
            || b.db_instance_arn()
                .is_some_and(|a| a.split(':').nth(3) == Some(primary_region))
    };
    let mut found: Vec<Replica> = out
        .db_instance_automated_backups()
        .iter()
        .filter(from_primary)
        .filter_map(Replica::from_sdk)
        .collect();
    // Replicating first, then the newest restorable time.
    found.sort_by_key(|r| (!r.is_replicating(), std::cmp::Reverse(r.latest)));
    Ok(found.into_iter().next())
}
