//! The RDS instance: what AWS has, what the spec wants, and what differs.

use anyhow::{Context as _, Result};
use aws_sdk_rds::types::DbInstance;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::subnet_group::{our_tags, tag_list, tag_strings};
use crate::aws::AwsResultExt;
use crate::context::Ctx;
use crate::plan::{Diff, FieldDiff};
use crate::spec::{
    DB_COPY_TAGS_TO_SNAPSHOT, DB_DELETION_PROTECTION, DB_ENGINE, DB_MULTI_AZ,
    DB_PUBLICLY_ACCESSIBLE, DB_STORAGE_ENCRYPTED,
};

pub const STORAGE_TYPE: &str = "gp3";

/// The instance as found. Settings waiting in PendingModifiedValues count as applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub arn: String,
    /// DbiResourceId: what automated backups and their replicas are keyed by.
    pub resource_id: String,
    /// InstanceCreateTime, epoch seconds.
    pub created: Option<i64>,
    pub status: String,
    pub engine: String,
    pub engine_version: String,
    pub class: String,
    pub storage: i32,
    pub storage_type: String,
    pub multi_az: bool,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    pub retention: i32,
    pub copy_tags: bool,
    pub deletion_protection: bool,
    pub public: bool,
    pub security_groups: Vec<String>,
    pub subnet_group: Option<String>,
    pub endpoint: Option<(String, i32)>,
    /// `key=value`.
    pub tags: Vec<String>,
}

impl Instance {
    pub fn from_sdk(db: &DbInstance) -> Result<Instance> {
        let id = db
            .db_instance_identifier()
            .context("a DB instance without an identifier")?;
        let what = |f: &str| format!("db-instance {id}: no {f} in the answer");
        let pending = db.pending_modified_values();
        Ok(Instance {
            id: id.to_string(),
            arn: db
                .db_instance_arn()
                .with_context(|| what("ARN"))?
                .to_string(),
            resource_id: db.dbi_resource_id().unwrap_or_default().to_string(),
            created: db.instance_create_time().map(|t| t.secs()),
            status: db
                .db_instance_status()
                .with_context(|| what("status"))?
                .to_string(),
            engine: db.engine().with_context(|| what("engine"))?.to_string(),
            engine_version: pending
                .and_then(|p| p.engine_version())
                .or(db.engine_version())
                .unwrap_or_default()
                .to_string(),
            class: pending
                .and_then(|p| p.db_instance_class())
                .or(db.db_instance_class())
                .unwrap_or_default()
                .to_string(),
            storage: pending
                .and_then(|p| p.allocated_storage())
                .or(db.allocated_storage())
                .unwrap_or_default(),
            storage_type: pending
                .and_then(|p| p.storage_type())
                .or(db.storage_type())
                .unwrap_or_default()
                .to_string(),
            multi_az: pending
                .and_then(|p| p.multi_az())
                .or(db.multi_az())
                .unwrap_or_default(),
            encrypted: db.storage_encrypted().unwrap_or_default(),
            kms_key_id: db.kms_key_id().map(str::to_string),
            retention: pending
                .and_then(|p| p.backup_retention_period())
                .or(db.backup_retention_period())
                .unwrap_or_default(),
            copy_tags: db.copy_tags_to_snapshot().unwrap_or_default(),
            deletion_protection: db.deletion_protection().unwrap_or_default(),
            public: db.publicly_accessible().unwrap_or_default(),
            security_groups: db
                .vpc_security_groups()
                .iter()
                .filter(|m| m.status() != Some("removing"))
                .filter_map(|m| m.vpc_security_group_id())
                .map(str::to_string)
                .collect(),
            subnet_group: db
                .db_subnet_group()
                .and_then(|g| g.db_subnet_group_name())
                .map(str::to_string),
            endpoint: db
                .endpoint()
                .and_then(|e| Some((e.address()?.to_string(), e.port()?))),
            tags: tag_list(db.tag_list()),
        })
    }
}

/// The instance `id`, or None when it does not exist.
pub async fn describe(ctx: &Ctx, id: &str) -> Result<Option<Instance>> {
    let out = match ctx
        .rds
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
    {
        Err(e) if e.code() == Some("DBInstanceNotFound") => return Ok(None),
        other => other.aws(format!("describe db-instance {id}"))?,
    };
    out.db_instances()
        .first()
        .map(Instance::from_sdk)
        .transpose()
}

