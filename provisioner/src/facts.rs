//! The stack's facts, machine-readable: what every way of deploying the stack
//! (the provisioner, `terraform/`, `cloudformation/`) must build, derived from the spec
//! and from the same desired-state functions `plan` and `converge` use. Nothing here
//! calls AWS, and no value is written twice: a fact changes here when the spec or the
//! converge code changes.
//!
//! `provisioner facts --output json` prints [`Facts`]; the kit's parity test
//! (`localstack/tests/test_parity.py`) reads each deployment back through the AWS APIs
//! into this shape and compares it with this.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::balancer::{self, CROSS_ZONE, IDLE_TIMEOUT, PROXY_POLICY_TYPE, SCHEME};
use crate::compute::{group, lifecycle_hook_name};
use crate::database::instance::STORAGE_TYPE;
use crate::network::nat_azs;
use crate::security::{wanted_groups, INGRESS_PROTOCOL};
use crate::spec::{
    NatMode, Spec, DB_COPY_TAGS_TO_SNAPSHOT, DB_DELETION_PROTECTION, DB_ENGINE, DB_MULTI_AZ,
    DB_NAME, DB_PUBLICLY_ACCESSIBLE, DB_STORAGE_ENCRYPTED, DB_USER, EGRESS_CIDR, EGRESS_PROTOCOL,
    IMDS_HOP_LIMIT, IMDS_HTTP_ENDPOINT, IMDS_HTTP_TOKENS, ROOT_VOLUME_ENCRYPTED, ROOT_VOLUME_TYPE,
    STACK_TAG,
};

/// Bumped when a field is renamed or removed (added fields keep the version).
pub const FORMAT_VERSION: u32 = 1;

