//! Admin API request bodies: read within [`MAX_BODY_BYTES`], then JSON, or
//! form-encoded as in Kong's curl examples, within [`crate::input_limits`].

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use bytes::BytesMut;
use http_body_util::BodyExt;
use serde_json::{Map, Value};

use super::message;
use crate::input_limits::{self as limits, MAX_BODY_BYTES, MAX_ENTITY_NODES};
use crate::schema::{self, FieldErrors, Kind};

/// How long the rest of a refused body is read and dropped, so that the
/// client gets its 413 rather than a connection reset while it still sends
/// (nginx's lingering close; its `lingering_timeout` is 5 s).
const LINGER: Duration = Duration::from_secs(5);

/// The request body, at most [`MAX_BODY_BYTES`]; larger gets Kong's 413
/// before anything is buffered when Content-Length says so, else as soon as
/// the limit is passed.
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = Response;

    async fn from_request(req: Request, _: &S) -> Result<Self, Response> {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        // A client waiting for `100 Continue` has sent nothing yet: reading
        // the body would tell hyper to invite it.
        let waits = req
            .headers()
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let mut body = req.into_body();
        if let Some(n) = declared.filter(|n| *n > MAX_BODY_BYTES as u64) {
            if !waits {
                linger(body);
            }
            return Err(too_large(Some(n)));
        }
        let mut buf = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                message(
                    StatusCode::BAD_REQUEST,
                    &format!("cannot read the request body: {e}"),
                )
            })?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > MAX_BODY_BYTES {
                    linger(body);
                    return Err(too_large(None));
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(Body(buf.freeze()))
    }
}

/// Kong's 413, saying what the limit is.
fn too_large(declared: Option<u64>) -> Response {
    let size = declared.map_or_else(
        || "the body".to_string(),
        |n| format!("the body ({n} bytes)"),
    );
    message(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!(
            "Payload too large: {size} exceeds the Admin API limit of {MAX_BODY_BYTES} bytes (10 MiB, as Kong's nginx_admin_client_max_body_size)"
        ),
    )
}

/// Reads and drops what is left of a refused body, for [`LINGER`] at most.
fn linger(mut body: axum::body::Body) {
    tokio::spawn(async move {
        let drain = async { while let Some(Ok(_)) = body.frame().await {} };
        let _ = tokio::time::timeout(LINGER, drain).await;
    });
}

pub enum BodyError {
    Schema(FieldErrors),
    /// Not parseable at all, or over a limit: Kong's 400 with a message.
    Unreadable(String),
    UnsupportedType(String),
}

pub fn parse(
    kind: Kind,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Map<String, Value>, BodyError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match content_type.as_str() {
        "application/json" | "" => match limits::parse_json(body, MAX_ENTITY_NODES) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(BodyError::Unreadable(
                "the JSON body must be an object".into(),
            )),
            // Syntax errors and limits alike, with the line and column.
            Err(e) => Err(BodyError::Unreadable(format!(
                "Cannot parse JSON body: {e}"
            ))),
        },
        "application/x-www-form-urlencoded" => {
            limits::check_form(body).map_err(|e| {
                BodyError::Unreadable(format!("Cannot parse form-encoded body: {e}"))
            })?;
            schema::from_form(kind, body).map_err(BodyError::Schema)
        }
        other => Err(BodyError::UnsupportedType(format!(
            "Content-Type `{other}` is not supported: send application/json or application/x-www-form-urlencoded"
        ))),
    }
}
