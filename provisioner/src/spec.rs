//! StackSpec: what the stack must be. Defaults follow Kong's "AWS Guide and Best
//! Practices"; `stack.toml` overrides them. The facts every template must share (ports,
//! rules, proxy protocol, health check) are the constants below.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;

/// Gateway node ports opened to the VPC: proxy, admin, manager, portal (plain, then TLS).
pub const NODE_PORT_RANGES: [(u16, u16); 2] = [(8000, 8003), (8443, 8446)];
/// PostgreSQL, opened to the VPC on the database security group.
pub const DB_PORT: u16 = 5432;
/// Classic ELB TCP listeners: (load balancer port, instance port). TLS passes through.
pub const ELB_LISTENERS: [(u16, u16); 2] = [(80, 8000), (443, 8443)];
/// Backend ports that receive the PROXY protocol (v1) from the classic ELB.
pub const PROXY_PROTOCOL_PORTS: [u16; 2] = [8000, 8443];
/// The ELB health check: the admin listener's `/status`, which takes no PROXY header.
pub const HEALTH_CHECK_TARGET: &str = "HTTP:8001/status";
/// The tag key that marks every resource of a stack; its value is the stack name.
pub const STACK_TAG: &str = "gateway-kit:stack";
/// PostgreSQL engine major version for RDS.
pub const DB_ENGINE: &str = "postgres";
/// The gateway's database and master user on RDS.
pub const DB_NAME: &str = "kong";
pub const DB_USER: &str = "kong";
/// The stack's security groups keep AWS's default egress rule: all traffic to anywhere
/// (`-1`). The provisioner never changes egress; the templates state the same rule.
pub const EGRESS_PROTOCOL: &str = "-1";
pub const EGRESS_CIDR: &str = "0.0.0.0/0";
/// The database's fixed settings: every create, restore and repair holds it to them.
pub const DB_MULTI_AZ: bool = true;
pub const DB_STORAGE_ENCRYPTED: bool = true;
pub const DB_DELETION_PROTECTION: bool = true;
pub const DB_COPY_TAGS_TO_SNAPSHOT: bool = true;
pub const DB_PUBLICLY_ACCESSIBLE: bool = false;
/// The nodes' instance metadata service: IMDSv2 only (a token is required), reachable
/// from the instance itself and not from a container behind it (hop limit 1).
pub const IMDS_HTTP_TOKENS: &str = "required";
pub const IMDS_HTTP_ENDPOINT: &str = "enabled";
pub const IMDS_HOP_LIMIT: i32 = 1;
/// The nodes' root volume: encrypted gp3.
pub const ROOT_VOLUME_TYPE: &str = "gp3";
pub const ROOT_VOLUME_ENCRYPTED: bool = true;
/// Public SSM parameter with the newest Amazon Linux 2023 AMI.
pub const AL2023_AMI_PARAMETER: &str =
    "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64";

/// Where the NAT gateways go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NatMode {
    /// One NAT gateway per AZ: an AZ outage leaves the others' egress intact.
    PerAz,
    /// One NAT gateway for the whole VPC: cheaper, one AZ's failure cuts egress.
    Single,
}

/// Where the generated secrets (DB master password, admin token) are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretStore {
    /// SSM Parameter Store, SecureString.
    Ssm,
    /// Secrets Manager.
    SecretsManager,
}

/// `stack.toml`: every key optional; an unknown key is an error.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StackConfig {
    pub vpc_cidr: String,
    /// How many AZs to spread over (at least 2; fewer if the region has fewer).
    pub az_count: usize,
    pub nat: NatMode,
    /// Who may reach the ELB listeners.
    pub allowed_cidrs: Vec<String>,
    pub db_instance_class: String,
    pub db_allocated_storage: i32,
    pub db_engine_version: String,
    pub backup_retention_days: i32,
    pub secret_store: SecretStore,
    /// How often each node re-reads the DB password and the admin token
    /// (`gateway-secrets.service`), in seconds: a rotation reaches every node
    /// within this. 10 to 3600.
    pub secret_refresh_seconds: u32,
    pub instance_type: String,
    /// AMI id; default: Amazon Linux 2023 from its public SSM parameter.
    pub ami: Option<String>,
    pub min_size: i32,
    pub max_size: i32,
    pub desired_capacity: i32,
    pub health_check_grace_period: i32,
    /// Seconds the ELB keeps draining a deregistered node.
    pub connection_draining_timeout: i32,
    /// Seconds a terminating node gets to drain (lifecycle hook heartbeat).
    pub termination_drain_seconds: i32,
    /// DNS name for the ELB, with `hosted_zone_id`.
    pub domain: Option<String>,
    pub hosted_zone_id: Option<String>,
    /// The gateway binary to ship (default: `gateway` beside the provisioner, then PATH).
    pub gateway_binary: Option<PathBuf>,
    /// Cross-region disaster recovery: `[dr]`.
    pub dr: Option<DrConfig>,
}

