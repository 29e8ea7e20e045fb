//! The Admin API: node information, `/status`, `/status/ready`; Kong's
//! entity endpoints and `/cluster` on PostgreSQL; `POST /config` without a
//! database.

mod auth;
mod body;
mod entities;
mod proxy_cache;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::cluster::Cluster;
use crate::config::Secret;
use crate::proxy::pool::Pools;
use crate::proxy::Shared;
use crate::snapshot::Snapshot;

pub struct NodeInfo {
    pub node_id: uuid::Uuid,
    pub hostname: String,
    /// A summary of the configuration safe to show (no secrets).
    pub configuration: serde_json::Value,
}

#[derive(Clone)]
pub struct AdminState {
    pub shared: Arc<Shared>,
    pub pools: Arc<Pools>,
    pub node: Arc<NodeInfo>,
    /// Present when `database = postgres`.
    pub cluster: Option<Arc<Cluster>>,
    /// `admin_token`; replaced while running when `admin_token_file` changes.
    pub token: Arc<arc_swap::ArcSwapOption<Secret>>,
}

/// Every body, `POST /config`'s included, is read by [`body::Body`] within
/// [`crate::input_limits::MAX_BODY_BYTES`] (Kong's 10 MiB).
pub fn router(state: AdminState) -> Router {
    let protected = Router::new()
        .route("/", get(node_info))
        .route("/config", post(load_config))
        .route("/plugins/enabled", get(enabled_plugins))
        .route("/schemas/plugins/validate", post(validate_plugin))
        .route("/schemas/plugins/{name}", get(plugin_schema))
        .merge(proxy_cache::routes())
        .merge(entities::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    let app = Router::new()
        .route("/status", get(status))
        .route("/status/ready", get(ready))
        // Kong serves the prometheus plugin's metrics on its Status API,
        // open to scrapers like /status.
        .route("/metrics", get(metrics))
        .merge(protected)
        .layer(axum::middleware::from_fn(kong_errors))
        .with_state(state);
    // Kong answers `/consumers/` as `/consumers` (its docs write both); axum
    // routes exact paths, so the slash goes before routing.
    Router::new().fallback_service(tower::ServiceExt::map_request(app, without_trailing_slash))
}

fn without_trailing_slash(mut req: Request) -> Request {
    let path = req.uri().path();
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = path.trim_end_matches('/');
        let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
        let rebuilt = match req.uri().query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_string(),
        };
        if let Ok(pq) = rebuilt.parse::<axum::http::uri::PathAndQuery>() {
            let mut parts = req.uri().clone().into_parts();
            parts.path_and_query = Some(pq);
            if let Ok(uri) = axum::http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    req
}

/// Kong's error shape for axum's own rejections, which are plain text or
/// empty: a path segment that is not UTF-8, a query string that does not
/// decode, a method a route does not have. Answers already in JSON pass.
async fn kong_errors(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    let json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if json || !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    // Rejection texts are short; anything longer is cut.
    let text = match axum::body::to_bytes(body, 16 << 10).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
        Err(_) => String::new(),
    };
    let text = match (text.is_empty(), status) {
        (false, _) => text,
        (true, StatusCode::NOT_FOUND) => "Not found".into(),
        (true, StatusCode::METHOD_NOT_ALLOWED) => "Method not allowed".into(),
        (true, s) => s.canonical_reason().unwrap_or("Error").to_string(),
    };
    let body = json!({ "message": text }).to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, axum::body::Body::from(body))
}

async fn node_info(State(s): State<AdminState>) -> Json<serde_json::Value> {
    // Kong lists the plugins this node can run, with their priority, and the
    // ones configured; plugins stored but not implemented here are in the
    // second list only.
    let available: serde_json::Map<String, serde_json::Value> = crate::plugins::IMPLEMENTED
        .iter()
        .map(|(name, priority)| {
            (
                name.to_string(),
                json!({"priority": priority, "version": env!("CARGO_PKG_VERSION")}),
            )
        })
        .collect();
    let snapshot = s.shared.snapshot.load();
    let mut enabled: Vec<&str> = snapshot
        .entities
        .plugins
        .iter()
        .filter(|p| p.enabled)
        .map(|p| p.name.as_str())
        .collect();
    enabled.sort_unstable();
    enabled.dedup();
    Json(json!({
        "tagline": "Welcome to gateway",
        "version": env!("CARGO_PKG_VERSION"),
        "node_id": s.node.node_id,
        "hostname": s.node.hostname,
        "configuration": s.node.configuration,
        "plugins": { "available_on_server": available, "enabled_in_cluster": enabled },
    }))
}

