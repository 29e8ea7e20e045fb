//! The stack: discover every concern, plan, and converge in dependency waves, with
//! independent steps in parallel. RDS is the long pole, so it starts as soon as its
//! subnets and security group exist, and the NAT gateways, the ELB and the instance
//! profile are built while it creates.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use crate::aws::AwsResultExt;
use crate::compute::NodeInputs;
use crate::context::Ctx;
use crate::plan::{Change, Plan, Status};
use crate::{artifacts, balancer, compute, database, dns, dr, network, secrets, security};

/// Everything the stack has now, found by tag.
pub struct Discovered {
    pub azs: Vec<String>,
    pub network: network::Current,
    pub security: security::Current,
    pub secrets: secrets::Current,
    pub database: database::Current,
    pub artifacts: artifacts::Current,
    pub compute: compute::Current,
    pub balancer: balancer::Current,
    pub dns: dns::Current,
    /// The DR region's prerequisites, when `[dr]` names a region.
    pub dr: Option<dr::Current>,
}

/// The gateway binary `up` ships, and its sha256.
pub struct Binary {
    pub path: PathBuf,
    pub sha256: String,
}

pub fn binary(ctx: &Ctx) -> Result<Binary> {
    let path = artifacts::locate_binary(ctx.spec.config.gateway_binary.as_deref())?;
    let sha256 = artifacts::sha256_file(&path)?;
    Ok(Binary { path, sha256 })
}

/// Fails early, with a hint, when the credentials or the endpoint do not work.
async fn preflight(ctx: &Ctx) -> Result<()> {
    ctx.sts
        .get_caller_identity()
        .send()
        .await
        .aws("check the AWS credentials (sts get-caller-identity)")?;
    Ok(())
}

/// Reads the whole stack, every concern at once.
pub async fn discover(ctx: &Ctx, sha256: &str) -> Result<Discovered> {
    preflight(ctx).await?;
    let (azs, network, security, secrets, database, artifacts, compute, balancer, dns) = tokio::try_join!(
        network::availability_zones(ctx),
        network::discover(ctx),
        security::discover(ctx),
        secrets::discover(ctx),
        database::discover(ctx),
        artifacts::discover(ctx, sha256),
        compute::discover(ctx),
        balancer::discover(ctx),
        dns::discover(ctx),
    )?;
    let mut database = database;
    if let (Some(net), Some(groups)) = (network.network(), security.groups()) {
        database.placement = database::Placement::new(&net, &groups);
    }
    let dr = match ctx.dr() {
        Some(dr_ctx) => {
            Some(dr::discover(&dr_ctx, ctx, &secrets, database.instance.as_ref(), sha256).await?)
        }
        None => None,
    };
    Ok(Discovered {
        dr,
        azs,
        network,
        security,
        secrets,
        database,
        artifacts,
        compute,
        balancer,
        dns,
    })
}

/// What `up` would do, from what exists.
pub fn plan_of(ctx: &Ctx, d: &Discovered) -> Plan {
    let mut all: Vec<Change> = Vec::new();
    all.extend(network::plan(ctx, &d.network, &d.azs));
    all.extend(security::plan(ctx, &d.security));
    all.extend(secrets::plan(ctx, &d.secrets));
    all.extend(database::plan(ctx, &d.database));
    all.extend(artifacts::plan(ctx, &d.artifacts));
    let (net, groups) = (d.network.network(), d.security.groups());
    all.extend(balancer::plan_with(
        ctx,
        &d.balancer,
        net.as_ref(),
        groups.as_ref(),
    ));
    all.extend(compute::plan(ctx, &d.compute, node_inputs(ctx, d).as_ref()));
    all.extend(dns::plan(ctx, &d.dns, d.balancer.balancer().as_ref()));
    if let (Some(dr_ctx), Some(current)) = (ctx.dr(), &d.dr) {
        let primary_secrets_pending = d.secrets.secrets().is_none();
        all.extend(dr::plan(&dr_ctx, current, primary_secrets_pending));
    }
    Plan::from_changes(all)
}