/// `[dr]`: the region that holds the backup copies and takes over in an outage, and the
/// targets drills and failovers are held to.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrConfig {
    pub region: String,
    /// The most data a recovery may lose: now minus the latest restorable time.
    #[serde(default = "DrConfig::default_rpo", with = "humantime_serde")]
    pub rpo_target: Duration,
    /// The longest a recovery may take, until the first request is served.
    #[serde(default = "DrConfig::default_rto", with = "humantime_serde")]
    pub rto_target: Duration,
}

impl DrConfig {
    /// RDS ships transaction logs every 5 minutes, and a replicated backup trails the
    /// source by minutes more.
    pub fn default_rpo() -> Duration {
        Duration::from_secs(15 * 60)
    }
    /// A restore of a large RDS instance alone takes tens of minutes on AWS.
    fn default_rto() -> Duration {
        Duration::from_secs(60 * 60)
    }

    pub fn new(region: &str) -> DrConfig {
        DrConfig {
            region: region.to_string(),
            rpo_target: DrConfig::default_rpo(),
            rto_target: DrConfig::default_rto(),
        }
    }
}

/// `secret_refresh_seconds` when unset, and its range.
pub const DEFAULT_SECRET_REFRESH_SECONDS: u32 = 30;
pub const SECRET_REFRESH_RANGE: std::ops::RangeInclusive<u32> = 10..=3600;

impl Default for StackConfig {
    fn default() -> Self {
        StackConfig {
            vpc_cidr: "10.0.0.0/16".into(),
            az_count: 3,
            nat: NatMode::PerAz,
            allowed_cidrs: vec!["0.0.0.0/0".into()],
            db_instance_class: "db.m5.large".into(),
            db_allocated_storage: 100,
            db_engine_version: "15".into(),
            backup_retention_days: 7,
            secret_store: SecretStore::Ssm,
            secret_refresh_seconds: DEFAULT_SECRET_REFRESH_SECONDS,
            instance_type: "c5.2xlarge".into(),
            ami: None,
            min_size: 2,
            max_size: 6,
            desired_capacity: 2,
            health_check_grace_period: 300,
            connection_draining_timeout: 30,
            termination_drain_seconds: 300,
            domain: None,
            hosted_zone_id: None,
            gateway_binary: None,
            dr: None,
        }
    }
}

impl StackConfig {
    /// Reads and checks `path`; errors name the file and the key.
    pub fn load(path: &Path) -> Result<StackConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let config: StackConfig =
            toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
        config
            .check()
            .with_context(|| format!("{} is not valid", path.display()))?;
        Ok(config)
    }

    /// The rules serde cannot express.
    pub fn check(&self) -> Result<()> {
        let (_, prefix) = parse_cidr(&self.vpc_cidr).context("vpc_cidr")?;
        if !(16..=24).contains(&prefix) {
            bail!("vpc_cidr: the prefix must be /16 to /24, got /{prefix}");
        }
        if self.az_count < 2 {
            bail!("az_count: at least 2 AZs are needed for MultiAZ RDS and the ELB");
        }
        if self.az_count > 6 {
            bail!("az_count: at most 6 (the VPC is split into 16 subnets)");
        }
        for cidr in &self.allowed_cidrs {
            parse_cidr(cidr).with_context(|| format!("allowed_cidrs: {cidr}"))?;
        }
        if self.allowed_cidrs.is_empty() {
            bail!("allowed_cidrs: give at least one CIDR, e.g. \"0.0.0.0/0\"");
        }
        if !(self.min_size <= self.desired_capacity && self.desired_capacity <= self.max_size) {
            bail!(
                "min_size <= desired_capacity <= max_size must hold, got {} / {} / {}",
                self.min_size,
                self.desired_capacity,
                self.max_size
            );
        }
        if self.min_size < 1 {
            bail!("min_size: at least 1 node");
        }
        if !(1..=35).contains(&self.backup_retention_days) {
            bail!("backup_retention_days: 1 to 35 (RDS's range; 0 would turn backups off)");
        }
        if !SECRET_REFRESH_RANGE.contains(&self.secret_refresh_seconds) {
            bail!(
                "secret_refresh_seconds: {} to {} (how often nodes re-read rotated secrets), got {}",
                SECRET_REFRESH_RANGE.start(),
                SECRET_REFRESH_RANGE.end(),
                self.secret_refresh_seconds
            );
        }
        if self.domain.is_some() != self.hosted_zone_id.is_some() {
            bail!("domain and hosted_zone_id go together: give both or neither");
        }
        // Checked here so that `up` stops before it builds anything, not at
        // the DNS record, its last step.
        if let Some(domain) = &self.domain {
            check_domain(domain).context("domain")?;
        }
        if let Some(zone) = &self.hosted_zone_id {
            check_zone_id(zone).context("hosted_zone_id")?;
        }
        if let Some(dr) = &self.dr {
            check_region(&dr.region).context("dr.region")?;
            if dr.rpo_target.is_zero() || dr.rto_target.is_zero() {
                bail!("dr.rpo_target and dr.rto_target must be more than 0 (e.g. \"15m\")");
            }
        }
        Ok(())
    }
}