/// What the spec wants. Unknown inputs (`None`, empty) are not compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub id: String,
    pub engine_version: String,
    pub class: String,
    pub storage: i32,
    pub kms_key_arn: Option<String>,
    pub retention: i32,
    pub security_groups: Vec<String>,
    pub subnet_group: String,
    pub tags: Vec<String>,
}

impl Desired {
    pub fn new(ctx: &Ctx, kms_key_arn: Option<String>, security_groups: Vec<String>) -> Desired {
        let c = &ctx.spec.config;
        let id = ctx.spec.db_identifier();
        Desired {
            tags: tag_strings(ctx, &id),
            id,
            engine_version: c.db_engine_version.clone(),
            class: c.db_instance_class.clone(),
            storage: c.db_allocated_storage,
            kms_key_arn,
            retention: c.backup_retention_days,
            security_groups,
            subnet_group: super::subnet_group::name(ctx),
        }
    }
}

/// One differing field; `blocked` says what to do when RDS cannot change it in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub diff: FieldDiff,
    pub blocked: Option<String>,
}

/// Fields ModifyDBInstance repairs.
pub const MODIFIABLE: [&str; 9] = [
    "db_instance_class",
    "allocated_storage",
    "storage_type",
    "multi_az",
    "backup_retention_period",
    "copy_tags_to_snapshot",
    "deletion_protection",
    "publicly_accessible",
    "vpc_security_groups",
];

pub fn compare(cur: &Instance, want: &Desired) -> Vec<Field> {
    let mut out = Vec::new();
    let mut push = |diff: Diff, blocked: Option<String>| {
        out.extend(diff.0.into_iter().map(|d| Field {
            diff: d,
            blocked: blocked.clone(),
        }));
    };
    let one = |field: &str, current: String, desired: String| {
        let mut d = Diff::default();
        d.field(field, Some(current), Some(desired));
        d
    };
    if cur.status == "deleting" {
        push(
            one("status", cur.status.clone(), "available".into()),
            Some("it is being deleted: wait until it is gone, then run again".into()),
        );
    }
    let replace = |what: &str| {
        format!(
            "RDS cannot change {what} in place: take a snapshot, restore it as a new instance \
             with the wanted settings (for encryption: copy the snapshot with --kms-key-id first), \
             then delete {} and rename the new one to it",
            want.id
        )
    };
    push(
        one("engine", cur.engine.clone(), DB_ENGINE.into()),
        Some(replace("the engine")),
    );
    let version_ok = cur.engine_version == want.engine_version
        || cur
            .engine_version
            .starts_with(&format!("{}.", want.engine_version));
    if !version_ok {
        let advice = format!(
            "upgrade it yourself after a snapshot: aws rds modify-db-instance --db-instance-identifier {} \
             --engine-version {} --allow-major-version-upgrade --apply-immediately",
            want.id, want.engine_version
        );
        push(
            one(
                "engine_version",
                cur.engine_version.clone(),
                want.engine_version.clone(),
            ),
            Some(advice),
        );
    }
    push(
        one(
            "storage_encrypted",
            cur.encrypted.to_string(),
            DB_STORAGE_ENCRYPTED.to_string(),
        ),
        Some(replace("encryption")),
    );
    if let (true, Some(key)) = (cur.encrypted, &want.kms_key_arn) {
        let current = cur.kms_key_id.clone().unwrap_or_else(|| "(none)".into());
        push(
            one("kms_key", current, key.clone()),
            Some(replace("the KMS key")),
        );
    }
    if let Some(group) = &cur.subnet_group {
        push(
            one("db_subnet_group", group.clone(), want.subnet_group.clone()),
            Some(replace("the subnet group")),
        );
    }
    let shrink = cur.storage > want.storage;
    let storage_advice = shrink.then(|| {
        format!(
            "RDS cannot shrink storage: set db_allocated_storage to at least {} GiB",
            cur.storage
        )
    });
    push(
        one(
            "allocated_storage",
            cur.storage.to_string(),
            want.storage.to_string(),
        ),
        storage_advice,
    );
    let mut d = Diff::default();
    d.field("db_instance_class", Some(&cur.class), Some(&want.class))
        .field(
            "storage_type",
            Some(cur.storage_type.as_str()),
            Some(STORAGE_TYPE),
        )
        .field("multi_az", Some(cur.multi_az), Some(DB_MULTI_AZ))
        .field(
            "backup_retention_period",
            Some(cur.retention),
            Some(want.retention),
        )
        .field(
            "copy_tags_to_snapshot",
            Some(cur.copy_tags),
            Some(DB_COPY_TAGS_TO_SNAPSHOT),
        )
        .field(
            "deletion_protection",
            Some(cur.deletion_protection),
            Some(DB_DELETION_PROTECTION),
        )
        .field(
            "publicly_accessible",
            Some(cur.public),
            Some(DB_PUBLICLY_ACCESSIBLE),
        );
    if !want.security_groups.is_empty() {
        d.set(
            "vpc_security_groups",
            &cur.security_groups,
            &want.security_groups,
        );
    }
    d.set("tags", &our_tags(&cur.tags, &want.tags), &want.tags);
    push(d, None);
    out
}

