//! The nodes' IAM role `<stack>-node-<region>` (trust: EC2), its one inline policy
//! (its own secrets, its artifact prefix, its own group's lifecycle actions) and the
//! instance profile of the same name holding it.

use anyhow::{Context as _, Result};
use aws_sdk_iam::types::Tag;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde_json::Value;

use super::policy::{decode_policy, document_diff, node_policy, trust_policy};
use super::{our_tags, role_name, tag_strings};
use crate::artifacts::Artifact;
use crate::aws::AwsResultExt;
use crate::context::Ctx;
use crate::plan::{Change, Diff, Status};
use crate::secrets::Secrets;

pub const POLICY_NAME: &str = "gateway-node";

#[derive(Debug, Clone, PartialEq)]
pub struct Role {
    pub arn: String,
    pub trust: Value,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub arn: String,
    pub roles: Vec<String>,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Current {
    pub role: Option<Role>,
    /// The inline policy document, decoded.
    pub policy: Option<Value>,
    pub profile: Option<Profile>,
}

fn role_diff(ctx: &Ctx, role: &Role) -> Diff {
    let mut d = Diff::default();
    document_diff(&mut d, "assume_role_policy", &role.trust, &trust_policy());
    let (want, have) = our_tags(ctx, &role_name(&ctx.spec), &role.tags);
    d.set("tags", &have, &want);
    d
}

fn policy_diff(current: Option<&Value>, desired: &Value) -> Diff {
    let mut d = Diff::default();
    document_diff(&mut d, "document", current.unwrap_or(&Value::Null), desired);
    d
}

fn profile_diff(ctx: &Ctx, profile: &Profile) -> Diff {
    let name = role_name(&ctx.spec);
    let mut d = Diff::default();
    d.set("roles", &profile.roles, std::slice::from_ref(&name));
    let (want, have) = our_tags(ctx, &name, &profile.tags);
    d.set("tags", &have, &want);
    d
}

pub async fn discover(ctx: &Ctx) -> Result<Current> {
    let name = role_name(&ctx.spec);
    let no_entity = |e: &dyn ProvideErrorMetadata| e.code() == Some("NoSuchEntity");
    let role = match ctx.iam.get_role().role_name(&name).send().await {
        Ok(out) => {
            let role = out
                .role()
                .with_context(|| format!("get iam role {name}: no role"))?;
            Some(Role {
                arn: role.arn().to_string(),
                trust: decode_policy(role.assume_role_policy_document().unwrap_or("{}"))
                    .with_context(|| format!("iam role {name}"))?,
                tags: tag_strings(role.tags().iter().map(|t| (t.key(), t.value()))),
            })
        }
        Err(e) if no_entity(&e) => None,
        Err(e) => return Err(e).aws(format!("get iam role {name}")),
    };
    let policy = match role {
        None => None,
        Some(_) => match ctx
            .iam
            .get_role_policy()
            .role_name(&name)
            .policy_name(POLICY_NAME)
            .send()
            .await
        {
            Ok(out) => Some(
                decode_policy(out.policy_document())
                    .with_context(|| format!("iam role policy {name}/{POLICY_NAME}"))?,
            ),
            Err(e) if no_entity(&e) => None,
            Err(e) => return Err(e).aws(format!("get iam role policy {name}/{POLICY_NAME}")),
        },
    };
    let profile = match ctx
        .iam
        .get_instance_profile()
        .instance_profile_name(&name)
        .send()
        .await
    {
        Ok(out) => {
            let p = out
                .instance_profile()
                .with_context(|| format!("get instance profile {name}: no profile"))?;
            Some(Profile {
                arn: p.arn().to_string(),
                roles: p
                    .roles()
                    .iter()
                    .map(|r| r.role_name().to_string())
                    .collect(),
                tags: tag_strings(p.tags().iter().map(|t| (t.key(), t.value()))),
            })
        }
        Err(e) if no_entity(&e) => None,
        Err(e) => return Err(e).aws(format!("get instance profile {name}")),
    };
    Ok(Current {
        role,
        policy,
        profile,
    })
}

pub fn plan(
    ctx: &Ctx,
    current: &super::Current,
    inputs: Option<(&Secrets, &Artifact)>,
) -> Vec<Change> {
    let name = role_name(&ctx.spec);
    let c = &current.profile;
    let role = format!("iam-role {name}");
    let policy = format!("iam-role-policy {name}/{POLICY_NAME}");
    let profile = format!("instance-profile {name}");
    vec![
        match &c.role {
            None => Change::create(role),
            Some(r) => role_diff(ctx, r).into_change(role),
        },
        match (&c.policy, inputs) {
            (None, _) => Change::create(policy),
            (Some(_), None) => Change::compare(policy, Vec::new()),
            (Some(doc), Some((secrets, artifact))) => {
                let desired = node_policy(&ctx.spec, &current.account, secrets, artifact);
                policy_diff(Some(doc), &desired).into_change(policy)
            }
        },
        match &c.profile {
            None => Change::create(profile),
            Some(p) => profile_diff(ctx, p).into_change(profile),
        },
    ]
}

fn iam_tags(ctx: &Ctx, name: &str) -> Result<Vec<Tag>> {
    ctx.tags(name)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build().context("iam tag"))
        .collect()
}

