//! Kong's entities in PostgreSQL: lookups by id or endpoint key, pages, and
//! writes that validate, store, record a cluster event and NOTIFY in one
//! transaction.

use serde_json::{json, Map, Value};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{classify, Result, Store, StoreError, EVENTS_CHANNEL};
use crate::model::Entities;
use crate::schema::{self, FieldErrors, Kind, Write};

/// A column stored beside the jsonb entity.
enum Col {
    /// Text copied from a top-level field.
    Text(&'static str),
    /// `{field: {"id": ...}}` stored as `<field>_id`.
    Ref(&'static str, Kind),
    /// Plugins: one per name and service/route/consumer combination.
    CacheKey,
}

fn columns(kind: Kind) -> &'static [Col] {
    match kind {
        Kind::Services | Kind::Upstreams => &[Col::Text("name")],
        Kind::Routes => &[Col::Text("name"), Col::Ref("service", Kind::Services)],
        Kind::Consumers => &[Col::Text("username"), Col::Text("custom_id")],
        Kind::Targets => &[Col::Ref("upstream", Kind::Upstreams), Col::Text("target")],
        Kind::Certificates => &[],
        Kind::KeyauthCredentials => &[Col::Ref("consumer", Kind::Consumers), Col::Text("key")],
        Kind::BasicauthCredentials => {
            &[Col::Ref("consumer", Kind::Consumers), Col::Text("username")]
        }
        Kind::Acls => &[Col::Ref("consumer", Kind::Consumers), Col::Text("group")],
        Kind::Plugins => &[
            Col::Text("name"),
            Col::Ref("service", Kind::Services),
            Col::Ref("route", Kind::Routes),
            Col::Ref("consumer", Kind::Consumers),
            Col::CacheKey,
        ],
    }
}

fn column_name(c: &Col) -> String {
    match c {
        // Quoted: acls' `group` is an SQL keyword.
        Col::Text(f) => format!("\"{f}\""),
        Col::Ref(f, _) => format!("{f}_id"),
        Col::CacheKey => "cache_key".into(),
    }
}

enum Bind {
    Text(Option<String>),
    Uuid(Option<Uuid>),
}

fn ref_id(entity: &Value, field: &str) -> Option<Uuid> {
    entity.get(field)?.get("id")?.as_str()?.parse().ok()
}

fn binds(kind: Kind, entity: &Value) -> Vec<Bind> {
    columns(kind)
        .iter()
        .map(|c| match c {
            Col::Text(f) => Bind::Text(entity.get(*f).and_then(Value::as_str).map(String::from)),
            Col::Ref(f, _) => Bind::Uuid(ref_id(entity, f)),
            Col::CacheKey => {
                let id = |f| ref_id(entity, f).map(|u| u.to_string()).unwrap_or_default();
                let name = entity.get("name").and_then(Value::as_str).unwrap_or("");
                Bind::Text(Some(format!(
                    "plugins:{name}:{}:{}:{}",
                    id("route"),
                    id("service"),
                    id("consumer")
                )))
            }
        })
        .collect()
}

fn tags(entity: &Value) -> Option<Vec<String>> {
    let list = entity.get("tags")?.as_array()?;
    Some(
        list.iter()
            .filter_map(|t| t.as_str().map(String::from))
            .collect(),
    )
}

/// Narrows a lookup or a list to the children of one entity, such as the
/// routes of a service (`service_id = ...`).
#[derive(Clone, Copy)]
pub struct Parent {
    pub field: &'static str,
    pub id: Uuid,
}

/// `?tags=a,b` needs all, `?tags=a/b` any.
pub enum TagFilter {
    All(Vec<String>),
    Any(Vec<String>),
}

pub struct ListQuery {
    pub size: i64,
    /// The `seq` of the last entity of the previous page.
    pub after: Option<i64>,
    pub tags: Option<TagFilter>,
    pub parent: Option<Parent>,
}

pub struct Page {
    pub data: Vec<Value>,
    /// Opaque offset of the next page, when there is one.
    pub next: Option<String>,
}

impl Store {
    /// An entity by id, or by its endpoint key (name, username, target).
    pub async fn get(&self, kind: Kind, key: &str, parent: Option<Parent>) -> Result<Value> {
        let mut conn = self.acquire().await?;
        find(&mut conn, kind, key, parent, false)
            .await?
            .map(|(_, v)| v)
            .ok_or(StoreError::NotFound)
    }

