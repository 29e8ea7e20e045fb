//! `provisioner dr drill`: proves the backups restore into a serving stack, without
//! touching the primary. It stands up `<stack>-drill` in the DR region from the
//! replicated backups (or a snapshot), checks the restored data against the primary,
//! serves the canary route through the drill's own ELB, reports RTO by phase and RPO,
//! and tears the copy down.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result};
use serde::Serialize;

use super::fingerprint::Fingerprint;
use super::steps::{
    preflight, read_database, serve_canary, source, wait_in_service, Canary, Phase,
};
use super::{age, now, replication, target};
use crate::context::Ctx;
use crate::database::{self, restore::Source, Database};
use crate::probe::Resolver;
use crate::stack::{self, Binary, DownOptions};

pub struct Options {
    pub snapshot: Option<String>,
    pub keep: bool,
    pub canary_path: String,
    pub report: Option<PathBuf>,
    pub resolver: Resolver,
}

/// The restored data against the primary's.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DataCheck {
    pub matched: bool,
    pub restored_counts: std::collections::BTreeMap<String, i64>,
    pub primary_counts: Option<std::collections::BTreeMap<String, i64>>,
    pub restored_hash: Option<String>,
    pub primary_hash: Option<String>,
    /// Whether the hashes must be equal: the primary has not changed since the restore point.
    pub hash_expected_equal: bool,
    /// Entities the primary had at the restore point that the restored database lacks.
    pub missing: Vec<String>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub stack: String,
    pub drill_stack: String,
    pub region: String,
    pub source: String,
    /// The newest data in the restored database (RFC 3339).
    pub restore_point: Option<String>,
    pub started_at: String,
    pub rto_seconds: Option<f64>,
    pub rto_target_seconds: u64,
    pub phases: Vec<Phase>,
    pub rpo_seconds: Option<i64>,
    pub rpo_target_seconds: u64,
    pub data: DataCheck,
    pub canary: Option<Canary>,
    pub passed: bool,
    pub failures: Vec<String>,
    pub kept: bool,
    pub report_file: Option<String>,
}

impl Report {
    pub fn render_text(&self) -> String {
        let mut out = format!(
            "DR drill of stack {} in {} from {}: {}\n",
            self.stack,
            self.region,
            self.source,
            if self.passed { "PASSED" } else { "FAILED" }
        );
        let secs = |s: Option<f64>| {
            s.map(|s| age(s.round() as i64))
                .unwrap_or_else(|| "-".into())
        };
        out.push_str(&format!(
            "  RTO {} (target {}), first request through {}\n",
            secs(self.rto_seconds),
            age(self.rto_target_seconds as i64),
            self.canary.as_ref().map(|c| c.url.as_str()).unwrap_or("-")
        ));
        for p in &self.phases {
            out.push_str(&format!(
                "    {:<14} {:>8}\n",
                p.name,
                age(p.seconds.round() as i64)
            ));
        }
        out.push_str(&format!(
            "  RPO {} (target {}), restore point {}\n",
            self.rpo_seconds.map(age).unwrap_or_else(|| "-".into()),
            age(self.rpo_target_seconds as i64),
            self.restore_point.as_deref().unwrap_or("-")
        ));
        out.push_str(&format!(
            "  data: {}; restored {}\n",
            if self.data.matched {
                "match"
            } else {
                "MISMATCH"
            },
            counts(&self.data.restored_counts)
        ));
        if let Some(p) = &self.data.primary_counts {
            out.push_str(&format!("        primary now {}\n", counts(p)));
        }
        for m in &self.data.missing {
            out.push_str(&format!("        missing: {m}\n"));
        }
        for n in &self.data.notes {
            out.push_str(&format!("        note: {n}\n"));
        }
        if let Some(c) = &self.canary {
            out.push_str(&format!(
                "  canary {}: {}\n",
                c.path,
                match (c.served, c.status) {
                    (true, Some(s)) => format!("served ({s}) through the drill ELB"),
                    (false, Some(s)) => format!("NOT served ({s})"),
                    _ => "NOT served (no answer)".into(),
                }
            ));
        }
        for f in &self.failures {
            out.push_str(&format!("  FAILED: {f}\n"));
        }
        out.push_str(&format!(
            "  drill stack {}: {}\n",
            self.drill_stack,
            if self.kept {
                "kept (--keep); remove it with `provisioner down`"
            } else {
                "removed"
            }
        ));
        if let Some(f) = &self.report_file {
            out.push_str(&format!("  report: {f}\n"));
        }
        out
    }

