//! Database: the KMS key for storage encryption, the DB subnet group over the private
//! subnets, and the RDS PostgreSQL instance (MultiAZ, encrypted, backups kept
//! `backup_retention_days`, tags copied to snapshots, deletion protection).

use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use aws_sdk_rds::types::Tag;

use crate::aws::AwsResultExt;
use crate::context::Ctx;
use crate::network::Network;
use crate::plan::{Change, Status};
use crate::progress::Poll;
use crate::secrets::{self, Secrets};
use crate::security::SecurityGroups;
use crate::spec::{
    DB_COPY_TAGS_TO_SNAPSHOT, DB_DELETION_PROTECTION, DB_ENGINE, DB_MULTI_AZ, DB_NAME,
    DB_PUBLICLY_ACCESSIBLE, DB_STORAGE_ENCRYPTED, DB_USER,
};

pub mod instance;
pub mod kms;
pub mod restore;
pub mod subnet_group;
mod teardown;

use instance::{Desired, Instance, MODIFIABLE, STORAGE_TYPE};
use kms::Key;
use subnet_group::SubnetGroup;
pub(crate) use teardown::snapshots_using;
pub use teardown::{check_deletable, delete};

/// How long `wait_available` and the deletion wait may take.
const WAIT_LIMIT: Duration = Duration::from_secs(90 * 60);

/// What the nodes need of the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    pub identifier: String,
    pub address: String,
    pub port: i32,
    pub kms_key_arn: String,
}

/// Where the instance goes: the private subnets and the DB security group. Empty means
/// unknown, and then `plan` does not compare them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    pub subnet_ids: Vec<String>,
    pub security_group_ids: Vec<String>,
}

