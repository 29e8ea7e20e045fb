//! `provisioner backup`: named restore points (manual snapshots, tagged with what they
//! hold, copied to the DR region under the DR key), their list and pruning, and the
//! RPO each region can achieve now.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use aws_sdk_rds::types::{DbSnapshot, Tag};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::Serialize;

use crate::aws::AwsResultExt;
use crate::context::Ctx;
use crate::database::{self, instance, kms};
use crate::dr::{self, fingerprint, replication};
use crate::progress::Poll;
use crate::secrets;
use crate::spec::STACK_TAG;

/// Marks the snapshots `backup create` makes (and their copies): the only ones `prune`
/// deletes.
pub const BACKUP_TAG: &str = "gateway-kit:backup";
const CREATED_TAG: &str = "gateway-kit:created-at";
const VERSION_TAG: &str = "gateway-kit:gateway-version";
const MIGRATIONS_TAG: &str = "gateway-kit:migrations";
const HASH_TAG: &str = "gateway-kit:configuration-hash";
/// A snapshot or a cross-region copy of a 100 GiB instance takes minutes to an hour.
pub(crate) const WAIT_LIMIT: Duration = Duration::from_secs(3 * 60 * 60);

/// One snapshot as `backup list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub region: String,
    pub id: String,
    pub arn: String,
    /// `manual` or `automated`.
    pub kind: String,
    pub status: String,
    /// Epoch seconds.
    pub created_at: Option<i64>,
    pub age: Option<String>,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    /// For a copy: the snapshot it was copied from.
    pub source: Option<String>,
    /// Made by `backup create` (the only ones `prune` removes).
    pub backup: bool,
    pub tags: Vec<(String, String)>,
}

impl Snapshot {
    fn from_sdk(region: &str, s: &DbSnapshot, now: i64) -> Snapshot {
        let tags: Vec<(String, String)> = s
            .tag_list()
            .iter()
            .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
            .collect();
        let created_at = s
            .snapshot_create_time()
            .or(s.original_snapshot_create_time())
            .map(|t| t.secs());
        Snapshot {
            region: region.to_string(),
            id: s.db_snapshot_identifier().unwrap_or_default().to_string(),
            arn: s.db_snapshot_arn().unwrap_or_default().to_string(),
            kind: s.snapshot_type().unwrap_or("manual").to_string(),
            status: s.status().unwrap_or_default().to_string(),
            age: created_at.map(|c| dr::age(now - c)),
            created_at,
            encrypted: s.encrypted().unwrap_or_default(),
            kms_key_id: s.kms_key_id().map(str::to_string),
            source: s.source_db_snapshot_identifier().map(str::to_string),
            backup: tags.iter().any(|(k, _)| k == BACKUP_TAG),
            tags,
        }
    }
}

/// The stack's snapshots in `ctx`'s region: of its instance, or tagged with the stack.
pub async fn snapshots(ctx: &Ctx) -> Result<Vec<Snapshot>> {
    let id = ctx.spec.db_identifier();
    let now = dr::now();
    let mut out = Vec::new();
    let mut pages = ctx.rds.describe_db_snapshots().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.aws(format!("describe db-snapshots in {}", ctx.spec.region))?;
        for s in page.db_snapshots() {
            let ours = s.db_instance_identifier() == Some(id.as_str())
                || s.tag_list().iter().any(|t| {
                    t.key() == Some(STACK_TAG) && t.value() == Some(ctx.spec.stack.as_str())
                });
            if ours && s.status() != Some("deleted") {
                out.push(Snapshot::from_sdk(&ctx.spec.region, s, now));
            }
        }
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    Ok(out)
}

#[derive(Debug, Serialize)]
pub struct Created {
    pub stack: String,
    pub snapshot: Snapshot,
    pub copies: Vec<Snapshot>,
    /// What the snapshot holds, when the database could be read from here.
    pub configuration_hash: Option<String>,
    pub entities: Option<i64>,
}

