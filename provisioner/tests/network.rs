//! Network and security groups on the kit: converge creates exactly the spec, a second
//! round changes nothing, drift is reported and repaired, delete removes it all.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{Filter, IpPermission, IpRange, NatGateway, Tag};
use provisioner::context::Ctx;
use provisioner::plan::{Action, Change};
use provisioner::spec::{NatMode, StackConfig, STACK_TAG};
use provisioner::{network, security};

const REGION: &str = "us-east-1";

/// `send!(call)`: sends a raw SDK call and unwraps it.
macro_rules! send {
    ($call:expr) => {
        $call.send().await.unwrap()
    };
}

fn stack_filter(stack: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{STACK_TAG}"))
        .values(stack)
        .build()
}

/// The stack's NAT gateways (moto ignores the tag filter: checked here as well).
async fn stack_nats(ec2: &aws_sdk_ec2::Client, stack: &str) -> Vec<NatGateway> {
    let out = send!(ec2.describe_nat_gateways().filter(stack_filter(stack)));
    let ours = |n: &&NatGateway| {
        let tag = |t: &Tag| t.key() == Some(STACK_TAG) && t.value() == Some(stack);
        n.tags().iter().any(tag)
    };
    out.nat_gateways().iter().filter(ours).cloned().collect()
}

/// The stack's resources by tag, through the raw EC2 API:
/// [vpcs, subnets, igws, route tables, eips, live nats, security groups].
async fn counts(ec2: &aws_sdk_ec2::Client, stack: &str) -> [usize; 7] {
    let f = || stack_filter(stack);
    let nats = stack_nats(ec2, stack).await;
    let deleted = |n: &&NatGateway| n.state().map(|s| s.as_str()) == Some("deleted");
    [
        send!(ec2.describe_vpcs().filters(f())).vpcs().len(),
        send!(ec2.describe_subnets().filters(f())).subnets().len(),
        send!(ec2.describe_internet_gateways().filters(f()))
            .internet_gateways()
            .len(),
        send!(ec2.describe_route_tables().filters(f()))
            .route_tables()
            .len(),
        send!(ec2.describe_addresses().filters(f()))
            .addresses()
            .len(),
        nats.iter().filter(|n| !deleted(n)).count(),
        send!(ec2.describe_security_groups().filters(f()))
            .security_groups()
            .len(),
    ]
}

async fn full_plan(ctx: &Ctx, azs: &[String]) -> Vec<Change> {
    let mut all = network::plan(ctx, &network::discover(ctx).await.unwrap(), azs);
    all.extend(security::plan(ctx, &security::discover(ctx).await.unwrap()));
    all
}

fn not_unchanged(plan: &[Change]) -> Vec<&Change> {
    plan.iter()
        .filter(|c| c.action != Action::Unchanged)
        .collect()
}

/// Converges network and security groups the way `up` does.
async fn up(ctx: &Ctx, azs: &[String]) -> (network::Network, security::SecurityGroups) {
    let current = network::discover(ctx).await.unwrap();
    let net = network::converge_core(ctx, &current, azs).await.unwrap();
    let groups = security::converge(ctx, &security::discover(ctx).await.unwrap(), &net)
        .await
        .unwrap();
    network::converge_nat(ctx, &current, &net).await.unwrap();
    (net, groups)
}

async fn down(ctx: &Ctx) {
    security::delete(ctx, &security::discover(ctx).await.unwrap())
        .await
        .unwrap();
    network::delete(ctx, &network::discover(ctx).await.unwrap())
        .await
        .unwrap();
}

/// Ingress of a group as `tcp from-to cidr` strings, read through the raw API.
async fn ingress(ec2: &aws_sdk_ec2::Client, group_id: &str) -> BTreeSet<String> {
    let out = send!(ec2.describe_security_groups().group_ids(group_id));
    let g = &out.security_groups()[0];
    let mut rules = BTreeSet::new();
    for p in g.ip_permissions() {
        for r in p.ip_ranges() {
            rules.insert(format!(
                "{} {}-{} {}",
                p.ip_protocol().unwrap(),
                p.from_port().unwrap_or(-1),
                p.to_port().unwrap_or(-1),
                r.cidr_ip().unwrap()
            ));
        }
        assert!(p.user_id_group_pairs().is_empty() && p.ipv6_ranges().is_empty());
    }
    rules
}