/// A lower-case DNS name such as `api.example.com`: labels of letters, digits
/// and inner dashes, and a top-level label of letters (the CloudFormation
/// template's `Domain` pattern; Terraform's `domain` validation is the same).
fn check_domain(domain: &str) -> Result<()> {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    let ok = match domain.rsplit_once('.') {
        Some((labels, top)) => {
            labels.split('.').all(label_ok)
                && (2..=63).contains(&top.len())
                && top.chars().all(|c| c.is_ascii_lowercase())
        }
        None => false,
    };
    if !ok {
        bail!("{domain:?} is not a lower-case DNS name such as api.example.com");
    }
    Ok(())
}

/// A Route53 hosted zone id such as `Z0123456789ABCDEFGHIJ`: up to 32
/// upper-case letters and digits (the template's `HostedZoneId` pattern).
/// AWS's start with Z; LocalStack's need not, so the first letter is free.
fn check_zone_id(zone: &str) -> Result<()> {
    if zone.starts_with("/hostedzone/") {
        bail!(
            "{zone:?}: give the id without \"/hostedzone/\" \
             (aws route53 list-hosted-zones --query 'HostedZones[].Id' shows it with the prefix)"
        );
    }
    let ok = (1..=32).contains(&zone.len())
        && zone
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if !ok {
        bail!("{zone:?} is not a Route53 hosted zone id such as Z0123456789ABCDEFGHIJ");
    }
    Ok(())
}

/// A region name's shape, e.g. `us-west-2` (a typo would otherwise surface as a DNS error).
pub fn check_region(region: &str) -> Result<()> {
    let parts: Vec<&str> = region.split('-').collect();
    let ok = parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()));
    if !ok {
        bail!("{region:?} is not an AWS region name like us-west-2");
    }
    Ok(())
}

/// The partition of a region: copies and replication stay inside one.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-iso") {
        "aws-iso"
    } else {
        "aws"
    }
}

/// The whole desired stack: name, region and config.
#[derive(Debug, Clone)]
pub struct Spec {
    pub stack: String,
    pub region: String,
    pub config: StackConfig,
    /// The stack whose KMS key, secrets and artifact bucket this one uses without owning
    /// them: a DR drill's copy uses its primary's pilot light. None: its own.
    pub borrows_from: Option<String>,
}

impl Spec {
    pub fn new(stack: &str, region: &str, config: StackConfig) -> Result<Spec> {
        if stack.is_empty()
            || stack.len() > 20
            || !stack.starts_with(|c: char| c.is_ascii_lowercase())
            || !stack
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            || stack.ends_with('-')
            || stack.contains("--")
        {
            bail!(
                "stack name {stack:?}: use 1-20 lower-case letters, digits and single dashes, \
                 starting with a letter (it prefixes every resource name, some of which AWS limits to 32 characters)"
            );
        }
        config.check()?;
        if let Some(dr) = &config.dr {
            if dr.region == region {
                bail!("dr.region is {region}, the stack's own region: name another region for the copies");
            }
        }
        Ok(Spec {
            stack: stack.to_string(),
            region: region.to_string(),
            config,
            borrows_from: None,
        })
    }

    /// The drill copy of this stack in `region`: `<stack>-drill`, its own network,
    /// database, ELB and nodes, borrowing the pilot light's key, secrets and artifact
    /// bucket, with no DNS name and no DR region of its own.
    pub fn drill_copy(&self, region: &str) -> Spec {
        Spec {
            stack: format!("{}-drill", self.stack),
            region: region.to_string(),
            config: StackConfig {
                domain: None,
                hosted_zone_id: None,
                dr: None,
                ..self.config.clone()
            },
            borrows_from: Some(self.owner().to_string()),
        }
    }