    pub fn render_markdown(&self) -> String {
        let mut md = format!(
            "# DR drill: stack `{}` in {}\n\n**Result: {}** (started {}, restored from {})\n\n",
            self.stack,
            self.region,
            if self.passed { "passed" } else { "FAILED" },
            self.started_at,
            self.source
        );
        md.push_str("| Measure | Value | Target |\n|---|---|---|\n");
        md.push_str(&format!(
            "| RTO (to the first request through the ELB) | {} | {} |\n",
            self.rto_seconds
                .map(|s| age(s.round() as i64))
                .unwrap_or_else(|| "-".into()),
            age(self.rto_target_seconds as i64)
        ));
        md.push_str(&format!(
            "| RPO (age of the newest restored data) | {} | {} |\n\n",
            self.rpo_seconds.map(age).unwrap_or_else(|| "-".into()),
            age(self.rpo_target_seconds as i64)
        ));
        md.push_str("## RTO by phase\n\n| Phase | Time |\n|---|---|\n");
        for p in &self.phases {
            md.push_str(&format!(
                "| {} | {} |\n",
                p.name,
                age(p.seconds.round() as i64)
            ));
        }
        md.push_str(&format!(
            "\n## Data\n\n- restored: {}\n- primary now: {}\n- configuration hash: restored `{}`, primary `{}`{}\n",
            counts(&self.data.restored_counts),
            self.data.primary_counts.as_ref().map(counts).unwrap_or_else(|| "not readable".into()),
            self.data.restored_hash.as_deref().unwrap_or("-"),
            self.data.primary_hash.as_deref().unwrap_or("-"),
            if self.data.hash_expected_equal { " (must be equal)" } else { "" }
        ));
        for m in &self.data.missing {
            md.push_str(&format!("- **missing**: {m}\n"));
        }
        for n in &self.data.notes {
            md.push_str(&format!("- note: {n}\n"));
        }
        if let Some(c) = &self.canary {
            md.push_str(&format!(
                "\n## Canary\n\n`GET {}` through `{}`: {}\n",
                c.path,
                c.url,
                match c.status {
                    Some(s) => format!("{s}{}", if c.served { "" } else { " (not served)" }),
                    None => "no answer".into(),
                }
            ));
        }
        if !self.failures.is_empty() {
            md.push_str("\n## Failures\n\n");
            for f in &self.failures {
                md.push_str(&format!("- {f}\n"));
            }
        }
        md
    }
}

