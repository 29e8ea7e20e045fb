//! `admin_token`: every request but `/status` needs `Authorization: Bearer`
//! (or Kong's `Kong-Admin-Token` header) with the token. The token is read
//! per request from an `ArcSwapOption`, which [`crate::secrets`] replaces
//! when `admin_token_file` changes: the old token stops working then.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::{message, AdminState};

pub async fn require_token(State(s): State<AdminState>, req: Request, next: Next) -> Response {
    let Some(token) = s.token.load_full() else {
        return next.run(req).await;
    };
    let headers = req.headers();
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| {
            headers
                .get("kong-admin-token")
                .and_then(|v| v.to_str().ok())
        });
    match given {
        Some(g) if equal(g.trim().as_bytes(), token.expose().as_bytes()) => next.run(req).await,
        Some(_) => message(
            StatusCode::UNAUTHORIZED,
            "Invalid credentials. Token is not valid",
        ),
        None => message(
            StatusCode::UNAUTHORIZED,
            "Invalid credentials. Token required: send `Authorization: Bearer <admin_token>`",
        ),
    }
}

/// Compares without stopping at the first difference.
fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
