//! A fault-injecting upstream for tests: OpenAI's chat completions and Anthropic's
//! Messages API over real HTTP, JSON and SSE. The model id picks the behaviour, so
//! a routing table decides which fault a request meets:
//!
//! | model | JSON request | stream request |
//! |---|---|---|
//! | `fault-500` / `fault-503` | that status, error body in the provider's shape | the same |
//! | `fault-429` | 429 with `Retry-After: 1` | the same |
//! | `fault-hang` | no answer for 30 s | the same |
//! | `fault-reset` | half the body, then the connection drops | the opening events, then the drop |
//! | `fault-trickle` | the complete answer in five pieces 200 ms apart | complete, 200 ms between events |
//! | `fault-badjson` | 200 with a truncated JSON body | the same (the provider ignored `stream`) |
//! | `fault-badsse` | 200 with broken SSE (the provider streamed anyway) | opening events, an event whose data is not JSON, no end |
//! | anything else | the complete answer | the complete answer |
//!
//! The complete answer is [`answer_for`]`(model, last user text)`.
//!
//! Included by `#[path]` from the tests that use it (`tests/common/mod.rs` does
//! not declare it).
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

/// Every fault model, one per fault kind.
pub const FAULTS: [&str; 8] = [
    "fault-500",
    "fault-503",
    "fault-429",
    "fault-hang",
    "fault-reset",
    "fault-trickle",
    "fault-badjson",
    "fault-badsse",
];

pub const TRICKLE: Duration = Duration::from_millis(200);

/// The whole answer `model` gives to `prompt`.
pub fn answer_for(model: &str, prompt: &str) -> String {
    format!("answer from {model}: {prompt}")
}

/// How a stream carries the answer: a cut after the first piece leaves a prefix.
fn pieces(model: &str, prompt: &str) -> [String; 3] {
    [
        "answer from ".to_string(),
        format!("{model}: "),
        prompt.to_string(),
    ]
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    OpenAi,
    Anthropic,
}

impl Provider {
    pub fn kind(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
        }
    }
}

#[derive(Clone, Default)]
pub struct Calls(Arc<Mutex<HashMap<String, usize>>>);

pub struct FaultyUpstream {
    pub addr: SocketAddr,
    pub calls: Calls,
}

impl FaultyUpstream {
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
    /// Requests `model` received, over both protocols.
    pub fn calls(&self, model: &str) -> usize {
        self.calls
            .0
            .lock()
            .unwrap()
            .get(model)
            .copied()
            .unwrap_or(0)
    }
}

fn last_user_text(req: &Value) -> String {
    let Some(m) = req["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
    else {
        return String::new();
    };
    match &m["content"] {
        Value::String(s) => s.clone(),
        // Anthropic content blocks.
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn error(p: Provider, status: StatusCode, message: &str) -> Response {
    let body = match p {
        Provider::OpenAi => {
            json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}})
        }
        Provider::Anthropic => {
            json!({"type": "error", "error": {"type": "api_error", "message": message}})
        }
    };
    (status, Json(body)).into_response()
}

fn complete(p: Provider, model: &str, prompt: &str) -> Bytes {
    let text = answer_for(model, prompt);
    let v = match p {
        Provider::OpenAi => json!({
            "id": "chatcmpl-faulty", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 6, "total_tokens": 16}
        }),
        Provider::Anthropic => json!({
            "id": "msg_faulty", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 6}
        }),
    };
    Bytes::from(v.to_string())
}

fn openai_chunk(model: &str, delta: Value, finish: Value) -> Bytes {
    Bytes::from(format!(
        "data: {}\n\n",
        json!({"id": "chatcmpl-faulty", "object": "chat.completion.chunk", "created": 1,
            "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    ))
}

fn named(event: &str, v: Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {v}\n\n"))
}

/// A complete stream, and how many of its events make the opening (up to the
/// first piece of the answer).
fn events(p: Provider, model: &str, prompt: &str, usage: bool) -> (Vec<Bytes>, usize) {
    match p {
        Provider::OpenAi => {
            let mut ev = vec![openai_chunk(
                model,
                json!({"role": "assistant", "content": ""}),
                Value::Null,
            )];
            for piece in pieces(model, prompt) {
                ev.push(openai_chunk(model, json!({"content": piece}), Value::Null));
            }
            ev.push(openai_chunk(model, json!({}), json!("stop")));
            if usage {
                ev.push(Bytes::from(format!(
                    "data: {}\n\n",
                    json!({"id": "chatcmpl-faulty", "object": "chat.completion.chunk", "created": 1,
                        "model": model, "choices": [],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 6, "total_tokens": 16}})
                )));
            }
            ev.push(Bytes::from_static(b"data: [DONE]\n\n"));
            (ev, 2)
        }
        Provider::Anthropic => {
            let mut ev = vec![
                named(
                    "message_start",
                    json!({"type": "message_start", "message": {"id": "msg_faulty", "type": "message",
                        "role": "assistant", "model": model, "content": [], "stop_reason": null,
                        "usage": {"input_tokens": 10, "output_tokens": 1}}}),
                ),
                named(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                ),
            ];
            for piece in pieces(model, prompt) {
                ev.push(named(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
                ));
            }
            ev.push(named(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ));
            ev.push(named(
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                    "usage": {"output_tokens": 6}}),
            ));
            ev.push(named("message_stop", json!({"type": "message_stop"})));
            (ev, 3)
        }
    }
}

/// Yields `pieces`, `gap` apart, then (with `drop_at_end`) fails, which aborts the
/// connection mid-body.
fn paced(pieces: Vec<Bytes>, gap: Duration, drop_at_end: bool) -> Body {
    let stream = futures::stream::unfold(
        (pieces.into_iter(), true, drop_at_end),
        move |(mut it, first, drop_at_end)| async move {
            match it.next() {
                Some(p) => {
                    if !first && !gap.is_zero() {
                        tokio::time::sleep(gap).await;
                    }
                    Some((Ok::<_, std::io::Error>(p), (it, false, drop_at_end)))
                }
                None if drop_at_end => {
                    // What was sent reaches the client before the drop.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Some((
                        Err(std::io::Error::new(
                            std::io::ErrorKind::ConnectionReset,
                            "dropped",
                        )),
                        (it, false, false),
                    ))
                }
                None => None,
            }
        },
    );
    Body::from_stream(stream)
}