impl Created {
    pub fn render_text(&self) -> String {
        let mut out = format!(
            "Backup {} of stack {} in {} is {}.\n",
            self.snapshot.id, self.stack, self.snapshot.region, self.snapshot.status
        );
        for (k, v) in &self.snapshot.tags {
            if k.starts_with("gateway-kit:") && k != STACK_TAG {
                out.push_str(&format!("  {:<36} {v}\n", k));
            }
        }
        if let (Some(hash), Some(n)) = (&self.configuration_hash, self.entities) {
            out.push_str(&format!(
                "  holds {n} entities, configuration hash {hash}\n"
            ));
        }
        for c in &self.copies {
            out.push_str(&format!(
                "  copy in {}: {} ({}, key {})\n",
                c.region,
                c.id,
                c.status,
                c.kms_key_id.as_deref().unwrap_or("-")
            ));
        }
        out
    }
}

/// `backup create`: a manual snapshot, tagged, then copied to each of `copy_to`.
pub async fn create(ctx: &Ctx, gateway: Option<&Path>, copy_to: &[String]) -> Result<Created> {
    let id = ctx.spec.db_identifier();
    let inst = instance::describe(ctx, &id).await?.with_context(|| {
        format!(
            "stack {} has no db-instance {id} in {}: run `up` first",
            ctx.spec.stack, ctx.spec.region
        )
    })?;
    // Check the copies' keys first: a missing one should fail before a snapshot is made.
    let mut targets = Vec::new();
    for region in copy_to {
        if region == &ctx.spec.region {
            bail!("--copy-to {region} is the stack's own region; name another region");
        }
        let there = ctx.for_region(region);
        let key = kms::discover(&there).await?.filter(|k| k.state == "Enabled").with_context(|| {
            format!(
                "{region} has no enabled KMS key {} to encrypt the copy: run `provisioner up --dr-region {region}` \
                 (or add [dr] region = \"{region}\" to stack.toml) first",
                kms::alias(&there)
            )
        })?;
        targets.push((there, key.arn));
    }
    let print = match gateway {
        Some(path) => match read_fingerprint(ctx, path, &inst).await {
            Ok(f) => Some(f),
            Err(e) => {
                ctx.progress.line(format!(
                    "note: the snapshot's contents are not recorded: {e:#}"
                ));
                None
            }
        },
        None => None,
    };
    let now = dr::now();
    let name = format!("{id}-backup-{}", compact_time(now));
    let mut tags = vec![
        ("Name".to_string(), name.clone()),
        (STACK_TAG.to_string(), ctx.spec.stack.clone()),
        (BACKUP_TAG.to_string(), "manual".to_string()),
        (CREATED_TAG.to_string(), replication::rfc3339(now)),
    ];
    if let Some(path) = gateway {
        if let Ok(version) = fingerprint::gateway_version(path).await {
            tags.push((VERSION_TAG.to_string(), version));
        }
    }
    if let Some(f) = &print {
        tags.push((MIGRATIONS_TAG.to_string(), f.migration_state()));
        if let Some(hash) = &f.configuration_hash {
            tags.push((HASH_TAG.to_string(), hash.clone()));
        }
    }
    let mut request = ctx
        .rds
        .create_db_snapshot()
        .db_instance_identifier(&id)
        .db_snapshot_identifier(&name);
    for (k, v) in &tags {
        request = request.tags(Tag::builder().key(k).value(truncate(v, 256)).build());
    }
    request
        .send()
        .await
        .aws(format!("create db-snapshot {name} of {id}"))?;
    ctx.progress
        .line(format!("creating db-snapshot {name} of {id}"));
    let snapshot = wait_snapshot(ctx, &name).await?;
    let mut copies = Vec::new();
    for (there, key_arn) in &targets {
        copies.push(copy(ctx, there, &snapshot, key_arn).await?);
    }
    Ok(Created {
        stack: ctx.spec.stack.clone(),
        snapshot,
        copies,
        configuration_hash: print.as_ref().and_then(|f| f.configuration_hash.clone()),
        entities: print.as_ref().map(|f| f.total()),
    })
}

async fn read_fingerprint(
    ctx: &Ctx,
    gateway: &Path,
    inst: &instance::Instance,
) -> Result<fingerprint::Fingerprint> {
    let db = database::Database::of(inst)
        .with_context(|| format!("db-instance {} is {}", inst.id, inst.status))?;
    let found = secrets::discover(ctx).await?;
    let names = found
        .secrets()
        .context("the stack's secrets are missing; run `up`")?;
    let password = secrets::db_password(ctx, &names).await?;
    fingerprint::read(gateway, &db, &password).await
}