fn counts(c: &std::collections::BTreeMap<String, i64>) -> String {
    if c.is_empty() {
        return "nothing".into();
    }
    c.iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The restored data against the primary's: every entity the primary had at the restore
/// point must be there; with no change on the primary since, the hashes must match.
pub fn compare(
    primary: Option<&Fingerprint>,
    restored: &Fingerprint,
    canary_path: &str,
) -> DataCheck {
    let mut check = DataCheck {
        restored_counts: restored.counts.clone().unwrap_or_default(),
        primary_counts: primary.and_then(|p| p.counts.clone()),
        restored_hash: restored.configuration_hash.clone(),
        primary_hash: primary.and_then(|p| p.configuration_hash.clone()),
        ..DataCheck::default()
    };
    if !restored.bootstrapped() {
        check.missing.push(
            "the gateway's schema: the restored database is empty (not bootstrapped); the backup holds no gateway data"
                .into(),
        );
        return check;
    }
    let point = restored.newest_data_at();
    if let Some(p) = primary {
        let kinds = p
            .entities
            .as_ref()
            .map(|e| e.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        for kind in kinds {
            let have: std::collections::BTreeSet<&str> =
                restored.of(&kind).iter().map(|e| e.id.as_str()).collect();
            for e in p.of(&kind) {
                let existed = match (e.created_at, point) {
                    (Some(c), Some(pt)) => c <= pt,
                    _ => true,
                };
                if existed && !have.contains(e.id.as_str()) {
                    let label = e.name.clone().unwrap_or_else(|| e.id.clone());
                    check.missing.push(format!(
                        "{} {label} ({})",
                        kind.trim_end_matches('s'),
                        e.id
                    ));
                }
            }
        }
        let unchanged = match (p.newest_change_at, point) {
            (Some(changed), Some(pt)) => changed <= pt,
            (None, _) => true,
            _ => false,
        };
        check.hash_expected_equal = unchanged;
        if unchanged && p.configuration_hash != restored.configuration_hash {
            check.missing.push(format!(
                "the primary's configuration (hash {} restored, {} on the primary, which has not changed since the restore point)",
                restored.configuration_hash.as_deref().unwrap_or("-"),
                p.configuration_hash.as_deref().unwrap_or("-")
            ));
        }
        if !unchanged {
            check.notes.push("the primary changed after the restore point; entities created since are not expected".into());
        }
    } else {
        check.notes.push("the primary's database was not readable from here: only the restored data and the canary were checked".into());
    }
    let has_canary = restored.of("routes").iter().any(|r| {
        r.paths
            .as_ref()
            .is_some_and(|p| p.iter().any(|p| p == canary_path))
    });
    if !has_canary {
        let created = primary.and_then(|p| {
            p.of("routes")
                .iter()
                .find(|r| {
                    r.paths
                        .as_ref()
                        .is_some_and(|ps| ps.iter().any(|x| x == canary_path))
                })
                .and_then(|r| r.created_at)
        });
        check.missing.push(match created {
            Some(c) => format!(
                "the canary route {canary_path}: the primary created it at {}, after the restore point {}",
                replication::rfc3339(c),
                point.map(replication::rfc3339).unwrap_or_else(|| "-".into())
            ),
            None => format!(
                "the canary route {canary_path}: no route has that path (create one on the primary, e.g. a route \
                 /dr-canary to a service http://127.0.0.1:8001/status, or pass --canary-path)"
            ),
        });
    }
    check.matched = check.missing.is_empty();
    check
}

/// Runs the drill; the drill stack is removed afterwards (also on failure) unless `keep`.
pub async fn run(ctx: &Ctx, binary: &Binary, options: &Options) -> Result<Report> {
    let dr_config = ctx
        .spec
        .config
        .dr
        .clone()
        .context("no DR region: set [dr] region in stack.toml or pass --dr-region")?;
    let dr = ctx.for_region(&dr_config.region);
    let drill = ctx.for_spec(ctx.spec.drill_copy(&dr_config.region));
    preflight(&dr).await?;
    let (source, _) = source(&dr, &ctx.spec.region, options.snapshot.as_deref()).await?;
    // A drill stopped halfway leaves its copy: start from nothing.
    let leftover = stack::status(&drill).await?;
    if leftover.resources.iter().any(|r| r.state != "missing") {
        ctx.progress.line(format!(
            "stack {} is left from an earlier drill: removing it first",
            drill.spec.stack
        ));
        teardown(&drill).await?;
    }
    // The primary as it is now, to compare with (best effort: it may be unreachable).
    let primary = match database::instance::describe(ctx, &ctx.spec.db_identifier()).await {
        Ok(Some(inst)) => match Database::of(&inst) {
            Some(db) => read_database(ctx, &binary.path, &db)
                .await
                .map_err(|e| format!("{e:#}")),
            None => Err(format!("db-instance {} is {}", inst.id, inst.status)),
        },
        Ok(None) => Err(format!(
            "no db-instance {} in {}",
            ctx.spec.db_identifier(),
            ctx.spec.region
        )),
        Err(e) => Err(format!("{e:#}")),
    };
    let started = Instant::now();
    let started_at = now();
    ctx.progress.line(format!(
        "drill: restoring {} into stack {} in {} from {}",
        ctx.spec.db_identifier(),
        drill.spec.stack,
        drill.spec.region,
        source.describe()
    ));
    let outcome = exercise(
        &drill,
        binary,
        &source,
        options,
        primary.as_ref().ok(),
        started,
    )
    .await;
    let kept = options.keep;
    if !kept {
        teardown(&drill).await?;
    }
    let mut ex = outcome?;
    if let Err(why) = &primary {
        ex.data
            .notes
            .push(format!("the primary was not read: {why}"));
    }
    let rpo_target = dr_config.rpo_target.as_secs();
    let rto_target = dr_config.rto_target.as_secs();
    let rpo = ex.restore_point.map(|p| started_at - p);
    let mut failures = Vec::new();
    if !ex.data.matched {
        failures.push(format!(
            "the restored data does not match: missing {}",
            ex.data.missing.join("; ")
        ));
    }
    if !ex.canary.served {
        failures.push(format!(
            "the canary {} was not served through the drill ELB ({})",
            ex.canary.path,
            ex.canary
                .status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "no answer".into())
        ));
    }
    match ex.rto {
        Some(rto) if rto > rto_target as f64 => failures.push(format!(
            "RTO {} exceeds the target {}",
            age(rto.round() as i64),
            target(dr_config.rto_target)
        )),
        _ => {}
    }
    match rpo {
        Some(r) if r > rpo_target as i64 => failures.push(format!(
            "RPO {} exceeds the target {}",
            age(r),
            target(dr_config.rpo_target)
        )),
        None => failures
            .push("the RPO is unknown: the restored database holds no timestamped data".into()),
        _ => {}
    }
    let mut report = Report {
        stack: ctx.spec.stack.clone(),
        drill_stack: drill.spec.stack.clone(),
        region: drill.spec.region.clone(),
        source: source.describe(),
        restore_point: ex.restore_point.map(replication::rfc3339),
        started_at: replication::rfc3339(started_at),
        rto_seconds: ex.rto,
        rto_target_seconds: rto_target,
        phases: ex.phases,
        rpo_seconds: rpo,
        rpo_target_seconds: rpo_target,
        data: ex.data,
        canary: Some(ex.canary),
        passed: failures.is_empty(),
        failures,
        kept,
        report_file: None,
    };
    let path = options.report.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "dr-drill-{}-{}.md",
            ctx.spec.stack,
            replication::rfc3339(started_at).replace(':', "")
        ))
    });
    std::fs::write(&path, report.render_markdown())
        .with_context(|| format!("cannot write the drill report {}", path.display()))?;
    report.report_file = Some(path.display().to_string());
    Ok(report)
}

