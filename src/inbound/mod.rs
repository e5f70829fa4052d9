//! Inbound protocols: what clients send, parsed into the canonical request, and
//! the pipeline's reply rendered back in the client's own wire format (JSON and
//! SSE, errors included). `openai_chat` (`/v1/chat/completions`),
//! `anthropic_messages` (`/v1/messages`), `openai_responses` (`/v1/responses`),
//! and `embeddings` (`/v1/embeddings`, answered on the device).

pub mod embeddings;
pub mod error;

pub use error::ApiError;

use axum::http::HeaderMap;
use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::canonical::{Event, Protocol, Reply, Request};
use crate::upstream::Chunk;
use crate::wire::{anthropic, openai_chat, responses, sse};

/// Headers an Anthropic client sends that its Anthropic provider needs too.
const ANTHROPIC_HEADERS: [&str; 2] = ["anthropic-version", "anthropic-beta"];

/// Parses a client's body in `protocol`; errors name the field.
pub fn parse(protocol: Protocol, raw: Value, headers: &HeaderMap) -> Result<Request, ApiError> {
    let mut req = match protocol {
        Protocol::OpenAiChat => openai_chat::parse_request(raw)?,
        Protocol::AnthropicMessages => anthropic::parse_request(raw)?,
        Protocol::OpenAiResponses => responses::parse_request(raw)?,
    };
    if protocol == Protocol::AnthropicMessages {
        for name in ANTHROPIC_HEADERS {
            for v in headers.get_all(name) {
                if let Ok(v) = v.to_str() {
                    req.forward_headers.push((name.to_string(), v.to_string()));
                }
            }
        }
    }
    Ok(req)
}

/// A complete reply as the client's protocol writes it: the provider's own bytes
/// when it spoke that protocol, else rendered from the canonical reply. `id` is
/// triage's request id, `model` the model id the reply names.
pub fn render_reply(
    req: &Request,
    reply: &Reply,
    raw: Option<Bytes>,
    id: &str,
    model: &str,
) -> Bytes {
    if let Some(raw) = raw {
        return raw;
    }
    let v = match req.protocol {
        Protocol::OpenAiChat => openai_chat::render_reply(reply, id, model),
        Protocol::AnthropicMessages => anthropic::render_reply(reply, id, model),
        Protocol::OpenAiResponses => responses::render_reply(reply, id, model, req),
    };
    Bytes::from(v.to_string())
}

/// The stream encoder of one protocol.
enum Encoder {
    Chat(openai_chat::StreamEncoder),
    Anthropic(anthropic::StreamEncoder),
    Responses(Box<responses::StreamEncoder>),
}

impl Encoder {
    fn new(req: &Request, id: &str, model: &str) -> Self {
        match req.protocol {
            Protocol::OpenAiChat => Encoder::Chat(openai_chat::StreamEncoder::new(
                id,
                model,
                req.include_usage,
            )),
            Protocol::AnthropicMessages => {
                Encoder::Anthropic(anthropic::StreamEncoder::new(id, model))
            }
            Protocol::OpenAiResponses => {
                Encoder::Responses(Box::new(responses::StreamEncoder::new(id, model, req)))
            }
        }
    }

    fn encode(&mut self, ev: &Event, out: &mut Vec<Bytes>) {
        match self {
            Encoder::Chat(e) => out.extend(e.event(ev).iter().map(|d| sse::data_event(d))),
            Encoder::Anthropic(e) => out.extend(
                e.event(ev)
                    .iter()
                    .map(|(name, d)| sse::named_event(name, &d.to_string())),
            ),
            Encoder::Responses(e) => out.extend(
                e.event(ev)
                    .iter()
                    .map(|(name, d)| sse::named_event(name, &d.to_string())),
            ),
        }
    }
}

/// The client's SSE bytes for a stream of chunks: each chunk's own bytes when the
/// provider spoke the client's protocol, else its events rendered.
pub fn render_stream(
    req: &Request,
    mut rx: mpsc::Receiver<Chunk>,
    id: &str,
    model: &str,
) -> mpsc::Receiver<Bytes> {
    let (tx, out) = mpsc::channel(64);
    let mut enc = Encoder::new(req, id, model);
    tokio::spawn(async move {
        while let Some(chunk) = rx.recv().await {
            let mut bytes = Vec::new();
            match chunk.raw {
                Some(raw) => bytes.push(raw),
                None => chunk.events.iter().for_each(|e| enc.encode(e, &mut bytes)),
            }
            for b in bytes {
                if tx.send(b).await.is_err() {
                    // The client went away: dropping `rx` stops the provider's pump.
                    return;
                }
            }
        }
    });
    out
}

/// A reply replayed as a stream (cache hits, dry runs).
pub fn replay_stream(req: &Request, reply: &Reply, id: &str, model: &str) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(4);
    let _ = tx.try_send(Chunk {
        raw: None,
        events: reply.events(),
    });
    drop(tx);
    render_stream(req, rx, id, model)
}
