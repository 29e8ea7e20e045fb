//! What `plan` reports and `up` carries out: per resource create, update or unchanged,
//! with the fields that differ.

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Unchanged,
    Delete,
}

/// One field that differs: what AWS has (`None`: absent) and what the spec wants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldDiff {
    pub field: String,
    pub current: Option<String>,
    pub desired: Option<String>,
}

/// The verdict on one resource. `resource` reads `kind name`, e.g. `vpc gateway-vpc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub action: Action,
    pub resource: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldDiff>,
}

impl Change {
    pub fn create(resource: impl Into<String>) -> Change {
        Change {
            action: Action::Create,
            resource: resource.into(),
            fields: Vec::new(),
        }
    }

    pub fn delete(resource: impl Into<String>) -> Change {
        Change {
            action: Action::Delete,
            resource: resource.into(),
            fields: Vec::new(),
        }
    }

    /// `update` when `fields` is not empty, else `unchanged`.
    pub fn compare(resource: impl Into<String>, fields: Vec<FieldDiff>) -> Change {
        Change {
            action: if fields.is_empty() {
                Action::Unchanged
            } else {
                Action::Update
            },
            resource: resource.into(),
            fields,
        }
    }
}

/// Collects the differing fields of one resource.
#[derive(Debug, Default)]
pub struct Diff(pub Vec<FieldDiff>);

impl Diff {
    /// Records `field` when `current != desired`.
    pub fn field<T: PartialEq + std::fmt::Display>(
        &mut self,
        field: &str,
        current: Option<T>,
        desired: Option<T>,
    ) -> &mut Self {
        if current != desired {
            self.0.push(FieldDiff {
                field: field.to_string(),
                current: current.map(|v| v.to_string()),
                desired: desired.map(|v| v.to_string()),
            });
        }
        self
    }

    /// Set difference of rules, listed as `+rule` (missing) and `-rule` (extra).
    pub fn set(&mut self, field: &str, current: &[String], desired: &[String]) -> &mut Self {
        let mut missing: Vec<&String> = desired.iter().filter(|r| !current.contains(r)).collect();
        let mut extra: Vec<&String> = current.iter().filter(|r| !desired.contains(r)).collect();
        missing.sort();
        missing.dedup();
        extra.sort();
        extra.dedup();
        if !missing.is_empty() || !extra.is_empty() {
            self.0.push(FieldDiff {
                field: field.to_string(),
                current: (!extra.is_empty()).then(|| {
                    extra
                        .iter()
                        .map(|r| format!("-{r}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                }),
                desired: (!missing.is_empty()).then(|| {
                    missing
                        .iter()
                        .map(|r| format!("+{r}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                }),
            });
        }
        self
    }

    pub fn into_change(self, resource: impl Into<String>) -> Change {
        Change::compare(resource, self.0)
    }
}

/// One resource in `status`: its name, id, state and anything else worth showing
/// (e.g. `endpoint`, `elb_health`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub resource: String,
    pub id: Option<String>,
    pub state: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
}

impl Status {
    pub fn new(
        resource: impl Into<String>,
        id: Option<String>,
        state: impl Into<String>,
    ) -> Status {
        Status {
            resource: resource.into(),
            id,
            state: state.into(),
            details: BTreeMap::new(),
        }
    }

    pub fn detail(mut self, key: &str, value: impl Into<String>) -> Status {
        self.details.insert(key.to_string(), value.into());
        self
    }
}

/// The whole plan, as printed by `plan`.
#[derive(Debug, Default, Serialize)]
pub struct Plan {
    /// Everything that is not `unchanged`.
    pub changes: Vec<Change>,
    /// Resources already as the spec wants them (text output only).
    #[serde(skip)]
    pub unchanged: Vec<Change>,
}

impl Plan {
    pub fn from_changes(all: Vec<Change>) -> Plan {
        let (unchanged, changes) = all.into_iter().partition(|c| c.action == Action::Unchanged);
        Plan { changes, unchanged }
    }

    pub fn is_converged(&self) -> bool {
        self.changes.is_empty()
    }

    /// Terraform-like text: one line per resource, fields indented below.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for c in self.changes.iter().chain(&self.unchanged) {
            let sign = match c.action {
                Action::Create => "+",
                Action::Update => "~",
                Action::Delete => "-",
                Action::Unchanged => " ",
            };
            let action = match c.action {
                Action::Create => "create",
                Action::Update => "update",
                Action::Delete => "delete",
                Action::Unchanged => "unchanged",
            };
            out.push_str(&format!("{sign} {:<10} {}\n", action, c.resource));
            for f in &c.fields {
                out.push_str(&format!(
                    "      {}: {} -> {}\n",
                    f.field,
                    f.current.as_deref().unwrap_or("(none)"),
                    f.desired.as_deref().unwrap_or("(none)")
                ));
            }
        }
        let count = |a| self.changes.iter().filter(|c| c.action == a).count();
        out.push_str(&format!(
            "Plan: {} to create, {} to update, {} to delete, {} unchanged.\n",
            count(Action::Create),
            count(Action::Update),
            count(Action::Delete),
            self.unchanged.len()
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffs_record_only_differences() {
        let mut d = Diff::default();
        d.field("max_size", Some(4), Some(6))
            .field("min_size", Some(2), Some(2));
        d.set(
            "ingress",
            &[
                "tcp 8000-8003 10.0.0.0/16".into(),
                "tcp 22 0.0.0.0/0".into(),
            ],
            &[
                "tcp 8000-8003 10.0.0.0/16".into(),
                "tcp 8443-8446 10.0.0.0/16".into(),
            ],
        );
        let c = d.into_change("security-group gw-nodes");
        assert_eq!(c.action, Action::Update);
        assert_eq!(c.fields.len(), 2);
        assert_eq!(c.fields[0].current.as_deref(), Some("4"));
        assert_eq!(c.fields[1].current.as_deref(), Some("-tcp 22 0.0.0.0/0"));
        assert_eq!(
            c.fields[1].desired.as_deref(),
            Some("+tcp 8443-8446 10.0.0.0/16")
        );
        assert_eq!(Diff::default().into_change("x").action, Action::Unchanged);
    }

    #[test]
    fn json_lists_only_changes() {
        let plan = Plan::from_changes(vec![
            Change::create("vpc gw-vpc"),
            Change::compare("subnet gw-public-a", vec![]),
        ]);
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"changes": [{"action": "create", "resource": "vpc gw-vpc"}]})
        );
        assert!(plan
            .render_text()
            .contains("1 to create, 0 to update, 0 to delete, 1 unchanged"));
        assert!(Plan::from_changes(vec![Change::compare("x", vec![])]).is_converged());
    }
}