struct Exercised {
    phases: Vec<Phase>,
    rto: Option<f64>,
    restore_point: Option<i64>,
    data: DataCheck,
    canary: Canary,
}

/// Builds the drill stack, checks its data before its nodes write, then serves the canary.
async fn exercise(
    drill: &Ctx,
    binary: &Binary,
    source: &Source,
    options: &Options,
    primary: Option<&Fingerprint>,
    started: Instant,
) -> Result<Exercised> {
    let staged = stack::stage(drill, binary, source).await?;
    let since = |t: Instant| t.duration_since(started).as_secs_f64();
    let mut phases = vec![
        Phase {
            name: "network".into(),
            seconds: since(staged.network_ready),
        },
        Phase {
            name: "restore".into(),
            seconds: staged
                .database_ready
                .duration_since(staged.database_started)
                .as_secs_f64(),
        },
    ];
    // Read before the drill's own nodes write heartbeats: the newest data is the restore's.
    let restored = read_database(drill, &binary.path, &staged.inputs.db).await?;
    let data = compare(primary, &restored, &options.canary_path);
    let restore_point = restored.newest_data_at();
    let database_ready = staged.database_ready;
    let elb = staged.balancer.name.clone();
    let outputs = stack::finish(drill, binary, staged).await?;
    wait_in_service(drill, &elb).await?;
    let in_service = Instant::now();
    phases.push(Phase {
        name: "nodes".into(),
        seconds: in_service.duration_since(database_ready).as_secs_f64(),
    });
    let canary = serve_canary(
        drill,
        &options.resolver,
        &outputs.elb_dns_name,
        &options.canary_path,
    )
    .await;
    let served = Instant::now();
    phases.push(Phase {
        name: "first request".into(),
        seconds: served.duration_since(in_service).as_secs_f64(),
    });
    Ok(Exercised {
        rto: canary.served.then(|| since(served)),
        phases,
        restore_point,
        data,
        canary,
    })
}