/// Copies `snapshot` into `there`'s region under the same name, re-encrypted with the
/// key there, with its tags.
async fn copy(ctx: &Ctx, there: &Ctx, snapshot: &Snapshot, key_arn: &str) -> Result<Snapshot> {
    let region = &there.spec.region;
    let request = there
        .rds
        .copy_db_snapshot()
        .source_db_snapshot_identifier(&snapshot.arn)
        .target_db_snapshot_identifier(&snapshot.id)
        .kms_key_id(key_arn)
        .copy_tags(true);
    match request.send().await {
        Err(e) if e.code() == Some("DBSnapshotAlreadyExists") => {
            ctx.progress.line(format!(
                "db-snapshot {} is in {region} already",
                snapshot.id
            ));
        }
        other => {
            other.aws(format!("copy db-snapshot {} to {region}", snapshot.id))?;
            ctx.progress
                .line(format!("copying db-snapshot {} to {region}", snapshot.id));
        }
    }
    wait_snapshot(there, &snapshot.id).await
}

pub(crate) async fn wait_snapshot(ctx: &Ctx, name: &str) -> Result<Snapshot> {
    let region = ctx.spec.region.clone();
    ctx.progress
        .wait(
            &format!("db-snapshot {name} in {region}"),
            WAIT_LIMIT,
            || async {
                let out = ctx
                    .rds
                    .describe_db_snapshots()
                    .db_snapshot_identifier(name)
                    .send()
                    .await
                    .aws(format!("describe db-snapshot {name} in {region}"))?;
                let s = out
                    .db_snapshots()
                    .first()
                    .with_context(|| format!("db-snapshot {name} vanished in {region}"))?;
                let snap = Snapshot::from_sdk(&region, s, dr::now());
                match snap.status.as_str() {
                    "available" => Ok(Poll::Ready(snap)),
                    "failed" | "incompatible-restore" | "deleted" => {
                        bail!("db-snapshot {name} in {region} is {}", snap.status)
                    }
                    other => Ok(Poll::Pending(other.to_string())),
                }
            },
        )
        .await
}

#[derive(Debug, Serialize)]
pub struct Listing {
    pub stack: String,
    pub snapshots: Vec<Snapshot>,
}

impl Listing {
    pub fn render_text(&self) -> String {
        if self.snapshots.is_empty() {
            return format!("Stack {} has no snapshots.\n", self.stack);
        }
        let mut out = format!(
            "{:<12} {:<44} {:<9} {:<10} {:<20} {:>8}  {}\n",
            "REGION", "SNAPSHOT", "TYPE", "STATUS", "CREATED", "AGE", "SOURCE"
        );
        for s in &self.snapshots {
            let kind = if s.backup { "backup" } else { s.kind.as_str() };
            out.push_str(&format!(
                "{:<12} {:<44} {:<9} {:<10} {:<20} {:>8}  {}\n",
                s.region,
                s.id,
                kind,
                s.status,
                s.created_at.map(replication::rfc3339).unwrap_or_default(),
                s.age.as_deref().unwrap_or("-"),
                s.source.as_deref().map(short_arn).unwrap_or("-")
            ));
        }
        out
    }
}

/// `backup list`: every snapshot of the stack, per region, newest first.
pub async fn list(ctx: &Ctx) -> Result<Listing> {
    // The stack's region, then the DR region.
    let mut all = snapshots(ctx).await?;
    if let Some(there) = ctx.dr() {
        all.extend(snapshots(&there).await?);
    }
    Ok(Listing {
        stack: ctx.spec.stack.clone(),
        snapshots: all,
    })
}

/// What `prune` would delete: per region, the manual backups beyond the newest `keep`.
pub fn to_prune(snapshots: &[Snapshot], keep: usize) -> Vec<Snapshot> {
    let mut out = Vec::new();
    let mut by_region: std::collections::BTreeMap<&str, Vec<&Snapshot>> = Default::default();
    for s in snapshots.iter().filter(|s| s.backup && s.kind == "manual") {
        by_region.entry(s.region.as_str()).or_default().push(s);
    }
    for (_, mut list) in by_region {
        list.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        out.extend(list.into_iter().skip(keep).cloned());
    }
    out
}