pub async fn converge(
    ctx: &Ctx,
    current: &super::Current,
    secrets: &Secrets,
    artifact: &Artifact,
) -> Result<String> {
    let name = role_name(&ctx.spec);
    let c = &current.profile;
    let trust = trust_policy().to_string();
    match &c.role {
        None => {
            ctx.iam
                .create_role()
                .role_name(&name)
                .assume_role_policy_document(&trust)
                .description(format!("gateway nodes of stack {}", ctx.spec.stack))
                .set_tags(Some(iam_tags(ctx, &name)?))
                .send()
                .await
                .aws(format!("create iam role {name}"))?;
            ctx.progress.line(format!("created iam-role {name}"));
        }
        Some(role) => {
            let diff = role_diff(ctx, role);
            let fields: Vec<&str> = diff.0.iter().map(|f| f.field.as_str()).collect();
            if fields.iter().any(|f| f.starts_with("assume_role_policy")) {
                ctx.iam
                    .update_assume_role_policy()
                    .role_name(&name)
                    .policy_document(&trust)
                    .send()
                    .await
                    .aws(format!("update trust policy of iam role {name}"))?;
            }
            if fields.contains(&"tags") {
                ctx.iam
                    .tag_role()
                    .role_name(&name)
                    .set_tags(Some(iam_tags(ctx, &name)?))
                    .send()
                    .await
                    .aws(format!("tag iam role {name}"))?;
            }
            if !fields.is_empty() {
                ctx.progress
                    .line(format!("updated iam-role {name} ({})", fields.join(", ")));
            }
        }
    }
    let desired = node_policy(&ctx.spec, &current.account, secrets, artifact);
    let diff = policy_diff(c.policy.as_ref(), &desired);
    if !diff.0.is_empty() {
        ctx.iam
            .put_role_policy()
            .role_name(&name)
            .policy_name(POLICY_NAME)
            .policy_document(desired.to_string())
            .send()
            .await
            .aws(format!("put iam role policy {name}/{POLICY_NAME}"))?;
        let verb = if c.policy.is_some() {
            "updated"
        } else {
            "created"
        };
        ctx.progress
            .line(format!("{verb} iam-role-policy {name}/{POLICY_NAME}"));
    }
    let (arn, roles) = match &c.profile {
        Some(p) => {
            if profile_diff(ctx, p).0.iter().any(|f| f.field == "tags") {
                ctx.iam
                    .tag_instance_profile()
                    .instance_profile_name(&name)
                    .set_tags(Some(iam_tags(ctx, &name)?))
                    .send()
                    .await
                    .aws(format!("tag instance profile {name}"))?;
                ctx.progress
                    .line(format!("updated instance-profile {name} (tags)"));
            }
            (p.arn.clone(), p.roles.clone())
        }
        None => {
            let out = ctx
                .iam
                .create_instance_profile()
                .instance_profile_name(&name)
                .set_tags(Some(iam_tags(ctx, &name)?))
                .send()
                .await
                .aws(format!("create instance profile {name}"))?;
            let arn = out
                .instance_profile()
                .map(|p| p.arn().to_string())
                .with_context(|| format!("create instance profile {name}: no ARN"))?;
            ctx.progress
                .line(format!("created instance-profile {name}"));
            (arn, Vec::new())
        }
    };
    // A profile holds one role: a stranger goes, ours goes in.
    for other in roles.iter().filter(|r| **r != name) {
        ctx.iam
            .remove_role_from_instance_profile()
            .instance_profile_name(&name)
            .role_name(other)
            .send()
            .await
            .aws(format!("remove role {other} from instance profile {name}"))?;
        ctx.progress.line(format!(
            "updated instance-profile {name} (removed role {other})"
        ));
    }
    if !roles.contains(&name) {
        ctx.iam
            .add_role_to_instance_profile()
            .instance_profile_name(&name)
            .role_name(&name)
            .send()
            .await
            .aws(format!("add role {name} to instance profile {name}"))?;
        ctx.progress
            .line(format!("updated instance-profile {name} (role {name})"));
    }
    Ok(arn)
}

