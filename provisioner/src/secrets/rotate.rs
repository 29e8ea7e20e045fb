//! `provisioner secrets rotate`: a new DB master password and/or Admin API token,
//! without a failed proxied request and without restarting a node.
//!
//! The nodes re-read both secrets every `secret_refresh_seconds`
//! (`gateway-secrets.service`) and the gateway re-reads its password file when a
//! login fails, so rotation only has to change the stored values in an order that
//! can be resumed:
//!
//! 1. the new DB password is stored first, as `<name>-pending` (a run that finds a
//!    pending value resumes with it instead of generating another);
//! 2. ModifyDBInstance sets it as the master password (ApplyImmediately), and the
//!    instance is waited for until it is available with nothing pending;
//! 3. the pending value is promoted to the secret the nodes read, the DR copy (if
//!    any) follows, and the pending value is deleted.
//!
//! Between 2 and the nodes' next refresh, logins with the old password fail: pooled
//! database connections keep working, Admin API writes that need a new one may
//! answer 503, and proxied traffic, which never touches the database, is unaffected.
//! The admin token is simply replaced (and copied to the DR region). Values never
//! reach the output.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use serde::Serialize;

use super::{copy, create, delete_one, find, kind, read, redact, Found, FoundState, SecretValue};
use super::{generate, ADMIN_TOKEN_LEN, DB_PASSWORD_LEN};
use crate::aws::AwsResultExt;
use crate::context::Ctx;
use crate::progress::Poll;
use crate::spec::SecretStore;

/// How long the instance may take to apply the new password.
const WAIT_LIMIT: Duration = Duration::from_secs(30 * 60);

/// Which secrets to rotate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub db_password: bool,
    pub admin_token: bool,
}

impl Options {
    /// Neither flag means both.
    pub fn from_flags(db_password: bool, admin_token: bool) -> Options {
        if !db_password && !admin_token {
            return Options {
                db_password: true,
                admin_token: true,
            };
        }
        Options {
            db_password,
            admin_token,
        }
    }
}

/// The name of the value a DB password rotation in progress keeps.
pub fn pending_name(name: &str) -> String {
    format!("{name}-pending")
}

/// One step of a DB password rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Generate a value and store it as `<name>-pending`.
    StorePending,
    /// A pending value that cannot be used (scheduled for deletion) goes first.
    DropUnusablePending,
    /// ModifyDBInstance MasterUserPassword (ApplyImmediately).
    SetDbPassword,
    /// Until the instance is available with no change pending.
    WaitAvailable,
    /// The pending value becomes the secret the nodes read.
    Promote,
    /// The DR region's copy follows.
    CopyToDr,
    DeletePending,
}

/// The steps of a DB password rotation, given the pending value found at the start
/// (if any) and whether the stack has a DR region. A readable pending value means an
/// earlier run stopped somewhere after storing it: the database may already have it,
/// so the run resumes with that value, and every later step is safe to repeat.
pub fn db_steps(pending: Option<&FoundState>, dr: bool) -> (bool, Vec<Step>) {
    use Step::*;
    let (resumed, mut steps) = match pending {
        None => (false, vec![StorePending]),
        Some(FoundState::ScheduledForDeletion) => (false, vec![DropUnusablePending, StorePending]),
        Some(FoundState::Ok | FoundState::NotSecure(_)) => (true, vec![]),
    };
    steps.extend([SetDbPassword, WaitAvailable, Promote]);
    if dr {
        steps.push(CopyToDr);
    }
    steps.push(DeletePending);
    (resumed, steps)
}

#[derive(Debug, Clone, Serialize)]
pub struct Rotated {
    /// `db_password` or `admin_token`.
    pub secret: &'static str,
    /// Parameter or secret name (never the value).
    pub name: String,
    /// When the new value became the one nodes read (RFC 3339, UTC).
    pub at: String,
    /// An earlier, interrupted rotation was finished with its pending value.
    pub resumed: bool,
    /// Regions whose copy was updated too.
    pub copied_to: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub stack: String,
    pub region: String,
    pub rotated: Vec<Rotated>,
    /// Every node has the new values within this many seconds of `at`.
    pub nodes_refresh_within_seconds: u32,
}

