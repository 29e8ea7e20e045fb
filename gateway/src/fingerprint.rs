//! `gateway config db_fingerprint`: a read-only, secret-free summary of the
//! configuration in a database, to prove that a restored backup holds the
//! primary's data. Two databases with the same configuration give the same
//! `configuration_hash`, counts and entity listings.
//!
//! Secret-free by construction: every entity is reduced to an [`Item`] built
//! field by field from an allow-list (id, name, timestamps, and a route's
//! paths). Nothing is serialised whole, so a certificate's key, a plugin's
//! `config` (which may hold credentials) or a field added later can never
//! reach the output.

use serde::Serialize;
use uuid::Uuid;

use crate::model::Entities;
use crate::store::load::ClusterFacts;
use crate::store::migrations::State;

/// The one JSON object the command prints. Fields are in this order.
#[derive(Debug, Serialize)]
pub struct Fingerprint {
    /// What a node built from this database reports as `configuration_hash`
    /// in `GET /status`; null when the database is not bootstrapped.
    pub configuration_hash: Option<String>,
    pub counts: Option<Counts>,
    pub entities: Option<Listing>,
    /// Epoch seconds of the newest `cluster_events` row.
    pub newest_change_at: Option<i64>,
    pub cluster: Option<Cluster>,
    pub migrations: Migrations,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub services: usize,
    pub routes: usize,
    pub upstreams: usize,
    pub targets: usize,
    pub consumers: usize,
    pub plugins: usize,
    pub certificates: usize,
    pub keyauth_credentials: usize,
    pub basicauth_credentials: usize,
    pub acls: usize,
}

/// Every entity of every kind, in creation order (the order the hash covers).
#[derive(Debug, Serialize)]
pub struct Listing {
    pub services: Vec<Item>,
    pub routes: Vec<Item>,
    pub upstreams: Vec<Item>,
    pub targets: Vec<Item>,
    pub consumers: Vec<Item>,
    pub plugins: Vec<Item>,
    pub certificates: Vec<Item>,
    pub keyauth_credentials: Vec<Item>,
    pub basicauth_credentials: Vec<Item>,
    pub acls: Vec<Item>,
}

/// One entity, reduced to what identifies it. Every kind has `created_at`
/// and `updated_at` (see `model.rs`), so both are always given.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Item {
    pub id: Uuid,
    /// The kind's name: `name` for services, routes, upstreams and plugins,
    /// `username` for consumers; null for targets and certificates, which
    /// have none.
    pub name: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Routes only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
pub struct Cluster {
    /// Epoch seconds of the newest heartbeat (`max(last_seen)`).
    pub newest_heartbeat_at: Option<i64>,
    /// Rows in `cluster_nodes`, active, failed or left.
    pub nodes: i64,
}

#[derive(Debug, Serialize)]
pub struct Migrations {
    pub bootstrapped: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executed: Option<Vec<String>>,
    /// Up ran, `finish` did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<Vec<String>>,
    /// Known to this binary, not run on this database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Fingerprint {
    /// A bootstrapped database: `entities` as `store::load` read them, with the
    /// cluster facts from the same transaction.
    pub fn of(entities: &Entities, facts: &ClusterFacts, state: &State) -> Fingerprint {
        Fingerprint {
            configuration_hash: Some(crate::snapshot::configuration_hash(entities)),
            counts: Some(Counts::of(entities)),
            entities: Some(Listing::of(entities)),
            newest_change_at: facts.newest_change_at,
            cluster: Some(Cluster {
                newest_heartbeat_at: facts.newest_heartbeat_at,
                nodes: facts.nodes,
            }),
            migrations: Migrations::of(state),
        }
    }

