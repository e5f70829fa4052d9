//! The one error type at the HTTP edge: a status, and the error JSON of the
//! client's protocol: OpenAI's `{"error": {"message", "type", "param", "code"}}`
//! (chat completions, Responses, embeddings and the admin endpoints) or
//! Anthropic's `{"type": "error", "error": {"type", "message"}}`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::canonical::Protocol;
use crate::pipeline::PipelineError;
use crate::upstream::ForwardError;
use crate::wire::WireError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: &'static str,
    pub message: String,
    pub param: Option<String>,
    pub retry_after: Option<u32>,
    /// Close the connection after this answer (a body left unread).
    pub close: bool,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            code,
            message: message.into(),
            param: None,
            retry_after: None,
            close: false,
        }
    }

    pub fn bad_request(message: impl Into<String>, param: Option<String>) -> Self {
        Self {
            param,
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_request",
                message,
            )
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal_error",
            message,
        )
    }

    pub fn unauthorized(message: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            message,
        )
    }

    /// The error response, tagged with the request id.
    pub fn response_for(self, request_id: &str) -> Response {
        let mut resp = self.into_response();
        if let Ok(v) = HeaderValue::from_str(request_id) {
            resp.headers_mut().insert("x-triage-request-id", v);
        }
        resp
    }
}

impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> Self {
        let message = e.to_string();
        match e {
            PipelineError::BadRequest { param, .. } => ApiError::bad_request(message, param),
            PipelineError::UnknownModel { .. } => ApiError {
                param: Some("model".into()),
                ..ApiError::new(
                    StatusCode::NOT_FOUND,
                    "invalid_request_error",
                    "model_not_found",
                    message,
                )
            },
            PipelineError::ModelNotAllowed { .. } => ApiError {
                param: Some("model".into()),
                ..ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "model_not_allowed",
                    message,
                )
            },
            PipelineError::BudgetExceeded {
                retry_after_secs, ..
            } => ApiError {
                retry_after: Some(retry_after_secs.clamp(1, 86_400) as u32),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "budget_exceeded",
                    "budget_exceeded",
                    message,
                )
            },
            PipelineError::Busy(_) => ApiError {
                retry_after: Some(1),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    "overloaded",
                    message,
                )
            },
            PipelineError::Upstream(f) => match f {
                ForwardError::Rejected {
                    status, message, ..
                } => ApiError::new(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                    "invalid_request_error",
                    "upstream_rejected",
                    format!("The upstream model rejected the request: {message}"),
                ),
                ForwardError::Exhausted {
                    timed_out: true, ..
                }
                | ForwardError::Deadline(_) => ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_error",
                    "upstream_timeout",
                    message,
                ),
                ForwardError::RateLimited { retry_after, .. } => ApiError {
                    retry_after: retry_after
                        .map(|d| d.as_secs_f64().ceil().clamp(1.0, 86_400.0) as u32),
                    ..ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate_limit_error",
                        "upstream_rate_limited",
                        message,
                    )
                },
                ForwardError::Exhausted { .. } | ForwardError::NoModel => ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    "upstream_unavailable",
                    message,
                ),
            },
            PipelineError::Internal(_) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "internal_error",
                message,
            ),
        }
    }
}

impl From<WireError> for ApiError {
    fn from(e: WireError) -> Self {
        ApiError::bad_request(e.message, e.param)
    }
}

/// Anthropic's error type for a status (what its SDKs map to their exceptions).
fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 405 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

impl ApiError {
    /// The error in `protocol`'s shape.
    pub fn response_in(self, protocol: Protocol) -> Response {
        match protocol {
            Protocol::AnthropicMessages => {
                let body = json!({
                    "type": "error",
                    "error": {"type": anthropic_type(self.status), "message": self.message},
                });
                self.with_body(body)
            }
            Protocol::OpenAiChat | Protocol::OpenAiResponses => self.into_response(),
        }
    }

    /// An error event for a stream of `protocol`, when it failed before its first
    /// byte but after the client's connection was accepted (SDKs read it as an
    /// API error).
    pub fn body_in(&self, protocol: Protocol) -> serde_json::Value {
        match protocol {
            Protocol::AnthropicMessages => json!({"type": "error",
                "error": {"type": anthropic_type(self.status), "message": self.message}}),
            _ => json!({"error": {"message": self.message, "type": self.kind,
                "param": self.param, "code": self.code}}),
        }
    }

    fn with_body(self, body: serde_json::Value) -> Response {
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert("retry-after", HeaderValue::from(s));
        }
        if self.close {
            resp.headers_mut()
                .insert("connection", HeaderValue::from_static("close"));
        }
        resp
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        });
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert("retry-after", HeaderValue::from(s));
        }
        if self.close {
            resp.headers_mut()
                .insert("connection", HeaderValue::from_static("close"));
        }
        resp
    }
}