/// The nodes' inputs, when everything they are made from exists already (the binary's
/// artifact may be new: `up` uploads it first).
fn node_inputs(ctx: &Ctx, d: &Discovered) -> Option<NodeInputs> {
    Some(NodeInputs {
        net: d.network.network()?,
        groups: d.security.groups()?,
        db: d.database.database()?,
        artifact: d.artifacts.planned()?,
        secrets: d.secrets.secrets()?,
        elb_name: d.balancer.balancer().map(|_| ctx.spec.elb_name())?,
        instance_profile_arn: d.compute.instance_profile_arn()?,
    })
}

pub async fn plan(ctx: &Ctx, binary: &Binary) -> Result<Plan> {
    let d = discover(ctx, &binary.sha256).await?;
    Ok(plan_of(ctx, &d))
}

/// What `up` prints: where the stack is. Never a secret value, only names.
#[derive(Debug, Serialize)]
pub struct Outputs {
    pub stack: String,
    pub region: String,
    pub elb_dns_name: String,
    pub domain: Option<String>,
    pub rds_endpoint: String,
    pub vpc_id: String,
    pub public_subnet_ids: Vec<String>,
    pub private_subnet_ids: Vec<String>,
    pub asg_name: String,
    pub launch_template_version: i64,
    pub artifact: String,
    pub db_password_secret: String,
    pub admin_token_secret: String,
}

impl Outputs {
    pub fn render_text(&self) -> String {
        let mut out = format!("Stack {} is up in {}.\n", self.stack, self.region);
        let mut row = |k: &str, v: &str| out.push_str(&format!("  {k:<24} {v}\n"));
        row("elb_dns_name", &self.elb_dns_name);
        if let Some(domain) = &self.domain {
            row("domain", domain);
        }
        row("rds_endpoint", &self.rds_endpoint);
        row("vpc_id", &self.vpc_id);
        row("public_subnet_ids", &self.public_subnet_ids.join(","));
        row("private_subnet_ids", &self.private_subnet_ids.join(","));
        row("asg_name", &self.asg_name);
        row(
            "launch_template_version",
            &self.launch_template_version.to_string(),
        );
        row("artifact", &self.artifact);
        row("db_password_secret", &self.db_password_secret);
        row("admin_token_secret", &self.admin_token_secret);
        out
    }
}

/// Creates what is missing and repairs drift, wave by wave.
pub async fn up(ctx: &Ctx, binary: &Binary) -> Result<Outputs> {
    up_from(ctx, binary, &database::restore::Source::Empty).await
}

/// `up`, with a missing database restored from `source` rather than made empty (a DR
/// drill or failover). Once available, its settings are converged like drift.
pub async fn up_from(
    ctx: &Ctx,
    binary: &Binary,
    source: &database::restore::Source,
) -> Result<Outputs> {
    let staged = stage(ctx, binary, source).await?;
    finish(ctx, binary, staged).await
}

/// A stack converged up to its nodes: everything they are made from exists, and the
/// database is available. When each part became ready, for a drill's phases.
pub struct Staged {
    d: Discovered,
    pub inputs: NodeInputs,
    pub balancer: balancer::Balancer,
    pub network_ready: Instant,
    pub database_started: Instant,
    pub database_ready: Instant,
}

