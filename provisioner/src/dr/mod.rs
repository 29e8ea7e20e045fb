//! Cross-region disaster recovery. `up` keeps a pilot light in the DR region (`[dr]
//! region`): a KMS key for the copies, the stack's secrets, the gateway artifact, and
//! the primary's automated backups replicated there. The DR region's key, secret
//! copies and bucket carry the same names as the primary's, so a failover is the same
//! stack converged in the DR region with a restored database, and a drill is a copy of
//! it under another name that borrows them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;

use crate::artifacts;
use crate::context::Ctx;
use crate::database::{self, instance::Instance, kms};
use crate::plan::{Change, Status};
use crate::secrets::{self, copy::Copies};
use crate::stack::Binary;

pub mod drill;
pub mod failback;
pub mod failover;
pub mod fingerprint;
pub mod replication;
pub mod state;
pub mod steps;

use replication::Replica;

/// The DR region's prerequisites as found.
#[derive(Debug, Clone, Default)]
pub struct Current {
    pub key: Option<kms::Key>,
    pub secrets: Copies,
    pub artifacts: artifacts::Current,
    pub replica: Option<Replica>,
}

pub async fn discover(
    dr: &Ctx,
    primary: &Ctx,
    primary_secrets: &secrets::Current,
    primary_db: Option<&Instance>,
    sha256: &str,
) -> Result<Current> {
    let (key, copies, artifacts, replica) = tokio::try_join!(
        kms::discover(dr),
        secrets::copy::discover_copies(primary, primary_secrets, dr),
        artifacts::discover(dr, sha256),
        async {
            match primary_db {
                Some(db) => replication::discover(dr, db).await,
                None => Ok(None),
            }
        },
    )?;
    Ok(Current {
        key,
        secrets: copies,
        artifacts,
        replica,
    })
}

/// A resource's name with the DR region, so its rows differ from the primary's.
fn in_region(dr: &Ctx, resource: String) -> String {
    let suffix = format!(" in {}", dr.spec.region);
    if resource.ends_with(&suffix) {
        resource
    } else {
        resource + &suffix
    }
}

fn change_in_region(dr: &Ctx, mut change: Change) -> Change {
    change.resource = in_region(dr, change.resource);
    change
}

pub fn plan(dr: &Ctx, current: &Current, primary_secrets_pending: bool) -> Vec<Change> {
    let mut all = vec![change_in_region(dr, kms::compare(dr, current.key.as_ref()))];
    if primary_secrets_pending {
        // The primary's secrets are about to be made: their copies follow.
        for name in [dr.spec.db_password_secret(), dr.spec.admin_token_secret()] {
            all.push(Change::create(format!(
                "{} {name} in {}",
                secrets::kind(dr),
                dr.spec.region
            )));
        }
    }
    all.extend(secrets::copy::plan(dr, &current.secrets));
    all.extend(
        artifacts::plan(dr, &current.artifacts)
            .into_iter()
            .map(|c| change_in_region(dr, c)),
    );
    let key_arn = current.key.as_ref().map(|k| k.arn.as_str());
    all.push(replication::plan(dr, current.replica.as_ref(), key_arn));
    all
}

/// Converges the DR region once the primary's secrets, artifact and database exist.
pub async fn converge(
    dr: &Ctx,
    primary: &Ctx,
    current: &Current,
    binary: &Binary,
    primary_db: &str,
) -> Result<()> {
    let (key_arn, (), _) = tokio::try_join!(
        kms::converge(dr, current.key.as_ref()),
        async {
            // Found again: on a first `up` the primary's secrets did not exist at discovery.
            let source = secrets::discover(primary).await?;
            let copies = secrets::copy::discover_copies(primary, &source, dr).await?;
            secrets::copy::converge(primary, dr, &copies).await
        },
        artifacts::converge(dr, &current.artifacts, &binary.path, &binary.sha256),
    )?;
    let source = database::instance::describe(primary, primary_db)
        .await?
        .ok_or_else(|| anyhow::anyhow!("db-instance {primary_db} is gone; run `up` again"))?;
    let replica = replication::discover(dr, &source).await?;
    // kms::converge enabled the key (or failed): replication finds it usable.
    replication::converge(dr, &source, &key_arn, replica.as_ref()).await
}

pub fn status(dr: &Ctx, current: &Current) -> Vec<Status> {
    let mut out: Vec<Status> = Vec::new();
    let relabel = |mut s: Status| {
        s.resource = in_region(dr, s.resource);
        s
    };
    out.extend(database::status_of_key(current.key.as_ref()).map(relabel));
    out.extend(secrets::copy::status(dr, &current.secrets));
    out.extend(
        artifacts::status(&current.artifacts)
            .into_iter()
            .map(relabel),
    );
    if let Some(replica) = &current.replica {
        out.push(replication::status(dr, replica, now()));
    }
    out
}

/// Removes the pilot light. While snapshots in the DR region are encrypted with the DR
/// key (copies made by `backup create`), the key and the password copy they restore
/// with stay, as `down` keeps the primary's for its final snapshot.
pub async fn delete(dr: &Ctx, current: &Current, source_arn: Option<&str>) -> Result<()> {
    if let (Some(arn), Some(_)) = (source_arn, &current.replica) {
        replication::stop(dr, arn).await?;
    }
    let users = match &current.key {
        Some(key) => database::snapshots_using(dr, &dr.spec.db_identifier(), &key.arn).await?,
        None => Vec::new(),
    };
    secrets::copy::delete(dr, &current.secrets, !users.is_empty()).await?;
    artifacts::delete(dr, &current.artifacts).await?;
    match &current.key {
        Some(key) if users.is_empty() => kms::delete(dr, key).await?,
        Some(key) => dr.progress.line(format!(
            "kept kms-key {} ({}) in {}: snapshot {} is encrypted with it",
            kms::alias(dr),
            key.key_id,
            dr.spec.region,
            users.join(", ")
        )),
        None => {}
    }
    Ok(())
}

/// Seconds since the epoch, now.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// `1h02m`, `3m05s`, `42s`: an age or a duration for people.
pub fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// A target for people: `15m`.
pub fn target(d: Duration) -> String {
    humantime_serde::re::humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_well() {
        assert_eq!(age(-3), "0s");
        assert_eq!(age(42), "42s");
        assert_eq!(age(185), "3m05s");
        assert_eq!(age(3720), "1h02m");
        assert_eq!(target(Duration::from_secs(900)), "15m");
    }
}