impl Placement {
    pub fn new(net: &Network, groups: &SecurityGroups) -> Placement {
        Placement {
            subnet_ids: net.private.iter().map(|s| s.id.clone()).collect(),
            security_group_ids: vec![groups.db.clone()],
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Current {
    pub key: Option<Key>,
    pub subnet_group: Option<SubnetGroup>,
    pub instance: Option<Instance>,
    /// Set by the orchestrator from what the network and security steps found.
    pub placement: Placement,
}

impl Current {
    /// The database, once the instance is available with an endpoint.
    pub fn database(&self) -> Option<Database> {
        Database::of(self.instance.as_ref()?)
    }
}

impl Database {
    /// The database, once `inst` is available with an endpoint.
    pub fn of(inst: &Instance) -> Option<Database> {
        let (address, port) = inst.endpoint.clone()?;
        (inst.status == "available").then(|| Database {
            identifier: inst.id.clone(),
            address,
            port,
            kms_key_arn: inst.kms_key_id.clone().unwrap_or_default(),
        })
    }
}

fn resource(ctx: &Ctx) -> String {
    format!("db-instance {}", ctx.spec.db_identifier())
}

pub async fn discover(ctx: &Ctx) -> Result<Current> {
    Ok(Current {
        key: kms::discover(ctx).await?,
        subnet_group: subnet_group::discover(ctx).await?,
        instance: instance::describe(ctx, &ctx.spec.db_identifier()).await?,
        placement: Placement::default(),
    })
}

pub fn plan(ctx: &Ctx, current: &Current) -> Vec<Change> {
    let key_arn = current.key.as_ref().map(|k| k.arn.clone());
    let want = Desired::new(ctx, key_arn, current.placement.security_group_ids.clone());
    let instance = match &current.instance {
        None => Change::create(resource(ctx)),
        Some(inst) => Change::compare(
            resource(ctx),
            instance::compare(inst, &want)
                .into_iter()
                .map(|f| f.diff)
                .collect(),
        ),
    };
    vec![
        kms::compare(ctx, current.key.as_ref()),
        subnet_group::compare(
            ctx,
            current.subnet_group.as_ref(),
            &current.placement.subnet_ids,
        ),
        instance,
    ]
}

/// Creates the key, subnet group and instance when missing, or modifies drifted
/// settings, without waiting: RDS is the long pole, so it starts first.
pub async fn start(
    ctx: &Ctx,
    current: &Current,
    net: &Network,
    groups: &SecurityGroups,
    secrets: &Secrets,
    source: &restore::Source,
) -> Result<()> {
    let placement = Placement::new(net, groups);
    let key_arn = kms::converge(ctx, current.key.as_ref()).await?;
    subnet_group::converge(ctx, current.subnet_group.as_ref(), &placement.subnet_ids).await?;
    let want = Desired::new(ctx, Some(key_arn), placement.security_group_ids);
    match (&current.instance, source) {
        (None, restore::Source::Empty) => create(ctx, &want, secrets).await,
        (None, source) => restore::start(ctx, &want, source).await,
        (Some(inst), _) => repair(ctx, inst, &want).await,
    }
}

async fn create(ctx: &Ctx, want: &Desired, secrets: &Secrets) -> Result<()> {
    let c = &ctx.spec.config;
    let password = secrets::db_password(ctx, secrets).await?;
    let mut create = ctx
        .rds
        .create_db_instance()
        .db_instance_identifier(&want.id)
        .engine(DB_ENGINE)
        .engine_version(&c.db_engine_version)
        .db_instance_class(&c.db_instance_class)
        .allocated_storage(c.db_allocated_storage)
        .storage_type(STORAGE_TYPE)
        .master_username(DB_USER)
        .master_user_password(&password.0)
        .db_name(DB_NAME)
        .multi_az(DB_MULTI_AZ)
        .storage_encrypted(DB_STORAGE_ENCRYPTED)
        .set_kms_key_id(want.kms_key_arn.clone())
        .backup_retention_period(c.backup_retention_days)
        .copy_tags_to_snapshot(DB_COPY_TAGS_TO_SNAPSHOT)
        .deletion_protection(DB_DELETION_PROTECTION)
        .publicly_accessible(DB_PUBLICLY_ACCESSIBLE)
        .set_vpc_security_group_ids(Some(want.security_groups.clone()))
        .db_subnet_group_name(&want.subnet_group);
    for (k, v) in ctx.tags(&want.id) {
        create = create.tags(Tag::builder().key(k).value(v).build());
    }
    secrets::redact(
        create
            .send()
            .await
            .aws(format!("create db-instance {}", want.id)),
        &password,
    )?;
    ctx.progress.line(format!(
        "created db-instance {} (RDS takes 10-20 minutes to make it available)",
        want.id
    ));
    Ok(())
}

async fn repair(ctx: &Ctx, inst: &Instance, want: &Desired) -> Result<()> {
    let fields = instance::compare(inst, want);
    let blocked: Vec<String> = fields
        .iter()
        .filter_map(|f| {
            let advice = f.blocked.as_ref()?;
            let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
            Some(format!(
                "  {}: {} -> {}: {advice}",
                f.diff.field,
                show(&f.diff.current),
                show(&f.diff.desired)
            ))
        })
        .collect();
    if !blocked.is_empty() {
        bail!(
            "db-instance {} cannot be brought to the spec in place:\n{}",
            want.id,
            blocked.join("\n")
        );
    }
    let names: Vec<&str> = fields.iter().map(|f| f.diff.field.as_str()).collect();
    let modify: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| MODIFIABLE.contains(n))
        .collect();
    if !modify.is_empty() {
        if inst.status != "available" {
            // RDS modifies only an available instance.
            wait_available(ctx).await?;
        }
        instance::modify(ctx, want, &modify).await?;
    }
    if names.contains(&"tags") {
        subnet_group::add_tags(ctx, &inst.arn, &want.id, &resource(ctx)).await?;
    }
    if !names.is_empty() {
        ctx.progress.line(format!(
            "updated db-instance {} ({})",
            want.id,
            names.join(", ")
        ));
    }
    Ok(())
}

/// What a status means for a wait on `available`.
#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Ready,
    Pending,
    Failed(String),
}

fn phase(id: &str, status: &str) -> Phase {
    match status {
        "available" => Phase::Ready,
        "failed" | "storage-full" | "restore-error" => Phase::Failed(format!(
            "db-instance {id} is {status}; see its events: aws rds describe-events --source-type db-instance --source-identifier {id}"
        )),
        s if s.starts_with("incompatible-") || s.starts_with("inaccessible-encryption-credentials") => {
            Phase::Failed(format!(
                "db-instance {id} is {status}; see its events: aws rds describe-events --source-type db-instance --source-identifier {id}"
            ))
        }
        "stopped" | "stopping" => Phase::Failed(format!(
            "db-instance {id} is {status}; start it: aws rds start-db-instance --db-instance-identifier {id}"
        )),
        "deleting" => Phase::Failed(format!("db-instance {id} is being deleted")),
        _ => Phase::Pending,
    }
}

/// Waits (with progress) until the instance is available; returns its endpoint.
pub async fn wait_available(ctx: &Ctx) -> Result<Database> {
    let id = ctx.spec.db_identifier();
    ctx.progress
        .wait(&format!("rds {id}"), WAIT_LIMIT, || async {
            let inst = instance::describe(ctx, &id).await?.with_context(|| {
                format!("db-instance {id} does not exist; run `up` to create it")
            })?;
            match phase(&id, &inst.status) {
                Phase::Ready => match Database::of(&inst) {
                    Some(db) => Ok(Poll::Ready(db)),
                    None => Ok(Poll::Pending("available, no endpoint yet".into())),
                },
                Phase::Pending => Ok(Poll::Pending(inst.status)),
                Phase::Failed(why) => bail!(why),
            }
        })
        .await
}

/// The key's row of `status`.
pub fn status_of_key(key: Option<&Key>) -> Option<Status> {
    let key = key?;
    let mut s =
        Status::new("kms-key", Some(key.key_id.clone()), key.state.clone()).detail("arn", &key.arn);
    if let Some(rotation) = key.rotation {
        s = s.detail("rotation", rotation.to_string());
    }
    if !key.has_alias {
        s = s.detail("alias", "missing");
    }
    Some(s)
}

pub fn status(current: &Current) -> Vec<Status> {
    let mut out: Vec<Status> = status_of_key(current.key.as_ref()).into_iter().collect();
    if let Some(g) = &current.subnet_group {
        out.push(
            Status::new(
                format!("db-subnet-group {}", g.name),
                Some(g.name.clone()),
                g.status.clone(),
            )
            .detail("vpc", &g.vpc_id)
            .detail("subnets", g.subnet_ids.join(",")),
        );
    }
    if let Some(inst) = &current.instance {
        let mut s = Status::new(
            format!("db-instance {}", inst.id),
            Some(inst.id.clone()),
            inst.status.clone(),
        )
        .detail("engine", format!("{} {}", inst.engine, inst.engine_version))
        .detail("class", &inst.class)
        .detail("multi_az", inst.multi_az.to_string())
        .detail("encrypted", inst.encrypted.to_string())
        .detail("deletion_protection", inst.deletion_protection.to_string());
        if let Some((address, port)) = &inst.endpoint {
            s = s.detail("endpoint", format!("{address}:{port}"));
        }
        if let Some(key) = &inst.kms_key_id {
            s = s.detail("kms_key", key);
        }
        out.push(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_of_a_wait() {
        assert_eq!(phase("gw-db", "available"), Phase::Ready);
        for pending in ["creating", "backing-up", "modifying", "rebooting"] {
            assert_eq!(phase("gw-db", pending), Phase::Pending, "{pending}");
        }
        for failed in [
            "failed",
            "incompatible-parameters",
            "storage-full",
            "stopped",
        ] {
            assert!(
                matches!(phase("gw-db", failed), Phase::Failed(_)),
                "{failed}"
            );
        }
    }

    #[test]
    fn only_an_available_instance_with_an_endpoint_is_a_database() {
        let mut inst = Instance {
            id: "gw-db".into(),
            status: "creating".into(),
            kms_key_id: Some("arn:key".into()),
            ..Instance::default()
        };
        assert_eq!(Database::of(&inst), None);
        inst.status = "available".into();
        inst.endpoint = Some(("db.example".into(), 5432));
        let db = Database::of(&inst).unwrap();
        assert_eq!(
            (db.address.as_str(), db.port, db.kms_key_arn.as_str()),
            ("db.example", 5432, "arn:key")
        );
    }
}
