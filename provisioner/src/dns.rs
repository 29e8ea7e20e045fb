//! DNS (optional): with `domain` and `hosted_zone_id`, a Route53 alias A record to the
//! ELB (a CNAME when the ELB's zone is unknown, as on some emulators).

use anyhow::{bail, Result};

use crate::balancer::Balancer;
use crate::context::Ctx;
use crate::plan::{Change, Status};

#[derive(Debug, Clone, Default)]
pub struct Current {}

/// Finds the record; does nothing (an empty Current) when no domain is configured.
pub async fn discover(_ctx: &Ctx) -> Result<Current> {
    bail!("dns: not implemented")
}

pub fn plan(_ctx: &Ctx, _current: &Current, _balancer: Option<&Balancer>) -> Vec<Change> {
    Vec::new()
}

/// Upserts the record; returns the name, or None when no domain is configured.
pub async fn converge(
    _ctx: &Ctx,
    _current: &Current,
    _balancer: &Balancer,
) -> Result<Option<String>> {
    bail!("dns: not implemented")
}

pub async fn delete(_ctx: &Ctx, _current: &Current) -> Result<()> {
    bail!("dns: not implemented")
}

pub fn status(_current: &Current) -> Vec<Status> {
    Vec::new()
}
