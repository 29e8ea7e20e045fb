//! Scopes and precedence: every enabled plugin compiled once per snapshot,
//! and each route's chain of the instances that apply to it.

use super::*;

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::model::{Entities, Plugin};
use crate::schema::fields::Fields;
use crate::schema::FieldErrors;

/// Why a snapshot cannot be built from a stored plugin.
#[derive(Debug, thiserror::Error)]
#[error("plugin `{name}` ({id}): {errors}; fix it through the Admin API (PATCH /plugins/{id}) or the declarative file")]
pub struct CompileError {
    pub name: String,
    pub id: Uuid,
    pub errors: FieldErrors,
}

/// One compiled plugin instance.
#[derive(Debug)]
pub struct Instance {
    pub id: Uuid,
    pub name: &'static str,
    pub priority: u32,
    pub(super) http: bool,
    pub(super) https: bool,
    pub config: Config,
}

/// How specific an instance's scope is; higher wins (Kong's order:
/// consumer+route+service, consumer+route, consumer+service, route+service,
/// consumer, route, service, global).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Specificity {
    Global = 0,
    Service = 1,
    Route = 2,
    Consumer = 3,
    RouteService = 4,
    ConsumerService = 5,
    ConsumerRoute = 6,
    ConsumerRouteService = 7,
}

/// One compiled instance and its scope.
struct Scoped {
    instance: Arc<Instance>,
    route: Option<Uuid>,
    service: Option<Uuid>,
    consumer: Option<Uuid>,
}

/// Every enabled, implemented plugin of a set of entities, compiled once and
/// shared by the chains of all routes it applies to, with the consumers and
/// credentials the authentication plugins read.
pub struct Index {
    compiled: Vec<Scoped>,
    directory: Arc<consumers::Directory>,
}

impl Index {
    /// Fails closed: a stored config the schema rejects (written by an older
    /// version that stored configs as given) stops the build rather than
    /// silently dropping, say, an ip-restriction.
    pub fn new(entities: &Entities) -> Result<Index, CompileError> {
        let mut compiled = Vec::new();
        for p in entities.plugins.iter().filter(|p| p.enabled) {
            let Some(instance) = compile(p)? else {
                continue;
            };
            compiled.push(Scoped {
                instance: Arc::new(instance),
                route: p.route.map(|r| r.id),
                service: p.service.map(|s| s.id),
                consumer: p.consumer.map(|c| c.id),
            });
        }
        let directory = Arc::new(consumers::Directory::new(entities));
        Ok(Index {
            compiled,
            directory,
        })
    }

