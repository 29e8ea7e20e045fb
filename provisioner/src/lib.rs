//! The AWS provisioner for the gateway stack. For now: the shared AWS SDK configuration
//! (`aws`), resolved from `--region`, `--profile`, `--endpoint-url` and the environment.

pub mod aws;
