//! `provisioner dr failover`: Kong's AWS guide's five recovery steps, scripted. Fence the
//! primary if it answers, converge the stack (same name) in the DR region with its
//! database restored from the replicated backups, start the nodes against it, and point
//! the stack's DNS name at the DR ELB. Only the DR region's API is needed. The stack in
//! the DR region uses the pilot light's key, secrets and bucket (same names), and never
//! deletes them. Run again, it converges: what exists is kept.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde::Serialize;

use super::steps::{self, read_database, standby_spec, wait_in_service, Phase};
use super::{age, now, replication, state, target};
use crate::compute;
use crate::context::Ctx;
use crate::database::{instance, restore::Source};
use crate::probe::Resolver;
use crate::stack::{self, Binary};

/// How long a call to a region that may be down may take before it counts as down.
const FENCE_LIMIT: Duration = Duration::from_secs(20);

pub struct Options {
    pub to: String,
    pub snapshot: Option<String>,
    pub accept_data_loss: bool,
    pub resolver: Resolver,
    pub probe_path: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub stack: String,
    pub operation: String,
    pub from: String,
    pub to: String,
    pub changed: bool,
    pub fenced: String,
    pub source: Option<String>,
    pub restore_point: Option<String>,
    pub rto_seconds: Option<f64>,
    pub rto_target_seconds: u64,
    pub phases: Vec<Phase>,
    pub rpo_seconds: Option<i64>,
    pub rpo_target_seconds: u64,
    pub elb_dns_name: String,
    pub domain: Option<String>,
    pub first_request: Option<String>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn render_text(&self) -> String {
        let mut out = format!(
            "{} of stack {}: {} -> {}{}\n",
            self.operation,
            self.stack,
            self.from,
            self.to,
            if self.changed {
                ""
            } else {
                " (already done: nothing changed)"
            }
        );
        out.push_str(&format!("  primary fenced: {}\n", self.fenced));
        if let Some(s) = &self.source {
            out.push_str(&format!("  database restored from {s}\n"));
        }
        out.push_str(&format!(
            "  RTO {} (target {})\n",
            self.rto_seconds
                .map(|s| age(s.round() as i64))
                .unwrap_or_else(|| "-".into()),
            age(self.rto_target_seconds as i64)
        ));
        for p in &self.phases {
            out.push_str(&format!(
                "    {:<16} {:>8}\n",
                p.name,
                age(p.seconds.round() as i64)
            ));
        }
        if self.rpo_seconds.is_some() || self.restore_point.is_some() {
            out.push_str(&format!(
                "  RPO {} (target {}), restore point {}\n",
                self.rpo_seconds.map(age).unwrap_or_else(|| "-".into()),
                age(self.rpo_target_seconds as i64),
                self.restore_point.as_deref().unwrap_or("-")
            ));
        }
        out.push_str(&format!("  elb {}\n", self.elb_dns_name));
        if let Some(d) = &self.domain {
            out.push_str(&format!("  {d} now points at it (TTL 60 s)\n"));
        }
        if let Some(f) = &self.first_request {
            out.push_str(&format!("  first request: {f}\n"));
        }
        for n in &self.notes {
            out.push_str(&format!("  note: {n}\n"));
        }
        out
    }
}

