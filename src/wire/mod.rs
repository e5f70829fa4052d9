//! The wire formats: each protocol's JSON and event streams, to and from the
//! canonical request and reply (`crate::canonical`). Inbound adapters use the
//! request parsers and the reply renderers; providers use the request renderers
//! and the reply parsers. Nothing here sends or receives anything.

pub mod anthropic;
pub mod openai_chat;
pub mod responses;
pub mod sse;

/// A request that does not fit its protocol; `param` names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct WireError {
    pub message: String,
    pub param: Option<String>,
}

pub(crate) fn bad(message: impl Into<String>, param: &str) -> WireError {
    WireError {
        message: message.into(),
        param: Some(param.to_string()),
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

use serde_json::Value;

/// An optional number field: absent or null is None; anything else must be one.
pub(crate) fn opt_f64(
    obj: &serde_json::Map<String, Value>,
    k: &str,
) -> Result<Option<f64>, WireError> {
    match obj.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|x| x.is_finite())
            .map(Some)
            .ok_or_else(|| bad(format!("`{k}` must be a number"), k)),
    }
}

/// An optional non-negative integer field.
pub(crate) fn opt_u64(
    obj: &serde_json::Map<String, Value>,
    k: &str,
) -> Result<Option<u64>, WireError> {
    match obj.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| bad(format!("`{k}` must be a non-negative integer"), k)),
    }
}

/// An optional boolean field.
pub(crate) fn opt_bool(
    obj: &serde_json::Map<String, Value>,
    k: &str,
) -> Result<Option<bool>, WireError> {
    match obj.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad(format!("`{k}` must be a boolean"), k)),
    }
}

/// `stop`: a string or an array of strings.
pub(crate) fn stop_list(v: Option<&Value>, k: &str) -> Result<Vec<String>, WireError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad(format!("`{k}` must hold strings"), k))
            })
            .collect(),
        Some(_) => Err(bad(
            format!("`{k}` must be a string or an array of strings"),
            k,
        )),
    }
}

/// The required `model` string.
pub(crate) fn model_of(obj: &serde_json::Map<String, Value>) -> Result<String, WireError> {
    match obj.get("model") {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            Err(bad("`model` is required", "model"))
        }
        Some(_) => Err(bad("`model` must be a string", "model")),
    }
}
