//! OpenAI-compatible chat completions: the request passes through untouched except
//! for the model id, and streams ask for usage without showing it to clients that
//! did not ask.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};

use super::sse::{self, SseEvent};
use super::{
    first_chunk, read_json, send, spawn_pump, AttemptError, ForwardBody, StreamConverter,
    StreamOutcome, Upstream, Usage,
};
use crate::config::ModelConfig;

pub(super) async fn call(
    up: &Upstream,
    model: &ModelConfig,
    request: &Value,
    stream: bool,
    client_wants_usage: bool,
    timeout: Duration,
) -> Result<(u16, ForwardBody), AttemptError> {
    let mut body = request.clone();
    body["model"] = json!(model.upstream_model());
    if stream {
        let opts = body
            .as_object_mut()
            .map(|o| o.entry("stream_options").or_insert_with(|| json!({})));
        if let Some(Value::Object(o)) = opts {
            o.insert("include_usage".into(), json!(true));
        } else if let Some(o) = body.as_object_mut() {
            o.insert("stream_options".into(), json!({"include_usage": true}));
        }
    }
    let url = format!("{}/chat/completions", up.cfg.base_url.trim_end_matches('/'));
    let mut req = up.client.post(url).json(&body);
    if let Some(key) = up.key()? {
        req = req.bearer_auth(key);
    }
    let resp = send(req, timeout).await?;
    let status = resp.status().as_u16();
    if !stream {
        let (bytes, v) = read_json(resp, timeout).await?;
        if v.get("choices").is_none() {
            return Err(AttemptError::Protocol("response has no `choices`".into()));
        }
        let usage = v.get("usage").and_then(Usage::from_openai);
        return Ok((status, ForwardBody::Json { body: bytes, usage }));
    }
    let (first, rest) = first_chunk(resp, timeout).await?;
    Ok((
        status,
        spawn_pump(
            first,
            rest,
            timeout,
            Passthrough {
                show_usage: client_wants_usage,
            },
        ),
    ))
}

struct Passthrough {
    show_usage: bool,
}

impl StreamConverter for Passthrough {
    fn event(&mut self, ev: SseEvent, out: &mut StreamOutcome) -> Vec<Bytes> {
        if ev.data == "[DONE]" {
            out.complete = out.finish_reason.is_some();
            return vec![sse::done_event()];
        }
        let Ok(mut v) = serde_json::from_str::<Value>(&ev.data) else {
            // Not ours to judge: pass it on as it came.
            return vec![sse::data_event(&ev.data)];
        };
        if let Some(err) = v.get("error") {
            out.error = Some(
                err.get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("upstream error")
                    .to_string(),
            );
            return vec![sse::data_event(&ev.data)];
        }
        if let Some(u) = v.get("usage").and_then(Usage::from_openai) {
            out.usage = Some(u);
        }
        if out.response_model.is_none() {
            out.response_model = v.get("model").and_then(Value::as_str).map(str::to_string);
        }
        if let Some(choice) = v.pointer("/choices/0") {
            if let Some(t) = choice.pointer("/delta/content").and_then(Value::as_str) {
                out.content.push_str(t);
            }
            if let Some(r) = choice.get("finish_reason").and_then(Value::as_str) {
                out.finish_reason = Some(r.to_string());
            }
        }
        if self.show_usage || v.get("usage").is_none() {
            return vec![sse::data_event(&ev.data)];
        }
        // The client did not ask for usage: drop the usage-only chunk, and the
        // `usage: null` that include_usage adds to every other chunk.
        let usage_only = v
            .get("choices")
            .and_then(Value::as_array)
            .is_some_and(|c| c.is_empty());
        if usage_only {
            return Vec::new();
        }
        if let Some(o) = v.as_object_mut() {
            o.remove("usage");
        }
        vec![sse::data_event(&v.to_string())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(data: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: data.into(),
        }
    }

    #[test]
    fn hides_usage_from_clients_that_did_not_ask() {
        let mut p = Passthrough { show_usage: false };
        let mut out = StreamOutcome::default();
        let a = p.event(
            ev(r#"{"choices":[{"delta":{"content":"Hi"},"finish_reason":null}],"usage":null}"#),
            &mut out,
        );
        assert_eq!(a.len(), 1);
        assert!(!String::from_utf8_lossy(&a[0]).contains("usage"));
        p.event(
            ev(r#"{"choices":[{"delta":{},"finish_reason":"stop"}],"usage":null}"#),
            &mut out,
        );
        let u = p.event(
            ev(r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#),
            &mut out,
        );
        assert!(u.is_empty());
        p.event(ev("[DONE]"), &mut out);
        assert!(out.complete);
        assert_eq!(out.content, "Hi");
        assert_eq!(out.usage.unwrap().prompt_tokens, 3);
    }

    #[test]
    fn shows_usage_when_asked() {
        let mut p = Passthrough { show_usage: true };
        let mut out = StreamOutcome::default();
        let raw = r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;
        let u = p.event(ev(raw), &mut out);
        assert_eq!(u, vec![sse::data_event(raw)]);
    }

    #[test]
    fn done_without_finish_reason_is_incomplete() {
        let mut p = Passthrough { show_usage: false };
        let mut out = StreamOutcome::default();
        p.event(ev(r#"{"choices":[{"delta":{"content":"x"}}]}"#), &mut out);
        p.event(ev("[DONE]"), &mut out);
        assert!(!out.complete);
    }
}
