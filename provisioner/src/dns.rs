//! DNS (optional): with `domain` and `hosted_zone_id`, a Route53 alias A record to the
//! ELB (a CNAME when the ELB's zone is unknown, as on some emulators).

use std::time::Duration;

use anyhow::{Context as _, Result};
use aws_sdk_route53::types::{
    AliasTarget, Change as R53Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecord,
    ResourceRecordSet, RrType,
};

use crate::aws::{AwsError, AwsResultExt};
use crate::balancer::Balancer;
use crate::context::Ctx;
use crate::plan::{Change, Diff, FieldDiff, Status};
use crate::progress::Poll;

/// TTL of the CNAME fallback.
pub const CNAME_TTL: i64 = 60;

#[derive(Debug, Clone, Default)]
pub struct Current {
    /// The configured domain and hosted zone; None when DNS is not configured.
    pub domain: Option<String>,
    pub hosted_zone_id: Option<String>,
    /// The A or CNAME record at the domain, as Route53 has it.
    pub record: Option<ResourceRecordSet>,
}

/// A record reduced to what the stack compares.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shape {
    kind: String,
    target: String,
    alias_zone: Option<String>,
    ttl: Option<i64>,
    evaluate_target_health: Option<bool>,
}

/// Lower case, no trailing dot, Route53's `\052` back to `*`, no `dualstack.` prefix.
fn normalize(name: &str) -> String {
    let name = name
        .trim_end_matches('.')
        .to_ascii_lowercase()
        .replace("\\052", "*");
    name.strip_prefix("dualstack.")
        .map(str::to_string)
        .unwrap_or(name)
}

fn shape(record: &ResourceRecordSet) -> Shape {
    let alias = record.alias_target();
    Shape {
        kind: record.r#type().as_str().to_string(),
        target: match alias {
            Some(a) => normalize(a.dns_name()),
            None => record
                .resource_records()
                .iter()
                .map(|r| normalize(r.value()))
                .collect::<Vec<_>>()
                .join(" "),
        },
        alias_zone: alias.map(|a| a.hosted_zone_id().to_string()),
        ttl: record.ttl(),
        evaluate_target_health: alias.map(|a| a.evaluate_target_health()),
    }
}

fn desired_shape(balancer: &Balancer) -> Shape {
    let target = normalize(&balancer.dns_name);
    match &balancer.canonical_hosted_zone_id {
        Some(zone) => Shape {
            kind: "A".into(),
            target,
            alias_zone: Some(zone.clone()),
            ttl: None,
            evaluate_target_health: Some(true),
        },
        None => Shape {
            kind: "CNAME".into(),
            target,
            alias_zone: None,
            ttl: Some(CNAME_TTL),
            evaluate_target_health: None,
        },
    }
}

fn differences(current: &Shape, want: &Shape) -> Vec<FieldDiff> {
    let mut d = Diff::default();
    d.field("type", Some(&current.kind), Some(&want.kind))
        .field("target", Some(&current.target), Some(&want.target))
        .field(
            "alias_zone",
            current.alias_zone.as_ref(),
            want.alias_zone.as_ref(),
        )
        .field("ttl", current.ttl, want.ttl)
        .field(
            "evaluate_target_health",
            current.evaluate_target_health,
            want.evaluate_target_health,
        );
    d.0
}

fn record_set(domain: &str, want: &Shape) -> Result<ResourceRecordSet> {
    let builder = ResourceRecordSet::builder().name(domain);
    let record = match &want.alias_zone {
        Some(zone) => builder.r#type(RrType::A).alias_target(
            AliasTarget::builder()
                .hosted_zone_id(zone)
                .dns_name(&want.target)
                .evaluate_target_health(true)
                .build()?,
        ),
        None => builder
            .r#type(RrType::Cname)
            .ttl(CNAME_TTL)
            .resource_records(ResourceRecord::builder().value(&want.target).build()?),
    };
    Ok(record.build()?)
}