impl Report {
    pub fn render_text(&self) -> String {
        let mut out = format!(
            "Rotated secrets of stack {} in {}:\n",
            self.stack, self.region
        );
        for r in &self.rotated {
            out.push_str(&format!(
                "  {:<12} {} at {}{}{}\n",
                r.secret,
                r.name,
                r.at,
                if r.resumed {
                    " (resumed an interrupted rotation)"
                } else {
                    ""
                },
                if r.copied_to.is_empty() {
                    String::new()
                } else {
                    format!(", copied to {}", r.copied_to.join(", "))
                }
            ));
        }
        out.push_str(&format!(
            "Nodes pick the new values up within {} s (secret_refresh_seconds); no restart needed.\n\
             Until then Admin API writes may answer 503; proxied traffic is unaffected.\n",
            self.nodes_refresh_within_seconds
        ));
        out
    }
}

pub async fn rotate(ctx: &Ctx, options: Options) -> Result<Report> {
    let kind = kind(ctx);
    for (wanted, name) in [
        (options.db_password, ctx.spec.db_password_secret()),
        (options.admin_token, ctx.spec.admin_token_secret()),
    ] {
        if wanted && find(ctx, &name).await?.is_none() {
            anyhow::bail!(
                "{kind} {name} does not exist in {}: is stack {:?} up? (`provisioner up` creates it)",
                ctx.spec.region,
                ctx.spec.stack
            );
        }
    }
    if options.db_password {
        // Before anything is stored: a missing instance would leave a pending value.
        let id = ctx.spec.db_identifier();
        let inst = crate::database::instance::describe(ctx, &id).await?;
        if inst.is_none() {
            anyhow::bail!(
                "db-instance {id} does not exist in {}: nothing to rotate the password of \
                 (`provisioner up` creates it; --admin-token rotates only the token)",
                ctx.spec.region
            );
        }
    }
    let dr = ctx.dr();
    let mut rotated = Vec::new();
    if options.db_password {
        rotated.push(rotate_db_password(ctx, dr.as_ref()).await?);
    }
    if options.admin_token {
        rotated.push(rotate_admin_token(ctx, dr.as_ref()).await?);
    }
    Ok(Report {
        stack: ctx.spec.stack.clone(),
        region: ctx.spec.region.clone(),
        rotated,
        nodes_refresh_within_seconds: ctx.spec.config.secret_refresh_seconds,
    })
}

async fn rotate_db_password(ctx: &Ctx, dr: Option<&Ctx>) -> Result<Rotated> {
    let kind = kind(ctx);
    let name = ctx.spec.db_password_secret();
    let pending = pending_name(&name);
    let found = find(ctx, &pending).await?;
    let (resumed, steps) = db_steps(found.as_ref().map(|f| &f.state), dr.is_some());
    let mut value: Option<SecretValue> = None;
    let mut at = String::new();
    let mut copied_to = Vec::new();
    if resumed {
        ctx.progress.line(format!(
            "found {kind} {pending}: resuming an interrupted rotation with its value"
        ));
        value = Some(read(ctx, &pending).await?);
    }
    for step in steps {
        match step {
            Step::DropUnusablePending => {
                if let Some(f) = &found {
                    delete_one(ctx, f).await?;
                }
            }
            Step::StorePending => {
                let v = generate(DB_PASSWORD_LEN)?;
                create(ctx, &pending, &v).await?;
                ctx.progress.line(format!(
                    "stored the new DB password as {kind} {pending} (a rerun resumes with it)"
                ));
                value = Some(v);
            }
            Step::SetDbPassword => {
                let v = value.as_ref().context("no pending value")?;
                set_master_password(ctx, v).await?;
            }
            Step::WaitAvailable => wait_applied(ctx).await?,
            Step::Promote => {
                let v = value.as_ref().context("no pending value")?;
                put(ctx, &name, v).await?;
                at = now_rfc3339();
                ctx.progress.line(format!(
                    "updated {kind} {name}: nodes read it within {} s",
                    ctx.spec.config.secret_refresh_seconds
                ));
            }
            Step::CopyToDr => {
                if let Some(dr) = dr {
                    copy_to_dr(ctx, dr, &name).await?;
                    copied_to.push(dr.spec.region.clone());
                }
            }
            Step::DeletePending => {
                if let Some(f) = find(ctx, &pending).await? {
                    delete_one(ctx, &f).await?;
                }
            }
        }
    }
    Ok(Rotated {
        secret: "db_password",
        name,
        at,
        resumed,
        copied_to,
    })
}

