//! Typed readers over an input object. Each reader takes its field out of the
//! input, so whatever is left at the end is an unknown field; errors are
//! collected rather than returned, so that a body reports all of them.

use serde_json::{Map, Value};
use uuid::Uuid;

use super::FieldErrors;

pub(super) const REQUIRED: &str = "required field missing";

pub(crate) struct Fields {
    input: Map<String, Value>,
    pub errors: FieldErrors,
}

impl Fields {
    pub fn new(input: Map<String, Value>) -> Self {
        Fields {
            input,
            errors: FieldErrors::default(),
        }
    }

    pub fn error(&mut self, name: &str, message: impl Into<String>) {
        self.errors.add(name, message);
    }

    pub fn entity_error(&mut self, message: impl Into<String>) {
        self.errors.add_entity(message);
    }

    pub fn has_error(&self, name: &str) -> bool {
        self.errors.has(name)
    }

    /// Whether the input sets `name` to something other than null.
    pub fn is_set(&self, name: &str) -> bool {
        self.input.get(name).is_some_and(|v| !v.is_null())
    }

    /// The raw value; `None` when absent or null.
    pub fn take(&mut self, name: &str) -> Option<Value> {
        self.input.remove(name).filter(|v| !v.is_null())
    }

    /// Reports leftovers as unknown fields and returns all errors.
    pub fn finish(mut self) -> FieldErrors {
        for (k, _) in std::mem::take(&mut self.input) {
            self.errors.0.entry(k).or_insert("unknown field".into());
        }
        self.errors
    }

    /// A non-empty string.
    pub fn string(&mut self, name: &str) -> Option<String> {
        match self.take(name)? {
            Value::String(s) if s.is_empty() => {
                self.error(name, "length must be at least 1");
                None
            }
            Value::String(s) => Some(s),
            _ => {
                self.error(name, "expected a string");
                None
            }
        }
    }

    pub fn required_string(&mut self, name: &str) -> Option<String> {
        let present = self.is_set(name);
        let s = self.string(name);
        if !present {
            self.error(name, REQUIRED);
        }
        s
    }

    /// An integer in `min..=max`; `default` when unset.
    pub fn integer(&mut self, name: &str, min: i64, max: i64, default: i64) -> i64 {
        let Some(v) = self.take(name) else {
            return default;
        };
        let n = v
            .as_i64()
            .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64));
        match n {
            Some(n) if (min..=max).contains(&n) => n,
            Some(_) => {
                self.error(name, format!("value should be between {min} and {max}"));
                default
            }
            None => {
                self.error(name, "expected an integer");
                default
            }
        }
    }

    pub fn boolean(&mut self, name: &str, default: bool) -> bool {
        match self.take(name) {
            None => default,
            Some(Value::Bool(b)) => b,
            Some(_) => {
                self.error(name, "expected a boolean");
                default
            }
        }
    }

    /// An array of non-empty strings; `None` when unset.
    pub fn strings(&mut self, name: &str) -> Option<Vec<String>> {
        let Value::Array(list) = self.take(name)? else {
            self.error(name, "expected an array");
            return None;
        };
        let mut out = Vec::with_capacity(list.len());
        for v in list {
            match v {
                Value::String(s) if s.is_empty() => {
                    self.error(name, "length must be at least 1");
                    return None;
                }
                Value::String(s) => out.push(s),
                _ => {
                    self.error(name, "expected a string");
                    return None;
                }
            }
        }
        Some(out)
    }

    /// Kong's tags: strings of printable characters except `,` and `/`.
    pub fn tags(&mut self) -> Value {
        let Some(tags) = self.strings("tags") else {
            return Value::Null;
        };
        if let Some(bad) = tags
            .iter()
            .find(|t| t.contains([',', '/']) || t.chars().any(char::is_control))
        {
            self.error(
                "tags",
                format!("invalid tag '{bad}': expected printable characters except ',' and '/'"),
            );
        }
        Value::from(tags)
    }

    pub fn uuid(&mut self, name: &str) -> Option<Uuid> {
        match self.take(name)? {
            Value::String(s) => match Uuid::parse_str(&s) {
                Ok(id) => Some(id),
                Err(_) => {
                    self.error(name, "expected a valid UUID");
                    None
                }
            },
            _ => {
                self.error(name, "expected a string");
                None
            }
        }
    }

    /// A foreign key `{"id": uuid}`, output as such or null.
    pub fn foreign(&mut self, name: &str, required: bool) -> Value {
        let Some(v) = self.take(name) else {
            if required {
                self.error(name, REQUIRED);
            }
            return Value::Null;
        };
        let Value::Object(mut obj) = v else {
            self.error(name, "expected a record");
            return Value::Null;
        };
        let id = match obj.remove("id") {
            Some(Value::String(s)) => match Uuid::parse_str(&s) {
                Ok(id) => Some(id),
                Err(_) => {
                    self.error(&format!("{name}.id"), "expected a valid UUID");
                    None
                }
            },
            None | Some(Value::Null) => {
                self.error(&format!("{name}.id"), REQUIRED);
                None
            }
            Some(_) => {
                self.error(&format!("{name}.id"), "expected a string");
                None
            }
        };
        for k in obj.keys() {
            self.error(&format!("{name}.{k}"), "unknown field");
        }
        match id {
            Some(id) => serde_json::json!({ "id": id.to_string() }),
            None => Value::Null,
        }
    }

    /// A string among `options` (Kong's `one_of`); `default` when unset.
    pub fn one_of(
        &mut self,
        name: &str,
        options: &[&'static str],
        default: &'static str,
    ) -> &'static str {
        match self.take(name) {
            None => default,
            Some(Value::String(s)) => match options.iter().find(|o| **o == s) {
                Some(o) => o,
                None => {
                    self.error(name, format!("expected one of: {}", options.join(", ")));
                    default
                }
            },
            Some(_) => {
                self.error(name, "expected a string");
                default
            }
        }
    }

    /// A number (Kong's `number`: integer or not); `None` when unset.
    pub fn number(&mut self, name: &str) -> Option<f64> {
        match self.take(name)? {
            Value::Number(n) => n.as_f64(),
            _ => {
                self.error(name, "expected a number");
                None
            }
        }
    }

    /// A record (JSON object); `None` when unset.
    pub fn record(&mut self, name: &str) -> Option<Map<String, Value>> {
        match self.take(name)? {
            Value::Object(m) => Some(m),
            _ => {
                self.error(name, "expected a record");
                None
            }
        }
    }

    /// A Kong field this gateway does not implement: only null (or `allowed`)
    /// is accepted. Returns what to output.
    pub fn unsupported(&mut self, name: &str, allowed: Value) -> Value {
        match self.take(name) {
            None => allowed,
            Some(v) if v == allowed => allowed,
            Some(_) => {
                self.error(name, "not supported yet");
                allowed
            }
        }
    }
}

/// `Some(v)` as a JSON value, null for `None`.
pub(crate) fn opt<T: Into<Value>>(v: Option<T>) -> Value {
    v.map_or(Value::Null, Into::into)
}

/// Kong's name rule for services, routes and plugin instance names.
pub(super) fn check_name(f: &mut Fields, field: &str, name: &str) {
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
    {
        f.error(
            field,
            format!(
                "invalid value '{name}': it must only contain alphanumeric and '., -, _, ~' characters"
            ),
        );
    }
}
