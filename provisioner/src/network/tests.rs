//! `plan` on hand-made `Current`s: names, comparisons, NAT mode switches.

use super::desired::*;
use super::*;
use crate::context::Ctx;
use crate::plan::{Action, Change};
use crate::spec::{NatMode, Spec, StackConfig};

fn ctx(nat: NatMode) -> Ctx {
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .build();
    let config = StackConfig {
        nat,
        az_count: 2,
        ..StackConfig::default()
    };
    let spec = Spec::new("gw", "us-east-1", config).unwrap();
    Ctx::new(&sdk, spec, crate::progress::Progress::new(true))
}

fn azs() -> Vec<String> {
    vec!["us-east-1a".into(), "us-east-1b".into()]
}

/// What discover would find after converging `spec` (NATs in `nat_azs`).
fn converged(spec: &Spec, nat_azs: &[&str]) -> Current {
    let azs = azs();
    let some = |s: String| Some(s);
    let mut c = Current {
        azs: azs.clone(),
        vpc_name: vpc_name(spec),
        subnet_names: azs
            .iter()
            .map(|az| (public_subnet_name(spec, az), private_subnet_name(spec, az)))
            .collect(),
        ..Current::default()
    };
    c.vpcs.push(FoundVpc {
        id: "vpc-1".into(),
        name: some(vpc_name(spec)),
        cidr: "10.0.0.0/16".into(),
        dns_support: true,
        dns_hostnames: true,
    });
    c.igws.push(FoundIgw {
        id: "igw-1".into(),
        name: some(igw_name(spec)),
        attached: vec!["vpc-1".into()],
    });
    let table = |id: &str, name: String, target: &str, subnets: &[String]| FoundRouteTable {
        id: id.into(),
        name: Some(name),
        vpc_id: "vpc-1".into(),
        tagged: true,
        main: false,
        default_route: Some((target.into(), false)),
        associations: subnets
            .iter()
            .map(|s| (format!("a-{s}"), s.clone()))
            .collect(),
    };
    for (i, az) in azs.iter().enumerate() {
        for (public, name) in [
            (true, public_subnet_name(spec, az)),
            (false, private_subnet_name(spec, az)),
        ] {
            c.subnets.push(FoundSubnet {
                id: format!("subnet-{name}"),
                name: Some(name),
                vpc_id: "vpc-1".into(),
                az: az.clone(),
                cidr: spec.subnet_cidr(i, public),
            });
        }
    }
    for az in nat_azs {
        c.eips.push(FoundEip {
            allocation_id: format!("eipalloc-{az}"),
            name: some(nat_name(spec, az)),
            public_ip: None,
        });
        c.nats.push(FoundNat {
            id: format!("nat-{az}"),
            name: some(nat_name(spec, az)),
            vpc_id: "vpc-1".into(),
            subnet_id: format!("subnet-{}", public_subnet_name(spec, az)),
            state: "available".into(),
            failure: None,
            allocation_ids: vec![format!("eipalloc-{az}")],
            enis: Vec::new(),
        });
    }
    let publics: Vec<String> = azs
        .iter()
        .map(|az| format!("subnet-{}", public_subnet_name(spec, az)))
        .collect();
    c.route_tables
        .push(table("rtb-p", public_table_name(spec), "igw-1", &publics));
    for (i, az) in azs.iter().enumerate() {
        let nat = format!("nat-{}", nat_azs[i.min(nat_azs.len() - 1)]);
        let private = [format!("subnet-{}", private_subnet_name(spec, az))];
        c.route_tables.push(table(
            &format!("rtb-{az}"),
            private_table_name(spec, az),
            &nat,
            &private,
        ));
    }
    c
}

fn changed(plan: &[Change]) -> Vec<&Change> {
    plan.iter()
        .filter(|c| c.action != Action::Unchanged)
        .collect()
}