/// Waves 1 to 3 of `up`: the network, secrets, artifact, security groups, the database
/// (made, or restored from `source`), NAT, ELB and instance profile.
pub async fn stage(
    ctx: &Ctx,
    binary: &Binary,
    source: &database::restore::Source,
) -> Result<Staged> {
    let d = discover(ctx, &binary.sha256).await?;
    let plan = plan_of(ctx, &d);
    if plan.is_converged() {
        ctx.progress
            .line(format!("stack {}: nothing to change", ctx.spec.stack));
    } else {
        ctx.progress.line(format!(
            "stack {}: {} change(s) to make",
            ctx.spec.stack,
            plan.changes.len()
        ));
    }
    // Wave 1: what has no dependencies.
    let (net, secrets, artifact) = tokio::try_join!(
        network::converge_core(ctx, &d.network, &d.azs),
        secrets::converge(ctx, &d.secrets),
        artifacts::converge(ctx, &d.artifacts, &binary.path, &binary.sha256),
    )?;
    // Wave 2: the security groups, then RDS starts (the long pole).
    let groups = security::converge(ctx, &d.security, &net).await?;
    let network_ready = Instant::now();
    database::start(ctx, &d.database, &net, &groups, &secrets, source).await?;
    let database_started = Instant::now();
    // Wave 3: while RDS creates.
    let (db, (), balancer, instance_profile_arn) = tokio::try_join!(
        database::wait_available(ctx),
        network::converge_nat(ctx, &d.network, &net),
        balancer::converge(ctx, &d.balancer, &net, &groups),
        compute::converge_profile(ctx, &d.compute, &secrets, &artifact),
    )?;
    let database_ready = Instant::now();
    if d.database.instance.is_none() && *source != database::restore::Source::Empty {
        // What a restore cannot set (retention), set now: the instance exists.
        let mut found = database::discover(ctx).await?;
        found.placement = database::Placement::new(&net, &groups);
        database::start(ctx, &found, &net, &groups, &secrets, source).await?;
        database::wait_available(ctx).await?;
    }
    let inputs = NodeInputs {
        net,
        groups,
        db,
        artifact,
        secrets,
        elb_name: balancer.name.clone(),
        instance_profile_arn,
    };
    Ok(Staged {
        d,
        inputs,
        balancer,
        network_ready,
        database_started,
        database_ready,
    })
}

/// Wave 4 of `up`: the nodes, the DNS name, and the DR region's pilot light (which
/// needs the primary's secrets, artifact and database).
pub async fn finish(ctx: &Ctx, binary: &Binary, staged: Staged) -> Result<Outputs> {
    let Staged {
        d,
        inputs,
        balancer,
        ..
    } = staged;
    let dr_ctx = ctx.dr();
    let (nodes, domain, ()) = tokio::try_join!(
        compute::converge(ctx, &d.compute, &inputs),
        dns::converge(ctx, &d.dns, &balancer),
        async {
            match (&dr_ctx, &d.dr) {
                (Some(dr_ctx), Some(current)) => {
                    dr::converge(dr_ctx, ctx, current, binary, &inputs.db.identifier).await
                }
                _ => Ok(()),
            }
        },
    )?;
    Ok(Outputs {
        stack: ctx.spec.stack.clone(),
        region: ctx.spec.region.clone(),
        elb_dns_name: balancer.dns_name,
        domain,
        rds_endpoint: format!("{}:{}", inputs.db.address, inputs.db.port),
        vpc_id: inputs.net.vpc_id.clone(),
        public_subnet_ids: inputs.net.public.iter().map(|s| s.id.clone()).collect(),
        private_subnet_ids: inputs.net.private.iter().map(|s| s.id.clone()).collect(),
        asg_name: nodes.asg_name,
        launch_template_version: nodes.launch_template_version,
        artifact: format!("s3://{}/{}", inputs.artifact.bucket, inputs.artifact.key),
        db_password_secret: inputs.secrets.db_password.clone(),
        admin_token_secret: inputs.secrets.admin_token.clone(),
    })
}

/// Every resource and its state.
#[derive(Debug, Serialize)]
pub struct StackStatus {
    pub stack: String,
    pub region: String,
    pub resources: Vec<Status>,
}

impl StackStatus {
    pub fn render_text(&self) -> String {
        if self.resources.is_empty() {
            return format!(
                "Stack {} has no resources in {}.\n",
                self.stack, self.region
            );
        }
        let mut out = format!("Stack {} in {}:\n", self.stack, self.region);
        for s in &self.resources {
            out.push_str(&format!(
                "  {:<44} {:<14} {}\n",
                s.resource,
                s.state,
                s.id.as_deref().unwrap_or("-")
            ));
            for (k, v) in &s.details {
                out.push_str(&format!("      {k}: {v}\n"));
            }
        }
        out
    }
}

