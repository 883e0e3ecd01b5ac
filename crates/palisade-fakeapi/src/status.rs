//! Responses: objects as JSON, and errors as the API server's `Status` objects (kube-rs reads
//! `code`, `reason` and `message` from them).

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A JSON response.
pub fn json(code: StatusCode, value: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(value.to_string())).boxed_unsync())
        .expect("static headers are valid")
}

/// A `Status` object: `reason` as the API server names it (`Forbidden`, `NotFound`, `Expired`,
/// `BadRequest`, `InternalError`, ...).
pub fn status_value(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    })
}

/// An error response carrying a `Status` object.
pub fn error(code: u16, reason: &str, message: &str) -> Response<Body> {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(status, &status_value(code, reason, message))
}

/// The reason the API server gives with a status code.
pub fn reason_of(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "AlreadyExists",
        410 => "Expired",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    }
}

/// An API error before it becomes a response (a `Status` with this code, reason and message).
#[derive(Debug)]
pub struct Refusal {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Refusal { code, reason, message: message.into() }
    }
    pub fn reply(&self) -> Response<Body> {
        error(self.code, self.reason, &self.message)
    }
}
