//! Secrets: the RDS master password and the Admin API token, generated once and kept
//! in SSM Parameter Store (SecureString) or Secrets Manager (`secret_store`). Their
//! values never reach user data, logs, tags or output; only their names and ARNs do.

use anyhow::{bail, Context as _, Result};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::aws::AwsResultExt;
use crate::context::Ctx;
use crate::plan::{Change, Diff, Status};
use crate::spec::SecretStore;

pub mod copy;
pub mod rotate;
mod value;

pub(crate) use value::redact;
pub use value::{generate, SecretValue, ADMIN_TOKEN_LEN, DB_PASSWORD_LEN};

/// Where the secrets live. Nodes read them at boot with their instance role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secrets {
    /// Parameter or secret name of the DB master password.
    pub db_password: String,
    /// Parameter or secret name of the admin token.
    pub admin_token: String,
    /// ARNs, for the instance role's policy.
    pub arns: Vec<String>,
}

/// One existing secret (never its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub name: String,
    pub arn: String,
    pub state: FoundState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FoundState {
    Ok,
    /// An SSM parameter that is not a SecureString (its type).
    NotSecure(String),
    /// A Secrets Manager secret scheduled for deletion.
    ScheduledForDeletion,
}

#[derive(Debug, Clone, Default)]
pub struct Current {
    pub db_password: Option<Found>,
    pub admin_token: Option<Found>,
}

impl Current {
    /// Both secrets, when they exist and are usable.
    pub fn secrets(&self) -> Option<Secrets> {
        let usable = |f: &Option<Found>| {
            f.clone()
                .filter(|f| f.state != FoundState::ScheduledForDeletion)
        };
        let (db, admin) = (usable(&self.db_password)?, usable(&self.admin_token)?);
        Some(Secrets {
            arns: vec![db.arn, admin.arn],
            db_password: db.name,
            admin_token: admin.name,
        })
    }
}

pub(crate) fn kind(ctx: &Ctx) -> &'static str {
    match ctx.spec.config.secret_store {
        SecretStore::Ssm => "ssm-parameter",
        SecretStore::SecretsManager => "secret",
    }
}

/// (name, length) of both secrets.
fn wanted(ctx: &Ctx) -> [(String, usize); 2] {
    [
        (ctx.spec.db_password_secret(), DB_PASSWORD_LEN),
        (ctx.spec.admin_token_secret(), ADMIN_TOKEN_LEN),
    ]
}

pub async fn discover(ctx: &Ctx) -> Result<Current> {
    let [(db, _), (admin, _)] = wanted(ctx);
    Ok(Current {
        db_password: find(ctx, &db).await?,
        admin_token: find(ctx, &admin).await?,
    })
}

async fn find(ctx: &Ctx, name: &str) -> Result<Option<Found>> {
    match ctx.spec.config.secret_store {
        SecretStore::Ssm => {
            // Without decryption: only the type and ARN are used.
            let out = match ctx
                .ssm
                .get_parameter()
                .name(name)
                .with_decryption(false)
                .send()
                .await
            {
                Err(e) if e.code() == Some("ParameterNotFound") => return Ok(None),
                other => other.aws(format!("get ssm-parameter {name}"))?,
            };
            let p = out
                .parameter()
                .with_context(|| format!("ssm-parameter {name}: no parameter in the answer"))?;
            let arn = p
                .arn()
                .with_context(|| format!("ssm-parameter {name}: no ARN"))?;
            let kind = p.r#type().map(|t| t.as_str()).unwrap_or("(none)");
            let state = if kind == "SecureString" {
                FoundState::Ok
            } else {
                FoundState::NotSecure(kind.to_string())
            };
            Ok(Some(Found {
                name: name.to_string(),
                arn: arn.to_string(),
                state,
            }))
        }
        SecretStore::SecretsManager => {
            let out = match ctx
                .secretsmanager
                .describe_secret()
                .secret_id(name)
                .send()
                .await
            {
                Err(e) if e.code() == Some("ResourceNotFoundException") => return Ok(None),
                other => other.aws(format!("describe secret {name}"))?,
            };
            let arn = out
                .arn()
                .with_context(|| format!("secret {name}: no ARN"))?;
            let state = if out.deleted_date().is_some() {
                FoundState::ScheduledForDeletion
            } else {
                FoundState::Ok
            };
            Ok(Some(Found {
                name: name.to_string(),
                arn: arn.to_string(),
                state,
            }))
        }
    }
}

