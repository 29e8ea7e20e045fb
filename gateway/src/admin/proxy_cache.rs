//! proxy-cache's Admin API (Kong 3.x): look up and purge the node's memory
//! cache. The memory strategy is per node, as in Kong: in a cluster, purge
//! on each node (or wait for `cache_ttl`).

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use uuid::Uuid;

use super::{message, AdminState};
use crate::plugins::proxy_cache::{entry_json, store::STORE};

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/proxy-cache", delete(purge))
        .route("/proxy-cache/{key}", get(find).delete(remove))
        .route(
            "/proxy-cache/{plugin}/caches/{key}",
            get(find_in).delete(remove_in),
        )
}

fn not_found() -> Response {
    message(StatusCode::NOT_FOUND, "Not found")
}

/// `DELETE /proxy-cache`: every entry of every instance.
async fn purge() -> Response {
    STORE.purge();
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /proxy-cache/{key}`: the entry under this key, whichever instance.
async fn find(Path(key): Path<String>) -> Response {
    match STORE.find(&key).into_iter().find(|(_, e)| e.age() < e.keep) {
        Some((plugin, e)) => Json(entry_json(plugin, &key, &e)).into_response(),
        None => not_found(),
    }
}

async fn remove(Path(key): Path<String>) -> Response {
    match STORE.remove_everywhere(&key) {
        0 => not_found(),
        _ => StatusCode::NO_CONTENT.into_response(),
    }
}

fn plugin_id(s: &str) -> Option<Uuid> {
    s.parse().ok()
}

async fn find_in(Path((plugin, key)): Path<(String, String)>) -> Response {
    let Some(plugin) = plugin_id(&plugin) else {
        return not_found();
    };
    match STORE.get(plugin, &key) {
        Some(e) => Json(entry_json(plugin, &key, &e)).into_response(),
        None => not_found(),
    }
}

async fn remove_in(Path((plugin, key)): Path<(String, String)>) -> Response {
    let Some(plugin) = plugin_id(&plugin) else {
        return not_found();
    };
    if STORE.remove(plugin, &key) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found()
    }
}
