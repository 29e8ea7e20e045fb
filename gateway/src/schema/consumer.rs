//! Consumers.

use serde_json::{Map, Value};

use super::fields::{opt, Fields};

pub(super) const NEED_ONE: &str =
    "at least one of these fields must be non-empty: 'custom_id', 'username'";

pub(super) fn validate(f: &mut Fields) -> Map<String, Value> {
    let mut out = Map::new();
    let username = f.string("username");
    let custom_id = f.string("custom_id");
    let set = username.is_some() || custom_id.is_some();
    if !set && !f.has_error("username") && !f.has_error("custom_id") {
        f.entity_error(NEED_ONE);
    }
    out.insert("username".into(), opt(username));
    out.insert("custom_id".into(), opt(custom_id));
    out.insert("tags".into(), f.tags());
    out
}