async fn rotate_admin_token(ctx: &Ctx, dr: Option<&Ctx>) -> Result<Rotated> {
    let kind = kind(ctx);
    let name = ctx.spec.admin_token_secret();
    let value = generate(ADMIN_TOKEN_LEN)?;
    put(ctx, &name, &value).await?;
    let at = now_rfc3339();
    ctx.progress.line(format!(
        "updated {kind} {name}: nodes accept only the new token within {} s",
        ctx.spec.config.secret_refresh_seconds
    ));
    let mut copied_to = Vec::new();
    if let Some(dr) = dr {
        copy_to_dr(ctx, dr, &name).await?;
        copied_to.push(dr.spec.region.clone());
    }
    Ok(Rotated {
        secret: "admin_token",
        name,
        at,
        resumed: false,
        copied_to,
    })
}

/// ModifyDBInstance MasterUserPassword, applied immediately.
async fn set_master_password(ctx: &Ctx, value: &SecretValue) -> Result<()> {
    let id = ctx.spec.db_identifier();
    redact(
        ctx.rds
            .modify_db_instance()
            .db_instance_identifier(&id)
            .master_user_password(&value.0)
            .apply_immediately(true)
            .send()
            .await
            .aws(format!("modify db-instance {id} (master password)")),
        value,
    )?;
    ctx.progress.line(format!(
        "set the new master password on db-instance {id} (applied immediately)"
    ));
    Ok(())
}

/// Until the instance is `available` and no master password change is pending.
async fn wait_applied(ctx: &Ctx) -> Result<()> {
    let id = ctx.spec.db_identifier();
    ctx.progress
        .wait(&format!("rds {id}"), WAIT_LIMIT, || async {
            let out = ctx
                .rds
                .describe_db_instances()
                .db_instance_identifier(&id)
                .send()
                .await
                .aws(format!("describe db-instance {id}"))?;
            let inst = out
                .db_instances()
                .first()
                .with_context(|| format!("db-instance {id} does not exist"))?;
            let status = inst.db_instance_status().unwrap_or("unknown");
            let pending = inst
                .pending_modified_values()
                .is_some_and(|p| p.master_user_password().is_some());
            Ok(match (status, pending) {
                ("available", false) => Poll::Ready(()),
                ("available", true) => Poll::Pending("available, password change pending".into()),
                (s, _) => Poll::Pending(s.to_string()),
            })
        })
        .await?;
    ctx.progress.line(format!("db-instance {id} is available"));
    Ok(())
}

/// Replaces the value of the existing secret `name`.
async fn put(ctx: &Ctx, name: &str, value: &SecretValue) -> Result<()> {
    let kind = kind(ctx);
    match ctx.spec.config.secret_store {
        SecretStore::Ssm => redact(
            ctx.ssm
                .put_parameter()
                .name(name)
                .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
                .value(&value.0)
                .overwrite(true)
                .send()
                .await
                .map(|_| ())
                .aws(format!("update {kind} {name}")),
            value,
        ),
        SecretStore::SecretsManager => redact(
            ctx.secretsmanager
                .put_secret_value()
                .secret_id(name)
                .secret_string(&value.0)
                .send()
                .await
                .map(|_| ())
                .aws(format!("update {kind} {name}")),
            value,
        ),
    }
}

