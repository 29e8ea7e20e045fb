//! A database made from a backup instead of empty: RDS point-in-time restore (from the
//! instance's own automated backups or from their replica in another region) or a
//! snapshot restore, with the stack's placement, Multi-AZ and tags. The data keeps the
//! backup's key (in the DR region: the DR key the backups were replicated or copied
//! with). Settings a restore cannot take (retention) are repaired once it is
//! available, as drift.

use anyhow::Result;
use aws_sdk_rds::types::Tag;
use aws_smithy_types::DateTime;

use super::instance::{Desired, STORAGE_TYPE};
use crate::aws::AwsResultExt;
use crate::context::Ctx;
use crate::spec::{
    DB_COPY_TAGS_TO_SNAPSHOT, DB_DELETION_PROTECTION, DB_MULTI_AZ, DB_PUBLICLY_ACCESSIBLE,
};

/// Where a new instance's data comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Empty: the stack's first `up`.
    Empty,
    /// Point-in-time restore from automated backups: `backups_arn` names a replicated
    /// backup (DBInstanceAutomatedBackupsArn); `time` (epoch seconds) or the latest
    /// restorable time.
    PointInTime {
        backups_arn: String,
        time: Option<i64>,
    },
    /// A snapshot in this region (identifier or ARN).
    Snapshot(String),
}

impl Source {
    pub fn describe(&self) -> String {
        match self {
            Source::Empty => "empty".into(),
            Source::PointInTime { time: None, .. } => "the latest restorable time".into(),
            Source::PointInTime { time: Some(t), .. } => {
                format!("point in time {}", crate::dr::replication::rfc3339(*t))
            }
            Source::Snapshot(id) => format!("snapshot {id}"),
        }
    }
}

/// Starts the restore of `want` from `source` (not Empty); RDS makes it available later.
pub async fn start(ctx: &Ctx, want: &Desired, source: &Source) -> Result<()> {
    let c = &ctx.spec.config;
    let tags: Vec<Tag> = ctx
        .tags(&want.id)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    match source {
        Source::Empty => unreachable!("an empty database is created, not restored"),
        Source::PointInTime { backups_arn, time } => {
            let mut r = ctx
                .rds
                .restore_db_instance_to_point_in_time()
                .source_db_instance_automated_backups_arn(backups_arn)
                .target_db_instance_identifier(&want.id)
                .db_instance_class(&c.db_instance_class)
                .storage_type(STORAGE_TYPE)
                .multi_az(DB_MULTI_AZ)
                .publicly_accessible(DB_PUBLICLY_ACCESSIBLE)
                .deletion_protection(DB_DELETION_PROTECTION)
                .copy_tags_to_snapshot(DB_COPY_TAGS_TO_SNAPSHOT)
                .db_subnet_group_name(&want.subnet_group)
                .set_vpc_security_group_ids(Some(want.security_groups.clone()))
                .set_tags(Some(tags));
            r = match time {
                Some(t) => r.restore_time(DateTime::from_secs(*t)),
                None => r.use_latest_restorable_time(true),
            };
            r.send().await.aws(format!(
                "restore db-instance {} from {} ({})",
                want.id,
                backups_arn,
                source.describe()
            ))?;
        }
        Source::Snapshot(id) => {
            ctx.rds
                .restore_db_instance_from_db_snapshot()
                .db_snapshot_identifier(id)
                .db_instance_identifier(&want.id)
                .db_instance_class(&c.db_instance_class)
                .storage_type(STORAGE_TYPE)
                .multi_az(DB_MULTI_AZ)
                .publicly_accessible(DB_PUBLICLY_ACCESSIBLE)
                .deletion_protection(DB_DELETION_PROTECTION)
                .copy_tags_to_snapshot(DB_COPY_TAGS_TO_SNAPSHOT)
                .db_subnet_group_name(&want.subnet_group)
                .set_vpc_security_group_ids(Some(want.security_groups.clone()))
                .set_tags(Some(tags))
                .send()
                .await
                .aws(format!(
                    "restore db-instance {} from snapshot {id}",
                    want.id
                ))?;
        }
    }
    ctx.progress.line(format!(
        "restoring db-instance {} from {} (RDS takes 10-30 minutes on AWS)",
        want.id,
        source.describe()
    ));
    Ok(())
}
