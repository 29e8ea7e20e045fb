//! The balancer and dns modules against the kit, checked through the raw ELB and
//! Route53 APIs: create, idempotent re-run, drift repair, delete.

mod common;

use std::collections::BTreeSet;

use aws_sdk_ec2::types::ResourceType;
use aws_sdk_elasticloadbalancing::error::ProvideErrorMetadata;
use aws_sdk_route53::types::RrType;
use provisioner::balancer;
use provisioner::context::Ctx;
use provisioner::dns;
use provisioner::network::{Network, Subnet};
use provisioner::plan::{Action, Change};
use provisioner::security::SecurityGroups;
use provisioner::spec::{StackConfig, STACK_TAG};

const REGION: &str = "us-east-1";

/// A VPC, two public subnets in two AZs and the ELB security group, made with raw EC2.
async fn fixture(ctx: &Ctx) -> (Network, SecurityGroups) {
    let ec2 = &ctx.ec2;
    let spec = &ctx.spec;
    let vpc = ec2
        .create_vpc()
        .cidr_block(&spec.config.vpc_cidr)
        .tag_specifications(ctx.ec2_tags(ResourceType::Vpc, &spec.name("vpc")))
        .send()
        .await
        .expect("CreateVpc");
    let vpc_id = vpc
        .vpc()
        .and_then(|v| v.vpc_id())
        .expect("vpc id")
        .to_string();
    let azs = ec2.describe_availability_zones().send().await.expect("AZs");
    let mut azs: Vec<String> = azs
        .availability_zones()
        .iter()
        .filter_map(|z| z.zone_name().map(str::to_string))
        .collect();
    azs.sort();
    let mut public = Vec::new();
    for (i, az) in azs.iter().take(2).enumerate() {
        let cidr = spec.subnet_cidr(i, true);
        let name = spec.name(&format!("public-{az}"));
        let out = ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block(&cidr)
            .availability_zone(az)
            .tag_specifications(ctx.ec2_tags(ResourceType::Subnet, &name))
            .send()
            .await
            .expect("CreateSubnet");
        let id = out.subnet().and_then(|s| s.subnet_id()).expect("subnet id");
        public.push(Subnet {
            id: id.to_string(),
            az: az.clone(),
            cidr,
        });
    }
    assert_eq!(public.len(), 2, "the kit region has 2 AZs");
    let sg = ec2
        .create_security_group()
        .vpc_id(&vpc_id)
        .group_name(spec.name("elb"))
        .description("test ELB group")
        .tag_specifications(ctx.ec2_tags(ResourceType::SecurityGroup, &spec.name("elb")))
        .send()
        .await
        .expect("CreateSecurityGroup");
    let sg = sg.group_id().expect("group id").to_string();
    let net = Network {
        vpc_id,
        vpc_cidr: spec.config.vpc_cidr.clone(),
        public,
        private: Vec::new(),
    };
    let groups = SecurityGroups {
        nodes: sg.clone(),
        db: sg.clone(),
        elb: sg,
    };
    (net, groups)
}

/// Removes whatever a test made, ignoring what is already gone.
async fn cleanup(stack: &str, net: &Network, groups: &SecurityGroups, zone: Option<&str>) {
    let conf = common::config(REGION).await;
    let elb = aws_sdk_elasticloadbalancing::Client::new(&conf);
    let _ = elb
        .delete_load_balancer()
        .load_balancer_name(format!("{stack}-elb"))
        .send()
        .await;
    if let Some(zone) = zone {
        let r53 = aws_sdk_route53::Client::new(&conf);
        for record in records(&r53, zone).await {
            if matches!(record.r#type(), RrType::Ns | RrType::Soa) {
                continue;
            }
            let change = aws_sdk_route53::types::Change::builder()
                .action(aws_sdk_route53::types::ChangeAction::Delete)
                .resource_record_set(record)
                .build()
                .unwrap();
            let batch = aws_sdk_route53::types::ChangeBatch::builder()
                .changes(change)
                .build()
                .unwrap();
            let _ = r53
                .change_resource_record_sets()
                .hosted_zone_id(zone)
                .change_batch(batch)
                .send()
                .await;
        }
        let _ = r53.delete_hosted_zone().id(zone).send().await;
    }
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let _ = ec2
        .delete_security_group()
        .group_id(&groups.elb)
        .send()
        .await;
    for s in &net.public {
        let _ = ec2.delete_subnet().subnet_id(&s.id).send().await;
    }
    let _ = ec2.delete_vpc().vpc_id(&net.vpc_id).send().await;
}