pub async fn failover(ctx: &Ctx, binary: &Binary, options: &Options) -> Result<Report> {
    let dr_config = ctx
        .spec
        .config
        .dr
        .clone()
        .context("no DR region: set [dr] region in stack.toml or pass --dr-region")?;
    let to = options.to.clone();
    if to == ctx.spec.region {
        bail!(
            "--to {to} is the stack's primary region; fail over to the DR region ({})",
            dr_config.region
        );
    }
    let dr = ctx.for_spec(standby_spec(&ctx.spec, &to));
    let started = Instant::now();
    let started_at = now();
    steps::preflight(&dr).await?;
    let existing = instance::describe(&dr, &dr.spec.db_identifier()).await?;
    let (source, restore_point_hint) = match &existing {
        Some(_) => (None, None),
        None => {
            let (s, point) =
                steps::source(&dr, &ctx.spec.region, options.snapshot.as_deref()).await?;
            (Some(s), point)
        }
    };
    // Refuse to lose more than the target, unless told to.
    if source.is_some() {
        let achievable = restore_point_hint.map(|p| started_at - p);
        let limit = dr_config.rpo_target.as_secs() as i64;
        match achievable {
            Some(rpo) if rpo > limit && !options.accept_data_loss => bail!(
                "the newest restorable data in {to} is {} old, over the RPO target {}: nothing was changed. \
                 Pass --accept-data-loss to fail over anyway",
                age(rpo),
                target(dr_config.rpo_target)
            ),
            None if !options.accept_data_loss => bail!(
                "{to} has no restorable time for {}: nothing was changed. Pass --accept-data-loss to fail over anyway",
                ctx.spec.db_identifier()
            ),
            _ => {}
        }
    }
    // 1. Fence the primary, if its region answers.
    let primary = ctx.for_failing_region(&ctx.spec.region, FENCE_LIMIT);
    let fenced = match compute::fence(&primary).await {
        Ok(true) => "yes: its group was scaled to zero".to_string(),
        Ok(false) => "nothing to fence: the primary has no group".to_string(),
        Err(e) => {
            let why = format!("{e:#}");
            let first = why.lines().next().unwrap_or_default().to_string();
            ctx.progress.line(format!(
                "the primary region {} does not answer: not fenced ({first})",
                ctx.spec.region
            ));
            format!("no: {} did not answer ({first})", ctx.spec.region)
        }
    };
    let fenced_at = Instant::now();
    // 2-4. The network, ELB, group and the restored database in the DR region.
    let restoring = source.clone().unwrap_or(Source::Empty);
    let staged = stack::stage(&dr, binary, &restoring).await?;
    let mut phases = vec![
        Phase {
            name: "fence".into(),
            seconds: fenced_at.duration_since(started).as_secs_f64(),
        },
        Phase {
            name: "network".into(),
            seconds: staged.network_ready.duration_since(fenced_at).as_secs_f64(),
        },
        Phase {
            name: "restore".into(),
            seconds: staged
                .database_ready
                .duration_since(staged.database_started)
                .as_secs_f64(),
        },
    ];
    let mut notes = Vec::new();
    // The data's age, read before the new nodes write heartbeats.
    let restore_point = match &source {
        Some(_) => match read_database(&dr, &binary.path, &staged.inputs.db).await {
            Ok(f) if f.bootstrapped() => f.newest_data_at(),
            Ok(_) => bail!(
                "the restored database {} in {to} holds no gateway data (not bootstrapped): the backup is empty; \
                 the DR stack is left as it is for inspection",
                dr.spec.db_identifier()
            ),
            Err(e) => {
                notes.push(format!("the restored data was not read from here: {e:#}"));
                restore_point_hint
            }
        },
        None => None,
    };
    let database_ready = staged.database_ready;
    let elb = staged.balancer.name.clone();
    // 4-5. The nodes, and DNS switched to the DR ELB.
    let outputs = stack::finish(&dr, binary, staged).await?;
    wait_in_service(&dr, &elb).await?;
    let in_service = Instant::now();
    phases.push(Phase {
        name: "nodes".into(),
        seconds: in_service.duration_since(database_ready).as_secs_f64(),
    });
    let host = outputs
        .domain
        .clone()
        .unwrap_or_else(|| outputs.elb_dns_name.clone());
    let first = steps::serve_canary(&dr, &options.resolver, &host, &options.probe_path).await;
    let served = Instant::now();
    phases.push(Phase {
        name: "dns + first request".into(),
        seconds: served.duration_since(in_service).as_secs_f64(),
    });
    let first = first.served_or_note(&mut notes);
    // Where the stack lives now: in the DR region for sure, at home if it answers.
    let previous = state::read(&dr).await?;
    let changed = source.is_some() || previous.as_ref().is_none_or(|a| a.region != to);
    if changed {
        let active = state::Active {
            region: to.clone(),
            since: started_at,
            operation: "failover".into(),
            from: ctx.spec.region.clone(),
        };
        state::write(&dr, &active).await?;
        if let Err(e) = state::write(&primary, &active).await {
            notes.push(format!(
                "the record in {} was not updated: {}",
                ctx.spec.region,
                first_line(&e)
            ));
        }
    }
    Ok(Report {
        stack: ctx.spec.stack.clone(),
        operation: "failover".into(),
        from: ctx.spec.region.clone(),
        to,
        changed,
        fenced,
        source: source.as_ref().map(Source::describe),
        restore_point: restore_point.map(replication::rfc3339),
        rto_seconds: first
            .is_some()
            .then(|| served.duration_since(started).as_secs_f64()),
        rto_target_seconds: dr_config.rto_target.as_secs(),
        phases,
        rpo_seconds: source.as_ref().and(restore_point).map(|p| started_at - p),
        rpo_target_seconds: dr_config.rpo_target.as_secs(),
        elb_dns_name: outputs.elb_dns_name,
        domain: outputs.domain,
        first_request: first,
        notes,
    })
}

fn first_line(e: &anyhow::Error) -> String {
    format!("{e:#}")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}