/// The DR region's copy of `name` takes the primary's (new) value.
async fn copy_to_dr(ctx: &Ctx, dr: &Ctx, name: &str) -> Result<()> {
    let found: Option<Found> = find(ctx, name).await?;
    let source = if *name == ctx.spec.db_password_secret() {
        super::Current {
            db_password: found,
            admin_token: None,
        }
    } else {
        super::Current {
            db_password: None,
            admin_token: found,
        }
    };
    let copies = copy::discover_copies(ctx, &source, dr).await?;
    copy::converge(ctx, dr, &copies).await
}

fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    crate::dr::replication::rfc3339(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Step::*;

    #[test]
    fn a_fresh_rotation_stores_the_pending_value_before_touching_the_database() {
        let (resumed, steps) = db_steps(None, false);
        assert!(!resumed);
        assert_eq!(
            steps,
            [
                StorePending,
                SetDbPassword,
                WaitAvailable,
                Promote,
                DeletePending
            ]
        );
    }

    #[test]
    fn a_pending_value_is_resumed_not_replaced() {
        for state in [FoundState::Ok, FoundState::NotSecure("String".into())] {
            let (resumed, steps) = db_steps(Some(&state), true);
            assert!(resumed);
            assert!(!steps.contains(&StorePending), "{steps:?}");
            assert_eq!(
                steps,
                [
                    SetDbPassword,
                    WaitAvailable,
                    Promote,
                    CopyToDr,
                    DeletePending
                ]
            );
        }
    }

    #[test]
    fn an_unusable_pending_value_is_dropped_first() {
        let (resumed, steps) = db_steps(Some(&FoundState::ScheduledForDeletion), false);
        assert!(!resumed);
        assert_eq!(
            &steps[..3],
            [DropUnusablePending, StorePending, SetDbPassword]
        );
    }

    #[test]
    fn the_promotion_comes_after_the_database_and_before_the_cleanup() {
        for pending in [None, Some(FoundState::Ok)] {
            let (_, steps) = db_steps(pending.as_ref(), true);
            let at = |s| steps.iter().position(|x| *x == s).unwrap();
            assert!(at(SetDbPassword) < at(WaitAvailable));
            assert!(at(WaitAvailable) < at(Promote));
            assert!(at(Promote) < at(CopyToDr));
            assert!(at(CopyToDr) < at(DeletePending));
        }
    }

    #[test]
    fn flags_choose_the_secrets() {
        assert_eq!(
            Options::from_flags(false, false),
            Options {
                db_password: true,
                admin_token: true
            }
        );
        assert_eq!(
            Options::from_flags(true, false),
            Options {
                db_password: true,
                admin_token: false
            }
        );
        assert_eq!(
            pending_name("/gw/db/master-password"),
            "/gw/db/master-password-pending"
        );
    }

    #[test]
    fn the_report_names_secrets_never_values() {
        let r = Report {
            stack: "gw".into(),
            region: "us-east-1".into(),
            rotated: vec![Rotated {
                secret: "db_password",
                name: "/gw/db/master-password".into(),
                at: "2026-01-01T00:00:00Z".into(),
                resumed: true,
                copied_to: vec!["us-west-2".into()],
            }],
            nodes_refresh_within_seconds: 30,
        };
        let text = r.render_text();
        assert!(
            text.contains("/gw/db/master-password at 2026-01-01T00:00:00Z"),
            "{text}"
        );
        assert!(
            text.contains("within 30 s") && text.contains("resumed"),
            "{text}"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["nodes_refresh_within_seconds"], 30);
        assert_eq!(json["rotated"][0]["copied_to"][0], "us-west-2");
    }
}
