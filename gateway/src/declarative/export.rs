//! Writes entities back out in the declarative format (`config db_export`).

use serde::Serialize;
use serde_json::{json, Value};

use crate::model::Entities;

/// A flat `_format_version: "3.0"` document with ids and no timestamps;
/// references are ids. `parse(&export(e))` gives `e` back, timestamps aside.
pub fn export(entities: &Entities) -> String {
    fn list<T: Serialize>(items: &[T], refs: &[&str]) -> Value {
        let out = items.iter().map(|item| {
            let mut v = serde_json::to_value(item).unwrap_or(Value::Null);
            if let Value::Object(o) = &mut v {
                o.remove("created_at");
                o.remove("updated_at");
                // Unset and empty fields read back as their defaults.
                o.retain(|k, v| match v {
                    Value::Null => false,
                    Value::Array(a) => !a.is_empty(),
                    Value::Object(m) => !m.is_empty() || k == "config",
                    _ => true,
                });
                for r in refs {
                    // `{"id": x}` -> `x`; null references are left out.
                    match o.remove(*r).and_then(|fk| fk.get("id").cloned()) {
                        Some(id) => o.insert((*r).to_string(), id),
                        None => None,
                    };
                }
                if let Some(Value::Array(snis)) = o.get_mut("snis") {
                    for s in snis.iter_mut() {
                        *s = json!({ "name": s.take() });
                    }
                }
            }
            v
        });
        Value::Array(out.collect())
    }
    let e = entities;
    let mut doc = json!({
        "_format_version": "3.0",
        "services": list(&e.services, &[]),
        "routes": list(&e.routes, &["service"]),
        "upstreams": list(&e.upstreams, &[]),
        "targets": list(&e.targets, &["upstream"]),
        "consumers": list(&e.consumers, &[]),
        "plugins": list(&e.plugins, &["service", "route", "consumer"]),
        "certificates": list(&e.certificates, &[]),
    });
    // Credentials only when there are some, so a file without them reads as
    // before; basic-auth passwords are the stored hashes, which Kong's
    // `_transform: false` says.
    let credentials = [
        (
            "keyauth_credentials",
            list(&e.keyauth_credentials, &["consumer"]),
        ),
        (
            "basicauth_credentials",
            list(&e.basicauth_credentials, &["consumer"]),
        ),
        ("acls", list(&e.acls, &["consumer"])),
    ];
    for (key, value) in credentials {
        if value.as_array().is_some_and(|a| !a.is_empty()) {
            doc[key] = value;
        }
    }
    if !e.basicauth_credentials.is_empty() {
        doc["_transform"] = json!(false);
    }
    serde_yaml_ng::to_string(&doc).unwrap_or_default()
}
