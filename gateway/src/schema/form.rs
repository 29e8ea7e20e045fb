//! `application/x-www-form-urlencoded` bodies, decoded as Kong does: arrays
//! three ways (`a=1&a=2`, `a[]=1`, `a[1]=1`), dotted or bracketed keys nest
//! (`config.minute=5`, `config[minute]=5`), and values are coerced by the
//! kind's field types. An empty value means null.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{FieldErrors, Kind};

#[derive(Clone, Copy, PartialEq)]
enum Ty {
    Str,
    Int,
    Bool,
    Array,
    Foreign,
    Headers,
    /// Plugin config and the like: no schema, guess numbers and booleans.
    Record,
}

fn field_type(kind: Kind, field: &str) -> Ty {
    use Ty::*;
    match (kind, field) {
        (_, "tags") => Array,
        (
            _,
            "port"
            | "retries"
            | "connect_timeout"
            | "write_timeout"
            | "read_timeout"
            | "tls_verify_depth"
            | "https_redirect_status_code"
            | "regex_priority"
            | "slots"
            | "weight",
        ) => Int,
        (
            _,
            "enabled" | "tls_verify" | "strip_path" | "preserve_host" | "request_buffering"
            | "response_buffering" | "use_srv_name",
        ) => Bool,
        (Kind::Routes, "protocols" | "methods" | "hosts" | "paths" | "snis")
        | (Kind::Routes, "sources" | "destinations")
        | (Kind::Plugins, "protocols")
        | (Kind::Services, "ca_certificates")
        | (Kind::Certificates, "snis") => Array,
        (Kind::Routes, "headers") => Headers,
        (_, "service" | "route" | "consumer" | "upstream" | "client_certificate") => Foreign,
        (Kind::Plugins, "config") | (Kind::Upstreams, "healthchecks") => Record,
        _ => Str,
    }
}

/// Values given for one key, with their `[n]` index if any.
#[derive(Default)]
struct Leaf {
    values: Vec<(Option<usize>, String)>,
    /// `a[]=` or `a[n]=`: an array even with one value.
    array: bool,
}

enum Node {
    Leaf(Leaf),
    Obj(BTreeMap<String, Node>),
}

pub fn from_form(kind: Kind, body: &[u8]) -> Result<Map<String, Value>, FieldErrors> {
    let mut root: BTreeMap<String, Node> = BTreeMap::new();
    for (key, value) in form_urlencoded::parse(body) {
        let (path, index) =
            parse_key(&key).ok_or_else(|| FieldErrors::field(&key, "invalid form key"))?;
        insert(&mut root, &path, index, value.into_owned())
            .ok_or_else(|| FieldErrors::field(&path[0], "cannot be both a value and a record"))?;
    }
    // A plugin's config is coerced by its schema when this gateway has it.
    let plugin = match (kind, root.get("name")) {
        (Kind::Plugins, Some(Node::Leaf(leaf))) => leaf.values.last().map(|(_, v)| v.clone()),
        _ => None,
    };
    let mut out = Map::new();
    for (name, node) in root {
        let v = match (field_type(kind, &name), node) {
            (Ty::Record, Node::Obj(map)) if name == "config" && plugin.is_some() => {
                let plugin = plugin.as_deref().unwrap_or_default();
                Value::Object(
                    map.into_iter()
                        .map(|(k, n)| {
                            let ty = crate::plugins::config_field_type(plugin, &k);
                            let v = typed(ty.as_deref(), n);
                            (k, v)
                        })
                        .collect(),
                )
            }
            (Ty::Record, node) => generic(node),
            (Ty::Headers, Node::Obj(map)) => Value::Object(
                map.into_iter()
                    .map(|(k, n)| (k, strings(n, true)))
                    .collect(),
            ),
            (Ty::Foreign, Node::Obj(map)) => Value::Object(
                map.into_iter()
                    .map(|(k, n)| (k, strings(n, false)))
                    .collect(),
            ),
            (Ty::Array, node) => strings(node, true),
            (ty, Node::Leaf(leaf)) => scalar(ty, leaf),
            (_, node) => generic(node),
        };
        out.insert(name, v);
    }
    Ok(out)
}

/// `a.b[c][]` -> (["a", "b", "c"], Some(None)); `a[2]` -> (["a"], Some(Some(2))).
fn parse_key(key: &str) -> Option<(Vec<String>, Option<Option<usize>>)> {
    let mut path = Vec::new();
    let mut index = None;
    let mut rest = key;
    loop {
        if rest.is_empty() {
            return (!path.is_empty()).then_some((path, index));
        }
        if index.is_some() || path.len() > crate::input_limits::MAX_DEPTH {
            // Nothing may follow an array marker; `insert` and `generic`
            // recurse once a level (the Admin API checks depth before).
            return None;
        }
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        let (seg, tail) = rest.split_at(end);
        if !seg.is_empty() {
            path.push(seg.to_string());
        } else if !tail.starts_with('[') || path.is_empty() {
            return None;
        }
        if let Some(t) = tail.strip_prefix('.') {
            rest = t;
        } else if let Some(t) = tail.strip_prefix('[') {
            let (inner, after) = t.split_once(']')?;
            if inner.is_empty() {
                index = Some(None);
            } else if inner.bytes().all(|c| c.is_ascii_digit()) {
                index = Some(Some(inner.parse().ok()?));
            } else {
                path.push(inner.to_string());
            }
            rest = after.strip_prefix('.').unwrap_or(after);
        } else {
            return (!path.is_empty()).then_some((path, index));
        }
    }
}