async fn records(
    r53: &aws_sdk_route53::Client,
    zone: &str,
) -> Vec<aws_sdk_route53::types::ResourceRecordSet> {
    r53.list_resource_record_sets()
        .hosted_zone_id(zone)
        .send()
        .await
        .map(|o| o.resource_record_sets().to_vec())
        .unwrap_or_default()
}

/// Runs `body`, then `cleanup` even when `body` panicked, then re-raises the panic.
async fn guarded<F>(stack: String, config: StackConfig, zone: Option<String>, body: F)
where
    F: FnOnce(Ctx, Network, SecurityGroups) -> futures_like::BoxFuture + Send + 'static,
{
    let ctx = common::ctx(&stack, REGION, config).await;
    let (net, groups) = fixture(&ctx).await;
    let outcome = tokio::spawn(body(ctx, net.clone(), groups.clone())).await;
    cleanup(&stack, &net, &groups, zone.as_deref()).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

mod futures_like {
    pub type BoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
}

fn assert_unchanged(changes: &[Change]) {
    assert!(!changes.is_empty());
    for c in changes {
        assert_eq!(c.action, Action::Unchanged, "{c:?}");
    }
}

fn field_names(change: &Change) -> Vec<&str> {
    change.fields.iter().map(|f| f.field.as_str()).collect()
}

/// How many ELBs carry this stack's tag. Other tests of this binary create and
/// delete their own ELBs meanwhile, so one listed a moment ago may be gone when its
/// tags are read: that one is skipped, as it cannot be ours.
async fn elbs_of_stack(elb: &aws_sdk_elasticloadbalancing::Client, stack: &str) -> usize {
    let all = elb
        .describe_load_balancers()
        .send()
        .await
        .expect("DescribeLoadBalancers");
    let mut count = 0;
    for name in all
        .load_balancer_descriptions()
        .iter()
        .filter_map(|d| d.load_balancer_name())
    {
        let tags = match elb.describe_tags().load_balancer_names(name).send().await {
            Ok(tags) => tags,
            Err(e) if e.code() == Some("LoadBalancerNotFound") => continue,
            Err(e) => panic!("DescribeTags {name}: {e:?}"),
        };
        count += tags
            .tag_descriptions()
            .iter()
            .filter(|d| {
                d.tags()
                    .iter()
                    .any(|t| t.key() == STACK_TAG && t.value() == Some(stack))
            })
            .count();
    }
    count
}

/// Checks the ELB as the spec wants it, through the raw API.
async fn check_elb(ctx: &Ctx, net: &Network, groups: &SecurityGroups) {
    let elb = &ctx.elb;
    let name = ctx.spec.elb_name();
    let stack = &ctx.spec.stack;
    let out = elb
        .describe_load_balancers()
        .load_balancer_names(&name)
        .send()
        .await
        .expect("DescribeLoadBalancers");
    let lb = &out.load_balancer_descriptions()[0];
    assert_eq!(lb.scheme(), Some("internet-facing"));
    let listeners: BTreeSet<(String, i32, String, i32)> = lb
        .listener_descriptions()
        .iter()
        .filter_map(|d| d.listener())
        .map(|l| {
            (
                l.protocol().to_string(),
                l.load_balancer_port(),
                l.instance_protocol().unwrap_or_default().to_string(),
                l.instance_port(),
            )
        })
        .collect();
    let want: BTreeSet<_> = [("TCP", 80, "TCP", 8000), ("TCP", 443, "TCP", 8443)]
        .into_iter()
        .map(|(p, lp, ip, port)| (p.to_string(), lp, ip.to_string(), port))
        .collect();
    assert_eq!(listeners, want);
    let subnets: BTreeSet<&str> = lb.subnets().iter().map(String::as_str).collect();
    let want: BTreeSet<&str> = net.public.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(subnets, want);
    assert_eq!(lb.security_groups(), std::slice::from_ref(&groups.elb));
    let hc = lb.health_check().expect("health check");
    assert_eq!(
        (
            hc.target(),
            hc.interval(),
            hc.timeout(),
            hc.healthy_threshold(),
            hc.unhealthy_threshold()
        ),
        ("HTTP:8001/status", 10, 5, 2, 3)
    );
    let policy = format!("{stack}-proxy-protocol");
    let proxied: BTreeSet<i32> = lb
        .backend_server_descriptions()
        .iter()
        .filter(|b| b.policy_names().contains(&policy))
        .filter_map(|b| b.instance_port())
        .collect();
    assert_eq!(proxied, BTreeSet::from([8000, 8443]));
    let policies = elb
        .describe_load_balancer_policies()
        .load_balancer_name(&name)
        .policy_names(&policy)
        .send()
        .await
        .expect("DescribeLoadBalancerPolicies");
    let p = &policies.policy_descriptions()[0];
    assert_eq!(p.policy_type_name(), Some("ProxyProtocolPolicyType"));
    let attrs: Vec<(Option<&str>, Option<&str>)> = p
        .policy_attribute_descriptions()
        .iter()
        .map(|a| (a.attribute_name(), a.attribute_value()))
        .collect();
    assert_eq!(attrs, [(Some("ProxyProtocol"), Some("true"))]);
    let attrs = elb
        .describe_load_balancer_attributes()
        .load_balancer_name(&name)
        .send()
        .await
        .expect("DescribeLoadBalancerAttributes");
    let attrs = attrs.load_balancer_attributes().expect("attributes");
    assert!(attrs
        .cross_zone_load_balancing()
        .expect("cross zone")
        .enabled());
    let draining = attrs.connection_draining().expect("draining");
    assert!(draining.enabled());
    assert_eq!(draining.timeout(), Some(30));
    assert_eq!(
        attrs.connection_settings().map(|c| c.idle_timeout()),
        Some(60)
    );
    let tags = elb
        .describe_tags()
        .load_balancer_names(&name)
        .send()
        .await
        .expect("DescribeTags");
    let tags: BTreeSet<(&str, &str)> = tags.tag_descriptions()[0]
        .tags()
        .iter()
        .map(|t| (t.key(), t.value().unwrap_or_default()))
        .collect();
    assert!(tags.contains(&("Name", name.as_str())), "{tags:?}");
    assert!(tags.contains(&(STACK_TAG, stack.as_str())), "{tags:?}");
}

#[tokio::test]
async fn elb_is_created_kept_repaired_and_deleted() {
    let stack = common::stack_name("lb");
    let body = |ctx: Ctx, net: Network, groups: SecurityGroups| -> futures_like::BoxFuture {
        Box::pin(async move {
            let name = ctx.spec.elb_name();
            let cur = balancer::discover(&ctx).await.expect("discover");
            assert!(cur.balancer().is_none());
            let plan = balancer::plan(&ctx, &cur);
            assert_eq!(
                (plan[0].action, plan[0].resource.as_str()),
                (Action::Create, format!("elb {name}").as_str())
            );

            let made = balancer::converge(&ctx, &cur, &net, &groups)
                .await
                .expect("converge");
            assert_eq!(made.name, name);
            assert!(!made.dns_name.is_empty());
            check_elb(&ctx, &net, &groups).await;

            // Second round: unchanged, and converge makes no second ELB.
            let cur = balancer::discover(&ctx).await.expect("discover");
            assert_eq!(cur.balancer(), Some(made.clone()));
            assert_unchanged(&balancer::plan_with(&ctx, &cur, Some(&net), Some(&groups)));
            let again = balancer::converge(&ctx, &cur, &net, &groups)
                .await
                .expect("converge");
            assert_eq!(again, made);
            assert_eq!(elbs_of_stack(&ctx.elb, &ctx.spec.stack).await, 1);
            let status = &balancer::status(&cur)[0];
            assert_eq!(status.state, "active");
            assert_eq!(status.details["dns_name"], made.dns_name);
            assert_eq!(
                status.details["listeners"],
                "TCP 80 -> TCP 8000, TCP 443 -> TCP 8443"
            );

            // Drift made with the raw API: health check, cross-zone, a listener, a
            // proxy protocol port and a subnet.
            let hc = aws_sdk_elasticloadbalancing::types::HealthCheck::builder()
                .target("TCP:8000")
                .interval(30)
                .timeout(5)
                .healthy_threshold(10)
                .unhealthy_threshold(2)
                .build()
                .unwrap();
            ctx.elb
                .configure_health_check()
                .load_balancer_name(&name)
                .health_check(hc)
                .send()
                .await
                .expect("ConfigureHealthCheck");
            let attrs = aws_sdk_elasticloadbalancing::types::LoadBalancerAttributes::builder()
                .cross_zone_load_balancing(
                    aws_sdk_elasticloadbalancing::types::CrossZoneLoadBalancing::builder()
                        .enabled(false)
                        .build(),
                )
                .build();
            ctx.elb
                .modify_load_balancer_attributes()
                .load_balancer_name(&name)
                .load_balancer_attributes(attrs)
                .send()
                .await
                .expect("ModifyLoadBalancerAttributes");
            let cur = balancer::discover(&ctx).await.expect("discover");
            let c = &balancer::plan_with(&ctx, &cur, Some(&net), Some(&groups))[0];
            assert_eq!(c.action, Action::Update);
            assert_eq!(field_names(c), ["health_check", "cross_zone"]);
            ctx.elb
                .delete_load_balancer_listeners()
                .load_balancer_name(&name)
                .load_balancer_ports(443)
                .send()
                .await
                .expect("DeleteLoadBalancerListeners");
            ctx.elb
                .set_load_balancer_policies_for_backend_server()
                .load_balancer_name(&name)
                .instance_port(8443)
                .set_policy_names(Some(vec![]))
                .send()
                .await
                .expect("SetLoadBalancerPoliciesForBackendServer");
            ctx.elb
                .detach_load_balancer_from_subnets()
                .load_balancer_name(&name)
                .subnets(&net.public[1].id)
                .send()
                .await
                .expect("DetachLoadBalancerFromSubnets");
            let cur = balancer::discover(&ctx).await.expect("discover");
            let c = &balancer::plan_with(&ctx, &cur, Some(&net), Some(&groups))[0];
            assert_eq!(
                field_names(c),
                [
                    "listeners",
                    "subnets",
                    "health_check",
                    "cross_zone",
                    "proxy_protocol_ports"
                ]
            );
            balancer::converge(&ctx, &cur, &net, &groups)
                .await
                .expect("converge repairs");
            check_elb(&ctx, &net, &groups).await;
            let cur = balancer::discover(&ctx).await.expect("discover");
            assert_unchanged(&balancer::plan_with(&ctx, &cur, Some(&net), Some(&groups)));

            // Delete, then delete again (with the stale and the fresh view).
            balancer::delete(&ctx, &cur).await.expect("delete");
            let err = ctx
                .elb
                .describe_load_balancers()
                .load_balancer_names(&name)
                .send()
                .await;
            assert!(err.is_err(), "the ELB is gone");
            assert_eq!(elbs_of_stack(&ctx.elb, &ctx.spec.stack).await, 0);
            balancer::delete(&ctx, &cur)
                .await
                .expect("delete of a missing ELB");
            let gone = balancer::discover(&ctx).await.expect("discover");
            assert!(gone.elb.is_none());
            balancer::delete(&ctx, &gone).await.expect("second delete");
            assert_eq!(balancer::status(&gone)[0].state, "missing");
            assert_eq!(balancer::plan(&ctx, &gone)[0].action, Action::Create);
        })
    };
    guarded(stack, StackConfig::default(), None, body).await;
}

#[tokio::test]
async fn dns_record_points_at_the_elb() {
    let stack = common::stack_name("lbdns");
    let conf = common::config(REGION).await;
    let r53 = aws_sdk_route53::Client::new(&conf);
    let zone_name = format!("{stack}.example.com");
    let zone = r53
        .create_hosted_zone()
        .name(&zone_name)
        .caller_reference(common::unique("lbdns"))
        .send()
        .await
        .expect("CreateHostedZone");
    let zone_id = zone
        .hosted_zone()
        .expect("zone")
        .id()
        .trim_start_matches("/hostedzone/")
        .to_string();
    let domain = format!("api.{zone_name}");
    let config = StackConfig {
        domain: Some(domain.clone()),
        hosted_zone_id: Some(zone_id.clone()),
        ..StackConfig::default()
    };
    let zone_for_body = zone_id.clone();
    let body = move |ctx: Ctx, net: Network, groups: SecurityGroups| -> futures_like::BoxFuture {
        Box::pin(async move {
            let zone_id = zone_for_body;
            // Without a domain: nothing at all.
            let bare = common::ctx(&ctx.spec.stack, REGION, StackConfig::default()).await;
            let none = dns::discover(&bare).await.expect("discover");
            assert!(dns::plan(&bare, &none, None).is_empty());
            assert!(dns::status(&none).is_empty());

            let cur = dns::discover(&ctx).await.expect("discover");
            assert!(cur.record.is_none());
            let plan = dns::plan(&ctx, &cur, None);
            assert_eq!(
                (plan[0].action, plan[0].resource.clone()),
                (Action::Create, format!("route53-record {domain}"))
            );
            let elb_cur = balancer::discover(&ctx).await.expect("discover elb");
            let elb = balancer::converge(&ctx, &elb_cur, &net, &groups)
                .await
                .expect("converge elb");
            assert_eq!(
                dns::converge(&bare, &none, &elb).await.expect("no domain"),
                None
            );

            let name = dns::converge(&ctx, &cur, &elb).await.expect("converge dns");
            assert_eq!(name.as_deref(), Some(domain.as_str()));
            let r53 = &ctx.route53;
            let ours = |all: Vec<aws_sdk_route53::types::ResourceRecordSet>| -> Vec<_> {
                all.into_iter()
                    .filter(|r| r.name().trim_end_matches('.') == domain)
                    .collect()
            };
            let found = ours(records(r53, &zone_id).await);
            assert_eq!(found.len(), 1, "{found:?}");
            let target = match found[0].alias_target() {
                Some(a) => {
                    assert_eq!(found[0].r#type(), &RrType::A);
                    assert_eq!(
                        Some(a.hosted_zone_id()),
                        elb.canonical_hosted_zone_id.as_deref()
                    );
                    a.dns_name().to_string()
                }
                None => {
                    // The kit's ELB reports no canonical zone id: a CNAME.
                    assert_eq!(elb.canonical_hosted_zone_id, None);
                    assert_eq!(found[0].r#type(), &RrType::Cname);
                    assert_eq!(found[0].ttl(), Some(60));
                    found[0].resource_records()[0].value().to_string()
                }
            };
            assert_eq!(
                target.trim_end_matches('.').to_lowercase(),
                elb.dns_name.to_lowercase()
            );

            // Second round: unchanged, no second record.
            let cur = dns::discover(&ctx).await.expect("discover");
            assert_unchanged(&dns::plan(&ctx, &cur, Some(&elb)));
            dns::converge(&ctx, &cur, &elb)
                .await
                .expect("converge again");
            assert_eq!(ours(records(r53, &zone_id).await).len(), 1);
            assert_eq!(dns::status(&cur)[0].state, "present");

            // The ELB gains a canonical zone (as on AWS): CNAME -> alias A in one batch.
            let aws_like = balancer::Balancer {
                canonical_hosted_zone_id: Some("Z35SXDOTRQ7X7K".into()),
                ..elb.clone()
            };
            let c = &dns::plan(&ctx, &cur, Some(&aws_like))[0];
            assert_eq!(c.action, Action::Update);
            assert!(field_names(c).contains(&"alias_zone"), "{c:?}");
            dns::converge(&ctx, &cur, &aws_like)
                .await
                .expect("converge to alias");
            let found = ours(records(r53, &zone_id).await);
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!(found[0].r#type(), &RrType::A);
            let alias = found[0].alias_target().expect("alias");
            assert_eq!(alias.hosted_zone_id(), "Z35SXDOTRQ7X7K");
            assert!(alias.evaluate_target_health());
            let cur = dns::discover(&ctx).await.expect("discover");
            assert_unchanged(&dns::plan(&ctx, &cur, Some(&aws_like)));

            // A record pointing at another ELB (the other region's, after a failover)
            // is left; then delete, then delete again.
            let other = balancer::Balancer {
                dns_name: "other-elb-1.us-west-2.elb.amazonaws.com".into(),
                ..aws_like.clone()
            };
            dns::delete(&ctx, &cur, Some(&other))
                .await
                .expect("delete, other ELB");
            assert_eq!(ours(records(r53, &zone_id).await).len(), 1, "left alone");
            dns::delete(&ctx, &cur, Some(&aws_like))
                .await
                .expect("delete");
            assert!(ours(records(r53, &zone_id).await).is_empty());
            let gone = dns::discover(&ctx).await.expect("discover");
            assert!(gone.record.is_none());
            dns::delete(&ctx, &gone, Some(&aws_like))
                .await
                .expect("second delete");
            assert_eq!(dns::status(&gone)[0].state, "missing");
            balancer::delete(&ctx, &balancer::discover(&ctx).await.expect("discover"))
                .await
                .expect("delete elb");
        })
    };
    guarded(stack, config, Some(zone_id), body).await;
}