#[test]
fn an_empty_account_plans_every_resource() {
    let ctx = ctx(NatMode::Single);
    let plan = plan(&ctx, &Current::default(), &azs());
    let names: Vec<&str> = plan.iter().map(|c| c.resource.as_str()).collect();
    assert_eq!(
        names,
        [
            "vpc gw-vpc",
            "subnet gw-public-us-east-1a",
            "subnet gw-private-us-east-1a",
            "subnet gw-public-us-east-1b",
            "subnet gw-private-us-east-1b",
            "internet-gateway gw-igw",
            "route-table gw-public",
            "elastic-ip gw-nat-us-east-1a",
            "nat-gateway gw-nat-us-east-1a",
            "route-table gw-private-us-east-1a",
            "route-table gw-private-us-east-1b",
        ]
    );
    assert!(plan.iter().all(|c| c.action == Action::Create));
    assert_eq!(Current::default().network(), None);
}

#[test]
fn a_converged_network_is_unchanged_and_drift_names_the_field() {
    let ctx = ctx(NatMode::Single);
    let mut c = converged(&ctx.spec, &["us-east-1a"]);
    assert!(changed(&plan(&ctx, &c, &azs())).is_empty());
    let net = c.network().unwrap();
    assert_eq!(net.public[1].cidr, "10.0.16.0/20");
    assert_eq!(net.private[0].cidr, "10.0.128.0/20");

    c.vpcs[0].dns_hostnames = false;
    c.route_tables[2].default_route = Some(("nat-us-east-1a".into(), true));
    c.route_tables[0].associations.pop();
    let plan = plan(&ctx, &c, &azs());
    let changed = changed(&plan);
    assert_eq!(changed.len(), 3, "{changed:#?}");
    assert_eq!(changed[0].fields[0].field, "enable_dns_hostnames");
    assert_eq!(changed[1].resource, "route-table gw-public");
    assert_eq!(changed[1].fields[0].field, "associations");
    assert_eq!(
        changed[1].fields[0].desired.as_deref(),
        Some("+gw-public-us-east-1b (subnet-gw-public-us-east-1b)")
    );
    assert_eq!(changed[2].fields[0].field, "route 0.0.0.0/0");
    assert_eq!(
        changed[2].fields[0].current.as_deref(),
        Some("gw-nat-us-east-1a (nat-us-east-1a) (blackhole)")
    );
}

#[test]
fn a_new_vpc_cidr_is_an_update_of_cidr() {
    let ctx = ctx(NatMode::Single);
    let mut c = converged(&ctx.spec, &["us-east-1a"]);
    c.vpcs[0].cidr = "10.1.0.0/16".into();
    let plan = plan(&ctx, &c, &azs());
    assert_eq!(plan[0].action, Action::Update);
    assert_eq!(plan[0].fields[0].field, "cidr");
    assert_eq!(plan[0].fields[0].desired.as_deref(), Some("10.0.0.0/16"));
}

#[test]
fn switching_nat_mode_plans_nats_and_routes() {
    // single -> per_az: a second EIP and NAT, the second private route re-pointed.
    let ctx = ctx(NatMode::PerAz);
    let c = converged(&ctx.spec, &["us-east-1a"]);
    let plan = plan(&ctx, &c, &azs());
    let got: Vec<(Action, &str)> = changed(&plan)
        .iter()
        .map(|c| (c.action, c.resource.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (Action::Create, "elastic-ip gw-nat-us-east-1b"),
            (Action::Create, "nat-gateway gw-nat-us-east-1b"),
            (Action::Update, "route-table gw-private-us-east-1b"),
        ]
    );
    // per_az -> single: the second NAT and its EIP go.
    let ctx = self::ctx(NatMode::Single);
    let c = converged(&ctx.spec, &["us-east-1a", "us-east-1b"]);
    let plan = super::plan(&ctx, &c, &azs());
    let got: Vec<(Action, &str)> = changed(&plan)
        .iter()
        .map(|c| (c.action, c.resource.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (Action::Update, "route-table gw-private-us-east-1b"),
            (
                Action::Delete,
                "nat-gateway gw-nat-us-east-1b (nat-us-east-1b)"
            ),
            (
                Action::Delete,
                "elastic-ip gw-nat-us-east-1b (eipalloc-us-east-1b)"
            ),
        ]
    );
}