pub async fn status(ctx: &Ctx) -> Result<StackStatus> {
    let d = discover(ctx, "").await?;
    let mut resources = Vec::new();
    resources.extend(network::status(&d.network));
    resources.extend(security::status(&d.security));
    resources.extend(secrets::status(&d.secrets));
    resources.extend(database::status(&d.database));
    resources.extend(artifacts::status(&d.artifacts));
    resources.extend(balancer::status(&d.balancer));
    resources.extend(compute::status(&d.compute, &d.balancer.instance_health()));
    resources.extend(dns::status(&d.dns));
    if let (Some(dr_ctx), Some(current)) = (ctx.dr(), &d.dr) {
        resources.extend(dr::status(&dr_ctx, current));
        if let Some(active) = dr::state::newest(&[ctx, &dr_ctx]).await {
            resources.push(dr::state::status(&active));
        }
    }
    Ok(StackStatus {
        stack: ctx.spec.stack.clone(),
        region: ctx.spec.region.clone(),
        resources,
    })
}

pub struct DownOptions {
    pub skip_final_snapshot: bool,
    pub force: bool,
}

#[derive(Debug, Serialize)]
pub struct DownReport {
    pub stack: String,
    pub region: String,
    pub final_snapshot: Option<String>,
}

impl DownReport {
    pub fn render_text(&self) -> String {
        let mut out = format!("Stack {} is down in {}.\n", self.stack, self.region);
        if let Some(snapshot) = &self.final_snapshot {
            out.push_str(&format!(
                "  final DB snapshot: {snapshot} (kept, with its KMS key and the DB password secret)\n"
            ));
        }
        out
    }
}

/// Deletes in reverse dependency order. The database goes first among the slow
/// parts (after the nodes) and its final snapshot is kept, with what restoring it
/// needs: the KMS key and the master password secret.
pub async fn down(ctx: &Ctx, options: &DownOptions) -> Result<DownReport> {
    let d = discover(ctx, "").await?;
    // The DB refuses early (deletion protection without --force): check before
    // anything else is deleted, so a refused `down` loses nothing.
    database::check_deletable(ctx, &d.database, options.force)?;
    if let (Some(dr_ctx), Some(current)) = (ctx.dr(), &d.dr) {
        let source = d.database.instance.as_ref().map(|i| i.arn.as_str());
        dr::delete(&dr_ctx, current, source).await?;
        dr::state::delete(&dr_ctx).await?;
        dr::state::delete(ctx).await?;
    }
    let balancer = d.balancer.balancer();
    tokio::try_join!(
        compute::delete(ctx, &d.compute),
        dns::delete(ctx, &d.dns, balancer.as_ref())
    )?;
    // A drill copy borrows the key, the secrets and the bucket: they are not its to delete.
    let owns = ctx.spec.borrows_from.is_none();
    let mut db = d.database.clone();
    if !owns {
        db.key = None;
    }
    let (final_snapshot, ()) = tokio::try_join!(
        database::delete(ctx, &db, options.skip_final_snapshot, options.force),
        balancer::delete(ctx, &d.balancer),
    )?;
    match (owns, &final_snapshot) {
        (false, _) => {}
        (true, None) => secrets::delete(ctx, &d.secrets).await?,
        (true, Some(_)) => secrets::delete_admin_token(ctx, &d.secrets).await?,
    }
    tokio::try_join!(security::delete(ctx, &d.security), async {
        match owns {
            true => artifacts::delete(ctx, &d.artifacts).await,
            false => Ok(()),
        }
    })?;
    network::delete(ctx, &d.network).await?;
    Ok(DownReport {
        stack: ctx.spec.stack.clone(),
        region: ctx.spec.region.clone(),
        final_snapshot,
    })
}