/// Finds the record; does nothing (an empty Current) when no domain is configured.
pub async fn discover(ctx: &Ctx) -> Result<Current> {
    let config = &ctx.spec.config;
    let (Some(domain), Some(zone)) = (&config.domain, &config.hosted_zone_id) else {
        return Ok(Current::default());
    };
    let wanted = normalize(domain);
    let mut record = None;
    let mut start = Some((domain.clone(), None::<RrType>, None::<String>));
    while let Some((name, kind, identifier)) = start.take() {
        let out = ctx
            .route53
            .list_resource_record_sets()
            .hosted_zone_id(zone)
            .start_record_name(name)
            .set_start_record_type(kind)
            .set_start_record_identifier(identifier)
            .max_items(20)
            .send()
            .await
            .aws(format!("list records of hosted zone {zone}"))?;
        record = record.or_else(|| {
            out.resource_record_sets()
                .iter()
                .find(|r| {
                    normalize(r.name()) == wanted
                        && r.set_identifier().is_none()
                        && matches!(r.r#type(), RrType::A | RrType::Cname)
                })
                .cloned()
        });
        let past = out
            .resource_record_sets()
            .last()
            .is_some_and(|r| normalize(r.name()) != wanted);
        if out.is_truncated() && !past && record.is_none() {
            if let Some(next) = out.next_record_name() {
                start = Some((
                    next.to_string(),
                    out.next_record_type().cloned(),
                    out.next_record_identifier().map(str::to_string),
                ));
            }
        }
    }
    Ok(Current {
        domain: Some(wanted),
        hosted_zone_id: Some(zone.clone()),
        record,
    })
}

pub fn plan(_ctx: &Ctx, current: &Current, balancer: Option<&Balancer>) -> Vec<Change> {
    let Some(domain) = &current.domain else {
        return Vec::new();
    };
    let resource = format!("route53-record {domain}");
    let change = match (&current.record, balancer) {
        (None, _) => Change::create(resource),
        (Some(record), Some(balancer)) => {
            Diff(differences(&shape(record), &desired_shape(balancer))).into_change(resource)
        }
        // The ELB is still to be created: the record will point to it.
        (Some(record), None) => Change::compare(
            resource,
            vec![FieldDiff {
                field: "target".into(),
                current: Some(shape(record).target),
                desired: Some("(the ELB this run creates)".into()),
            }],
        ),
    };
    vec![change]
}

/// Upserts the record; returns the name, or None when no domain is configured.
pub async fn converge(ctx: &Ctx, current: &Current, balancer: &Balancer) -> Result<Option<String>> {
    let (Some(domain), Some(zone)) = (&current.domain, &current.hosted_zone_id) else {
        return Ok(None);
    };
    let want = desired_shape(balancer);
    let changes = match &current.record {
        Some(record) if differences(&shape(record), &want).is_empty() => {
            return Ok(Some(domain.clone()))
        }
        // A CNAME cannot sit beside an A record: swap types in one batch.
        Some(record) if record.r#type().as_str() != want.kind => vec![
            change(ChangeAction::Delete, record.clone())?,
            change(ChangeAction::Create, record_set(domain, &want)?)?,
        ],
        _ => vec![change(ChangeAction::Upsert, record_set(domain, &want)?)?],
    };
    submit(ctx, zone, domain, changes).await?;
    let verb = if current.record.is_some() {
        "updated"
    } else {
        "created"
    };
    ctx.progress.line(format!(
        "{verb} route53-record {domain} ({} -> {})",
        want.kind, want.target
    ));
    Ok(Some(domain.clone()))
}

fn change(action: ChangeAction, record: ResourceRecordSet) -> Result<R53Change> {
    Ok(R53Change::builder()
        .action(action)
        .resource_record_set(record)
        .build()?)
}

/// Sends one change batch and waits until Route53 reports it INSYNC.
async fn submit(ctx: &Ctx, zone: &str, domain: &str, changes: Vec<R53Change>) -> Result<()> {
    let out = ctx
        .route53
        .change_resource_record_sets()
        .hosted_zone_id(zone)
        .change_batch(ChangeBatch::builder().set_changes(Some(changes)).build()?)
        .send()
        .await
        .aws(format!("change route53-record {domain}"))?;
    let info = out.change_info().with_context(|| {
        format!("route53-record {domain}: ChangeResourceRecordSets gave no ChangeInfo")
    })?;
    if *info.status() == ChangeStatus::Insync {
        return Ok(());
    }
    let id = info.id().to_string();
    let label = format!("route53-record {domain}");
    ctx.progress
        .wait(&label, Duration::from_secs(600), || {
            let id = id.clone();
            async move {
                let out = ctx
                    .route53
                    .get_change()
                    .id(&id)
                    .send()
                    .await
                    .aws(format!("get route53 change {id}"))?;
                Ok(match out.change_info().map(|i| i.status()) {
                    Some(ChangeStatus::Insync) => Poll::Ready(()),
                    Some(status) => Poll::Pending(status.as_str().to_lowercase()),
                    None => Poll::Pending("unknown".into()),
                })
            }
        })
        .await
}

