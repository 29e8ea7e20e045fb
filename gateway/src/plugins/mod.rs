//! Kong plugins on the request path.
//!
//! # Design
//! - **Compiled into the snapshot.** [`Index::new`] parses every enabled plugin
//!   instance this gateway implements once, when a [`Snapshot`](crate::snapshot::Snapshot)
//!   is built (off the request path), and [`Index::chain`] gives each route its
//!   [`Chain`]: the instances that apply to it, one per plugin name, sorted by
//!   Kong's priority. The request path reads the chain and nothing else: no
//!   locks, no database, no parsing (except rate-limiting's counters: a short
//!   shard lock for `local`, a bounded round trip for `redis` and `cluster`,
//!   the only awaits in [`Chain::access`]). A route without plugins has an empty chain
//!   (an empty boxed slice, no allocation) and the proxy checks
//!   [`Chain::is_empty`] once and does nothing more.
//! - **Enum dispatch.** A compiled instance holds a [`Config`], an enum of the
//!   implemented plugins' typed configurations; each phase is a `match`, so a
//!   request allocates nothing for dispatch.
//! - **Phases.** `access` runs before the upstream is contacted, highest
//!   priority first, and may end the request with a response, which stops the
//!   plugins after it ([`Chain::access`]). `header_filter` runs on every
//!   response of a request whose access phase ran, the plugin's own exits
//!   included, as Kong runs `header_filter` after `kong.response.exit`
//!   ([`Chain::header_filter`]). A log phase goes beside them: the proxy calls
//!   `header_filter` where the response is complete, and a `log` call belongs
//!   where `handle` ends the request.
//! - **Per-request state** lives in [`RequestState`], a fixed struct on the
//!   stack: what one plugin's access phase leaves for its header filter.
//! - **Scopes and precedence** ([`Index::chain`]): when several instances of one
//!   plugin apply, the most specific wins, in Kong's order consumer+route+service,
//!   consumer+route, consumer+service, route+service, consumer, route, service,
//!   global. The consumer scopes need a consumer, which an authentication
//!   plugin identifies: each plugin name's slot keeps its consumer-scoped
//!   instances beside the default one, and the phases pick, per slot, the most
//!   specific instance for the consumer in `RequestState::consumer`.
//! - **Config validation** ([`validate_config`]) happens when a plugin is
//!   written (Admin API and declarative load) with Kong's schema: unknown fields
//!   and bad values are schema violations, and Kong's defaults are filled, so a
//!   GET shows the whole config. Each plugin's `parse` is the one definition
//!   of its fields, used both there and when compiling. Plugins not implemented
//!   here keep their config as given and do not run.
//!
//! # Files
//! - `catalog.rs`: the implemented plugins, their priorities, protocols and
//!   schemas, and config validation.
//! - `scope.rs`: compiling instances and building each route's chain.
//! - `chain.rs`: the chain's phases on the request path.
//! - one file (or directory) per plugin, named after it; `consumers.rs` is
//!   the consumers and credentials the auth plugins read, `log.rs` the log
//!   phase's record and Kong's log serializer, `transform.rs` what the two
//!   transformer plugins share.

pub mod acl;
pub mod basic_auth;
pub mod consumers;
pub mod correlation_id;
pub mod cors;
pub mod file_log;
pub mod http_log;
pub mod ip_restriction;
pub mod key_auth;
pub mod log;
pub mod prometheus;
pub mod proxy_cache;
pub mod rate_limiting;
pub mod request_size_limiting;
pub mod request_termination;
pub mod request_transformer;
pub mod response_transformer;
#[cfg(test)]
mod tests;
pub mod transform;

mod catalog;
mod chain;
mod scope;

pub use catalog::*;
pub use chain::*;
pub use scope::*;
