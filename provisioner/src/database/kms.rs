//! The KMS key that encrypts the instance's storage: `alias/<stack>-db`, rotation on.

use anyhow::{Context as _, Result};
use aws_sdk_kms::types::{KeyState, Tag};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::aws::AwsResultExt;
use crate::context::Ctx;
use crate::plan::{Change, Diff};
use crate::spec::STACK_TAG;

/// The stack's key as found by alias (or by tag when the alias is missing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub key_id: String,
    pub arn: String,
    /// `Enabled`, `Disabled`, `PendingDeletion`, ...
    pub state: String,
    /// None when the key is not enabled (rotation cannot be read then).
    pub rotation: Option<bool>,
    pub has_alias: bool,
}

pub fn name(ctx: &Ctx) -> String {
    ctx.spec.kms_key_name()
}

pub fn alias(ctx: &Ctx) -> String {
    format!("alias/{}", name(ctx))
}

pub fn resource(ctx: &Ctx) -> String {
    format!("kms-key {}", alias(ctx))
}

pub async fn discover(ctx: &Ctx) -> Result<Option<Key>> {
    let alias = alias(ctx);
    match ctx.kms.describe_key().key_id(&alias).send().await {
        Err(e) if e.code() == Some("NotFoundException") => {}
        other => {
            let out = other.aws(format!("describe kms-key {alias}"))?;
            let meta = out
                .key_metadata()
                .with_context(|| format!("kms-key {alias}: no metadata"))?;
            return describe(ctx, meta, true).await.map(Some);
        }
    }
    // An `up` stopped between CreateKey and CreateAlias leaves a key with our tags.
    let mut pages = ctx.kms.list_keys().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.aws("list kms keys")?;
        for key_id in page.keys().iter().filter_map(|k| k.key_id()) {
            if !is_ours(ctx, key_id).await? {
                continue;
            }
            let out = ctx
                .kms
                .describe_key()
                .key_id(key_id)
                .send()
                .await
                .aws(format!("describe kms-key {key_id}"))?;
            let meta = out
                .key_metadata()
                .with_context(|| format!("kms-key {key_id}: no metadata"))?;
            if meta.key_state() != Some(&KeyState::PendingDeletion) {
                return describe(ctx, meta, false).await.map(Some);
            }
        }
    }
    Ok(None)
}

/// Whether the key carries this stack's tag and our Name.
async fn is_ours(ctx: &Ctx, key_id: &str) -> Result<bool> {
    let tags = match ctx.kms.list_resource_tags().key_id(key_id).send().await {
        // AWS managed keys and other accounts' keys: not ours.
        Err(e)
            if matches!(
                e.code(),
                Some("AccessDeniedException" | "NotFoundException")
            ) =>
        {
            return Ok(false)
        }
        other => other.aws(format!("list tags of kms-key {key_id}"))?,
    };
    let has = |k: &str, v: &str| {
        tags.tags()
            .iter()
            .any(|t| t.tag_key() == k && t.tag_value() == v)
    };
    Ok(has(STACK_TAG, ctx.spec.owner()) && has("Name", &name(ctx)))
}

async fn describe(
    ctx: &Ctx,
    meta: &aws_sdk_kms::types::KeyMetadata,
    has_alias: bool,
) -> Result<Key> {
    let key_id = meta.key_id().to_string();
    let arn = meta
        .arn()
        .with_context(|| format!("kms-key {}: no ARN", alias(ctx)))?
        .to_string();
    let state = meta
        .key_state()
        .map(|s| s.as_str().to_string())
        .unwrap_or_default();
    let rotation = if meta.key_state() == Some(&KeyState::Enabled) {
        let out = ctx
            .kms
            .get_key_rotation_status()
            .key_id(&key_id)
            .send()
            .await
            .aws(format!("get rotation of kms-key {}", alias(ctx)))?;
        Some(out.key_rotation_enabled())
    } else {
        None
    };
    Ok(Key {
        key_id,
        arn,
        state,
        rotation,
        has_alias,
    })
}