    pub async fn list(&self, kind: Kind, q: &ListQuery) -> Result<Page> {
        let mut sql = format!("SELECT seq, entity FROM {} WHERE seq > $1", kind.name());
        let mut n = 1;
        if let Some(p) = &q.parent {
            n += 1;
            sql.push_str(&format!(" AND {}_id = ${n}", p.field));
        }
        match &q.tags {
            Some(TagFilter::All(_)) => {
                n += 1;
                sql.push_str(&format!(" AND tags @> ${n}"));
            }
            Some(TagFilter::Any(_)) => {
                n += 1;
                sql.push_str(&format!(" AND tags && ${n}"));
            }
            None => {}
        }
        sql.push_str(&format!(" ORDER BY seq LIMIT ${}", n + 1));
        let mut query = sqlx::query(&sql).bind(q.after.unwrap_or(0));
        if let Some(p) = &q.parent {
            query = query.bind(p.id);
        }
        if let Some(TagFilter::All(t) | TagFilter::Any(t)) = &q.tags {
            query = query.bind(t);
        }
        let rows = query
            .bind(q.size + 1)
            .fetch_all(&mut *self.acquire().await?)
            .await
            .map_err(classify)?;
        let more = rows.len() as i64 > q.size;
        let mut data = Vec::with_capacity(rows.len());
        let mut last = 0i64;
        for r in rows.into_iter().take(q.size as usize) {
            last = r.try_get("seq").map_err(classify)?;
            data.push(r.try_get::<Value, _>("entity").map_err(classify)?);
        }
        Ok(Page {
            data,
            next: more.then(|| last.to_string()),
        })
    }