fn insert(
    map: &mut BTreeMap<String, Node>,
    path: &[String],
    index: Option<Option<usize>>,
    value: String,
) -> Option<()> {
    let (first, rest) = path.split_first()?;
    let node = map
        .entry(first.clone())
        .or_insert_with(|| match rest.is_empty() {
            true => Node::Leaf(Leaf::default()),
            false => Node::Obj(BTreeMap::new()),
        });
    match (node, rest.is_empty()) {
        (Node::Leaf(leaf), true) => {
            leaf.array |= index.is_some();
            leaf.values.push((index.flatten(), value));
            Some(())
        }
        (Node::Obj(inner), false) => insert(inner, rest, index, value),
        _ => None,
    }
}

fn ordered(mut leaf: Leaf) -> (Vec<String>, bool) {
    leaf.values.sort_by_key(|(i, _)| i.unwrap_or(usize::MAX));
    let array = leaf.array || leaf.values.len() > 1;
    (leaf.values.into_iter().map(|(_, v)| v).collect(), array)
}

/// Array fields: one value or many, always an array (an empty single value
/// is null). Elsewhere (`always` false) a single value stays a string.
fn strings(node: Node, always: bool) -> Value {
    let Node::Leaf(leaf) = node else {
        return generic(node);
    };
    let (values, array) = ordered(leaf);
    match values.as_slice() {
        [one] if !array && one.is_empty() => Value::Null,
        [one] if !array && !always => Value::String(one.clone()),
        _ => values.into(),
    }
}

fn scalar(ty: Ty, leaf: Leaf) -> Value {
    let (mut values, array) = ordered(leaf);
    if array || values.len() != 1 {
        return values.into();
    }
    let v = values.pop().unwrap_or_default();
    match ty {
        _ if v.is_empty() => Value::Null,
        Ty::Int => integer(&v).map_or(Value::String(v), Value::from),
        Ty::Bool => boolean(&v).map_or(Value::String(v), Value::Bool),
        _ => Value::String(v),
    }
}

/// A plugin config field by its Kong type; unknown ones are guessed.
fn typed(ty: Option<&str>, node: Node) -> Value {
    match (ty, node) {
        (Some("array" | "set"), node) => strings(node, true),
        (Some("string"), node @ Node::Leaf(_)) => strings(node, false),
        (Some(t @ ("integer" | "number" | "boolean")), Node::Leaf(leaf)) => {
            let (mut values, array) = ordered(leaf);
            if array || values.len() != 1 {
                return values.into();
            }
            let v = values.pop().unwrap_or_default();
            let parsed = match t {
                _ if v.is_empty() => Some(Value::Null),
                "boolean" => boolean(&v).map(Value::Bool),
                "integer" => integer(&v).map(Value::from),
                _ => integer(&v).map(Value::from).or_else(|| {
                    v.parse::<f64>()
                        .ok()
                        .filter(|f| f.is_finite())
                        .and_then(serde_json::Number::from_f64)
                        .map(Value::Number)
                }),
            };
            parsed.unwrap_or(Value::String(v))
        }
        (_, node) => generic(node),
    }
}

/// Schema-less values: integer-looking strings become numbers, `true` and
/// `false` booleans, empty values null.
fn generic(node: Node) -> Value {
    let guess = |v: String| {
        if v.is_empty() {
            Value::Null
        } else if let Some(n) = integer(&v) {
            n.into()
        } else if let Some(b) = boolean(&v) {
            b.into()
        } else {
            v.into()
        }
    };
    match node {
        Node::Obj(map) => Value::Object(map.into_iter().map(|(k, n)| (k, generic(n))).collect()),
        Node::Leaf(leaf) => {
            let (mut values, array) = ordered(leaf);
            match (values.pop(), array) {
                (Some(v), false) => guess(v),
                (last, _) => values.into_iter().chain(last).map(guess).collect(),
            }
        }
    }
}

fn integer(v: &str) -> Option<i64> {
    let digits = v.strip_prefix('-').unwrap_or(v);
    let plain = !digits.is_empty()
        && digits.bytes().all(|c| c.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if plain {
        v.parse().ok()
    } else {
        None
    }
}

fn boolean(v: &str) -> Option<bool> {
    match v {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}
