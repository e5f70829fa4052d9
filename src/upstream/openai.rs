//! OpenAI-compatible chat completions. A request from an OpenAI client goes as it
//! came but for the model id (see `wire::openai_chat::render_request`), and its
//! reply comes back byte for byte; streams always ask for usage and hide it from
//! clients that did not ask.

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use super::{
    first_chunk, read_json, send, spawn_pump, AttemptError, Chunk, ForwardBody, StreamConverter,
    Upstream,
};
use crate::canonical::{Protocol, Request};
use crate::config::ModelConfig;
use crate::wire::openai_chat::{parse_reply, render_request, StreamDecoder};
use crate::wire::sse::{self, SseEvent};

pub(super) async fn call(
    up: &Upstream,
    model: &ModelConfig,
    request: &Request,
    timeout: Duration,
) -> Result<(u16, ForwardBody), AttemptError> {
    let body = render_request(request, model.upstream_model());
    let url = format!("{}/chat/completions", up.cfg.base_url.trim_end_matches('/'));
    let mut req = up.client.post(url).json(&body);
    if let Some(key) = up.key()? {
        req = req.bearer_auth(key);
    }
    let resp = send(req, timeout).await?;
    let status = resp.status().as_u16();
    let own = request.protocol == Protocol::OpenAiChat;
    if !request.stream {
        let (bytes, v) = read_json(resp, timeout).await?;
        let reply = parse_reply(&v).map_err(AttemptError::Protocol)?;
        return Ok((
            status,
            ForwardBody::Json {
                reply,
                raw: own.then_some(bytes),
            },
        ));
    }
    let (first, rest) = first_chunk(resp, timeout).await?;
    Ok((
        status,
        spawn_pump(
            first,
            rest,
            timeout,
            Chunks {
                decoder: StreamDecoder::default(),
                passthrough: own,
                show_usage: request.include_usage,
            },
        ),
    ))
}

struct Chunks {
    decoder: StreamDecoder,
    /// The client speaks chat completions: it gets the provider's own chunks.
    passthrough: bool,
    show_usage: bool,
}

impl Chunks {
    /// The provider's chunk as the client gets it: as it came, but without the
    /// usage the client did not ask for (the usage-only chunk, and the
    /// `usage: null` that include_usage adds to every other chunk).
    fn raw(&self, data: &str) -> Option<Bytes> {
        if self.show_usage || data.trim() == "[DONE]" {
            return Some(sse::data_event(data));
        }
        let Ok(mut v) = serde_json::from_str::<Value>(data) else {
            return Some(sse::data_event(data));
        };
        if v.get("usage").is_none() {
            return Some(sse::data_event(data));
        }
        let usage_only = v
            .get("choices")
            .and_then(Value::as_array)
            .is_some_and(|c| c.is_empty());
        if usage_only {
            return None;
        }
        if let Some(o) = v.as_object_mut() {
            o.remove("usage");
        }
        Some(sse::data_event(&v.to_string()))
    }
}

impl StreamConverter for Chunks {
    fn event(&mut self, ev: SseEvent) -> Chunk {
        let events = self.decoder.data(&ev.data);
        Chunk {
            raw: if self.passthrough && !sse::is_malformed(&events) {
                self.raw(&ev.data)
            } else {
                None
            },
            events,
        }
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

    fn raw_of(c: &Chunk) -> Option<String> {
        c.raw
            .as_ref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    #[test]
    fn usage_is_hidden_unless_the_client_asked() {
        let mut hide = Chunks {
            decoder: StreamDecoder::default(),
            passthrough: true,
            show_usage: false,
        };
        let with_null = hide.event(ev(
            r#"{"choices":[{"delta":{"content":"hi"}}],"usage":null}"#,
        ));
        assert!(!raw_of(&with_null).unwrap().contains("usage"));
        let usage_only = hide.event(ev(
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#,
        ));
        assert!(usage_only.raw.is_none());
        let done = hide.event(ev("[DONE]"));
        assert_eq!(raw_of(&done).as_deref(), Some("data: [DONE]\n\n"));
        let mut show = Chunks {
            decoder: StreamDecoder::default(),
            passthrough: true,
            show_usage: true,
        };
        let u = show.event(ev(
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#,
        ));
        assert!(raw_of(&u).unwrap().contains("prompt_tokens"));
        // A client of another protocol gets events, not the provider's bytes.
        let mut other = Chunks {
            decoder: StreamDecoder::default(),
            passthrough: false,
            show_usage: true,
        };
        let c = other.event(ev(
            r#"{"id":"x","model":"m","choices":[{"delta":{"content":"hi"}}]}"#,
        ));
        assert!(c.raw.is_none() && !c.events.is_empty());
    }
}