/// Every fact of the stack. Tag maps are `key -> value`; lists are sorted where the
/// order carries no meaning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Facts {
    pub format_version: u32,
    pub stack: String,
    pub region: String,
    /// The tags every resource carries, besides its own `Name`.
    pub tags: BTreeMap<String, String>,
    pub network: NetworkFacts,
    /// By role: `nodes`, `db`, `elb`.
    pub security_groups: BTreeMap<String, SecurityGroupFacts>,
    pub database: DatabaseFacts,
    pub load_balancer: LoadBalancerFacts,
    pub auto_scaling_group: GroupFacts,
    pub launch_template: LaunchTemplateFacts,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkFacts {
    pub vpc_cidr: String,
    pub az_count: usize,
    /// `per_az` or `single`.
    pub nat: String,
    /// NAT gateways when the region has `az_count` AZs.
    pub nat_gateways: usize,
    pub public_subnet_cidrs: Vec<String>,
    pub private_subnet_cidrs: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

/// One rule: `protocol` is `tcp` or `all` (ports then absent); the source is a CIDR
/// or another of the stack's groups, by role.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Rule {
    pub protocol: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_group: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecurityGroupFacts {
    pub name: String,
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
    pub tags: BTreeMap<String, String>,
}

/// The port is PostgreSQL's default, which neither deployment sets: the db group's
/// ingress rule holds it (the kit serves each instance on a port of its own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatabaseFacts {
    pub identifier: String,
    pub engine: String,
    /// As configured: a major version (`15`, any 15.x matches) or a minor (`15.4`).
    pub engine_version: String,
    pub instance_class: String,
    pub allocated_storage: i32,
    pub storage_type: String,
    pub multi_az: bool,
    pub storage_encrypted: bool,
    pub backup_retention_period: i32,
    pub deletion_protection: bool,
    pub copy_tags_to_snapshot: bool,
    pub publicly_accessible: bool,
    pub db_name: String,
    pub master_username: String,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Listener {
    pub load_balancer_port: i32,
    pub protocol: String,
    pub instance_port: i32,
    pub instance_protocol: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthCheck {
    pub target: String,
    pub interval: i32,
    pub timeout: i32,
    pub healthy_threshold: i32,
    pub unhealthy_threshold: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Draining {
    pub enabled: bool,
    /// Seconds; absent when draining is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadBalancerFacts {
    pub name: String,
    pub scheme: String,
    pub listeners: Vec<Listener>,
    /// Backend (instance) ports that get the PROXY protocol.
    pub proxy_protocol_ports: Vec<i32>,
    pub proxy_protocol_policy_type: String,
    pub health_check: HealthCheck,
    pub cross_zone: bool,
    pub idle_timeout: i32,
    pub connection_draining: Draining,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LifecycleHookFacts {
    pub name: String,
    pub transition: String,
    pub heartbeat_timeout: i32,
    pub default_result: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupFacts {
    pub name: String,
    pub min_size: i32,
    pub max_size: i32,
    pub desired_capacity: i32,
    pub health_check_type: String,
    pub health_check_grace_period: i32,
    /// The group is attached to the stack's ELB, by name.
    pub load_balancers: Vec<String>,
    pub lifecycle_hook: LifecycleHookFacts,
    /// Propagated to the instances at launch.
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetadataOptions {
    /// `required`: IMDSv2 only.
    pub http_tokens: String,
    pub http_endpoint: String,
    pub http_put_response_hop_limit: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RootVolume {
    pub volume_type: String,
    pub encrypted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LaunchTemplateFacts {
    pub name: String,
    pub instance_type: String,
    pub metadata_options: MetadataOptions,
    pub root_volume: RootVolume,
    /// On the template, and on the instances and volumes it launches.
    pub tags: BTreeMap<String, String>,
}

fn tag_map(spec: &Spec, name: &str) -> BTreeMap<String, String> {
    spec.tags(name)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// `key=value` strings (as the desired states hold tags) as a map.
fn tags_of(strings: &[String]) -> BTreeMap<String, String> {
    strings
        .iter()
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Facts {
    pub fn of(spec: &Spec) -> Facts {
        let c = &spec.config;

        let azs: Vec<String> = (0..c.az_count).map(|i| format!("az{i}")).collect();
        let network = NetworkFacts {
            vpc_cidr: c.vpc_cidr.clone(),
            az_count: c.az_count,
            nat: match c.nat {
                NatMode::PerAz => "per_az",
                NatMode::Single => "single",
            }
            .to_string(),
            nat_gateways: nat_azs(spec, &azs).len(),
            public_subnet_cidrs: (0..c.az_count).map(|i| spec.subnet_cidr(i, true)).collect(),
            private_subnet_cidrs: (0..c.az_count)
                .map(|i| spec.subnet_cidr(i, false))
                .collect(),
            tags: tag_map(spec, &spec.name("vpc")),
        };

        let egress = vec![Rule {
            protocol: protocol_name(EGRESS_PROTOCOL),
            from_port: None,
            to_port: None,
            cidr: Some(EGRESS_CIDR.to_string()),
            source_group: None,
        }];
        let security_groups = wanted_groups(spec)
            .into_iter()
            .map(|(role, name, rules)| {
                let mut ingress: Vec<Rule> = rules
                    .into_iter()
                    .map(|r| Rule {
                        protocol: INGRESS_PROTOCOL.to_string(),
                        from_port: Some(r.from),
                        to_port: Some(r.to),
                        cidr: Some(r.cidr),
                        source_group: None,
                    })
                    .collect();
                ingress.sort();
                let facts = SecurityGroupFacts {
                    tags: tag_map(spec, &name),
                    name,
                    ingress,
                    egress: egress.clone(),
                };
                (role.to_string(), facts)
            })
            .collect();

        let db_id = spec.db_identifier();
        let database = DatabaseFacts {
            tags: tag_map(spec, &db_id),
            identifier: db_id,
            engine: DB_ENGINE.into(),
            engine_version: c.db_engine_version.clone(),
            instance_class: c.db_instance_class.clone(),
            allocated_storage: c.db_allocated_storage,
            storage_type: STORAGE_TYPE.into(),
            multi_az: DB_MULTI_AZ,
            storage_encrypted: DB_STORAGE_ENCRYPTED,
            backup_retention_period: c.backup_retention_days,
            deletion_protection: DB_DELETION_PROTECTION,
            copy_tags_to_snapshot: DB_COPY_TAGS_TO_SNAPSHOT,
            publicly_accessible: DB_PUBLICLY_ACCESSIBLE,
            db_name: DB_NAME.into(),
            master_username: DB_USER.into(),
        };

        let elb = balancer::Desired::for_spec(spec, None, None);
        let mut listeners: Vec<Listener> = elb
            .listeners
            .iter()
            .map(|l| Listener {
                load_balancer_port: l.port,
                protocol: l.protocol.clone(),
                instance_port: l.instance_port,
                instance_protocol: l.instance_protocol.clone(),
            })
            .collect();
        listeners.sort();
        let mut proxy_protocol_ports = elb.proxy_ports.clone();
        proxy_protocol_ports.sort();
        let load_balancer = LoadBalancerFacts {
            scheme: SCHEME.into(),
            listeners,
            proxy_protocol_ports,
            proxy_protocol_policy_type: PROXY_POLICY_TYPE.into(),
            health_check: HealthCheck {
                target: elb.health_check.target.clone(),
                interval: elb.health_check.interval,
                timeout: elb.health_check.timeout,
                healthy_threshold: elb.health_check.healthy,
                unhealthy_threshold: elb.health_check.unhealthy,
            },
            cross_zone: CROSS_ZONE,
            idle_timeout: IDLE_TIMEOUT,
            connection_draining: Draining {
                enabled: elb.draining.is_some(),
                timeout: elb.draining,
            },
            tags: elb.tags.iter().cloned().collect(),
            name: elb.name.clone(),
        };

        // The version does not matter here: facts hold no version.
        let settings = group::desired_for(spec, None, 1);
        let hook = group::hook_for(spec);
        let auto_scaling_group = GroupFacts {
            name: spec.asg_name(),
            min_size: settings.min_size.unwrap_or_default(),
            max_size: settings.max_size.unwrap_or_default(),
            desired_capacity: settings.desired_capacity.unwrap_or_default(),
            health_check_type: settings.health_check_type.clone().unwrap_or_default(),
            health_check_grace_period: settings.health_check_grace_period.unwrap_or_default(),
            load_balancers: vec![load_balancer.name.clone()],
            lifecycle_hook: LifecycleHookFacts {
                name: lifecycle_hook_name(spec),
                transition: hook.transition,
                heartbeat_timeout: hook.heartbeat,
                default_result: hook.default_result,
            },
            tags: tags_of(&settings.tags),
        };

        let launch_template = LaunchTemplateFacts {
            name: spec.launch_template_name(),
            instance_type: c.instance_type.clone(),
            metadata_options: MetadataOptions {
                http_tokens: IMDS_HTTP_TOKENS.into(),
                http_endpoint: IMDS_HTTP_ENDPOINT.into(),
                http_put_response_hop_limit: IMDS_HOP_LIMIT,
            },
            root_volume: RootVolume {
                volume_type: ROOT_VOLUME_TYPE.into(),
                encrypted: ROOT_VOLUME_ENCRYPTED,
            },
            // The converge code tags the template's instances and volumes with the
            // group's name (the template has the same name).
            tags: tag_map(spec, &spec.asg_name()),
        };

        Facts {
            format_version: FORMAT_VERSION,
            stack: spec.stack.clone(),
            region: spec.region.clone(),
            tags: BTreeMap::from([(STACK_TAG.to_string(), spec.stack.clone())]),
            network,
            security_groups,
            database,
            load_balancer,
            auto_scaling_group,
            launch_template,
        }
    }

    /// `section.field: value`, one fact a line, in the JSON's order.
    pub fn render_text(&self) -> String {
        let value = serde_json::to_value(self).expect("facts serialize");
        let mut out = String::new();
        flatten(&mut out, "", &value);
        out
    }
}

/// `-1` is every protocol: `all`, as the plan's rule texts say.
fn protocol_name(protocol: &str) -> String {
    if protocol == "-1" { "all" } else { protocol }.to_string()
}

fn flatten(out: &mut String, prefix: &str, value: &serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(out, &key, v);
            }
        }
        Value::Array(items) if items.iter().all(|v| !v.is_object()) => {
            let parts: Vec<String> = items.iter().map(scalar).collect();
            let _ = writeln!(out, "{prefix}: [{}]", parts.join(", "));
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(out, &format!("{prefix}[{i}]"), v);
            }
        }
        other => {
            let _ = writeln!(out, "{prefix}: {}", scalar(other));
        }
    }
}

fn scalar(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::StackConfig;

    fn spec(toml_text: &str) -> Spec {
        let config: StackConfig = toml::from_str(toml_text).unwrap();
        Spec::new("gw", "us-east-1", config).unwrap()
    }

    #[test]
    fn json_shape_is_stable() {
        let json = serde_json::to_value(Facts::of(&spec(""))).unwrap();
        let keys = |v: &serde_json::Value| -> Vec<String> {
            v.as_object().unwrap().keys().cloned().collect()
        };
        assert_eq!(
            keys(&json),
            [
                "auto_scaling_group",
                "database",
                "format_version",
                "launch_template",
                "load_balancer",
                "network",
                "region",
                "security_groups",
                "stack",
                "tags"
            ]
        );
        assert_eq!(json["format_version"], 1);
        assert_eq!(keys(&json["security_groups"]), ["db", "elb", "nodes"]);
        assert_eq!(
            json["security_groups"]["nodes"],
            serde_json::json!({
                "name": "gw-nodes",
                "ingress": [
                    {"protocol": "tcp", "from_port": 8000, "to_port": 8003, "cidr": "10.0.0.0/16"},
                    {"protocol": "tcp", "from_port": 8443, "to_port": 8446, "cidr": "10.0.0.0/16"}
                ],
                "egress": [{"protocol": "all", "cidr": "0.0.0.0/0"}],
                "tags": {"Name": "gw-nodes", "gateway-kit:stack": "gw"}
            })
        );
        assert_eq!(
            json["security_groups"]["db"]["ingress"],
            serde_json::json!([{"protocol": "tcp", "from_port": 5432, "to_port": 5432, "cidr": "10.0.0.0/16"}])
        );
        assert_eq!(
            json["load_balancer"],
            serde_json::json!({
                "name": "gw-elb",
                "scheme": "internet-facing",
                "listeners": [
                    {"load_balancer_port": 80, "protocol": "TCP", "instance_port": 8000, "instance_protocol": "TCP"},
                    {"load_balancer_port": 443, "protocol": "TCP", "instance_port": 8443, "instance_protocol": "TCP"}
                ],
                "proxy_protocol_ports": [8000, 8443],
                "proxy_protocol_policy_type": "ProxyProtocolPolicyType",
                "health_check": {"target": "HTTP:8001/status", "interval": 10, "timeout": 5,
                                 "healthy_threshold": 2, "unhealthy_threshold": 3},
                "cross_zone": true,
                "idle_timeout": 60,
                "connection_draining": {"enabled": true, "timeout": 30},
                "tags": {"Name": "gw-elb", "gateway-kit:stack": "gw"}
            })
        );
        assert_eq!(
            json["database"],
            serde_json::json!({
                "identifier": "gw-db",
                "engine": "postgres",
                "engine_version": "15",
                "instance_class": "db.m5.large",
                "allocated_storage": 100,
                "storage_type": "gp3",
                "multi_az": true,
                "storage_encrypted": true,
                "backup_retention_period": 7,
                "deletion_protection": true,
                "copy_tags_to_snapshot": true,
                "publicly_accessible": false,
                "db_name": "kong",
                "master_username": "kong",
                "tags": {"Name": "gw-db", "gateway-kit:stack": "gw"}
            })
        );
        assert_eq!(
            json["auto_scaling_group"],
            serde_json::json!({
                "name": "gw-nodes",
                "min_size": 2,
                "max_size": 6,
                "desired_capacity": 2,
                "health_check_type": "ELB",
                "health_check_grace_period": 300,
                "load_balancers": ["gw-elb"],
                "lifecycle_hook": {"name": "gw-drain",
                                   "transition": "autoscaling:EC2_INSTANCE_TERMINATING",
                                   "heartbeat_timeout": 300, "default_result": "CONTINUE"},
                "tags": {"Name": "gw-nodes", "gateway-kit:stack": "gw"}
            })
        );
        assert_eq!(
            json["launch_template"],
            serde_json::json!({
                "name": "gw-nodes",
                "instance_type": "c5.2xlarge",
                "metadata_options": {"http_tokens": "required", "http_endpoint": "enabled",
                                     "http_put_response_hop_limit": 1},
                "root_volume": {"volume_type": "gp3", "encrypted": true},
                "tags": {"Name": "gw-nodes", "gateway-kit:stack": "gw"}
            })
        );
        assert_eq!(
            json["network"],
            serde_json::json!({
                "vpc_cidr": "10.0.0.0/16",
                "az_count": 3,
                "nat": "per_az",
                "nat_gateways": 3,
                "public_subnet_cidrs": ["10.0.0.0/20", "10.0.16.0/20", "10.0.32.0/20"],
                "private_subnet_cidrs": ["10.0.128.0/20", "10.0.144.0/20", "10.0.160.0/20"],
                "tags": {"Name": "gw-vpc", "gateway-kit:stack": "gw"}
            })
        );
        assert_eq!(json["tags"], serde_json::json!({"gateway-kit:stack": "gw"}));
    }

    #[test]
    fn facts_follow_the_config() {
        let f = Facts::of(&spec(
            r#"
            allowed_cidrs = ["192.0.2.0/24", "198.51.100.0/24"]
            nat = "single"
            az_count = 2
            min_size = 1
            desired_capacity = 1
            max_size = 3
            connection_draining_timeout = 0
            termination_drain_seconds = 90
            db_engine_version = "15.7"
            backup_retention_days = 14
            "#,
        ));
        let elb = &f.security_groups["elb"];
        let texts: Vec<String> = elb
            .ingress
            .iter()
            .map(|r| format!("{:?} {}", r.from_port, r.cidr.as_deref().unwrap()))
            .collect();
        assert_eq!(
            texts,
            [
                "Some(80) 192.0.2.0/24",
                "Some(80) 198.51.100.0/24",
                "Some(443) 192.0.2.0/24",
                "Some(443) 198.51.100.0/24"
            ]
        );
        assert_eq!(f.network.nat_gateways, 1);
        assert_eq!(f.network.public_subnet_cidrs.len(), 2);
        assert_eq!(
            (
                f.auto_scaling_group.min_size,
                f.auto_scaling_group.desired_capacity,
                f.auto_scaling_group.max_size
            ),
            (1, 1, 3)
        );
        assert_eq!(f.auto_scaling_group.lifecycle_hook.heartbeat_timeout, 90);
        assert_eq!(
            f.load_balancer.connection_draining,
            Draining {
                enabled: false,
                timeout: None
            }
        );
        assert_eq!(f.database.engine_version, "15.7");
        assert_eq!(f.database.backup_retention_period, 14);
    }

    #[test]
    fn text_has_one_fact_a_line() {
        let text = Facts::of(&spec("")).render_text();
        assert!(
            text.contains("load_balancer.health_check.target: HTTP:8001/status\n"),
            "{text}"
        );
        assert!(
            text.contains("load_balancer.proxy_protocol_ports: [8000, 8443]\n"),
            "{text}"
        );
        assert!(
            text.contains("security_groups.db.ingress[0].from_port: 5432\n"),
            "{text}"
        );
        assert!(
            text.contains("launch_template.metadata_options.http_tokens: required\n"),
            "{text}"
        );
    }
}