    /// The chain of a route (of `service`, if it has one): per plugin name the
    /// most specific instance without a consumer, and the consumer-scoped
    /// candidates that may override it once a consumer is known; sorted by
    /// priority, highest first.
    pub fn chain(&self, route: Uuid, service: Option<Uuid>) -> Chain {
        if self.compiled.is_empty() {
            return Chain::default();
        }
        let mut slots: HashMap<&str, Slot> = HashMap::new();
        for p in &self.compiled {
            let on_route = match p.route {
                Some(r) if r != route => continue,
                r => r.is_some(),
            };
            let on_service = match p.service {
                Some(s) if Some(s) != service => continue,
                s => s.is_some(),
            };
            let specificity = match (p.consumer.is_some(), on_route, on_service) {
                (false, false, false) => Specificity::Global,
                (false, false, true) => Specificity::Service,
                (false, true, false) => Specificity::Route,
                (false, true, true) => Specificity::RouteService,
                (true, false, false) => Specificity::Consumer,
                (true, false, true) => Specificity::ConsumerService,
                (true, true, false) => Specificity::ConsumerRoute,
                (true, true, true) => Specificity::ConsumerRouteService,
            };
            let slot = slots.entry(p.instance.name).or_insert_with(|| Slot {
                priority: p.instance.priority,
                name: p.instance.name,
                default: None,
                by_consumer: Vec::new().into_boxed_slice(),
            });
            match p.consumer {
                Some(c) => {
                    let mut list = std::mem::take(&mut slot.by_consumer).into_vec();
                    list.push((c, specificity, p.instance.clone()));
                    slot.by_consumer = list.into_boxed_slice();
                }
                None => {
                    if slot.default.as_ref().is_none_or(|(s, _)| specificity > *s) {
                        slot.default = Some((specificity, p.instance.clone()));
                    }
                }
            }
        }
        let mut list: Vec<Slot> = slots.into_values().collect();
        for slot in &mut list {
            // Most specific first, so the first match wins.
            slot.by_consumer.sort_by_key(|c| std::cmp::Reverse(c.1));
        }
        // One slot per name; keep the order stable across builds: by
        // priority, then name.
        list.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.name.cmp(b.name)));
        let instances = || {
            list.iter().flat_map(|s| {
                s.default
                    .iter()
                    .map(|(_, i)| i)
                    .chain(s.by_consumer.iter().map(|(_, _, i)| i))
            })
        };
        let needs_client = instances()
            .any(|p| matches!(p.config, Config::IpRestriction(_) | Config::RateLimiting(_)));
        let needs_directory = instances().any(|p| {
            matches!(
                p.config,
                Config::KeyAuth(_) | Config::BasicAuth(_) | Config::Acl(_)
            )
        });
        let has_log = instances().any(|p| p.config.logs());
        let logs_headers =
            instances().any(|p| matches!(p.config, Config::HttpLog(_) | Config::FileLog(_)));
        let has_prometheus = instances().any(|p| matches!(p.config, Config::Prometheus(_)));
        Chain {
            // The log entry reads its consumer there too.
            directory: (needs_directory || logs_headers).then(|| self.directory.clone()),
            slots: list.into_boxed_slice(),
            needs_client,
            has_log,
            logs_headers,
            has_prometheus,
            metrics: None,
            logged: None,
        }
    }
}

/// One plugin name's instances for a route.
#[derive(Debug)]
pub(super) struct Slot {
    pub(super) priority: u32,
    pub(super) name: &'static str,
    /// The most specific instance without a consumer.
    pub(super) default: Option<(Specificity, Arc<Instance>)>,
    /// Instances scoped to a consumer, most specific first; empty (and no
    /// cost) unless a consumer has this plugin.
    pub(super) by_consumer: Box<[(Uuid, Specificity, Arc<Instance>)]>,
}

impl Slot {
    /// Kong's precedence for the request's consumer, if any.
    pub(super) fn resolve(&self, consumer: Option<Uuid>) -> Option<&Arc<Instance>> {
        if let Some(c) = consumer {
            let floor = self.default.as_ref().map(|(s, _)| *s);
            for (id, specificity, instance) in self.by_consumer.iter() {
                if *id == c && floor.is_none_or(|f| *specificity > f) {
                    return Some(instance);
                }
            }
        }
        self.default.as_ref().map(|(_, i)| i)
    }
}

/// Compiles one stored plugin; `None` when it is not implemented here.
pub fn compile(p: &Plugin) -> Result<Option<Instance>, CompileError> {
    let Some((name, priority)) = IMPLEMENTED.iter().find(|(n, _)| *n == p.name) else {
        return Ok(None);
    };
    let config = match &p.config {
        Value::Object(m) => m.clone(),
        Value::Null => Map::new(),
        _ => {
            return Err(CompileError {
                name: p.name.clone(),
                id: p.id,
                errors: FieldErrors::field("config", "expected a record"),
            })
        }
    };
    let mut f = Fields::new(config);
    let Some((mut config, _)) = parse(name, &mut f) else {
        return Ok(None);
    };
    let errors = f.finish();
    if !errors.is_empty() {
        return Err(CompileError {
            name: p.name.clone(),
            id: p.id,
            errors: nest_under_config(errors),
        });
    }
    // rate-limiting keys remote counters by the instance's scope, as Kong.
    if let Config::RateLimiting(c) = &mut config {
        c.route_id = p.route.map_or(Uuid::nil(), |r| r.id);
        c.service_id = p.service.map_or(Uuid::nil(), |s| s.id);
    }
    let has = |proto: &str| p.protocols.iter().any(|x| x == proto);
    Ok(Some(Instance {
        id: p.id,
        name,
        priority: *priority,
        http: has("http") || has("grpc"),
        https: has("https") || has("grpcs"),
        config,
    }))
}
