//! Compute: the nodes' IAM role and instance profile (read only their own secrets and
//! artifact), the launch template (IMDSv2, Amazon Linux 2023, cloud-config user data)
//! and the Auto Scaling group over the private subnets, attached to the ELB with ELB
//! health checks and a termination lifecycle hook so nodes drain.
//!
//! `profile` (IAM), `template` (launch template) and `group` (ASG and hook) each
//! compute a desired state once; `plan` and `converge` both diff against it.

pub mod ami;
pub mod group;
mod group_apply;
pub mod policy;
pub mod profile;
pub mod roll;
pub mod template;
mod template_apply;

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};

use crate::artifacts::Artifact;
use crate::aws::AwsResultExt;
use crate::context::Ctx;
use crate::database::Database;
use crate::network::Network;
use crate::plan::{Change, Status};
use crate::secrets::Secrets;
use crate::security::SecurityGroups;
use crate::spec::Spec;

/// Everything the nodes are made from.
#[derive(Debug, Clone)]
pub struct NodeInputs {
    pub net: Network,
    pub groups: SecurityGroups,
    pub db: Database,
    pub artifact: Artifact,
    pub secrets: Secrets,
    pub elb_name: String,
    pub instance_profile_arn: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compute {
    pub asg_name: String,
    pub launch_template_id: String,
    pub launch_template_version: i64,
}

/// The termination lifecycle hook: `<stack>-drain`.
pub fn lifecycle_hook_name(spec: &Spec) -> String {
    spec.name("drain")
}

/// Role and instance profile: `<stack>-node-<region>` (IAM is global).
pub fn role_name(spec: &Spec) -> String {
    format!("{}-node-{}", spec.stack, spec.region)
}

/// The account and partition the stack lives in, for ARNs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub partition: String,
}

#[derive(Debug, Clone, Default)]
pub struct Current {
    pub account: Account,
    /// The AMI the template must use (`ami`, else the AL2023 parameter's value).
    pub ami: ami::Ami,
    pub profile: profile::Current,
    pub template: Option<template::Current>,
    pub group: Option<group::Current>,
}

impl Current {
    /// The instance profile's ARN, when it exists with its role.
    pub fn instance_profile_arn(&self) -> Option<String> {
        let profile = self.profile.profile.as_ref()?;
        (self.profile.role.is_some() && !profile.roles.is_empty()).then(|| profile.arn.clone())
    }
}

pub async fn discover(ctx: &Ctx) -> Result<Current> {
    let me = ctx
        .sts
        .get_caller_identity()
        .send()
        .await
        .aws("get caller identity")?;
    let account = Account {
        id: me
            .account()
            .context("get caller identity: no account")?
            .to_string(),
        partition: me
            .arn()
            .and_then(|arn| arn.split(':').nth(1))
            .unwrap_or("aws")
            .to_string(),
    };
    Ok(Current {
        account,
        ami: ami::resolve_ami(ctx).await?,
        profile: profile::discover(ctx).await?,
        template: template::discover(ctx).await?,
        group: group::discover(ctx).await?,
    })
}

/// `inputs` is None when a resource the nodes depend on is still to be created: then
/// missing resources show as `create`, and existing ones are compared only on what
/// does not depend on the inputs (sizes, health check, hook, IMDS, type, AMI).
pub fn plan(ctx: &Ctx, current: &Current, inputs: Option<&NodeInputs>) -> Vec<Change> {
    let mut changes = profile::plan(ctx, current, inputs.map(|i| (&i.secrets, &i.artifact)));
    let template_change = template::plan(ctx, current, inputs);
    let new_version = template::next_version(current.template.as_ref(), &template_change);
    changes.push(template_change);
    changes.extend(group::plan(ctx, current, inputs, new_version));
    changes
}

/// The role, its policy and the instance profile; returns the profile's ARN.
pub async fn converge_profile(
    ctx: &Ctx,
    current: &Current,
    secrets: &Secrets,
    artifact: &Artifact,
) -> Result<String> {
    profile::converge(ctx, current, secrets, artifact).await
}

/// Template first (a new default version when its inputs changed), then the group on
/// that exact version, then the nodes still on an older version are replaced, one at a
/// time (`roll`).
pub async fn converge(ctx: &Ctx, current: &Current, inputs: &NodeInputs) -> Result<Compute> {
    let (launch_template_id, launch_template_version) =
        template_apply::converge(ctx, current, inputs).await?;
    group_apply::converge(
        ctx,
        current,
        inputs,
        &launch_template_id,
        launch_template_version,
    )
    .await?;
    roll::replace_outdated(ctx, &inputs.elb_name, launch_template_version).await?;
    Ok(Compute {
        asg_name: ctx.spec.asg_name(),
        launch_template_id,
        launch_template_version,
    })
}

pub use group_apply::fence;

/// Deletes the group (waits until its instances are gone), the template and the
/// profile and role.
pub async fn delete(ctx: &Ctx, current: &Current) -> Result<()> {
    group_apply::delete(ctx, current).await?;
    template_apply::delete(ctx, current).await?;
    profile::delete(ctx, current).await
}

/// The group and each instance, with its ELB health from `elb_health` (by id).
pub fn status(current: &Current, elb_health: &BTreeMap<String, String>) -> Vec<Status> {
    let mut out = profile::status(current);
    out.extend(template::status(current));
    out.extend(group::status(current, elb_health));
    out
}

/// Tags as sorted `key=value`, for set diffs.
pub(crate) fn tag_strings<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<String> {
    let mut out: Vec<String> = tags.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    out.sort();
    out
}

/// Our two tags as sorted `key=value`, and the same keys of `have`.
pub(crate) fn our_tags(ctx: &Ctx, name: &str, have: &[String]) -> (Vec<String>, Vec<String>) {
    let want = tag_strings(ctx.tags(name).iter().map(|(k, v)| (*k, v.as_str())));
    let keys: Vec<&str> = ctx.tags(name).iter().map(|(k, _)| *k).collect();
    let have = have
        .iter()
        .filter(|t| {
            keys.iter()
                .any(|k| t.split_once('=').map(|(hk, _)| hk) == Some(k))
        })
        .cloned()
        .collect();
    (want, have)
}