    /// The stack that owns the key, the secrets and the artifact bucket.
    pub fn owner(&self) -> &str {
        self.borrows_from.as_deref().unwrap_or(&self.stack)
    }

    /// The tags every resource of the stack carries: `Name` and the stack tag.
    pub fn tags(&self, name: &str) -> [(&'static str, String); 2] {
        [("Name", name.to_string()), (STACK_TAG, self.stack.clone())]
    }

    /// `<stack>-<suffix>`: the Name tag or the resource name.
    pub fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.stack)
    }

    pub fn db_identifier(&self) -> String {
        self.name("db")
    }
    pub fn elb_name(&self) -> String {
        self.name("elb")
    }
    pub fn asg_name(&self) -> String {
        self.name("nodes")
    }
    pub fn launch_template_name(&self) -> String {
        self.name("nodes")
    }
    /// SSM parameter or secret name of the DB master password.
    pub fn db_password_secret(&self) -> String {
        format!("/{}/db/master-password", self.owner())
    }
    /// SSM parameter or secret name of the Admin API token.
    pub fn admin_token_secret(&self) -> String {
        format!("/{}/gateway/admin-token", self.owner())
    }
    /// Name (and alias suffix) of the KMS key of the database and its copies.
    pub fn kms_key_name(&self) -> String {
        format!("{}-db", self.owner())
    }

    /// Subnet CIDRs: the VPC split into 16; public subnet i is block i, private is 8 + i.
    pub fn subnet_cidr(&self, index: usize, public: bool) -> String {
        let (base, prefix) = parse_cidr(&self.config.vpc_cidr).expect("checked in Spec::new");
        let sub_prefix = prefix + 4;
        let block = if public { index } else { 8 + index } as u32;
        let addr = u32::from(base) | (block << (32 - sub_prefix));
        format!("{}/{}", Ipv4Addr::from(addr), sub_prefix)
    }
}