/// Per associated subnet of the stack's tables: (default route target, table id).
async fn route_map(ec2: &aws_sdk_ec2::Client, stack: &str) -> BTreeMap<String, (String, String)> {
    let tables = send!(ec2.describe_route_tables().filters(stack_filter(stack)));
    let mut out = BTreeMap::new();
    for t in tables.route_tables() {
        let default = t
            .routes()
            .iter()
            .find(|r| r.destination_cidr_block() == Some("0.0.0.0/0"));
        let target = default
            .and_then(|r| r.nat_gateway_id().or(r.gateway_id()))
            .unwrap_or("-");
        for a in t.associations() {
            let table = t.route_table_id().unwrap().to_string();
            out.insert(
                a.subnet_id().unwrap().to_string(),
                (target.to_string(), table),
            );
        }
    }
    out
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Runs `scenario` on a fresh stack; on a panic, deletes what it left, then re-panics.
async fn with_cleanup<F, Fut>(prefix: &str, config: StackConfig, scenario: F)
where
    F: FnOnce(String, StackConfig) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let stack = common::stack_name(prefix);
    let result = tokio::spawn(scenario(stack.clone(), config.clone())).await;
    if let Err(e) = result {
        let ctx = common::ctx(&stack, REGION, config).await;
        if let Ok(groups) = security::discover(&ctx).await {
            let _ = security::delete(&ctx, &groups).await;
        }
        if let Ok(current) = network::discover(&ctx).await {
            let _ = network::delete(&ctx, &current).await;
        }
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test]
async fn single_nat_network_converges_drifts_and_deletes() {
    let config = StackConfig {
        vpc_cidr: "10.61.0.0/16".into(),
        az_count: 2,
        nat: NatMode::Single,
        allowed_cidrs: vec!["203.0.113.0/24".into()],
        ..StackConfig::default()
    };
    with_cleanup("net", config, single_nat).await;
}

async fn single_nat(stack: String, config: StackConfig) {
    let ctx = common::ctx(&stack, REGION, config).await;
    let ec2 = aws_sdk_ec2::Client::new(&common::config(REGION).await);
    let azs = network::availability_zones(&ctx).await.unwrap();
    assert_eq!(azs.len(), 2);

    let before = full_plan(&ctx, &azs).await;
    assert!(
        before.iter().all(|c| c.action == Action::Create),
        "{before:#?}"
    );
    assert_eq!(before.len(), 1 + 4 + 1 + 1 + 2 + 2 + 3, "{before:#?}");

    let (net, groups) = up(&ctx, &azs).await;

    // The VPC: CIDR, DNS flags.
    let vpc = send!(ec2.describe_vpcs().vpc_ids(&net.vpc_id));
    assert_eq!(vpc.vpcs()[0].cidr_block(), Some("10.61.0.0/16"));
    for attr in [
        aws_sdk_ec2::types::VpcAttributeName::EnableDnsSupport,
        aws_sdk_ec2::types::VpcAttributeName::EnableDnsHostnames,
    ] {
        let a = send!(ec2
            .describe_vpc_attribute()
            .vpc_id(&net.vpc_id)
            .attribute(attr.clone()));
        let on = a
            .enable_dns_support()
            .or(a.enable_dns_hostnames())
            .and_then(|b| b.value());
        assert_eq!(on, Some(true), "{attr:?}");
    }

    // Subnets: 2 public + 2 private in 2 distinct AZs with the spec's CIDRs.
    let subnets = send!(ec2.describe_subnets().filters(stack_filter(&stack)));
    let mut got: Vec<(String, String, String)> = subnets
        .subnets()
        .iter()
        .map(|s| {
            let name = provisioner::context::ec2_name(s.tags())
                .unwrap()
                .to_string();
            (
                name,
                s.availability_zone().unwrap().into(),
                s.cidr_block().unwrap().into(),
            )
        })
        .collect();
    got.sort();
    let mut want = Vec::new();
    for (i, cidrs) in [
        ("10.61.0.0/20", "10.61.128.0/20"),
        ("10.61.16.0/20", "10.61.144.0/20"),
    ]
    .iter()
    .enumerate()
    {
        let az = azs[i].clone();
        want.push((
            format!("{stack}-public-{az}"),
            az.clone(),
            cidrs.0.to_string(),
        ));
        want.push((format!("{stack}-private-{az}"), az, cidrs.1.to_string()));
    }
    want.sort();
    assert_eq!(got, want);
    assert_ne!(azs[0], azs[1]);
    assert!(subnets
        .subnets()
        .iter()
        .all(|s| s.vpc_id() == Some(net.vpc_id.as_str())));

    // IGW attached; one EIP and one NAT in the first public subnet.
    let igws = send!(ec2
        .describe_internet_gateways()
        .filters(stack_filter(&stack)));
    let igw = &igws.internet_gateways()[0];
    assert_eq!(igw.attachments()[0].vpc_id(), Some(net.vpc_id.as_str()));
    let igw_id = igw.internet_gateway_id().unwrap();
    let nats = stack_nats(&ec2, &stack).await;
    assert_eq!(nats.len(), 1);
    let nat = &nats[0];
    assert_eq!(nat.state().map(|s| s.as_str()), Some("available"));
    assert_eq!(nat.subnet_id(), Some(net.public[0].id.as_str()));
    let nat_id = nat.nat_gateway_id().unwrap();
    let eips = send!(ec2.describe_addresses().filters(stack_filter(&stack)));
    assert_eq!(
        nat.nat_gateway_addresses()[0].allocation_id(),
        eips.addresses()[0].allocation_id()
    );

    // Routes: public -> IGW for both public subnets, each private -> the single NAT.
    let routes = route_map(&ec2, &stack).await;
    let targets: BTreeSet<(String, String)> = routes
        .iter()
        .map(|(s, (t, _))| (s.clone(), t.clone()))
        .collect();
    let want: BTreeSet<(String, String)> = [
        (net.public[0].id.clone(), igw_id.to_string()),
        (net.public[1].id.clone(), igw_id.to_string()),
        (net.private[0].id.clone(), nat_id.to_string()),
        (net.private[1].id.clone(), nat_id.to_string()),
    ]
    .into();
    assert_eq!(targets, want);

    // Security groups: exactly the rules.
    assert_eq!(
        ingress(&ec2, &groups.nodes).await,
        set(&["tcp 8000-8003 10.61.0.0/16", "tcp 8443-8446 10.61.0.0/16"])
    );
    assert_eq!(
        ingress(&ec2, &groups.db).await,
        set(&["tcp 5432-5432 10.61.0.0/16"])
    );
    assert_eq!(
        ingress(&ec2, &groups.elb).await,
        set(&["tcp 80-80 203.0.113.0/24", "tcp 443-443 203.0.113.0/24"])
    );

    // Second round: all unchanged, nothing new.
    let want_counts = [1, 4, 1, 3, 1, 1, 3];
    assert_eq!(counts(&ec2, &stack).await, want_counts);
    let after = full_plan(&ctx, &azs).await;
    assert!(not_unchanged(&after).is_empty(), "{after:#?}");
    let (net2, groups2) = up(&ctx, &azs).await;
    assert_eq!((&net2, &groups2), (&net, &groups));
    assert_eq!(counts(&ec2, &stack).await, want_counts);
    assert_eq!(
        network::discover(&ctx).await.unwrap().network(),
        Some(net.clone())
    );

    // Drift: one nodes rule revoked, SSH opened; the private default route deleted.
    let tcp = |from: i32, to: i32, cidr: &str| {
        IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(from)
            .to_port(to)
            .ip_ranges(IpRange::builder().cidr_ip(cidr).build())
            .build()
    };
    ec2.revoke_security_group_ingress()
        .group_id(&groups.nodes)
        .ip_permissions(tcp(8443, 8446, "10.61.0.0/16"))
        .send()
        .await
        .unwrap();
    ec2.authorize_security_group_ingress()
        .group_id(&groups.nodes)
        .ip_permissions(tcp(22, 22, "0.0.0.0/0"))
        .send()
        .await
        .unwrap();
    let private_table = &routes[&net.private[1].id].1;
    ec2.delete_route()
        .route_table_id(private_table)
        .destination_cidr_block("0.0.0.0/0")
        .send()
        .await
        .unwrap();

    let drift = full_plan(&ctx, &azs).await;
    let changed = not_unchanged(&drift);
    assert_eq!(changed.len(), 2, "{drift:#?}");
    let sg = changed
        .iter()
        .find(|c| c.resource == format!("security-group {stack}-nodes"))
        .unwrap();
    assert_eq!(sg.action, Action::Update);
    assert_eq!(sg.fields[0].field, "ingress");
    assert_eq!(sg.fields[0].current.as_deref(), Some("-tcp 22 0.0.0.0/0"));
    assert_eq!(
        sg.fields[0].desired.as_deref(),
        Some("+tcp 8443-8446 10.61.0.0/16")
    );
    let rt = changed
        .iter()
        .find(|c| c.resource == format!("route-table {stack}-private-{}", azs[1]))
        .unwrap();
    assert_eq!(rt.action, Action::Update);
    assert_eq!(rt.fields[0].field, "route 0.0.0.0/0");
    assert_eq!(rt.fields[0].current, None);

    up(&ctx, &azs).await;
    assert_eq!(
        ingress(&ec2, &groups.nodes).await,
        set(&["tcp 8000-8003 10.61.0.0/16", "tcp 8443-8446 10.61.0.0/16"])
    );
    let repaired = full_plan(&ctx, &azs).await;
    assert!(not_unchanged(&repaired).is_empty(), "{repaired:#?}");
    assert_eq!(counts(&ec2, &stack).await, want_counts);

    // A different VPC CIDR: plan names the field, converge refuses with what to do.
    let other = StackConfig {
        vpc_cidr: "10.62.0.0/16".into(),
        ..ctx.spec.config.clone()
    };
    let ctx2 = common::ctx(&stack, REGION, other).await;
    let current = network::discover(&ctx2).await.unwrap();
    let vpc_change = &network::plan(&ctx2, &current, &azs)[0];
    assert_eq!(vpc_change.action, Action::Update);
    assert_eq!(vpc_change.fields[0].field, "cidr");
    let err = network::converge_core(&ctx2, &current, &azs)
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("set vpc_cidr back"), "{err:#}");

    // Delete removes everything; a second delete is a no-op.
    down(&ctx).await;
    let none = [0, 0, 0, 0, 0, 0, 0];
    assert_eq!(counts(&ec2, &stack).await, none);
    let gone = ec2.describe_vpcs().vpc_ids(&net.vpc_id).send().await;
    assert!(gone.map(|o| o.vpcs().is_empty()).unwrap_or(true));
    down(&ctx).await;
    assert_eq!(counts(&ec2, &stack).await, none);
}

