//! The AWS provisioner for the gateway stack: spec -> discover -> plan -> apply.
//!
//! `spec` says what the stack must be; one module per AWS concern finds the stack's
//! resources by tag (`discover`), compares them with the spec (`plan`), and creates or
//! repairs them (`converge`) or removes them (`delete`); `stack` runs the concerns in
//! dependency waves.

pub mod artifacts;
pub mod aws;
pub mod backup;
pub mod balancer;
pub mod cli;
pub mod compute;
pub mod context;
pub mod database;
pub mod dns;
pub mod dr;
pub mod facts;
pub mod network;
pub mod plan;
pub mod probe;
pub mod progress;
pub mod restore;
pub mod secrets;
pub mod security;
pub mod spec;
pub mod stack;
pub mod userdata;