/// Parses `a.b.c.d/n` with the host bits zero.
pub fn parse_cidr(cidr: &str) -> Result<(Ipv4Addr, u8)> {
    let (addr, prefix) = cidr
        .split_once('/')
        .with_context(|| format!("{cidr:?} is not a CIDR like 10.0.0.0/16"))?;
    let addr: Ipv4Addr = addr
        .parse()
        .with_context(|| format!("{cidr:?}: bad IPv4 address"))?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= 32)
        .with_context(|| format!("{cidr:?}: the prefix must be 0-32"))?;
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    if u32::from(addr) & !mask != 0 {
        bail!(
            "{cidr:?}: host bits are set; did you mean {}/{prefix}?",
            Ipv4Addr::from(u32::from(addr) & mask)
        );
    }
    Ok((addr, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(toml_text: &str) -> Result<Spec> {
        let config: StackConfig = toml::from_str(toml_text)?;
        Spec::new("gw", "us-east-1", config)
    }

    #[test]
    fn defaults_follow_the_guide() {
        let s = spec("").unwrap();
        assert_eq!(s.config.vpc_cidr, "10.0.0.0/16");
        assert_eq!(s.config.az_count, 3);
        assert_eq!(s.config.nat, NatMode::PerAz);
        assert_eq!(s.config.db_instance_class, "db.m5.large");
        assert_eq!(s.config.instance_type, "c5.2xlarge");
        assert_eq!(s.config.backup_retention_days, 7);
        assert_eq!(s.config.min_size, 2);
        assert_eq!(s.config.secret_refresh_seconds, 30);
    }

    #[test]
    fn subnets_split_the_vpc() {
        let s = spec("").unwrap();
        assert_eq!(s.subnet_cidr(0, true), "10.0.0.0/20");
        assert_eq!(s.subnet_cidr(2, true), "10.0.32.0/20");
        assert_eq!(s.subnet_cidr(0, false), "10.0.128.0/20");
        let s = spec("vpc_cidr = \"172.20.0.0/20\"").unwrap();
        assert_eq!(s.subnet_cidr(1, false), "172.20.9.0/24");
    }

    #[test]
    fn bad_configs_name_the_key() {
        let e = spec("vpc_cidrs = \"10.0.0.0/16\"").unwrap_err();
        assert!(
            format!("{e:#}").contains("unknown field `vpc_cidrs`"),
            "{e:#}"
        );
        let e = spec("nat = \"some\"").unwrap_err();
        assert!(format!("{e:#}").contains("per_az"), "{e:#}");
        let e = spec("vpc_cidr = \"10.0.0.1/16\"").unwrap_err();
        assert!(format!("{e:#}").contains("host bits"), "{e:#}");
        let e = spec("az_count = 1").unwrap_err();
        assert!(format!("{e:#}").contains("az_count"), "{e:#}");
        let e = spec("min_size = 3\ndesired_capacity = 2").unwrap_err();
        assert!(format!("{e:#}").contains("desired_capacity"), "{e:#}");
        for bad in [
            "secret_refresh_seconds = 9",
            "secret_refresh_seconds = 3601",
        ] {
            let e = spec(bad).unwrap_err();
            assert!(
                format!("{e:#}").contains("secret_refresh_seconds: 10 to 3600"),
                "{e:#}"
            );
        }
        assert!(spec("secret_refresh_seconds = 10").is_ok());
        let e = spec("domain = \"api.example.com\"").unwrap_err();
        assert!(format!("{e:#}").contains("hosted_zone_id"), "{e:#}");
        for (bad, key) in [
            ("domain = \"\"\nhosted_zone_id = \"Z123\"", "domain: \"\""),
            (
                "domain = \"api..example.com\"\nhosted_zone_id = \"Z123\"",
                "domain",
            ),
            (
                "domain = \"-api.example.com\"\nhosted_zone_id = \"Z123\"",
                "domain",
            ),
            (
                "domain = \"api.example.com\"\nhosted_zone_id = \"\"",
                "hosted_zone_id: \"\"",
            ),
            (
                "domain = \"api.example.com\"\nhosted_zone_id = \"z123\"",
                "hosted_zone_id",
            ),
            (
                "domain = \"api.example.com\"\nhosted_zone_id = \"/hostedzone/Z123\"",
                "without \"/hostedzone/\"",
            ),
        ] {
            let e = spec(bad).unwrap_err();
            assert!(format!("{e:#}").contains(key), "{bad}: {e:#}");
        }
        assert!(spec("domain = \"api.example.com\"\nhosted_zone_id = \"Z35SXDOTRQ7X7K\"").is_ok());
        // The cases localstack/tests/test_terraform_variables.py gives
        // Terraform and the CloudFormation template's patterns.
        for good in ["api.example.com", "a-1.b.example.co"] {
            assert!(check_domain(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "example",
            "api..example.com",
            "-api.example.com",
            "api_x.example.com",
            "API.example.com",
            "api.example.com.",
            "api.example.c0m",
        ] {
            assert!(check_domain(bad).is_err(), "{bad}");
        }
        for good in ["Z35SXDOTRQ7X7K", "Z1", "D3S5MTPM1K5LMM6GBMT19F"] {
            assert!(check_zone_id(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "z123",
            "/hostedzone/Z123",
            "Z123-4",
            "Z12345678901234567890123456789012",
        ] {
            assert!(check_zone_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_drill_copy_borrows_the_pilot_light() {
        let s = spec("[dr]\nregion = \"us-west-2\"\nrpo_target = \"5m\"").unwrap();
        assert_eq!(
            s.config.dr.as_ref().unwrap().rpo_target,
            Duration::from_secs(300)
        );
        let d = s.drill_copy("us-west-2");
        assert_eq!(
            (d.stack.as_str(), d.region.as_str()),
            ("gw-drill", "us-west-2")
        );
        assert_eq!(d.db_identifier(), "gw-drill-db");
        assert_eq!(d.db_password_secret(), "/gw/db/master-password");
        assert_eq!(d.kms_key_name(), "gw-db");
        assert!(d.config.dr.is_none() && d.config.domain.is_none());
        let e = spec("[dr]\nregion = \"us-east-1\"").unwrap_err();
        assert!(format!("{e:#}").contains("own region"), "{e:#}");
        let e = spec("[dr]\nregion = \"uswest2\"").unwrap_err();
        assert!(format!("{e:#}").contains("dr.region"), "{e:#}");
    }

    #[test]
    fn stack_names_are_checked() {
        for bad in ["", "Gw", "1gw", "gw-", "g--w", "a-very-long-stack-name-x"] {
            assert!(
                Spec::new(bad, "us-east-1", StackConfig::default()).is_err(),
                "{bad}"
            );
        }
        assert!(Spec::new("gw-2", "us-east-1", StackConfig::default()).is_ok());
    }
}
