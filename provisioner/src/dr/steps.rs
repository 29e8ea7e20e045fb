//! The recovery steps a drill and a failover share: what the DR region must hold, where
//! the data comes from, reading a database, waiting for the nodes, and the first request
//! through the ELB, each timed as a phase.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::Serialize;

use super::fingerprint::{self, Fingerprint};
use super::replication;
use crate::aws::AwsResultExt;
use crate::balancer;
use crate::context::Ctx;
use crate::database::{kms, restore::Source, Database};
use crate::probe::{self, Resolver};
use crate::progress::Poll;
use crate::secrets;
use crate::spec::Spec;

/// How long the nodes may take to pass the ELB's health check, and the canary to answer.
const NODES_LIMIT: Duration = Duration::from_secs(20 * 60);
const CANARY_LIMIT: Duration = Duration::from_secs(5 * 60);
/// The body of the gateway's own 404: the route is not in the configuration.
const NO_ROUTE: &str = "no Route matched";

#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub name: String,
    pub seconds: f64,
}

/// The canary request through an ELB, by name.
#[derive(Debug, Clone, Serialize)]
pub struct Canary {
    pub path: String,
    pub url: String,
    pub status: Option<u16>,
    pub address: Option<String>,
    pub served: bool,
}

impl Canary {
    /// What was served, or None with a note saying what was seen instead.
    pub fn served_or_note(&self, notes: &mut Vec<String>) -> Option<String> {
        if !self.served {
            notes.push(format!(
                "{} was not served yet: {}",
                self.url,
                self.describe()
            ));
        }
        self.served.then(|| self.describe())
    }

    pub fn describe(&self) -> String {
        match (self.status, &self.address) {
            (Some(status), Some(address)) => format!("GET {} -> {status} from {address}", self.url),
            _ => format!("GET {} -> no answer", self.url),
        }
    }
}

/// The stack in the DR region during a failover: same name, the pilot light's key,
/// secrets and bucket (which it does not own), no DR region of its own.
pub fn standby_spec(primary: &Spec, region: &str) -> Spec {
    let mut spec = Spec {
        region: region.to_string(),
        borrows_from: Some(primary.owner().to_string()),
        ..primary.clone()
    };
    spec.config.dr = None;
    spec
}

/// The DR region's prerequisites the drill (and a failover) borrow; errors name them.
pub async fn preflight(dr: &Ctx) -> Result<String> {
    let region = &dr.spec.region;
    let key = kms::discover(dr).await?;
    let key = match key {
        Some(k) if k.state == "Enabled" => k,
        Some(k) => bail!(
            "the DR region {region} has the KMS key {} but it is {}: run `provisioner up` to repair the DR region",
            kms::alias(dr),
            k.state
        ),
        None => bail!(
            "the DR region {region} has no KMS key {}: run `provisioner up --dr-region {region}` first",
            kms::alias(dr)
        ),
    };
    let found = secrets::discover(dr).await?;
    if found.secrets().is_none() {
        bail!(
            "the DR region {region} lacks the stack's secrets ({} and {}): run `provisioner up --dr-region {region}` first",
            dr.spec.db_password_secret(),
            dr.spec.admin_token_secret()
        );
    }
    Ok(key.arn)
}

/// Where the restored data comes from, and its restore point when known ahead.
pub async fn source(
    dr: &Ctx,
    primary_region: &str,
    snapshot: Option<&str>,
) -> Result<(Source, Option<i64>)> {
    let region = &dr.spec.region;
    if let Some(id) = snapshot {
        let out = match dr.rds.describe_db_snapshots().db_snapshot_identifier(id).send().await {
            Err(e) if e.code() == Some("DBSnapshotNotFound") => bail!(
                "snapshot {id} is not in {region}: `provisioner backup list` shows the stack's snapshots and copies"
            ),
            other => other.aws(format!("describe db-snapshot {id} in {region}"))?,
        };
        let snap = out
            .db_snapshots()
            .first()
            .with_context(|| format!("snapshot {id} is not in {region}"))?;
        if snap.status() != Some("available") {
            bail!(
                "snapshot {id} in {region} is {}, not available",
                snap.status().unwrap_or("unknown")
            );
        }
        let created = snap.snapshot_create_time().map(|t| t.secs());
        return Ok((Source::Snapshot(id.to_string()), created));
    }
    let replica = replication::find_from_dr(dr, primary_region).await?.with_context(|| {
        format!(
            "{region} holds no replicated backups of {}: run `provisioner up --dr-region {region}` to start replication, \
             or pass --snapshot with a copied backup",
            dr.spec.db_identifier()
        )
    })?;
    Ok((
        Source::PointInTime {
            backups_arn: replica.arn.clone(),
            time: None,
        },
        replica.latest,
    ))
}

/// Reads a database with the password from `secrets_ctx`'s region.
pub async fn read_database(
    secrets_ctx: &Ctx,
    gateway: &Path,
    db: &Database,
) -> Result<Fingerprint> {
    let found = secrets::discover(secrets_ctx).await?;
    let names = found.secrets().context("the stack's secrets are missing")?;
    let password = secrets::db_password(secrets_ctx, &names).await?;
    fingerprint::read(gateway, db, &password).await
}

/// Waits until at least one node is InService behind the ELB.
pub async fn wait_in_service(ctx: &Ctx, elb: &str) -> Result<()> {
    ctx.progress
        .wait(&format!("elb {elb}"), NODES_LIMIT, || async {
            let n = balancer::in_service(ctx, elb).await?;
            Ok(if n > 0 {
                Poll::Ready(())
            } else {
                Poll::Pending("no node InService yet".into())
            })
        })
        .await
}

/// Requests `path` through the ELB by its DNS name until the gateway answers it.
pub async fn serve_canary(ctx: &Ctx, resolver: &Resolver, host: &str, path: &str) -> Canary {
    let url = format!("http://{host}{path}");
    let label = format!("GET {url}");
    let progress = ctx.progress.clone();
    let mut last = String::new();
    let answer = probe::wait_served(
        resolver,
        host,
        80,
        path,
        CANARY_LIMIT,
        // A 5xx is the ELB or a node not ready; the gateway's own 404 is definitive.
        |a| a.status < 500,
        |state: &str| {
            if state != last {
                progress.line(format!("{label}: {state}"));
                last = state.to_string();
            }
        },
    )
    .await;
    match answer {
        Ok(a) => Canary {
            path: path.to_string(),
            url,
            status: Some(a.status),
            address: Some(a.address.to_string()),
            served: !(a.status == 404 && a.body_prefix.contains(NO_ROUTE)),
        },
        Err(e) => {
            ctx.progress.line(format!("{label}: {e:#}"));
            Canary {
                path: path.to_string(),
                url,
                status: None,
                address: None,
                served: false,
            }
        }
    }
}
