//! A fast Kong-style API gateway: PROXY-protocol listeners, Kong routing and
//! forwarding, `/status`, graceful drain.

pub mod admin;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod db_cli;
pub mod declarative;
pub mod fingerprint;
pub mod health;
pub mod input_limits;
pub mod listener;
pub mod model;
pub mod node;
pub mod plugins;
pub mod proxy;
pub mod proxy_protocol;
pub mod router;
pub mod schema;
pub mod secrets;
pub mod snapshot;
pub mod status;
pub mod store;
pub mod tls;