/// Deletes the record when it points at `balancer` (this stack's ELB in this region).
/// A record that points elsewhere (after a failover, at the other region's ELB) stays.
pub async fn delete(ctx: &Ctx, current: &Current, balancer: Option<&Balancer>) -> Result<()> {
    let (Some(domain), Some(zone), Some(record)) =
        (&current.domain, &current.hosted_zone_id, &current.record)
    else {
        return Ok(());
    };
    let target = shape(record).target;
    if balancer.is_none_or(|b| normalize(&b.dns_name) != target) {
        ctx.progress.line(format!(
            "left route53-record {domain}: it points at {target}, not at this stack's ELB in {}",
            ctx.spec.region
        ));
        return Ok(());
    }
    match submit(
        ctx,
        zone,
        domain,
        vec![change(ChangeAction::Delete, record.clone())?],
    )
    .await
    {
        Ok(()) => {}
        // Already gone (or changed) since discover.
        Err(e)
            if AwsError::code_of(&e) == Some("InvalidChangeBatch")
                && e.to_string().contains("not found") =>
        {
            return Ok(());
        }
        Err(e) => return Err(e),
    }
    ctx.progress
        .line(format!("deleted route53-record {domain}"));
    Ok(())
}

pub fn status(current: &Current) -> Vec<Status> {
    let Some(domain) = &current.domain else {
        return Vec::new();
    };
    let resource = format!("route53-record {domain}");
    match &current.record {
        None => vec![Status::new(resource, None, "missing")],
        Some(record) => {
            let s = shape(record);
            vec![
                Status::new(resource, current.hosted_zone_id.clone(), "present")
                    .detail("type", s.kind)
                    .detail("target", s.target),
            ]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balancer(zone: Option<&str>) -> Balancer {
        Balancer {
            name: "gw-elb".into(),
            dns_name: "gw-elb-123.us-east-1.elb.amazonaws.com".into(),
            canonical_hosted_zone_id: zone.map(str::to_string),
        }
    }

    #[test]
    fn alias_when_the_zone_is_known_else_cname() {
        let alias = desired_shape(&balancer(Some("Z35SXDOTRQ7X7K")));
        let record = record_set("api.example.com", &alias).unwrap();
        assert_eq!(record.r#type(), &RrType::A);
        let target = record.alias_target().unwrap();
        assert_eq!(target.hosted_zone_id(), "Z35SXDOTRQ7X7K");
        assert!(target.evaluate_target_health());
        assert_eq!(shape(&record), alias);

        let cname = desired_shape(&balancer(None));
        let record = record_set("api.example.com", &cname).unwrap();
        assert_eq!(record.r#type(), &RrType::Cname);
        assert_eq!(record.ttl(), Some(60));
        assert_eq!(shape(&record), cname);
    }

    #[test]
    fn route53_spellings_compare_equal() {
        let aws_form = ResourceRecordSet::builder()
            .name("api.example.com.")
            .r#type(RrType::A)
            .alias_target(
                AliasTarget::builder()
                    .hosted_zone_id("Z35SXDOTRQ7X7K")
                    .dns_name("dualstack.GW-ELB-123.us-east-1.elb.amazonaws.com.")
                    .evaluate_target_health(true)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let want = desired_shape(&balancer(Some("Z35SXDOTRQ7X7K")));
        assert!(differences(&shape(&aws_form), &want).is_empty());
        assert_eq!(normalize("\\052.example.com."), "*.example.com");
    }

    #[test]
    fn a_type_switch_names_the_fields() {
        let cname = record_set("api.example.com", &desired_shape(&balancer(None))).unwrap();
        let want = desired_shape(&balancer(Some("Z1")));
        let fields: Vec<String> = differences(&shape(&cname), &want)
            .into_iter()
            .map(|f| f.field)
            .collect();
        assert_eq!(
            fields,
            ["type", "alias_zone", "ttl", "evaluate_target_health"]
        );
    }
}
