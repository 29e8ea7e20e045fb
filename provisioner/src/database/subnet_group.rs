//! The DB subnet group `<stack>-db` over the private subnets.

use anyhow::{Context as _, Result};
use aws_sdk_rds::types::Tag;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::aws::AwsResultExt;
use crate::context::Ctx;
use crate::plan::{Change, Diff};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetGroup {
    pub name: String,
    pub arn: String,
    pub status: String,
    pub vpc_id: String,
    pub subnet_ids: Vec<String>,
    /// `key=value`.
    pub tags: Vec<String>,
}

pub fn name(ctx: &Ctx) -> String {
    ctx.spec.name("db")
}

pub fn resource(ctx: &Ctx) -> String {
    format!("db-subnet-group {}", name(ctx))
}

/// `key=value` of the stack's two tags.
pub fn tag_strings(ctx: &Ctx, name: &str) -> Vec<String> {
    ctx.tags(name)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

pub async fn discover(ctx: &Ctx) -> Result<Option<SubnetGroup>> {
    let name = name(ctx);
    let out = match ctx
        .rds
        .describe_db_subnet_groups()
        .db_subnet_group_name(&name)
        .send()
        .await
    {
        Err(e) if e.code() == Some("DBSubnetGroupNotFoundFault") => return Ok(None),
        other => other.aws(format!("describe db-subnet-group {name}"))?,
    };
    let Some(group) = out.db_subnet_groups().first() else {
        return Ok(None);
    };
    let arn = group
        .db_subnet_group_arn()
        .with_context(|| format!("db-subnet-group {name}: no ARN"))?;
    let tags = ctx
        .rds
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .aws(format!("list tags of db-subnet-group {name}"))?;
    Ok(Some(SubnetGroup {
        name: name.clone(),
        arn: arn.to_string(),
        status: group.subnet_group_status().unwrap_or_default().to_string(),
        vpc_id: group.vpc_id().unwrap_or_default().to_string(),
        subnet_ids: group
            .subnets()
            .iter()
            .filter_map(|s| s.subnet_identifier())
            .map(str::to_string)
            .collect(),
        tags: tag_list(tags.tag_list()),
    }))
}

/// `key=value` of RDS tags.
pub fn tag_list(tags: &[Tag]) -> Vec<String> {
    tags.iter()
        .map(|t| {
            format!(
                "{}={}",
                t.key().unwrap_or_default(),
                t.value().unwrap_or_default()
            )
        })
        .collect()
}

/// Only our two tags count: others on the resource are left alone.
pub fn our_tags(current: &[String], desired: &[String]) -> Vec<String> {
    let keys: Vec<&str> = desired
        .iter()
        .filter_map(|t| t.split_once('='))
        .map(|(k, _)| k)
        .collect();
    current
        .iter()
        .filter(|t| t.split_once('=').is_some_and(|(k, _)| keys.contains(&k)))
        .cloned()
        .collect()
}

/// The differences; the subnets are compared only when known (`desired_subnets` not empty).
pub fn diff(ctx: &Ctx, group: &SubnetGroup, desired_subnets: &[String]) -> Diff {
    let mut diff = Diff::default();
    if !desired_subnets.is_empty() {
        diff.set("subnets", &group.subnet_ids, desired_subnets);
    }
    let want = tag_strings(ctx, &group.name);
    diff.set("tags", &our_tags(&group.tags, &want), &want);
    diff
}

pub fn compare(ctx: &Ctx, group: Option<&SubnetGroup>, desired_subnets: &[String]) -> Change {
    match group {
        None => Change::create(resource(ctx)),
        Some(group) => diff(ctx, group, desired_subnets).into_change(resource(ctx)),
    }
}

pub async fn converge(ctx: &Ctx, group: Option<&SubnetGroup>, subnets: &[String]) -> Result<()> {
    let name = name(ctx);
    let description = format!("{} stack: RDS in the private subnets", ctx.spec.stack);
    let Some(group) = group else {
        let mut create = ctx
            .rds
            .create_db_subnet_group()
            .db_subnet_group_name(&name)
            .db_subnet_group_description(description)
            .set_subnet_ids(Some(subnets.to_vec()));
        for (k, v) in ctx.tags(&name) {
            create = create.tags(Tag::builder().key(k).value(v).build());
        }
        create
            .send()
            .await
            .aws(format!("create db-subnet-group {name}"))?;
        ctx.progress.line(format!(
            "created db-subnet-group {name} ({})",
            subnets.join(", ")
        ));
        return Ok(());
    };
    let diff = diff(ctx, group, subnets);
    for field in &diff.0 {
        if field.field == "subnets" {
            let modify = ctx
                .rds
                .modify_db_subnet_group()
                .db_subnet_group_name(&name)
                .db_subnet_group_description(&description)
                .set_subnet_ids(Some(subnets.to_vec()));
            modify
                .send()
                .await
                .aws(format!("update db-subnet-group {name}"))?;
        } else {
            add_tags(ctx, &group.arn, &name, &format!("db-subnet-group {name}")).await?;
        }
        ctx.progress
            .line(format!("updated db-subnet-group {name} ({})", field.field));
    }
    Ok(())
}

/// Sets the stack's two tags on an RDS resource.
pub async fn add_tags(ctx: &Ctx, arn: &str, name: &str, what: &str) -> Result<()> {
    let tags = ctx
        .tags(name)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build());
    ctx.rds
        .add_tags_to_resource()
        .resource_name(arn)
        .set_tags(Some(tags.collect()))
        .send()
        .await
        .aws(format!("tag {what}"))?;
    Ok(())
}

/// Deletes the group (after the instance is gone); a missing group is fine.
pub async fn delete(ctx: &Ctx) -> Result<()> {
    let name = name(ctx);
    match ctx
        .rds
        .delete_db_subnet_group()
        .db_subnet_group_name(&name)
        .send()
        .await
    {
        Err(e) if e.code() == Some("DBSubnetGroupNotFoundFault") => Ok(()),
        other => {
            other.aws(format!("delete db-subnet-group {name}"))?;
            ctx.progress.line(format!("deleted db-subnet-group {name}"));
            Ok(())
        }
    }
}
