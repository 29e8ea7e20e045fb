//! Kong's entity endpoints on PostgreSQL: `/{entities}`, `/{entities}/{id|name}`,
//! the nested forms (`/services/{s}/routes`, `/upstreams/{u}/targets/{t}`, ...)
//! `GET /cluster` and `DELETE /cluster/nodes/{id|hostname}`. Status codes and error bodies follow Kong.

// Early returns carry the finished error response, as axum handlers do.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use super::body::{self, Body, BodyError};
use super::{message, AdminState};
use crate::cluster::Cluster;
use crate::schema::Kind;
use crate::store::entities::{ListQuery, Parent, TagFilter};
use crate::store::StoreError;

const DEFAULT_PAGE_SIZE: i64 = 100;
const MAX_PAGE_SIZE: i64 = 1000;

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/cluster", get(cluster))
        .route("/cluster/nodes/{node}", axum::routing::delete(remove_node))
        .route("/{kind}", any(collection))
        .route("/{kind}/{key}", any(entity))
        .route("/{parent}/{pkey}/{kind}", any(nested_collection))
        .route("/{parent}/{pkey}/{kind}/{key}", any(nested_entity))
}

type Params = Query<HashMap<String, String>>;

async fn cluster(State(s): State<AdminState>) -> Response {
    let c = match db(&s) {
        Ok(c) => c,
        Err(r) => return r,
    };
    match crate::store::nodes::list(&c.store, c.config.ttl_on_failure).await {
        Ok(nodes) => {
            Json(json!({ "data": nodes, "total": nodes.len(), "next": null })).into_response()
        }
        Err(e) => store_error(e),
    }
}

/// Clears a failed (or left) node from `GET /cluster`. An active node answers 409:
/// it would register again at its next heartbeat, so stop or terminate it first.
async fn remove_node(State(s): State<AdminState>, Path(node): Path<String>) -> Response {
    use crate::store::nodes::{remove, Removal};
    let c = match db(&s) {
        Ok(c) => c,
        Err(r) => return r,
    };
    match remove(&c.store, &node, c.config.ttl_on_failure).await {
        Ok(Removal::Removed(_)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Removal::Active) => message(
            StatusCode::CONFLICT,
            &format!(
                "node {node} is active (it sent a heartbeat within cluster_ttl_on_failure); \
                 only failed or left nodes can be removed: stop or terminate it first"
            ),
        ),
        Ok(Removal::NotFound) => message(StatusCode::NOT_FOUND, "Not found"),
        Err(e) => store_error(e),
    }
}

async fn collection(
    State(s): State<AdminState>,
    method: Method,
    uri: Uri,
    Path(kind): Path<String>,
    Query(params): Params,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    let Some(kind) = Kind::parse(&kind) else {
        return message(StatusCode::NOT_FOUND, "Not found");
    };
    let c = match db(&s) {
        Ok(c) => c,
        Err(r) => return r,
    };
    match method {
        Method::GET => list(c, kind, None, &uri, &params).await,
        Method::POST => create(c, kind, None, &headers, &body).await,
        _ => not_allowed(),
    }
}

async fn entity(
    State(s): State<AdminState>,
    method: Method,
    Path((kind, key)): Path<(String, String)>,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    let Some(kind) = Kind::parse(&kind) else {
        return message(StatusCode::NOT_FOUND, "Not found");
    };
    let c = match db(&s) {
        Ok(c) => c,
        Err(r) => return r,
    };
    one(c, method, kind, &key, None, &headers, &body).await
}

async fn nested_collection(
    State(s): State<AdminState>,
    method: Method,
    uri: Uri,
    Path((parent, pkey, kind)): Path<(String, String, String)>,
    Query(params): Params,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    let c = match db(&s) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (kind, parent) = match resolve_parent(c, &parent, &pkey, &kind).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    match method {
        Method::GET => list(c, kind, Some(parent), &uri, &params).await,
        Method::POST => create(c, kind, Some(parent), &headers, &body).await,
        _ => not_allowed(),
    }
}

async fn nested_entity(
    State(s): State<AdminState>,
    method: Method,
    Path((parent, pkey, kind, key)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    let c = match db(&s) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (kind, parent) = match resolve_parent(c, &parent, &pkey, &kind).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    one(c, method, kind, &key, Some(parent), &headers, &body).await
}

/// The nestings Kong has: the child's field that points at the parent.
fn nesting(parent: Kind, child: Kind) -> Option<&'static str> {
    match (parent, child) {
        (Kind::Services, Kind::Routes | Kind::Plugins) => Some("service"),
        (Kind::Routes, Kind::Plugins) => Some("route"),
        (Kind::Consumers, Kind::Plugins) => Some("consumer"),
        (Kind::Consumers, k) if k.is_credential() => Some("consumer"),
        (Kind::Upstreams, Kind::Targets) => Some("upstream"),
        _ => None,
    }
}

async fn resolve_parent(
    c: &Cluster,
    parent: &str,
    pkey: &str,
    kind: &str,
) -> Result<(Kind, Parent), Response> {
    let not_found = || message(StatusCode::NOT_FOUND, "Not found");
    let (Some(pk), Some(kind)) = (Kind::parse(parent), Kind::parse_nested(kind)) else {
        return Err(not_found());
    };
    let field = nesting(pk, kind).ok_or_else(not_found)?;
    let entity = c.store.get(pk, pkey, None).await.map_err(store_error)?;
    let id = entity
        .get("id")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .ok_or_else(not_found)?;
    Ok((kind, Parent { field, id }))
}

