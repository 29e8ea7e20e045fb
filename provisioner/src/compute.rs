//! Compute: the nodes' IAM role and instance profile (read only their own secrets and
//! artifact), the launch template (IMDSv2, Amazon Linux 2023, cloud-config user data)
//! and the Auto Scaling group over the private subnets, attached to the ELB with ELB
//! health checks and a termination lifecycle hook so nodes drain.

use std::collections::BTreeMap;

use anyhow::{bail, Result};

use crate::artifacts::Artifact;
use crate::context::Ctx;
use crate::database::Database;
use crate::network::Network;
use crate::plan::{Change, Status};
use crate::secrets::Secrets;
use crate::security::SecurityGroups;

/// Everything the nodes are made from.
#[derive(Debug, Clone)]
pub struct NodeInputs {
    pub net: Network,
    pub groups: SecurityGroups,
    pub db: Database,
    pub artifact: Artifact,
    pub secrets: Secrets,
    pub elb_name: String,
    pub instance_profile_arn: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compute {
    pub asg_name: String,
    pub launch_template_id: String,
    pub launch_template_version: i64,
}

#[derive(Debug, Clone, Default)]
pub struct Current {}

impl Current {
    /// The instance profile's ARN, when it exists with its role.
    pub fn instance_profile_arn(&self) -> Option<String> {
        None
    }
}

pub async fn discover(_ctx: &Ctx) -> Result<Current> {
    bail!("compute: not implemented")
}

/// `inputs` is None when a resource the nodes depend on is still to be created.
pub fn plan(_ctx: &Ctx, _current: &Current, _inputs: Option<&NodeInputs>) -> Vec<Change> {
    Vec::new()
}

/// The role, its policy and the instance profile; returns the profile's ARN.
pub async fn converge_profile(
    _ctx: &Ctx,
    _current: &Current,
    _secrets: &Secrets,
    _artifact: &Artifact,
) -> Result<String> {
    bail!("compute: not implemented")
}

pub async fn converge(_ctx: &Ctx, _current: &Current, _inputs: &NodeInputs) -> Result<Compute> {
    bail!("compute: not implemented")
}

/// Deletes the group (waits until its instances are gone), the template and the
/// profile and role.
pub async fn delete(_ctx: &Ctx, _current: &Current) -> Result<()> {
    bail!("compute: not implemented")
}

/// The group and each instance, with its ELB health from `elb_health` (by id).
pub fn status(_current: &Current, _elb_health: &BTreeMap<String, String>) -> Vec<Status> {
    Vec::new()
}