fn typed(content_type: &'static str, body: Body) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn handle(calls: &Calls, p: Provider, req: Value) -> Response {
    let model = req["model"].as_str().unwrap_or("").to_string();
    *calls.0.lock().unwrap().entry(model.clone()).or_insert(0) += 1;
    let prompt = last_user_text(&req);
    let stream = req["stream"] == true;
    let usage = req["stream_options"]["include_usage"] == true;
    let (evs, opening) = events(p, &model, &prompt, usage);
    let sse = |evs: Vec<Bytes>, gap: Duration, drop: bool| {
        typed("text/event-stream", paced(evs, gap, drop))
    };
    let body = complete(p, &model, &prompt);
    match model.as_str() {
        "fault-500" => error(p, StatusCode::INTERNAL_SERVER_ERROR, "injected 500"),
        "fault-503" => error(p, StatusCode::SERVICE_UNAVAILABLE, "injected 503"),
        "fault-429" => {
            let mut r = error(p, StatusCode::TOO_MANY_REQUESTS, "injected 429");
            r.headers_mut()
                .insert(header::RETRY_AFTER, "1".parse().unwrap());
            r
        }
        "fault-hang" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            error(p, StatusCode::INTERNAL_SERVER_ERROR, "too late")
        }
        "fault-reset" if stream => sse(evs[..opening].to_vec(), Duration::ZERO, true),
        "fault-reset" => typed(
            "application/json",
            paced(vec![body.slice(..body.len() / 2)], Duration::ZERO, true),
        ),
        "fault-trickle" if stream => sse(evs, TRICKLE, false),
        "fault-trickle" => {
            let step = body.len().div_ceil(5);
            let parts = (0..body.len())
                .step_by(step)
                .map(|i| body.slice(i..(i + step).min(body.len())))
                .collect();
            typed("application/json", paced(parts, TRICKLE, false))
        }
        "fault-badjson" => typed(
            "application/json",
            Body::from(body.slice(..body.len() * 2 / 3)),
        ),
        "fault-badsse" => {
            let mut bad = evs[..opening].to_vec();
            bad.push(match p {
                Provider::OpenAi => Bytes::from_static(
                    b"data: {\"choices\": [{\"index\": 0, \"delta\": {\"content\": oops\n\n",
                ),
                Provider::Anthropic => Bytes::from_static(
                    b"event: content_block_delta\ndata: {\"type\": \"content_block_delta\", oops\n\n",
                ),
            });
            sse(bad, Duration::ZERO, false)
        }
        _ if stream => sse(evs, Duration::ZERO, false),
        _ => typed("application/json", Body::from(body)),
    }
}

async fn openai(State(calls): State<Calls>, Json(req): Json<Value>) -> Response {
    handle(&calls, Provider::OpenAi, req).await
}

async fn anthropic(State(calls): State<Calls>, Json(req): Json<Value>) -> Response {
    handle(&calls, Provider::Anthropic, req).await
}

pub async fn start_faulty() -> FaultyUpstream {
    let calls = Calls::default();
    let app = Router::new()
        .route("/v1/chat/completions", post(openai))
        .route("/v1/messages", post(anthropic))
        .with_state(calls.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    FaultyUpstream { addr, calls }
}

/// A triage config: every tier routes to `models` on one upstream of `provider`'s
/// kind; `ok-healthy` is configured too (explicit requests pass through to it).
/// Timeouts are short: one attempt may take 1 s, and each model is retried once.
pub fn faulty_config(up: &FaultyUpstream, provider: Provider, models: &[&str]) -> String {
    let list = models
        .iter()
        .map(|m| format!("\"{m}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut names: Vec<&str> = models.to_vec();
    names.push("ok-healthy");
    names.sort();
    names.dedup();
    let entries: String = names
        .iter()
        .map(|m| format!("[[models]]\nname = \"{m}\"\nupstream = \"fake\"\n"))
        .collect();
    format!(
        r#"
[router]
min_confidence = 0.0
allow_passthrough = true
[router.tiers]
SIMPLE = [{list}]
MODERATE = [{list}]
COMPLEX = [{list}]

[[upstreams]]
name = "fake"
kind = "{kind}"
base_url = "{url}"
request_timeout_secs = 1
max_retries = 1
backoff_base_ms = 10
backoff_max_ms = 50

{entries}
"#,
        kind = provider.kind(),
        url = up.url(),
    )
}