    /// A database without the gateway's tables: nothing to list, and no hash,
    /// so it never compares equal to a database that has a configuration.
    pub fn not_bootstrapped() -> Fingerprint {
        Fingerprint {
            configuration_hash: None,
            counts: None,
            entities: None,
            newest_change_at: None,
            cluster: None,
            migrations: Migrations::of(&State::NotBootstrapped),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a fingerprint serialises")
    }
}

impl Counts {
    pub fn of(e: &Entities) -> Counts {
        Counts {
            services: e.services.len(),
            routes: e.routes.len(),
            upstreams: e.upstreams.len(),
            targets: e.targets.len(),
            consumers: e.consumers.len(),
            plugins: e.plugins.len(),
            certificates: e.certificates.len(),
            keyauth_credentials: e.keyauth_credentials.len(),
            basicauth_credentials: e.basicauth_credentials.len(),
            acls: e.acls.len(),
        }
    }
}

impl Listing {
    pub fn of(e: &Entities) -> Listing {
        // Destructured so that a new kind in `Entities` fails to compile here
        // until it is listed.
        let Entities {
            services,
            routes,
            upstreams,
            targets,
            consumers,
            plugins,
            certificates,
            keyauth_credentials,
            basicauth_credentials,
            acls,
        } = e;
        let item = |id, name: Option<&String>, created_at, updated_at| Item {
            id,
            name: name.cloned(),
            created_at,
            updated_at,
            paths: None,
        };
        Listing {
            services: services
                .iter()
                .map(|s| item(s.id, s.name.as_ref(), s.created_at, s.updated_at))
                .collect(),
            routes: routes
                .iter()
                .map(|r| Item {
                    paths: Some(r.paths.clone()),
                    ..item(r.id, r.name.as_ref(), r.created_at, r.updated_at)
                })
                .collect(),
            upstreams: upstreams
                .iter()
                .map(|u| item(u.id, Some(&u.name), u.created_at, u.updated_at))
                .collect(),
            targets: targets
                .iter()
                .map(|t| item(t.id, None, t.created_at, t.updated_at))
                .collect(),
            consumers: consumers
                .iter()
                .map(|c| item(c.id, c.username.as_ref(), c.created_at, c.updated_at))
                .collect(),
            plugins: plugins
                .iter()
                .map(|p| item(p.id, Some(&p.name), p.created_at, p.updated_at))
                .collect(),
            certificates: certificates
                .iter()
                .map(|c| item(c.id, None, c.created_at, c.updated_at))
                .collect(),
            // Kong keeps no `updated_at` for credentials: their creation
            // time stands for both.
            keyauth_credentials: keyauth_credentials
                .iter()
                .map(|c| item(c.id, None, c.created_at, c.created_at))
                .collect(),
            basicauth_credentials: basicauth_credentials
                .iter()
                .map(|c| item(c.id, Some(&c.username), c.created_at, c.created_at))
                .collect(),
            acls: acls
                .iter()
                .map(|c| item(c.id, Some(&c.group), c.created_at, c.created_at))
                .collect(),
        }
    }
}

impl Migrations {
    pub fn of(state: &State) -> Migrations {
        match state {
            State::NotBootstrapped => Migrations {
                bootstrapped: false,
                executed: None,
                pending: None,
                new: None,
                note: Some(
                    "the database is not bootstrapped: run `gateway migrations bootstrap`".into(),
                ),
            },
            State::Ready {
                executed,
                pending,
                new,
            } => Migrations {
                bootstrapped: true,
                executed: Some(executed.clone()),
                pending: Some(pending.clone()),
                new: Some(new.clone()),
                note: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::model::{Certificate, Consumer, ForeignKey, Plugin, Route, Service};

    fn ready() -> State {
        State::Ready {
            executed: vec!["000_base".into()],
            pending: vec![],
            new: vec![],
        }
    }

    fn entities() -> Entities {
        let service: Service = serde_json::from_value(json!({
            "id": "5b1484f2-5209-49d9-b43e-92ba09dd9d52", "name": "billing",
            "protocol": "http", "host": "billing.internal", "port": 8080, "path": null,
            "retries": 5, "connect_timeout": 60000, "read_timeout": 60000,
            "write_timeout": 60000, "enabled": true, "tags": ["team-a"],
            "created_at": 1_700_000_000, "updated_at": 1_700_000_100,
        }))
        .unwrap();
        let route: Route = serde_json::from_value(json!({
            "id": "0f7d0b52-4d6c-4bfb-8f0b-1b8f1c0f5d11", "name": null,
            "protocols": ["http", "https"], "paths": ["/billing", "/invoices"],
            "hosts": ["api.example.com"], "https_redirect_status_code": 426,
            "regex_priority": 0, "strip_path": true, "path_handling": "v0",
            "preserve_host": false, "request_buffering": true, "response_buffering": true,
            "service": {"id": service.id},
            "created_at": 1_700_000_200, "updated_at": 1_700_000_300,
        }))
        .unwrap();
        let consumer = Consumer {
            id: Uuid::from_u128(3),
            username: Some("alice".into()),
            custom_id: Some("customer-77".into()),
            tags: vec![],
            created_at: 1_700_000_400,
            updated_at: 1_700_000_400,
        };
        let plugin = Plugin {
            id: Uuid::from_u128(4),
            name: "jwt".into(),
            instance_name: None,
            config: json!({"key": "plugin-config-secret-1234"}),
            protocols: vec!["http".into()],
            enabled: true,
            service: None,
            route: None,
            consumer: Some(ForeignKey { id: consumer.id }),
            tags: vec![],
            created_at: 1_700_000_500,
            updated_at: 1_700_000_600,
        };
        let certificate = Certificate {
            id: Uuid::from_u128(5),
            cert: "-----BEGIN CERTIFICATE-----\nCERTBODY\n-----END CERTIFICATE-----\n".into(),
            key: "-----BEGIN PRIVATE KEY-----\nKEYSECRETBODY\n-----END PRIVATE KEY-----\n".into(),
            cert_alt: None,
            key_alt: Some("ALTKEYSECRETBODY".into()),
            snis: vec!["api.example.com".into()],
            tags: vec![],
            created_at: 1_700_000_700,
            updated_at: 1_700_000_800,
        };
        Entities {
            services: vec![service],
            routes: vec![route],
            consumers: vec![consumer],
            plugins: vec![plugin],
            certificates: vec![certificate],
            ..Entities::default()
        }
    }

    fn facts() -> ClusterFacts {
        ClusterFacts {
            newest_change_at: Some(1_700_000_900),
            newest_heartbeat_at: Some(1_700_001_000),
            nodes: 2,
        }
    }

    #[test]
    fn the_hash_is_the_snapshots() {
        let e = entities();
        let f = Fingerprint::of(&e, &facts(), &ready());
        let pools = crate::proxy::pool::Pools::new(crate::proxy::pool::PoolSettings {
            max_idle: 0,
            idle_timeout: std::time::Duration::ZERO,
            max_requests: 0,
        });
        let snapshot = crate::snapshot::Snapshot::build(e, &pools).unwrap();
        assert_eq!(
            f.configuration_hash.as_deref(),
            Some(snapshot.hash.as_str())
        );
    }

    #[test]
    fn an_empty_configuration_has_zero_counts_and_the_empty_hash() {
        let f = Fingerprint::of(&Entities::default(), &ClusterFacts::default(), &ready());
        let v: Value = serde_json::from_str(&f.to_json()).unwrap();
        let pools = crate::proxy::pool::Pools::new(crate::proxy::pool::PoolSettings {
            max_idle: 0,
            idle_timeout: std::time::Duration::ZERO,
            max_requests: 0,
        });
        let empty = crate::snapshot::Snapshot::build(Entities::default(), &pools).unwrap();
        assert_eq!(v["configuration_hash"], json!(empty.hash));
        assert_eq!(
            v["counts"],
            json!({"services": 0, "routes": 0, "upstreams": 0, "targets": 0,
                   "consumers": 0, "plugins": 0, "certificates": 0,
                   "keyauth_credentials": 0, "basicauth_credentials": 0, "acls": 0})
        );
        assert_eq!(v["entities"]["certificates"], json!([]));
        assert_eq!(v["newest_change_at"], Value::Null);
        assert_eq!(
            v["cluster"],
            json!({"newest_heartbeat_at": null, "nodes": 0})
        );
    }

    #[test]
    fn entities_are_ids_names_timestamps_and_route_paths() {
        let f = Fingerprint::of(&entities(), &facts(), &ready());
        let v: Value = serde_json::from_str(&f.to_json()).unwrap();
        assert_eq!(
            v["entities"]["services"],
            json!([{"id": "5b1484f2-5209-49d9-b43e-92ba09dd9d52", "name": "billing",
                    "created_at": 1_700_000_000, "updated_at": 1_700_000_100}])
        );
        assert_eq!(
            v["entities"]["routes"],
            json!([{"id": "0f7d0b52-4d6c-4bfb-8f0b-1b8f1c0f5d11", "name": null,
                    "created_at": 1_700_000_200, "updated_at": 1_700_000_300,
                    "paths": ["/billing", "/invoices"]}])
        );
        assert_eq!(v["entities"]["consumers"][0]["name"], "alice");
        assert_eq!(v["entities"]["plugins"][0]["name"], "jwt");
        assert_eq!(
            v["entities"]["certificates"],
            json!([{"id": Uuid::from_u128(5), "name": null,
                    "created_at": 1_700_000_700, "updated_at": 1_700_000_800}])
        );
        assert_eq!(v["counts"]["services"], 1);
        assert_eq!(v["counts"]["upstreams"], 0);
        assert_eq!(v["newest_change_at"], 1_700_000_900);
        assert_eq!(
            v["cluster"],
            json!({"newest_heartbeat_at": 1_700_001_000, "nodes": 2})
        );
        assert_eq!(
            v["migrations"],
            json!({"bootstrapped": true, "executed": ["000_base"], "pending": [], "new": []})
        );
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys.len(),
            6,
            "exactly the documented top-level keys: {keys:?}"
        );
    }

    #[test]
    fn no_secret_reaches_the_output() {
        let text = Fingerprint::of(&entities(), &facts(), &ready()).to_json();
        for secret in [
            "KEYSECRETBODY",
            "PRIVATE KEY",
            "CERTBODY",
            "plugin-config-secret-1234",
            "customer-77",
            "billing.internal",
        ] {
            assert!(!text.contains(secret), "`{secret}` leaked: {text}");
        }
    }

    #[test]
    fn a_database_that_is_not_bootstrapped_says_so_and_has_no_hash() {
        let v: Value = serde_json::from_str(&Fingerprint::not_bootstrapped().to_json()).unwrap();
        assert_eq!(v["configuration_hash"], Value::Null);
        assert_eq!(v["counts"], Value::Null);
        assert_eq!(v["migrations"]["bootstrapped"], false);
        assert!(v["migrations"]["note"]
            .as_str()
            .unwrap()
            .contains("gateway migrations bootstrap"));
    }
}