#[derive(Debug, Serialize)]
pub struct Pruned {
    pub stack: String,
    pub kept_per_region: usize,
    pub deleted: Vec<Snapshot>,
}

impl Pruned {
    pub fn render_text(&self) -> String {
        if self.deleted.is_empty() {
            return format!(
                "Nothing to prune: stack {} has at most {} backups per region.\n",
                self.stack, self.kept_per_region
            );
        }
        let mut out = format!("Deleted {} backup(s):\n", self.deleted.len());
        for s in &self.deleted {
            out.push_str(&format!(
                "  {} {} ({})\n",
                s.region,
                s.id,
                s.age.as_deref().unwrap_or("-")
            ));
        }
        out
    }
}

/// `backup prune --keep N`: deletes the oldest manual backups beyond N per region.
/// Automated backups, final snapshots and snapshots made by others are never touched.
pub async fn prune(ctx: &Ctx, listing: &Listing, keep: usize) -> Result<Pruned> {
    let doomed = to_prune(&listing.snapshots, keep);
    for s in &doomed {
        let there = ctx.for_region(&s.region);
        match there
            .rds
            .delete_db_snapshot()
            .db_snapshot_identifier(&s.id)
            .send()
            .await
        {
            Err(e) if e.code() == Some("DBSnapshotNotFound") => {}
            other => {
                other.aws(format!("delete db-snapshot {} in {}", s.id, s.region))?;
            }
        }
        ctx.progress
            .line(format!("deleted db-snapshot {} in {}", s.id, s.region));
    }
    Ok(Pruned {
        stack: ctx.spec.stack.clone(),
        kept_per_region: keep,
        deleted: doomed,
    })
}

/// The RPO one region can achieve now.
#[derive(Debug, Serialize)]
pub struct RegionRpo {
    pub region: String,
    /// `automated backups` (the instance's own) or `replicated backups`.
    pub source: String,
    pub latest_restorable_time: Option<String>,
    pub rpo_seconds: Option<i64>,
    pub rpo: String,
    pub newest_snapshot: Option<String>,
    pub newest_snapshot_age: Option<String>,
    pub within_target: bool,
    pub note: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct BackupStatus {
    pub stack: String,
    pub rpo_target: String,
    pub regions: Vec<RegionRpo>,
}

impl BackupStatus {
    pub fn ok(&self) -> bool {
        self.regions.iter().all(|r| r.within_target)
    }