    /// `POST`: a new entity. The id comes from the body or is generated.
    pub async fn create(
        &self,
        kind: Kind,
        mut body: Map<String, Value>,
        node: Uuid,
    ) -> Result<Value> {
        let id = match body.get("id") {
            None | Some(Value::Null) => Uuid::new_v4(),
            Some(v) => v.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
                StoreError::Schema(FieldErrors::field("id", "expected a valid UUID"))
            })?,
        };
        body.insert("id".into(), json!(id));
        if kind == Kind::BasicauthCredentials {
            schema::hash_password(&mut body, None);
        }
        let entity =
            schema::validate(kind, body, Write::Create, None, now()).map_err(StoreError::Schema)?;
        let mut tx = self.begin().await?;
        write(&mut tx, kind, &entity, false).await?;
        event(&mut tx, node, kind.name(), "create", Some(id)).await?;
        tx.commit().await.map_err(classify)?;
        Ok(entity)
    }

    /// `PUT`: creates or replaces the entity at `key` (an id or endpoint key).
    /// Returns the entity and whether it was created.
    pub async fn upsert(
        &self,
        kind: Kind,
        key: &str,
        mut body: Map<String, Value>,
        parent: Option<Parent>,
        node: Uuid,
    ) -> Result<(Value, bool)> {
        let mut tx = self.begin().await?;
        let existing = find(&mut tx, kind, key, parent, true).await?;
        // A name in the URL is the entity's name, as in Kong.
        if key.parse::<Uuid>().is_err() {
            let field = match kind {
                Kind::Targets => Some("target"),
                _ => kind.endpoint_key(),
            };
            let Some(field) = field else {
                return Err(StoreError::Invalid(format!("`{key}` is not a valid UUID")));
            };
            body.insert(field.into(), json!(key));
        }
        let id = match (&existing, key.parse::<Uuid>()) {
            (Some((id, _)), _) => *id,
            (None, Ok(id)) => id,
            (None, Err(_)) => Uuid::new_v4(),
        };
        body.insert("id".into(), json!(id));
        if kind == Kind::BasicauthCredentials {
            schema::hash_password(&mut body, existing.as_ref().map(|(_, v)| v));
        }
        let entity = schema::validate(
            kind,
            body,
            Write::Replace,
            existing.as_ref().map(|(_, v)| v),
            now(),
        )
        .map_err(StoreError::Schema)?;
        write(&mut tx, kind, &entity, true).await?;
        let created = existing.is_none();
        event(
            &mut tx,
            node,
            kind.name(),
            if created { "create" } else { "update" },
            Some(id),
        )
        .await?;
        tx.commit().await.map_err(classify)?;
        Ok((entity, created))
    }

    /// `PATCH`: merges the body into the stored entity.
    pub async fn update(
        &self,
        kind: Kind,
        key: &str,
        mut body: Map<String, Value>,
        parent: Option<Parent>,
        node: Uuid,
    ) -> Result<Value> {
        let mut tx = self.begin().await?;
        let (id, existing) = find(&mut tx, kind, key, parent, true)
            .await?
            .ok_or(StoreError::NotFound)?;
        body.insert("id".into(), json!(id));
        if kind == Kind::BasicauthCredentials {
            schema::hash_password(&mut body, Some(&existing));
        }
        let entity = schema::validate(kind, body, Write::Patch, Some(&existing), now())
            .map_err(StoreError::Schema)?;
        write(&mut tx, kind, &entity, true).await?;
        event(&mut tx, node, kind.name(), "update", Some(id)).await?;
        tx.commit().await.map_err(classify)?;
        Ok(entity)
    }

    /// `DELETE`: Kong answers 204 whether or not the entity existed.
    pub async fn delete(
        &self,
        kind: Kind,
        key: &str,
        parent: Option<Parent>,
        node: Uuid,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let Some((id, _)) = find(&mut tx, kind, key, parent, true).await? else {
            return Ok(());
        };
        sqlx::query(&format!("DELETE FROM {} WHERE id = $1", kind.name()))
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| constraint_error(kind, e))?;
        event(&mut tx, node, kind.name(), "delete", Some(id)).await?;
        tx.commit().await.map_err(classify)?;
        Ok(())
    }
}

impl Store {
    /// `config db_import`: writes every entity, replacing those with the same
    /// id, in one transaction with one event. Returns how many were written.
    pub async fn import(&self, entities: &Entities, node: Uuid) -> Result<usize> {
        let mut tx = self.begin().await?;
        let mut count = 0;
        let values = |v: Vec<Value>, kind| v.into_iter().map(move |e| (kind, e));
        let all = values(to_values(&entities.services)?, Kind::Services)
            .chain(values(to_values(&entities.routes)?, Kind::Routes))
            .chain(values(to_values(&entities.consumers)?, Kind::Consumers))
            .chain(values(
                to_values(&entities.keyauth_credentials)?,
                Kind::KeyauthCredentials,
            ))
            .chain(values(
                to_values(&entities.basicauth_credentials)?,
                Kind::BasicauthCredentials,
            ))
            .chain(values(to_values(&entities.acls)?, Kind::Acls))
            .chain(values(to_values(&entities.upstreams)?, Kind::Upstreams))
            .chain(values(to_values(&entities.targets)?, Kind::Targets))
            .chain(values(
                to_values(&entities.certificates)?,
                Kind::Certificates,
            ))
            .chain(values(to_values(&entities.plugins)?, Kind::Plugins));
        for (kind, value) in all {
            let Value::Object(mut body) = value else {
                continue;
            };
            let id = body
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let existing = find(&mut tx, kind, &id, None, true).await?;
            // Timestamps come from the database, not the file.
            body.remove("created_at");
            body.remove("updated_at");
            let entity = schema::validate(
                kind,
                body,
                Write::Replace,
                existing.as_ref().map(|(_, v)| v),
                now(),
            )
            .map_err(|e| StoreError::Invalid(format!("{} {id}: {}", kind.name(), e.message())))?;
            write(&mut tx, kind, &entity, true).await?;
            count += 1;
        }
        event(&mut tx, node, "all", "import", None).await?;
        tx.commit().await.map_err(classify)?;
        Ok(count)
    }
}