/// The prometheus plugin's exposition (text format 0.0.4).
async fn metrics(State(s): State<AdminState>) -> Response {
    let reachable = s.cluster.as_ref().is_none_or(|c| c.database_reachable());
    let snapshot = s.shared.snapshot.load();
    let e = &snapshot.entities;
    // Target health only when a prometheus instance asks for it; no active
    // or passive checks run here, so every target is `healthchecks_off`.
    let health = e.plugins.iter().any(|p| {
        p.enabled && p.name == "prometheus" && p.config["upstream_health_metrics"] == true
    });
    let targets = if health {
        e.targets
            .iter()
            .filter_map(|t| {
                let u = e.upstreams.iter().find(|u| u.id == t.upstream.id)?;
                Some((u.name.clone(), t.target.clone(), "healthchecks_off"))
            })
            .collect()
    } else {
        Vec::new()
    };
    let status = s.shared.status.to_json(reachable);
    let node_id = s.node.node_id.to_string();
    let body = crate::plugins::prometheus::render(&crate::plugins::prometheus::NodeFacts {
        node_id: &node_id,
        hostname: &s.node.hostname,
        version: env!("CARGO_PKG_VERSION"),
        status: &status,
        database_reachable: reachable,
        config_hash: &snapshot.hash,
        config_loaded_at: snapshot.built_at,
        targets,
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Kong's `/status` body. It is also the classic ELB's health check (the
/// provisioner's `HEALTH_CHECK_TARGET`, as in Kong's AWS guide), so it answers 503,
/// with the same body, whenever [`unready`] has a reason: a draining node then
/// leaves the ELB while its listeners still serve.
async fn status(State(s): State<AdminState>) -> Response {
    // Without a database there is none to lose.
    let reachable = s.cluster.as_ref().is_none_or(|c| c.database_reachable());
    let snapshot = s.shared.snapshot.load();
    let mut body = s.shared.status.to_json(reachable);
    body["configuration_hash"] = json!(snapshot.hash);
    let code = match unready(&s, &snapshot) {
        None => StatusCode::OK,
        Some(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    (code, Json(body)).into_response()
}

/// 200 `ready` when this node should get traffic, else 503 with the reason.
async fn ready(State(s): State<AdminState>) -> Response {
    match unready(&s, &s.shared.snapshot.load()) {
        None => message(StatusCode::OK, "ready"),
        Some(reason) => message(StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}

/// Why this node should get no traffic, or `None` when it should: the one
/// readiness decision behind `/status` and `/status/ready`.
/// A database outage is no reason: the node keeps proxying with its last
/// configuration, and pulling every node out of the ELB at once for a database
/// blip would turn it into a full outage.
fn unready(s: &AdminState, snapshot: &Snapshot) -> Option<&'static str> {
    if s.shared.status.is_draining() {
        return Some("draining");
    }
    if !snapshot.loaded {
        return Some(if s.cluster.is_some() {
            "no configuration loaded from the database yet"
        } else {
            "no configuration available: set declarative_config or POST /config"
        });
    }
    None
}

/// Kong's `GET /plugins/enabled`: the plugins a plugin entity may name.
async fn enabled_plugins() -> Json<serde_json::Value> {
    Json(json!({ "enabled_plugins": crate::schema::BUNDLED_PLUGINS }))
}

/// Kong's `GET /schemas/plugins/{name}`.
async fn plugin_schema(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match crate::plugins::schema_json(&name) {
        Some(schema) => Json(schema).into_response(),
        None => message(StatusCode::NOT_FOUND, &format!("No plugin named '{name}'")),
    }
}

/// Kong's `POST /schemas/plugins/validate`: a plugin checked as a create
/// would check it (its config with the plugin's schema), and not stored.
async fn validate_plugin(headers: axum::http::HeaderMap, body::Body(body): body::Body) -> Response {
    use crate::schema::{Kind, Write};
    use crate::store::StoreError;
    let mut map = match body::parse(Kind::Plugins, &headers, &body) {
        Ok(m) => m,
        Err(body::BodyError::Schema(f)) => return entities::store_error(StoreError::Schema(f)),
        Err(body::BodyError::Unreadable(m)) => return message(StatusCode::BAD_REQUEST, &m),
        Err(body::BodyError::UnsupportedType(m)) => {
            return message(StatusCode::UNSUPPORTED_MEDIA_TYPE, &m)
        }
    };
    map.entry("id")
        .or_insert_with(|| uuid::Uuid::new_v4().to_string().into());
    match crate::schema::validate(Kind::Plugins, map, Write::Create, None, 0) {
        Ok(_) => message(StatusCode::OK, "schema validation successful"),
        Err(f) => entities::store_error(StoreError::Schema(f)),
    }
}

/// Kong's DB-less `POST /config`: replace the whole configuration.
async fn load_config(State(s): State<AdminState>, body::Body(body): body::Body) -> Response {
    if s.cluster.is_some() {
        return message(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST /config is for database = off; with PostgreSQL use the entity endpoints or `gateway config db_import`",
        );
    }
    let pools = s.pools.clone();
    // The body moves to the blocking thread: no copy of up to 10 MiB.
    let built = tokio::task::spawn_blocking(move || match std::str::from_utf8(&body) {
        Ok(text) => Snapshot::from_declarative(text, &pools),
        Err(_) => Err("the body is not UTF-8 text".into()),
    })
    .await;
    match built {
        Ok(Ok(snapshot)) => {
            let body = json!({
                "configuration_hash": snapshot.hash,
                "services": snapshot.entities.services.len(),
                "routes": snapshot.entities.routes.len(),
                "upstreams": snapshot.entities.upstreams.len(),
                "targets": snapshot.entities.targets.len(),
            });
            s.shared.snapshot.store(Arc::new(snapshot));
            tracing::info!("configuration loaded through POST /config");
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Ok(Err(e)) => schema_error(e),
        Err(e) => {
            tracing::error!("building the configuration failed: {e}");
            message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "An unexpected error occurred",
            )
        }
    }
}

fn schema_error(detail: String) -> Response {
    let body = json!({
        "code": 14,
        "name": "invalid declarative configuration",
        "message": format!("declarative config is invalid: {detail}"),
    });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

async fn not_found() -> Response {
    message(StatusCode::NOT_FOUND, "Not found")
}

pub(crate) fn message(code: StatusCode, text: &str) -> Response {
    (code, Json(json!({ "message": text }))).into_response()
}