/// ModifyDBInstance (applied immediately) for the modifiable fields among `fields`.
pub async fn modify(ctx: &Ctx, want: &Desired, fields: &[&str]) -> Result<()> {
    let has = |f: &str| fields.contains(&f);
    let mut m = ctx
        .rds
        .modify_db_instance()
        .db_instance_identifier(&want.id)
        .apply_immediately(true);
    if has("db_instance_class") {
        m = m.db_instance_class(&want.class);
    }
    if has("allocated_storage") {
        m = m.allocated_storage(want.storage);
    }
    if has("storage_type") {
        m = m.storage_type(STORAGE_TYPE);
    }
    if has("multi_az") {
        m = m.multi_az(true);
    }
    if has("backup_retention_period") {
        m = m.backup_retention_period(want.retention);
    }
    if has("copy_tags_to_snapshot") {
        m = m.copy_tags_to_snapshot(true);
    }
    if has("deletion_protection") {
        m = m.deletion_protection(true);
    }
    if has("publicly_accessible") {
        m = m.publicly_accessible(false);
    }
    if has("vpc_security_groups") {
        m = m.set_vpc_security_group_ids(Some(want.security_groups.clone()));
    }
    m.send()
        .await
        .aws(format!("update db-instance {}", want.id))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want() -> Desired {
        Desired {
            id: "gw-db".into(),
            engine_version: "15".into(),
            class: "db.m5.large".into(),
            storage: 100,
            kms_key_arn: Some("arn:key".into()),
            retention: 7,
            security_groups: vec!["sg-1".into()],
            subnet_group: "gw-db".into(),
            tags: vec!["Name=gw-db".into(), "gateway-kit:stack=gw".into()],
        }
    }

    fn as_wanted() -> Instance {
        Instance {
            id: "gw-db".into(),
            status: "available".into(),
            engine: "postgres".into(),
            engine_version: "15.4".into(),
            class: "db.m5.large".into(),
            storage: 100,
            storage_type: "gp3".into(),
            multi_az: true,
            encrypted: true,
            kms_key_id: Some("arn:key".into()),
            retention: 7,
            copy_tags: true,
            deletion_protection: true,
            security_groups: vec!["sg-1".into()],
            subnet_group: Some("gw-db".into()),
            tags: vec![
                "Name=gw-db".into(),
                "gateway-kit:stack=gw".into(),
                "team=x".into(),
            ],
            ..Instance::default()
        }
    }

    fn names(fields: &[Field]) -> Vec<&str> {
        fields.iter().map(|f| f.diff.field.as_str()).collect()
    }

    #[test]
    fn as_wanted_is_unchanged() {
        assert_eq!(compare(&as_wanted(), &want()), vec![]);
    }

    #[test]
    fn drift_is_named_and_modifiable() {
        let mut cur = as_wanted();
        cur.retention = 1;
        cur.multi_az = false;
        cur.security_groups = vec!["sg-2".into()];
        cur.storage = 50;
        let fields = compare(&cur, &want());
        assert_eq!(
            names(&fields),
            [
                "allocated_storage",
                "multi_az",
                "backup_retention_period",
                "vpc_security_groups"
            ]
        );
        assert!(fields
            .iter()
            .all(|f| f.blocked.is_none() && MODIFIABLE.contains(&f.diff.field.as_str())));
        assert_eq!(fields[2].diff.current.as_deref(), Some("1"));
        assert_eq!(fields[2].diff.desired.as_deref(), Some("7"));
    }

    #[test]
    fn what_cannot_change_in_place_is_blocked() {
        let mut cur = as_wanted();
        cur.encrypted = false;
        cur.storage = 200;
        cur.engine_version = "16.1".into();
        let fields = compare(&cur, &want());
        assert_eq!(
            names(&fields),
            ["engine_version", "storage_encrypted", "allocated_storage"]
        );
        assert!(fields.iter().all(|f| f.blocked.is_some()));
        assert!(fields[2]
            .blocked
            .as_deref()
            .unwrap_or_default()
            .contains("200"));
    }
}