fn to_values<T: serde::Serialize>(items: &[T]) -> Result<Vec<Value>> {
    items
        .iter()
        .map(|i| serde_json::to_value(i).map_err(|e| StoreError::Other(e.to_string())))
        .collect()
}

/// Finds by id, else by endpoint key (for targets: `host[:port]` in the parent).
async fn find(
    conn: &mut PgConnection,
    kind: Kind,
    key: &str,
    parent: Option<Parent>,
    lock: bool,
) -> Result<Option<(Uuid, Value)>> {
    // PostgreSQL text cannot hold NUL: no entity has such a key.
    if key.contains('\0') {
        return Ok(None);
    }
    let (column, value) = match key.parse::<Uuid>() {
        Ok(id) => ("id", Bind::Uuid(Some(id))),
        Err(_) => match (kind, kind.endpoint_key()) {
            (Kind::Targets, _) => ("target", Bind::Text(Some(normalise_target(key)))),
            (_, Some(field)) => (field, Bind::Text(Some(key.to_string()))),
            (_, None) => return Ok(None),
        },
    };
    let mut sql = format!(
        "SELECT id, entity FROM {} WHERE \"{column}\" = $1",
        kind.name()
    );
    if let Some(p) = &parent {
        sql.push_str(&format!(" AND {}_id = $2", p.field));
    }
    if lock {
        sql.push_str(" FOR UPDATE");
    }
    let mut q = sqlx::query(&sql);
    q = match value {
        Bind::Uuid(u) => q.bind(u),
        Bind::Text(t) => q.bind(t),
    };
    if let Some(p) = &parent {
        q = q.bind(p.id);
    }
    let row: Option<PgRow> = q.fetch_optional(&mut *conn).await.map_err(classify)?;
    // `try_get`: a row that does not decode is an error, not a panic.
    row.map(|r| Ok((r.try_get("id")?, r.try_get("entity")?)))
        .transpose()
        .map_err(classify)
}

fn normalise_target(key: &str) -> String {
    match crate::declarative::split_host_port(key) {
        Ok((host, port)) => crate::declarative::format_host_port(
            &host,
            port.unwrap_or(crate::model::DEFAULT_TARGET_PORT),
        ),
        Err(_) => key.to_string(),
    }
}

async fn write(conn: &mut PgConnection, kind: Kind, entity: &Value, upsert: bool) -> Result<()> {
    let cols = columns(kind);
    let names: Vec<String> = cols.iter().map(column_name).collect();
    let mut sql = format!("INSERT INTO {} (id, tags, entity", kind.name());
    for n in &names {
        sql.push_str(", ");
        sql.push_str(n);
    }
    sql.push_str(") VALUES ($1, $2, $3");
    for i in 0..names.len() {
        sql.push_str(&format!(", ${}", i + 4));
    }
    sql.push(')');
    if upsert {
        sql.push_str(
            " ON CONFLICT (id) DO UPDATE SET tags = EXCLUDED.tags, entity = EXCLUDED.entity",
        );
        for n in &names {
            sql.push_str(&format!(", {n} = EXCLUDED.{n}"));
        }
    }
    let id = entity
        .get("id")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<Uuid>().ok())
        .ok_or_else(|| StoreError::Other("validated entity has no id".into()))?;
    let mut q = sqlx::query(&sql).bind(id).bind(tags(entity)).bind(entity);
    for b in binds(kind, entity) {
        q = match b {
            Bind::Text(t) => q.bind(t),
            Bind::Uuid(u) => q.bind(u),
        };
    }
    q.execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(|e| constraint_error_with(kind, entity, e))
}

