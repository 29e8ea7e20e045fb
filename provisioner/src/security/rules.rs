//! The rules the spec wants, and ingress permissions as comparable strings.

use aws_sdk_ec2::types::{IpPermission, IpRange, Ipv6Range, PrefixListId, UserIdGroupPair};

use crate::spec::{Spec, DB_PORT, ELB_LISTENERS, NODE_PORT_RANGES};

/// One wanted group: name, description and ingress rules (protocol, ports, CIDR,
/// description).
pub(crate) struct Wanted {
    pub name: String,
    pub description: String,
    pub rules: Vec<WantedRule>,
}

pub(crate) struct WantedRule {
    pub from: u16,
    pub to: u16,
    pub cidr: String,
    pub description: String,
}

impl WantedRule {
    pub fn text(&self) -> String {
        rule_text(
            INGRESS_PROTOCOL,
            Some(self.from as i32),
            Some(self.to as i32),
            &self.cidr,
        )
    }

    pub fn permission(&self) -> IpPermission {
        IpPermission::builder()
            .ip_protocol(INGRESS_PROTOCOL)
            .from_port(self.from as i32)
            .to_port(self.to as i32)
            .ip_ranges(
                IpRange::builder()
                    .cidr_ip(&self.cidr)
                    .description(&self.description)
                    .build(),
            )
            .build()
    }
}

/// Every ingress rule of the stack is TCP.
pub const INGRESS_PROTOCOL: &str = "tcp";

/// The groups' roles, in the order `wanted` returns them; each group is `<stack>-<role>`.
pub const ROLES: [&str; 3] = ["nodes", "db", "elb"];

/// The three groups, in the order nodes, db, elb.
pub(crate) fn wanted(spec: &Spec) -> [Wanted; 3] {
    let [nodes_role, db_role, elb_role] = ROLES;
    let vpc = &spec.config.vpc_cidr;
    let nodes = Wanted {
        name: spec.name(nodes_role),
        description: format!(
            "{} gateway nodes: proxy, admin, manager, portal from the VPC",
            spec.stack
        ),
        rules: NODE_PORT_RANGES
            .iter()
            .map(|&(from, to)| WantedRule {
                from,
                to,
                cidr: vpc.clone(),
                description: format!("gateway ports {from}-{to} from the VPC"),
            })
            .collect(),
    };
    let db = Wanted {
        name: spec.name(db_role),
        description: format!("{} PostgreSQL (RDS) from the VPC", spec.stack),
        rules: vec![WantedRule {
            from: DB_PORT,
            to: DB_PORT,
            cidr: vpc.clone(),
            description: "PostgreSQL from the VPC".into(),
        }],
    };
    let elb = Wanted {
        name: spec.name(elb_role),
        description: format!("{} load balancer listeners from allowed_cidrs", spec.stack),
        rules: ELB_LISTENERS
            .iter()
            .flat_map(|&(port, _)| {
                spec.config
                    .allowed_cidrs
                    .iter()
                    .map(move |cidr| WantedRule {
                        from: port,
                        to: port,
                        cidr: cidr.clone(),
                        description: format!("ELB listener {port} from allowed_cidrs"),
                    })
            })
            .collect(),
    };
    [nodes, db, elb]
}

/// `tcp 8000-8003 10.0.0.0/16`, `tcp 5432 10.0.0.0/16`, `all all sg-123`.
pub(crate) fn rule_text(
    protocol: &str,
    from: Option<i32>,
    to: Option<i32>,
    source: &str,
) -> String {
    let protocol = if protocol == "-1" { "all" } else { protocol };
    let ports = match (from, to) {
        _ if protocol == "all" => "all".to_string(),
        (Some(f), Some(t)) if f == t => f.to_string(),
        (Some(f), Some(t)) => format!("{f}-{t}"),
        _ => "all".to_string(),
    };
    format!("{protocol} {ports} {source}")
}