    pub fn render_text(&self) -> String {
        let mut out = format!(
            "Backups of stack {} (RPO target {}):\n  {:<12} {:<20} {:<22} {:>8}  {:<8} {}\n",
            self.stack,
            self.rpo_target,
            "REGION",
            "FROM",
            "LATEST RESTORABLE",
            "RPO",
            "TARGET",
            "NEWEST SNAPSHOT"
        );
        for r in &self.regions {
            out.push_str(&format!(
                "  {:<12} {:<20} {:<22} {:>8}  {:<8} {}\n",
                r.region,
                r.source,
                r.latest_restorable_time.as_deref().unwrap_or("-"),
                r.rpo,
                if r.within_target { "met" } else { "MISSED" },
                match (&r.newest_snapshot, &r.newest_snapshot_age) {
                    (Some(s), Some(a)) => format!("{s} ({a} old)"),
                    _ => "-".into(),
                }
            ));
            if let Some(note) = &r.note {
                out.push_str(&format!("      {note}\n"));
            }
        }
        out
    }
}

/// The RPO target: `[dr] rpo_target`, else the default of a DR config.
pub fn rpo_target(ctx: &Ctx) -> Duration {
    ctx.spec
        .config
        .dr
        .as_ref()
        .map(|d| d.rpo_target)
        .unwrap_or_else(crate::spec::DrConfig::default_rpo)
}

/// `backup status`: per region, now minus the latest restorable time, against the target.
pub async fn status(ctx: &Ctx) -> Result<BackupStatus> {
    let target = rpo_target(ctx);
    let now = dr::now();
    let id = ctx.spec.db_identifier();
    let inst = instance::describe(ctx, &id).await?;
    let mut regions_out = Vec::new();
    let judge = |region: &str,
                 source: &str,
                 latest: Option<i64>,
                 snaps: &[Snapshot],
                 note: Option<String>| {
        let rpo = latest.map(|l| now - l);
        let newest = snaps.iter().find(|s| s.status == "available");
        RegionRpo {
            region: region.to_string(),
            source: source.to_string(),
            latest_restorable_time: latest.map(replication::rfc3339),
            rpo_seconds: rpo,
            rpo: rpo.map(dr::age).unwrap_or_else(|| "-".into()),
            newest_snapshot: newest.map(|s| s.id.clone()),
            newest_snapshot_age: newest.and_then(|s| s.age.clone()),
            within_target: rpo.is_some_and(|r| r <= target.as_secs() as i64),
            note,
        }
    };
    let primary_snaps = snapshots(ctx).await?;
    let (latest, note) = match &inst {
        None => (None, Some(format!("no db-instance {id} here"))),
        Some(i) => {
            let backups = replication::describe(ctx, &i.resource_id).await?;
            let latest = backups
                .iter()
                .filter_map(replication::Replica::from_sdk)
                .filter_map(|r| r.latest)
                .max();
            (
                latest,
                latest
                    .is_none()
                    .then(|| "no restorable time yet".to_string()),
            )
        }
    };
    regions_out.push(judge(
        &ctx.spec.region,
        "automated backups",
        latest,
        &primary_snaps,
        note,
    ));
    if let Some(there) = ctx.dr() {
        let snaps = snapshots(&there).await?;
        let replica = match &inst {
            Some(i) => replication::discover(&there, i).await?,
            None => None,
        };
        let note = match &replica {
            None => Some(format!(
                "automated backups are not replicated to {}: run `up` to start replication",
                there.spec.region
            )),
            Some(r) if !r.is_replicating() => Some(format!("replication is {}", r.status)),
            Some(_) => None,
        };
        regions_out.push(judge(
            &there.spec.region,
            "replicated backups",
            replica.as_ref().and_then(|r| r.latest),
            &snaps,
            note,
        ));
    }
    Ok(BackupStatus {
        stack: ctx.spec.stack.clone(),
        rpo_target: dr::target(target),
        regions: regions_out,
    })
}

/// `20261202-104507`: sortable, and legal in a snapshot identifier.
pub(crate) fn compact_time(epoch: i64) -> String {
    let t = replication::rfc3339(epoch);
    t.chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .take(15)
        .collect::<String>()
        .replace('T', "-")
}

fn short_arn(arn: &str) -> &str {
    arn.rsplit(':').next().unwrap_or(arn)
}

fn truncate(v: &str, n: usize) -> String {
    v.chars().take(n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(region: &str, id: &str, created: i64, backup: bool, kind: &str) -> Snapshot {
        Snapshot {
            region: region.into(),
            id: id.into(),
            arn: String::new(),
            kind: kind.into(),
            status: "available".into(),
            created_at: Some(created),
            age: None,
            encrypted: true,
            kms_key_id: None,
            source: None,
            backup,
            tags: Vec::new(),
        }
    }

    #[test]
    fn prune_keeps_the_newest_per_region_and_only_backups() {
        let all = vec![
            snap("eu-west-1", "b1", 100, true, "manual"),
            snap("eu-west-1", "b2", 200, true, "manual"),
            snap("eu-west-1", "b3", 300, true, "manual"),
            snap("eu-west-1", "final", 50, false, "manual"),
            snap("eu-west-1", "auto", 10, false, "automated"),
            snap("us-west-2", "b1", 110, true, "manual"),
            snap("us-west-2", "b2", 210, true, "manual"),
        ];
        let gone: Vec<String> = to_prune(&all, 1)
            .iter()
            .map(|s| format!("{}/{}", s.region, s.id))
            .collect();
        assert_eq!(gone, ["eu-west-1/b2", "eu-west-1/b1", "us-west-2/b1"]);
        assert!(to_prune(&all, 5).is_empty());
    }

    #[test]
    fn snapshot_names_are_legal() {
        assert_eq!(compact_time(1_796_208_307), "20261202-104507");
    }
}