/// Records a change and tells every node, in the caller's transaction.
async fn event(
    conn: &mut PgConnection,
    node: Uuid,
    entity: &str,
    op: &str,
    id: Option<Uuid>,
) -> Result<()> {
    sqlx::query(
        "WITH e AS (INSERT INTO cluster_events (node_id, entity, operation, entity_id)
                    VALUES ($1, $2, $3, $4) RETURNING id)
         SELECT pg_notify($5, id::text) FROM e",
    )
    .bind(node)
    .bind(entity)
    .bind(op)
    .bind(id)
    .bind(EVENTS_CHANNEL)
    .execute(&mut *conn)
    .await
    .map(|_| ())
    .map_err(classify)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn constraint_error(kind: Kind, e: sqlx::Error) -> StoreError {
    constraint_error_with(kind, &Value::Null, e)
}

/// Kong's answers to unique, primary key and foreign key violations.
fn constraint_error_with(kind: Kind, entity: &Value, e: sqlx::Error) -> StoreError {
    let sqlx::Error::Database(db) = &e else {
        return classify(e);
    };
    let constraint = db.constraint().unwrap_or("").to_string();
    let table = kind.name();
    match db.code().as_deref() {
        Some("23505") if constraint == format!("{table}_pkey") => {
            let id = entity.get("id").cloned().unwrap_or(Value::Null);
            StoreError::PrimaryKey {
                message: format!("primary key violation on key '{{id={id}}}'"),
                fields: Map::from_iter([("id".to_string(), id)]),
            }
        }
        Some("23505") => {
            let fields: Vec<&str> = match kind {
                Kind::Targets => vec!["upstream", "target"],
                Kind::Plugins => vec!["name", "route", "service", "consumer"],
                Kind::Acls => vec!["consumer", "group"],
                _ => unique_field(&constraint, table).into_iter().collect(),
            };
            let mut map = Map::new();
            for f in &fields {
                map.insert(
                    f.to_string(),
                    entity.get(*f).cloned().unwrap_or(Value::Null),
                );
            }
            let shown: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
            StoreError::Unique {
                message: format!("UNIQUE violation detected on '{{{}}}'", shown.join(",")),
                fields: map,
            }
        }
        Some("23503") => {
            // On insert: our reference is dangling. On delete: others refer to us.
            let own = constraint
                .strip_prefix(&format!("{table}_"))
                .and_then(|c| c.strip_suffix("_id_fkey"))
                .is_some_and(|f| {
                    columns(kind)
                        .iter()
                        .any(|c| matches!(c, Col::Ref(r, _) if *r == f))
                });
            let referencing = constraint.split('_').next().unwrap_or("");
            if own {
                let field = constraint
                    .strip_prefix(&format!("{table}_"))
                    .and_then(|c| c.strip_suffix("_id_fkey"))
                    .unwrap_or("");
                let target = columns(kind).iter().find_map(|c| match c {
                    Col::Ref(f, k) if *f == field => Some(k.name()),
                    _ => None,
                });
                let fk = entity.get(field).cloned().unwrap_or(Value::Null);
                let id = fk.get("id").cloned().unwrap_or(Value::Null);
                StoreError::ForeignKey {
                    message: format!(
                        "the foreign key '{{id={id}}}' does not reference an existing '{}' entity.",
                        target.unwrap_or(field)
                    ),
                    fields: Map::from_iter([(field.to_string(), fk)]),
                }
            } else {
                StoreError::ForeignKey {
                    message: format!(
                        "an existing '{referencing}' entity references this '{table}' entity"
                    ),
                    fields: Map::from_iter([("@referenced_by".to_string(), json!(referencing))]),
                }
            }
        }
        _ => classify(e),
    }
}

/// `services_name_key` -> `name`.
fn unique_field<'a>(constraint: &'a str, table: &str) -> Option<&'a str> {
    constraint
        .strip_prefix(table)?
        .strip_prefix('_')?
        .strip_suffix("_key")
}