#[tokio::test]
async fn per_az_nats_then_single() {
    let config = StackConfig {
        vpc_cidr: "10.63.0.0/16".into(),
        az_count: 3,
        nat: NatMode::PerAz,
        ..StackConfig::default()
    };
    with_cleanup("netaz", config, per_az_then_single).await;
}

async fn per_az_then_single(stack: String, config: StackConfig) {
    let ctx = common::ctx(&stack, REGION, config.clone()).await;
    let ec2 = aws_sdk_ec2::Client::new(&common::config(REGION).await);
    let azs = network::availability_zones(&ctx).await.unwrap();
    assert_eq!(azs.len(), 3);
    let (net, _) = up(&ctx, &azs).await;

    // One NAT per AZ, in that AZ's public subnet; each private subnet routes to it.
    let nats = stack_nats(&ec2, &stack).await;
    let nat_in = |subnet: &str| {
        let n = nats.iter().find(|n| n.subnet_id() == Some(subnet)).unwrap();
        assert_eq!(n.state().map(|s| s.as_str()), Some("available"));
        n.nat_gateway_id().unwrap().to_string()
    };
    let routes = route_map(&ec2, &stack).await;
    for i in 0..3 {
        assert_eq!(routes[&net.private[i].id].0, nat_in(&net.public[i].id));
    }
    let mut want = [1, 6, 1, 4, 3, 3, 3];
    assert_eq!(counts(&ec2, &stack).await, want);
    assert!(not_unchanged(&full_plan(&ctx, &azs).await).is_empty());

    // Switch to a single NAT: two routes re-pointed, two NATs and EIPs deleted.
    let single = StackConfig {
        nat: NatMode::Single,
        ..config
    };
    let ctx = common::ctx(&stack, REGION, single).await;
    let plan = full_plan(&ctx, &azs).await;
    let mut got: Vec<(Action, String)> = not_unchanged(&plan)
        .iter()
        .map(|c| (c.action, c.resource.split(" (").next().unwrap().to_string()))
        .collect();
    got.sort_by(|a, b| a.1.cmp(&b.1));
    let want_plan: Vec<(Action, String)> = vec![
        (Action::Delete, format!("elastic-ip {stack}-nat-{}", azs[1])),
        (Action::Delete, format!("elastic-ip {stack}-nat-{}", azs[2])),
        (
            Action::Delete,
            format!("nat-gateway {stack}-nat-{}", azs[1]),
        ),
        (
            Action::Delete,
            format!("nat-gateway {stack}-nat-{}", azs[2]),
        ),
        (
            Action::Update,
            format!("route-table {stack}-private-{}", azs[1]),
        ),
        (
            Action::Update,
            format!("route-table {stack}-private-{}", azs[2]),
        ),
    ];
    assert_eq!(got, want_plan);
    up(&ctx, &azs).await;
    let first = nat_in(&net.public[0].id);
    let routes = route_map(&ec2, &stack).await;
    assert!(net.private.iter().all(|s| routes[&s.id].0 == first));
    (want[4], want[5]) = (1, 1);
    assert_eq!(counts(&ec2, &stack).await, want);
    assert!(not_unchanged(&full_plan(&ctx, &azs).await).is_empty());

    down(&ctx).await;
    let none = [0, 0, 0, 0, 0, 0, 0];
    assert_eq!(counts(&ec2, &stack).await, none);
}