/// One entry per source of `p`, each with a permission granting just that source.
pub(crate) fn split_permission(p: &IpPermission) -> Vec<(String, IpPermission)> {
    let protocol = p.ip_protocol().unwrap_or("-1");
    let base = || {
        IpPermission::builder()
            .ip_protocol(protocol)
            .set_from_port(p.from_port())
            .set_to_port(p.to_port())
    };
    let text = |source: &str| rule_text(protocol, p.from_port(), p.to_port(), source);
    let mut out = Vec::new();
    // Sources without their descriptions: a revoke matches on the rest.
    for r in p.ip_ranges() {
        let cidr = r.cidr_ip().unwrap_or("?");
        let range = IpRange::builder()
            .set_cidr_ip(r.cidr_ip().map(Into::into))
            .build();
        out.push((text(cidr), base().ip_ranges(range).build()));
    }
    for r in p.ipv6_ranges() {
        let cidr = r.cidr_ipv6().unwrap_or("?");
        let range = Ipv6Range::builder()
            .set_cidr_ipv6(r.cidr_ipv6().map(Into::into))
            .build();
        out.push((text(cidr), base().ipv6_ranges(range).build()));
    }
    for r in p.prefix_list_ids() {
        let id = r.prefix_list_id().unwrap_or("?");
        let list = PrefixListId::builder()
            .set_prefix_list_id(r.prefix_list_id().map(Into::into))
            .build();
        out.push((text(id), base().prefix_list_ids(list).build()));
    }
    for r in p.user_id_group_pairs() {
        let id = r.group_id().or(r.group_name()).unwrap_or("?");
        let pair = UserIdGroupPair::builder()
            .set_group_id(r.group_id().map(Into::into))
            .set_user_id(r.user_id().map(Into::into))
            .build();
        out.push((text(id), base().user_id_group_pairs(pair).build()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::{ingress_diff, Group};
    use crate::spec::StackConfig;

    fn spec() -> Spec {
        let config = StackConfig {
            allowed_cidrs: vec!["0.0.0.0/0".into(), "192.0.2.0/24".into()],
            ..StackConfig::default()
        };
        Spec::new("gw", "us-east-1", config).unwrap()
    }

    #[test]
    fn wanted_rules_follow_the_spec() {
        let [nodes, db, elb] = wanted(&spec());
        let texts = |w: &Wanted| w.rules.iter().map(WantedRule::text).collect::<Vec<_>>();
        assert_eq!(nodes.name, "gw-nodes");
        assert_eq!(
            texts(&nodes),
            ["tcp 8000-8003 10.0.0.0/16", "tcp 8443-8446 10.0.0.0/16"]
        );
        assert_eq!(texts(&db), ["tcp 5432 10.0.0.0/16"]);
        assert_eq!(
            texts(&elb),
            [
                "tcp 80 0.0.0.0/0",
                "tcp 80 192.0.2.0/24",
                "tcp 443 0.0.0.0/0",
                "tcp 443 192.0.2.0/24"
            ]
        );
    }

    #[test]
    fn extra_and_missing_rules_are_drift() {
        let [nodes, ..] = wanted(&spec());
        let ssh = IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(22)
            .to_port(22)
            .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
            .ip_ranges(IpRange::builder().cidr_ip("10.0.0.0/8").build())
            .build();
        let mut ingress = split_permission(&ssh);
        ingress.push((nodes.rules[0].text(), nodes.rules[0].permission()));
        let group = Group {
            id: "sg-1".into(),
            name: "gw-nodes".into(),
            vpc_id: "vpc-1".into(),
            ingress,
        };
        let c = ingress_diff(&group, &nodes).into_change("security-group gw-nodes");
        assert_eq!(c.action, crate::plan::Action::Update);
        assert_eq!(c.fields[0].field, "ingress");
        assert_eq!(
            c.fields[0].current.as_deref(),
            Some("-tcp 22 0.0.0.0/0 -tcp 22 10.0.0.0/8")
        );
        assert_eq!(
            c.fields[0].desired.as_deref(),
            Some("+tcp 8443-8446 10.0.0.0/16")
        );
        let all = IpPermission::builder().ip_protocol("-1").build();
        assert!(split_permission(&all).is_empty());
        assert_eq!(rule_text("-1", None, None, "sg-1"), "all all sg-1");
    }
}