async fn one(
    c: &Cluster,
    method: Method,
    kind: Kind,
    key: &str,
    parent: Option<Parent>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let read_body = || read(kind, parent, headers, body);
    let result = match method {
        Method::GET => c
            .store
            .get(kind, key, parent)
            .await
            .map(|v| (StatusCode::OK, v)),
        Method::PUT => match read_body() {
            Ok(b) => c
                .store
                .upsert(kind, key, b, parent, c.node_id)
                .await
                .map(|(v, _)| (StatusCode::OK, v)),
            Err(r) => return r,
        },
        Method::PATCH => match read_body() {
            Ok(b) => c
                .store
                .update(kind, key, b, parent, c.node_id)
                .await
                .map(|v| (StatusCode::OK, v)),
            Err(r) => return r,
        },
        Method::DELETE => {
            return match c.store.delete(kind, key, parent, c.node_id).await {
                Ok(()) => StatusCode::NO_CONTENT.into_response(),
                Err(e) => store_error(e),
            }
        }
        _ => return not_allowed(),
    };
    match result {
        Ok((code, v)) => (code, Json(v)).into_response(),
        Err(e) => store_error(e),
    }
}

async fn create(
    c: &Cluster,
    kind: Kind,
    parent: Option<Parent>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let b = match read(kind, parent, headers, body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match c.store.create(kind, b, c.node_id).await {
        Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Err(e) => store_error(e),
    }
}

/// The body, with the parent's reference set as the nested URL implies.
fn read(
    kind: Kind,
    parent: Option<Parent>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Map<String, Value>, Response> {
    let mut map = body::parse(kind, headers, body).map_err(|e| match e {
        BodyError::Schema(f) => store_error(StoreError::Schema(f)),
        BodyError::Unreadable(m) => message(StatusCode::BAD_REQUEST, &m),
        BodyError::UnsupportedType(m) => message(StatusCode::UNSUPPORTED_MEDIA_TYPE, &m),
    })?;
    if let Some(p) = parent {
        map.insert(p.field.to_string(), json!({ "id": p.id }));
    }
    Ok(map)
}

async fn list(
    c: &Cluster,
    kind: Kind,
    parent: Option<Parent>,
    uri: &Uri,
    params: &HashMap<String, String>,
) -> Response {
    let size = match params.get("size").map(|s| s.parse::<i64>()) {
        None => DEFAULT_PAGE_SIZE,
        Some(Ok(n)) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
        Some(_) => {
            return schema_violation(
                "size",
                &format!("must be an integer between 1 and {MAX_PAGE_SIZE}"),
            )
        }
    };
    let after = match params.get("offset").map(|s| s.parse::<i64>()) {
        None => None,
        Some(Ok(n)) if n >= 0 => Some(n),
        Some(_) => return schema_violation("offset", "is not a valid offset"),
    };
    let tags = params.get("tags").map(|t| {
        if t.contains('/') {
            TagFilter::Any(t.split('/').map(String::from).collect())
        } else {
            TagFilter::All(t.split(',').map(String::from).collect())
        }
    });
    let q = ListQuery {
        size,
        after,
        tags,
        parent,
    };
    match c.store.list(kind, &q).await {
        Ok(page) => {
            let mut body = json!({ "data": page.data, "next": null });
            if let Some(offset) = page.next {
                let mut next = format!("{}?offset={offset}", uri.path());
                if params.contains_key("size") {
                    next.push_str(&format!("&size={size}"));
                }
                if let Some(t) = params.get("tags") {
                    next.push_str(&format!("&tags={}", encode(t)));
                }
                body["offset"] = json!(offset);
                body["next"] = json!(next);
            }
            Json(body).into_response()
        }
        Err(e) => store_error(e),
    }
}

/// Percent-encodes what a query value cannot hold as is.
fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn db(s: &AdminState) -> Result<&Cluster, Response> {
    s.cluster.as_deref().ok_or_else(|| {
        message(
            StatusCode::METHOD_NOT_ALLOWED,
            "this node runs without a database (database = off): change its configuration with POST /config",
        )
    })
}

fn not_allowed() -> Response {
    message(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
}

fn schema_violation(field: &str, m: &str) -> Response {
    store_error(StoreError::Schema(crate::schema::FieldErrors::field(
        field, m,
    )))
}

/// Kong's error bodies and status codes.
pub fn store_error(e: StoreError) -> Response {
    let (code, body) = match e {
        StoreError::NotFound => (StatusCode::NOT_FOUND, json!({ "message": "Not found" })),
        StoreError::Schema(f) => (
            StatusCode::BAD_REQUEST,
            json!({ "code": 2, "name": "schema violation", "message": f.message(), "fields": f.0 }),
        ),
        StoreError::PrimaryKey { message, fields } => (
            StatusCode::CONFLICT,
            json!({ "code": 3, "name": "primary key violation", "message": message, "fields": fields }),
        ),
        StoreError::ForeignKey { message, fields } => (
            StatusCode::BAD_REQUEST,
            json!({ "code": 4, "name": "foreign key violation", "message": message, "fields": fields }),
        ),
        StoreError::Unique { message, fields } => (
            StatusCode::CONFLICT,
            json!({ "code": 5, "name": "unique constraint violation", "message": message, "fields": fields }),
        ),
        StoreError::Invalid(m) => (StatusCode::BAD_REQUEST, json!({ "message": m })),
        StoreError::Unreachable(m) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "message": format!(
                "the database is unreachable ({m}); changes cannot be saved now, and this node keeps proxying with its last configuration"
            ) }),
        ),
        StoreError::Other(m) => {
            tracing::error!("admin API: {m}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({ "message": "An unexpected error occurred" }),
            )
        }
    };
    (code, Json(body)).into_response()
}