/// Removes the drill stack (its database without a final snapshot: it is a copy).
async fn teardown(drill: &Ctx) -> Result<()> {
    let options = DownOptions {
        skip_final_snapshot: true,
        force: true,
    };
    stack::down(drill, &options).await.with_context(|| {
        format!(
            "removing the drill stack {} in {} failed; run `provisioner down --stack {} --region {} --force --skip-final-snapshot --yes`",
            drill.spec.stack, drill.spec.region, drill.spec.stack, drill.spec.region
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dr::fingerprint::{ClusterInfo, EntityRef};

    fn print(
        hash: &str,
        routes: &[(&str, i64, &str)],
        changed: i64,
        heartbeat: i64,
    ) -> Fingerprint {
        let mut entities = std::collections::BTreeMap::new();
        entities.insert(
            "routes".to_string(),
            routes
                .iter()
                .map(|(id, created, path)| EntityRef {
                    id: id.to_string(),
                    name: Some(format!("r-{id}")),
                    created_at: Some(*created),
                    updated_at: Some(*created),
                    paths: Some(vec![path.to_string()]),
                })
                .collect(),
        );
        let mut counts = std::collections::BTreeMap::new();
        counts.insert("routes".to_string(), routes.len() as i64);
        Fingerprint {
            configuration_hash: Some(hash.into()),
            counts: Some(counts),
            entities: Some(entities),
            newest_change_at: Some(changed),
            cluster: Some(ClusterInfo {
                newest_heartbeat_at: Some(heartbeat),
                nodes: 1,
            }),
            migrations: serde_json::json!({"bootstrapped": true, "executed": ["000_base"], "pending": []}),
        }
    }

    #[test]
    fn an_unchanged_primary_must_match_exactly() {
        let p = print("h1", &[("a", 100, "/dr-canary")], 100, 200);
        let r = print("h1", &[("a", 100, "/dr-canary")], 100, 190);
        let c = compare(Some(&p), &r, "/dr-canary");
        assert!(c.matched && c.hash_expected_equal, "{c:?}");
        let r = print("h2", &[("a", 100, "/dr-canary")], 100, 190);
        assert!(!compare(Some(&p), &r, "/dr-canary").matched);
    }

    #[test]
    fn entities_made_after_the_restore_point_are_not_expected() {
        let p = print(
            "h2",
            &[("a", 100, "/dr-canary"), ("b", 300, "/new")],
            300,
            400,
        );
        let r = print("h1", &[("a", 100, "/dr-canary")], 100, 200);
        let c = compare(Some(&p), &r, "/dr-canary");
        assert!(c.matched && !c.hash_expected_equal, "{c:?}");
        // b existed before this restore point: it is missing.
        let r = print("h1", &[("a", 100, "/dr-canary")], 100, 350);
        let c = compare(Some(&p), &r, "/dr-canary");
        assert!(!c.matched && c.missing[0].contains("r-b"), "{c:?}");
    }

    #[test]
    fn an_old_backup_says_the_canary_is_missing_and_why() {
        let p = print("h2", &[("a", 300, "/dr-canary")], 300, 400);
        let r = print("h0", &[], 50, 100);
        let c = compare(Some(&p), &r, "/dr-canary");
        assert!(!c.matched);
        assert!(
            c.missing
                .iter()
                .any(|m| m.contains("/dr-canary") && m.contains("after the restore point")),
            "{c:?}"
        );
        let empty = Fingerprint::default();
        let c = compare(Some(&p), &empty, "/dr-canary");
        assert!(!c.matched && c.missing[0].contains("empty"), "{c:?}");
    }
}