/// The plan for one secret; values are never compared.
fn compare(kind: &str, name: &str, found: Option<&Found>) -> Change {
    let resource = format!("{kind} {name}");
    let Some(found) = found else {
        return Change::create(resource);
    };
    state_diff(found).into_change(resource)
}

/// What differs in how a secret is kept (never its value).
fn state_diff(found: &Found) -> Diff {
    let mut diff = Diff::default();
    match &found.state {
        FoundState::Ok => {}
        FoundState::NotSecure(t) => {
            diff.field("type", Some(t.as_str()), Some("SecureString"));
        }
        FoundState::ScheduledForDeletion => {
            diff.field("state", Some("scheduled for deletion"), Some("active"));
        }
    }
    diff
}

pub fn plan(ctx: &Ctx, current: &Current) -> Vec<Change> {
    let [(db, _), (admin, _)] = wanted(ctx);
    vec![
        compare(kind(ctx), &db, current.db_password.as_ref()),
        compare(kind(ctx), &admin, current.admin_token.as_ref()),
    ]
}

/// Creates the missing secrets (never overwrites an existing value).
pub async fn converge(ctx: &Ctx, current: &Current) -> Result<Secrets> {
    let [(db, db_len), (admin, admin_len)] = wanted(ctx);
    let db = converge_one(ctx, &db, db_len, current.db_password.as_ref()).await?;
    let admin = converge_one(ctx, &admin, admin_len, current.admin_token.as_ref()).await?;
    Ok(Secrets {
        arns: vec![db.arn, admin.arn],
        db_password: db.name,
        admin_token: admin.name,
    })
}

async fn converge_one(ctx: &Ctx, name: &str, len: usize, found: Option<&Found>) -> Result<Found> {
    let kind = kind(ctx);
    match found.map(|f| &f.state) {
        None => {
            let value = generate(len)?;
            create(ctx, name, &value).await?;
            let found = find(ctx, name)
                .await?
                .with_context(|| format!("{kind} {name}: not found after creating it"))?;
            ctx.progress.line(format!("created {kind} {name}"));
            Ok(found)
        }
        Some(FoundState::Ok) => Ok(found.cloned().context("checked above")?),
        Some(FoundState::NotSecure(_)) => {
            // Same value, stored encrypted. Tags cannot go with Overwrite; they stay.
            let value = read(ctx, name).await?;
            let put = ctx
                .ssm
                .put_parameter()
                .name(name)
                .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
                .value(&value.0)
                .overwrite(true);
            redact(
                put.send().await.aws(format!("update {kind} {name}")),
                &value,
            )?;
            ctx.progress
                .line(format!("updated {kind} {name} (now a SecureString)"));
            find(ctx, name)
                .await?
                .with_context(|| format!("{kind} {name}: gone after updating it"))
        }
        Some(FoundState::ScheduledForDeletion) => {
            ctx.secretsmanager
                .restore_secret()
                .secret_id(name)
                .send()
                .await
                .aws(format!("restore {kind} {name}"))?;
            ctx.progress.line(format!(
                "restored {kind} {name} (it was scheduled for deletion)"
            ));
            find(ctx, name)
                .await?
                .with_context(|| format!("{kind} {name}: gone after restoring it"))
        }
    }
}

/// Stores a new secret `name` with `value`, tagged with the stack.
async fn create(ctx: &Ctx, name: &str, value: &SecretValue) -> Result<()> {
    let kind = kind(ctx);
    match ctx.spec.config.secret_store {
        SecretStore::Ssm => {
            let mut put = ctx
                .ssm
                .put_parameter()
                .name(name)
                .description(format!(
                    "{} stack: generated by the provisioner",
                    ctx.spec.stack
                ))
                .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
                .value(&value.0)
                .overwrite(false);
            for (k, v) in ctx.tags(name) {
                put = put.tags(aws_sdk_ssm::types::Tag::builder().key(k).value(v).build()?);
            }
            redact(put.send().await.aws(format!("create {kind} {name}")), value)?;
        }
        SecretStore::SecretsManager => {
            let mut create = ctx
                .secretsmanager
                .create_secret()
                .name(name)
                .description(format!(
                    "{} stack: generated by the provisioner",
                    ctx.spec.stack
                ))
                .secret_string(&value.0);
            for (k, v) in ctx.tags(name) {
                create = create.tags(
                    aws_sdk_secretsmanager::types::Tag::builder()
                        .key(k)
                        .value(v)
                        .build(),
                );
            }
            redact(
                create.send().await.aws(format!("create {kind} {name}")),
                value,
            )?;
        }
    }
    Ok(())
}