pub fn compare(ctx: &Ctx, key: Option<&Key>) -> Change {
    let Some(key) = key else {
        return Change::create(resource(ctx));
    };
    let mut diff = Diff::default();
    diff.field("alias", key.has_alias.then(|| alias(ctx)), Some(alias(ctx)));
    diff.field("key_state", Some(key.state.as_str()), Some("Enabled"));
    if key.rotation.is_some() {
        diff.field("key_rotation", key.rotation, Some(true));
    }
    diff.into_change(resource(ctx))
}

/// Creates the key or repairs it; returns its ARN.
pub async fn converge(ctx: &Ctx, key: Option<&Key>) -> Result<String> {
    let alias = alias(ctx);
    let Some(key) = key else {
        let mut create = ctx
            .kms
            .create_key()
            .description(format!("{} stack: RDS storage encryption", ctx.spec.stack));
        for (k, v) in ctx.tags(&name(ctx)) {
            create = create.tags(Tag::builder().tag_key(k).tag_value(v).build()?);
        }
        let out = create.send().await.aws(format!("create kms-key {alias}"))?;
        let meta = out
            .key_metadata()
            .with_context(|| format!("kms-key {alias}: no metadata"))?;
        let arn = meta
            .arn()
            .with_context(|| format!("kms-key {alias}: no ARN"))?
            .to_string();
        let key_id = meta.key_id();
        ctx.kms
            .create_alias()
            .alias_name(&alias)
            .target_key_id(key_id)
            .send()
            .await
            .aws(format!("create alias {alias}"))?;
        ctx.kms
            .enable_key_rotation()
            .key_id(key_id)
            .send()
            .await
            .aws(format!("enable rotation of kms-key {alias}"))?;
        ctx.progress
            .line(format!("created kms-key {alias} ({key_id})"));
        return Ok(arn);
    };
    let id = key.key_id.as_str();
    let mut done = Vec::new();
    if key.state == KeyState::PendingDeletion.as_str() {
        ctx.kms
            .cancel_key_deletion()
            .key_id(id)
            .send()
            .await
            .aws(format!("cancel deletion of kms-key {alias}"))?;
        done.push("deletion cancelled");
    }
    if key.state != KeyState::Enabled.as_str() {
        ctx.kms
            .enable_key()
            .key_id(id)
            .send()
            .await
            .aws(format!("enable kms-key {alias}"))?;
        done.push("enabled");
    }
    if !key.has_alias {
        ctx.kms
            .create_alias()
            .alias_name(&alias)
            .target_key_id(id)
            .send()
            .await
            .aws(format!("create alias {alias}"))?;
        done.push("alias created");
    }
    if key.rotation != Some(true) {
        ctx.kms
            .enable_key_rotation()
            .key_id(id)
            .send()
            .await
            .aws(format!("enable rotation of kms-key {alias}"))?;
        done.push("rotation enabled");
    }
    if !done.is_empty() {
        ctx.progress
            .line(format!("updated kms-key {alias} ({})", done.join(", ")));
    }
    Ok(key.arn.clone())
}

/// Deletes the alias and schedules the key's deletion (7 days, the shortest window).
pub async fn delete(ctx: &Ctx, key: &Key) -> Result<()> {
    let alias = alias(ctx);
    if key.has_alias {
        match ctx.kms.delete_alias().alias_name(&alias).send().await {
            Err(e) if e.code() == Some("NotFoundException") => {}
            other => {
                other.aws(format!("delete alias {alias}"))?;
            }
        }
    }
    if key.state != KeyState::PendingDeletion.as_str() {
        let schedule = ctx
            .kms
            .schedule_key_deletion()
            .key_id(&key.key_id)
            .pending_window_in_days(7);
        match schedule.send().await {
            Err(e) if e.code() == Some("NotFoundException") => return Ok(()),
            other => {
                other.aws(format!("schedule deletion of kms-key {alias}"))?;
            }
        }
        ctx.progress.line(format!(
            "deleted kms-key {alias} ({}; AWS removes it after 7 days)",
            key.key_id
        ));
    }
    Ok(())
}
