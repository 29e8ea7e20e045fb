//! Admin API request bodies: JSON, or form-encoded as in Kong's curl examples.

use axum::body::Bytes;
use axum::http::{header, HeaderMap};
use serde_json::{Map, Value};

use crate::schema::{self, FieldErrors, Kind};

pub enum BodyError {
    Schema(FieldErrors),
    /// Not parseable at all: Kong's 400 with a message.
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
        "application/json" | "" => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(BodyError::Unreadable(
                "the JSON body must be an object".into(),
            )),
            Err(e) => Err(BodyError::Unreadable(format!("Cannot parse JSON body: {e}"))),
        },
        "application/x-www-form-urlencoded" => {
            schema::from_form(kind, body).map_err(BodyError::Schema)
        }
        other => Err(BodyError::UnsupportedType(format!(
            "Content-Type `{other}` is not supported: send application/json or application/x-www-form-urlencoded"
        ))),
    }
}