async fn read(ctx: &Ctx, name: &str) -> Result<SecretValue> {
    let kind = kind(ctx);
    let value = match ctx.spec.config.secret_store {
        SecretStore::Ssm => {
            let out = ctx
                .ssm
                .get_parameter()
                .name(name)
                .with_decryption(true)
                .send()
                .await
                .aws(format!("read {kind} {name}"))?;
            out.parameter().and_then(|p| p.value()).map(str::to_string)
        }
        SecretStore::SecretsManager => {
            let out = ctx
                .secretsmanager
                .get_secret_value()
                .secret_id(name)
                .send()
                .await
                .aws(format!("read {kind} {name}"))?;
            out.secret_string().map(str::to_string)
        }
    };
    match value {
        Some(v) if !v.is_empty() => Ok(SecretValue(v)),
        _ => bail!("{kind} {name} has no value; delete it and run again to generate a new one"),
    }
}

/// The DB master password, for creating the RDS instance.
pub async fn db_password(ctx: &Ctx, secrets: &Secrets) -> Result<SecretValue> {
    read(ctx, &secrets.db_password).await
}

/// The Admin API token.
pub async fn admin_token(ctx: &Ctx, secrets: &Secrets) -> Result<SecretValue> {
    read(ctx, &secrets.admin_token).await
}

pub async fn delete(ctx: &Ctx, current: &Current) -> Result<()> {
    for found in [&current.db_password, &current.admin_token]
        .into_iter()
        .flatten()
    {
        delete_one(ctx, found).await?;
    }
    Ok(())
}

/// Deletes only the admin token: the DB password stays while a final snapshot, which
/// restores with it, is kept.
pub async fn delete_admin_token(ctx: &Ctx, current: &Current) -> Result<()> {
    match &current.admin_token {
        Some(found) => delete_one(ctx, found).await,
        None => Ok(()),
    }
}

async fn delete_one(ctx: &Ctx, found: &Found) -> Result<()> {
    let kind = kind(ctx);
    let name = &found.name;
    let gone = match ctx.spec.config.secret_store {
        SecretStore::Ssm => match ctx.ssm.delete_parameter().name(name).send().await {
            Err(e) if e.code() == Some("ParameterNotFound") => true,
            other => other.aws(format!("delete {kind} {name}")).map(|_| false)?,
        },
        // No recovery window: an `up` after `down` can create the same name again.
        SecretStore::SecretsManager => {
            let del = ctx
                .secretsmanager
                .delete_secret()
                .secret_id(name)
                .force_delete_without_recovery(true);
            match del.send().await {
                Err(e) if e.code() == Some("ResourceNotFoundException") => true,
                other => other.aws(format!("delete {kind} {name}")).map(|_| false)?,
            }
        }
    };
    if !gone {
        ctx.progress.line(format!("deleted {kind} {name}"));
    }
    Ok(())
}

pub fn status(current: &Current) -> Vec<Status> {
    [&current.db_password, &current.admin_token]
        .into_iter()
        .flatten()
        .map(|f| {
            let state = match &f.state {
                FoundState::Ok => "present".to_string(),
                FoundState::NotSecure(t) => format!("stored as {t}, not SecureString"),
                FoundState::ScheduledForDeletion => "scheduled for deletion".to_string(),
            };
            Status::new(format!("secret {}", f.name), Some(f.arn.clone()), state)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Action;

    #[test]
    fn plan_creates_missing_and_never_compares_values() {
        let found = |state| Found {
            name: "/gw/x".into(),
            arn: "arn:x".into(),
            state,
        };
        assert_eq!(
            compare("ssm-parameter", "/gw/x", None).action,
            Action::Create
        );
        assert_eq!(
            compare("ssm-parameter", "/gw/x", Some(&found(FoundState::Ok))).action,
            Action::Unchanged
        );
        let c = compare(
            "ssm-parameter",
            "/gw/x",
            Some(&found(FoundState::NotSecure("String".into()))),
        );
        assert_eq!(
            (c.action, c.fields[0].field.as_str()),
            (Action::Update, "type")
        );
        let c = compare(
            "secret",
            "/gw/x",
            Some(&found(FoundState::ScheduledForDeletion)),
        );
        assert_eq!(c.action, Action::Update);
        assert_eq!(c.resource, "secret /gw/x");
    }
}
