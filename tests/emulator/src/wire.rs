//! Wire helpers: error bodies (VSS exceptions, GitHub REST errors) and JSON responses.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use crate::config::ErrorSpec;

/// The zero timestamp meaning "not set".
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// An error answer of one of the emulated services.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiError {
    /// Actions service exception (`typeName`, `message`, …).
    Vss {
        /// HTTP status.
        status: u16,
        /// Short type key, e.g. `TaskAgentExistsException`.
        type_key: String,
        /// Human message.
        message: String,
    },
    /// GitHub REST error `{"message","documentation_url"}`.
    GitHub {
        /// HTTP status.
        status: u16,
        /// Message, e.g. `Bad credentials`.
        message: String,
    },
    /// A 401 of the Actions service or message queue, with an empty body.
    Unauthorized,
    /// A plain-text answer.
    Plain {
        /// HTTP status.
        status: u16,
        /// Body text.
        body: String,
    },
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Vss {
                status,
                type_key,
                message,
            } => write!(f, "{status} {type_key}: {message}"),
            ApiError::GitHub { status, message } => write!(f, "{status}: {message}"),
            ApiError::Unauthorized => f.write_str("401 Unauthorized"),
            ApiError::Plain { status, body } => write!(f, "{status}: {body}"),
        }
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// An Actions service exception.
    pub fn vss(status: u16, type_key: &str, message: impl Into<String>) -> Self {
        ApiError::Vss {
            status,
            type_key: type_key.to_owned(),
            message: message.into(),
        }
    }

    /// An Actions service exception from a configured spec.
    pub fn from_spec(spec: &ErrorSpec, message: impl Into<String>) -> Self {
        Self::vss(spec.status, &spec.type_key, message)
    }

    /// A GitHub REST error.
    pub fn github(status: u16, message: impl Into<String>) -> Self {
        ApiError::GitHub {
            status,
            message: message.into(),
        }
    }

    /// A 400 `ArgumentException` for a bad request body or parameter.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::vss(400, "ArgumentException", message)
    }

    /// Plain 404 for paths the service does not serve.
    pub fn not_found() -> Self {
        ApiError::Plain {
            status: 404,
            body: "Not Found".to_owned(),
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::Vss { status, .. }
            | ApiError::GitHub { status, .. }
            | ApiError::Plain { status, .. } => *status,
            ApiError::Unauthorized => 401,
        }
    }

    /// Renders the error as an HTTP response.
    pub fn into_response(self) -> Response {
        match self {
            ApiError::Vss {
                status,
                type_key,
                message,
            } => json_response(status, &vss_body(&type_key, &message)),
            ApiError::GitHub { status, message } => json_response(
                status,
                &json!({"message": message, "documentation_url": "https://docs.github.com/rest"}),
            ),
            ApiError::Unauthorized => empty_response(401),
            ApiError::Plain { status, body } => text_response(status, body),
        }
    }
}

/// The VSS "WrappedException" body for a type key.
pub fn vss_body(type_key: &str, message: &str) -> Value {
    json!({
        "$id": "1",
        "innerException": null,
        "message": message,
        "typeName": format!("GitHub.DistributedTask.WebApi.{type_key}, GitHub.DistributedTask.WebApi"),
        "typeKey": type_key,
        "errorCode": 0,
        "eventId": 3000,
    })
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A JSON response.
pub fn json_response(status: u16, body: &Value) -> Response {
    raw_response(status, "application/json; charset=utf-8", body.to_string())
}

/// A `text/plain` response.
pub fn text_response(status: u16, body: String) -> Response {
    raw_response(status, "text/plain; charset=utf-8", body)
}

/// A response with an explicit content type.
pub fn raw_response(status: u16, content_type: &str, body: impl Into<Body>) -> Response {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = status_code(status);
    if let Ok(v) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

/// A response with no body (`Content-Length: 0`).
pub fn empty_response(status: u16) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status_code(status);
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    resp
}

/// `{"count": n, "value": [...]}`.
pub fn list(values: Vec<Value>) -> Value {
    json!({"count": values.len(), "value": values})
}

/// RFC 3339 with milliseconds and `Z`.
pub fn ts(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// RFC 3339 or the zero timestamp.
pub fn ts_opt(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map_or_else(|| ZERO_TIME.to_owned(), ts)
}

/// Looks a key up in a JSON object ignoring ASCII case, as the .NET service and Go clients do.
pub fn get_ci<'a>(obj: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}
