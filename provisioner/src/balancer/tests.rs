use super::*;
use crate::network::Subnet;
use crate::plan::Action;
use crate::progress::Progress;
use crate::spec::{Spec, StackConfig, STACK_TAG};

fn ctx() -> Ctx {
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .build();
    let spec = Spec::new("gw", "us-east-1", StackConfig::default()).unwrap();
    Ctx::new(&sdk, spec, Progress::new(true))
}

fn net() -> Network {
    let subnet = |id: &str, az: &str| Subnet {
        id: id.into(),
        az: az.into(),
        cidr: String::new(),
    };
    Network {
        vpc_id: "vpc-1".into(),
        vpc_cidr: "10.0.0.0/16".into(),
        public: vec![
            subnet("subnet-a", "us-east-1a"),
            subnet("subnet-b", "us-east-1b"),
        ],
        private: vec![],
    }
}

fn groups() -> SecurityGroups {
    SecurityGroups {
        nodes: "sg-nodes".into(),
        db: "sg-db".into(),
        elb: "sg-elb".into(),
    }
}

/// An ELB exactly as the spec wants it.
fn converged(ctx: &Ctx) -> Elb {
    let want = Desired::new(ctx, Some(&net()), Some(&groups()));
    Elb {
        name: want.name.clone(),
        dns_name: "gw-elb.us-east-1.elb.amazonaws.com".into(),
        canonical_hosted_zone_id: Some("Z35SXDOTRQ7X7K".into()),
        scheme: SCHEME.into(),
        listeners: want.listeners.clone(),
        subnets: vec!["subnet-b".into(), "subnet-a".into()],
        security_groups: vec!["sg-elb".into()],
        health_check: Some(want.health_check.clone()),
        cross_zone: true,
        draining: Some(30),
        idle_timeout: Some(60),
        policy: Some("ProxyProtocolPolicyType ProxyProtocol=true".into()),
        backend_policies: [
            (8000, vec!["gw-proxy-protocol".into()]),
            (8443, vec!["gw-proxy-protocol".into()]),
        ]
        .into_iter()
        .collect(),
        tags: [("Name", "gw-elb"), (STACK_TAG, "gw"), ("team", "sre")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        instance_health: BTreeMap::new(),
    }
}

fn current(elb: Elb) -> Current {
    Current {
        name: elb.name.clone(),
        elb: Some(elb),
    }
}

#[test]
fn desired_follows_the_spec() {
    let ctx = ctx();
    let want = Desired::new(&ctx, None, None);
    assert_eq!(want.name, "gw-elb");
    assert_eq!(
        strings(&want.listeners),
        ["TCP 80 -> TCP 8000", "TCP 443 -> TCP 8443"]
    );
    assert_eq!(want.health_check.target, "HTTP:8001/status");
    assert_eq!(want.proxy_ports, [8000, 8443]);
    assert_eq!(want.policy_name, "gw-proxy-protocol");
    assert_eq!(want.draining, Some(30));
}

#[test]
fn a_converged_elb_is_unchanged_and_extra_tags_are_fine() {
    let ctx = ctx();
    let elb = converged(&ctx);
    let changes = plan_with(&ctx, &current(elb), Some(&net()), Some(&groups()));
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].action, Action::Unchanged, "{:?}", changes[0]);
    assert_eq!(changes[0].resource, "elb gw-elb");
    assert_eq!(plan(&ctx, &Current::default())[0].action, Action::Create);
}

#[test]
fn every_kind_of_drift_is_named() {
    let ctx = ctx();
    let mut elb = converged(&ctx);
    elb.health_check.as_mut().unwrap().target = "TCP:8000".into();
    elb.cross_zone = false;
    elb.draining = None;
    elb.listeners[0].instance_port = 8001;
    elb.subnets = vec!["subnet-a".into(), "subnet-x".into()];
    elb.security_groups = vec!["sg-other".into()];
    elb.backend_policies.remove(&8443);
    elb.policy = None;
    elb.tags.remove(STACK_TAG);
    elb.idle_timeout = Some(300);
    let c = &plan_with(&ctx, &current(elb.clone()), Some(&net()), Some(&groups()))[0];
    assert_eq!(c.action, Action::Update);
    let fields: Vec<&str> = c.fields.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "listeners",
            "subnets",
            "security_groups",
            "health_check",
            "cross_zone",
            "connection_draining",
            "idle_timeout",
            "policy",
            "proxy_protocol_ports",
            "tags"
        ]
    );
    let subnets = &c.fields[1];
    assert_eq!(subnets.current.as_deref(), Some("-subnet-x"));
    assert_eq!(subnets.desired.as_deref(), Some("+subnet-b"));
    let health = &c.fields[3];
    assert!(
        health.current.as_deref().unwrap().starts_with("TCP:8000 "),
        "{health:?}"
    );
    assert_eq!(c.fields[5].current.as_deref(), Some("off"));
    assert_eq!(c.fields[5].desired.as_deref(), Some("on (30s)"));
    // Without the network and groups, subnets and groups are not compared.
    let c = &plan(&ctx, &current(elb))[0];
    assert!(c
        .fields
        .iter()
        .all(|f| f.field != "subnets" && f.field != "security_groups"));
}

#[test]
fn status_shows_dns_listeners_and_health() {
    let ctx = ctx();
    let mut elb = converged(&ctx);
    elb.instance_health = [("i-1", "InService"), ("i-2", "OutOfService")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let cur = current(elb);
    assert_eq!(cur.instance_health().len(), 2);
    let s = &status(&cur)[0];
    assert_eq!(s.state, "active");
    assert_eq!(
        s.details["listeners"],
        "TCP 80 -> TCP 8000, TCP 443 -> TCP 8443"
    );
    assert_eq!(s.details["instances"], "1/2 InService");
    assert_eq!(s.details["instance i-2"], "OutOfService");
    assert_eq!(s.details["scheme"], "internet-facing");
    let missing = Current {
        name: "gw-elb".into(),
        elb: None,
    };
    assert_eq!(status(&missing)[0].state, "missing");
    assert_eq!(missing.balancer(), None);
    assert_eq!(
        cur.balancer().unwrap().canonical_hosted_zone_id.as_deref(),
        Some("Z35SXDOTRQ7X7K")
    );
}