pub async fn delete(ctx: &Ctx, current: &super::Current) -> Result<()> {
    let name = role_name(&ctx.spec);
    let c = &current.profile;
    let gone = |e: &dyn ProvideErrorMetadata| e.code() == Some("NoSuchEntity");
    if let Some(p) = &c.profile {
        for role in &p.roles {
            match ctx
                .iam
                .remove_role_from_instance_profile()
                .instance_profile_name(&name)
                .role_name(role)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if gone(&e) => {}
                Err(e) => {
                    return Err(e).aws(format!("remove role {role} from instance profile {name}"))
                }
            }
        }
        match ctx
            .iam
            .delete_instance_profile()
            .instance_profile_name(&name)
            .send()
            .await
        {
            Ok(_) => ctx
                .progress
                .line(format!("deleted instance-profile {name}")),
            Err(e) if gone(&e) => {}
            Err(e) => return Err(e).aws(format!("delete instance profile {name}")),
        }
    }
    if c.policy.is_some() {
        match ctx
            .iam
            .delete_role_policy()
            .role_name(&name)
            .policy_name(POLICY_NAME)
            .send()
            .await
        {
            Ok(_) => ctx
                .progress
                .line(format!("deleted iam-role-policy {name}/{POLICY_NAME}")),
            Err(e) if gone(&e) => {}
            Err(e) => return Err(e).aws(format!("delete iam role policy {name}/{POLICY_NAME}")),
        }
    }
    if c.role.is_some() {
        match ctx.iam.delete_role().role_name(&name).send().await {
            Ok(_) => ctx.progress.line(format!("deleted iam-role {name}")),
            Err(e) if gone(&e) => {}
            Err(e) => return Err(e).aws(format!("delete iam role {name}")),
        }
    }
    Ok(())
}

pub fn status(current: &super::Current) -> Vec<Status> {
    let c = &current.profile;
    let mut out = Vec::new();
    if let Some(r) = &c.role {
        let name = r.arn.rsplit('/').next().unwrap_or(&r.arn).to_string();
        out.push(Status::new(
            format!("iam-role {name}"),
            Some(r.arn.clone()),
            "available",
        ));
    }
    if let Some(p) = &c.profile {
        let name = p.arn.rsplit('/').next().unwrap_or(&p.arn).to_string();
        let state = if p.roles.is_empty() {
            "no role"
        } else {
            "available"
        };
        out.push(Status::new(
            format!("instance-profile {name}"),
            Some(p.arn.clone()),
            state,
        ));
    }
    out
}
