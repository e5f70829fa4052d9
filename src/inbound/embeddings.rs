//! `POST /v1/embeddings` in OpenAI's shape, answered by the on-device model: the
//! sentence vector (mean-pooled last layer, L2-normalized) of each input.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::wire::{bad, WireError};

/// Most inputs one request may embed.
pub const MAX_INPUTS: usize = 2048;

/// What to embed and how to write it.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub inputs: Vec<String>,
    pub base64: bool,
}

/// Validates the body; errors name the field. Token-id inputs are refused: the
/// on-device model has its own tokenizer.
pub fn parse(raw: &Value) -> Result<EmbeddingsRequest, WireError> {
    let obj = raw
        .as_object()
        .ok_or_else(|| bad("the request body must be a JSON object", "body"))?;
    let model = crate::wire::model_of(obj)?;
    let inputs: Vec<String> = match obj.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(bad(
                    format!("`input[{i}]` must be a string (token ids are not accepted: the model has its own tokenizer)"),
                    "input",
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(Value::Array(_)) => return Err(bad("`input` must not be empty", "input")),
        Some(_) => return Err(bad("`input` must be a string or an array of strings", "input")),
        None => return Err(bad("`input` is required", "input")),
    };
    if inputs.len() > MAX_INPUTS {
        return Err(bad(
            format!("`input` holds at most {MAX_INPUTS} strings"),
            "input",
        ));
    }
    if let Some((i, _)) = inputs.iter().enumerate().find(|(_, s)| s.is_empty()) {
        return Err(bad(format!("`input[{i}]` is empty"), "input"));
    }
    let base64 = match obj.get("encoding_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(f)) if f == "float" => false,
        Some(Value::String(f)) if f == "base64" => true,
        Some(_) => {
            return Err(bad(
                "`encoding_format` must be float or base64",
                "encoding_format",
            ))
        }
    };
    if let Some(d) = obj.get("dimensions").filter(|d| !d.is_null()) {
        return Err(bad(
            format!(
                "`dimensions` ({d}) is not supported: the on-device model's vectors have one size"
            ),
            "dimensions",
        ));
    }
    Ok(EmbeddingsRequest {
        model,
        inputs,
        base64,
    })
}

/// The response: one embedding per input, in order, and the tokens counted.
pub fn render(model: &str, vectors: &[Vec<f32>], base64: bool, tokens: usize) -> Value {
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_formats_and_errors() {
        let r = parse(&json!({"model": "m", "input": ["a", "b"], "encoding_format": "base64"}))
            .unwrap();
        assert_eq!(r.inputs, vec!["a", "b"]);
        assert!(r.base64);
        for (body, param) in [
            (json!({"model": "m"}), "input"),
            (json!({"model": "m", "input": [1, 2]}), "input"),
            (json!({"model": "m", "input": []}), "input"),
            (
                json!({"model": "m", "input": "x", "encoding_format": "int8"}),
                "encoding_format",
            ),
            (
                json!({"model": "m", "input": "x", "dimensions": 128}),
                "dimensions",
            ),
            (json!({"input": "x"}), "model"),
        ] {
            assert_eq!(
                parse(&body).unwrap_err().param.as_deref(),
                Some(param),
                "{body}"
            );
        }
        // base64 is the little-endian f32 bytes, as the SDKs decode them.
        let v = render("m", &[vec![1.0, -2.0]], true, 3);
        let b = base64::engine::general_purpose::STANDARD
            .decode(v["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        assert_eq!(b, [1.0f32.to_le_bytes(), (-2.0f32).to_le_bytes()].concat());
        assert_eq!(v["usage"]["prompt_tokens"], 3);
    }
}
