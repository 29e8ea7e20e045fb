//! The stack's secrets, copied into the DR region under the same names. A database
//! restored there keeps the primary's master password, and its nodes read the password
//! and the admin token with their role in that region, so the values must be there
//! before the primary region fails. A converged copy (rather than Secrets Manager
//! replica regions) works the same for both stores, and `plan` shows a copy whose
//! value no longer matches (e.g. after a rotation) without ever printing a value.

use anyhow::{Context as _, Result};

use super::{create, discover, find, kind, read, Current, Found, FoundState};
use crate::aws::AwsResultExt;
use crate::context::Ctx;
use crate::plan::{Change, Status};
use crate::spec::SecretStore;

/// One copy: what exists in the DR region, and whether its value is the primary's
/// (None when either side cannot be read).
#[derive(Debug, Clone)]
pub struct Copy {
    pub name: String,
    pub found: Option<Found>,
    pub in_sync: Option<bool>,
}

#[derive(Debug, Clone, Default)]
pub struct Copies {
    pub copies: Vec<Copy>,
}

/// Reads the copies in `dr` of the secrets `primary` has.
pub async fn discover_copies(primary: &Ctx, source: &Current, dr: &Ctx) -> Result<Copies> {
    let there = discover(dr).await?;
    let mut copies = Vec::new();
    for (src, dst) in [
        (&source.db_password, there.db_password),
        (&source.admin_token, there.admin_token),
    ] {
        let Some(src) = src else { continue };
        let in_sync = match &dst {
            Some(d) if d.state == FoundState::Ok => {
                let (a, b) = tokio::try_join!(read(primary, &src.name), read(dr, &d.name))?;
                Some(a.0 == b.0)
            }
            _ => None,
        };
        copies.push(Copy {
            name: src.name.clone(),
            found: dst,
            in_sync,
        });
    }
    Ok(Copies { copies })
}

pub fn plan(dr: &Ctx, copies: &Copies) -> Vec<Change> {
    let kind = kind(dr);
    copies
        .copies
        .iter()
        .map(|c| {
            let resource = format!("{kind} {} in {}", c.name, dr.spec.region);
            let Some(found) = &c.found else {
                return Change::create(resource);
            };
            let mut diff = super::state_diff(found);
            if c.in_sync == Some(false) {
                diff.field(
                    "value",
                    Some("differs from the primary's"),
                    Some("the primary's"),
                );
            }
            diff.into_change(resource)
        })
        .collect()
}

/// Creates or repairs each copy from the primary's value.
pub async fn converge(primary: &Ctx, dr: &Ctx, copies: &Copies) -> Result<()> {
    let kind = kind(dr);
    for c in &copies.copies {
        let ok_and_same =
            c.found.as_ref().is_some_and(|f| f.state == FoundState::Ok) && c.in_sync == Some(true);
        if ok_and_same {
            continue;
        }
        let value = read(primary, &c.name).await?;
        match (&c.found, dr.spec.config.secret_store) {
            (None, _) => {
                create(dr, &c.name, &value).await?;
                dr.progress
                    .line(format!("copied {kind} {} to {}", c.name, dr.spec.region));
                continue;
            }
            (Some(f), SecretStore::SecretsManager) => {
                if f.state == FoundState::ScheduledForDeletion {
                    dr.secretsmanager
                        .restore_secret()
                        .secret_id(&c.name)
                        .send()
                        .await
                        .aws(format!("restore {kind} {} in {}", c.name, dr.spec.region))?;
                }
                super::redact(
                    dr.secretsmanager
                        .put_secret_value()
                        .secret_id(&c.name)
                        .secret_string(&value.0)
                        .send()
                        .await
                        .aws(format!("update {kind} {} in {}", c.name, dr.spec.region)),
                    &value,
                )?;
            }
            (Some(_), SecretStore::Ssm) => {
                super::redact(
                    dr.ssm
                        .put_parameter()
                        .name(&c.name)
                        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
                        .value(&value.0)
                        .overwrite(true)
                        .send()
                        .await
                        .aws(format!("update {kind} {} in {}", c.name, dr.spec.region)),
                    &value,
                )?;
            }
        }
        find(dr, &c.name).await?.with_context(|| {
            format!(
                "{kind} {} in {}: gone after updating it",
                c.name, dr.spec.region
            )
        })?;
        dr.progress.line(format!(
            "updated {kind} {} in {} (now the primary's value)",
            c.name, dr.spec.region
        ));
    }
    Ok(())
}

pub fn status(dr: &Ctx, copies: &Copies) -> Vec<Status> {
    copies
        .copies
        .iter()
        .filter_map(|c| {
            let f = c.found.as_ref()?;
            let state = match (&f.state, c.in_sync) {
                (FoundState::Ok, Some(false)) => "differs from the primary",
                (FoundState::Ok, _) => "present",
                (FoundState::NotSecure(_), _) => "not a SecureString",
                (FoundState::ScheduledForDeletion, _) => "scheduled for deletion",
            };
            Some(Status::new(
                format!("secret {} in {}", c.name, dr.spec.region),
                Some(f.arn.clone()),
                state,
            ))
        })
        .collect()
}

/// Deletes the copies (`keep_db_password`: while a final snapshot needs it).
pub async fn delete(dr: &Ctx, copies: &Copies, keep_db_password: bool) -> Result<()> {
    for c in &copies.copies {
        if keep_db_password && c.name == dr.spec.db_password_secret() {
            continue;
        }
        if let Some(found) = &c.found {
            super::delete_one(dr, found).await?;
        }
    }
    Ok(())
}
